//! What a line of dockerd's output says: logrus text (logfmt) and JSON
//! lines parsed for their level, message and fields, the severity that
//! decides whether it is echoed, and the escaping that keeps it from driving
//! the terminal. Pure.

/// logrus levels, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
    Panic,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warning" | "warn" => Level::Warning,
            "error" => Level::Error,
            "fatal" => Level::Fatal,
            "panic" => Level::Panic,
            _ => return None,
        })
    }
}

/// What a line says, as far as the echo decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// `None`: a plain line without a level.
    pub level: Option<Level>,
    /// The message and its fields, without the timestamp and level.
    pub text: String,
    /// The logrus `module` field (`grpc` marks gRPC transport chatter).
    pub module: Option<String>,
}

/// How a line reaches stderr, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warn,
    Error,
}

/// Warnings dockerd 20.10 prints on every start inside a container that say
/// nothing actionable; they stay in the log file so stderr shows what matters.
pub const BENIGN_WARNINGS: [&str; 5] = [
    "containerd config version `1` has been deprecated",
    "devmapper not configured",
    "Your kernel does not support cgroup blkio weight",
    "cleanup warnings",
    // Printed each time a container ends (its shim exits): routine, not a fault.
    "cleaning up after shim disconnected",
];

impl Parsed {
    /// Warnings and worse are echoed (but the known-benign ones); plain lines too, since dockerd prints
    /// its fatal start-up errors (and Go its panics) without a level.
    /// gRPC transport warnings are retries dockerd handles itself: file only.
    pub fn severity(&self) -> Option<Severity> {
        if self.module.as_deref() == Some("grpc") {
            return None;
        }
        match self.level {
            None => Some(Severity::Warn),
            Some(l) if l >= Level::Error => Some(Severity::Error),
            Some(Level::Warning) if BENIGN_WARNINGS.iter().any(|b| self.text.contains(b)) => None,
            Some(Level::Warning) => Some(Severity::Warn),
            Some(_) => None,
        }
    }
}

/// Parses one line of dockerd or containerd output.
pub fn parse_line(line: &str) -> Parsed {
    let line = line.trim_end();
    if line.starts_with('{') {
        if let Some(p) = parse_json(line) {
            return p;
        }
    }
    if let Some(fields) = parse_logfmt(line) {
        if let Some(level) = fields
            .iter()
            .find(|(k, _)| k == "level")
            .and_then(|(_, v)| Level::parse(v))
        {
            return from_fields(Some(level), fields);
        }
    }
    // Go runtime failures carry their severity in the first word.
    let level = if line.starts_with("panic:") || line.starts_with("fatal error:") {
        Some(Level::Panic)
    } else {
        None
    };
    Parsed {
        level,
        text: line.to_string(),
        module: None,
    }
}

fn from_fields(level: Option<Level>, fields: Vec<(String, String)>) -> Parsed {
    let mut msg = String::new();
    let mut rest = Vec::new();
    let mut module = None;
    for (k, v) in fields {
        match k.as_str() {
            "time" | "level" => {}
            "msg" => msg = v,
            _ => {
                if k == "module" {
                    module = Some(v.clone());
                }
                rest.push(if v.contains(' ') || v.is_empty() {
                    format!("{k}={v:?}")
                } else {
                    format!("{k}={v}")
                });
            }
        }
    }
    let mut text = msg;
    for field in rest {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&field);
    }
    Parsed {
        level,
        text,
        module,
    }
}

fn parse_json(line: &str) -> Option<Parsed> {
    let members = json_object(line)?;
    let level = members
        .iter()
        .find(|m| m.key == "level" && m.is_string)
        .and_then(|m| Level::parse(&m.value))?;
    let fields = members.into_iter().map(|m| (m.key, m.value)).collect();
    // logrus puts msg among the other keys; keep it first in the text.
    Some(from_fields(Some(level), fields))
}

/// How deep arrays and objects may nest in a JSON line (as serde_json's
/// default): deeper is not a log line.
const JSON_MAX_DEPTH: usize = 128;

/// One member of a JSON object.
struct JsonMember {
    key: String,
    /// A string's text, unescaped; any other value's JSON text without
    /// whitespace.
    value: String,
    is_string: bool,
}

