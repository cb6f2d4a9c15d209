//! The supervisor's decisions as a pure state machine (as in Horust):
//! [`next`] takes what happened ([`Event`]) and returns the new state and
//! what to do ([`Action`]). The driver only performs the actions and turns
//! I/O (the reaper, the socket, timers, the stop request) into events, so
//! every transition here is a unit test.

use std::time::{Duration, Instant};

use super::State;
use crate::backoff::{Backoff, BackoffPolicy};
use crate::exit::ChildExit;

/// How long a SIGKILLed dockerd is waited for: SIGKILL cannot be refused;
/// the bound only guards against a process stuck in D-state.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// The fixed settings the decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub backoff: BackoffPolicy,
    /// From SIGTERM to SIGKILL when stopping.
    pub stop_timeout: Duration,
    /// How long one readiness probe runs before a "not answering" warning.
    pub ready_warn_after: Duration,
}

/// Where the supervised dockerd is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// A spawn was asked for; its outcome has not arrived.
    Spawning { attempt: u32 },
    /// Running, not answering `/_ping` yet.
    Starting {
        pid: i32,
        attempt: u32,
        since: Instant,
    },
    /// Answering `/_ping`.
    Ready { pid: i32, since: Instant },
    /// Waiting out the restart delay.
    BackingOff { attempt: u32 },
    /// SIGTERM sent (and SIGKILL too once `killed`); waiting for the exit.
    Stopping { pid: i32, killed: bool },
    /// Stopped on request; never restarted.
    Stopped,
    /// Cannot be started at all.
    Failed { reason: String },
}

/// The whole state [`next`] needs: the phase and the restart history.
#[derive(Debug, Clone)]
pub struct Machine {
    pub policy: Policy,
    pub phase: Phase,
    pub backoff: Backoff,
}

/// What happened, as the task saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The spawn asked for by [`Action::Spawn`] succeeded.
    Started {
        pid: i32,
        now: Instant,
    },
    /// It failed; `fatal` when retrying cannot help (program missing or not
    /// executable).
    SpawnFailed {
        reason: String,
        fatal: bool,
        now: Instant,
    },
    /// The running dockerd ended.
    Exited {
        exit: ChildExit,
        now: Instant,
    },
    /// dockerd answered `/_ping`.
    Ready {
        now: Instant,
    },
    /// A readiness probe ran for `ready_warn_after` without an answer.
    ReadyTimeout {
        error: String,
        now: Instant,
    },
    StopRequested,
    /// Timers armed by [`Action::Arm`].
    Timer(Timer),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The restart delay is over.
    BackoffElapsed,
    /// The stop timeout after SIGTERM is over.
    StopDeadline,
    /// [`KILL_GRACE`] after SIGKILL is over.
    KillDeadline,
}

/// What the task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Clear stale files, run the pre-start hook, spawn dockerd with its log
    /// pump; answer with [`Event::Started`] or [`Event::SpawnFailed`].
    Spawn,
    /// Probe `/_ping` for up to `ready_warn_after`; answer with
    /// [`Event::Ready`] or [`Event::ReadyTimeout`].
    ProbeReady,
    /// Send this signal (`libc::SIGTERM`, ...) to the running dockerd
    /// (unless the reaper already has its exit).
    Signal(i32),
    /// Fire `Timer` after the delay; replaces any timer armed before.
    Arm(Timer, Duration),
    /// Publish the state to the handles.
    Report(State),
    /// How the last dockerd ended (`None`: unknown), for the handles.
    RecordExit(Option<ChildExit>),
    Log(Message),
    /// Nothing more will happen: the task ends.
    Finish,
}

/// What to tell the user; the task words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    SpawnFailed {
        reason: String,
    },
    GaveUp {
        reason: String,
    },
    DiedBeforeReady {
        exit: ChildExit,
    },
    Restarting {
        exit: ChildExit,
        up: Duration,
        delay: Duration,
        attempt: u32,
    },
    Ready {
        pid: i32,
        after: Duration,
    },
    NotAnswering {
        pid: i32,
        waited: Duration,
        error: String,
    },
    Stopping {
        pid: i32,
    },
    Killing {
        pid: i32,
    },
    StoppedAs {
        exit: ChildExit,
    },
    KillIgnored {
        pid: i32,
    },
}

impl Machine {
    /// The machine before anything ran, and its first actions.
    pub fn start(policy: Policy) -> (Machine, Vec<Action>) {
        let machine = Machine {
            policy,
            phase: Phase::Spawning { attempt: 0 },
            backoff: Backoff::new(policy.backoff),
        };
        (machine, vec![Action::Spawn])
    }

