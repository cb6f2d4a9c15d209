//! Certificates checked by the real `openssl` CLI, and a real TLS handshake
//! (`openssl s_server` / `s_client` on 127.0.0.1) with mutual authentication.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use time::OffsetDateTime;
use ws_init::tls::{ensure_certificates, TlsOutcome, TlsRequest};

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have_openssl() -> bool {
    let ok = Command::new("openssl").arg("version").output().is_ok();
    if !ok {
        eprintln!("SKIP: no openssl CLI (apt-get install -y openssl)");
    }
    ok
}

fn request(dir: &Path) -> TlsRequest {
    TlsRequest {
        dir: dir.to_owned(),
        hostname: "ws1.example.org".into(),
        ips: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        extra_sans: vec!["DNS:extra.test".into(), "IP:10.9.8.7".into()],
    }
}

fn p(dir: &Path, rel: &str) -> String {
    dir.join(rel).display().to_string()
}

fn x509_text(dir: &Path, rel: &str) -> String {
    openssl(&["x509", "-noout", "-text", "-in", &p(dir, rel)])
}

fn pubkey(dir: &Path, rel: &str) -> String {
    openssl(&["pkey", "-pubout", "-in", &p(dir, rel)])
}

fn serial(dir: &Path, rel: &str) -> String {
    openssl(&["x509", "-noout", "-serial", "-in", &p(dir, rel)])
}

fn mode(dir: &Path, rel: &str) -> u32 {
    std::fs::metadata(dir.join(rel)).unwrap().mode() & 0o7777
}

#[test]
fn generated_certificates_verify_with_openssl() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let start = Instant::now();
    let out = ensure_certificates(&request(&dir), OffsetDateTime::now_utc()).unwrap();
    println!(
        "generated CA, server and client (keys and certificates) in {:?}",
        start.elapsed()
    );
    assert_eq!(
        out,
        TlsOutcome {
            generated: true,
            reused_keys: false,
            user_managed_ca: false
        }
    );

    for leaf in ["server/cert.pem", "client/cert.pem"] {
        let v = openssl(&["verify", "-CAfile", &p(&dir, "ca/cert.pem"), &p(&dir, leaf)]);
        assert!(v.contains(": OK"), "{v}");
    }
    for ca in ["server/ca.pem", "client/ca.pem"] {
        assert_eq!(
            std::fs::read(dir.join(ca)).unwrap(),
            std::fs::read(dir.join("ca/cert.pem")).unwrap()
        );
    }

    let ca = x509_text(&dir, "ca/cert.pem");
    assert!(ca.contains("CA:TRUE"), "{ca}");
    assert!(ca.contains("X509v3 Key Usage: critical"), "{ca}");
    assert!(ca.contains("Digital Signature, Certificate Sign"), "{ca}");
    assert!(
        ca.contains("ecdsa-with-SHA256") && ca.contains("prime256v1"),
        "{ca}"
    );

    let server = x509_text(&dir, "server/cert.pem");
    assert!(server.contains("TLS Web Server Authentication"), "{server}");
    assert!(
        !server.contains("TLS Web Client Authentication"),
        "{server}"
    );
    for san in [
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        "DNS:ws1.example.org",
        "DNS:ws1,",
        "DNS:docker",
        "DNS:localhost",
        "DNS:extra.test",
        "IP Address:10.9.8.7",
    ] {
        assert!(server.contains(san), "missing {san}: {server}");
    }
    let client = x509_text(&dir, "client/cert.pem");
    assert!(client.contains("TLS Web Client Authentication"), "{client}");
    assert!(
        !client.contains("TLS Web Server Authentication"),
        "{client}"
    );

    // 825 days of validity.
    let end = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &(824 * 86400).to_string(),
        "-in",
        &p(&dir, "server/cert.pem"),
    ]);
    assert!(end.contains("will not expire"), "{end}");
    let c = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-checkend",
            &(826 * 86400).to_string(),
            "-in",
        ])
        .arg(dir.join("server/cert.pem"))
        .output()
        .unwrap();
    assert!(!c.status.success(), "should expire before 826 days");

    assert_eq!(mode(&dir, "ca/key.pem"), 0o600);
    assert_eq!(mode(&dir, "server/key.pem"), 0o600);
    assert_eq!(mode(&dir, "client/key.pem"), 0o644);
    for cert in [
        "ca/cert.pem",
        "server/cert.pem",
        "server/ca.pem",
        "client/cert.pem",
    ] {
        assert_eq!(mode(&dir, cert), 0o644, "{cert}");
    }
}

