//! The docker CLI's way to the rootless socket without `DOCKER_HOST`: a
//! context named `rootless` in `~/.docker/contexts/meta/<sha256 of the name>/meta.json`,
//! made current in `~/.docker/config.json` unless the user chose another one.
//! `docker exec -u workspace` gets it too (docker sets HOME from passwd).
//! Written as root without following links (see `safe_fs`).

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::config::Settings;

use super::plan::CONTEXT_NAME;
use super::safe_fs::{ensure_dir_at, open_dir, read_file_at, write_file_at};

/// `sha256("rootless")`: the docker CLI stores a context under its name's digest.
pub const CONTEXT_DIGEST: &str = "12b961af5feb3e9d39f93b2cefb9a1a944f18d02cca0cac2f04f5a982240605f";

/// The context's `meta.json`.
pub fn context_meta(socket: &Path) -> Value {
    json!({
        "Name": CONTEXT_NAME,
        "Metadata": {"Description": "rootless inner dockerd of this workspace (ws-init)"},
        "Endpoints": {"docker": {"Host": format!("unix://{}", socket.display()), "SkipTLSVerify": false}},
    })
}

/// What happens to `config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Written with `currentContext` = ours (the rest kept).
    SetCurrent(Value),
    /// Already current.
    Unchanged,
    /// The user chose another context: left alone.
    UserChoseOther(String),
}

/// Pure: the config with our context current, keeping every other key.
pub fn merge_config(existing: Option<&[u8]>) -> Result<ConfigChange, String> {
    let mut v: Value = match existing {
        None => json!({}),
        Some(b) if b.iter().all(u8::is_ascii_whitespace) => json!({}),
        Some(b) => serde_json::from_slice(b)
            .map_err(|e| format!("config.json is not JSON ({e}); left alone"))?,
    };
    let Some(obj) = v.as_object_mut() else {
        return Err("config.json is not a JSON object; left alone".into());
    };
    match obj.get("currentContext").and_then(Value::as_str) {
        Some(CONTEXT_NAME) => return Ok(ConfigChange::Unchanged),
        Some(other) if !other.is_empty() && other != "default" => {
            return Ok(ConfigChange::UserChoseOther(other.to_string()))
        }
        _ => {}
    }
    obj.insert("currentContext".into(), Value::String(CONTEXT_NAME.into()));
    Ok(ConfigChange::SetCurrent(v))
}

fn to_bytes(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Writes the context and makes it current for the user owning `home`.
pub fn write_context(home: &Path, uid: u32, gid: u32, socket: &Path) -> io::Result<ConfigChange> {
    let home_fd = open_dir(home)?;
    let owner = Some((uid, gid));
    let (docker, _) = ensure_dir_at(&home_fd, ".docker", 0o700, owner)?;
    let (contexts, _) = ensure_dir_at(&docker, "contexts", 0o755, owner)?;
    let (meta, _) = ensure_dir_at(&contexts, "meta", 0o755, owner)?;
    let (ours, _) = ensure_dir_at(&meta, CONTEXT_DIGEST, 0o755, owner)?;
    write_file_at(
        &ours,
        "meta.json",
        &to_bytes(&context_meta(socket)),
        0o644,
        (uid, gid),
    )?;
    let existing = read_file_at(&docker, "config.json", uid)?;
    let change = merge_config(existing.as_deref())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if let ConfigChange::SetCurrent(v) = &change {
        write_file_at(&docker, "config.json", &to_bytes(v), 0o600, (uid, gid))?;
    }
    Ok(change)
}

/// The socket clients (`wait-docker`, the HEALTHCHECK) use in rootless mode:
/// the workspace user's, looked up in /etc/passwd. `None` when rootless is off,
/// `DOCKER_HOST` is set (it wins, as for the docker CLI) or the user is unknown.
pub fn client_socket(settings: &Settings) -> Option<PathBuf> {
    if !settings.docker_rootless || settings.docker_host.is_some() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let entry =
        crate::user::db::PasswdFile::parse(&passwd).workspace_user(settings.user.as_deref())?;
    (entry.uid != 0).then(|| super::plan::socket_path(entry.uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_the_sha256_of_the_name() {
        // The docker CLI finds a context by this digest: compare with coreutils.
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf %s {CONTEXT_NAME} | sha256sum")])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.split_whitespace().next(), Some(CONTEXT_DIGEST));
    }

    #[test]
    fn config_merge_keeps_keys_and_respects_the_users_choice() {
        let ConfigChange::SetCurrent(v) = merge_config(None).unwrap() else {
            panic!()
        };
        assert_eq!(v, json!({"currentContext": "rootless"}));
        let ConfigChange::SetCurrent(v) =
            merge_config(Some(br#"{"auths":{"r":{}},"currentContext":"default"}"#)).unwrap()
        else {
            panic!()
        };
        assert_eq!(v, json!({"auths":{"r":{}},"currentContext":"rootless"}));
        assert_eq!(
            merge_config(Some(br#"{"currentContext":"rootless"}"#)).unwrap(),
            ConfigChange::Unchanged
        );
        assert_eq!(
            merge_config(Some(br#"{"currentContext":"prod"}"#)).unwrap(),
            ConfigChange::UserChoseOther("prod".into())
        );
        assert!(merge_config(Some(b"[1]")).is_err());
        assert!(merge_config(Some(b"{oops")).is_err());
    }

    #[test]
    fn writes_context_and_config_in_a_home() {
        let t = tempfile::tempdir().unwrap();
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let sock = Path::new("/run/user/1000/docker.sock");
        write_context(t.path(), uid, gid, sock).unwrap();
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(
                t.path()
                    .join(".docker/contexts/meta")
                    .join(CONTEXT_DIGEST)
                    .join("meta.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            meta["Endpoints"]["docker"]["Host"],
            "unix:///run/user/1000/docker.sock"
        );
        let cfg = std::fs::read_to_string(t.path().join(".docker/config.json")).unwrap();
        assert!(cfg.contains("\"currentContext\": \"rootless\""), "{cfg}");
        assert_eq!(
            write_context(t.path(), uid, gid, sock).unwrap(),
            ConfigChange::Unchanged
        );
    }

    #[test]
    fn a_planted_docker_link_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), t.path().join(".docker")).unwrap();
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        assert!(write_context(t.path(), uid, gid, Path::new("/s")).is_err());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}
