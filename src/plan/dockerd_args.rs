//! dockerd's command line: our flags first, then WS_DOCKERD_ARGS; a flag the
//! user gave is never added a second time (the user's value wins), nor one
//! whose key daemon.json sets (dockerd refuses to start on such a conflict).
//! Reading the user's flags is config's job ([`crate::config::dockerd_args`]).

pub use crate::config::dockerd_args::{user_disabled_iptables, user_gave, user_values};

/// Each flag ws-init may add → its key in daemon.json. A flag ws-init adds
/// must be listed here (a unit test holds every planned flag to it).
pub const FLAG_CONFIG_KEYS: &[(&str, &str)] = &[
    ("host", "hosts"),
    ("group", "group"),
    ("mtu", "mtu"),
    ("shutdown-timeout", "shutdown-timeout"),
    ("ip6tables", "ip6tables"),
    ("default-network-opt", "default-network-opts"),
    ("cgroup-parent", "cgroup-parent"),
    ("tls", "tls"),
    ("tlsverify", "tlsverify"),
    ("tlscacert", "tlscacert"),
    ("tlscert", "tlscert"),
    ("tlskey", "tlskey"),
    ("dns", "dns"),
    ("dns-search", "dns-search"),
    ("dns-opt", "dns-opts"),
];

/// daemon.json's key for flag `name`, when the table knows it.
pub fn config_key(name: &str) -> Option<&'static str> {
    FLAG_CONFIG_KEYS
        .iter()
        .find(|(f, _)| *f == name)
        .map(|(_, k)| *k)
}

/// `--default-network-opt DRIVER=OPTION=VALUE`: the `DRIVER=OPTION` part.
fn network_opt_key(value: &str) -> &str {
    match value.match_indices('=').nth(1) {
        Some((i, _)) => &value[..i],
        None => value,
    }
}

/// Build the final list: each of `ours` is `(flag name, full argument)`; hosts
/// are additive in dockerd, so `host` is skipped only when the same address is
/// given, and a default network option only when the user sets the same option.
/// `file_keys` are the keys daemon.json sets: ours for those are left out.
pub fn merge(ours: Vec<(&str, String)>, user_args: &[String], file_keys: &[String]) -> Vec<String> {
    let mut out: Vec<String> = ours
        .into_iter()
        .filter(|(name, _)| {
            let key = config_key(name).unwrap_or(name);
            !file_keys.iter().any(|k| k == key)
        })
        .filter(|(name, arg)| {
            let value = arg.split_once('=').map_or("", |(_, v)| v);
            match *name {
                "host" => !user_values(user_args, "host").contains(&value),
                "default-network-opt" => !user_values(user_args, name)
                    .iter()
                    .any(|v| network_opt_key(v) == network_opt_key(value)),
                _ => !user_gave(user_args, name),
            }
        })
        .map(|(_, arg)| arg)
        .collect();
    out.extend(user_args.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn user_flags_win_and_hosts_add_up() {
        let ours = vec![
            ("host", "--host=unix:///var/run/docker.sock".to_string()),
            ("mtu", "--mtu=1400".to_string()),
            ("group", "--group=docker".to_string()),
        ];
        let out = merge(
            ours.clone(),
            &v(&["--mtu=1300", "-H", "tcp://0.0.0.0:2375"]),
            &[],
        );
        assert_eq!(
            out,
            v(&[
                "--host=unix:///var/run/docker.sock",
                "--group=docker",
                "--mtu=1300",
                "-H",
                "tcp://0.0.0.0:2375"
            ])
        );
        let out = merge(ours, &v(&["--host=unix:///var/run/docker.sock"]), &[]);
        assert_eq!(
            out,
            v(&[
                "--mtu=1400",
                "--group=docker",
                "--host=unix:///var/run/docker.sock"
            ])
        );
    }

    #[test]
    fn keys_set_in_daemon_json_are_left_to_the_file() {
        let ours = vec![
            ("host", "--host=unix:///var/run/docker.sock".to_string()),
            ("mtu", "--mtu=1400".to_string()),
            ("group", "--group=docker".to_string()),
            (
                "default-network-opt",
                "--default-network-opt=bridge=com.docker.network.driver.mtu=1400".to_string(),
            ),
        ];
        let file = v(&["default-network-opts", "hosts", "mtu"]);
        assert_eq!(
            merge(ours, &v(&["--debug"]), &file),
            v(&["--group=docker", "--debug"])
        );
    }

    #[test]
    fn a_default_network_opt_yields_only_to_the_same_option() {
        let ours = || {
            vec![(
                "default-network-opt",
                "--default-network-opt=bridge=com.docker.network.driver.mtu=1400".to_string(),
            )]
        };
        let other = v(&[
            "--default-network-opt",
            "bridge=com.docker.network.bridge.gateway_mode_ipv4=routed",
        ]);
        assert_eq!(merge(ours(), &other, &[]).len(), 3);
        let same = v(&["--default-network-opt=bridge=com.docker.network.driver.mtu=1300"]);
        assert_eq!(merge(ours(), &same, &[]), same);
        assert_eq!(config_key("host"), Some("hosts"));
        assert_eq!(
            config_key("default-network-opt"),
            Some("default-network-opts")
        );
    }
}
