//! Rootless inner Docker (`WS_DOCKER_ROOTLESS=1`): dockerd runs as the
//! workspace user inside rootlesskit's user namespace, so the `docker` group
//! no longer means root in the workspace.
//!
//! `probe` reads what rootless needs into plain data, `plan` decides (pure:
//! prerequisites, subordinate id ranges, data root, rootlesskit's command),
//! `prepare` applies as root without following links, `client` points the
//! user's docker CLI at the rootless socket.

pub mod client;
pub mod plan;
pub mod prepare;
pub mod probe;
pub mod safe_fs;

use std::path::PathBuf;

use crate::config::Settings;

/// `/run/user/<uid>`: the user's runtime directory (`XDG_RUNTIME_DIR`).
pub fn runtime_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/{uid}"))
}

/// The rootless dockerd's socket for `uid`.
pub fn socket_path(uid: u32) -> PathBuf {
    runtime_dir(uid).join("docker.sock")
}

/// The socket clients (`wait-docker`, the HEALTHCHECK) use in rootless mode:
/// the workspace user's, looked up in /etc/passwd. `None` when rootless is off,
/// `DOCKER_HOST` is set (it wins, as for the docker CLI) or the user is unknown.
pub fn client_socket(settings: &Settings) -> Option<PathBuf> {
    if !settings.docker_rootless || settings.docker_host.is_some() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let passwd = crate::user::PasswdFile::parse(&passwd);
    let name = crate::user::effective_user_name(settings.user.as_deref(), &passwd);
    let entry = passwd
        .by_name(name)
        .or_else(|| name.parse().ok().and_then(|uid| passwd.by_uid(uid)))?;
    (entry.uid != 0).then(|| socket_path(entry.uid))
}

/// The workspace user with their groups, for the rootless dockerd; `None`
/// (logged) when it cannot be resolved or is root.
pub fn run_as(settings: &Settings) -> Option<Option<crate::pid1::RunAs>> {
    match crate::app::resolve_run_as(settings) {
        Ok(Some(u)) if u.uid != 0 => Some(Some(u)),
        Ok(_) => {
            tracing::error!("rootless dockerd needs a non-root workspace user (WS_USER); Docker stays unavailable");
            None
        }
        Err(e) => {
            tracing::error!("rootless dockerd: {e}; Docker stays unavailable");
            None
        }
    }
}

/// Says once at startup what rootless Docker cannot do in this workspace.
pub fn log_limitations(probe: &crate::probe::SystemProbe) {
    if let Some(r) = &probe.rootless {
        for l in plan::limitations(probe, r) {
            tracing::info!("rootless Docker: {l}");
        }
    }
}
