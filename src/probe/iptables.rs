//! iptables facts. The /proc files are cheap; running `iptables -nL` is not,
//! so the command checks are separate and run only when the plan needs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Files whose non-empty content means legacy (x_tables) rules already exist in this kernel.
pub const LEGACY_NAMES_FILES: [&str; 3] =
    ["ip_tables_names", "ip6_tables_names", "arp_tables_names"];
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// (name dockerd calls, legacy binary it must reach) for the legacy link
/// directory. Debian's iptables package names the save/restore variants
/// `iptables-legacy-save`, not `iptables-save-legacy`.
pub const LEGACY_LINKS: [(&str, &str); 6] = [
    ("iptables", "iptables-legacy"),
    ("iptables-save", "iptables-legacy-save"),
    ("iptables-restore", "iptables-legacy-restore"),
    ("ip6tables", "ip6tables-legacy"),
    ("ip6tables-save", "ip6tables-legacy-save"),
    ("ip6tables-restore", "ip6tables-legacy-restore"),
];

/// A link of the legacy directory: its name, and the legacy binary it points
/// at or why no usable one was found.
pub type LegacyLink = (String, Result<PathBuf, String>);

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IptablesProbe {
    /// Which of [`LEGACY_NAMES_FILES`] under /proc/net are non-empty.
    pub legacy_tables_in_use: Vec<String>,
    /// Located `iptables` and `iptables-legacy` binaries.
    pub iptables_path: Option<PathBuf>,
    pub iptables_legacy_path: Option<PathBuf>,
    /// `iptables -nL` succeeded; `None` = not checked.
    pub nft_works: Option<bool>,
    /// `iptables-legacy -nL` succeeded; `None` = not checked.
    pub legacy_works: Option<bool>,
    /// Located `ip6tables` and `ip6tables-legacy` binaries.
    pub ip6tables_path: Option<PathBuf>,
    pub ip6tables_legacy_path: Option<PathBuf>,
    /// `ip6tables -t nat -nL` succeeded; `None` = not checked.
    pub ip6_nft_works: Option<bool>,
    /// `ip6tables-legacy -t nat -nL` succeeded; `None` = not checked.
    pub ip6_legacy_works: Option<bool>,
    /// `iptables-legacy --version`, probed when the plan gives dockerd the
    /// legacy backend (logged so users see which backend dockerd got);
    /// `None` = not run.
    pub legacy_version: Option<Result<String, String>>,
    /// For each of [`LEGACY_LINKS`]: the link name and the legacy binary it
    /// points at, resolved like every program run as root
    /// ([`super::binaries::resolve`]: root-owned, not writable by others),
    /// or why none qualifies.
    pub legacy_links: Vec<LegacyLink>,
    /// Where `/etc/alternatives/iptables` and `.../ip6tables` point (Debian's
    /// `update-alternatives`), when they are links: what a user's `iptables` runs.
    pub alternatives: Vec<(String, PathBuf)>,
}

/// The alternatives groups that pick the `iptables` a user runs.
pub const ALTERNATIVES: [&str; 2] = ["iptables", "ip6tables"];
pub const ALTERNATIVES_DIR: &str = "etc/alternatives";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IptablesTool {
    /// `iptables` (nft on current Debian/Ubuntu)
    Default,
    /// `iptables-legacy`
    Legacy,
    /// `ip6tables` (checked only where dockerd turns ip6tables on by default)
    Ip6Default,
    /// `ip6tables-legacy`
    Ip6Legacy,
}

impl IptablesTool {
    pub fn binary(self) -> &'static str {
        match self {
            IptablesTool::Default => "iptables",
            IptablesTool::Legacy => "iptables-legacy",
            IptablesTool::Ip6Default => "ip6tables",
            IptablesTool::Ip6Legacy => "ip6tables-legacy",
        }
    }

    /// The check's arguments. IPv6 is checked on the nat table: a kernel
    /// without ip6table_nat is the usual reason dockerd's ip6tables fails.
    pub fn check_args(self) -> &'static [&'static str] {
        match self {
            IptablesTool::Default | IptablesTool::Legacy => &["-nL"],
            IptablesTool::Ip6Default | IptablesTool::Ip6Legacy => &["-t", "nat", "-nL"],
        }
    }

    /// The check as a user would type it, for messages.
    pub fn check_text(self) -> String {
        format!("`{} {}`", self.binary(), self.check_args().join(" "))
    }
}

