//! TLS certificates for dockerd's TCP socket, with the layout and behaviour of
//! docker-library's `dockerd-entrypoint.sh` (design §2):
//!
//! ```text
//! DIR/ca/{key.pem,cert.pem}
//! DIR/server/{key.pem,cert.pem,ca.pem}
//! DIR/client/{key.pem,cert.pem,ca.pem}
//! ```
//!
//! Differences on purpose: ECDSA P-256 keys instead of RSA-4096 (milliseconds
//! instead of seconds at start), and a random serial per certificate. Keys are
//! reused across starts (an existing PKCS#8 key of any algorithm rcgen
//! understands, RSA included, is loaded and keeps signing with its own
//! algorithm). Certificates are kept as they are while they are usable: every
//! file there, keys matching, the chain verifying, not expired (nor within
//! `RENEW_BEFORE_DAYS` of it) and the server's SANs covering what the
//! workspace wants; otherwise they are re-issued. (Design §2 said "re-issued
//! every start": changed so a read-only cert dir works.) A read-only dir whose
//! only fault is a missing SAN or near expiry is used with a warning; one
//! with unusable certificates is an error naming what is wrong. When
//! `server/{ca,cert,key}.pem` exist and `ca/key.pem` does not, the user
//! manages the CA: we only check the files and touch nothing.
//!
//! No link is followed in a cert dir other users can write: files are opened
//! with `O_NOFOLLOW` relative to the opened directory, modes changed on the
//! open file, and a link where a key should be is replaced.

pub mod x509;

use crate::config::San;
use std::ffi::OsStr;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use crate::user::atomic::{Dir, Ownership};

/// Validity of every certificate, as upstream.
pub const VALIDITY_DAYS: i64 = 825;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRequest {
    /// `DOCKER_TLS_CERTDIR`.
    pub dir: PathBuf,
    /// Full hostname (`/etc/hostname`); its first label is added as well.
    pub hostname: String,
    /// Every interface address, loopback included.
    pub ips: Vec<IpAddr>,
    /// `DOCKER_TLS_SAN` entries, each `DNS:name` or `IP:addr`.
    pub extra_sans: Vec<String>,
}

/// What `ensure_certificates` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsOutcome {
    /// Certificates were (re)issued.
    pub generated: bool,
    /// All three keys existed and were reused (none generated).
    pub reused_keys: bool,
    /// The user manages the CA; files only checked.
    pub user_managed_ca: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot create or write certificate directory {dir}: {source}; mount a writable volume \
         there or point DOCKER_TLS_CERTDIR at a writable directory"
    )]
    Dir { dir: PathBuf, source: io::Error },
    #[error(
        "cannot read {path}: {source}; make DOCKER_TLS_CERTDIR readable by root, or delete the \
         file to have it regenerated"
    )]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "cannot use existing key {path}: {detail}; it must be an unencrypted PKCS#8 PEM key \
         (\"BEGIN PRIVATE KEY\"); delete it to have a new one generated"
    )]
    BadKey { path: PathBuf, detail: String },
    #[error(
        "user-managed CA: {path} {detail}; provide valid server/ca.pem, server/cert.pem and \
         server/key.pem, or remove them to let ws-init generate a CA"
    )]
    UserManaged { path: PathBuf, detail: String },
    #[error(
        "invalid DOCKER_TLS_SAN entry {entry:?}: each entry needs a DNS: or IP: prefix, \
         e.g. DOCKER_TLS_SAN=\"DNS:myhost IP:10.0.0.5\""
    )]
    BadSan { entry: String },
    #[error(
        "the certificates in {dir} cannot be used: {problems}; and they cannot be re-issued          ({cause}); put valid ones there (or remove ca/, server/ and client/ to get new ones)          and make DOCKER_TLS_CERTDIR writable"
    )]
    Unusable {
        dir: PathBuf,
        problems: String,
        cause: String,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("no random bytes from the kernel for a serial number: {0}")]
    Random(io::Error),
}

/// Paths of the generated files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    pub ca_key: PathBuf,
    pub ca_cert: PathBuf,
    pub server_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_ca: PathBuf,
    pub client_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_ca: PathBuf,
}

impl TlsPaths {
    pub fn new(dir: &Path) -> Self {
        TlsPaths {
            ca_key: dir.join("ca/key.pem"),
            ca_cert: dir.join("ca/cert.pem"),
            server_key: dir.join("server/key.pem"),
            server_cert: dir.join("server/cert.pem"),
            server_ca: dir.join("server/ca.pem"),
            client_key: dir.join("client/key.pem"),
            client_cert: dir.join("client/cert.pem"),
            client_ca: dir.join("client/ca.pem"),
        }
    }
}

