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
fn identical_messages_are_held_back_and_counted() {
    let mut f = EchoFilter::new(Duration::from_secs(60), 100, Duration::from_secs(10));
    let t0 = Instant::now();
    assert_eq!(
        f.decide("a", t0),
        Some(Echo {
            repeats: 0,
            dropped: 0
        })
    );
    assert_eq!(f.decide("a", t0 + Duration::from_secs(1)), None);
    assert_eq!(
        f.decide("b", t0 + Duration::from_secs(1)),
        Some(Echo {
            repeats: 0,
            dropped: 0
        })
    );
    assert_eq!(f.decide("a", t0 + Duration::from_secs(59)), None);
    assert_eq!(
        f.decide("a", t0 + Duration::from_secs(60)),
        Some(Echo {
            repeats: 2,
            dropped: 0
        })
    );
    assert_eq!(f.decide("a", t0 + Duration::from_secs(61)), None);
}

#[test]
fn bursts_are_cut_and_the_next_line_says_how_many_were_dropped() {
    let mut f = EchoFilter::new(Duration::from_secs(60), 3, Duration::from_secs(10));
    let t0 = Instant::now();
    let printed = (0..10)
        .filter(|i| f.decide(&format!("line {i}"), t0).is_some())
        .count();
    assert_eq!(printed, 3);
    assert_eq!(
        f.decide("later", t0 + Duration::from_secs(10)),
        Some(Echo {
            repeats: 0,
            dropped: 7
        })
    );
    assert_eq!(
        f.decide("later 2", t0 + Duration::from_secs(11)),
        Some(Echo {
            repeats: 0,
            dropped: 0
        })
    );
}

#[test]
fn the_filter_memory_stays_bounded() {
    let mut f = EchoFilter::new(Duration::from_secs(60), u32::MAX, Duration::from_secs(10));
    let t0 = Instant::now();
    for i in 0..(MAX_REMEMBERED * 3) {
        assert!(f.decide(&i.to_string(), t0).is_some());
    }
    assert!(f.seen.len() <= MAX_REMEMBERED);
}

#[test]
fn lines_are_split_on_newlines_with_crlf_and_long_lines_cut() {
    let mut s = LineSplitter::default();
    let mut out: Vec<Vec<u8>> = Vec::new();
    s.push(b"one\r\ntw", |l| out.push(l.to_vec()));
    s.push(b"o\n\nthree", |l| out.push(l.to_vec()));
    s.finish(|l| out.push(l.to_vec()));
    assert_eq!(
        out,
        vec![
            b"one".to_vec(),
            b"two".to_vec(),
            b"".to_vec(),
            b"three".to_vec()
        ]
    );

    let mut out = Vec::new();
    let long = vec![b'x'; MAX_LINE * 2 + 5];
    s.push(&long, |l| out.push(l.len()));
    s.push(b"\n", |l| out.push(l.len()));
    assert_eq!(out, vec![MAX_LINE, MAX_LINE, 5]);
}

#[test]
fn the_log_file_rotates_to_one_old_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dockerd.log");
    let mut log = LogFile::open(&path, 100, 999);
    for i in 0..30 {
        log.write_line(format!("line {i:03} ........").as_bytes()); // 21 bytes with newline
    }
    let current = std::fs::read_to_string(&path).unwrap();
    let old = std::fs::read_to_string(log.old_path()).unwrap();
    assert!(
        current.len() <= 100 && old.len() <= 100,
        "{} {}",
        current.len(),
        old.len()
    );
    assert!(current.ends_with("line 029 ........\n"), "{current}");
    // Nothing lost between the generations: they are consecutive.
    let all: Vec<&str> = old.lines().chain(current.lines()).collect();
    let first: usize = all[0][5..8].parse().unwrap();
    for (i, l) in all.iter().enumerate() {
        assert_eq!(*l, format!("line {:03} ........", first + i));
    }
    assert!(!dir.path().join("sub/dockerd.log.2").exists());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn the_log_file_appends_to_what_is_there_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dockerd.log");
    std::fs::write(&path, "x".repeat(90) + "\n").unwrap();
    let mut log = LogFile::open(&path, 100, 999);
    log.write_line(b"short"); // 91 + 6 = 97: fits
    assert_eq!(std::fs::read_to_string(&path).unwrap().len(), 97);
    log.write_line(b"next"); // would be 102: rotates first
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "next\n");
    assert_eq!(std::fs::read_to_string(log.old_path()).unwrap().len(), 97);
}

#[test]
fn a_line_longer_than_the_bound_is_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dockerd.log");
    let mut log = LogFile::open(&path, 10, 999);
    log.write_line(b"0123456789abcdef");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "0123456789abcdef\n"
    );
}

#[test]
fn an_unwritable_log_path_does_not_stop_anything() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    // A directory path through a regular file cannot be created.
    let mut log = LogFile::open(&blocker.join("dockerd.log"), 100, 999);
    log.write_line(b"lost but harmless");
    let mut sink = LogSink::new(log, EchoFilter::default());
    sink.line(br#"level=error msg="still echoed""#, Instant::now());
}

#[test]
fn the_sink_writes_every_line_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dockerd.log");
    let mut sink = LogSink::new(LogFile::open(&path, 1 << 20, 999), EchoFilter::default());
    let now = Instant::now();
    sink.note("starting dockerd");
    sink.line(br#"time="t" level=info msg="Starting up""#, now);
    sink.line(b"\xff not utf-8", now);
    let content = std::fs::read(&path).unwrap();
    assert_eq!(
        content,
        b"[ws-init] starting dockerd\ntime=\"t\" level=info msg=\"Starting up\"\n\xff not utf-8\n"
            .to_vec()
    );
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