/// Find `name` in a PATH-style list, inside `root`.
pub fn find_in_path(root: &Path, path_env: &str, name: &str) -> Option<PathBuf> {
    path_env
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(root.join(p.strip_prefix("/").unwrap_or(p)))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

pub fn probe_iptables_files(root: &Path, path_env: &str) -> IptablesProbe {
    let legacy_tables_in_use = LEGACY_NAMES_FILES
        .iter()
        .filter(|f| {
            std::fs::read_to_string(root.join("proc/net").join(f))
                .is_ok_and(|t| !t.trim().is_empty())
        })
        .map(|f| f.to_string())
        .collect();
    IptablesProbe {
        legacy_tables_in_use,
        iptables_path: super::binaries::resolve(root, path_env, "iptables").ok(),
        iptables_legacy_path: super::binaries::resolve(root, path_env, "iptables-legacy").ok(),
        nft_works: None,
        legacy_works: None,
        ip6tables_path: super::binaries::resolve(root, path_env, "ip6tables").ok(),
        ip6tables_legacy_path: super::binaries::resolve(root, path_env, "ip6tables-legacy").ok(),
        ip6_nft_works: None,
        ip6_legacy_works: None,
        legacy_version: None,
        legacy_links: LEGACY_LINKS
            .iter()
            .map(|(name, legacy)| {
                let target = super::binaries::resolve(root, path_env, legacy);
                (name.to_string(), target)
            })
            .collect(),
        alternatives: ALTERNATIVES
            .iter()
            .filter_map(|n| {
                std::fs::read_link(root.join(ALTERNATIVES_DIR).join(n))
                    .ok()
                    .map(|t| (n.to_string(), t))
            })
            .collect(),
    }
}

/// Run `<binary> -nL` quietly with a timeout: does this backend work here?
/// It waits for its own child, so call it before a `waitpid(-1)` reaper runs.
pub fn run_list_check(binary: &Path, timeout: Duration) -> bool {
    run_check(binary, &["-nL"], timeout)
}

/// Run `<binary> ARGS` quietly with a timeout; true when it exits 0.
pub fn run_check(binary: &Path, args: &[&str], timeout: Duration) -> bool {
    let Ok(mut child) = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

impl IptablesProbe {
    /// Fill in the result for `tool` by running it (a missing binary counts as not working).
    pub fn check(&mut self, tool: IptablesTool) {
        let (path, slot) = match tool {
            IptablesTool::Default => (&self.iptables_path, &mut self.nft_works),
            IptablesTool::Legacy => (&self.iptables_legacy_path, &mut self.legacy_works),
            IptablesTool::Ip6Default => (&self.ip6tables_path, &mut self.ip6_nft_works),
            IptablesTool::Ip6Legacy => (&self.ip6tables_legacy_path, &mut self.ip6_legacy_works),
        };
        *slot = Some(
            path.as_deref()
                .is_some_and(|p| run_check(p, tool.check_args(), CHECK_TIMEOUT)),
        );
    }
}

/// The first line of `BINARY --version` (e.g. `iptables v1.8.9 (legacy)`);
/// `Err` holds why not.
pub fn binary_version(binary: &Path) -> Result<String, String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or("").trim().to_owned();
    if !out.status.success() || line.is_empty() {
        return Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(line)
}

impl IptablesProbe {
    /// Run `iptables-legacy --version` (see [`IptablesProbe::legacy_version`]).
    pub fn probe_legacy_version(&mut self) {
        self.legacy_version = Some(match &self.iptables_legacy_path {
            Some(p) => binary_version(p).map_err(|d| {
                format!(
                    "cannot run `{} --version`: {d}; check the `iptables` package",
                    p.display()
                )
            }),
            None => Err("no iptables-legacy on the search path".into()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables_in_path_inside_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/sbin")).unwrap();
        let bin = t.path().join("usr/sbin/iptables");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        assert_eq!(
            find_in_path(t.path(), DEFAULT_PATH, "iptables"),
            None,
            "not executable yet"
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_in_path(t.path(), DEFAULT_PATH, "iptables"),
            Some(PathBuf::from("/usr/sbin/iptables"))
        );
    }

    #[test]
    fn ip6tables_run_as_root_must_be_root_only_like_iptables() {
        if !nix::unistd::geteuid().is_root() {
            return; // root-only means owned by root: the files must be ours
        }
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/sbin")).unwrap();
        for (name, mode) in [("iptables", 0o755), ("ip6tables", 0o777)] {
            let bin = t.path().join("usr/sbin").join(name);
            std::fs::write(&bin, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let p = probe_iptables_files(t.path(), "/usr/sbin");
        assert_eq!(p.iptables_path, Some(PathBuf::from("/usr/sbin/iptables")));
        assert_eq!(
            p.ip6tables_path, None,
            "a world-writable ip6tables is run as root"
        );
    }

    #[test]
    fn legacy_link_targets_must_be_root_only() {
        if !nix::unistd::geteuid().is_root() {
            return; // root-only means owned by root: the files must be ours
        }
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/sbin")).unwrap();
        for (_, legacy) in LEGACY_LINKS {
            let mode = if legacy == "ip6tables-legacy-save" {
                0o777
            } else {
                0o755
            };
            let bin = t.path().join("usr/sbin").join(legacy);
            std::fs::write(&bin, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let p = probe_iptables_files(t.path(), "/usr/sbin");
        assert_eq!(p.legacy_links.len(), LEGACY_LINKS.len());
        for ((name, target), (want_name, legacy)) in p.legacy_links.iter().zip(LEGACY_LINKS) {
            assert_eq!(name, want_name);
            if legacy == "ip6tables-legacy-save" {
                let why = target.as_ref().unwrap_err();
                assert!(
                    why.contains("/usr/sbin/ip6tables-legacy-save is writable by group or others"),
                    "{why}"
                );
            } else {
                assert_eq!(target, &Ok(Path::new("/usr/sbin").join(legacy)));
            }
        }
    }

    #[test]
    fn list_check_reports_exit_status_and_timeout() {
        assert!(run_list_check(Path::new("/bin/true"), CHECK_TIMEOUT));
        assert!(!run_list_check(Path::new("/bin/false"), CHECK_TIMEOUT));
        assert!(!run_list_check(
            Path::new("/nonexistent/iptables"),
            CHECK_TIMEOUT
        ));
        let t = tempfile::tempdir().unwrap();
        let slow = t.path().join("slow");
        std::fs::write(&slow, "#!/bin/sh\nexec sleep 10\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
        let start = Instant::now();
        assert!(!run_list_check(&slow, Duration::from_millis(300)));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
