//! What ws-init does as root cannot be steered by files a user controls
//! (issue 12): the dockerd log, the certificate directory, the group files,
//! the configuration and the programs it runs. As root, in temporary
//! directories; the read-only and full-disk cases in a private mount
//! namespace of the test's own thread.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Mode, Spec};
use nix::mount::{mount, MsFlags};
use time::OffsetDateTime;
use ws_init::tls::{ensure_certificates, TlsRequest};
use ws_init_core::logs::{EchoFilter, LogFile, LogSink};

fn root_or_skip(test: &str) -> bool {
    common::root_or_skip(test)
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// This thread gets its own mount namespace (nothing it mounts is seen
/// outside, and it all goes when the thread ends).
fn private_mounts() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();
}

fn bind_read_only(dir: &Path) {
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
}

/// Everything logged through tracing while `body` runs, on this thread.
fn captured(body: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // The core's lines (the dockerd log's warnings, the echo) go through tracing too.
    ws_init::logging::route_core_log();
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .finish();
    tracing::subscriber::with_default(subscriber, body);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    eprint!("{text}");
    text
}

// ------------------------------------------------------------ dockerd log

#[test]
fn a_planted_log_link_is_replaced_and_rotation_never_writes_through_it() {
    if !root_or_skip("log link") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The user's directory (the warning text suggests choosing one).
    let dir = tmp.path().join("l");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(1000), Some(1000)).unwrap();
    let victim = tmp.path().join("big");
    std::fs::write(&victim, "root's own file\n").unwrap();
    let log_path = dir.join("dockerd.log");
    std::os::unix::fs::symlink(&victim, &log_path).unwrap();
    std::fs::create_dir(dir.join("dockerd.log.1")).unwrap();

    let out = captured(|| {
        let mut log = LogFile::open(&log_path, 100, 999);
        for i in 0..20 {
            log.write_line(format!("line {i:03} ........").as_bytes());
        }
        // Planted again after the open: rotation must not follow it either.
        std::fs::remove_file(&log_path).unwrap();
        std::os::unix::fs::symlink(&victim, &log_path).unwrap();
        for i in 20..40 {
            log.write_line(format!("line {i:03} ........").as_bytes());
        }
    });
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root's own file\n",
        "written or truncated through the link"
    );
    assert!(out.contains("symbolic link"), "{out}");
    assert!(out.contains("replaces it"), "{out}");
}