/// Parse one `DOCKER_TLS_SAN` entry (`DNS:x` or `IP:y`, prefix case-insensitive).
pub fn parse_san(entry: &str) -> Result<SanType, TlsError> {
    let bad = || TlsError::BadSan {
        entry: entry.to_owned(),
    };
    match crate::config::parse_san(entry).ok_or_else(bad)? {
        San::Dns(name) => Ok(SanType::DnsName(name.try_into().map_err(|_| bad())?)),
        San::Ip(ip) => Ok(SanType::IpAddress(ip)),
    }
}

/// The server certificate's SANs: interface IPs, hostname (full and short),
/// `docker`, `localhost`, then `DOCKER_TLS_SAN`; duplicates dropped, order kept.
pub fn server_sans(req: &TlsRequest) -> Result<Vec<SanType>, TlsError> {
    let mut sans: Vec<SanType> = req.ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
    let short = req.hostname.split('.').next().unwrap_or_default();
    for name in [req.hostname.as_str(), short, "docker", "localhost"] {
        if !name.is_empty() {
            sans.push(parse_san(&format!("DNS:{name}"))?);
        }
    }
    for entry in &req.extra_sans {
        sans.push(parse_san(entry)?);
    }
    let mut unique = Vec::with_capacity(sans.len());
    for san in sans {
        if !unique.contains(&san) {
            unique.push(san);
        }
    }
    Ok(unique)
}

/// Certificates kept as they are until they have less than this left.
pub const RENEW_BEFORE_DAYS: i64 = 30;

/// The certificate directory, opened once; every file is reached through it
/// and its sub-directories, never by a path a user could redirect.
struct CertDir {
    root: Dir,
    /// Links may be followed: only root can write here (a Kubernetes secret
    /// volume links every file into `..data/`). Elsewhere a link is never
    /// followed: a user could point it at any file of root's.
    follow: bool,
}

fn split_rel(rel: &str) -> (&str, &OsStr) {
    let (d, f) = rel.split_once('/').expect("sub/file");
    (d, OsStr::new(f))
}

impl CertDir {
    fn open(dir: &Path) -> Result<CertDir, TlsError> {
        let dir_err = |source| TlsError::Dir {
            dir: dir.to_owned(),
            source,
        };
        let root = match Dir::open(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(dir_err)?;
                Dir::open(dir)
            }
            other => other,
        }
        .map_err(dir_err)?;
        let follow = root.is_root_only();
        Ok(CertDir { root, follow })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn sub(&self, name: &str, create: bool) -> io::Result<Dir> {
        if self.follow {
            let path = self.root.path().join(name);
            if create {
                std::fs::create_dir_all(&path)?;
            }
            Dir::open(&path)
        } else {
            self.root.open_sub(name, create)
        }
    }

    fn read_bytes(&self, rel: &str) -> io::Result<Vec<u8>> {
        let (d, f) = split_rel(rel);
        let sub = self.sub(d, false)?;
        let follow = self.follow && sub.is_root_only();
        sub.read(f, follow)
    }

    fn read(&self, rel: &str) -> Result<String, TlsError> {
        self.read_bytes(rel)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|source| TlsError::Read {
                path: self.path(rel),
                source,
            })
    }

    /// Shell `[ -s ]`, as upstream; something unreadable counts as there
    /// (reading it then names the problem).
    fn present(&self, rel: &str) -> bool {
        match self.read_bytes(rel) {
            Ok(b) => !b.is_empty(),
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        }
    }

    fn write(&self, rel: &str, contents: &str, mode: u32) -> Result<(), TlsError> {
        let (d, f) = split_rel(rel);
        self.sub(d, true)
            .and_then(|sub| sub.write_atomically(f, contents.as_bytes(), Ownership::Mode(mode)))
            .map_err(|source| TlsError::Dir {
                dir: self.path(d),
                source,
            })
    }

    /// Sets `rel`'s mode on the open file; a link is left alone.
    fn chmod(&self, rel: &str, mode: u32) -> Result<(), TlsError> {
        let (d, f) = split_rel(rel);
        let err = |source| TlsError::Dir {
            dir: self.path(d),
            source,
        };
        let sub = self.sub(d, false).map_err(err)?;
        match sub.open_file(f, libc::O_RDONLY, 0) {
            Ok(file) => file
                .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(err),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                tracing::debug!(
                    "{} is a link: its mode is left as it is",
                    self.path(rel).display()
                );
                Ok(())
            }
            Err(e) => Err(err(e)),
        }
    }

    /// The first certificate in `rel`, or what is wrong with it.
    fn cert(&self, rel: &str) -> Result<x509::Cert, String> {
        let text = self.read_bytes(rel).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!("{rel} is missing"),
            _ => format!("{rel} cannot be read ({e})"),
        })?;
        let blocks = pem::parse_many(&text).map_err(|_| format!("{rel} is not valid PEM"))?;
        let block = blocks
            .iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| format!("{rel} holds no CERTIFICATE block"))?;
        x509::parse(block.contents())
            .ok_or_else(|| format!("{rel} is not a certificate ws-init can read"))
    }
}

