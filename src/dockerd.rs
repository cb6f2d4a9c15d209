//! The inner dockerd: started as a child of ws-init, its output logged,
//! readiness noticed over its socket, restarted with backoff when it dies,
//! stopped in order at shutdown (design §5).
//!
//! - [`backoff`]: the restart policy, a pure state machine (in the core).
//! - [`inner_containers`]: inner containers held to `--shutdown-timeout` at stop.
//! - [`logs`]: dockerd's output to a bounded file, warnings echoed to stderr.
//! - [`supervise`]: the supervision task and the handle the rest of ws-init uses;
//!   its decisions are a pure state machine (`ws_init_core::supervise::machine`),
//!   the task only performs them.

pub mod logs;
pub mod supervise;

pub use supervise::{DockerdHandle, DockerdSpec, NotRunning, State, Supervisor};
pub use ws_init_core::backoff::{self, Backoff, BackoffPolicy};
pub use ws_init_core::inner_containers;
