//! ws-init's resident core: what PID 1 keeps doing for the workspace's whole
//! life, and nothing else. Bring-up (probe, plan, apply, TLS) and `doctor`
//! run in the short-lived `ws-init-bringup` program, which hands this core the
//! plan as data ([`handover`]). Only `libc` and `std` are used here, so the
//! pages PID 1 keeps resident are few.

#[macro_use]
pub mod log;
pub mod atomic;
pub mod backoff;
pub mod bringup_child;
pub mod dns;
pub mod entry;
pub mod event_loop;
pub mod exit;
pub mod fd;
pub mod handover;
pub mod http;
pub mod inner_containers;
pub mod logs;
pub mod paths;
pub mod pid1;
pub mod pidfiles;
pub mod ping;
pub mod procs;
pub mod reactor;
pub mod reaper;
pub mod signals;
pub mod spawn;
pub mod stop;
pub mod stop_budget;
pub mod supervise;
pub mod supervise_docker;
pub mod supervisor;
#[cfg(test)]
pub(crate) mod test_support;
pub mod workspace;