/// What is wrong with certificates found in place: `hard` problems make
/// them unusable; `soft` ones (a missing SAN, near expiry) are worth
/// re-issuing for, but they still work.
#[derive(Debug, Default)]
struct Problems {
    hard: Vec<String>,
    soft: Vec<String>,
}

fn date(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day())
}

/// Validity of `cert` at `now`, as problems.
fn check_validity(rel: &str, cert: &x509::Cert, now: OffsetDateTime, p: &mut Problems) {
    if now > cert.not_after {
        p.hard
            .push(format!("{rel} expired on {}", date(cert.not_after)));
    } else if now < cert.not_before {
        p.hard.push(format!(
            "{rel} is not valid before {}",
            date(cert.not_before)
        ));
    } else if cert.not_after - now < Duration::days(RENEW_BEFORE_DAYS) {
        p.soft
            .push(format!("{rel} expires on {}", date(cert.not_after)));
    }
}

/// The wanted SANs the server certificate lacks, as `DNS:x`/`IP:y`.
fn missing_sans(cert: &x509::Cert, sans: &[SanType]) -> Vec<String> {
    sans.iter()
        .filter_map(|san| match san {
            SanType::DnsName(n) => {
                let n = n.as_str();
                (!cert.dns_names.iter().any(|d| d.eq_ignore_ascii_case(n)))
                    .then(|| format!("DNS:{n}"))
            }
            SanType::IpAddress(ip) => (!cert.ips.contains(ip)).then(|| format!("IP:{ip}")),
            _ => None,
        })
        .collect()
}

/// Does the PKCS#8 key in `key_rel` belong to `cert`? `Err` says why the
/// key cannot be checked (missing, unreadable, not a key rcgen can load).
fn key_matches(dir: &CertDir, key_rel: &str, cert: &x509::Cert) -> Result<bool, String> {
    let text = dir.read_bytes(key_rel).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("{key_rel} is missing"),
        _ => format!("{key_rel} cannot be read ({e})"),
    })?;
    let key = KeyPair::from_pem(&String::from_utf8_lossy(&text))
        .map_err(|e| format!("{key_rel} is not a key ws-init can use ({e})"))?;
    // The certificate embeds the key's SubjectPublicKeyInfo verbatim.
    let spki = key.public_key_der();
    Ok(cert.spki.windows(spki.len()).any(|w| w == spki.as_slice()))
}

/// Checks the full layout ws-init generates (see module docs).
fn assess_generated(dir: &CertDir, sans: &[SanType], now: OffsetDateTime) -> Problems {
    let mut p = Problems::default();
    let load = |rel: &str, p: &mut Problems| dir.cert(rel).map_err(|e| p.hard.push(e)).ok();
    let ca = load("ca/cert.pem", &mut p);
    let server = load("server/cert.pem", &mut p);
    let client = load("client/cert.pem", &mut p);
    let copies = ["server/ca.pem", "client/ca.pem"].map(|rel| (rel, load(rel, &mut p)));
    let (Some(ca), Some(server), Some(client)) = (ca, server, client) else {
        return p;
    };
    for (rel, copy) in copies {
        if copy.is_some_and(|c| c.der != ca.der) {
            p.hard.push(format!("{rel} differs from ca/cert.pem"));
        }
    }
    for (key, rel, cert) in [
        ("ca/key.pem", "ca/cert.pem", &ca),
        ("server/key.pem", "server/cert.pem", &server),
        ("client/key.pem", "client/cert.pem", &client),
    ] {
        match key_matches(dir, key, cert) {
            Ok(true) => {}
            Ok(false) => p.hard.push(format!("{key} does not belong to {rel}")),
            Err(e) => p.hard.push(e),
        }
    }
    if !ca.is_ca || ca.signed_by(&ca) != x509::Verify::Valid {
        p.hard
            .push("ca/cert.pem is not a CA certificate signed by ca/key.pem".into());
    }
    for (rel, cert) in [("server/cert.pem", &server), ("client/cert.pem", &client)] {
        if cert.signed_by(&ca) != x509::Verify::Valid {
            p.hard
                .push(format!("{rel} is not signed by ca/cert.pem (broken chain)"));
        }
    }
    for (rel, cert) in [
        ("ca/cert.pem", &ca),
        ("server/cert.pem", &server),
        ("client/cert.pem", &client),
    ] {
        check_validity(rel, cert, now, &mut p);
    }
    for san in missing_sans(&server, sans) {
        p.soft.push(format!("server/cert.pem lacks the SAN {san}"));
    }
    p
}

