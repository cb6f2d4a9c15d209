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
use crate::pid1::signals::{self, Action, SignalFd};
use crate::pid1::{self, Child, Incoming, Reaper, RunAs};
use crate::plan::DockerMode;
use crate::{bringup, docker_api, stop_budget, user};

/// Runs the whole workspace lifetime and returns ws-init's exit status.
pub fn run(args: Vec<OsString>, settings: Settings) -> i32 {
    let Some(rt) = runtime() else { return 1 };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, workspace(args, settings))
}

/// Blocks every catchable signal for `ws-init CMD`: they are read from a
/// signalfd and forwarded (pid1::signals). `main` calls it before anything
/// else, while the process has one thread, so every thread inherits the mask.
pub fn block_signals() {
    if let Err(e) = pid1::signals::block_all() {
        eprintln!("ws-init: cannot block signals to forward them ({e}); signals may end ws-init");
    }
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
    let probe = crate::bringup::probe_system(settings);
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

/// Deadlines of the ordered shutdown, all within `stop_timeout` of its start
/// (the split is `stop_budget::split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopDeadlines {
    pub main: Instant,
    /// Inner containers still running are SIGKILLed here at the latest.
    pub containers: Instant,
    pub dockerd: Instant,
    pub kill: Instant,
}

impl StopDeadlines {
    pub fn from(start: Instant, stop_timeout: Duration) -> StopDeadlines {
        let split = stop_budget::split(stop_timeout);
        StopDeadlines {
            main: start + split.main,
            containers: start + split.containers,
            dockerd: start + split.dockerd,
            kill: start + split.kill,
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
    let sigfd = match SignalFd::open() {
        Ok(fd) => fd,
        Err(e) => {
            error!("cannot open a signalfd to receive signals: {e}");
            return 1;
        }
    };
    let (reaper, mut inbox) = Reaper::start_with_signals(sigfd);

    // A user that does not exist is a configuration error: refuse it before
    // anything is started (resolved again below, after the group edits).
    if let Err(msg) = resolve_run_as(&settings) {
        error!("{msg}");
        return EXIT_USAGE;
    }

    let prepared = if settings.docker_enable_client {
        let (probe, plan) = bringup::probe_and_plan(&settings);
        Some(bringup::apply(probe, plan))
    } else {
        None
    };
    let dockerd = prepared
        .as_ref()
        .and_then(|p| start_docker(&reaper, p, &settings));
    if settings.docker_wait {
        if let Some(p) = prepared.as_ref().filter(|p| p.plan.mode.works()) {
            if let Some(signo) = wait_for_docker(p, dockerd.as_ref(), &settings, &mut inbox).await {
                stop_now(&reaper, dockerd.as_ref(), settings.stop_timeout).await;
                return 128 + signo;
            }
        }
    }

    // After the group edits above, so the socket's group is among the user's.
    let run_as = match resolve_run_as(&settings) {
        Ok(r) => r,
        Err(msg) => {
            error!("{msg}");
            stop_now(&reaper, dockerd.as_ref(), settings.stop_timeout).await;
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
            stop_now(&reaper, dockerd.as_ref(), settings.stop_timeout).await;
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

    // Until the main command exits or a stop signal arrives, every signal
    // goes to it.
    loop {
        tokio::select! {
            _ = main.wait() => break,
            sig = inbox.recv() => {
                deliver(&mut main, sig, true);
                if signals::starts_stop(sig.signo) {
                    info!("{} received: stopping the workspace", signals::name(sig.signo));
                    break;
                }
            }
        }
    }
    let deadlines = StopDeadlines::from(Instant::now(), settings.stop_timeout);
    let exit = main_share(&mut main, &mut inbox, &reaper, &deadlines).await;
    stop_everything(&reaper, dockerd.as_ref(), &deadlines).await;
    exit.exit_code()
}

/// Sends a received signal on to the main command; for SIGTSTP/SIGTTIN/
/// SIGTTOU when ws-init is not PID 1, then stops ws-init too (`job_control`:
/// not while the workspace is stopping, which must keep its deadlines).
fn deliver(main: &mut Child, sig: Incoming, job_control: bool) {
    tracing::debug!(
        "forwarding {} to the main command",
        signals::name(sig.signo)
    );
    main.signal_number(sig.signo);
    if job_control && sig.action == Action::ForwardThenStop {
        // Continued by SIGCONT, which then arrives here and is forwarded.
        signals::stop_self();
    }
}

/// `WS_DOCKER_WAIT`: holds the main command back until Docker answers, the
/// supervisor gives up or dockerd fails before answering (no point waiting
/// the full limit then), or the limit passes. Returns the signal number if
/// SIGTERM/SIGINT asked to stop meanwhile.
async fn wait_for_docker(
    prepared: &bringup::Prepared,
    dockerd: Option<&DockerdHandle>,
    settings: &Settings,
    inbox: &mut pid1::Inbox,
) -> Option<i32> {
    let inner =
        !matches!(prepared.plan.mode, DockerMode::Remote { .. }) && prepared.plan.dockerd.is_some();
    if inner && dockerd.is_none() {
        warn!("dockerd was not started, so the main command starts without waiting for it (WS_DOCKER_WAIT)");
        return None;
    }
    let limit = DOCKER_WAIT_LIMIT.as_secs();
    // A supervised dockerd already probes its own socket (daemon.json's
    // `hosts` and the rootless socket included): its first start is the
    // answer, so the socket is not polled a second time. Otherwise (a host
    // socket, a remote engine) the endpoint is polled as `wait-docker` does.
    let waited = async {
        match dockerd {
            Some(h) => match tokio::time::timeout(DOCKER_WAIT_LIMIT, h.first_start()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(why)) => Err(format!(
                    "{why}: starting the main command without Docker (WS_DOCKER_WAIT)"
                )),
                Err(_) => Err(format!(
                    "Docker did not answer within {limit}s; starting the main command anyway"
                )),
            },
            None => docker_api::wait_docker(settings, DOCKER_WAIT_LIMIT)
                .await
                .map(|_| ())
                .map_err(|e| {
                    format!("Docker did not answer within {limit}s ({e}); starting the main command anyway")
                }),
        }
    };
    tokio::pin!(waited);
    loop {
        tokio::select! {
            r = &mut waited => {
                match r {
                    Ok(()) => info!("Docker answers: starting the main command (WS_DOCKER_WAIT)"),
                    Err(why) => warn!("{why}"),
                }
                return None;
            }
            sig = inbox.recv() => {
                // No main command yet: only a stop request matters.
                if signals::starts_stop(sig.signo) {
                    info!("{} received while waiting for Docker: stopping", signals::name(sig.signo));
                    return Some(sig.signo);
                }
                tracing::debug!("{} received before the main command started: dropped", signals::name(sig.signo));
            }
        }
    }
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
            let (settings, host) = (settings.clone(), host.clone());
            tokio::task::spawn_local(async move { check_remote(&settings, &host).await });
            None
        }
        _ => {
            let plan = prepared.plan.dockerd.as_ref()?;
            if !prepared.dockerd_allowed {
                error!("dockerd is not started because a required preparation step failed (see above); the workspace runs without Docker");
                return None;
            }
            if let Err(why) = &prepared.probe.dockerd_program {
                error!("cannot start dockerd: {why}; install it in a root-owned directory that only root can write (ws-init never looks up programs it runs as root in the caller's PATH); the workspace runs without Docker");
                return None;
            }
            let mut spec = DockerdSpec::new(&plan.program, &plan.socket, &settings.dockerd_log);
            // The inner DNS forwarder listens before dockerd hands its address out.
            spec.args = crate::dns::start_planned(prepared.plan.dns.as_ref(), &plan.args);
            spec.env = plan.env.clone();
            spec.stop_timeout = settings.stop_timeout;
            spec.log_gid = settings.docker_gid;
            if let DockerMode::Rootless { .. } = &prepared.plan.mode {
                // rootlesskit and dockerd as the workspace user; their pid
                // files live in the user's runtime directory, which root
                // does not walk (the user could plant links there).
                spec.run_as = crate::rootless::run_as(settings)?;
                crate::rootless::log_limitations(&prepared.probe);
                info!(
                    "starting rootless dockerd as {}: {} {}",
                    spec.run_as.as_ref().map(|u| u.name.as_str()).unwrap_or("?"),
                    plan.program.display(),
                    plan.args.join(" ")
                );
                return Some(Supervisor::start(reaper, spec));
            }
            // Before every (re)start: a crashed dockerd leaves its pid file behind.
            spec.pre_start = Some(Box::new(|| {
                if let Err(e) = bringup::remove_stale_pid_files() {
                    warn!("{e}");
                }
            }));
            info!("starting dockerd {}", spec.args.join(" "));
            Some(Supervisor::start(reaper, spec))
        }
    }
}

const REMOTE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// A remote engine (`DOCKER_HOST`) is checked once: logged, never fatal.
pub(crate) async fn check_remote(settings: &Settings, host: &str) {
    // The endpoint config parsed from DOCKER_HOST (with DOCKER_TLS_VERIFY).
    let endpoint = match settings.docker_host.as_ref().map(|h| h.connectable()) {
        Some(Ok(e)) => e,
        Some(Err(e)) => return warn!("{e}"),
        None => return warn!("DOCKER_HOST={host}: not set"),
    };
    match docker_api::check(endpoint, REMOTE_CHECK_TIMEOUT).await {
        Ok(reach) => info!("remote engine {endpoint}: {reach}"),
        Err(e) => warn!(
            "remote engine {endpoint} does not answer: {e}; the docker CLI will fail until it does"
        ),
    }
}

/// dockerd stops after the main command (it may still be using Docker) and
/// before the rest: SIGTERM lets it stop inner containers cleanly. Those
/// still running when their time is over are killed meanwhile, so dockerd
/// can finish by itself.
async fn stop_dockerd(dockerd: Option<&DockerdHandle>, deadlines: &StopDeadlines) {
    let Some(handle) = dockerd else { return };
    let t = Instant::now();
    let (hold_at, why) = inner_containers_time(t, handle.shutdown_timeout(), deadlines);
    let ended = tokio::select! {
        ended = tokio::time::timeout_at(deadlines.dockerd, handle.stop()) => ended,
        never = hold_inner_containers(hold_at, &why) => match never {},
    };
    match ended {
        Ok(Some(exit)) => info!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            "dockerd stopped: {exit}"
        ),
        Ok(None) => {}
        Err(_) => warn!("dockerd still stopping at its deadline; it is killed with the rest"),
    }
}