/// The members of `line` if it is exactly one JSON object, keys sorted (a
/// repeated key: the last one counts), as serde_json's map gave them.
fn json_object(line: &str) -> Option<Vec<JsonMember>> {
    let mut r = JsonReader {
        s: line.as_bytes(),
        i: 0,
    };
    r.ws();
    r.eat(b'{')?;
    let mut members: Vec<JsonMember> = Vec::new();
    r.ws();
    if r.peek() == Some(b'}') {
        r.i += 1;
    } else {
        loop {
            r.ws();
            let key = r.string()?;
            r.ws();
            r.eat(b':')?;
            r.ws();
            let is_string = r.peek() == Some(b'"');
            let value = if is_string {
                r.string()?
            } else {
                let start = r.i;
                r.value(1)?;
                compact_json(&line[start..r.i])
            };
            match members.iter_mut().find(|m| m.key == key) {
                Some(m) => (m.value, m.is_string) = (value, is_string),
                None => members.push(JsonMember {
                    key,
                    value,
                    is_string,
                }),
            }
            r.ws();
            match r.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    r.ws();
    if r.i != r.s.len() {
        return None;
    }
    members.sort_by(|a, b| a.key.cmp(&b.key));
    Some(members)
}

/// `json` (one valid value) without the whitespace between its tokens.
fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// A strict reader of JSON text (RFC 8259): what it accepts, serde_json
/// (which read these lines before) accepts too.
struct JsonReader<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonReader<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string, unescaped; the reader is on its opening quote.
    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let c = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                // Control characters must be escaped inside a string.
                b if b < 0x20 => return None,
                b => out.push(b),
            }
        }
    }

    /// The character of `\uXXXX` (a surrogate pair takes two escapes); the
    /// reader is after the `u`.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) {
            self.eat(b'\\')?;
            self.eat(b'u')?;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return None;
            }
            char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
        } else {
            // A lone trailing surrogate is no character: refused here.
            char::from_u32(first)
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + 4)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    }

    /// Skips one value of any kind, checking it.
    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > JSON_MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            _ => self.number(),
        }
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        if self.s.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digit()?;
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digit()?;
            self.digits();
        }
        Some(())
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

/// Splits `key=value key="quoted \"value\""` pairs; `None` if the line is not
/// entirely in that form.
pub fn parse_logfmt(line: &str) -> Option<Vec<(String, String)>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        let mut has_value = false;
        for c in chars.by_ref() {
            if c == '=' {
                has_value = true;
                break;
            }
            if c == ' ' || c == '"' {
                return None;
            }
            key.push(c);
        }
        if key.is_empty() || !has_value {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            if !closed || chars.peek().is_some_and(|c| *c != ' ') {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        fields.push((key, value));
    }
    if fields.is_empty() {
        None
    } else {
        Some(fields)
    }
}