/// Load the key at `rel` if there is one, else generate a P-256 key and
/// write it with `mode`. A link where the key should be (in a directory
/// other users can write) is replaced, with a warning. Returns the key and
/// whether it was reused.
fn load_or_generate_key(dir: &CertDir, rel: &str, mode: u32) -> Result<(KeyPair, bool), TlsError> {
    match dir.read_bytes(rel) {
        Ok(b) if !b.is_empty() => {
            let key =
                KeyPair::from_pem(&String::from_utf8_lossy(&b)).map_err(|e| TlsError::BadKey {
                    path: dir.path(rel),
                    detail: e.to_string(),
                })?;
            return Ok((key, true));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            tracing::warn!("{}: {e}; a new key replaces it", dir.path(rel).display())
        }
        Err(source) => {
            return Err(TlsError::Read {
                path: dir.path(rel),
                source,
            })
        }
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    dir.write(rel, &key.serialize_pem(), mode)?;
    Ok((key, false))
}

fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    // The raw system call, not libc's wrapper: in the static-pie musl build
    // with LTO the wrapper's symbol resolved to address 0 (SIGSEGV at start).
    // SAFETY: the buffer is valid for its length; getrandom writes at most that.
    let n = unsafe { libc::syscall(libc::SYS_getrandom, bytes.as_mut_ptr(), bytes.len(), 0) };
    if n != bytes.len() as libc::c_long {
        return Err(TlsError::Random(io::Error::last_os_error()));
    }
    // Positive and without leading zero byte: a canonical 16-byte INTEGER.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn params(common_name: &str, now: OffsetDateTime) -> Result<CertificateParams, TlsError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    // A minute back: clients whose clock is slightly behind still accept it.
    p.not_before = now - Duration::minutes(1);
    p.not_after = now + Duration::days(VALIDITY_DAYS);
    p.serial_number = Some(random_serial()?);
    Ok(p)
}

fn issue_leaf(
    common_name: &str,
    now: OffsetDateTime,
    eku: ExtendedKeyUsagePurpose,
    sans: Vec<SanType>,
    key: &KeyPair,
    ca: &Certificate,
    ca_key: &KeyPair,
) -> Result<Certificate, TlsError> {
    let mut p = params(common_name, now)?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    p.subject_alt_names = sans;
    p.use_authority_key_identifier_extension = true;
    Ok(p.signed_by(key, ca, ca_key)?)
}

