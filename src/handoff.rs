//! `ws-init-bringup __bringup`: the workspace's bring-up, run by ws-init (PID 1)
//! as a short-lived child. It validates the configuration, probes, plans and
//! applies, decides what PID 1 will run (the main command's user, dockerd,
//! the DNS forwarder, what `WS_DOCKER_WAIT` waits for) and hands that to PID 1
//! as data ([`Handover`]) on the descriptor named by `WS_INIT_HANDOVER_FD`.
//! The decision ([`decide`]) is pure; [`run`] only carries it out.
//!
//! Exit status: 0 once the handover is written (a remote engine's
//! reachability is checked after that, and only logged); 2 for a
//! configuration error (nothing written); 1 when the handover cannot be
//! written.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tracing::{error, info, warn};
use ws_init_core::handover::{self, Dns, DockerWait, Dockerd, Handover};

use crate::bringup::{self, Prepared};
use crate::config::dockerd_args::user_values;
use crate::config::{LogFormat, Settings, DEFAULT_DOCKERD_LOG_MAX};
use crate::exit::EXIT_USAGE;
use crate::plan::DockerMode;
use ws_init_core::spawn::RunAs;

/// Reads `WS_INIT_HANDOVER_FD` and removes it from this process's
/// environment, so that no child (iptables, the TLS helpers, …) sees it.
/// With `claim`, the descriptor is taken and made close-on-exec at once.
/// Call first thing in `main`, while the process has one thread.
pub fn take_handover_fd(claim: bool) -> Option<Result<OwnedFd, String>> {
    if !claim {
        std::env::remove_var(handover::FD_ENV);
        return None;
    }
    handover::take_fd_from_env(handover::FD_ENV).map(|r| {
        r.map_err(|why| {
            format!("{why}; `ws-init-bringup __bringup` is started by ws-init (PID 1), which passes a pipe there")
        })
    })
}

/// `ws-init-bringup __bringup` with its handover descriptor: returns the exit status.
pub fn run(settings: Settings, out: OwnedFd) -> i32 {
    // A user that does not exist is a configuration error: refuse it before
    // anything is changed (resolved again below, after the group edits).
    if let Err(msg) = crate::app::resolve_run_as(&settings) {
        error!("{msg}");
        return EXIT_USAGE;
    }
    let prepared = prepare(&settings);
    // After the group edits, so the socket's group is among the user's.
    let main_user = match crate::app::resolve_run_as(&settings) {
        Ok(u) => u,
        Err(msg) => {
            error!("{msg}");
            return EXIT_USAGE;
        }
    };
    let decision = decide(&Inputs {
        settings: &settings,
        prepared: prepared.as_ref(),
        main_user: Ok(main_user),
        stderr_is_terminal: nix::unistd::isatty(2).unwrap_or(false),
    });
    say(&decision.said);
    let mut file = std::fs::File::from(out);
    if let Err(e) = file.write_all(decision.handover.encode().as_bytes()) {
        error!("cannot hand the bring-up's plan to ws-init (PID 1): {e}");
        return 1;
    }
    // PID 1 starts the workspace on end of file.
    drop(file);
    if let Some(host) = decision.remote {
        let Some(rt) = crate::app::runtime() else {
            return 0;
        };
        rt.block_on(crate::app::check_remote(&settings, &host));
    }
    0
}

/// Probe, plan and apply, when Docker is wanted at all.
pub fn prepare(settings: &Settings) -> Option<Prepared> {
    settings.docker_enable_client.then(|| {
        let (probe, plan) = bringup::probe_and_plan(settings);
        bringup::apply(probe, plan)
    })
}

/// What the decision is taken from.
pub struct Inputs<'a> {
    pub settings: &'a Settings,
    /// `None`: Docker is off (`WS_DOCKER_ENABLE_CLIENT`).
    pub prepared: Option<&'a Prepared>,
    /// `app::resolve_run_as` after the group edits.
    pub main_user: Result<Option<RunAs>, String>,
    /// ws-init's stderr is a terminal (the logging level's rule).
    pub stderr_is_terminal: bool,
}

/// One line the decision says, logged by [`say`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    Error(String),
    Warn(String),
    Info(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub handover: Handover,
    /// In order, as ws-init as PID 1 said it before the split.
    pub said: Vec<Said>,
    /// A remote engine (`DOCKER_HOST`) to check once, after the handover.
    pub remote: Option<String>,
}

