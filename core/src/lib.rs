//! ws-init's resident core: what PID 1 keeps doing for the workspace's whole
//! life, and nothing else. Bring-up (probe, plan, apply, TLS) and `doctor`
//! run in the short-lived `ws-init-bringup` program, which hands this core the
//! plan as data ([`handover`]). Only `libc` and `std` are used here, so the
//! pages PID 1 keeps resident are few.

#[macro_use]
pub mod log;
pub mod handover;
pub mod paths;
pub mod reactor;
pub mod spawn;
