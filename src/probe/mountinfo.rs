//! `/proc/self/mountinfo` parser and the questions the plan asks of it.
//!
//! Format (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`.
//! Paths are octal-escaped by the kernel (`\040` space, `\011` tab, `\012` newline, `\134` backslash).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    pub major: u32,
    pub minor: u32,
    /// Path inside the source filesystem that is mounted here (bind mounts show a sub-path).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`/`ro`, `nosuid`, ...).
    pub options: Vec<String>,
    /// Propagation tags: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional: Vec<String>,
    pub fs_type: String,
    pub source: String,
    pub super_options: Vec<String>,
}

impl Mount {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }
    /// FUSE mounts carry a subtype (`fuse.sysboxfs`) in the type or, as sysbox
    /// does, plain `fuse` with the filesystem name as source.
    pub fn is_sysboxfs(&self) -> bool {
        self.fs_type == "fuse.sysboxfs"
            || (self.fs_type.starts_with("fuse") && self.source == "sysboxfs")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("mountinfo line {line}: {what}: {text:?}")]
pub struct MountinfoError {
    pub line: usize,
    pub what: &'static str,
    pub text: String,
}

/// Undo the kernel's octal escaping of spaces, tabs, newlines and backslashes.
pub fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if v <= 0xff {
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_line(n: usize, line: &str) -> Result<Mount, MountinfoError> {
    let bad = |what| MountinfoError {
        line: n,
        what,
        text: line.to_string(),
    };
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields
        .iter()
        .position(|f| *f == "-")
        .ok_or_else(|| bad("no ' - ' separator"))?;
    if sep < 6 || fields.len() < sep + 3 {
        return Err(bad("too few fields"));
    }
    let (major, minor) = fields[2]
        .split_once(':')
        .ok_or_else(|| bad("bad major:minor"))?;
    let num = |s: &str, what| s.parse::<u32>().map_err(|_| bad(what));
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(Mount {
        id: num(fields[0], "bad mount id")?,
        parent: num(fields[1], "bad parent id")?,
        major: num(major, "bad major")?,
        minor: num(minor, "bad minor")?,
        root: PathBuf::from(unescape(fields[3])),
        mount_point: PathBuf::from(unescape(fields[4])),
        options: list(fields[5]),
        optional: fields[6..sep]
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| f.to_string())
            .collect(),
        fs_type: fields[sep + 1].to_string(),
        source: unescape(fields[sep + 2]),
        super_options: fields.get(sep + 3).map(|s| list(s)).unwrap_or_default(),
    })
}

/// The mount table, in the kernel's order (later entries stack on earlier ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MountInfo {
    pub mounts: Vec<Mount>,
}

impl MountInfo {
    pub fn parse(text: &str) -> Result<Self, MountinfoError> {
        let mounts = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| parse_line(i + 1, l))
            .collect::<Result<_, _>>()?;
        Ok(MountInfo { mounts })
    }

    /// The topmost mount exactly at `path`.
    pub fn mount_at(&self, path: &Path) -> Option<&Mount> {
        self.mounts.iter().rev().find(|m| m.mount_point == path)
    }

    pub fn is_mount_point(&self, path: &Path) -> bool {
        self.mount_at(path).is_some()
    }

    /// The mount holding `path`: longest mount-point prefix, topmost when stacked.
    /// `path` should already have its symlinks resolved.
    pub fn mount_for(&self, path: &Path) -> Option<&Mount> {
        self.mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| path.starts_with(&m.mount_point))
            .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
            .map(|(_, m)| m)
    }

    pub fn fs_type_of(&self, path: &Path) -> Option<&str> {
        self.mount_for(path).map(|m| m.fs_type.as_str())
    }

    /// `/` propagates mounts to peers (`--make-rshared` done or inherited).
    pub fn root_is_shared(&self) -> bool {
        self.mount_at(Path::new("/")).is_some_and(Mount::is_shared)
    }

    /// sysbox-fs FUSE mounts on /proc/* or /sys/*: the sysbox runtime is in use.
    pub fn sysboxfs_mounts(&self) -> Vec<PathBuf> {
        self.mounts
            .iter()
            .filter(|m| {
                m.is_sysboxfs()
                    && (m.mount_point.starts_with("/proc") || m.mount_point.starts_with("/sys"))
            })
            .map(|m| m.mount_point.clone())
            .collect()
    }

    pub fn cgroup_v1_mounts(&self) -> Vec<&Mount> {
        self.mounts
            .iter()
            .filter(|m| m.fs_type == "cgroup")
            .collect()
    }

    /// cgroup v1 hierarchies mounted read-only (what Docker gives a non-`--privileged` container).
    pub fn cgroup_v1_read_only(&self) -> Vec<PathBuf> {
        self.cgroup_v1_mounts()
            .into_iter()
            .filter(|m| m.read_only())
            .map(|m| m.mount_point.clone())
            .collect()
    }

    pub fn cgroup2_mounts(&self) -> Vec<&Mount> {
        self.mounts
            .iter()
            .filter(|m| m.fs_type == "cgroup2")
            .collect()
    }

    pub fn securityfs_mounted(&self) -> bool {
        self.mount_at(Path::new("/sys/kernel/security"))
            .is_some_and(|m| m.fs_type == "securityfs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_optional_tags_and_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/my\\040dir rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n";
        let mi = MountInfo::parse(text).unwrap();
        let m = &mi.mounts[0];
        assert_eq!((m.id, m.parent, m.major, m.minor), (36, 35, 98, 0));
        assert_eq!(m.root, Path::new("/mnt1"));
        assert_eq!(m.mount_point, Path::new("/mnt/my dir"));
        assert_eq!(m.options, ["rw", "noatime"]);
        assert_eq!(m.optional, ["master:1", "shared:7"]);
        assert_eq!(
            (m.fs_type.as_str(), m.source.as_str()),
            ("ext3", "/dev/root")
        );
        assert_eq!(m.super_options, ["rw", "errors=continue"]);
        assert!(m.is_shared() && !m.read_only());
        assert!(mi.is_mount_point(Path::new("/mnt/my dir")));
    }

    #[test]
    fn unescape_handles_all_kernel_escapes_and_leaves_others() {
        assert_eq!(unescape(r"a\040b\011c\012d\134e"), "a b\tc\nd\\e");
        assert_eq!(unescape(r"trail\04"), r"trail\04");
        assert_eq!(unescape(r"\999"), r"\999");
    }

    #[test]
    fn refuses_malformed_lines_with_line_number() {
        let e = MountInfo::parse("1 2 3:4 / / rw - ext4 /dev/x rw\n garbage\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(MountInfo::parse("1 2 3 / / rw - ext4 x rw").is_err());
    }

    #[test]
    fn mount_for_takes_longest_prefix_and_topmost_stacked() {
        let text = "\
1 0 8:1 / / rw shared:1 - ext4 /dev/a rw
2 1 0:5 / /var rw - tmpfs tmpfs rw
3 1 0:6 / /var/lib rw - xfs /dev/b rw
4 1 0:7 / /var/lib rw - btrfs /dev/c rw
";
        let mi = MountInfo::parse(text).unwrap();
        assert_eq!(mi.fs_type_of(Path::new("/var/lib/docker")), Some("btrfs"));
        assert_eq!(mi.fs_type_of(Path::new("/var/library")), Some("tmpfs"));
        assert_eq!(mi.fs_type_of(Path::new("/etc")), Some("ext4"));
        assert!(mi.root_is_shared());
    }
}
