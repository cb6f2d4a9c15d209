//! What rootless mode needs, read under a root directory (a fixture tree in
//! tests, "/" for real): the workspace user, the user-namespace sysctls, the
//! subordinate id files, our own id maps, the devices and the programs.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Settings;
use crate::probe::binaries::resolve;
use crate::probe::caps::parse_id_map_entries;
pub use crate::user::db::SubIdEntry;
use crate::user::db::{effective_user_name, PasswdFile, SubIdFile};

/// The user the rootless dockerd runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootlessUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// One line of `/proc/self/{uid,gid}_map`: ids `inside..inside+count` exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdRange {
    pub start: u64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootlessProbe {
    /// `None` when the effective workspace user has no passwd entry.
    pub user: Option<RootlessUser>,
    /// The name `WS_USER` (or the default rule) gives.
    pub user_name: String,
    /// `user.max_user_namespaces` (0 = user namespaces switched off).
    pub max_user_namespaces: Option<u64>,
    /// Debian/Ubuntu `kernel.unprivileged_userns_clone` (absent elsewhere).
    pub unprivileged_userns_clone: Option<u64>,
    /// Ubuntu's `kernel.apparmor_restrict_unprivileged_userns`.
    pub apparmor_restrict_userns: Option<u64>,
    /// `None`: the file does not exist.
    pub subuid: Option<Vec<SubIdEntry>>,
    pub subgid: Option<Vec<SubIdEntry>>,
    /// The ids that exist in ws-init's user namespace (all of them outside one).
    pub uid_map: Vec<IdRange>,
    pub gid_map: Vec<IdRange>,
    pub dev_net_tun: bool,
    pub dev_fuse: bool,
    /// Programs on PATH that rootless needs, with where they are (`None` = missing).
    pub programs: Vec<(String, Option<PathBuf>)>,
    /// `net.ipv4.ip_unprivileged_port_start` of the workspace's network namespace.
    pub unprivileged_port_start: Option<u64>,
}

/// Programs rootless mode runs: rootlesskit and its network and id-map helpers, dockerd.
pub const PROGRAMS: [&str; 6] = [
    "rootlesskit",
    "slirp4netns",
    "newuidmap",
    "newgidmap",
    "ip",
    "dockerd",
];

pub fn parse_subids(text: &str) -> Vec<SubIdEntry> {
    SubIdFile::parse(text).entries()
}

/// The ranges (inside the namespace) of a `/proc/self/uid_map` or `gid_map`.
pub fn parse_id_map(text: &str) -> Vec<IdRange> {
    parse_id_map_entries(text)
        .into_iter()
        .map(|e| IdRange {
            start: e.inside.into(),
            count: e.count.into(),
        })
        .collect()
}

fn read_number(root: &Path, rel: &str) -> Option<u64> {
    std::fs::read_to_string(root.join(rel))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

pub fn probe_rootless(root: &Path, settings: &Settings, path_env: &str) -> RootlessProbe {
    let passwd =
        PasswdFile::parse(&std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default());
    let user_name = effective_user_name(settings.user.as_deref(), &passwd).to_string();
    let user = passwd
        .workspace_user(settings.user.as_deref())
        .map(|e| RootlessUser {
            name: e.name,
            uid: e.uid,
            gid: e.gid,
            home: PathBuf::from(e.home),
        });
    let subids = |f: &str| {
        std::fs::read_to_string(root.join(f))
            .ok()
            .map(|t| parse_subids(&t))
    };
    // Without a map file (no /proc) assume the initial namespace's full range.
    let id_map = |f: &str| {
        std::fs::read_to_string(root.join(f))
            .map(|t| parse_id_map(&t))
            .unwrap_or_else(|_| {
                vec![IdRange {
                    start: 0,
                    count: u32::MAX as u64,
                }]
            })
    };
    RootlessProbe {
        user,
        user_name,
        max_user_namespaces: read_number(root, "proc/sys/user/max_user_namespaces"),
        unprivileged_userns_clone: read_number(root, "proc/sys/kernel/unprivileged_userns_clone"),
        apparmor_restrict_userns: read_number(
            root,
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        ),
        subuid: subids("etc/subuid"),
        subgid: subids("etc/subgid"),
        uid_map: id_map("proc/self/uid_map"),
        gid_map: id_map("proc/self/gid_map"),
        dev_net_tun: root.join("dev/net/tun").exists(),
        dev_fuse: root.join("dev/fuse").exists(),
        programs: PROGRAMS
            .iter()
            .map(|p| (p.to_string(), resolve(root, path_env, p).ok()))
            .collect(),
        unprivileged_port_start: read_number(root, "proc/sys/net/ipv4/ip_unprivileged_port_start"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_lines_skip_comments_and_junk() {
        let e = parse_subids("# c\nworkspace:100000:65536\n\nbad\n1001:165536:65536\nx:y:z\n");
        assert_eq!(
            e,
            [
                SubIdEntry {
                    owner: "workspace".into(),
                    start: 100000,
                    count: 65536
                },
                SubIdEntry {
                    owner: "1001".into(),
                    start: 165536,
                    count: 65536
                }
            ]
        );
    }

    #[test]
    fn id_map_lines() {
        assert_eq!(
            parse_id_map("         0          0 4294967295\n"),
            [IdRange {
                start: 0,
                count: 4294967295
            }]
        );
        assert_eq!(
            parse_id_map("0 165536 65536\n"),
            [IdRange {
                start: 0,
                count: 65536
            }]
        );
    }

    #[test]
    fn probe_reads_a_tree() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("proc/sys/user")).unwrap();
        std::fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nworkspace:x:1000:1000::/home/workspace:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(r.join("etc/subuid"), "workspace:100000:65536\n").unwrap();
        std::fs::write(r.join("proc/sys/user/max_user_namespaces"), "0\n").unwrap();
        let p = probe_rootless(r, &Settings::default(), "/nonexistent");
        assert_eq!(p.user.as_ref().map(|u| u.uid), Some(1000));
        assert_eq!(p.max_user_namespaces, Some(0));
        assert_eq!(p.subuid.as_ref().map(Vec::len), Some(1));
        assert_eq!(p.subgid, None);
        assert!(!p.dev_net_tun);
        assert!(p.programs.iter().all(|(_, at)| at.is_none()));
    }
}
