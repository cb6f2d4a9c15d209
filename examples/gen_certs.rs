//! Benchmark: ws-init's certificate generation (`ws_init::tls::ensure_certificates`),
//! the same call ws-init makes at start when `DOCKER_TLS_CERTDIR` is set.
//!
//!   gen_certs --dir DIR [--runs N] [--keep-keys]
//!
//! Each run generates CA, server and client certificates under DIR. Without
//! `--keep-keys` DIR is emptied before every run (fresh keys, as on a first
//! start); with it the keys of the first run are reused (a restart on a kept
//! certificate volume). Prints one line per run: `ms=...`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ws_init::tls::{ensure_certificates, TlsRequest};

fn usage() -> ExitCode {
    eprintln!("usage: gen_certs --dir DIR [--runs N] [--keep-keys]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut dir: Option<PathBuf> = None;
    let mut runs: usize = 5;
    let mut keep_keys = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => match args.next() {
                Some(v) => dir = Some(PathBuf::from(v)),
                None => return usage(),
            },
            "--runs" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => runs = n,
                None => return usage(),
            },
            "--keep-keys" => keep_keys = true,
            _ => return usage(),
        }
    }
    let Some(dir) = dir else { return usage() };
    // What a workspace on the default bridge would put into the server certificate.
    let req = TlsRequest {
        dir: dir.clone(),
        hostname: "0123456789ab".to_string(),
        ips: vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(172, 17, 0, 2)),
        ],
        extra_sans: Vec::new(),
    };
    for run in 0..runs {
        if !keep_keys || run == 0 {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("gen_certs: cannot empty {}: {e}", dir.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        let t = Instant::now();
        match ensure_certificates(&req, time::OffsetDateTime::now_utc()) {
            Ok(outcome) => {
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                if keep_keys && run > 0 && !outcome.reused_keys {
                    eprintln!("gen_certs: keys were not reused in run {run}");
                    return ExitCode::FAILURE;
                }
                println!("ms={ms:.2}");
            }
            Err(e) => {
                eprintln!("gen_certs: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