/// Check the user's own server files: all three are PEM of the right kind,
/// the key belongs to the certificate (when the key is PKCS#8, which we can
/// load), the certificate is current and signed by `server/ca.pem` (when its
/// algorithm is one we can check). Missing SANs are warned about.
fn verify_user_managed(
    dir: &CertDir,
    sans: &[SanType],
    now: OffsetDateTime,
) -> Result<(), TlsError> {
    let fail = |rel: &str, detail: &str| TlsError::UserManaged {
        path: dir.path(rel),
        detail: detail.to_owned(),
    };
    let blocks = |rel: &str| -> Result<Vec<pem::Pem>, TlsError> {
        pem::parse_many(dir.read(rel)?).map_err(|_| fail(rel, "is not valid PEM"))
    };
    for rel in ["server/ca.pem", "server/cert.pem"] {
        if !blocks(rel)?.iter().any(|b| b.tag() == "CERTIFICATE") {
            return Err(fail(rel, "holds no CERTIFICATE block"));
        }
    }
    let key_text = dir.read("server/key.pem")?;
    let key_blocks =
        pem::parse_many(&key_text).map_err(|_| fail("server/key.pem", "is not valid PEM"))?;
    if !key_blocks.iter().any(|b| b.tag().ends_with("PRIVATE KEY")) {
        return Err(fail("server/key.pem", "holds no PRIVATE KEY block"));
    }
    let cert_blocks = blocks("server/cert.pem")?;
    let cert_der = cert_blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .expect("checked above")
        .contents();
    if let Ok(key) = KeyPair::from_pem(&key_text) {
        let spki = key.public_key_der();
        if !cert_der.windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(fail(
                "server/key.pem",
                "does not match the public key of server/cert.pem",
            ));
        }
    } else {
        tracing::debug!("server/key.pem not PKCS#8: match not checked");
    }
    let Some(cert) = x509::parse(cert_der) else {
        tracing::debug!("server/cert.pem: not parsed; validity and chain not checked");
        return Ok(());
    };
    let mut p = Problems::default();
    check_validity("server/cert.pem", &cert, now, &mut p);
    if let Some(e) = p.hard.first() {
        let detail = e.trim_start_matches("server/cert.pem ");
        return Err(fail("server/cert.pem", detail));
    }
    // The issuer is in server/ca.pem, or an intermediate after the leaf.
    let issuers: Vec<x509::Cert> = blocks("server/ca.pem")?
        .iter()
        .chain(cert_blocks.iter().skip(1))
        .filter(|b| b.tag() == "CERTIFICATE")
        .filter_map(|b| x509::parse(b.contents()))
        .collect();
    let verdicts: Vec<x509::Verify> = issuers.iter().map(|i| cert.signed_by(i)).collect();
    if !verdicts.is_empty() && verdicts.iter().all(|v| *v == x509::Verify::Invalid) {
        return Err(fail(
            "server/cert.pem",
            "is not signed by a certificate in server/ca.pem (broken chain)",
        ));
    }
    for problem in p.soft {
        tracing::warn!("user-managed TLS: {problem}; renew it in time");
    }
    let missing = missing_sans(&cert, sans);
    if !missing.is_empty() {
        tracing::warn!(
            "user-managed TLS: server/cert.pem in {} lacks the SAN(s) {}; clients that connect \
             by those names or addresses will fail to verify it (add them to the certificate)",
            dir.root.path().display(),
            missing.join(" ")
        );
    }
    Ok(())
}

/// Issue new certificates with the keys in place (generated if missing).
fn issue(dir: &CertDir, sans: Vec<SanType>, now: OffsetDateTime) -> Result<TlsOutcome, TlsError> {
    let (ca_key, ca_reused) = load_or_generate_key(dir, "ca/key.pem", 0o600)?;
    let mut ca_params = params("ws-init CA", now)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca.pem();

    let (server_key, server_reused) = load_or_generate_key(dir, "server/key.pem", 0o600)?;
    let server = issue_leaf(
        "ws-init server",
        now,
        ExtendedKeyUsagePurpose::ServerAuth,
        sans,
        &server_key,
        &ca,
        &ca_key,
    )?;
    // Readable by all: client containers sharing the volume run as any user.
    let (client_key, client_reused) = load_or_generate_key(dir, "client/key.pem", 0o644)?;
    let client = issue_leaf(
        "ws-init client",
        now,
        ExtendedKeyUsagePurpose::ClientAuth,
        Vec::new(),
        &client_key,
        &ca,
        &ca_key,
    )?;

    dir.write("ca/cert.pem", &ca_pem, 0o644)?;
    dir.write("server/ca.pem", &ca_pem, 0o644)?;
    dir.write("server/cert.pem", &server.pem(), 0o644)?;
    dir.write("client/ca.pem", &ca_pem, 0o644)?;
    dir.write("client/cert.pem", &client.pem(), 0o644)?;
    // Upstream chmods it every start, so a reused client key is readable
    // too; on the open file, so a link there cannot redirect it.
    dir.chmod("client/key.pem", 0o644)?;

    Ok(TlsOutcome {
        generated: true,
        reused_keys: ca_reused && server_reused && client_reused,
        user_managed_ca: false,
    })
}

