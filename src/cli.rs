//! Command line: `ws-init [--] CMD [ARG...]`, `ws-init doctor [--json]`,
//! `ws-init wait-docker [--timeout SECS]`, `ws-init start-docker [--timeout SECS]`.
//! Subcommand names are reserved words; `ws-init -- doctor` runs a program
//! called doctor.

use std::ffi::OsString;
use std::time::Duration;

pub const USAGE: &str = "usage: ws-init [--] CMD [ARG...]
       ws-init doctor [--json]
       ws-init wait-docker [--timeout SECS]
       ws-init start-docker [--timeout SECS]
       ws-init --version";

/// `ws-init-bringup __bringup`: the bring-up PID 1 runs as a child (not in
/// the usage: nobody runs it by hand).
pub const BRINGUP: &str = "__bringup";

/// Default bound of `wait-docker`.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    Run(Vec<OsString>),
    Doctor {
        json: bool,
    },
    WaitDocker {
        timeout: Duration,
    },
    /// Start Docker under a detached supervisor; return once it answers.
    StartDocker {
        timeout: Duration,
    },
    /// Bring the workspace up and hand PID 1 the plan (`handoff`).
    Bringup,
    Help,
    Version,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}\n{USAGE}")]
pub struct UsageError(pub String);

pub fn parse(args: &[OsString]) -> Result<Invocation, UsageError> {
    let first = args.first().map(|a| a.to_string_lossy());
    let rest = args.get(1..).unwrap_or(&[]);
    let strs = || {
        rest.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    match first.as_deref() {
        None => Err(UsageError(
            "no command given: ws-init needs the command to run as the workspace's main process"
                .into(),
        )),
        Some("--") if rest.is_empty() => Err(UsageError("no command given after --".into())),
        Some("--") => Ok(Invocation::Run(rest.to_vec())),
        Some("-h") | Some("--help") => Ok(Invocation::Help),
        Some("-V") | Some("--version") => Ok(Invocation::Version),
        Some("doctor") => match strs().as_slice() {
            [] => Ok(Invocation::Doctor { json: false }),
            [j] if j == "--json" => Ok(Invocation::Doctor { json: true }),
            other => Err(UsageError(format!(
                "doctor: unexpected arguments {other:?} (only --json is accepted)"
            ))),
        },
        Some(BRINGUP) if rest.is_empty() => Ok(Invocation::Bringup),
        Some(BRINGUP) => Err(UsageError(format!("{BRINGUP} takes no arguments"))),
        Some("wait-docker") => Ok(Invocation::WaitDocker {
            timeout: parse_timeout_args("wait-docker", &strs())?,
        }),
        Some("start-docker") => Ok(Invocation::StartDocker {
            timeout: parse_timeout_args("start-docker", &strs())?,
        }),
        // `docker run IMAGE ws-init doctor`: the entrypoint is ws-init, so the
        // command would run doctor as the workspace user, who sees neither
        // root's capabilities nor what PID 1 does. PID 1 runs doctor itself.
        Some(s)
            if std::path::Path::new(s).file_name() == Some("ws-init".as_ref())
                && rest.first().is_some_and(|a| a == "doctor") =>
        {
            parse(rest)
        }
        Some(s) if s.starts_with('-') => Err(UsageError(format!(
            "unknown option {s:?}; to run a program whose name starts with '-', put -- before it"
        ))),
        Some(_) => Ok(Invocation::Run(args.to_vec())),
    }
}

/// `[--timeout SECS]` of `wait-docker` and `start-docker`.
fn parse_timeout_args(command: &str, args: &[String]) -> Result<Duration, UsageError> {
    match args {
        [] => Ok(DEFAULT_WAIT_TIMEOUT),
        [flag, secs] if flag == "--timeout" => parse_timeout(command, secs),
        [one] if one.starts_with("--timeout=") => {
            parse_timeout(command, &one["--timeout=".len()..])
        }
        other => Err(UsageError(format!(
            "{command}: unexpected arguments {other:?} (only --timeout SECS is accepted)"
        ))),
    }
}

fn parse_timeout(command: &str, s: &str) -> Result<Duration, UsageError> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (0.0..=86400.0).contains(v))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            UsageError(format!(
                "{command}: --timeout {s:?} is not a number of seconds from 0 to 86400"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, UsageError> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn commands_and_reserved_words() {
        assert_eq!(
            p(&["bash", "-l"]).unwrap(),
            Invocation::Run(vec!["bash".into(), "-l".into()])
        );
        assert_eq!(
            p(&["--", "doctor"]).unwrap(),
            Invocation::Run(vec!["doctor".into()])
        );
        assert_eq!(
            p(&["--", "-x"]).unwrap(),
            Invocation::Run(vec!["-x".into()])
        );
        assert_eq!(p(&["doctor"]).unwrap(), Invocation::Doctor { json: false });
        assert_eq!(
            p(&["doctor", "--json"]).unwrap(),
            Invocation::Doctor { json: true }
        );
        assert!(p(&["doctor", "--yaml"]).is_err());
        // The image's entrypoint is ws-init: `docker run IMAGE ws-init doctor`.
        assert_eq!(
            p(&["ws-init", "doctor", "--json"]).unwrap(),
            Invocation::Doctor { json: true }
        );
        assert_eq!(
            p(&["/usr/local/bin/ws-init", "doctor"]).unwrap(),
            Invocation::Doctor { json: false }
        );
        assert_eq!(
            p(&["ws-init", "bash"]).unwrap(),
            Invocation::Run(vec!["ws-init".into(), "bash".into()])
        );
    }

    #[test]
    fn wait_docker_timeout() {
        assert_eq!(
            p(&["wait-docker"]).unwrap(),
            Invocation::WaitDocker {
                timeout: DEFAULT_WAIT_TIMEOUT
            }
        );
        assert_eq!(
            p(&["wait-docker", "--timeout", "2.5"]).unwrap(),
            Invocation::WaitDocker {
                timeout: Duration::from_millis(2500)
            }
        );
        assert_eq!(
            p(&["wait-docker", "--timeout=3"]).unwrap(),
            Invocation::WaitDocker {
                timeout: Duration::from_secs(3)
            }
        );
        assert!(p(&["wait-docker", "--timeout", "-1"]).is_err());
        assert!(p(&["wait-docker", "--timeout"]).is_err());
    }

    #[test]
    fn start_docker_timeout() {
        assert_eq!(
            p(&["start-docker"]).unwrap(),
            Invocation::StartDocker {
                timeout: DEFAULT_WAIT_TIMEOUT
            }
        );
        assert_eq!(
            p(&["start-docker", "--timeout", "90"]).unwrap(),
            Invocation::StartDocker {
                timeout: Duration::from_secs(90)
            }
        );
        let bad = p(&["start-docker", "--detach"]).unwrap_err().to_string();
        assert!(
            bad.starts_with("start-docker: unexpected arguments"),
            "{bad}"
        );
        assert_eq!(
            p(&["--", "start-docker"]).unwrap(),
            Invocation::Run(vec!["start-docker".into()])
        );
    }

    #[test]
    fn the_hidden_bringup_command() {
        assert_eq!(p(&["__bringup"]).unwrap(), Invocation::Bringup);
        assert!(p(&["__bringup", "x"]).is_err());
        assert!(!USAGE.contains(BRINGUP));
        assert_eq!(
            p(&["--", "__bringup"]).unwrap(),
            Invocation::Run(vec!["__bringup".into()])
        );
    }

    #[test]
    fn missing_command_is_a_usage_error() {
        assert!(p(&[]).unwrap_err().to_string().contains("no command given"));
        assert!(p(&["--"]).is_err());
        assert!(p(&["--bogus"]).unwrap_err().to_string().contains("--bogus"));
    }
}
