//! dockerd's command line: our flags first, then WS_DOCKERD_ARGS; a flag the
//! user gave is never added a second time (the user's value wins).

/// dockerd's one-letter aliases, mapped to the long names we compare.
fn long_name(short: &str) -> Option<&'static str> {
    Some(match short {
        "H" => "host",
        "G" => "group",
        "D" => "debug",
        "l" => "log-level",
        "p" => "pidfile",
        "g" => "data-root",
        _ => return None,
    })
}

/// (flag name, inline value) of an argument that is a flag.
fn split_flag(arg: &str) -> Option<(String, Option<&str>)> {
    let (name, value) = match arg.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (arg, None),
    };
    if let Some(long) = name.strip_prefix("--") {
        (!long.is_empty()).then(|| (long.to_string(), value))
    } else if let Some(short) = name.strip_prefix('-') {
        long_name(short).map(|l| (l.to_string(), value))
    } else {
        None
    }
}

/// Did the user pass `--name` (in any spelling: `--name=v`, `--name v`, `-X v`)?
pub fn user_gave(user_args: &[String], name: &str) -> bool {
    user_args
        .iter()
        .any(|a| split_flag(a).is_some_and(|(n, _)| n == name))
}

/// Every value the user gave for `--name` (`--name=v` or `--name v`).
pub fn user_values<'a>(user_args: &'a [String], name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (i, a) in user_args.iter().enumerate() {
        if let Some((n, v)) = split_flag(a) {
            if n == name {
                match v {
                    Some(v) => out.push(v),
                    None => {
                        if let Some(next) = user_args.get(i + 1).filter(|x| !x.starts_with('-')) {
                            out.push(next.as_str());
                        }
                    }
                }
            }
        }
    }
    out
}

/// `--iptables=false` (or `--iptables false`) given by the user.
pub fn user_disabled_iptables(user_args: &[String]) -> bool {
    user_values(user_args, "iptables")
        .last()
        .is_some_and(|v| *v == "false")
}

/// Build the final list: each of `ours` is `(flag name, full argument)`; hosts
/// are additive in dockerd, so `host` is skipped only when the same address is given.
pub fn merge(ours: Vec<(&str, String)>, user_args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = ours
        .into_iter()
        .filter(|(name, arg)| {
            if *name == "host" {
                let addr = arg.split_once('=').map_or("", |(_, v)| v);
                !user_values(user_args, "host").contains(&addr)
            } else {
                !user_gave(user_args, name)
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
    fn recognises_flag_spellings() {
        let u = v(&[
            "--mtu",
            "1400",
            "-G=wheel",
            "--debug",
            "-H",
            "tcp://0.0.0.0:1234",
        ]);
        assert!(
            user_gave(&u, "mtu")
                && user_gave(&u, "group")
                && user_gave(&u, "debug")
                && user_gave(&u, "host")
        );
        assert!(!user_gave(&u, "shutdown-timeout"));
        assert_eq!(user_values(&u, "mtu"), ["1400"]);
        assert_eq!(user_values(&u, "host"), ["tcp://0.0.0.0:1234"]);
        assert!(user_disabled_iptables(&v(&["--iptables=false"])));
        assert!(user_disabled_iptables(&v(&["--iptables", "false"])));
        assert!(!user_disabled_iptables(&v(&["--ip6tables=false"])));
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
        let out = merge(ours, &v(&["--host=unix:///var/run/docker.sock"]));
        assert_eq!(
            out,
            v(&[
                "--mtu=1400",
                "--group=docker",
                "--host=unix:///var/run/docker.sock"
            ])
        );
    }
}