#[test]
fn valid_certificates_are_kept_and_reissued_with_the_same_keys_when_they_fall_short() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ensure_certificates(&request(dir), OffsetDateTime::now_utc()).unwrap();
    let keys = ["ca/key.pem", "server/key.pem", "client/key.pem"];
    let certs = ["ca/cert.pem", "server/cert.pem", "client/cert.pem"];
    let before: Vec<String> = keys.iter().map(|k| pubkey(dir, k)).collect();
    let serials: Vec<String> = certs.iter().map(|c| serial(dir, c)).collect();
    let mtimes: Vec<i64> = certs
        .iter()
        .map(|c| std::fs::metadata(dir.join(c)).unwrap().mtime_nsec())
        .collect();

    // Valid and as wanted: kept, not even rewritten.
    let out = ensure_certificates(&request(dir), OffsetDateTime::now_utc()).unwrap();
    assert!(!out.generated && out.reused_keys, "{out:?}");
    for (i, c) in certs.iter().enumerate() {
        assert_eq!(serial(dir, c), serials[i], "{c} re-issued");
        let m = std::fs::metadata(dir.join(c)).unwrap().mtime_nsec();
        assert_eq!(m, mtimes[i], "{c} rewritten");
    }

    // The workspace has a new address: re-issued, with the same keys.
    let mut req = request(dir);
    req.ips.push("10.20.30.40".parse().unwrap());
    let out = ensure_certificates(&req, OffsetDateTime::now_utc()).unwrap();
    assert!(out.generated && out.reused_keys, "{out:?}");
    let after: Vec<String> = keys.iter().map(|k| pubkey(dir, k)).collect();
    assert_eq!(before, after);
    for (i, c) in certs.iter().enumerate() {
        assert_ne!(serial(dir, c), serials[i], "{c} not re-issued");
    }
    assert!(x509_text(dir, "server/cert.pem").contains("IP Address:10.20.30.40"));
    let v = openssl(&[
        "verify",
        "-CAfile",
        &p(dir, "ca/cert.pem"),
        &p(dir, "server/cert.pem"),
    ]);
    assert!(v.contains(": OK"), "{v}");

    // Expired (issued 900 days ago): re-issued.
    let old = OffsetDateTime::now_utc() - time::Duration::days(900);
    let tmp2 = tempfile::tempdir().unwrap();
    ensure_certificates(&request(tmp2.path()), old).unwrap();
    let out = ensure_certificates(&request(tmp2.path()), OffsetDateTime::now_utc()).unwrap();
    assert!(out.generated, "{out:?}");
    let c = Command::new("openssl")
        .args(["x509", "-noout", "-checkend", "86400", "-in"])
        .arg(tmp2.path().join("server/cert.pem"))
        .output()
        .unwrap();
    assert!(c.status.success(), "still expired");

    // A server certificate from another CA (broken chain): re-issued.
    let tmp3 = tempfile::tempdir().unwrap();
    ensure_certificates(&request(tmp3.path()), OffsetDateTime::now_utc()).unwrap();
    std::fs::copy(
        tmp3.path().join("server/cert.pem"),
        dir.join("server/cert.pem"),
    )
    .unwrap();
    std::fs::copy(
        tmp3.path().join("server/key.pem"),
        dir.join("server/key.pem"),
    )
    .unwrap();
    let out = ensure_certificates(&req, OffsetDateTime::now_utc()).unwrap();
    assert!(out.generated, "{out:?}");
    let v = openssl(&[
        "verify",
        "-CAfile",
        &p(dir, "ca/cert.pem"),
        &p(dir, "server/cert.pem"),
    ]);
    assert!(v.contains(": OK"), "{v}");
}

