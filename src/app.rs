//! The bring-up program's commands: `doctor`, `wait-docker`, the main
//! command's user, the remote engine's one-time check. (`ws-init CMD` itself
//! runs in the resident core, `ws_init_core::workspace`.)

use std::time::Duration;

use tracing::{info, warn};
use ws_init_core::spawn::RunAs;

use crate::config::Settings;
use crate::{docker_api, user};

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
