//! Just enough X.509 reading to decide whether existing certificates can be
//! kept: validity, subject alternative names, CA flag, public key, and the
//! issuer's signature (checked with `ring`, which rcgen already links).
//! A small DER walker: certificates here are ours or the user's own, and
//! anything it does not understand counts as "cannot tell", never as valid.

use std::net::IpAddr;

use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// The whole DER certificate.
    pub der: Vec<u8>,
    /// The signed part (`tbsCertificate`, with its tag and length).
    tbs: Vec<u8>,
    /// The signature algorithm's OID (content bytes).
    sig_alg: Vec<u8>,
    signature: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// `SubjectPublicKeyInfo` with its tag and length.
    pub spki: Vec<u8>,
    key_alg: Vec<u8>,
    /// The EC curve's OID, for EC keys.
    key_curve: Option<Vec<u8>>,
    key_bits: Vec<u8>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub is_ca: bool,
}

/// One TLV: tag, content, and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

fn next<'a>(data: &mut &'a [u8]) -> Option<Tlv<'a>> {
    let d = *data;
    let tag = *d.first()?;
    let first = *d.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *d.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if end > d.len() {
        return None;
    }
    *data = &d[end..];
    Some(Tlv {
        tag,
        content: &d[hdr..end],
        whole: &d[..end],
    })
}

fn expect<'a>(data: &mut &'a [u8], tag: u8) -> Option<Tlv<'a>> {
    let t = next(data)?;
    (t.tag == tag).then_some(t)
}

const SEQ: u8 = 0x30;
const OID: u8 = 0x06;
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];
const BASIC_CONSTRAINTS_OID: &[u8] = &[0x55, 0x1d, 0x13];

fn time_of(t: &Tlv) -> Option<OffsetDateTime> {
    let s = std::str::from_utf8(t.content).ok()?;
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match t.tag {
        0x17 => {
            let yy: i32 = s.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| rest[i..i + 2].parse::<u8>().ok();
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(n(0)?).ok()?, n(2)?).ok()?;
    let clock = time::Time::from_hms(n(4)?, n(6)?, n(8)?).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc())
}

/// Parses one DER certificate; `None` if it is not one this reader understands.
pub fn parse(der: &[u8]) -> Option<Cert> {
    let mut outer = der;
    let cert = expect(&mut outer, SEQ)?;
    let mut body = cert.content;
    let tbs = expect(&mut body, SEQ)?;
    let mut alg = expect(&mut body, SEQ)?.content;
    let sig_alg = expect(&mut alg, OID)?.content.to_vec();
    let sig = expect(&mut body, 0x03)?.content;
    let signature = sig.get(1..)?.to_vec();

    let mut f = tbs.content;
    let mut first = next(&mut f)?;
    if first.tag == 0xa0 {
        first = next(&mut f)?; // version, then the serial
    }
    if first.tag != 0x02 {
        return None;
    }
    expect(&mut f, SEQ)?; // signature algorithm (again)
    expect(&mut f, SEQ)?; // issuer
    let mut validity = expect(&mut f, SEQ)?.content;
    let not_before = time_of(&next(&mut validity)?)?;
    let not_after = time_of(&next(&mut validity)?)?;
    expect(&mut f, SEQ)?; // subject
    let spki = expect(&mut f, SEQ)?;
    let mut spki_body = spki.content;
    let mut key_alg_seq = expect(&mut spki_body, SEQ)?.content;
    let key_alg = expect(&mut key_alg_seq, OID)?.content.to_vec();
    let key_curve = next(&mut key_alg_seq)
        .filter(|t| t.tag == OID)
        .map(|t| t.content.to_vec());
    let key_bits = expect(&mut spki_body, 0x03)?.content.get(1..)?.to_vec();

    let mut c = Cert {
        der: cert.whole.to_vec(),
        tbs: tbs.whole.to_vec(),
        sig_alg,
        signature,
        not_before,
        not_after,
        spki: spki.whole.to_vec(),
        key_alg,
        key_curve,
        key_bits,
        dns_names: Vec::new(),
        ips: Vec::new(),
        is_ca: false,
    };
    while let Some(t) = next(&mut f) {
        if t.tag != 0xa3 {
            continue;
        }
        let mut exts_outer = t.content;
        let mut exts = expect(&mut exts_outer, SEQ)?.content;
        while let Some(ext) = next(&mut exts) {
            let mut e = ext.content;
            let oid = expect(&mut e, OID)?.content;
            let mut value = next(&mut e)?;
            if value.tag == 0x01 {
                value = next(&mut e)?; // critical
            }
            if value.tag != 0x04 {
                return None;
            }
            let mut v = value.content;
            if oid == SAN_OID {
                let mut names = expect(&mut v, SEQ)?.content;
                while let Some(n) = next(&mut names) {
                    match n.tag {
                        0x82 => c
                            .dns_names
                            .push(String::from_utf8_lossy(n.content).into_owned()),
                        0x87 => match n.content.len() {
                            4 => c
                                .ips
                                .push(IpAddr::from(<[u8; 4]>::try_from(n.content).ok()?)),
                            16 => c
                                .ips
                                .push(IpAddr::from(<[u8; 16]>::try_from(n.content).ok()?)),
                            _ => return None,
                        },
                        _ => {}
                    }
                }
            } else if oid == BASIC_CONSTRAINTS_OID {
                let mut bc = expect(&mut v, SEQ)?.content;
                c.is_ca = next(&mut bc).is_some_and(|t| t.tag == 0x01 && t.content == [0xff]);
            }
        }
    }
    Some(c)
}

