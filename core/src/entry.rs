//! `ws-init`'s entry: `ws-init CMD` runs here, as PID 1; every other
//! command (`doctor`, `wait-docker`, `start-docker`, `--help`, `--version`,
//! usage errors) is the bring-up program's, which this process becomes.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{paths, signals, supervise_docker, workspace};

/// The subcommands; `ws-init -- doctor` runs a program called doctor.
pub const RESERVED: [&str; 3] = ["doctor", "wait-docker", "start-docker"];

/// What `ws-init ARGS` asks of the core.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Run this command as the workspace's main process.
    Run(Vec<OsString>),
    /// `start-docker`'s detached supervisor (exec'd by the bring-up program).
    SuperviseDocker,
    /// Anything else: the bring-up program handles it.
    Bringup,
}

/// Which of the two programs handles `args` (without argv[0]).
pub fn route(args: &[OsString]) -> Route {
    let Some(first) = args.first() else {
        return Route::Bringup;
    };
    let first = first.to_string_lossy();
    let rest = &args[1..];
    match first.as_ref() {
        "--" if !rest.is_empty() => Route::Run(rest.to_vec()),
        "__supervise-docker" if rest.is_empty() => Route::SuperviseDocker,
        s if s.starts_with('-') || s.starts_with("__") || RESERVED.contains(&s) => Route::Bringup,
        // `docker run IMAGE ws-init doctor`: PID 1 runs doctor itself.
        s if Path::new(s).file_name() == Some("ws-init".as_ref())
            && rest.first().is_some_and(|a| a == "doctor") =>
        {
            Route::Bringup
        }
        _ => Route::Run(args.to_vec()),
    }
}

/// Marks every inherited descriptor above stderr close-on-exec, for
/// start-docker's supervisor: dockerd must not hold the start-docker lock
/// (nor anything else of the `docker exec` that ran it). Those the core
/// reads itself are taken before. (`ws-init CMD` passes inherited
/// descriptors on to the main command, as an init should.)
fn no_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: setting a flag on a descriptor number; a stale one (the
        // directory's own) fails harmlessly.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// Becomes the bring-up program with the same arguments.
fn exec_bringup(program: &Path, argv0: &OsString, args: &[OsString]) -> i32 {
    let c = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).ok();
    let (Some(path), Some(a0)) = (c(program.as_os_str()), c(argv0)) else {
        eprintln!("ws-init: an argument contains a NUL byte");
        return 2;
    };
    let mut argv: Vec<CString> = vec![a0];
    for a in args {
        match c(a) {
            Some(a) => argv.push(a),
            None => {
                eprintln!("ws-init: an argument contains a NUL byte");
                return 2;
            }
        }
    }
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: NUL-terminated strings and a null-terminated array that live
    // across the call; execv only returns on failure.
    unsafe {
        libc::execv(path.as_ptr(), ptrs.as_ptr());
    }
    eprintln!(
        "ws-init: cannot run {}: {}; it is installed with ws-init (reinstall ws-init)",
        program.display(),
        std::io::Error::last_os_error()
    );
    1
}

/// `ws-init`'s main: returns the exit status.
pub fn main() -> i32 {
    let mut all = std::env::args_os();
    let argv0 = all.next().unwrap_or_else(|| OsString::from("ws-init"));
    let args: Vec<OsString> = all.collect();
    let route = route(&args);
    if route != Route::Bringup {
        // First, while ws-init has one thread: every signal is read from a
        // signalfd (and forwarded to the main command).
        if let Err(e) = signals::block_all() {
            eprintln!(
                "ws-init: cannot block signals to read them from a signalfd ({e}); signals may end ws-init"
            );
        }
    }
    if route == Route::SuperviseDocker {
        // Taken before the rest are marked close-on-exec.
        let taken = supervise_docker::take_fds();
        no_inherited_fds();
        return supervise_docker::run(taken);
    }
    let bringup = match paths::bringup_program() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ws-init: {e}");
            return 1;
        }
    };
    match route {
        Route::Run(cmd) => {
            crate::log::init_from_env();
            workspace::run(cmd, &bringup)
        }
        _ => exec_bringup(&bringup, &argv0, &args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(args: &[&str]) -> Route {
        route(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    fn run(args: &[&str]) -> Route {
        Route::Run(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn commands_run_here_and_the_rest_is_bringups() {
        assert_eq!(r(&["bash", "-l"]), run(&["bash", "-l"]));
        assert_eq!(r(&["--", "doctor"]), run(&["doctor"]));
        assert_eq!(r(&["--", "-x"]), run(&["-x"]));
        assert_eq!(
            r(&["/usr/local/bin/ws-init", "bash"]),
            run(&["/usr/local/bin/ws-init", "bash"])
        );
        for b in [
            &[][..],
            &["--"],
            &["doctor"],
            &["doctor", "--json"],
            &["wait-docker", "--timeout", "3"],
            &["start-docker"],
            &["--help"],
            &["-V"],
            &["--bogus"],
            &["__bringup"],
            &["ws-init", "doctor"],
            &["/usr/local/bin/ws-init", "doctor"],
        ] {
            assert_eq!(r(b), Route::Bringup, "{b:?}");
        }
        assert_eq!(r(&["__supervise-docker"]), Route::SuperviseDocker);
    }
}
