//! The few DNS wire-format facts the forwarder needs: is this a query, its ID and
//! question, and the two answers it makes itself (SERVFAIL, truncated).

/// Header length (RFC 1035 4.1.1).
pub const HEADER_LEN: usize = 12;
/// RCODE values the forwarder looks at.
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_REFUSED: u8 = 5;

const QR: u8 = 0x80;
const TC: u8 = 0x02;
const RD: u8 = 0x01;
const OPCODE_MASK: u8 = 0x78;
const RA: u8 = 0x80;

/// A message a client may send us: at least a header, QR clear (a response arriving
/// at the forwarder is never forwarded: no loops, no reflection).
pub fn is_query(msg: &[u8]) -> bool {
    msg.len() >= HEADER_LEN && msg[2] & QR == 0
}

/// A response to `query`: a header, QR set, the same ID.
pub fn answers(resp: &[u8], query: &[u8]) -> bool {
    resp.len() >= HEADER_LEN && resp[2] & QR != 0 && resp[..2] == query[..2]
}

pub fn rcode(msg: &[u8]) -> u8 {
    msg.get(3).map_or(0, |b| b & 0x0f)
}

pub fn is_truncated(msg: &[u8]) -> bool {
    msg.get(2).is_some_and(|b| b & TC != 0)
}

/// The end offset of the first question when the query has exactly one that parses
/// (uncompressed labels, then type and class), else `None`.
fn question_end(query: &[u8]) -> Option<usize> {
    if query.len() < HEADER_LEN || query[4..6] != [0, 1] {
        return None;
    }
    let mut i = HEADER_LEN;
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // A compression pointer or a label over 63 bytes has no place in a question.
        if len > 63 {
            return None;
        }
        i += len;
    }
    let end = i + 4;
    (end <= query.len()).then_some(end)
}

/// An answer made here for `query` with `rcode` and `flags` added: the question echoed
/// when it parses, no records.
fn reply(query: &[u8], rcode: u8, extra_flags: u8) -> Vec<u8> {
    let qend = question_end(query);
    let mut r = Vec::with_capacity(qend.unwrap_or(HEADER_LEN));
    r.extend_from_slice(&query[..2]);
    r.push(QR | (query[2] & (OPCODE_MASK | RD)) | extra_flags);
    r.push(RA | (rcode & 0x0f));
    r.extend_from_slice(&[0, u8::from(qend.is_some()), 0, 0, 0, 0, 0, 0]);
    if let Some(end) = qend {
        r.extend_from_slice(&query[HEADER_LEN..end]);
    }
    r
}

/// SERVFAIL for `query` (a well-formed header is assumed: see [`is_query`]).
pub fn servfail(query: &[u8]) -> Vec<u8> {
    reply(query, RCODE_SERVFAIL, 0)
}

/// An empty answer with TC set: the client retries over TCP.
pub fn truncated(query: &[u8]) -> Vec<u8> {
    reply(query, 0, TC)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `example.org A` with ID 0xbeef and RD.
    fn query() -> Vec<u8> {
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x03org\x00\x00\x01\x00\x01");
        q
    }

    #[test]
    fn servfail_echoes_id_question_and_rd() {
        let q = query();
        assert!(is_query(&q));
        let r = servfail(&q);
        assert!(answers(&r, &q) && !is_query(&r));
        assert_eq!(rcode(&r), RCODE_SERVFAIL);
        assert_eq!(r[2] & RD, RD);
        assert!(!is_truncated(&r));
        assert_eq!(&r[4..6], &[0, 1]);
        assert_eq!(&r[HEADER_LEN..], &q[HEADER_LEN..]);
    }

    #[test]
    fn truncated_sets_tc_without_records() {
        let q = query();
        let t = truncated(&q);
        assert!(is_truncated(&t) && rcode(&t) == 0 && answers(&t, &q));
        assert_eq!(&t[6..12], &[0; 6]);
    }

    #[test]
    fn garbage_is_not_a_query_and_bad_questions_are_not_echoed() {
        assert!(!is_query(b"short"));
        let mut resp = query();
        resp[2] |= QR;
        assert!(!is_query(&resp));
        // A compression pointer in the question, and a question cut short.
        let mut q = query();
        q.truncate(HEADER_LEN);
        q.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        let r = servfail(&q);
        assert_eq!((r.len(), &r[4..6]), (HEADER_LEN, &[0u8, 0][..]));
        let mut cut = query();
        cut.truncate(cut.len() - 2);
        assert_eq!(servfail(&cut).len(), HEADER_LEN);
        // Two questions: the header is answered, no question echoed.
        let mut two = query();
        two[5] = 2;
        assert_eq!(servfail(&two).len(), HEADER_LEN);
    }
}
