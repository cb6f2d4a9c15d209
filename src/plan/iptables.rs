//! Which iptables dockerd uses, decided exactly like docker-library's
//! dockerd-entrypoint.sh (design §2).

use crate::probe::{IptablesProbe, IptablesTool};

/// Directory of `iptables*` → `*-legacy` links put first on dockerd's PATH.
pub const LEGACY_LINK_DIR: &str = "/run/ws-init/iptables-legacy";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IptablesBackend {
    /// The image's default `iptables` (nf_tables on current distributions).
    Nft,
    /// `iptables-legacy` through the link directory.
    Legacy,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IptablesDecision {
    pub backend: IptablesBackend,
    pub reason: String,
    /// Whether the chosen backend was seen working (`None`: not checked).
    pub works: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IptablesChoice {
    Decided(IptablesDecision),
    /// The decision needs this command check first.
    NeedCheck(IptablesTool),
}

fn decided(
    backend: IptablesBackend,
    reason: impl Into<String>,
    works: Option<bool>,
) -> IptablesChoice {
    IptablesChoice::Decided(IptablesDecision {
        backend,
        reason: reason.into(),
        works,
    })
}

/// `legacy_setting` is `Settings::iptables_legacy` (DOCKER_IPTABLES_LEGACY).
pub fn choose_iptables(legacy_setting: Option<bool>, ipt: &IptablesProbe) -> IptablesChoice {
    use IptablesBackend::*;
    match legacy_setting {
        Some(true) => {
            return decided(
                Legacy,
                "DOCKER_IPTABLES_LEGACY is set (non-empty)",
                ipt.legacy_works,
            )
        }
        Some(false) => {
            return decided(
                Nft,
                "DOCKER_IPTABLES_LEGACY is set but empty",
                ipt.nft_works,
            )
        }
        None => {}
    }
    if !ipt.legacy_tables_in_use.is_empty() {
        return decided(
            Legacy,
            format!(
                "legacy iptables tables already exist in this kernel (/proc/net/{} not empty)",
                ipt.legacy_tables_in_use.join(", /proc/net/")
            ),
            ipt.legacy_works,
        );
    }
    match ipt.nft_works {
        None => return IptablesChoice::NeedCheck(IptablesTool::Default),
        Some(true) => return decided(Nft, "`iptables -nL` works", Some(true)),
        Some(false) => {}
    }
    match ipt.legacy_works {
        None => IptablesChoice::NeedCheck(IptablesTool::Legacy),
        Some(true) => decided(
            Legacy,
            "`iptables -nL` fails and `iptables-legacy -nL` works",
            Some(true),
        ),
        Some(false) => decided(
            Nft,
            "neither `iptables -nL` nor `iptables-legacy -nL` works",
            Some(false),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipt(tables: &[&str], nft: Option<bool>, legacy: Option<bool>) -> IptablesProbe {
        IptablesProbe {
            legacy_tables_in_use: tables.iter().map(|s| s.to_string()).collect(),
            nft_works: nft,
            legacy_works: legacy,
            ..Default::default()
        }
    }

    fn backend(c: IptablesChoice) -> IptablesBackend {
        match c {
            IptablesChoice::Decided(d) => d.backend,
            IptablesChoice::NeedCheck(t) => panic!("unexpected check {t:?}"),
        }
    }

    #[test]
    fn setting_decides_even_against_the_kernel_state() {
        assert_eq!(
            backend(choose_iptables(Some(true), &ipt(&[], Some(true), None))),
            IptablesBackend::Legacy
        );
        assert_eq!(
            backend(choose_iptables(
                Some(false),
                &ipt(&["ip_tables_names"], None, None)
            )),
            IptablesBackend::Nft
        );
    }

    #[test]
    fn existing_legacy_tables_choose_legacy_without_running_anything() {
        let c = choose_iptables(
            None,
            &ipt(&["ip_tables_names", "arp_tables_names"], None, None),
        );
        let IptablesChoice::Decided(d) = c else {
            panic!()
        };
        assert_eq!(d.backend, IptablesBackend::Legacy);
        assert!(
            d.reason
                .contains("/proc/net/ip_tables_names, /proc/net/arp_tables_names"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn command_checks_in_upstream_order() {
        assert_eq!(
            choose_iptables(None, &ipt(&[], None, None)),
            IptablesChoice::NeedCheck(IptablesTool::Default)
        );
        assert_eq!(
            backend(choose_iptables(None, &ipt(&[], Some(true), None))),
            IptablesBackend::Nft
        );
        assert_eq!(
            choose_iptables(None, &ipt(&[], Some(false), None)),
            IptablesChoice::NeedCheck(IptablesTool::Legacy)
        );
        assert_eq!(
            backend(choose_iptables(None, &ipt(&[], Some(false), Some(true)))),
            IptablesBackend::Legacy
        );
        let IptablesChoice::Decided(d) = choose_iptables(None, &ipt(&[], Some(false), Some(false)))
        else {
            panic!()
        };
        assert_eq!((d.backend, d.works), (IptablesBackend::Nft, Some(false)));
    }
}