/// When inner containers still running get SIGKILL, dockerd having had
/// SIGTERM at `sigterm`, and why then: its `--shutdown-timeout`, unless that
/// would not leave dockerd the time to finish before its deadline (or is
/// unknown: set in daemon.json).
fn inner_containers_time(
    sigterm: Instant,
    shutdown_timeout: Option<Duration>,
    deadlines: &StopDeadlines,
) -> (Instant, String) {
    match shutdown_timeout.and_then(|d| sigterm.checked_add(d)) {
        Some(at) if at <= deadlines.containers => (
            at,
            format!(
                "dockerd's --shutdown-timeout of {} s has passed",
                shutdown_timeout.unwrap_or_default().as_secs()
            ),
        ),
        _ => (
            deadlines.containers,
            "the stop budget (WS_STOP_TIMEOUT) leaves them no more time".to_string(),
        ),
    }
}

/// From `at` on, while dockerd is still stopping: SIGKILL to the processes
/// of inner containers (dockerd would wait for each one's own stop timeout),
/// again every 100 ms for any it starts meanwhile. Runs until cancelled.
async fn hold_inner_containers(at: Instant, why: &str) -> std::convert::Infallible {
    use crate::dockerd::inner_containers;
    tokio::time::sleep_until(at).await;
    let proc = std::path::Path::new("/proc");
    let sel = inner_containers::kill_all(proc);
    if !sel.pids.is_empty() {
        warn!(
            "{why}: sent SIGKILL to {} inner container(s) still running ({} process(es)); dockerd sees them exit and finishes its shutdown",
            sel.containers,
            sel.pids.len()
        );
    }
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let more = inner_containers::kill_all(proc);
        if !more.pids.is_empty() {
            tracing::debug!(
                "sent SIGKILL to {} more inner container process(es)",
                more.pids.len()
            );
        }
    }
}