    fn with(&self, phase: Phase) -> Machine {
        Machine {
            phase,
            ..self.clone()
        }
    }

    /// Restart after an unexpected end of a run begun at `since`.
    fn restart(
        &self,
        since: Instant,
        now: Instant,
        exit: Option<ChildExit>,
    ) -> (Machine, Vec<Action>) {
        let mut backoff = self.backoff.clone();
        let delay = backoff.next_delay(now, since);
        let attempt = backoff.failures();
        let mut actions = vec![
            Action::RecordExit(exit),
            Action::Report(State::Restarting { attempt, delay }),
        ];
        if let Some(exit) = exit {
            actions.push(Action::Log(Message::Restarting {
                exit,
                up: now.saturating_duration_since(since),
                delay,
                attempt,
            }));
        }
        actions.push(Action::Arm(Timer::BackoffElapsed, delay));
        let machine = Machine {
            policy: self.policy,
            phase: Phase::BackingOff { attempt },
            backoff,
        };
        (machine, actions)
    }
}

/// The transition for `event` in `state`: the new state and the actions,
/// in order. Events that do not apply to the phase (a timer that fired
/// late, a second stop request) change nothing.
pub fn next(state: &Machine, event: Event) -> (Machine, Vec<Action>) {
    let same = || (state.clone(), Vec::new());
    match (&state.phase, event) {
        (Phase::Spawning { attempt }, Event::Started { pid, now }) => (
            state.with(Phase::Starting {
                pid,
                attempt: *attempt,
                since: now,
            }),
            vec![
                Action::Report(State::Starting {
                    pid: Some(pid),
                    attempt: *attempt,
                }),
                Action::ProbeReady,
            ],
        ),
        (Phase::Spawning { .. }, Event::SpawnFailed { reason, fatal, now }) => {
            if fatal {
                // Retrying cannot help: say so once and leave the workspace alone.
                (
                    state.with(Phase::Failed {
                        reason: reason.clone(),
                    }),
                    vec![
                        Action::Log(Message::GaveUp {
                            reason: reason.clone(),
                        }),
                        Action::Report(State::Failed { reason }),
                        Action::Finish,
                    ],
                )
            } else {
                let (machine, mut actions) = state.restart(now, now, None);
                actions.insert(0, Action::Log(Message::SpawnFailed { reason }));
                (machine, actions)
            }
        }
        (Phase::Spawning { .. } | Phase::BackingOff { .. }, Event::StopRequested) => (
            state.with(Phase::Stopped),
            vec![Action::Report(State::Stopped), Action::Finish],
        ),
        (Phase::Starting { pid, since, .. }, Event::Ready { now }) => (
            state.with(Phase::Ready {
                pid: *pid,
                since: *since,
            }),
            vec![
                Action::Log(Message::Ready {
                    pid: *pid,
                    after: now.saturating_duration_since(*since),
                }),
                Action::Report(State::Ready { pid: *pid }),
            ],
        ),
        (Phase::Starting { pid, since, .. }, Event::ReadyTimeout { error, now }) => (
            state.clone(),
            vec![
                Action::Log(Message::NotAnswering {
                    pid: *pid,
                    waited: now.saturating_duration_since(*since),
                    error,
                }),
                Action::ProbeReady,
            ],
        ),
        (Phase::Starting { since, .. }, Event::Exited { exit, now }) => {
            let (machine, mut actions) = state.restart(*since, now, Some(exit));
            actions.insert(0, Action::Log(Message::DiedBeforeReady { exit }));
            (machine, actions)
        }
        (Phase::Ready { since, .. }, Event::Exited { exit, now }) => {
            state.restart(*since, now, Some(exit))
        }
        (Phase::Starting { pid, .. } | Phase::Ready { pid, .. }, Event::StopRequested) => (
            state.with(Phase::Stopping {
                pid: *pid,
                killed: false,
            }),
            vec![
                Action::Log(Message::Stopping { pid: *pid }),
                Action::Signal(libc::SIGTERM),
                Action::Arm(Timer::StopDeadline, state.policy.stop_timeout),
            ],
        ),
        (Phase::BackingOff { attempt }, Event::Timer(Timer::BackoffElapsed)) => (
            state.with(Phase::Spawning { attempt: *attempt }),
            vec![Action::Spawn],
        ),
        (Phase::Stopping { pid, killed: false }, Event::Timer(Timer::StopDeadline)) => (
            state.with(Phase::Stopping {
                pid: *pid,
                killed: true,
            }),
            vec![
                Action::Log(Message::Killing { pid: *pid }),
                Action::Signal(libc::SIGKILL),
                Action::Arm(Timer::KillDeadline, KILL_GRACE),
            ],
        ),
        (Phase::Stopping { pid, killed: true }, Event::Timer(Timer::KillDeadline)) => (
            state.with(Phase::Stopped),
            vec![
                Action::Log(Message::KillIgnored { pid: *pid }),
                Action::RecordExit(None),
                Action::Report(State::Stopped),
                Action::Finish,
            ],
        ),
        (Phase::Stopping { .. }, Event::Exited { exit, .. }) => (
            state.with(Phase::Stopped),
            vec![
                Action::Log(Message::StoppedAs { exit }),
                Action::RecordExit(Some(exit)),
                Action::Report(State::Stopped),
                Action::Finish,
            ],
        ),
        _ => same(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            backoff: BackoffPolicy::default(),
            stop_timeout: Duration::from_secs(10),
            ready_warn_after: Duration::from_secs(30),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs `steps` (event, expected phase, expected actions) from a fresh
    /// machine, checking every transition.
    fn run(steps: Vec<(Event, Phase, Vec<Action>)>) -> Machine {
        let (mut m, first) = Machine::start(policy());
        assert_eq!(first, vec![Action::Spawn]);
        for (i, (event, phase, actions)) in steps.into_iter().enumerate() {
            let (n, got) = next(&m, event.clone());
            assert_eq!(n.phase, phase, "phase after step {i} ({event:?})");
            assert_eq!(got, actions, "actions of step {i} ({event:?})");
            m = n;
        }
        m
    }

    const PID: i32 = 42;
    const EXIT: ChildExit = ChildExit::Exited(1);

    #[test]
    fn starts_answers_and_restarts_with_backoff_when_it_dies() {
        let t0 = Instant::now();
        let ready_at = t0 + ms(300);
        let died_at = t0 + Duration::from_secs(5);
        let m = run(vec![
            (
                Event::Started { pid: PID, now: t0 },
                Phase::Starting {
                    pid: PID,
                    attempt: 0,
                    since: t0,
                },
                vec![
                    Action::Report(State::Starting {
                        pid: Some(PID),
                        attempt: 0,
                    }),
                    Action::ProbeReady,
                ],
            ),
            (
                Event::ReadyTimeout {
                    error: "refused".into(),
                    now: t0 + ms(200),
                },
                Phase::Starting {
                    pid: PID,
                    attempt: 0,
                    since: t0,
                },
                vec![
                    Action::Log(Message::NotAnswering {
                        pid: PID,
                        waited: ms(200),
                        error: "refused".into(),
                    }),
                    Action::ProbeReady,
                ],
            ),
            (
                Event::Ready { now: ready_at },
                Phase::Ready {
                    pid: PID,
                    since: t0,
                },
                vec![
                    Action::Log(Message::Ready {
                        pid: PID,
                        after: ms(300),
                    }),
                    Action::Report(State::Ready { pid: PID }),
                ],
            ),
            (
                Event::Exited {
                    exit: EXIT,
                    now: died_at,
                },
                Phase::BackingOff { attempt: 1 },
                vec![
                    Action::RecordExit(Some(EXIT)),
                    Action::Report(State::Restarting {
                        attempt: 1,
                        delay: ms(500),
                    }),
                    Action::Log(Message::Restarting {
                        exit: EXIT,
                        up: Duration::from_secs(5),
                        delay: ms(500),
                        attempt: 1,
                    }),
                    Action::Arm(Timer::BackoffElapsed, ms(500)),
                ],
            ),
            (
                Event::Timer(Timer::BackoffElapsed),
                Phase::Spawning { attempt: 1 },
                vec![Action::Spawn],
            ),
            (
                Event::Started {
                    pid: PID + 1,
                    now: died_at + ms(500),
                },
                Phase::Starting {
                    pid: PID + 1,
                    attempt: 1,
                    since: died_at + ms(500),
                },
                vec![
                    Action::Report(State::Starting {
                        pid: Some(PID + 1),
                        attempt: 1,
                    }),
                    Action::ProbeReady,
                ],
            ),
            (
                Event::Exited {
                    exit: EXIT,
                    now: died_at + ms(600),
                },
                Phase::BackingOff { attempt: 2 },
                vec![
                    Action::Log(Message::DiedBeforeReady { exit: EXIT }),
                    Action::RecordExit(Some(EXIT)),
                    Action::Report(State::Restarting {
                        attempt: 2,
                        delay: ms(1000),
                    }),
                    Action::Log(Message::Restarting {
                        exit: EXIT,
                        up: ms(100),
                        delay: ms(1000),
                        attempt: 2,
                    }),
                    Action::Arm(Timer::BackoffElapsed, ms(1000)),
                ],
            ),
        ]);
        assert_eq!(m.backoff.failures(), 2);
    }

    #[test]
    fn a_program_that_cannot_run_is_given_up_at_once() {
        let now = Instant::now();
        run(vec![(
            Event::SpawnFailed {
                reason: "dockerd: not found".into(),
                fatal: true,
                now,
            },
            Phase::Failed {
                reason: "dockerd: not found".into(),
            },
            vec![
                Action::Log(Message::GaveUp {
                    reason: "dockerd: not found".into(),
                }),
                Action::Report(State::Failed {
                    reason: "dockerd: not found".into(),
                }),
                Action::Finish,
            ],
        )]);
    }

    #[test]
    fn repeated_immediate_spawn_failures_back_off_longer_each_time() {
        let now = Instant::now();
        let failed = |now| Event::SpawnFailed {
            reason: "EAGAIN".into(),
            fatal: false,
            now,
        };
        let backing_off = |attempt, delay| {
            vec![
                Action::Log(Message::SpawnFailed {
                    reason: "EAGAIN".into(),
                }),
                Action::RecordExit(None),
                Action::Report(State::Restarting { attempt, delay }),
                Action::Arm(Timer::BackoffElapsed, delay),
            ]
        };
        run(vec![
            (
                failed(now),
                Phase::BackingOff { attempt: 1 },
                backing_off(1, ms(500)),
            ),
            (
                Event::Timer(Timer::BackoffElapsed),
                Phase::Spawning { attempt: 1 },
                vec![Action::Spawn],
            ),
            (
                failed(now + ms(500)),
                Phase::BackingOff { attempt: 2 },
                backing_off(2, ms(1000)),
            ),
            (
                Event::Timer(Timer::BackoffElapsed),
                Phase::Spawning { attempt: 2 },
                vec![Action::Spawn],
            ),
            (
                failed(now + ms(1500)),
                Phase::BackingOff { attempt: 3 },
                backing_off(3, ms(2000)),
            ),
        ]);
    }

    fn stopping(pid: i32) -> Vec<Action> {
        vec![
            Action::Log(Message::Stopping { pid }),
            Action::Signal(libc::SIGTERM),
            Action::Arm(Timer::StopDeadline, Duration::from_secs(10)),
        ]
    }

    fn stopped_as(exit: ChildExit) -> Vec<Action> {
        vec![
            Action::Log(Message::StoppedAs { exit }),
            Action::RecordExit(Some(exit)),
            Action::Report(State::Stopped),
            Action::Finish,
        ]
    }

    #[test]
    fn a_stop_before_the_first_start_spawns_nothing() {
        run(vec![(
            Event::StopRequested,
            Phase::Stopped,
            vec![Action::Report(State::Stopped), Action::Finish],
        )]);
    }

    #[test]
    fn a_stop_while_starting_sends_sigterm_and_waits_for_the_exit() {
        let t0 = Instant::now();
        let term = ChildExit::Signaled {
            signal: 15,
            core_dumped: false,
        };
        run(vec![
            (
                Event::Started { pid: PID, now: t0 },
                Phase::Starting {
                    pid: PID,
                    attempt: 0,
                    since: t0,
                },
                vec![
                    Action::Report(State::Starting {
                        pid: Some(PID),
                        attempt: 0,
                    }),
                    Action::ProbeReady,
                ],
            ),
            (
                Event::StopRequested,
                Phase::Stopping {
                    pid: PID,
                    killed: false,
                },
                stopping(PID),
            ),
            // A late answer or a second request changes nothing.
            (
                Event::Ready { now: t0 + ms(10) },
                Phase::Stopping {
                    pid: PID,
                    killed: false,
                },
                vec![],
            ),
            (
                Event::StopRequested,
                Phase::Stopping {
                    pid: PID,
                    killed: false,
                },
                vec![],
            ),
            (
                Event::Exited {
                    exit: term,
                    now: t0 + ms(20),
                },
                Phase::Stopped,
                stopped_as(term),
            ),
        ]);
    }

    #[test]
    fn a_stop_while_backing_off_cancels_the_restart() {
        let t0 = Instant::now();
        let m = run(vec![
            (
                Event::SpawnFailed {
                    reason: "EAGAIN".into(),
                    fatal: false,
                    now: t0,
                },
                Phase::BackingOff { attempt: 1 },
                vec![
                    Action::Log(Message::SpawnFailed {
                        reason: "EAGAIN".into(),
                    }),
                    Action::RecordExit(None),
                    Action::Report(State::Restarting {
                        attempt: 1,
                        delay: ms(500),
                    }),
                    Action::Arm(Timer::BackoffElapsed, ms(500)),
                ],
            ),
            (
                Event::StopRequested,
                Phase::Stopped,
                vec![Action::Report(State::Stopped), Action::Finish],
            ),
        ]);
        // The backoff timer firing afterwards starts nothing.
        let (n, actions) = next(&m, Event::Timer(Timer::BackoffElapsed));
        assert_eq!((n.phase, actions), (Phase::Stopped, vec![]));
    }

    /// A machine with dockerd ready, as pid `PID`.
    fn ready() -> Machine {
        let t0 = Instant::now();
        let (m, _) = Machine::start(policy());
        let (m, _) = next(&m, Event::Started { pid: PID, now: t0 });
        let (m, _) = next(&m, Event::Ready { now: t0 });
        assert_eq!(
            m.phase,
            Phase::Ready {
                pid: PID,
                since: t0
            }
        );
        m
    }

    #[test]
    fn dockerd_dying_during_the_stop_is_not_restarted() {
        let (m, actions) = next(&ready(), Event::StopRequested);
        assert_eq!(actions, stopping(PID));
        // Died of something else than the SIGTERM (it crashed while stopping).
        let crash = ChildExit::Signaled {
            signal: 11,
            core_dumped: true,
        };
        let (m, actions) = next(
            &m,
            Event::Exited {
                exit: crash,
                now: Instant::now(),
            },
        );
        assert_eq!((m.phase, actions), (Phase::Stopped, stopped_as(crash)));
    }

    #[test]
    fn sigkill_is_sent_only_at_the_stop_deadline() {
        let (m, _) = next(&ready(), Event::StopRequested);
        // Nothing but the stop deadline escalates.
        for event in [
            Event::StopRequested,
            Event::Timer(Timer::BackoffElapsed),
            Event::Timer(Timer::KillDeadline),
            Event::Ready {
                now: Instant::now(),
            },
        ] {
            let (n, actions) = next(&m, event.clone());
            assert_eq!(actions, vec![], "{event:?}");
            assert_eq!(n.phase, m.phase);
        }
        let (m, actions) = next(&m, Event::Timer(Timer::StopDeadline));
        assert_eq!(
            actions,
            vec![
                Action::Log(Message::Killing { pid: PID }),
                Action::Signal(libc::SIGKILL),
                Action::Arm(Timer::KillDeadline, KILL_GRACE),
            ]
        );
        assert_eq!(
            m.phase,
            Phase::Stopping {
                pid: PID,
                killed: true
            }
        );
        // SIGKILL is sent once.
        let (m2, actions) = next(&m, Event::Timer(Timer::StopDeadline));
        assert_eq!((&m2.phase, actions), (&m.phase, vec![]));
        let killed = ChildExit::Signaled {
            signal: 9,
            core_dumped: false,
        };
        let (done, actions) = next(
            &m,
            Event::Exited {
                exit: killed,
                now: Instant::now(),
            },
        );
        assert_eq!((done.phase, actions), (Phase::Stopped, stopped_as(killed)));
        // A dockerd that does not even die of SIGKILL is given up on.
        let (done, actions) = next(&m, Event::Timer(Timer::KillDeadline));
        assert_eq!(done.phase, Phase::Stopped);
        assert_eq!(
            actions,
            vec![
                Action::Log(Message::KillIgnored { pid: PID }),
                Action::RecordExit(None),
                Action::Report(State::Stopped),
                Action::Finish,
            ]
        );
    }

    #[test]
    fn a_healthy_run_resets_the_backoff() {
        let m = ready();
        let since = match m.phase {
            Phase::Ready { since, .. } => since,
            _ => unreachable!(),
        };
        let mut m = m;
        m.backoff = {
            let mut b = Backoff::new(policy().backoff);
            for _ in 0..4 {
                b.next_delay(since, since);
            }
            b
        };
        let (m, actions) = next(
            &m,
            Event::Exited {
                exit: EXIT,
                now: since + Duration::from_secs(120),
            },
        );
        assert_eq!(m.phase, Phase::BackingOff { attempt: 1 });
        assert!(actions.contains(&Action::Arm(Timer::BackoffElapsed, ms(500))));
    }
}