/// Writes what the decision says to ws-init's log.
pub fn say(said: &[Said]) {
    for s in said {
        match s {
            Said::Error(m) => error!("{m}"),
            Said::Warn(m) => warn!("{m}"),
            Said::Info(m) => info!("{m}"),
        }
    }
}

/// Everything PID 1 is to do, from the settings, the probe and the plan (pure).
pub fn decide(i: &Inputs) -> Decision {
    let s = i.settings;
    let mut said = Vec::new();
    let mut remote = None;
    let mut dockerd = None;
    let mut dns = None;
    if let Some(p) = i.prepared {
        if let DockerMode::Remote { host, .. } = &p.plan.mode {
            remote = Some(host.clone());
        } else {
            dockerd = supervised_dockerd(p, s, &i.main_user, &mut said);
        }
        if dockerd.is_some() {
            dns = forwarder(p);
        }
    }
    let wait = docker_wait(s, i.prepared, dockerd.is_some(), &mut said);
    let level = crate::logging::effective_level(s.log_level, s.log_level_set, i.stderr_is_terminal);
    Decision {
        handover: Handover {
            log_level: level.into(),
            log_json: s.log_format == LogFormat::Json,
            stop_timeout: s.stop_timeout,
            main_user: i.main_user.clone().ok().flatten(),
            wait,
            dockerd,
            dns,
        },
        said,
        remote,
    }
}

/// The inner dockerd PID 1 supervises, if one is started: what
/// `app::start_docker` decided before the split.
fn supervised_dockerd(
    p: &Prepared,
    s: &Settings,
    main_user: &Result<Option<RunAs>, String>,
    said: &mut Vec<Said>,
) -> Option<Dockerd> {
    let plan = p.plan.dockerd.as_ref()?;
    if !p.dockerd_allowed {
        said.push(Said::Error("dockerd is not started because a required preparation step failed (see above); the workspace runs without Docker".into()));
        return None;
    }
    if let Err(why) = &p.probe.dockerd_program {
        said.push(Said::Error(format!("cannot start dockerd: {why}; install it in a root-owned directory that only root can write (ws-init never looks up programs it runs as root in the caller's PATH); the workspace runs without Docker")));
        return None;
    }
    let mut d = Dockerd {
        program: plan.program.clone(),
        args: plan.args.clone(),
        env: plan.env.clone(),
        socket: plan.socket.clone(),
        log_path: s.dockerd_log.clone(),
        log_max_bytes: DEFAULT_DOCKERD_LOG_MAX,
        log_gid: s.docker_gid,
        run_as: None,
        shutdown_timeout: shutdown_timeout_arg(&plan.args),
    };
    if let DockerMode::Rootless { .. } = &p.plan.mode {
        // rootlesskit and dockerd as the workspace user; their pid files
        // live in the user's runtime directory, which root does not touch
        // (the user could plant links there): no stale files.
        let user = match main_user {
            Ok(Some(u)) if u.uid != 0 => u,
            Ok(_) => {
                said.push(Said::Error("rootless dockerd needs a non-root workspace user (WS_USER); Docker stays unavailable".into()));
                return None;
            }
            Err(e) => {
                said.push(Said::Error(format!(
                    "rootless dockerd: {e}; Docker stays unavailable"
                )));
                return None;
            }
        };
        if let Some(r) = &p.probe.rootless {
            for l in crate::rootless::plan::limitations(&p.probe, r) {
                said.push(Said::Info(format!("rootless Docker: {l}")));
            }
        }
        said.push(Said::Info(format!(
            "starting rootless dockerd as {}: {} {}",
            user.name,
            plan.program.display(),
            plan.args.join(" ")
        )));
        d.run_as = Some(user.clone());
        return Some(d);
    }
    Some(d)
}

/// dockerd's `--shutdown-timeout` in `args` (the last one wins); `None`
/// without one (daemon.json may set it) or when it is no whole number of
/// seconds. A negative one means "wait forever".
fn shutdown_timeout_arg(args: &[String]) -> Option<Duration> {
    let last = user_values(args, "shutdown-timeout").pop()?;
    match last.parse::<i64>().ok()? {
        s if s < 0 => Some(Duration::MAX),
        s => Some(Duration::from_secs(s as u64)),
    }
}

