//! Users and groups: who runs the main command, and the `docker` group that
//! makes the socket usable without `chmod 666` (design §1, §4).
//!
//! Parsing and edits are pure (text in, text out, tested without root);
//! `update_groups` applies them to the real files, atomically.
//!
//! `/etc/gshadow`: when present it is kept consistent with `/etc/group` (a new
//! group gets `name:!::`, a new member is added to its member list), as
//! `groupadd`/`usermod -aG` do: `grpck` then stays clean and tools that read
//! gshadow (`gpasswd`, `newgrp`) agree with `/etc/group`. When absent it is not
//! created (minimal images such as Alpine/busybox have none).

pub mod atomic;
pub mod db;

use std::ffi::OsStr;
use std::path::Path;

pub use atomic::{write_atomically, write_atomically_with, Dir, Ownership};
pub use db::{
    effective_user_name, ColonFile, GroupEntry, GroupFile, GshadowFile, PasswdEntry, PasswdFile,
    SubIdEntry, SubIdFile, DEFAULT_WORKSPACE_USER,
};

/// Resolved identity for the main command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// Primary gid first, then every group listing the user, in file order.
    pub supplementary_gids: Vec<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error(
        "user {0:?} not found in /etc/passwd; create it in the image (useradd) or set WS_USER \
         to an existing user or a numeric uid"
    )]
    UnknownUser(String),
    #[error(
        "cannot give group {group:?} gid {gid}: group {owner:?} already has it; set \
         WS_DOCKER_GID to a free gid, or change/remove group {owner:?} in the image"
    )]
    GidTaken {
        group: String,
        gid: u32,
        owner: String,
    },
    #[error("group {0:?} not found in /etc/group; create it first")]
    UnknownGroup(String),
    #[error("no free group name for gid {gid} (tried {preferred:?} and numbered variants)")]
    NoFreeName { gid: u32, preferred: String },
    #[error("cannot read {path}: {detail}; is the image's /etc intact?")]
    Read { path: String, detail: String },
    #[error("cannot rewrite {path}: {detail}")]
    Write { path: String, detail: String },
}

/// Resolve a user name (or a numeric uid) with its groups. A numeric uid
/// without a passwd entry is accepted like `docker run -u 1234` does: gid 0,
/// home `/`.
pub fn resolve_user(
    passwd_text: &str,
    group_text: &str,
    name_or_uid: &str,
) -> Result<UserInfo, UserError> {
    let passwd = PasswdFile::parse(passwd_text);
    let groups = GroupFile::parse(group_text);
    let entry = passwd.by_name(name_or_uid).or_else(|| {
        name_or_uid
            .parse::<u32>()
            .ok()
            .and_then(|uid| passwd.by_uid(uid))
    });
    let (name, uid, gid, home, shell) = match entry {
        Some(e) => (e.name, e.uid, e.gid, e.home, e.shell),
        None => match name_or_uid.parse::<u32>() {
            Ok(uid) => (
                name_or_uid.to_owned(),
                uid,
                0,
                "/".to_owned(),
                "/bin/sh".to_owned(),
            ),
            Err(_) => return Err(UserError::UnknownUser(name_or_uid.to_owned())),
        },
    };
    let mut supplementary_gids = vec![gid];
    for g in groups.entries() {
        if g.members.contains(&name) && !supplementary_gids.contains(&g.gid) {
            supplementary_gids.push(g.gid);
        }
    }
    Ok(UserInfo {
        name,
        uid,
        gid,
        home,
        shell,
        supplementary_gids,
    })
}

/// What an edit changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    Unchanged,
    Created,
    GidChanged { from: u32 },
}

/// `/etc/group` plus `/etc/gshadow` when the image has one, edited together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupDb {
    pub group: GroupFile,
    pub gshadow: Option<GshadowFile>,
}

impl GroupDb {
    pub fn parse(group_text: &str, gshadow_text: Option<&str>) -> Self {
        GroupDb {
            group: GroupFile::parse(group_text),
            gshadow: gshadow_text.map(GshadowFile::parse),
        }
    }

