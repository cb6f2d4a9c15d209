//! dockerd's supervision: what the supervisor reports ([`State`],
//! [`NotRunning`]) and its decisions as a pure state machine ([`machine`]).
//! The driver that performs the machine's actions lives with the I/O.

use std::fmt;
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

/// dockerd is not running and will not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRunning {
    Stopped,
    Failed(String),
}

impl fmt::Display for NotRunning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotRunning::Stopped => f.write_str("dockerd was stopped"),
            NotRunning::Failed(reason) => write!(f, "dockerd cannot start: {reason}"),
        }
    }
}

impl std::error::Error for NotRunning {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_running_says_why() {
        assert_eq!(NotRunning::Stopped.to_string(), "dockerd was stopped");
        assert_eq!(
            NotRunning::Failed("/usr/bin/dockerd: not found".into()).to_string(),
            "dockerd cannot start: /usr/bin/dockerd: not found"
        );
    }
}
