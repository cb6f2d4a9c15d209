fn main() {
    let req = ws_init::tls::TlsRequest { dir: "/tmp/tlsx/c".into(), hostname: "h".into(), ips: vec!["127.0.0.1".parse().unwrap()], extra_sans: vec![] };
    println!("{:?}", ws_init::tls::ensure_certificates(&req, time::OffsetDateTime::now_utc()));
}
