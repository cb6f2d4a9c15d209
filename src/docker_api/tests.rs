//! Protocol tests against real sockets served by the test itself.

use super::*;
use crate::config::DockerHost;
use std::path::PathBuf;
use tokio::net::{TcpListener, UnixListener};

const DOCKER_OK: &[u8] = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOK";

/// Reads one request head, checks it is our ping, answers `reply` and closes.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, reply: &'static [u8]) {
    let mut req = Vec::new();
    let mut b = [0u8; 256];
    while !req.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut b).await.unwrap();
        if n == 0 {
            return;
        }
        req.extend_from_slice(&b[..n]);
    }
    assert_eq!(req, PING_REQUEST);
    s.write_all(reply).await.unwrap();
    s.shutdown().await.ok();
}

fn serve_unix(path: &Path, reply: &'static [u8]) -> tokio::task::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            serve_one(s, reply).await;
        }
    })
}

#[test]
fn docker_host_values_map_to_endpoints() {
    let unix = |p: &str| Ok(Endpoint::Unix(PathBuf::from(p)));
    let tcp = |a: &str, tls| {
        Ok(Endpoint::Tcp {
            addr: a.into(),
            tls,
        })
    };
    assert_eq!(
        Endpoint::from_docker_host(None),
        unix("/var/run/docker.sock")
    );
    assert_eq!(
        Endpoint::from_docker_host(Some("  ")),
        unix("/var/run/docker.sock")
    );
    assert_eq!(
        Endpoint::from_docker_host(Some("unix:///run/d.sock")),
        unix("/run/d.sock")
    );
    assert_eq!(
        Endpoint::from_docker_host(Some("tcp://docker:2375")),
        tcp("docker:2375", false)
    );
    assert_eq!(
        Endpoint::from_docker_host(Some("tcp://docker:2376")),
        tcp("docker:2376", true)
    );
    assert_eq!(
        Endpoint::from_docker_host(Some("tcp://10.0.0.1")),
        tcp("10.0.0.1:2375", false)
    );
    assert_eq!(
        Endpoint::from_docker_host(Some("tcp://[::1]:2375/")),
        tcp("[::1]:2375", false)
    );
    assert_eq!(
        Endpoint::from_docker_host(Some("tcp://[fe80::1]")),
        tcp("[fe80::1]:2375", false)
    );
    assert_eq!(
        Endpoint::from_docker_host_tls(Some("tcp://h:2375"), Some("1")),
        tcp("h:2375", true)
    );
    assert_eq!(
        Endpoint::from_docker_host_tls(Some("tcp://h"), Some("1")),
        tcp("h:2376", true)
    );
    assert_eq!(
        Endpoint::from_docker_host_tls(Some("tcp://h:2375"), Some("")),
        tcp("h:2375", false)
    );
    assert_eq!(
        Endpoint::from_docker_host(Some("ssh://me@build:2222")),
        Ok(Endpoint::Ssh("ssh://me@build:2222".into()))
    );
    for bad in [
        "unix://relative.sock",
        "tcp://",
        "tcp://:2375",
        "tcp://h:port",
        "tcp://h:99999",
        "[::1]",
        "npipe:////./pipe/docker_engine",
        "docker:2375",
    ] {
        assert!(
            Endpoint::from_docker_host(Some(bad)).is_err(),
            "{bad} accepted"
        );
    }
}