    fn create(&mut self, name: &str, gid: u32) {
        self.group.append(name, gid);
        if let Some(s) = &mut self.gshadow {
            if !s.has(name) {
                s.append(name);
            }
        }
    }

    /// Group `name` exists with `gid`: create it, or move it to `gid` unless
    /// another group owns that gid.
    pub fn ensure_group_gid(&mut self, name: &str, gid: u32) -> Result<GroupChange, UserError> {
        if let Some(owner) = self.group.by_gid(gid).filter(|g| g.name != name) {
            return Err(UserError::GidTaken {
                group: name.to_owned(),
                gid,
                owner: owner.name,
            });
        }
        match self.group.by_name(name) {
            Some(g) if g.gid == gid => Ok(GroupChange::Unchanged),
            Some(g) => {
                self.group.set_gid(name, gid);
                Ok(GroupChange::GidChanged { from: g.gid })
            }
            None => {
                self.create(name, gid);
                Ok(GroupChange::Created)
            }
        }
    }

    /// `user` is a member of `group`. Returns true when it was added.
    pub fn ensure_member(&mut self, group: &str, user: &str) -> Result<bool, UserError> {
        let entry = self
            .group
            .by_name(group)
            .ok_or_else(|| UserError::UnknownGroup(group.to_owned()))?;
        if entry.members.iter().any(|m| m == user) {
            return Ok(false);
        }
        self.group.add_member(group, user);
        if let Some(s) = &mut self.gshadow {
            if !s.has(group) {
                s.append(group);
            }
            s.add_member(group, user);
        }
        Ok(true)
    }

    /// A group with `gid` (a host socket's group): the existing one, or a new
    /// one named `preferred` (`docker-host`), `preferred-2`, ... whichever is
    /// free. Returns its name.
    pub fn ensure_group_for_gid(&mut self, gid: u32, preferred: &str) -> Result<String, UserError> {
        if let Some(g) = self.group.by_gid(gid) {
            return Ok(g.name);
        }
        let taken =
            |n: &str| self.group.name_taken(n) || self.gshadow.as_ref().is_some_and(|s| s.has(n));
        let name = std::iter::once(preferred.to_owned())
            .chain((2..1000).map(|i| format!("{preferred}-{i}")))
            .find(|n| !taken(n))
            .ok_or_else(|| UserError::NoFreeName {
                gid,
                preferred: preferred.to_owned(),
            })?;
        self.create(&name, gid);
        Ok(name)
    }
}

/// The error of a failed rewrite, with the fix that fits its cause.
fn write_error(path: &Path, e: &std::io::Error) -> UserError {
    let fix = match e.raw_os_error() {
        Some(libc::EROFS) => {
            "the root filesystem is read-only: add the group in the image and pass --group-add"
        }
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            "no space left: free some on the container's root filesystem"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "permission denied although ws-init runs as root: is /etc immutable (chattr +i) or \
             ws-init missing CAP_DAC_OVERRIDE?"
        }
        _ => "/etc must be writable for root",
    };
    UserError::Write {
        path: path.display().to_string(),
        detail: format!("{e}; {fix}"),
    }
}

