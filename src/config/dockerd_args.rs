//! Reading `WS_DOCKERD_ARGS`: which flags the user gave, with which values.
//! Lower layers (probe: `--config-file`) and plan both ask; the answer lives
//! here, with the variable, so neither has to import the other.

/// `WS_DOCKERD_ARGS`, split into words once at start (quotes honoured):
/// appended to dockerd's command line as given, and asked which flags the
/// user set.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(transparent)]
pub struct DockerdArgs(Vec<String>);

impl DockerdArgs {
    /// The words, in order.
    pub fn words(&self) -> &[String] {
        &self.0
    }

    /// Did the user pass `--name` (in any spelling)?
    pub fn gave(&self, name: &str) -> bool {
        user_gave(&self.0, name)
    }

    /// Every value the user gave for `--name`.
    pub fn values(&self, name: &str) -> Vec<&str> {
        user_values(&self.0, name)
    }

    /// `--iptables=false` (or `--iptables false`).
    pub fn disabled_iptables(&self) -> bool {
        user_disabled_iptables(&self.0)
    }
}

impl From<Vec<String>> for DockerdArgs {
    fn from(words: Vec<String>) -> Self {
        DockerdArgs(words)
    }
}

/// dockerd's one-letter aliases, mapped to the long names we compare.
fn long_name(short: &str) -> Option<&'static str> {
    Some(match short {
        "H" => "host",
        "G" => "group",
        "D" => "debug",
        "l" => "log-level",
        "p" => "pidfile",
        "g" => "data-root",
        _ => return None,
    })
}

/// (flag name, inline value) of an argument that is a flag.
fn split_flag(arg: &str) -> Option<(String, Option<&str>)> {
    let (name, value) = match arg.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (arg, None),
    };
    if let Some(long) = name.strip_prefix("--") {
        (!long.is_empty()).then(|| (long.to_string(), value))
    } else if let Some(short) = name.strip_prefix('-') {
        long_name(short).map(|l| (l.to_string(), value))
    } else {
        None
    }
}

/// Did the user pass `--name` (in any spelling: `--name=v`, `--name v`, `-X v`)?
pub fn user_gave(user_args: &[String], name: &str) -> bool {
    user_args
        .iter()
        .any(|a| split_flag(a).is_some_and(|(n, _)| n == name))
}

/// Every value the user gave for `--name` (`--name=v` or `--name v`).
pub fn user_values<'a>(user_args: &'a [String], name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (i, a) in user_args.iter().enumerate() {
        if let Some((n, v)) = split_flag(a) {
            if n == name {
                match v {
                    Some(v) => out.push(v),
                    None => {
                        if let Some(next) = user_args.get(i + 1).filter(|x| !x.starts_with('-')) {
                            out.push(next.as_str());
                        }
                    }
                }
            }
        }
    }
    out
}

/// `--iptables=false` (or `--iptables false`) given by the user.
pub fn user_disabled_iptables(user_args: &[String]) -> bool {
    user_values(user_args, "iptables")
        .last()
        .is_some_and(|v| *v == "false")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recognises_flag_spellings() {
        let u = v(&[
            "--mtu",
            "1400",
            "-G=wheel",
            "--debug",
            "-H",
            "tcp://0.0.0.0:1234",
        ]);
        assert!(
            user_gave(&u, "mtu")
                && user_gave(&u, "group")
                && user_gave(&u, "debug")
                && user_gave(&u, "host")
        );
        assert!(!user_gave(&u, "shutdown-timeout"));
        assert_eq!(user_values(&u, "mtu"), ["1400"]);
        assert_eq!(user_values(&u, "host"), ["tcp://0.0.0.0:1234"]);
        assert!(user_disabled_iptables(&v(&["--iptables=false"])));
        assert!(user_disabled_iptables(&v(&["--iptables", "false"])));
        assert!(!user_disabled_iptables(&v(&["--ip6tables=false"])));
    }

    #[test]
    fn dockerd_args_keep_the_words_and_answer_flag_questions() {
        let a = DockerdArgs::from(v(&["--mtu", "1400", "--iptables=false"]));
        assert_eq!(a.words(), ["--mtu", "1400", "--iptables=false"]);
        assert!(a.gave("mtu") && !a.gave("debug"));
        assert_eq!(a.values("mtu"), ["1400"]);
        assert!(a.disabled_iptables());
        // Shown as the list (doctor --json).
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"["--mtu","1400","--iptables=false"]"#
        );
    }
}
