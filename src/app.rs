//! `ws-init CMD`: bring the workspace up, run the main command, shut down in order.

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::{bringup, user};
use crate::exit::{spawn_error_code, ChildExit};
use crate::pid1::{self, Child, Reaper, RunAs, SignalStreams};

/// Runs the whole workspace lifetime and returns ws-init's exit status.
pub fn run(args: Vec<OsString>, settings: Settings) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws-init: cannot start the event loop: {e}");
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, workspace(args, settings))
}

/// The user the main command runs as (design §4): `WS_USER`, else `workspace`
/// if it exists, else root. `None` means "stay as we are".
pub fn resolve_run_as(settings: &Settings) -> Result<Option<RunAs>, String> {
    let read = |path: &str| match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("cannot read {path}: {e}")),
    };
    let passwd = read("/etc/passwd")?;
    let name = user::effective_user_name(settings.user.as_deref(), &user::PasswdFile::parse(&passwd));
    if settings.user.is_none() && name == "root" {
        return Ok(None);
    }
    let info = user::resolve_user(&passwd, &read("/etc/group")?, name).map_err(|e| e.to_string())?;
    let me = nix::unistd::Uid::effective();
    if !me.is_root() {
        if info.uid != me.as_raw() {
            warn!(
                user = %info.name,
                "ws-init is not root, so the main command runs as uid {me} instead; drop `-u` from docker run to switch users"
            );
        }
        return Ok(None);
    }
    let mut groups = info.supplementary_gids;
    groups.sort_unstable();
    groups.dedup();
    Ok(Some(RunAs {
        name: info.name,
        uid: info.uid,
        gid: info.gid,
        groups,
        home: info.home,
        shell: info.shell,
    }))
}

/// The name of the user the main command will run as, for group membership.
fn workspace_user_name(settings: &Settings) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let passwd = user::PasswdFile::parse(&passwd);
    let name = user::effective_user_name(settings.user.as_deref(), &passwd);
    // A numeric WS_USER names the passwd entry with that uid, if any.
    let entry = passwd.by_name(name).or_else(|| name.parse().ok().and_then(|uid| passwd.by_uid(uid)));
    entry.map(|e| e.name)
}

/// Deadlines of the ordered shutdown, all within `stop_timeout` of its start:
/// the main command gets half, dockerd the rest but a reserve, and whatever is
/// left is killed at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopDeadlines {
    pub main: Instant,
    pub dockerd: Instant,
    pub kill: Instant,
}

impl StopDeadlines {
    pub fn from(start: Instant, stop_timeout: Duration) -> StopDeadlines {
        let reserve = (stop_timeout / 8).min(Duration::from_secs(1));
        StopDeadlines {
            main: start + stop_timeout / 2,
            dockerd: start + stop_timeout - reserve,
            kill: start + stop_timeout,
        }
    }
}

async fn workspace(args: Vec<OsString>, settings: Settings) -> i32 {
    let cwd = std::env::current_dir().ok();
    // ws-init itself must not pin any mount.
    let _ = std::env::set_current_dir("/");
    match pid1::become_subreaper_if_needed() {
        Ok(true) => info!("not PID 1: registered as child subreaper"),
        Ok(false) => {}
        Err(e) => warn!(
            "cannot become child subreaper ({e}); orphans of the main command may stay zombies"
        ),
    }
    let mut signals = match SignalStreams::install() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return 1;
        }
    };
    let reaper = match Reaper::start() {
        Ok(r) => r,
        Err(e) => {
            error!("cannot install the SIGCHLD handler: {e}");
            return 1;
        }
    };

    let prepared = if settings.docker_enable_client {
        let (probe, plan) = bringup::probe_and_plan(&settings);
        Some(bringup::apply(probe, plan, workspace_user_name(&settings).as_deref()))
    } else {
        None
    };

    // After the group edits above, so the socket's group is among the user's.
    let run_as = match resolve_run_as(&settings) {
        Ok(r) => r,
        Err(msg) => {
            error!("{msg}");
            return 1;
        }
    };

    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    if let Some(dir) = &cwd {
        cmd.current_dir(dir);
    }
    pid1::configure_child(&mut cmd, run_as.as_ref(), pid1::stdin_is_tty());
    let program = args[0].to_string_lossy().into_owned();
    let mut main = match reaper.spawn(&mut cmd) {
        Ok(child) => child,
        Err(e) => {
            let code = spawn_error_code(&e);
            error!("cannot run {program:?}: {e}");
            shutdown(
                &reaper,
                &StopDeadlines::from(Instant::now(), settings.stop_timeout),
            )
            .await;
            return code;
        }
    };
    info!(
        pid = main.pid(),
        user = run_as
            .as_ref()
            .map(|u| u.name.as_str())
            .unwrap_or("(unchanged)"),
        "started {program:?}"
    );

    let mut stop: Option<StopDeadlines> = None;
    let exit = loop {
        tokio::select! {
            exit = main.wait() => break exit,
            sig = signals.recv() => {
                main.signal(sig);
                if matches!(sig, Signal::SIGTERM | Signal::SIGINT) {
                    info!("{} received: stopping the workspace", sig.as_str());
                    let deadlines = StopDeadlines::from(Instant::now(), settings.stop_timeout);
                    stop = Some(deadlines);
                    break stop_main(&mut main, &mut signals, &deadlines).await;
                }
            }
        }
    };
    info!("main command {exit}");
    let deadlines =
        stop.unwrap_or_else(|| StopDeadlines::from(Instant::now(), settings.stop_timeout));
    shutdown(&reaper, &deadlines).await;
    exit.exit_code()
}

/// After SIGTERM/SIGINT was forwarded: wait for the main command up to its
/// deadline, still forwarding signals; SIGKILL it if it does not go.
async fn stop_main(
    main: &mut Child,
    signals: &mut SignalStreams,
    deadlines: &StopDeadlines,
) -> ChildExit {
    loop {
        tokio::select! {
            exit = main.wait() => return exit,
            sig = signals.recv() => main.signal(sig),
            _ = tokio::time::sleep_until(deadlines.main) => {
                warn!("main command still running at the stop deadline: sending SIGKILL");
                main.signal(Signal::SIGKILL);
                return main.wait().await;
            }
        }
    }
}

/// The ordered stop after the main command is gone: everything left gets
/// SIGTERM, then SIGKILL at the deadline.
async fn shutdown(reaper: &Reaper, deadlines: &StopDeadlines) {
    reaper.terminate_remaining(deadlines.kill).await;
    let orphans = reaper.orphans_reaped();
    if orphans > 0 {
        tracing::debug!(orphans, "orphans reaped during the workspace's life");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_deadlines_split_the_timeout_in_order() {
        let t0 = Instant::now();
        let d = StopDeadlines::from(t0, Duration::from_secs(8));
        assert_eq!(d.main, t0 + Duration::from_secs(4));
        assert_eq!(d.dockerd, t0 + Duration::from_secs(7));
        assert_eq!(d.kill, t0 + Duration::from_secs(8));
        let z = StopDeadlines::from(t0, Duration::ZERO);
        assert!(z.main == t0 && z.dockerd == t0 && z.kill == t0);
        let small = StopDeadlines::from(t0, Duration::from_secs(2));
        assert!(small.main <= small.dockerd && small.dockerd <= small.kill);
    }
}
