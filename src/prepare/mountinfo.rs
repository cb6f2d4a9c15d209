//! Minimal `/proc/<pid>/mountinfo` reader: enough to answer "is this a
//! mountpoint?" and "how is it propagated?". Takes the text, not a path, so it
//! is tested without any mount.

use std::path::{Path, PathBuf};

use super::PrepareError;

/// One line of mountinfo (fields we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,...`).
    pub mount_options: Vec<String>,
    /// Optional fields such as `shared:3`, `master:1`.
    pub optional: Vec<String>,
    pub fs_type: String,
    pub source: String,
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// `shared:N` peer group, if the mount propagates as shared.
    pub fn shared_peer_group(&self) -> Option<u32> {
        self.optional
            .iter()
            .find_map(|f| f.strip_prefix("shared:").and_then(|n| n.parse().ok()))
    }

    pub fn is_read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "ro")
    }
}

/// Undo the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text; malformed lines are skipped (the kernel never writes them).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    if sep < 6 || fields.len() < sep + 4 {
        return None;
    }
    Some(MountEntry {
        mount_id: fields[0].parse().ok()?,
        parent_id: fields[1].parse().ok()?,
        root: PathBuf::from(unescape(fields[3])),
        mount_point: PathBuf::from(unescape(fields[4])),
        mount_options: fields[5].split(',').map(str::to_owned).collect(),
        optional: fields[6..sep].iter().map(|s| (*s).to_owned()).collect(),
        fs_type: fields[sep + 1].to_owned(),
        source: unescape(fields[sep + 2]),
        super_options: fields[sep + 3].split(',').map(str::to_owned).collect(),
    })
}

/// Whether `dir` is the mount point of some mount listed in `mountinfo_text`.
pub fn is_mountpoint(dir: &Path, mountinfo_text: &str) -> bool {
    parse_mountinfo(mountinfo_text)
        .iter()
        .any(|m| m.mount_point == dir)
}

/// Read a mountinfo file (e.g. `/proc/self/mountinfo`).
pub fn read_mountinfo(path: &Path) -> Result<String, PrepareError> {
    std::fs::read_to_string(path).map_err(|source| PrepareError::MountInfo {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
35 23 0:30 / /sys/fs/cgroup/pids ro,nosuid,nodev,noexec,relatime master:4 - cgroup cgroup rw,pids
40 27 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_fields_and_optional_tags() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].mount_point, Path::new("/"));
        assert_eq!(m[1].shared_peer_group(), Some(1));
        assert_eq!(m[2].optional, vec!["master:4"]);
        assert!(m[2].is_read_only());
        assert_eq!(m[2].fs_type, "cgroup");
        assert_eq!(m[2].super_options, vec!["rw", "pids"]);
        assert_eq!(m[0].shared_peer_group(), None);
    }

    #[test]
    fn unescapes_octal_in_paths() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m[3].mount_point, Path::new("/mnt/with space"));
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("trailing\\"), "trailing\\");
        assert_eq!(unescape("short\\04"), "short\\04");
    }

    #[test]
    fn mountpoint_check() {
        assert!(is_mountpoint(Path::new("/proc"), SAMPLE));
        assert!(!is_mountpoint(Path::new("/sys/kernel/security"), SAMPLE));
    }

    #[test]
    fn skips_garbage_lines() {
        assert!(parse_mountinfo("not a mountinfo line\n\n").is_empty());
    }
}
