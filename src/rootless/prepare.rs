//! Carries out a `RootlessStep` as root; `Ok` says what was done.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::client::{self, ConfigChange};
use super::plan::RootlessStep;
use super::safe_fs::{ensure_dir_at, open_dir, read_file_at, write_file_at};
use crate::user::SubIdFile;

/// Why a rootless preparation step failed; the messages name the path and,
/// where the user can act, the fix.
#[derive(Debug, thiserror::Error)]
pub enum RootlessPrepareError {
    #[error("{} has no parent directory", .0.display())]
    NoParent(PathBuf),
    /// Opening a directory the step works in (the cause names it).
    #[error(transparent)]
    OpenDir(io::Error),
    #[error("{}: {source}", path.display())]
    Path { path: PathBuf, source: io::Error },
    #[error("cannot update {}: {source}", path.display())]
    Update { path: PathBuf, source: io::Error },
    #[error("{source}; {TUN_FIX}")]
    TunOpen { source: io::Error },
    #[error("{}/net: {source}; {TUN_FIX}", dev.display())]
    TunDir { dev: PathBuf, source: io::Error },
    #[error(
        "cannot create {}/net/tun: {source}; rootlesskit cannot set up its network without it ({TUN_FIX})",
        dev.display()
    )]
    TunNode { dev: PathBuf, source: io::Error },
    #[error("{} is not a directory right below {}", parent.display(), volume.display())]
    NotBelowVolume { parent: PathBuf, volume: PathBuf },
    #[error(
        "cannot write the docker CLI context in {}/.docker ({source}); use DOCKER_HOST=unix://{} instead",
        home.display(),
        socket.display()
    )]
    ClientContext {
        home: PathBuf,
        socket: PathBuf,
        source: io::Error,
    },
}

const TUN_FIX: &str = "pass the device: docker run --device /dev/net/tun";

fn at(path: &Path) -> impl FnOnce(io::Error) -> RootlessPrepareError + '_ {
    move |source| RootlessPrepareError::Path {
        path: path.to_owned(),
        source,
    }
}

fn split(path: &Path) -> Result<(&Path, &str), RootlessPrepareError> {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(RootlessPrepareError::NoParent(path.to_owned())),
    }
}

/// Adds `line` to a subordinate id file unless its owner already has a range there.
pub fn add_subids(file: &Path, line: &str) -> Result<String, RootlessPrepareError> {
    let (dir, name) = split(file)?;
    let dir_fd = open_dir(dir).map_err(RootlessPrepareError::OpenDir)?;
    let existing = read_file_at(&dir_fd, name, 0)
        .map_err(at(file))?
        .unwrap_or_default();
    let mut subids = SubIdFile::parse(&String::from_utf8_lossy(&existing));
    let owner = line.split(':').next().unwrap_or_default();
    if subids.entries().iter().any(|e| e.owner == owner) {
        return Ok(format!(
            "{} already has a range for {owner}",
            file.display()
        ));
    }
    subids.append(line);
    let new = subids.0.render();
    write_file_at(&dir_fd, name, new.as_bytes(), 0o644, (0, 0)).map_err(|source| {
        RootlessPrepareError::Update {
            path: file.to_owned(),
            source,
        }
    })?;
    Ok(format!("added {line} to {}", file.display()))
}

/// `/dev/net/tun`, character device 10:200, mode 0666 as on a host.
pub fn create_tun(dev: &Path) -> Result<String, RootlessPrepareError> {
    let dev_fd = open_dir(dev).map_err(|source| RootlessPrepareError::TunOpen { source })?;
    let (net, _) = ensure_dir_at(&dev_fd, "net", 0o755, None).map_err(|source| {
        RootlessPrepareError::TunDir {
            dev: dev.to_owned(),
            source,
        }
    })?;
    let name = c"tun";
    // SAFETY: plain system calls on a descriptor we own and a constant name.
    let r = unsafe {
        libc::mknodat(
            net.as_raw_fd(),
            name.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(10, 200),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(RootlessPrepareError::TunNode {
                dev: dev.to_owned(),
                source: e,
            });
        }
        return Ok("already there".into());
    }
    // SAFETY: as above; the node was just created by us in a root-owned directory.
    unsafe { libc::fchmodat(net.as_raw_fd(), name.as_ptr(), 0o666, 0) };
    Ok(format!("created {}/net/tun", dev.display()))
}

/// The user's runtime directory: root-owned `/run/user`, then `<uid>` 0700
/// owned by the user with a fresh tmpfs on it (nothing stale survives a
/// `docker restart`); without the tmpfs (mount refused) the directory serves.
pub fn runtime_dir(path: &Path, uid: u32, gid: u32) -> Result<String, RootlessPrepareError> {
    let (parent, name) = split(path)?;
    let (grand, parent_name) = split(parent)?;
    let g = open_dir(grand).map_err(RootlessPrepareError::OpenDir)?;
    let (p, _) = ensure_dir_at(&g, parent_name, 0o755, Some((0, 0))).map_err(at(parent))?;
    let (d, _) = ensure_dir_at(&p, name, 0o700, Some((uid, gid))).map_err(at(path))?;
    // Through the descriptor: the path is not looked up again.
    let target = format!("/proc/self/fd/{}", d.as_raw_fd());
    let data = format!("mode=0700,uid={uid},gid={gid}");
    match mount(
        Some("tmpfs"),
        target.as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    ) {
        Ok(()) => Ok(format!("tmpfs on {} ({data})", path.display())),
        Err(e) => {
            tracing::warn!(
                "cannot mount a tmpfs on {} ({e}); using the directory as it is",
                path.display()
            );
            Ok(format!("{} without tmpfs", path.display()))
        }
    }
}

