//! Legacy iptables selection, as dockerd-entrypoint.sh does it: a directory of
//! `iptables*` links to the `*-legacy` binaries, put first in dockerd's PATH.
//! We use a private directory instead of overwriting `/usr/local/sbin`, so the
//! image's own files are never touched and the choice applies to dockerd only.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::PrepareError;

/// Where ws-init keeps the links by default (the caller may pass another).
pub const DEFAULT_IPTABLES_LEGACY_DIR: &str = "/run/ws-init/iptables-legacy";

pub use crate::probe::iptables::{LegacyLink, LEGACY_LINKS};

/// Make `link` a symlink to `target`, replacing whatever is there atomically
/// (symlink under a temporary name, then rename over).
fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Create `dir` (mode 0755) with the six `ip(6)tables[-save|-restore]` links
/// pointing at the legacy binaries the probe resolved (`links`: link name and
/// root-only target, or why there is none; nothing is looked up here).
/// Idempotent. All six targets must be usable, else nothing is created.
/// Returns `dir`, to prepend to dockerd's PATH.
pub fn iptables_legacy_links(dir: &Path, links: &[LegacyLink]) -> Result<PathBuf, PrepareError> {
    let mut targets = Vec::with_capacity(LEGACY_LINKS.len());
    for (name, legacy) in LEGACY_LINKS {
        let unusable = |why: String| PrepareError::IptablesLegacyUnusable {
            binary: legacy.to_owned(),
            why,
        };
        match links.iter().find(|(n, _)| n == name) {
            Some((_, Ok(target))) => targets.push((name, target.clone())),
            Some((_, Err(why))) => return Err(unusable(why.clone())),
            None => return Err(unusable("not probed".into())),
        }
    }
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| PrepareError::IptablesLinks { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(err(dir))?;
    for (name, target) in targets {
        let link = dir.join(name);
        replace_symlink(&target, &link).map_err(err(&link))?;
    }
    Ok(dir.to_owned())
}

/// The first line of `BINARY --version` (e.g. `iptables v1.8.9 (legacy)`).
pub fn iptables_version(binary: &Path) -> Result<String, PrepareError> {
    crate::probe::iptables::binary_version(binary).map_err(|detail| PrepareError::IptablesVersion {
        binary: binary.to_owned(),
        detail,
    })
}

/// `update-alternatives --set NAME PATH` for each pair: the workspace's own
/// `iptables`/`ip6tables` then use the backend dockerd uses. Only planned when
/// a link points elsewhere, so a restarted workspace runs nothing here.
pub fn set_iptables_alternatives(set: &[(String, PathBuf)]) -> Result<(), PrepareError> {
    for (name, path) in set {
        let fail = |detail: String| PrepareError::IptablesAlternative {
            name: name.clone(),
            path: path.clone(),
            detail,
        };
        let out = Command::new("update-alternatives")
            .arg("--set")
            .arg(name)
            .arg(path)
            .output()
            .map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            return Err(fail(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sbin with executable scripts named like the legacy binaries
    /// (each prints its own name for `--version`), and the links to them as
    /// the probe reports them; `skip` is reported unusable.
    fn fake_sbin(root: &Path, skip: Option<&str>) -> (PathBuf, Vec<LegacyLink>) {
        let sbin = root.join("sbin");
        std::fs::create_dir_all(&sbin).unwrap();
        let mut links = Vec::new();
        for (name, legacy) in LEGACY_LINKS {
            if Some(legacy) == skip {
                links.push((
                    name.to_string(),
                    Err(format!("/usr/sbin/{legacy} is owned by uid 1000, not root")),
                ));
                continue;
            }
            let p = sbin.join(legacy);
            std::fs::write(&p, format!("#!/bin/sh\necho \"{legacy} v0 (legacy)\"\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            links.push((name.to_string(), Ok(p)));
        }
        (sbin, links)
    }

    #[test]
    fn creates_links_idempotently_and_reports_version() {
        let tmp = tempfile::tempdir().unwrap();
        let (sbin, links) = fake_sbin(tmp.path(), None);
        let dir = tmp.path().join("run/ws-init/iptables-legacy");
        let got = iptables_legacy_links(&dir, &links).unwrap();
        assert_eq!(got, dir);
        for (name, legacy) in LEGACY_LINKS {
            assert_eq!(
                std::fs::read_link(dir.join(name)).unwrap(),
                sbin.join(legacy)
            );
        }
        // Second run: same result, no leftovers.
        iptables_legacy_links(&dir, &links).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), LEGACY_LINKS.len());
        let v = iptables_version(&dir.join("iptables")).unwrap();
        assert_eq!(v, "iptables-legacy v0 (legacy)");
    }

    #[test]
    fn replaces_a_wrong_link() {
        let tmp = tempfile::tempdir().unwrap();
        let (sbin, links) = fake_sbin(tmp.path(), None);
        let dir = tmp.path().join("links");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.join("iptables")).unwrap();
        iptables_legacy_links(&dir, &links).unwrap();
        assert_eq!(
            std::fs::read_link(dir.join("iptables")).unwrap(),
            sbin.join("iptables-legacy")
        );
    }

    #[test]
    fn unusable_binary_names_path_and_why_and_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, links) = fake_sbin(tmp.path(), Some("ip6tables-legacy-save"));
        let dir = tmp.path().join("links");
        let err = iptables_legacy_links(&dir, &links).unwrap_err().to_string();
        assert!(
            err.contains("/usr/sbin/ip6tables-legacy-save is owned by uid 1000, not root"),
            "{err}"
        );
        assert!(err.contains("`iptables` package"), "{err}");
        assert!(!dir.exists());
        // A link the probe did not report is not looked up here either.
        let err = iptables_legacy_links(&dir, &links[..2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("iptables-legacy-restore: not probed"), "{err}");
        assert!(!dir.exists());
    }

    #[test]
    fn version_of_missing_binary_is_an_error() {
        let err = iptables_version(Path::new("/nonexistent/iptables")).unwrap_err();
        assert!(err.to_string().contains("--version"));
    }
}