/// The main command's share of the stop, which has begun (it got SIGTERM,
/// or it ended): processes entered with `docker exec` get SIGTERM now too,
/// and both are waited for until the main deadline, still forwarding
/// signals to the main command. It is SIGKILLed then; exec'd processes still
/// running get SIGTERM again after dockerd, and SIGKILL at the end.
async fn main_share(
    main: &mut Child,
    inbox: &mut pid1::Inbox,
    reaper: &Reaper,
    deadlines: &StopDeadlines,
) -> ChildExit {
    let outsiders = reaper.signal_outsiders(Signal::SIGTERM);
    if !outsiders.is_empty() {
        info!(
            "sent SIGTERM to {} process(es) started from outside ws-init (docker exec)",
            outsiders.len()
        );
    }
    let exit = loop {
        tokio::select! {
            exit = main.wait() => break exit,
            sig = inbox.recv() => deliver(main, sig, false),
            _ = tokio::time::sleep_until(deadlines.main) => {
                warn!("main command still running at its stop deadline: sending SIGKILL");
                main.signal(Signal::SIGKILL);
                break main.wait().await;
            }
        }
    };
    info!("main command {exit}");
    if !outsiders.is_empty() && !reaper.wait_gone(&outsiders, deadlines.main).await {
        warn!("processes started with docker exec still running at the main command's deadline");
    }
    exit
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

/// The ordered stop with its deadlines counted from now: for the ways out
/// before (or instead of) the main command's run.
async fn stop_now(reaper: &Reaper, dockerd: Option<&DockerdHandle>, stop_timeout: Duration) {
    let deadlines = StopDeadlines::from(Instant::now(), stop_timeout);
    stop_everything(reaper, dockerd, &deadlines).await;
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
    fn stop_deadlines_follow_the_budget_split_in_order() {
        let t0 = Instant::now();
        let d = StopDeadlines::from(t0, Duration::from_secs(8));
        assert_eq!(d.main, t0 + Duration::from_secs(2));
        assert_eq!(d.containers, t0 + Duration::from_millis(6500));
        assert_eq!(d.dockerd, t0 + Duration::from_millis(7500));
        assert_eq!(d.kill, t0 + Duration::from_secs(8));
        let small = StopDeadlines::from(t0, crate::config::MIN_STOP_TIMEOUT);
        assert!(small.main < small.containers && small.containers < small.dockerd);
        assert!(small.dockerd < small.kill);
    }

    /// Inner containers get dockerd's --shutdown-timeout from its SIGTERM,
    /// but never so long that dockerd could not finish before its deadline.
    #[test]
    fn inner_containers_are_held_to_the_shutdown_timeout_within_the_budget() {
        let t0 = Instant::now();
        let d = StopDeadlines::from(t0, Duration::from_secs(8));
        let secs = Duration::from_secs;
        let sigterm = t0 + secs(2);
        let (at, why) = inner_containers_time(sigterm, Some(secs(4)), &d);
        assert_eq!(at, t0 + secs(6));
        assert!(why.contains("--shutdown-timeout of 4 s"), "{why}");
        // A user's --shutdown-timeout=30, -1 (forever), or one in daemon.json.
        for given in [Some(secs(30)), Some(Duration::MAX), None] {
            let (at, why) = inner_containers_time(sigterm, given, &d);
            assert_eq!(at, d.containers, "{given:?}");
            assert!(why.contains("WS_STOP_TIMEOUT"), "{why}");
        }
        let (at, _) = inner_containers_time(t0, Some(secs(1)), &d);
        assert_eq!(at, t0 + secs(1));
    }
}