#[test]
fn the_log_is_root_docker_0640_and_readable_by_the_docker_group() {
    if !root_or_skip("log group") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let path = tmp.path().join("dockerd.log");
    // An existing file from an older start (root:root 0600) is fixed too.
    std::fs::write(&path, "old\n").unwrap();
    std::fs::set_permissions(&path, PermissionsExt::from_mode(0o600)).unwrap();
    let mut log = LogFile::open(&path, 1 << 20, 4242);
    log.write_line(b"level=error msg=\"the error users look for\"");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 4242, 0o640)
    );
    let cat = |gid: &str| {
        Command::new("setpriv")
            .args(["--reuid", "1234", "--regid", gid, "--clear-groups", "cat"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let o = cat("4242");
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("the error users look for"));
    assert!(!cat("4243").status.success(), "others must not read it");
}

#[test]
fn the_log_is_written_again_after_the_disk_was_full() {
    if !root_or_skip("log after ENOSPC") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().to_owned();
    // Own thread: the mount namespace goes with it.
    let out = std::thread::spawn(move || {
        private_mounts();
        mount(
            Some("tmpfs"),
            &mnt,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        )
        .unwrap();
        let path = mnt.join("dockerd.log");
        let filler = mnt.join("filler");
        let out = captured(|| {
            let mut log = LogFile::open(&path, 1 << 20, 999);
            log.write_line(b"before");
            let mut f = std::fs::File::create(&filler).unwrap();
            while f.write_all(&[b'x'; 4096]).is_ok() {}
            drop(f);
            for _ in 0..50 {
                log.write_line(&[b'y'; 1000]);
            }
            std::fs::remove_file(&filler).unwrap();
            std::thread::sleep(Duration::from_millis(1200));
            log.write_line(b"after the disk was freed");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        (out, text)
    })
    .join()
    .unwrap();
    let (out, text) = out;
    assert!(text.starts_with("before\n"), "{text}");
    assert!(
        text.ends_with("after the disk was freed\n"),
        "log not resumed: {text:.200}"
    );
    assert_eq!(
        out.matches("cannot write the dockerd log").count(),
        1,
        "{out}"
    );
    assert!(out.contains("is written again"), "{out}");
}

#[test]
fn dockerd_output_cannot_forge_ws_init_log_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let forged =
        br#"time="t" level=error msg="x\n INFO main command exited with status 0\r\u001b[2J""#;
    let plain = b"failed to start daemon: \x1b[31mred\x1b[0m";
    let out = captured(|| {
        let file = LogFile::open(&tmp.path().join("d.log"), 1 << 20, 999);
        let mut sink = LogSink::new(file, EchoFilter::default());
        sink.line(forged, std::time::Instant::now());
        sink.line(plain, std::time::Instant::now());
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "one line per dockerd line: {out:?}");
    assert!(
        lines[0].contains(r"x\n INFO main command exited with status 0"),
        "{out}"
    );
    assert!(!out.contains('\x1b') && !out.contains('\r'), "{out:?}");
    assert!(lines[1].contains(r"\u{1b}[31mred"), "{out}");
}

// ------------------------------------------------------------ certificates

fn request(dir: &Path) -> TlsRequest {
    TlsRequest {
        dir: dir.to_owned(),
        hostname: "ws1".into(),
        ips: vec!["127.0.0.1".parse().unwrap()],
        extra_sans: Vec::new(),
    }
}

#[test]
fn a_link_in_a_user_owned_cert_dir_cannot_expose_the_ca_key() {
    if !root_or_skip("cert dir link") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    ensure_certificates(&request(&dir), OffsetDateTime::now_utc()).unwrap();
    // The user owns the cert dir (DOCKER_TLS_CERTDIR under their home).
    for sub in ["", "ca", "server", "client"] {
        std::os::unix::fs::chown(dir.join(sub), Some(1000), Some(1000)).unwrap();
    }
    let ca_key = std::fs::read(dir.join("ca/key.pem")).unwrap();
    std::fs::remove_file(dir.join("client/key.pem")).unwrap();
    std::os::unix::fs::symlink("../ca/key.pem", dir.join("client/key.pem")).unwrap();

    let out = captured(|| {
        ensure_certificates(&request(&dir), OffsetDateTime::now_utc()).unwrap();
    });
    assert_eq!(
        mode(&dir.join("ca/key.pem")),
        0o600,
        "the CA key was chmodded"
    );
    assert_eq!(std::fs::read(dir.join("ca/key.pem")).unwrap(), ca_key);
    let client_key = std::fs::symlink_metadata(dir.join("client/key.pem")).unwrap();
    assert!(client_key.is_file(), "the link was kept");
    assert_ne!(std::fs::read(dir.join("client/key.pem")).unwrap(), ca_key);
    assert!(
        out.contains("client/key.pem") && out.contains("symbolic link"),
        "{out}"
    );

    // A linked sub-directory is refused, not followed.
    std::fs::rename(dir.join("server"), tmp.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("../elsewhere", dir.join("server")).unwrap();
    let before = std::fs::read(tmp.path().join("elsewhere/cert.pem")).unwrap();
    let mut req = request(&dir);
    req.ips.push("10.0.0.9".parse().unwrap());
    let e = ensure_certificates(&req, OffsetDateTime::now_utc())
        .unwrap_err()
        .to_string();
    assert!(e.contains("server") && e.contains("not a directory"), "{e}");
    assert_eq!(
        std::fs::read(tmp.path().join("elsewhere/cert.pem")).unwrap(),
        before
    );
}

#[test]
fn a_read_only_cert_dir_with_valid_certificates_is_used_as_it_is() {
    if !root_or_skip("read-only cert dir") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let expired = tmp.path().join("expired");
    ensure_certificates(&request(&dir), OffsetDateTime::now_utc()).unwrap();
    let long_ago = OffsetDateTime::now_utc() - time::Duration::days(900);
    ensure_certificates(&request(&expired), long_ago).unwrap();
    let (dir2, expired2) = (dir.clone(), expired.clone());
    let (kept, missing_san, unusable, out) = std::thread::spawn(move || {
        private_mounts();
        bind_read_only(&dir2);
        bind_read_only(&expired2);
        let mut results = None;
        let out = captured(|| {
            let kept = ensure_certificates(&request(&dir2), OffsetDateTime::now_utc());
            let mut req = request(&dir2);
            req.ips.push("10.11.12.13".parse().unwrap());
            let missing_san = ensure_certificates(&req, OffsetDateTime::now_utc());
            let unusable = ensure_certificates(&request(&expired2), OffsetDateTime::now_utc());
            results = Some((kept, missing_san, unusable));
        });
        let (a, b, c) = results.unwrap();
        (
            a.map_err(|e| e.to_string()),
            b.map_err(|e| e.to_string()),
            c.map_err(|e| e.to_string()),
            out,
        )
    })
    .join()
    .unwrap();
    assert!(!kept.unwrap().generated);
    assert!(!missing_san.unwrap().generated);
    assert!(out.contains("lacks the SAN IP:10.11.12.13"), "{out}");
    let e = unusable.unwrap_err();
    assert!(e.contains("expired on"), "{e}");
    assert!(
        e.contains("Read-only file system") && e.contains("DOCKER_TLS_CERTDIR"),
        "{e}"
    );
    assert!(e.contains(&expired.display().to_string()), "{e}");
}

// ------------------------------------------------------------ group files

#[test]
fn a_group_edit_after_a_crash_cleans_up_and_keeps_both_files_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path();
    std::fs::write(etc.join("group"), "root:x:0:\nworkspace:x:1000:\n").unwrap();
    std::fs::write(etc.join("gshadow"), "root:*::\nworkspace:!::\n").unwrap();
    // What a crash of an earlier run left: a run as PID 1 always has the same pid.
    let leftover = etc.join(format!(".group.ws-init-tmp.{}", std::process::id()));
    std::fs::write(&leftover, "half a group fi").unwrap();
    let stale = etc.join(".gshadow.ws-init-tmp.1.5.0");
    std::fs::write(&stale, "x").unwrap();
    ws_init::user::update_groups(&etc.join("group"), &etc.join("gshadow"), |db| {
        db.ensure_group_gid("docker", 999)?;
        db.ensure_member("docker", "workspace")
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(etc.join("group")).unwrap(),
        "root:x:0:\nworkspace:x:1000:\ndocker:x:999:workspace\n"
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("gshadow")).unwrap(),
        "root:*::\nworkspace:!::\ndocker:!::workspace\n"
    );
    assert!(!leftover.exists() && !stale.exists(), "leftovers kept");
    let names: Vec<_> = std::fs::read_dir(etc)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_failed_group_write_names_its_real_cause() {
    if !root_or_skip("group write error") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().to_owned();
    std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
    let e = std::thread::spawn(move || {
        private_mounts();
        mount(
            Some("tmpfs"),
            &etc,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=4k,nr_inodes=3"),
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
        std::fs::write(etc.join("other"), "").unwrap();
        ws_init::user::update_groups(&etc.join("group"), &etc.join("gshadow"), |db| {
            db.ensure_group_gid("docker", 999)
        })
        .unwrap_err()
        .to_string()
    })
    .join()
    .unwrap();
    assert!(e.contains("No space left"), "{e}");
    assert!(!e.contains("read-only"), "{e}");
}

// ------------------------------------------------------------ configuration and programs

#[test]
fn a_bad_tls_san_is_refused_at_start() {
    if !root_or_skip("bad SAN") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ran = d.path().join("ran");
    let o = Spec::new(Mode::Pid1, &["touch", ran.to_str().unwrap()])
        .env("DOCKER_TLS_SAN", "DNS:ok IP:999.1.1.1")
        .run(d.path());
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(
        o.stderr.contains("DOCKER_TLS_SAN") && o.stderr.contains("IP:999.1.1.1"),
        "{o:?}"
    );
    assert!(!ran.exists(), "the command ran anyway");
}

#[test]
fn dockerd_is_never_taken_from_the_callers_path() {
    let d = tempfile::tempdir().unwrap();
    let evil = d.path().join("bin");
    std::fs::create_dir(&evil).unwrap();
    for name in ["dockerd", "iptables"] {
        let p = evil.join(name);
        std::fs::write(&p, "#!/bin/sh\ntouch \"$0.ran\"\n").unwrap();
        std::fs::set_permissions(&p, PermissionsExt::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        evil.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(common::ws_init())
        .args(["doctor", "--json"])
        .env("PATH", &path)
        .env("WS_DOCKER_ENABLE_CLIENT", "1")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !evil.join("iptables.ran").exists(),
        "iptables from PATH was run"
    );
    let Some(cmd) = report["dockerd_command"].as_array() else {
        return eprintln!(
            "skipped: no inner dockerd planned here ({})",
            report["mode"]
        );
    };
    let program = PathBuf::from(cmd[0].as_str().unwrap());
    assert!(program.is_absolute(), "{program:?}");
    assert!(!program.starts_with(&evil), "{program:?}");
    assert!(
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin"
        ]
        .iter()
        .any(|d| program.starts_with(d)),
        "{program:?}"
    );
}
