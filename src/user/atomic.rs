//! Files in directories a user may be able to write, handled as root without
//! following links: the core's [`ws_init_core::atomic`] (the dockerd log the
//! core keeps writing uses the same no-follow directory handle).

pub use ws_init_core::atomic::*;