/// `volume/rootless/<user>` owned by the user; `volume` itself is left as it is.
pub fn data_root(
    volume: &Path,
    path: &Path,
    uid: u32,
    gid: u32,
) -> Result<String, RootlessPrepareError> {
    let (parent, name) = split(path)?;
    let sub = parent
        .strip_prefix(volume)
        .ok()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .ok_or_else(|| RootlessPrepareError::NotBelowVolume {
            parent: parent.to_owned(),
            volume: volume.to_owned(),
        })?;
    let v = open_dir(volume).map_err(RootlessPrepareError::OpenDir)?;
    let (rl, _) = ensure_dir_at(&v, sub, 0o755, Some((0, 0))).map_err(at(parent))?;
    ensure_dir_at(&rl, name, 0o700, Some((uid, gid))).map_err(at(path))?;
    Ok(format!("{} owned by {uid}:{gid}", path.display()))
}

pub fn apply(step: &RootlessStep) -> Result<String, RootlessPrepareError> {
    match step {
        RootlessStep::AddSubIds { file, line } => add_subids(file, line),
        RootlessStep::CreateTun => create_tun(Path::new("/dev")),
        RootlessStep::RuntimeDir { path, uid, gid } => runtime_dir(path, *uid, *gid),
        RootlessStep::DataRoot {
            volume,
            path,
            uid,
            gid,
        } => data_root(volume, path, *uid, *gid),
        RootlessStep::ClientContext {
            home,
            uid,
            gid,
            socket,
        } => match client::write_context(home, *uid, *gid, socket) {
            Ok(ConfigChange::UserChoseOther(name)) => {
                tracing::info!(
                    "{}/.docker/config.json selects the docker context {name:?}: left alone (`docker context use rootless` switches to the workspace's dockerd)",
                    home.display()
                );
                Ok(format!("context written; {name} stays current"))
            }
            Ok(change) => Ok(format!("context written: {change:?}")),
            Err(source) => Err(RootlessPrepareError::ClientContext {
                home: home.clone(),
                socket: socket.clone(),
                source,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subids_are_appended_once() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("subuid");
        if !nix::unistd::geteuid().is_root() {
            return; // read_file_at wants root's file; the e2e tests cover the rest
        }
        std::fs::write(&f, "other:100000:65536").unwrap();
        add_subids(&f, "workspace:165536:65536").unwrap();
        add_subids(&f, "workspace:165536:65536").unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "other:100000:65536\nworkspace:165536:65536\n"
        );
        // A missing file is created.
        let g = t.path().join("subgid");
        add_subids(&g, "workspace:100000:65536").unwrap();
        assert_eq!(
            std::fs::read_to_string(&g).unwrap(),
            "workspace:100000:65536\n"
        );
    }

    #[test]
    fn data_root_is_a_subdirectory_and_the_volume_is_not_touched() {
        let t = tempfile::tempdir().unwrap();
        let vol = t.path().join("docker");
        std::fs::create_dir(&vol).unwrap();
        std::fs::write(vol.join("rootful-file"), "x").unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let before = std::fs::metadata(&vol).unwrap();
        if nix::unistd::geteuid().is_root() {
            data_root(&vol, &vol.join("rootless/workspace"), 1000, 1000).unwrap();
            let m = std::fs::metadata(vol.join("rootless/workspace")).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o700));
            let after = std::fs::metadata(&vol).unwrap();
            assert_eq!((before.uid(), before.mode()), (after.uid(), after.mode()));
        }
        // A link planted where the data root goes is refused, not followed.
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), vol.join("rootless/evil")).ok();
        std::fs::create_dir_all(vol.join("rootless")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), vol.join("rootless/evil")).ok();
        assert!(data_root(&vol, &vol.join("rootless/evil"), me.0, me.1).is_err());
        assert!(data_root(&vol, &t.path().join("x/y"), me.0, me.1).is_err());
    }

    #[test]
    fn errors_are_typed_and_keep_their_messages() {
        let e = split(Path::new("/")).unwrap_err();
        assert!(matches!(e, RootlessPrepareError::NoParent(_)));
        assert_eq!(e.to_string(), "/ has no parent directory");
        let e = data_root(Path::new("/v"), Path::new("/x/y"), 1, 1).unwrap_err();
        assert!(matches!(e, RootlessPrepareError::NotBelowVolume { .. }));
        assert_eq!(e.to_string(), "/x is not a directory right below /v");
        let e = create_tun(Path::new("/nonexistent-dev")).unwrap_err();
        assert!(matches!(e, RootlessPrepareError::TunOpen { .. }));
        assert!(e
            .to_string()
            .ends_with("; pass the device: docker run --device /dev/net/tun"));
    }
}
