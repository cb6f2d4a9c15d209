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

pub use client::client_socket;
pub use plan::{runtime_dir, socket_path};
