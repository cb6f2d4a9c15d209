//! Inner DNS (pure): do inner containers need ws-init's forwarder to resolve what the
//! workspace resolves, where does it listen, and which flags does dockerd get.
//!
//! Why a forwarder is needed at all (seen with Docker 26 inside, 20.10 outside): the
//! workspace's resolver is usually the outer engine's embedded DNS at 127.0.0.11, reached
//! through DNAT rules in the workspace's own nat table. On the inner default bridge dockerd
//! drops loopback nameservers and falls back to 8.8.8.8/8.8.4.4. On inner user-defined
//! networks the inner embedded resolver does forward to 127.0.0.11 from the workspace's
//! namespace, but the outer engine also wrote `options ndots:0`, and Docker 25+ then answers
//! every single-label A/AAAA query (`db`, a Compose service) with an empty answer instead of
//! forwarding it. So the forwarder gets dockerd's `--dns`, and the options dockerd gets
//! leave `ndots` out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Serialize;

use super::dockerd_args::{user_gave, user_values};
use crate::probe::resolv::ResolvConf;
use crate::probe::DaemonJson;

/// The port inner containers (and dockerd's `--dns`, which has no port) use.
pub const DNS_PORT: u16 = 53;
/// Given as `--dns-opt` when the workspace's only option was `ndots`: any `--dns-opt`
/// replaces the options dockerd would copy from resolv.conf, and this one is the default
/// of glibc and musl alike.
pub const NEUTRAL_OPTION: &str = "attempts:2";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsDecision {
    /// Inner containers already reach the workspace's resolvers: nothing is changed.
    Unchanged,
    /// ws-init's forwarder serves inner containers.
    Forwarder,
    /// The user configured dockerd's DNS: theirs wins.
    UserSetting,
    /// A forwarder is needed but cannot be offered (see `why`).
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwarderPlan {
    pub listen: SocketAddr,
    /// The workspace's nameservers, in resolv.conf order, port 53.
    pub upstreams: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsPlan {
    pub decision: DnsDecision,
    pub why: String,
    pub forwarder: Option<ForwarderPlan>,
    /// Flags added to dockerd's command line for this decision.
    pub dockerd_args: Vec<String>,
}

/// What the decision needs from the probe.
pub struct DnsInputs<'a> {
    pub resolv: Option<&'a ResolvConf>,
    /// Non-loopback IPv4 addresses of the workspace: (interface, address).
    pub addrs: &'a [(String, Ipv4Addr)],
    pub default_route_interface: Option<&'a str>,
    pub user_args: &'a [String],
    pub daemon_json: &'a DaemonJson,
}

fn plan(decision: DnsDecision, why: impl Into<String>) -> DnsPlan {
    DnsPlan {
        decision,
        why: why.into(),
        forwarder: None,
        dockerd_args: Vec::new(),
    }
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// dockerd's own check for `--dns-search` (opts.ValidateDNSSearch): "." or a domain whose
/// labels are letters, digits and inner hyphens, the last starting with a letter; at most
/// 255 bytes. Anything else would make dockerd refuse to start.
pub fn valid_search_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() || d.len() > 255 {
        return d.is_empty();
    }
    let labels: Vec<&str> = d.split('.').collect();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    labels.iter().all(|l| label_ok(l))
        && labels
            .last()
            .is_some_and(|l| l.as_bytes()[0].is_ascii_alphabetic())
}

/// The listen address: the IPv4 address of the default route's interface, else the
/// first non-loopback one. Inner containers reach it through their bridge's gateway.
fn listen_address(i: &DnsInputs) -> Option<Ipv4Addr> {
    i.default_route_interface
        .and_then(|name| i.addrs.iter().find(|(n, _)| n == name))
        .or_else(|| i.addrs.first())
        .map(|(_, a)| *a)
}

pub fn plan_dns(i: &DnsInputs) -> DnsPlan {
    if user_gave(i.user_args, "dns") {
        return plan(
            DnsDecision::UserSetting,
            "WS_DOCKERD_ARGS sets --dns: inner containers use the servers given there",
        );
    }
    if i.daemon_json.sets("dns") {
        return plan(
            DnsDecision::UserSetting,
            format!(
                "{} sets \"dns\": inner containers use the servers given there",
                i.daemon_json.path.display()
            ),
        );
    }
    let Some(rc) = i.resolv else {
        return plan(
            DnsDecision::Unchanged,
            "/etc/resolv.conf is unreadable: dockerd's defaults apply",
        );
    };
    if rc.nameservers.is_empty() {
        return plan(
            DnsDecision::Unchanged,
            "/etc/resolv.conf names no nameserver: dockerd's defaults (8.8.8.8, 8.8.4.4) apply",
        );
    }
    let loopback = rc.loopback_nameservers();
    if loopback.is_empty() {
        return plan(
            DnsDecision::Unchanged,
            format!(
                "the workspace's nameservers ({}) are reachable from inner containers",
                list(&rc.nameservers)
            ),
        );
    }
    let Some(listen) = listen_address(i) else {
        return plan(
            DnsDecision::Unavailable,
            format!(
                "the workspace's nameservers include loopback {} but it has no non-loopback IPv4 address for inner containers to reach a forwarder on",
                list(&loopback)
            ),
        );
    };
    let listen = SocketAddr::new(IpAddr::V4(listen), DNS_PORT);
    let upstreams: Vec<SocketAddr> = rc
        .nameservers
        .iter()
        .map(|ip| SocketAddr::new(*ip, DNS_PORT))
        .filter(|up| *up != listen)
        .collect();
    let mut args = vec![format!("--dns={}", listen.ip())];
    let json = |key: &str| i.daemon_json.sets(key);
    if !user_gave(i.user_args, "dns-search") && !json("dns-search") {
        args.extend(
            rc.search
                .iter()
                .filter(|d| valid_search_domain(d))
                .map(|d| format!("--dns-search={d}")),
        );
    }
    if !user_gave(i.user_args, "dns-opt") && !json("dns-opts") {
        let opts: Vec<&String> = rc
            .options
            .iter()
            .filter(|o| !o.starts_with("ndots:"))
            .collect();
        if opts.is_empty() && rc.options.len() > opts.len() {
            args.push(format!("--dns-opt={NEUTRAL_OPTION}"));
        }
        args.extend(opts.iter().map(|o| format!("--dns-opt={o}")));
    }
    let mut why = format!(
        "the workspace resolves through loopback {}, which inner containers cannot reach: ws-init forwards {} to {}",
        list(&loopback),
        listen,
        list(&rc.nameservers)
    );
    if user_values(i.user_args, "dns-opt")
        .iter()
        .any(|o| o.starts_with("ndots"))
    {
        why.push_str(
            "; your --dns-opt ndots makes Docker 25+ answer single-label names (such as `db`) on inner user-defined networks itself, so those do not reach the workspace's resolvers",
        );
    }
    DnsPlan {
        decision: DnsDecision::Forwarder,
        why,
        forwarder: Some(ForwarderPlan { listen, upstreams }),
        dockerd_args: args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn addrs() -> Vec<(String, Ipv4Addr)> {
        vec![
            ("eth1".into(), Ipv4Addr::new(10, 9, 0, 4)),
            ("eth0".into(), Ipv4Addr::new(172, 18, 0, 3)),
        ]
    }

    fn decide(rc: &str, user: &[&str], json: Option<&DaemonJson>) -> DnsPlan {
        let none = DaemonJson::default();
        let rc = ResolvConf::parse(rc);
        let addrs = addrs();
        let user = v(user);
        plan_dns(&DnsInputs {
            resolv: Some(&rc),
            addrs: &addrs,
            default_route_interface: Some("eth0"),
            user_args: &user,
            daemon_json: json.unwrap_or(&none),
        })
    }

    const OUTER_EMBEDDED: &str = "nameserver 127.0.0.11\nsearch corp.example\noptions ndots:0\n";

    #[test]
    fn outer_embedded_dns_gets_the_forwarder_without_ndots() {
        let p = decide(OUTER_EMBEDDED, &[], None);
        assert_eq!(p.decision, DnsDecision::Forwarder);
        let f = p.forwarder.unwrap();
        assert_eq!(f.listen.to_string(), "172.18.0.3:53");
        assert_eq!(f.upstreams, ["127.0.0.11:53".parse().unwrap()]);
        // ndots was the only option: a neutral one replaces what dockerd would copy.
        assert_eq!(
            p.dockerd_args,
            v(&[
                "--dns=172.18.0.3",
                "--dns-search=corp.example",
                "--dns-opt=attempts:2"
            ])
        );
        assert!(p.why.contains("127.0.0.11"), "{}", p.why);
    }

    #[test]
    fn systemd_resolved_and_mixed_lists_forward_to_all_in_order() {
        let p = decide(
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0 trust-ad ndots:2\nsearch .\n",
            &[],
            None,
        );
        assert_eq!(p.decision, DnsDecision::Forwarder);
        let ups: Vec<String> = p
            .forwarder
            .unwrap()
            .upstreams
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(ups, ["127.0.0.53:53", "10.0.0.2:53"]);
        assert_eq!(
            p.dockerd_args,
            v(&[
                "--dns=172.18.0.3",
                "--dns-search=.",
                "--dns-opt=edns0",
                "--dns-opt=trust-ad"
            ])
        );
        // No options at all: none are given.
        let bare = decide("nameserver ::1\n", &[], None);
        assert_eq!(bare.dockerd_args, v(&["--dns=172.18.0.3"]));
    }

    #[test]
    fn reachable_servers_change_nothing() {
        let p = decide("nameserver 10.0.0.2\nnameserver 192.0.2.1\n", &[], None);
        assert_eq!(p.decision, DnsDecision::Unchanged);
        assert!(p.dockerd_args.is_empty() && p.forwarder.is_none());
        assert!(p.why.contains("10.0.0.2, 192.0.2.1"), "{}", p.why);
        let empty = decide("search x.example\n", &[], None);
        assert_eq!(empty.decision, DnsDecision::Unchanged);
        assert!(empty.why.contains("no nameserver"));
    }

    #[test]
    fn the_users_dns_wins() {
        for user in [&["--dns", "1.1.1.1"][..], &["--dns=9.9.9.9"]] {
            let p = decide(OUTER_EMBEDDED, user, None);
            assert_eq!(p.decision, DnsDecision::UserSetting);
            assert!(p.dockerd_args.is_empty() && p.forwarder.is_none());
        }
        let json = crate::probe::daemon_json::parse(
            std::path::Path::new("/etc/docker/daemon.json"),
            r#"{"dns":["1.1.1.1"]}"#,
        );
        let p = decide(OUTER_EMBEDDED, &[], Some(&json));
        assert_eq!(p.decision, DnsDecision::UserSetting);
        assert!(p.why.contains("/etc/docker/daemon.json"));
        // Their search domains or options alone: ours are not added next to them
        // (dockerd refuses a setting given both as a flag and in daemon.json).
        let p = decide(OUTER_EMBEDDED, &["--dns-opt", "ndots:0"], None);
        assert_eq!(
            p.dockerd_args,
            v(&["--dns=172.18.0.3", "--dns-search=corp.example"])
        );
        assert!(p.why.contains("your --dns-opt ndots"), "{}", p.why);
        let p = decide(OUTER_EMBEDDED, &["--dns-search=mine.example"], None);
        assert_eq!(
            p.dockerd_args,
            v(&["--dns=172.18.0.3", "--dns-opt=attempts:2"])
        );
        let json = crate::probe::daemon_json::parse(
            std::path::Path::new("/d.json"),
            r#"{"dns-opts":["x"],"dns-search":["y"]}"#,
        );
        let p = decide(OUTER_EMBEDDED, &[], Some(&json));
        assert_eq!(p.dockerd_args, v(&["--dns=172.18.0.3"]));
    }

    #[test]
    fn listen_address_fallbacks_and_no_address() {
        let rc = ResolvConf::parse(OUTER_EMBEDDED);
        let a = addrs();
        let mut i = DnsInputs {
            resolv: Some(&rc),
            addrs: &a,
            default_route_interface: None,
            user_args: &[],
            daemon_json: &DaemonJson::default(),
        };
        assert_eq!(
            plan_dns(&i).forwarder.unwrap().listen.to_string(),
            "10.9.0.4:53"
        );
        i.addrs = &[];
        let p = plan_dns(&i);
        assert_eq!(p.decision, DnsDecision::Unavailable);
        assert!(p.dockerd_args.is_empty());
        i.resolv = None;
        assert_eq!(plan_dns(&i).decision, DnsDecision::Unchanged);
    }

    #[test]
    fn search_domains_dockerd_would_refuse_are_left_out() {
        for ok in [
            "corp.example",
            "svc.cluster.local",
            ".",
            "a-b.c0.d",
            "x.example.",
        ] {
            assert!(valid_search_domain(ok), "{ok}");
        }
        for bad in [
            "1.2.3",
            "-a.example",
            "a_b.example",
            "a..b",
            &"a".repeat(256),
        ] {
            assert!(!valid_search_domain(bad), "{bad}");
        }
        let p = decide(
            "nameserver 127.0.0.11\nsearch ok.example example.123\n",
            &[],
            None,
        );
        assert_eq!(
            p.dockerd_args,
            v(&["--dns=172.18.0.3", "--dns-search=ok.example"])
        );
    }
}
