//! `ws-init CMD`: bring the workspace up, run the main command, shut down in order.

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::dockerd::{DockerdHandle, DockerdSpec, Supervisor};
use crate::exit::{spawn_error_code, ChildExit, EXIT_USAGE};
use crate::pid1::{self, Child, Reaper, RunAs, SignalStreams};
use crate::plan::DockerMode;
use crate::{bringup, docker_api, user};

/// Runs the whole workspace lifetime and returns ws-init's exit status.
pub fn run(args: Vec<OsString>, settings: Settings) -> i32 {
    if let Err(e) = pid1::clear_inherited_signal_mask() {
        warn!("cannot unblock inherited blocked signals ({e}); forwarding may miss some");
    }
    let Some(rt) = runtime() else { return 1 };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, workspace(args, settings))
}

/// The current-thread runtime every ws-init command runs on; `None` after
/// printing why it could not be built.
pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("ws-init: cannot start the event loop: {e}");
            None
        }
    }
}

/// `ws-init doctor [--json]`: what this container offers and what ws-init
/// would do; exit 0 when Docker would work (or is disabled).
pub fn doctor(settings: &Settings, json: bool) -> i32 {
    let probe = crate::probe::probe_system(settings);
    let plan = crate::plan::make_plan(&probe, settings);
    let report = crate::doctor::report(&probe, &plan, settings);
    if json {
        println!("{}", crate::doctor::render_json(&report));
    } else {
        print!("{}", crate::doctor::render_text(&report));
    }
    if report.ok {
        0
    } else {
        1
    }
}