/// Why a signature could not be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    Valid,
    Invalid,
    /// An algorithm this reader does not know.
    Unsupported,
}

const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const EC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const RSA_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];

impl Cert {
    /// Is `self` signed by the key of `issuer`?
    pub fn signed_by(&self, issuer: &Cert) -> Verify {
        use ring::signature as s;
        let curve = issuer.key_curve.as_deref();
        let alg: &dyn s::VerificationAlgorithm =
            match (self.sig_alg.as_slice(), issuer.key_alg.as_slice(), curve) {
                (ECDSA_SHA256, EC_KEY, Some(P256)) => &s::ECDSA_P256_SHA256_ASN1,
                (ECDSA_SHA384, EC_KEY, Some(P256)) => &s::ECDSA_P256_SHA384_ASN1,
                (ECDSA_SHA256, EC_KEY, Some(P384)) => &s::ECDSA_P384_SHA256_ASN1,
                (ECDSA_SHA384, EC_KEY, Some(P384)) => &s::ECDSA_P384_SHA384_ASN1,
                (RSA_SHA256, RSA_KEY, _) => &s::RSA_PKCS1_2048_8192_SHA256,
                (RSA_SHA384, RSA_KEY, _) => &s::RSA_PKCS1_2048_8192_SHA384,
                (RSA_SHA512, RSA_KEY, _) => &s::RSA_PKCS1_2048_8192_SHA512,
                (ED25519, ED25519, _) => &s::ED25519,
                _ => return Verify::Unsupported,
            };
        match s::UnparsedPublicKey::new(alg, &issuer.key_bits).verify(&self.tbs, &self.signature) {
            Ok(()) => Verify::Valid,
            Err(_) => Verify::Invalid,
        }
    }

    /// Valid at `now`.
    pub fn current(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, IsCa, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};

    fn at(y: i32, mo: u8, d: u8, h: u8, mi: u8, sec: u8) -> OffsetDateTime {
        let date = time::Date::from_calendar_date(y, time::Month::try_from(mo).unwrap(), d);
        time::PrimitiveDateTime::new(date.unwrap(), time::Time::from_hms(h, mi, sec).unwrap())
            .assume_utc()
    }

    #[test]
    fn reads_what_rcgen_writes_and_checks_signatures() {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = at(2030, 1, 2, 3, 4, 5);
        p.not_after = at(2051, 6, 7, 8, 9, 10);
        let ca = p.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut lp = CertificateParams::default();
        lp.subject_alt_names = vec![
            SanType::DnsName("docker".try_into().unwrap()),
            SanType::IpAddress("10.1.2.3".parse().unwrap()),
            SanType::IpAddress("::1".parse().unwrap()),
        ];
        let leaf = lp.signed_by(&leaf_key, &ca, &ca_key).unwrap();

        let ca = parse(ca.der()).unwrap();
        let leaf = parse(leaf.der()).unwrap();
        assert!(ca.is_ca && !leaf.is_ca);
        assert_eq!(ca.not_before, at(2030, 1, 2, 3, 4, 5));
        assert_eq!(ca.not_after, at(2051, 6, 7, 8, 9, 10));
        assert!(!ca.current(OffsetDateTime::now_utc()));
        assert_eq!(leaf.dns_names, ["docker"]);
        assert_eq!(
            leaf.ips,
            [
                "10.1.2.3".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(leaf.signed_by(&ca), Verify::Valid);
        assert_eq!(ca.signed_by(&ca), Verify::Valid);
        // Signed by another key: refused.
        assert_eq!(leaf.signed_by(&leaf), Verify::Invalid);
        assert!(leaf
            .spki
            .windows(65)
            .any(|w| w == leaf_key.public_key_raw()));
        assert!(parse(b"\x30\x03\x02\x01").is_none());
    }
}
