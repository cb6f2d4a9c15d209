//! Just enough HTTP/1.x response parsing for `/_ping`: the status line, the
//! headers that frame the body (`Content-Length`, chunked encoding), the body.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The peer closed before a whole response arrived.
    Truncated,
    /// The bytes are not an HTTP/1.x response.
    NotHttp(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated => {
                f.write_str("the connection closed before a whole HTTP response arrived")
            }
            ParseError::NotHttp(why) => write!(f, "not HTTP: {why}"),
        }
    }
}

/// Parses what has arrived so far. `Ok(None)`: more bytes are needed (never
/// returned once `eof` is true: then an incomplete response is an error).
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, ParseError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if !eof && looks_like_http_so_far(buf) {
            return Ok(None);
        }
        return Err(if looks_like_http_so_far(buf) {
            ParseError::Truncated
        } else {
            ParseError::NotHttp(format!("starts with {:?}", preview(buf)))
        });
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ParseError::NotHttp("headers are not text".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = parse_status_line(status_line)?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            ParseError::NotHttp(format!(
                "header line without a colon: {:?}",
                preview(line.as_bytes())
            ))
        })?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| ParseError::NotHttp(format!("Content-Length {value:?}")))?;
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        }
    }
    let rest = &buf[head_end + 4..];
    let body = if chunked {
        match dechunk(rest)? {
            Some(body) => body,
            None if eof => return Err(ParseError::Truncated),
            None => return Ok(None),
        }
    } else if let Some(n) = content_length {
        if rest.len() < n {
            return if eof {
                Err(ParseError::Truncated)
            } else {
                Ok(None)
            };
        }
        rest[..n].to_vec()
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else {
        // No framing: the body ends when the peer closes (we sent Connection: close).
        if !eof {
            return Ok(None);
        }
        rest.to_vec()
    };
    Ok(Some(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

fn parse_status_line(line: &str) -> Result<u16, ParseError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(ParseError::NotHttp(format!(
            "status line {:?}",
            preview(line.as_bytes())
        )));
    }
    parts
        .next()
        .filter(|code| code.len() == 3)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| ParseError::NotHttp(format!("status line {:?}", preview(line.as_bytes()))))
}

/// Decodes a chunked body; `Ok(None)` until the last (empty) chunk has arrived.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, ParseError> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let size_field = std::str::from_utf8(&data[..line_end])
            .map_err(|_| ParseError::NotHttp("chunk size".into()))?;
        let size_hex = size_field.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| ParseError::NotHttp(format!("chunk size {size_hex:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        if &data[size..size + 2] != b"\r\n" {
            return Err(ParseError::NotHttp("chunk not followed by CRLF".into()));
        }
        data = &data[size + 2..];
    }
}

fn looks_like_http_so_far(buf: &[u8]) -> bool {
    let prefix = b"HTTP/1.";
    let n = buf.len().min(prefix.len());
    buf[..n] == prefix[..n]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn preview(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
    if bytes.len() > 40 {
        format!("{s}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_PING: &[u8] = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nCache-Control: no-cache, no-store, must-revalidate\r\nDocker-Experimental: false\r\nOstype: linux\r\nPragma: no-cache\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\nContent-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOK";

    fn ok(status: u16, body: &str) -> Result<Option<Response>, ParseError> {
        Ok(Some(Response {
            status,
            body: body.to_string(),
        }))
    }

    #[test]
    fn a_real_dockerd_answer_parses_and_is_complete_before_eof() {
        assert_eq!(parse_response(DOCKER_PING, false), ok(200, "OK"));
    }

    #[test]
    fn every_prefix_of_the_answer_asks_for_more_or_is_truncated_at_eof() {
        for n in 0..DOCKER_PING.len() {
            assert_eq!(
                parse_response(&DOCKER_PING[..n], false),
                Ok(None),
                "prefix {n}"
            );
            assert_eq!(
                parse_response(&DOCKER_PING[..n], true),
                Err(ParseError::Truncated),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nO\r\n1;ext=1\r\nK\r\n0\r\n\r\n";
        assert_eq!(parse_response(resp, false), ok(200, "OK"));
        assert_eq!(parse_response(&resp[..resp.len() - 7], false), Ok(None));
        assert_eq!(
            parse_response(&resp[..resp.len() - 7], true),
            Err(ParseError::Truncated)
        );
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(
            parse_response(bad, true),
            Err(ParseError::NotHttp(_))
        ));
    }

    #[test]
    fn an_unframed_body_ends_at_eof() {
        let resp = b"HTTP/1.0 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nboom";
        assert_eq!(parse_response(resp, false), Ok(None));
        assert_eq!(parse_response(resp, true), ok(500, "boom"));
    }

    #[test]
    fn garbage_is_named_as_such() {
        for junk in [
            &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
            b"\x16\x03\x01\x00",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
        ] {
            match parse_response(junk, true) {
                Err(ParseError::NotHttp(_)) => {}
                other => panic!("{junk:?}: {other:?}"),
            }
        }
        // Not HTTP is recognised without waiting for more bytes.
        assert!(matches!(
            parse_response(b"SSH-2.0", false),
            Err(ParseError::NotHttp(_))
        ));
        let bad_header = b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n";
        assert!(matches!(
            parse_response(bad_header, true),
            Err(ParseError::NotHttp(_))
        ));
    }
}