/// `ws-init wait-docker [--timeout S]`: exit 0 once the Docker API answers
/// (at once when Docker is disabled), 1 with the last error at the timeout.
pub fn wait_docker(settings: &Settings, timeout: Duration) -> i32 {
    let Some(rt) = runtime() else { return 1 };
    match rt.block_on(docker_api::wait_docker(settings, timeout)) {
        Ok(docker_api::WaitOutcome::Disabled) => 0,
        Ok(docker_api::WaitOutcome::Ready {
            endpoint,
            reachability,
            waited,
        }) => {
            tracing::debug!("{endpoint}: {reachability} after {} ms", waited.as_millis());
            0
        }
        Err(e) => {
            eprintln!("ws-init: Docker is not answering: {e}");
            1
        }
    }
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
    let name =
        user::effective_user_name(settings.user.as_deref(), &user::PasswdFile::parse(&passwd));
    if settings.user.is_none() && name == "root" {
        return Ok(None);
    }
    let info =
        user::resolve_user(&passwd, &read("/etc/group")?, name).map_err(|e| e.to_string())?;
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
pub(crate) fn workspace_user_name(settings: &Settings) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let passwd = user::PasswdFile::parse(&passwd);
    let name = user::effective_user_name(settings.user.as_deref(), &passwd);
    // A numeric WS_USER names the passwd entry with that uid, if any.
    let entry = passwd
        .by_name(name)
        .or_else(|| name.parse().ok().and_then(|uid| passwd.by_uid(uid)));
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

    // A user that does not exist is a configuration error: refuse it before
    // anything is started (resolved again below, after the group edits).
    if let Err(msg) = resolve_run_as(&settings) {
        error!("{msg}");
        return EXIT_USAGE;
    }

    let prepared = if settings.docker_enable_client {
        let (probe, plan) = bringup::probe_and_plan(&settings);
        Some(bringup::apply(
            probe,
            plan,
            workspace_user_name(&settings).as_deref(),
        ))
    } else {
        None
    };
    let dockerd = prepared
        .as_ref()
        .and_then(|p| start_docker(&reaper, p, &settings));
    if settings.docker_wait && prepared.as_ref().is_some_and(|p| p.plan.mode.works()) {
        let ready = docker_api::wait_docker(&settings, DOCKER_WAIT_LIMIT);
        tokio::pin!(ready);
        loop {
            tokio::select! {
                r = &mut ready => {
                    match r {
                        Ok(_) => info!("Docker answers: starting the main command (WS_DOCKER_WAIT)"),
                        Err(e) => warn!("Docker did not answer within {}s ({e}); starting the main command anyway", DOCKER_WAIT_LIMIT.as_secs()),
                    }
                    break;
                }
                sig = signals.recv() => {
                    // No main command yet: only a stop request matters.
                    if matches!(sig, Signal::SIGTERM | Signal::SIGINT) {
                        info!("{} received while waiting for Docker: stopping", sig.as_str());
                        let deadlines = StopDeadlines::from(Instant::now(), settings.stop_timeout);
                        stop_everything(&reaper, dockerd.as_ref(), &deadlines).await;
                        return 128 + sig as i32;
                    }
                }
            }
        }
    }

    // After the group edits above, so the socket's group is among the user's.
    let run_as = match resolve_run_as(&settings) {
        Ok(r) => r,
        Err(msg) => {
            error!("{msg}");
            let deadlines = StopDeadlines::from(Instant::now(), settings.stop_timeout);
            stop_everything(&reaper, dockerd.as_ref(), &deadlines).await;
            return EXIT_USAGE;
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
            let deadlines = StopDeadlines::from(Instant::now(), settings.stop_timeout);
            stop_everything(&reaper, dockerd.as_ref(), &deadlines).await;
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
    stop_everything(&reaper, dockerd.as_ref(), &deadlines).await;
    exit.exit_code()
}

/// How long `WS_DOCKER_WAIT` holds the main command back at most: a broken
/// daemon must not keep the workspace from starting at all.
pub const DOCKER_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Starts what the mode needs: the dockerd supervisor for an inner daemon,
/// a one-time reachability check for a remote engine.
pub(crate) fn start_docker(
    reaper: &Reaper,
    prepared: &bringup::Prepared,
    settings: &Settings,
) -> Option<DockerdHandle> {
    match &prepared.plan.mode {
        DockerMode::Remote { host, .. } => {
            let host = host.clone();
            let tls_verify = settings.docker_tls_verify;
            tokio::task::spawn_local(async move {
                let endpoint = match docker_api::Endpoint::from_docker_host_tls(
                    Some(&host),
                    tls_verify.then_some("1"),
                ) {
                    Ok(e) => e,
                    Err(e) => return warn!("DOCKER_HOST={host}: {e}"),
                };
                match docker_api::check(&endpoint, REMOTE_CHECK_TIMEOUT).await {
                    Ok(reach) => info!("remote engine {endpoint}: {reach}"),
                    Err(e) => warn!("remote engine {endpoint} does not answer: {e}; the docker CLI will fail until it does"),
                }
            });
            None
        }
        _ => {
            let plan = prepared.plan.dockerd.as_ref()?;
            if !prepared.dockerd_allowed {
                error!("dockerd is not started because a required preparation step failed (see above); the workspace runs without Docker");
                return None;
            }
            let mut spec = DockerdSpec::new(&plan.program, &plan.socket, &settings.dockerd_log);
            spec.args = plan.args.clone();
            spec.env = plan.env.clone();
            spec.stop_timeout = settings.stop_timeout;
            // Before every (re)start: a crashed dockerd leaves its pid file behind.
            spec.pre_start = Some(Box::new(|| {
                if let Err(e) = bringup::remove_stale_pid_files() {
                    warn!("{e}");
                }
            }));
            info!("starting dockerd {}", plan.args.join(" "));
            Some(Supervisor::start(reaper, spec))
        }
    }
}

const REMOTE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// dockerd stops after the main command (it may still be using Docker) and
/// before the rest: SIGTERM lets it stop inner containers cleanly.
async fn stop_dockerd(dockerd: Option<&DockerdHandle>, deadlines: &StopDeadlines) {
    let Some(handle) = dockerd else { return };
    let t = Instant::now();
    match tokio::time::timeout_at(deadlines.dockerd, handle.stop()).await {
        Ok(Some(exit)) => info!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            "dockerd stopped: {exit}"
        ),
        Ok(None) => {}
        Err(_) => warn!("dockerd still stopping at its deadline; it is killed with the rest"),
    }
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

/// The ordered stop once the main command is gone (or never started):
/// dockerd first, then everything left.
pub(crate) async fn stop_everything(
    reaper: &Reaper,
    dockerd: Option<&DockerdHandle>,
    deadlines: &StopDeadlines,
) {
    stop_dockerd(dockerd, deadlines).await;
    shutdown(reaper, deadlines).await;
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
