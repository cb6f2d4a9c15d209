//! `ws-init-bringup`'s entry: every command but `ws-init CMD` (which the
//! resident core runs, and for which it runs `__bringup` here).

use std::process::ExitCode;

use crate::cli::{self, Invocation};
use crate::config::Settings;
use crate::exit::EXIT_USAGE;

pub fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    // The handover descriptor is this process's alone: out of the
    // environment and close-on-exec before anything runs that could pass
    // either on.
    let handover_fd = crate::handoff::take_handover_fd(
        args.len() == 1 && args.first().is_some_and(|a| a == cli::BRINGUP),
    );
    let invocation = match cli::parse(&args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("ws-init: {e}");
            return ExitCode::from(EXIT_USAGE as u8);
        }
    };
    if let Invocation::Run(cmd) = &invocation {
        eprintln!(
            "ws-init-bringup: it does not run commands ({:?}): `ws-init CMD` does, as PID 1",
            cmd.first().unwrap_or(&std::ffi::OsString::new())
        );
        return ExitCode::from(EXIT_USAGE as u8);
    }
    // `__bringup` without its descriptor has nowhere to hand the plan.
    let bringup_fd = match (&invocation, handover_fd) {
        (Invocation::Bringup, Some(Ok(fd))) => Some(fd),
        (Invocation::Bringup, other) => {
            let why = match other {
                Some(Err(why)) => why,
                _ => format!(
                    "{} is not set: `ws-init-bringup {}` is started by ws-init (PID 1), not by hand",
                    ws_init_core::handover::FD_ENV,
                    cli::BRINGUP
                ),
            };
            eprintln!("ws-init: {why}");
            return ExitCode::from(EXIT_USAGE as u8);
        }
        _ => None,
    };
    match invocation {
        Invocation::Help => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Invocation::Version => {
            println!("ws-init {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    // Configuration is validated before anything is started.
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ws-init: {e}");
            return ExitCode::from(EXIT_USAGE as u8);
        }
    };
    crate::logging::init(&settings);
    let code = match invocation {
        Invocation::Doctor { json } => crate::app::doctor(&settings, json),
        Invocation::WaitDocker { timeout } => crate::app::wait_docker(&settings, timeout),
        Invocation::StartDocker { timeout } => crate::detach::start_docker(settings, timeout),
        Invocation::Bringup => {
            bringup_fd.map_or(EXIT_USAGE, |fd| crate::handoff::run(settings, fd))
        }
        Invocation::Run(_) | Invocation::Help | Invocation::Version => {
            unreachable!("handled above")
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