/// Make sure the certificates under `req.dir` exist and are usable (see
/// module docs). `now` is the issuing time (pass `OffsetDateTime::now_utc()`).
pub fn ensure_certificates(req: &TlsRequest, now: OffsetDateTime) -> Result<TlsOutcome, TlsError> {
    let sans = server_sans(req)?;
    let dir = CertDir::open(&req.dir)?;
    if dir.present("server/ca.pem")
        && dir.present("server/cert.pem")
        && dir.present("server/key.pem")
        && !dir.present("ca/key.pem")
    {
        verify_user_managed(&dir, &sans, now)?;
        return Ok(TlsOutcome {
            generated: false,
            reused_keys: true,
            user_managed_ca: true,
        });
    }
    let found = assess_generated(&dir, &sans, now);
    if found.hard.is_empty() && found.soft.is_empty() {
        return Ok(TlsOutcome {
            generated: false,
            reused_keys: true,
            user_managed_ca: false,
        });
    }
    let nothing_there = found.hard.iter().all(|h| h.ends_with(" is missing"));
    if !nothing_there {
        let why: Vec<&String> = found.hard.iter().chain(&found.soft).collect();
        tracing::info!(
            "re-issuing the certificates in {}: {}",
            req.dir.display(),
            why.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    match issue(&dir, sans, now) {
        Err(TlsError::Dir {
            dir: where_,
            source,
        }) if found.hard.is_empty() => {
            tracing::warn!(
                "keeping the certificates in {} as they are: {}; they cannot be re-issued \
                 ({}: {source}); clients connecting by a missing name or address fail to verify \
                 the server (make DOCKER_TLS_CERTDIR writable, or issue certificates with those \
                 SANs)",
                req.dir.display(),
                found.soft.join("; "),
                where_.display()
            );
            Ok(TlsOutcome {
                generated: false,
                reused_keys: true,
                user_managed_ca: false,
            })
        }
        Err(TlsError::Dir {
            dir: where_,
            source,
        }) if !nothing_there => Err(TlsError::Unusable {
            dir: req.dir.clone(),
            problems: found.hard.join("; "),
            cause: format!("{}: {source}", where_.display()),
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(dir: &Path) -> TlsRequest {
        TlsRequest {
            dir: dir.to_owned(),
            hostname: "ws1.example.org".into(),
            ips: vec!["127.0.0.1".parse().unwrap(), "172.17.0.2".parse().unwrap()],
            extra_sans: vec!["DNS:extra.test".into(), "ip:10.1.2.3".into()],
        }
    }

    #[test]
    fn san_parsing() {
        assert!(matches!(parse_san("DNS:a.b").unwrap(), SanType::DnsName(_)));
        assert_eq!(
            parse_san("IP:::1").unwrap(),
            SanType::IpAddress("::1".parse().unwrap())
        );
        for bad in ["a.b", "DNS:", "IP:not-an-ip", "URI:x", ":x"] {
            let e = parse_san(bad).unwrap_err().to_string();
            assert!(e.contains("DNS: or IP: prefix"), "{bad}: {e}");
        }
    }

    #[test]
    fn sans_in_order_without_duplicates() {
        let mut r = req(Path::new("/x"));
        r.extra_sans.push("DNS:docker".into());
        r.ips.push("127.0.0.1".parse().unwrap());
        let sans = server_sans(&r).unwrap();
        let want: Vec<SanType> = [
            "IP:127.0.0.1",
            "IP:172.17.0.2",
            "DNS:ws1.example.org",
            "DNS:ws1",
            "DNS:docker",
            "DNS:localhost",
            "DNS:extra.test",
            "IP:10.1.2.3",
        ]
        .iter()
        .map(|s| parse_san(s).unwrap())
        .collect();
        assert_eq!(sans, want);
    }

    #[test]
    fn unwritable_dir_names_the_dir_and_fix() {
        let tmp = tempfile::tempdir().unwrap();
        // A file where the directory should be: fails even for root.
        let blocker = tmp.path().join("certs");
        std::fs::write(&blocker, "").unwrap();
        let e = ensure_certificates(&req(&blocker), OffsetDateTime::now_utc())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&blocker.display().to_string()), "{e}");
        assert!(e.contains("DOCKER_TLS_CERTDIR"), "{e}");
    }

    #[test]
    fn garbage_key_is_refused_with_fix() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("ca")).unwrap();
        std::fs::write(tmp.path().join("ca/key.pem"), "not a key").unwrap();
        let e = ensure_certificates(&req(tmp.path()), OffsetDateTime::now_utc())
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca/key.pem") && e.contains("delete it"), "{e}");
    }
}
