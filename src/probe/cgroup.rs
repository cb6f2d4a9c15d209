//! cgroup facts: `/proc/self/cgroup` and, on the unified (v2) layout, the root's state.

use std::path::{Path, PathBuf};

use super::mountinfo::MountInfo;

/// One line of `/proc/self/cgroup`: `ID:CONTROLLERS:PATH` (`0::PATH` is v2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CgroupEntry {
    pub hierarchy_id: u32,
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<CgroupEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let id = it.next()?.trim().parse().ok()?;
            let ctl = it.next()?;
            let path = it.next()?.to_string();
            Some(CgroupEntry {
                hierarchy_id: id,
                controllers: ctl
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupLayout {
    /// cgroup2 mounted at /sys/fs/cgroup with `cgroup.controllers`.
    Unified,
    /// v1 controllers, plus a cgroup2 tree (usually /sys/fs/cgroup/unified).
    Hybrid,
    /// v1 controllers only.
    Legacy,
    /// No cgroup filesystem mounted at all.
    None,
}

/// The root of a cgroup2 tree as this container sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CgroupV2Root {
    /// Where our own cgroup is mounted: `/sys/fs/cgroup` plus `relative`.
    pub path: PathBuf,
    /// Our cgroup as `/proc/self/cgroup` names it (`/` in a private namespace).
    pub relative: String,
    pub read_only: bool,
    /// `cgroup.controllers`: what may be enabled for children.
    pub controllers: Vec<String>,
    /// `cgroup.subtree_control`: what is enabled for children.
    pub subtree_control: Vec<String>,
    /// Processes sitting in the root itself (they block `subtree_control` writes).
    pub root_procs: usize,
    /// `init/` exists (hack/dind's evacuation target, or a previous run of ours).
    pub init_exists: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CgroupProbe {
    pub layout: CgroupLayout,
    pub self_cgroup: Vec<CgroupEntry>,
    pub v2_root: Option<CgroupV2Root>,
    pub v1_mounts: Vec<PathBuf>,
    pub v1_read_only: Vec<PathBuf>,
    pub cgroup2_mounts: Vec<PathBuf>,
}

fn words(root: &Path, rel: &str) -> Vec<String> {
    std::fs::read_to_string(root.join(rel))
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `root` is the filesystem root to read from ("/" for the real system).
pub fn probe_cgroups(root: &Path, mounts: &MountInfo) -> CgroupProbe {
    let self_cgroup = std::fs::read_to_string(root.join("proc/self/cgroup"))
        .map(|t| parse_proc_cgroup(&t))
        .unwrap_or_default();
    let cg_mount = mounts.mount_at(Path::new("/sys/fs/cgroup"));
    let unified = root.join("sys/fs/cgroup/cgroup.controllers").is_file()
        && cg_mount.map_or(true, |m| m.fs_type == "cgroup2");
    let v1: Vec<_> = mounts.cgroup_v1_mounts();
    let v2: Vec<_> = mounts.cgroup2_mounts();
    let layout = if unified {
        CgroupLayout::Unified
    } else if !v1.is_empty() && !v2.is_empty() {
        CgroupLayout::Hybrid
    } else if !v1.is_empty() {
        CgroupLayout::Legacy
    } else {
        CgroupLayout::None
    };
    let v2_root = unified.then(|| {
        let relative = own_v2_cgroup(&self_cgroup);
        let rel = format!("sys/fs/cgroup{}", relative.trim_end_matches('/'));
        CgroupV2Root {
            path: Path::new("/").join(&rel),
            relative,
            read_only: cg_mount.is_some_and(|m| m.read_only()),
            controllers: words(root, &format!("{rel}/cgroup.controllers")),
            subtree_control: words(root, &format!("{rel}/cgroup.subtree_control")),
            root_procs: words(root, &format!("{rel}/cgroup.procs"))
                .iter()
                .filter(|p| p.as_str() != "0")
                .count(),
            init_exists: root.join(&rel).join("init").is_dir(),
        }
    });
    CgroupProbe {
        layout,
        self_cgroup,
        v2_root,
        v1_mounts: v1.iter().map(|m| m.mount_point.clone()).collect(),
        v1_read_only: mounts.cgroup_v1_read_only(),
        cgroup2_mounts: v2.iter().map(|m| m.mount_point.clone()).collect(),
    }
}

/// The container's own cgroup on the v2 tree: `/` with a private cgroup
/// namespace, `/docker/<id>` (or similar) with `--cgroupns=host`. A process
/// already moved into `init` by our evacuation (a `doctor` run from the
/// workspace shell) reports the cgroup above it.
pub fn own_v2_cgroup(self_cgroup: &[CgroupEntry]) -> String {
    let path = self_cgroup
        .iter()
        .find(|e| e.hierarchy_id == 0 && e.controllers.is_empty())
        .map(|e| e.path.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    match path.strip_suffix("/init") {
        Some("") => "/".to_string(),
        Some(parent) => parent.to_string(),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_is_the_namespace_root_or_the_host_path() {
        let own = |text: &str| own_v2_cgroup(&parse_proc_cgroup(text));
        assert_eq!(own("0::/\n"), "/");
        assert_eq!(own("0::/docker/b712f1c4\n"), "/docker/b712f1c4");
        assert_eq!(own("0::/init\n"), "/");
        assert_eq!(own("0::/docker/b712f1c4/init\n"), "/docker/b712f1c4");
        assert_eq!(own("4:memory:/x\n"), "/", "v1 only: no v2 entry");
        assert_eq!(own(""), "/");
    }

    #[test]
    fn parses_v1_and_v2_lines() {
        let e = parse_proc_cgroup(
            "4:memory:/docker/abc\n9:name=systemd:/\n1:cpu,cpuacct:/x\n0::/init.scope\n",
        );
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].controllers, ["memory"]);
        assert_eq!(e[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(
            (
                e[3].hierarchy_id,
                e[3].controllers.len(),
                e[3].path.as_str()
            ),
            (0, 0, "/init.scope")
        );
    }
}
