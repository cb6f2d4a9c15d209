//! ws-init: PID 1 for developer workspace containers.
//!
//! Layout follows design §6: `config` turns the environment into typed settings,
//! `probe` reads the system into plain data, `plan` decides (pure), `prepare`
//! applies, `dockerd` supervises the inner daemon, `pid1` spawns, forwards
//! signals, reaps and shuts down.
pub mod app;
pub mod bringup;
pub mod cli;
pub mod config;
pub mod detach;
pub mod docker_api;
pub mod doctor;
pub mod entry;
pub mod handoff;
pub mod logging;
pub mod plan;
pub mod prepare;
pub mod probe;
pub mod rootless;
pub mod tls;
pub mod user;

// Moved to the libc-only core (issue 17); the old paths keep working.
pub use ws_init_core::{exit, stop_budget};