/// Read `group_path` (and `gshadow_path` if it exists), run `edit`, and
/// rewrite whichever file changed, atomically and keeping mode and owner.
/// Nothing is written when `edit` fails. (No `lckpwdf` lock: this runs at
/// container start before any other process could edit the files.)
///
/// Crash safety: temporary files left by an earlier crash are removed first;
/// both new files are written and synced before either is renamed into
/// place; gshadow is renamed first, so a crash between the two renames
/// leaves only an extra gshadow line, which the next start's (idempotent)
/// edit completes.
pub fn update_groups<T>(
    group_path: &Path,
    gshadow_path: &Path,
    edit: impl FnOnce(&mut GroupDb) -> Result<T, UserError>,
) -> Result<T, UserError> {
    let name = |p: &Path| p.file_name().unwrap_or(OsStr::new("group")).to_owned();
    let (group_name, gshadow_name) = (name(group_path), name(gshadow_path));
    let dir_path = group_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = Dir::open(dir_path).map_err(|e| UserError::Read {
        path: dir_path.display().to_string(),
        detail: e.to_string(),
    })?;
    // The files live in root's own /etc: following a link there is root's choice.
    let read = |n: &OsStr, p: &Path| {
        dir.read(n, true)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| {
                (
                    e.kind(),
                    UserError::Read {
                        path: p.display().to_string(),
                        detail: e.to_string(),
                    },
                )
            })
    };
    let group_text = read(&group_name, group_path).map_err(|(_, e)| e)?;
    let gshadow_text = match read(&gshadow_name, gshadow_path) {
        Ok(t) => Some(t),
        Err((std::io::ErrorKind::NotFound, _)) => None,
        Err((_, e)) => return Err(e),
    };
    let mut db = GroupDb::parse(&group_text, gshadow_text.as_deref());
    let out = edit(&mut db)?;
    for (n, p) in [(&group_name, group_path), (&gshadow_name, gshadow_path)] {
        match dir.remove_leftover_temps(n) {
            Ok(removed) if !removed.is_empty() => tracing::warn!(
                "removed {} temporary file(s) an interrupted edit of {} left behind",
                removed.len(),
                p.display()
            ),
            Ok(_) => {}
            Err(e) => return Err(write_error(p, &e)),
        }
    }
    let new_group = db.group.0.render();
    let new_gshadow = match (&gshadow_text, &db.gshadow) {
        (Some(before), Some(s)) if *before != s.0.render() => Some(s.0.render()),
        _ => None,
    };
    let stage = |n: &OsStr, p: &Path, text: &str| {
        dir.stage(n, text.as_bytes(), Ownership::KeepExisting)
            .map_err(|e| write_error(p, &e))
    };
    let staged_gshadow = match &new_gshadow {
        Some(text) => Some(stage(&gshadow_name, gshadow_path, text)?),
        None => None,
    };
    let staged_group = if new_group != group_text {
        Some(stage(&group_name, group_path, &new_group)?)
    } else {
        None
    };
    if staged_gshadow.is_none() && staged_group.is_none() {
        return Ok(out);
    }
    if let Some(s) = staged_gshadow {
        s.commit().map_err(|e| write_error(gshadow_path, &e))?;
    }
    if let Some(s) = staged_group {
        s.commit().map_err(|e| write_error(group_path, &e))?;
    }
    dir.sync().map_err(|e| write_error(group_path, &e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# comment
workspace:x:1000:1000::/home/workspace:/bin/bash
";
    const GROUP: &str = "\
root:x:0:
sudo:x:27:workspace
docker:x:999:workspace
workspace:x:1000:
other:x:500:root,workspace
";

    #[test]
    fn resolves_by_name_and_uid_with_groups() {
        let u = resolve_user(PASSWD, GROUP, "workspace").unwrap();
        assert_eq!(u.name, "workspace");
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.home, "/home/workspace");
        assert_eq!(u.supplementary_gids, vec![1000, 27, 999, 500]);
        assert_eq!(
            resolve_user(PASSWD, GROUP, "1000").unwrap().name,
            "workspace"
        );
        let root = resolve_user(PASSWD, GROUP, "root").unwrap();
        assert_eq!(root.supplementary_gids, vec![0, 500]);
    }

    #[test]
    fn unknown_numeric_uid_is_like_docker_run_u() {
        let u = resolve_user(PASSWD, GROUP, "4321").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4321, 0, "/"));
        assert_eq!(u.supplementary_gids, vec![0]);
        let e = resolve_user(PASSWD, GROUP, "nobody-here").unwrap_err();
        assert!(e.to_string().contains("WS_USER"));
    }

    #[test]
    fn default_user_rule() {
        let with = PasswdFile::parse(PASSWD);
        let without = PasswdFile::parse("root:x:0:0:root:/root:/bin/sh\n");
        assert_eq!(effective_user_name(None, &with), "workspace");
        assert_eq!(effective_user_name(None, &without), "root");
        assert_eq!(effective_user_name(Some("dev"), &with), "dev");
    }

    #[test]
    fn ensure_group_gid_cases() {
        let mut db = GroupDb::parse("root:x:0:\n", Some("root:*::\n"));
        assert_eq!(
            db.ensure_group_gid("docker", 999).unwrap(),
            GroupChange::Created
        );
        assert_eq!(
            db.ensure_group_gid("docker", 999).unwrap(),
            GroupChange::Unchanged
        );
        assert_eq!(
            db.ensure_group_gid("docker", 998).unwrap(),
            GroupChange::GidChanged { from: 999 }
        );
        assert_eq!(db.group.0.render(), "root:x:0:\ndocker:x:998:\n");
        assert_eq!(
            db.gshadow.as_ref().unwrap().0.render(),
            "root:*::\ndocker:!::\n"
        );
        let err = db.ensure_group_gid("docker", 0).unwrap_err();
        assert_eq!(
            err,
            UserError::GidTaken {
                group: "docker".into(),
                gid: 0,
                owner: "root".into()
            }
        );
        assert!(err.to_string().contains("WS_DOCKER_GID"));
        // Refused edits change nothing.
        assert_eq!(db.group.0.render(), "root:x:0:\ndocker:x:998:\n");
    }

    #[test]
    fn ensure_member_keeps_both_files_consistent() {
        let mut db = GroupDb::parse(GROUP, Some("root:*::\ndocker:!::workspace\n"));
        assert!(!db.ensure_member("docker", "workspace").unwrap());
        assert!(db.ensure_member("workspace", "alice").unwrap());
        assert!(db.group.0.render().contains("\nworkspace:x:1000:alice\n"));
        // The missing gshadow line is created along the way.
        assert_eq!(
            db.gshadow.as_ref().unwrap().members("workspace").unwrap(),
            ["alice"]
        );
        assert_eq!(
            db.ensure_member("nope", "alice").unwrap_err(),
            UserError::UnknownGroup("nope".into())
        );
    }

    #[test]
    fn group_for_socket_gid() {
        let mut db = GroupDb::parse(GROUP, None);
        assert_eq!(
            db.ensure_group_for_gid(999, "docker-host").unwrap(),
            "docker"
        );
        assert_eq!(
            db.ensure_group_for_gid(133, "docker-host").unwrap(),
            "docker-host"
        );
        assert_eq!(
            db.ensure_group_for_gid(134, "docker-host").unwrap(),
            "docker-host-2"
        );
        assert_eq!(
            db.ensure_group_for_gid(133, "docker-host").unwrap(),
            "docker-host"
        );
        let want = format!("{GROUP}docker-host:x:133:\ndocker-host-2:x:134:\n");
        assert_eq!(db.group.0.render(), want);
    }

    #[test]
    fn update_groups_rewrites_only_on_change() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let group = tmp.path().join("group");
        let gshadow = tmp.path().join("gshadow");
        std::fs::write(&group, GROUP).unwrap();
        let ino = std::fs::metadata(&group).unwrap().ino();
        // No change: the file is not even replaced.
        update_groups(&group, &gshadow, |db| {
            db.ensure_member("docker", "workspace")
        })
        .unwrap();
        assert_eq!(std::fs::metadata(&group).unwrap().ino(), ino);
        // Change: replaced, lines kept, no gshadow created.
        update_groups(&group, &gshadow, |db| {
            db.ensure_group_gid("docker", 990)?;
            db.ensure_member("docker", "bob")
        })
        .unwrap();
        let text = std::fs::read_to_string(&group).unwrap();
        assert_eq!(
            text,
            GROUP.replace("docker:x:999:workspace", "docker:x:990:workspace,bob")
        );
        assert!(!gshadow.exists());
        // Failing edit: nothing written.
        let before = std::fs::read_to_string(&group).unwrap();
        let r = update_groups(&group, &gshadow, |db| {
            db.ensure_member("docker", "carol")?;
            db.ensure_group_gid("docker", 0)
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_to_string(&group).unwrap(), before);
    }

    #[test]
    fn update_groups_missing_file_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let e = update_groups(
            &tmp.path().join("group"),
            &tmp.path().join("gs"),
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