#[test]
fn endpoint_errors_say_what_is_accepted() {
    let e = Endpoint::from_docker_host(Some("docker:2375"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("docker:2375") && e.contains("tcp://host:port"),
        "{e}"
    );
}

#[tokio::test]
async fn ping_unix_accepts_a_docker_answer() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let server = serve_unix(&sock, DOCKER_OK);
    ping_unix(&sock, Duration::from_secs(2)).await.unwrap();
    // Chunked and unframed variants of the same answer are accepted too.
    server.abort();
    std::fs::remove_file(&sock).unwrap();
    let server = serve_unix(
        &sock,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n0\r\n\r\n",
    );
    ping_unix(&sock, Duration::from_secs(2)).await.unwrap();
    server.abort();
    std::fs::remove_file(&sock).unwrap();
    serve_unix(&sock, b"HTTP/1.0 200 OK\r\n\r\nOK");
    ping_unix(&sock, Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn ping_unix_reports_each_failure_by_cause() {
    let dir = tempfile::tempdir().unwrap();
    let t = Duration::from_secs(2);

    let missing = dir.path().join("missing.sock");
    let e = ping_unix(&missing, t).await.unwrap_err();
    assert!(matches!(e, PingError::NoSocket { .. }), "{e:?}");

    // A socket file nobody listens on any more: refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let e = ping_unix(&stale, t).await.unwrap_err();
    assert!(matches!(e, PingError::Refused { .. }), "{e:?}");

    let err500 = dir.path().join("500.sock");
    serve_unix(
        &err500,
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom",
    );
    let e = ping_unix(&err500, t).await.unwrap_err();
    assert!(
        matches!(&e, PingError::Status { status: 500, body, .. } if body == "boom"),
        "{e:?}"
    );

    let not_ok = dir.path().join("notok.sock");
    serve_unix(
        &not_ok,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    );
    let e = ping_unix(&not_ok, t).await.unwrap_err();
    assert!(matches!(e, PingError::NotDocker { .. }), "{e:?}");

    let garbage = dir.path().join("garbage.sock");
    serve_unix(&garbage, b"SSH-2.0-OpenSSH_9.2\r\n");
    let e = ping_unix(&garbage, t).await.unwrap_err();
    assert!(matches!(e, PingError::NotDocker { .. }), "{e:?}");

    let truncated = dir.path().join("truncated.sock");
    serve_unix(&truncated, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nO");
    let e = ping_unix(&truncated, t).await.unwrap_err();
    assert!(e.to_string().contains("closed before"), "{e}");

    // Accepts, then says nothing: the attempt times out.
    let silent = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&silent).unwrap();
    let hold = tokio::spawn(async move {
        let (_s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let started = Instant::now();
    let e = ping_unix(&silent, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(e, PingError::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    hold.abort();
}

#[tokio::test]
async fn ping_tcp_and_the_tls_connect_check() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            serve_one(s, DOCKER_OK).await;
        }
    });
    ping_tcp(&addr, Duration::from_secs(2)).await.unwrap();
    let tls = Endpoint::Tcp {
        addr: addr.clone(),
        tls: true,
    };
    assert_eq!(
        check(&tls, Duration::from_secs(2)).await.unwrap(),
        Reachability::TcpOnly
    );

    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let e = ping_tcp(&closed_addr, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(e, PingError::Refused { .. }), "{e:?}");
    let e = connect_tcp(&closed_addr, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(e, PingError::Refused { .. }), "{e:?}");
}

#[tokio::test]
async fn wait_ready_notices_a_late_server_within_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let endpoint = Endpoint::Unix(sock.clone());
    let late = sock.clone();
    let bound_at = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        serve_unix(&late, DOCKER_OK);
        Instant::now()
    });
    let ready = wait_ready(&endpoint, Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    let bound_at = bound_at.await.unwrap();
    assert_eq!(ready.reachability, Reachability::Pinged);
    assert!(ready.attempts > 1, "{ready:?}");
    let lag = bound_at.elapsed();
    assert!(
        lag < Duration::from_millis(100),
        "noticed {lag:?} after the server came up"
    );
}

#[tokio::test]
async fn wait_ready_gives_up_at_the_deadline_with_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::Unix(dir.path().join("never.sock"));
    let started = Instant::now();
    let e = wait_ready(&endpoint, started + Duration::from_millis(200))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(180) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert!(matches!(e.last, PingError::NoSocket { .. }), "{e:?}");
    assert!(e.attempts >= 5, "polling too slowly: {e:?}");
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[tokio::test]
async fn wait_docker_follows_the_settings() {
    let off = Settings::default();
    assert_eq!(
        wait_docker(&off, Duration::ZERO).await.unwrap(),
        WaitOutcome::Disabled
    );

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    serve_unix(&sock, DOCKER_OK);
    let on = Settings {
        docker_enable_client: true,
        docker_host: Some(DockerHost::parse(&format!("unix://{}", sock.display()), false).unwrap()),
        ..Settings::default()
    };
    match wait_docker(&on, Duration::from_secs(2)).await.unwrap() {
        WaitOutcome::Ready {
            endpoint,
            reachability,
            ..
        } => {
            assert_eq!(endpoint, Endpoint::Unix(sock.clone()));
            assert_eq!(reachability, Reachability::Pinged);
        }
        other => panic!("{other:?}"),
    }

    let ssh = Settings {
        docker_host: Some(DockerHost::parse("ssh://me@build", false).unwrap()),
        ..on.clone()
    };
    match wait_docker(&ssh, Duration::from_secs(2)).await.unwrap() {
        WaitOutcome::Ready { reachability, .. } => {
            assert_eq!(reachability, Reachability::Unchecked)
        }
        other => panic!("{other:?}"),
    }

    let gone = Settings {
        docker_host: Some(
            DockerHost::parse(
                &format!("unix://{}", dir.path().join("gone.sock").display()),
                false,
            )
            .unwrap(),
        ),
        ..on
    };
    let e = wait_docker(&gone, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(e, WaitError::NotReady(_)), "{e:?}");
}