#[test]
fn existing_rsa_key_from_upstream_is_reused() {
    if !have_openssl() {
        return;
    }
    // docker:dind users upgrading keep their RSA CA key (OpenSSL 3 writes PKCS#8).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("ca")).unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &p(dir, "ca/key.pem"),
    ]);
    let before = pubkey(dir, "ca/key.pem");
    ensure_certificates(&request(dir), OffsetDateTime::now_utc()).unwrap();
    assert_eq!(pubkey(dir, "ca/key.pem"), before);
    let v = openssl(&[
        "verify",
        "-CAfile",
        &p(dir, "ca/cert.pem"),
        &p(dir, "client/cert.pem"),
    ]);
    assert!(v.contains(": OK"), "{v}");
    assert!(x509_text(dir, "server/cert.pem").contains("sha256WithRSAEncryption"));
}

#[test]
fn user_managed_ca_is_verified_and_untouched() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The user's own PKI: generate once, then remove the CA key as a user would.
    ensure_certificates(&request(dir), OffsetDateTime::now_utc()).unwrap();
    std::fs::remove_file(dir.join("ca/key.pem")).unwrap();
    let files = [
        "server/ca.pem",
        "server/cert.pem",
        "server/key.pem",
        "client/cert.pem",
    ];
    let snapshot: Vec<(Vec<u8>, i64)> = files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(dir.join(f)).unwrap();
            (std::fs::read(dir.join(f)).unwrap(), m.mtime_nsec())
        })
        .collect();
    let out = ensure_certificates(&request(dir), OffsetDateTime::now_utc()).unwrap();
    assert_eq!(
        out,
        TlsOutcome {
            generated: false,
            reused_keys: true,
            user_managed_ca: true
        }
    );
    for (f, (bytes, mtime)) in files.iter().zip(&snapshot) {
        let m = std::fs::metadata(dir.join(f)).unwrap();
        assert_eq!(&std::fs::read(dir.join(f)).unwrap(), bytes, "{f} changed");
        assert_eq!(m.mtime_nsec(), *mtime, "{f} rewritten");
    }
    assert!(!dir.join("ca/key.pem").exists());

    // A key that does not belong to the certificate is refused.
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p(dir, "server/key.pem"),
    ]);
    let e = ensure_certificates(&request(dir), OffsetDateTime::now_utc())
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match"), "{e}");
    // A certificate file that is not PEM is refused too.
    std::fs::write(dir.join("server/cert.pem"), "garbage").unwrap();
    let e = ensure_certificates(&request(dir), OffsetDateTime::now_utc())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server/cert.pem") && e.contains("CERTIFICATE"),
        "{e}"
    );
    // A CERTIFICATE block whose body is not base64 is not PEM.
    std::fs::write(
        dir.join("server/cert.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = ensure_certificates(&request(dir), OffsetDateTime::now_utc())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server/cert.pem") && e.contains("is not valid PEM"),
        "{e}"
    );
}

#[test]
fn mutual_tls_handshake_with_openssl() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ensure_certificates(&request(dir), OffsetDateTime::now_utc()).unwrap();
    // A free loopback port (tiny race with s_server binding it; acceptable in a test).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-accept", &port.to_string(), "-naccept", "1"])
        .args(["-Verify", "1", "-verify_return_error"])
        .args([
            "-cert",
            &p(dir, "server/cert.pem"),
            "-key",
            &p(dir, "server/key.pem"),
        ])
        .args(["-CAfile", &p(dir, "server/ca.pem")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // s_server quits at EOF on its stdin: keep the pipe open until the end.
    let _server_stdin = server.stdin.take().unwrap();
    // s_server prints ACCEPT once it listens.
    let mut server_out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ACCEPT") {
        line.clear();
        assert!(
            server_out.read_line(&mut line).unwrap() > 0,
            "s_server exited"
        );
    }
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-verify_return_error",
        ])
        .args([
            "-verify_hostname",
            "docker",
            "-CAfile",
            &p(dir, "client/ca.pem"),
        ])
        .args([
            "-cert",
            &p(dir, "client/cert.pem"),
            "-key",
            &p(dir, "client/key.pem"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    client.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let c = client.wait_with_output().unwrap();
    let mut sout = String::new();
    server_out.read_to_string(&mut sout).unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let cout = String::from_utf8_lossy(&c.stdout);
    assert!(
        c.status.success(),
        "client failed: {cout}{}",
        String::from_utf8_lossy(&c.stderr)
    );
    assert!(cout.contains("Verify return code: 0 (ok)"), "{cout}");
    assert!(
        sout.contains("CN = ws-init client") || sout.contains("CN=ws-init client"),
        "server saw: {sout}"
    );
}