/// The inner DNS forwarder the plan asks for, with the dockerd flags that
/// name it (PID 1 drops them when it cannot listen).
fn forwarder(p: &Prepared) -> Option<Dns> {
    let plan = p.plan.dns.as_ref()?;
    let fwd = plan.forwarder.as_ref()?;
    Some(Dns {
        listen: fwd.listen,
        upstreams: fwd.upstreams.clone(),
        dockerd_args: plan.dockerd_args.clone(),
    })
}

/// `WS_DOCKER_WAIT`: a supervised dockerd's first start, or polling the host
/// socket or remote engine (`ws-init-bringup wait-docker`), or nothing.
fn docker_wait(
    s: &Settings,
    prepared: Option<&Prepared>,
    supervised: bool,
    said: &mut Vec<Said>,
) -> DockerWait {
    let Some(p) = prepared.filter(|p| s.docker_wait && p.plan.mode.works()) else {
        return DockerWait::Off;
    };
    let inner = !matches!(p.plan.mode, DockerMode::Remote { .. }) && p.plan.dockerd.is_some();
    if supervised {
        DockerWait::Supervised
    } else if inner {
        said.push(Said::Warn("dockerd was not started, so the main command starts without waiting for it (WS_DOCKER_WAIT)".into()));
        DockerWait::Off
    } else {
        DockerWait::Poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogLevel;
    use crate::plan::dns::{DnsDecision, DnsPlan, ForwarderPlan};
    use crate::plan::{make_plan, tests as fixtures, Plan, RemoteKind};
    use std::time::Duration;
    use ws_init_core::log::Level;

    fn user(name: &str, uid: u32) -> RunAs {
        RunAs {
            name: name.into(),
            uid,
            gid: uid,
            groups: vec![uid, 999],
            home: format!("/home/{name}"),
            shell: "/bin/bash".into(),
        }
    }

    /// A fixture's probe with dockerd installed (the trees hold no programs).
    fn prepared(case: &str, s: &Settings) -> Prepared {
        let mut probe = fixtures::probe(case, s);
        probe.dockerd_program = Ok("/usr/bin/dockerd".into());
        let plan = make_plan(&probe, s);
        Prepared {
            probe,
            plan,
            dockerd_allowed: true,
        }
    }

    fn decide_with(
        s: &Settings,
        p: Option<&Prepared>,
        u: Result<Option<RunAs>, String>,
    ) -> Decision {
        decide(&Inputs {
            settings: s,
            prepared: p,
            main_user: u,
            stderr_is_terminal: false,
        })
    }

    fn with_mode(p: &Prepared, mode: DockerMode) -> Prepared {
        Prepared {
            probe: p.probe.clone(),
            plan: Plan {
                mode,
                ..p.plan.clone()
            },
            dockerd_allowed: p.dockerd_allowed,
        }
    }

    #[test]
    fn docker_off_hands_over_the_user_the_log_and_the_stop_budget_only() {
        let s = Settings {
            log_level: LogLevel::Debug,
            log_level_set: true,
            log_format: LogFormat::Json,
            stop_timeout: Duration::from_millis(7500),
            docker_wait: true,
            ..Settings::default()
        };
        let d = decide_with(&s, None, Ok(Some(user("workspace", 1000))));
        assert_eq!(
            d.handover,
            Handover {
                log_level: Level::Debug,
                log_json: true,
                stop_timeout: Duration::from_millis(7500),
                main_user: Some(RunAs {
                    name: "workspace".into(),
                    uid: 1000,
                    gid: 1000,
                    groups: vec![1000, 999],
                    home: "/home/workspace".into(),
                    shell: "/bin/bash".into(),
                }),
                wait: DockerWait::Off,
                dockerd: None,
                dns: None,
            }
        );
        assert_eq!(d.said, []);
        assert_eq!(d.remote, None);
        // The handover survives its own format.
        assert_eq!(Handover::decode(&d.handover.encode()).unwrap(), d.handover);
    }

    #[test]
    fn the_terminal_rule_applies_to_the_level_handed_over() {
        let s = Settings::default();
        let on_tty = decide(&Inputs {
            settings: &s,
            prepared: None,
            main_user: Ok(None),
            stderr_is_terminal: true,
        });
        assert_eq!(on_tty.handover.log_level, Level::Warn);
        assert!(!on_tty.handover.log_json);
        assert_eq!(on_tty.handover.main_user, None);
        let detached = decide_with(&s, None, Ok(None));
        assert_eq!(detached.handover.log_level, Level::Info);
    }

    #[test]
    fn an_inner_daemon_is_handed_over_as_planned() {
        let s = Settings {
            docker_wait: true,
            docker_gid: 2375,
            dockerd_log: "/var/log/inner.log".into(),
            ..fixtures::enabled()
        };
        let p = prepared("docker-privileged-v2", &s);
        let plan = p.plan.dockerd.clone().expect("an inner dockerd is planned");
        assert_eq!(plan.program, std::path::PathBuf::from("/usr/bin/dockerd"));
        let d = decide_with(&s, Some(&p), Ok(Some(user("workspace", 1000))));
        let h = &d.handover;
        assert_eq!(h.wait, DockerWait::Supervised);
        let dockerd = h.dockerd.as_ref().unwrap();
        assert_eq!(dockerd.program, plan.program);
        assert_eq!(dockerd.args, plan.args);
        assert_eq!(dockerd.env, plan.env);
        assert_eq!(dockerd.socket, plan.socket);
        assert_eq!(
            dockerd.log_path,
            std::path::PathBuf::from("/var/log/inner.log")
        );
        assert_eq!(dockerd.log_gid, 2375);
        assert_eq!(dockerd.log_max_bytes, DEFAULT_DOCKERD_LOG_MAX);
        assert_eq!(dockerd.run_as, None);
        assert_eq!(
            dockerd.shutdown_timeout,
            Some(std::time::Duration::from_secs(4)),
            "the planned --shutdown-timeout"
        );
        assert_eq!(d.said, []);
        assert_eq!(d.remote, None);
        assert_eq!(Handover::decode(&h.encode()).unwrap(), *h);
    }

    #[test]
    fn the_dns_forwarder_comes_with_the_flags_that_name_it() {
        let s = fixtures::enabled();
        let mut p = prepared("docker-privileged-v2", &s);
        let dns = DnsPlan {
            decision: DnsDecision::Forwarder,
            why: "loopback resolver".into(),
            forwarder: Some(ForwarderPlan {
                listen: "172.17.0.2:53".parse().unwrap(),
                upstreams: vec!["127.0.0.11:53".parse().unwrap()],
            }),
            dockerd_args: vec!["--dns=172.17.0.2".into()],
        };
        p.plan.dns = Some(dns.clone());
        let d = decide_with(&s, Some(&p), Ok(None));
        assert_eq!(
            d.handover.dns,
            Some(Dns {
                listen: "172.17.0.2:53".parse().unwrap(),
                upstreams: vec!["127.0.0.11:53".parse().unwrap()],
                dockerd_args: vec!["--dns=172.17.0.2".into()],
            })
        );
        // No forwarder without the dockerd it serves.
        p.dockerd_allowed = false;
        assert_eq!(decide_with(&s, Some(&p), Ok(None)).handover.dns, None);
        // A plan without a forwarder (dockerd's own DNS) hands none over.
        p.dockerd_allowed = true;
        p.plan.dns = Some(DnsPlan {
            forwarder: None,
            ..dns
        });
        assert_eq!(decide_with(&s, Some(&p), Ok(None)).handover.dns, None);
    }

    #[test]
    fn no_dockerd_when_a_required_step_failed_or_the_program_is_unusable() {
        let s = Settings {
            docker_wait: true,
            ..fixtures::enabled()
        };
        let mut p = prepared("docker-privileged-v2", &s);
        p.dockerd_allowed = false;
        let d = decide_with(&s, Some(&p), Ok(None));
        assert_eq!(d.handover.dockerd, None);
        assert_eq!(d.handover.wait, DockerWait::Off);
        assert!(
            matches!(&d.said[..], [Said::Error(e), Said::Warn(w)]
                if e.contains("required preparation step failed") && w.contains("starts without waiting")),
            "{:?}",
            d.said
        );
        p.dockerd_allowed = true;
        p.probe.dockerd_program = Err("no dockerd in /usr/sbin:/usr/bin".into());
        let d = decide_with(&s, Some(&p), Ok(None));
        assert_eq!(d.handover.dockerd, None);
        assert!(
            matches!(&d.said[0], Said::Error(e)
                if e.starts_with("cannot start dockerd: no dockerd in /usr/sbin:/usr/bin; install it")),
            "{:?}",
            d.said
        );
    }

    #[test]
    fn a_host_socket_or_remote_engine_is_polled_and_a_remote_one_checked() {
        let s = Settings {
            docker_wait: true,
            ..fixtures::enabled()
        };
        let base = prepared("docker-privileged-v2", &s);
        let mut p = with_mode(
            &base,
            DockerMode::HostSocket {
                path: "/var/run/docker.sock".into(),
                gid: 999,
                read_only: false,
                answers: true,
            },
        );
        p.plan.dockerd = None;
        p.plan.dns = None;
        let d = decide_with(&s, Some(&p), Ok(None));
        assert_eq!(
            (d.handover.wait, &d.handover.dockerd),
            (DockerWait::Poll, &None)
        );
        assert_eq!(d.remote, None);
        let p = with_mode(
            &base,
            DockerMode::Remote {
                host: "tcp://engine:2376".into(),
                kind: RemoteKind::TcpTls,
            },
        );
        let d = decide_with(&s, Some(&p), Ok(None));
        assert_eq!(d.handover.wait, DockerWait::Poll);
        assert_eq!(d.handover.dockerd, None);
        assert_eq!(d.handover.dns, None);
        assert_eq!(d.remote.as_deref(), Some("tcp://engine:2376"));
        assert_eq!(d.said, []);
        // Without WS_DOCKER_WAIT, nothing holds the main command back.
        let quick = Settings {
            docker_wait: false,
            ..s.clone()
        };
        assert_eq!(
            decide_with(&quick, Some(&p), Ok(None)).handover.wait,
            DockerWait::Off
        );
    }

    #[test]
    fn docker_that_cannot_work_is_not_waited_for() {
        let s = Settings {
            docker_wait: true,
            ..fixtures::enabled()
        };
        let p = prepared("docker-plain", &s);
        assert!(matches!(p.plan.mode, DockerMode::Impossible { .. }));
        let d = decide_with(&s, Some(&p), Ok(None));
        assert_eq!(d.handover.wait, DockerWait::Off);
        assert_eq!(d.handover.dockerd, None);
        assert_eq!(d.said, []);
    }

    #[test]
    fn rootless_runs_dockerd_as_the_workspace_user_and_touches_no_pid_file() {
        let s = Settings {
            docker_wait: true,
            ..fixtures::enabled()
        };
        let p = with_mode(
            &prepared("docker-privileged-v2", &s),
            DockerMode::Rootless { user: "dev".into() },
        );
        let d = decide_with(&s, Some(&p), Ok(Some(user("dev", 1000))));
        let dockerd = d.handover.dockerd.as_ref().unwrap();
        assert_eq!(dockerd.run_as, Some(user("dev", 1000)));
        assert_eq!(d.handover.wait, DockerWait::Supervised);
        assert!(
            matches!(d.said.last(), Some(Said::Info(m)) if m.starts_with("starting rootless dockerd as dev: ")),
            "{:?}",
            d.said
        );
        for (u, says) in [
            (Ok(Some(user("root", 0))), "needs a non-root workspace user"),
            (Ok(None), "needs a non-root workspace user"),
            (
                Err("WS_USER=dev: no such user".to_string()),
                "rootless dockerd: WS_USER=dev: no such user",
            ),
        ] {
            let d = decide_with(&s, Some(&p), u);
            assert_eq!(d.handover.dockerd, None);
            assert_eq!(d.handover.wait, DockerWait::Off);
            assert!(
                matches!(&d.said[0], Said::Error(e) if e.contains(says)),
                "{:?}",
                d.said
            );
        }
    }

    #[test]
    fn shutdown_timeout_is_read_from_the_command_line() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shutdown_timeout_arg(&args(&["--group=docker", "--shutdown-timeout=4"])),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            shutdown_timeout_arg(&args(&["--shutdown-timeout=4", "--shutdown-timeout", "30"])),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            shutdown_timeout_arg(&args(&["--shutdown-timeout=-1"])),
            Some(Duration::MAX)
        );
        assert_eq!(shutdown_timeout_arg(&args(&["--debug"])), None);
        assert_eq!(shutdown_timeout_arg(&args(&["--shutdown-timeout=x"])), None);
    }
}