/// `text` with control characters (but tab) written as escapes: `\n`,
/// `\r`, `\u{1b}`; a backslash before them stays as it is.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logrus_text_lines_give_level_message_and_fields() {
        let p = parse_line(
            r#"time="2026-11-22T21:02:23.252470584Z" level=warning msg="failed to load plugin io.containerd.snapshotter.v1.zfs" error="zfs not available""#,
        );
        assert_eq!(p.level, Some(Level::Warning));
        assert_eq!(
            p.text,
            r#"failed to load plugin io.containerd.snapshotter.v1.zfs error="zfs not available""#
        );
        assert_eq!(p.severity(), Some(Severity::Warn));

        let p = parse_line(r#"time="2026-11-22T21:02:24Z" level=info msg="Starting up""#);
        assert_eq!(
            (p.level, p.text.as_str(), p.severity()),
            (Some(Level::Info), "Starting up", None)
        );

        let p = parse_line(r#"time="x" level=error msg="say \"hi\"\tnow" module=libcontainerd"#);
        assert_eq!(p.text, "say \"hi\"\tnow module=libcontainerd");
        assert_eq!(p.severity(), Some(Severity::Error));

        let p = parse_line(r#"level=fatal msg="boom""#);
        assert_eq!(p.severity(), Some(Severity::Error));
    }

    #[test]
    fn grpc_transport_warnings_stay_in_the_file() {
        let p = parse_line(
            r#"time="2026-11-22T21:02:25Z" level=warning msg="[core] grpc: addrConn.createTransport failed to connect to {unix:///x/containerd.sock localhost <nil> 0 <nil>}. Reconnecting..." module=grpc"#,
        );
        assert_eq!(p.level, Some(Level::Warning));
        assert_eq!(p.module.as_deref(), Some("grpc"));
        assert_eq!(p.severity(), None);
    }

    #[test]
    fn json_lines_are_understood() {
        let p = parse_line(
            r#"{"level":"warning","msg":"Your kernel does not support cgroup blkio weight","time":"2026-11-22T21:02:24Z"}"#,
        );
        assert_eq!(p.level, Some(Level::Warning));
        assert_eq!(p.text, "Your kernel does not support cgroup blkio weight");
        let p = parse_line(r#"{"level":"error","msg":"x","error":"y z","n":3}"#);
        assert_eq!(p.text, r#"x error="y z" n=3"#);
        // JSON without a level is a plain line.
        assert_eq!(parse_line(r#"{"a":1}"#).level, None);
    }

    #[test]
    fn json_lines_give_fields_sorted_after_the_message() {
        // As serde_json's map read them: keys sorted, the last of a repeated key.
        let p = parse_line(
            r#"{"time":"t","zeta":"z","level":"warning","msg":"m","alpha":"a","alpha":"b"}"#,
        );
        assert_eq!(p.text, "m alpha=b zeta=z");
        // Values other than strings as compact JSON; escapes unescaped.
        let p = parse_line(
            r#"{ "level" : "error", "msg":"tab\there \u00e9 \ud83d\ude00 \"q\"", "ok":true, "n":-1.5e3, "none":null, "obj":{ "a" : [1, 2] } }"#,
        );
        assert_eq!(p.level, Some(Level::Error));
        assert_eq!(
            p.text,
            "tab\there \u{e9} \u{1f600} \"q\" n=-1.5e3 none=null obj={\"a\":[1,2]} ok=true"
        );
        assert_eq!(p.module, None);
        let p = parse_line(r#"{"level":"warning","msg":"x","module":"grpc"}"#);
        assert_eq!(p.severity(), None);
    }

    #[test]
    fn invalid_json_and_json_without_a_string_level_are_plain_lines() {
        for line in [
            r#"{"level":"error","msg":"x"} trailing"#,
            r#"{"level":"error","msg":"x",}"#,
            r#"{"level":"error","msg":"unterminated}"#,
            r#"{"level":"error","msg":"bad \x escape"}"#,
            r#"{"level":"error","msg":"lone \udc00"}"#,
            r#"{"level":"error","msg":"half \ud83d pair"}"#,
            r#"{"level":"error","n":01}"#,
            r#"{"level":"error","n":1.}"#,
            r#"{"level":"error","n":tru}"#,
            r#"{"level":"error","a":[1,]}"#,
            "{\"level\":\"error\",\"msg\":\"raw\ttab\"}",
            r#"{"level":3,"msg":"x"}"#,
            r#"{"level":"loud","msg":"x"}"#,
            r#"{level:"error"}"#,
        ] {
            let p = parse_line(line);
            assert_eq!(p.level, None, "{line}");
            assert_eq!(p.text, line.trim_end(), "{line}");
        }
        let nested = |n| {
            format!(
                r#"{{"level":"error","a":{}1{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert_eq!(parse_line(&nested(200)).level, None);
        assert_eq!(parse_line(&nested(100)).level, Some(Level::Error));
    }

    #[test]
    fn plain_lines_are_echoed_and_go_panics_are_errors() {
        let p = parse_line("failed to start daemon: pid file found, ensure docker is not running or delete /var/run/docker.pid");
        assert_eq!(p.level, None);
        assert_eq!(p.severity(), Some(Severity::Warn));
        assert!(p.text.starts_with("failed to start daemon"));
        assert_eq!(
            parse_line("panic: runtime error: index out of range").severity(),
            Some(Severity::Error)
        );
        assert_eq!(
            parse_line("fatal error: concurrent map writes").severity(),
            Some(Severity::Error)
        );
        // Looks like logfmt but has no level: plain.
        assert_eq!(parse_line("a=b c=d").level, None);
    }

    #[test]
    fn logfmt_parser_refuses_what_it_does_not_understand() {
        assert_eq!(
            parse_logfmt(r#"a=1 b="two words" c= d="""#),
            Some(vec![
                ("a".into(), "1".into()),
                ("b".into(), "two words".into()),
                ("c".into(), "".into()),
                ("d".into(), "".into())
            ])
        );
        for bad in [
            "plain words",
            r#"a="unclosed"#,
            r#"a="x"y"#,
            "=v",
            "",
            "a=1 b",
        ] {
            assert_eq!(parse_logfmt(bad), None, "{bad}");
        }
    }

    #[test]
    fn known_benign_start_warnings_stay_in_the_file_but_errors_never_do() {
        for line in [
            r#"time="2026-11-22T21:17:10Z" level=warning msg="containerd config version `1` has been deprecated and will be removed in containerd v2.0, please switch to version `2`""#,
            r#"time="2026-11-22T21:17:10.1Z" level=warning msg="failed to load plugin io.containerd.snapshotter.v1.devmapper" error="devmapper not configured""#,
            r#"time="2026-11-22T21:17:11.2Z" level=warning msg="Your kernel does not support cgroup blkio weight_device""#,
            r#"time="2026-11-22T22:24:03Z" level=warning msg="cleaning up after shim disconnected" id=f472134e namespace=moby"#,
        ] {
            assert_eq!(parse_line(line).severity(), None, "{line}");
        }
        let other = r#"time="2026-11-22T21:17:11.2Z" level=warning msg="Your kernel does not support swap memory limit""#;
        assert_eq!(parse_line(other).severity(), Some(Severity::Warn));
        let error = r#"time="2026-11-22T21:17:11.2Z" level=error msg="devmapper not configured""#;
        assert_eq!(parse_line(error).severity(), Some(Severity::Error));
    }

    #[test]
    fn control_characters_are_escaped_for_the_echo() {
        assert_eq!(escape_controls("plain\ttext"), "plain\ttext");
        assert_eq!(
            escape_controls("x\n INFO main command exited\r\x1b[2J"),
            "x\\n INFO main command exited\\r\\u{1b}[2J"
        );
        // logfmt's `\n` is unescaped by the parser, then escaped again here.
        let p = parse_line(r#"level=error msg="boom\n INFO main command exited with status 0""#);
        assert!(p.text.contains('\n'));
        assert!(!escape_controls(&p.text).contains('\n'));
    }
}
