//! dockerd's supervision: what the supervisor reports ([`State`]) and its
//! decisions as a pure state machine ([`machine`]).
//! The driver that performs the machine's actions lives with the I/O.

use std::time::Duration;

pub mod machine;

/// What the supervisor is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Starting: `pid` once spawned, not answering `/_ping` yet. `attempt`
    /// counts unexpected exits since the last healthy run (0 on the first start).
    Starting { pid: Option<i32>, attempt: u32 },
    /// Answering `/_ping` on the socket.
    Ready { pid: i32 },
    /// Died unexpectedly; starting again after `delay`.
    Restarting { attempt: u32, delay: Duration },
    /// Stopped on request; never restarted.
    Stopped,
    /// Cannot be started at all (program missing or not executable).
    Failed { reason: String },
}
