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
//! algorithm); certificates are re-issued every start. When
//! `server/{ca,cert,key}.pem` exist and `ca/key.pem` does not, the user
//! manages the CA: we only check the files and touch nothing.

pub mod pem;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use crate::user::atomic::{write_atomically_with, Ownership};

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
    let (kind, value) = entry.split_once(':').ok_or_else(bad)?;
    if value.is_empty() {
        return Err(bad());
    }
    match kind.to_ascii_uppercase().as_str() {
        "DNS" => Ok(SanType::DnsName(value.try_into().map_err(|_| bad())?)),
        "IP" => Ok(SanType::IpAddress(value.parse().map_err(|_| bad())?)),
        _ => Err(bad()),
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

/// True when `path` exists and is non-empty (shell `[ -s ]`, as upstream).
fn nonempty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    write_atomically_with(path, contents.as_bytes(), Ownership::Mode(mode)).map_err(|source| {
        TlsError::Dir {
            dir: path.parent().unwrap_or(path).to_owned(),
            source,
        }
    })
}

fn ensure_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Dir {
        dir: dir.to_owned(),
        source,
    })
}

/// Load the key at `path` if there is one, else generate a P-256 key and
/// write it with `mode`. Returns the key and whether it was reused.
fn load_or_generate_key(path: &Path, mode: u32) -> Result<(KeyPair, bool), TlsError> {
    if nonempty(path) {
        let key = KeyPair::from_pem(&read(path)?).map_err(|e| TlsError::BadKey {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        return Ok((key, true));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    write(path, &key.serialize_pem(), mode)?;
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

/// Check the user's own server files: all three are PEM of the right kind and
/// the key belongs to the certificate (when the key is PKCS#8, which we can load).
fn verify_user_managed(paths: &TlsPaths) -> Result<(), TlsError> {
    let fail = |path: &Path, detail: &str| TlsError::UserManaged {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let blocks = |path: &Path| -> Result<Vec<pem::PemBlock>, TlsError> {
        pem::parse_pem(&read(path)?).ok_or_else(|| fail(path, "is not valid PEM"))
    };
    for path in [&paths.server_ca, &paths.server_cert] {
        if !blocks(path)?.iter().any(|b| b.label == "CERTIFICATE") {
            return Err(fail(path, "holds no CERTIFICATE block"));
        }
    }
    let key_text = read(&paths.server_key)?;
    let key_blocks =
        pem::parse_pem(&key_text).ok_or_else(|| fail(&paths.server_key, "is not valid PEM"))?;
    if !key_blocks.iter().any(|b| b.label.ends_with("PRIVATE KEY")) {
        return Err(fail(&paths.server_key, "holds no PRIVATE KEY block"));
    }
    if let Ok(key) = KeyPair::from_pem(&key_text) {
        // The certificate embeds the key's SubjectPublicKeyInfo verbatim.
        let spki = key.public_key_der();
        let cert_der = &blocks(&paths.server_cert)?[0].der;
        if !cert_der.windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(fail(
                &paths.server_key,
                "does not match the public key of server/cert.pem",
            ));
        }
    } else {
        tracing::debug!(path = %paths.server_key.display(), "key not PKCS#8: match not checked");
    }
    Ok(())
}

/// Make sure the certificates under `req.dir` exist and are current (see
/// module docs). `now` is the issuing time (pass `OffsetDateTime::now_utc()`).
pub fn ensure_certificates(req: &TlsRequest, now: OffsetDateTime) -> Result<TlsOutcome, TlsError> {
    let paths = TlsPaths::new(&req.dir);
    if nonempty(&paths.server_ca)
        && nonempty(&paths.server_cert)
        && nonempty(&paths.server_key)
        && !nonempty(&paths.ca_key)
    {
        verify_user_managed(&paths)?;
        return Ok(TlsOutcome {
            generated: false,
            reused_keys: true,
            user_managed_ca: true,
        });
    }
    let sans = server_sans(req)?;
    for sub in ["ca", "server", "client"] {
        ensure_dir(&req.dir.join(sub))?;
    }

    let (ca_key, ca_reused) = load_or_generate_key(&paths.ca_key, 0o600)?;
    let mut ca_params = params("ws-init CA", now)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca.pem();

    let (server_key, server_reused) = load_or_generate_key(&paths.server_key, 0o600)?;
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
    let (client_key, client_reused) = load_or_generate_key(&paths.client_key, 0o644)?;
    let client = issue_leaf(
        "ws-init client",
        now,
        ExtendedKeyUsagePurpose::ClientAuth,
        Vec::new(),
        &client_key,
        &ca,
        &ca_key,
    )?;

    write(&paths.ca_cert, &ca_pem, 0o644)?;
    write(&paths.server_ca, &ca_pem, 0o644)?;
    write(&paths.server_cert, &server.pem(), 0o644)?;
    write(&paths.client_ca, &ca_pem, 0o644)?;
    write(&paths.client_cert, &client.pem(), 0o644)?;
    // Upstream chmods it every start, so a reused client key is readable too.
    std::fs::set_permissions(
        &paths.client_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(|source| TlsError::Dir {
        dir: req.dir.join("client"),
        source,
    })?;

    Ok(TlsOutcome {
        generated: true,
        reused_keys: ca_reused && server_reused && client_reused,
        user_managed_ca: false,
    })
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
