//! Just enough PEM reading to check user-provided certificate files: split
//! into labelled blocks and base64-decode the body.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    pub label: String,
    pub der: Vec<u8>,
}

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Standard base64 with optional `=` padding; whitespace ignored.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let chars: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let body = match chars.iter().position(|&b| b == b'=') {
        Some(i) if chars[i..].iter().all(|&b| b == b'=') && chars.len() % 4 == 0 => &chars[..i],
        Some(_) => return None,
        None => &chars[..],
    };
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= b64_value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// All `-----BEGIN X-----` … `-----END X-----` blocks; `None` if a block is
/// unterminated or its body is not base64.
pub fn parse_pem(text: &str) -> Option<Vec<PemBlock>> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l.trim() == end {
                closed = true;
                break;
            }
            body.push_str(l);
        }
        if !closed {
            return None;
        }
        blocks.push(PemBlock {
            label: label.to_owned(),
            der: base64_decode(&body)?,
        });
    }
    Some(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (enc, dec) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9v\nYmFy", "foobar"),
        ] {
            assert_eq!(base64_decode(enc).unwrap(), dec.as_bytes(), "{enc}");
        }
        assert!(base64_decode("Zm9v!").is_none());
        assert!(base64_decode("Z=m9").is_none());
        assert!(base64_decode("Z").is_none());
    }

    #[test]
    fn blocks_with_labels() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n\
                    -----BEGIN PRIVATE KEY-----\nYmFy\n-----END PRIVATE KEY-----\n";
        let b = parse_pem(text).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].label, "CERTIFICATE");
        assert_eq!(b[0].der, b"foo");
        assert_eq!(b[1].label, "PRIVATE KEY");
        assert!(parse_pem("-----BEGIN X-----\nZm9v\n").is_none());
        assert!(parse_pem("no pem here").unwrap().is_empty());
    }
}
