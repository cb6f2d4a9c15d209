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

use crate::config::Settings;

pub use client::client_socket;
pub use plan::{runtime_dir, socket_path};

/// The workspace user with their groups, for the rootless dockerd; `None`
/// (logged) when it cannot be resolved or is root.
pub fn run_as(settings: &Settings) -> Option<Option<ws_init_core::spawn::RunAs>> {
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
