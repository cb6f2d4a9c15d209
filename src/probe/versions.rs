//! Versions of dockerd, containerd and runc, from dpkg's database: no binary
//! is run, so start time does not grow (`dockerd --version` costs ~50 ms and
//! a wait). A binary counts as the package's only when the package's file list
//! names the very file PATH resolves to; a dockerd put in /usr/local/bin by
//! hand has no known version, and the plan then keeps the behaviour that works
//! with every version.

use std::path::{Path, PathBuf};

use super::iptables::find_in_path;
use super::socket::resolve_in_root;

pub const DPKG_STATUS: &str = "var/lib/dpkg/status";
pub const DPKG_INFO: &str = "var/lib/dpkg/info";

/// (binary on PATH, Debian package that ships it).
pub const COMPONENTS: [(&str, &str); 3] = [
    ("dockerd", "docker.io"),
    ("containerd", "containerd"),
    ("runc", "runc"),
];

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ComponentVersion {
    /// The binary PATH resolves to (symlinks followed), if any.
    pub binary: Option<PathBuf>,
    /// The installed package that owns that binary.
    pub package: Option<String>,
    /// The package's Debian version (`26.1.5+dfsg1-9+b1`).
    pub version: Option<String>,
}

impl ComponentVersion {
    /// Upstream (major, minor): epoch and Debian revision dropped.
    pub fn major_minor(&self) -> Option<(u32, u32)> {
        upstream_major_minor(self.version.as_deref()?)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VersionsProbe {
    pub dockerd: ComponentVersion,
    pub containerd: ComponentVersion,
    pub runc: ComponentVersion,
}

/// `1:26.1.5+dfsg1-9` → (26, 1). `None` when it does not start with digits.
pub fn upstream_major_minor(version: &str) -> Option<(u32, u32)> {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Versions of the installed packages among `wanted`, from dpkg's status file.
pub fn installed_versions(status: &str, wanted: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for para in status.split("\n\n") {
        let (mut pkg, mut ver, mut installed) = (None, None, false);
        for line in para.lines() {
            if let Some(p) = line.strip_prefix("Package: ") {
                pkg = Some(p.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                ver = Some(v.trim());
            } else if let Some(s) = line.strip_prefix("Status: ") {
                installed = s.trim().ends_with(" installed");
            }
        }
        if let (Some(p), Some(v), true) = (pkg, ver, installed) {
            if wanted.contains(&p) {
                out.push((p.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// Does `package`'s file list name `binary` (comparing resolved paths, so
/// `/sbin/x` and `/usr/sbin/x` match on a merged-/usr system)?
fn package_owns(root: &Path, package: &str, binary: &Path) -> bool {
    let Ok(list) = std::fs::read_to_string(root.join(DPKG_INFO).join(format!("{package}.list")))
    else {
        return false;
    };
    let name = binary.file_name();
    list.lines()
        .map(Path::new)
        .filter(|p| p.file_name() == name)
        .any(|p| resolve_in_root(root, p) == binary)
}

pub fn probe_versions(root: &Path, path_env: &str) -> VersionsProbe {
    let status = std::fs::read_to_string(root.join(DPKG_STATUS)).unwrap_or_default();
    let packages: Vec<&str> = COMPONENTS.iter().map(|(_, p)| *p).collect();
    let installed = installed_versions(&status, &packages);
    let one = |binary: &str, package: &str| {
        let found = find_in_path(root, path_env, binary).map(|b| resolve_in_root(root, &b));
        let owned = found
            .as_deref()
            .is_some_and(|b| package_owns(root, package, b));
        let version = installed
            .iter()
            .find(|(p, _)| p == package)
            .filter(|_| owned)
            .map(|(_, v)| v.clone());
        ComponentVersion {
            binary: found,
            package: version.as_ref().map(|_| package.to_string()),
            version,
        }
    };
    let [(d, dp), (c, cp), (r, rp)] = COMPONENTS;
    VersionsProbe {
        dockerd: one(d, dp),
        containerd: one(c, cp),
        runc: one(r, rp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const STATUS: &str =
        "Package: docker.io\nStatus: install ok installed\nVersion: 26.1.5+dfsg1-9+deb13u1+b1\n\n\
Package: runc\nStatus: deinstall ok config-files\nVersion: 1.1.15+ds1-2\n\n\
Package: containerd\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:2.1.9~ds1-1\n";

    #[test]
    fn parses_installed_versions_and_upstream_numbers() {
        let v = installed_versions(STATUS, &["docker.io", "runc", "containerd"]);
        assert_eq!(
            v,
            [
                ("docker.io".into(), "26.1.5+dfsg1-9+deb13u1+b1".into()),
                ("containerd".into(), "1:2.1.9~ds1-1".into())
            ]
        );
        assert_eq!(upstream_major_minor("26.1.5+dfsg1-9"), Some((26, 1)));
        assert_eq!(upstream_major_minor("1:2.1.9~ds1-1"), Some((2, 1)));
        assert_eq!(upstream_major_minor("20.10.24+dfsg1-1+b3"), Some((20, 10)));
        assert_eq!(upstream_major_minor("28"), Some((28, 0)));
        assert_eq!(upstream_major_minor("git-abc"), None);
    }

    fn exe(root: &Path, p: &str) {
        let f = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn version_only_for_the_binary_the_package_owns() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join(DPKG_INFO)).unwrap();
        std::fs::write(r.join(DPKG_STATUS), STATUS).unwrap();
        std::fs::write(
            r.join(DPKG_INFO).join("docker.io.list"),
            "/.\n/usr\n/usr/sbin/dockerd\n/usr/share/man/man8/dockerd.8.gz\n",
        )
        .unwrap();
        std::fs::write(
            r.join(DPKG_INFO).join("containerd.list"),
            "/usr/bin/containerd\n",
        )
        .unwrap();
        exe(r, "/usr/sbin/dockerd");
        exe(r, "/usr/bin/containerd");
        // merged /usr: /sbin is a link, and PATH finds /sbin/dockerd first.
        std::os::unix::fs::symlink("usr/sbin", r.join("sbin")).unwrap();
        let v = probe_versions(r, "/sbin:/usr/bin");
        assert_eq!(
            v.dockerd.binary.as_deref(),
            Some(Path::new("/usr/sbin/dockerd"))
        );
        assert_eq!(v.dockerd.package.as_deref(), Some("docker.io"));
        assert_eq!(v.dockerd.major_minor(), Some((26, 1)));
        assert_eq!(v.containerd.major_minor(), Some((2, 1)));
        assert_eq!(v.runc, ComponentVersion::default(), "runc is not installed");
        // A hand-installed dockerd earlier on PATH: the package's version is not its version.
        exe(r, "/usr/local/bin/dockerd");
        let v = probe_versions(r, "/usr/local/bin:/usr/sbin:/usr/bin");
        assert_eq!(
            v.dockerd.binary.as_deref(),
            Some(Path::new("/usr/local/bin/dockerd"))
        );
        assert_eq!((v.dockerd.package, v.dockerd.version), (None, None));
    }
}
