//! ip6tables: dockerd ≥ 27 turns it on by default. Where the container cannot
//! use it, dockerd warns at every start and IPv6 inner networks fail; ws-init
//! then passes `--ip6tables=false` instead, unless the user decided.

use super::dockerd_args;
use super::iptables::{IptablesBackend, IptablesDecision};
use crate::probe::{IptablesTool, SystemProbe};

/// The first dockerd release with ip6tables on by default.
pub const IP6TABLES_DEFAULT_ON: (u32, u32) = (27, 0);

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ip6tablesDecision {
    /// ws-init passes `--ip6tables=false`.
    pub disable: bool,
    /// IPv6 inner networks can work (`None`: not known).
    pub ipv6_networks: Option<bool>,
    pub reason: String,
}

pub enum Ip6Choice {
    Decided(Ip6tablesDecision),
    NeedCheck(IptablesTool),
}

fn decided(disable: bool, ipv6_networks: Option<bool>, reason: impl Into<String>) -> Ip6Choice {
    Ip6Choice::Decided(Ip6tablesDecision {
        disable,
        ipv6_networks,
        reason: reason.into(),
    })
}

/// `ipv4` is the IPv4 decision (`None` when the user turned iptables off).
pub fn choose_ip6tables(
    p: &SystemProbe,
    user_args: &[String],
    ipv4: Option<&IptablesDecision>,
) -> Ip6Choice {
    if let Some(v) = dockerd_args::user_values(user_args, "ip6tables").last() {
        return decided(
            false,
            None,
            format!("WS_DOCKERD_ARGS gives --ip6tables={v}"),
        );
    }
    if dockerd_args::user_gave(user_args, "ip6tables") {
        return decided(false, None, "WS_DOCKERD_ARGS gives --ip6tables");
    }
    if p.daemon_json.sets("ip6tables") {
        return decided(
            false,
            None,
            format!("{} sets ip6tables", p.daemon_json.path.display()),
        );
    }
    let Some(ipv4) = ipv4 else {
        return decided(false, None, "iptables is off (--iptables=false)");
    };
    let Some(version) = p.versions.dockerd.major_minor() else {
        return decided(
            false,
            None,
            "dockerd's version is unknown (not from a Debian package): its own default applies",
        );
    };
    if version < IP6TABLES_DEFAULT_ON {
        return decided(
            false,
            None,
            format!(
                "dockerd {}.{} leaves ip6tables off by default",
                version.0, version.1
            ),
        );
    }
    let (tool, works) = match ipv4.backend {
        IptablesBackend::Nft => (IptablesTool::Ip6Default, p.iptables.ip6_nft_works),
        IptablesBackend::Legacy => (IptablesTool::Ip6Legacy, p.iptables.ip6_legacy_works),
    };
    match works {
        None => Ip6Choice::NeedCheck(tool),
        Some(true) => decided(false, Some(true), format!("{} works", tool.check_text())),
        Some(false) => decided(
            true,
            Some(false),
            format!(
                "{} fails here, and dockerd {}.{} would turn ip6tables on",
                tool.check_text(),
                version.0,
                version.1
            ),
        ),
    }
}
