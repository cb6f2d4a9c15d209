//! dockerd's configuration file. dockerd refuses to start when a key is set
//! both there and as a flag, so the plan needs to know which keys the file sets.

use std::path::{Path, PathBuf};

pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DaemonJson {
    pub path: PathBuf,
    /// The file exists (and is readable).
    pub present: bool,
    /// Its top-level keys, sorted.
    pub keys: Vec<String>,
    /// `mtu`, when it is a number.
    pub mtu: Option<u32>,
    /// `hosts`, when it is a list of strings.
    pub hosts: Vec<String>,
    /// Why the file cannot be used (unreadable, not JSON, not an object).
    pub error: Option<String>,
}

impl DaemonJson {
    pub fn sets(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }
}

/// Parse the text of a daemon.json found at `path` (pure).
pub fn parse(path: &Path, text: &str) -> DaemonJson {
    let mut d = DaemonJson {
        path: path.to_path_buf(),
        present: true,
        ..DaemonJson::default()
    };
    // An empty file is what dockerd accepts as "no settings".
    if text.trim().is_empty() {
        return d;
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => {
            d.keys = map.keys().cloned().collect();
            d.keys.sort();
            d.mtu = map
                .get("mtu")
                .and_then(|v| v.as_u64())
                .and_then(|m| u32::try_from(m).ok());
            d.hosts = map
                .get("hosts")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|h| h.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
        }
        Ok(_) => d.error = Some("it is valid JSON but not an object ({...})".into()),
        Err(e) => d.error = Some(format!("it is not valid JSON: {e}")),
    }
    d
}

/// Read `path` (inside `root`). A missing file is the usual case, not an error.
pub fn probe_daemon_json(root: &Path, path: &Path) -> DaemonJson {
    let host = root.join(path.strip_prefix("/").unwrap_or(path));
    match std::fs::read_to_string(&host) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DaemonJson {
            path: path.to_path_buf(),
            ..DaemonJson::default()
        },
        Err(e) => DaemonJson {
            path: path.to_path_buf(),
            present: true,
            error: Some(format!("it cannot be read: {e}")),
            ..DaemonJson::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_mtu_and_hosts() {
        let d = parse(
            Path::new(DAEMON_JSON),
            r#"{"mtu": 1400, "hosts": ["unix:///run/d.sock", "tcp://0.0.0.0:2375"], "debug": true}"#,
        );
        assert_eq!(d.keys, ["debug", "hosts", "mtu"]);
        assert_eq!(d.mtu, Some(1400));
        assert_eq!(d.hosts, ["unix:///run/d.sock", "tcp://0.0.0.0:2375"]);
        assert!(d.sets("mtu") && !d.sets("group") && d.error.is_none());
    }

    #[test]
    fn malformed_and_empty_files() {
        let bad = parse(Path::new(DAEMON_JSON), "{\"mtu\": 1400,}");
        assert!(
            bad.error.as_deref().unwrap().contains("not valid JSON"),
            "{bad:?}"
        );
        assert!(bad.keys.is_empty());
        let list = parse(Path::new(DAEMON_JSON), "[1]");
        assert!(list.error.as_deref().unwrap().contains("not an object"));
        let empty = parse(Path::new(DAEMON_JSON), " \n");
        assert!(empty.present && empty.error.is_none() && empty.keys.is_empty());
    }

    #[test]
    fn missing_file_is_not_an_error() {
        let t = tempfile::tempdir().unwrap();
        let d = probe_daemon_json(t.path(), Path::new(DAEMON_JSON));
        assert!(!d.present && d.error.is_none());
        std::fs::create_dir_all(t.path().join("etc/docker")).unwrap();
        std::fs::write(t.path().join("etc/docker/daemon.json"), "{\"group\":\"x\"}").unwrap();
        let d = probe_daemon_json(t.path(), Path::new(DAEMON_JSON));
        assert!(d.present && d.sets("group"));
    }
}
