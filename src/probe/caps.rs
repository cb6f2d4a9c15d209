//! Capabilities from `/proc/self/status` and the user-namespace map.

use serde::Serialize;

/// Names indexed by capability number (linux/capability.h), without the `CAP_` prefix.
pub const CAP_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_NET_ADMIN: u32 = 12;

/// What an inner dockerd + runc use: namespaces and mounts, bridge and iptables,
/// device nodes, ownership changes and dropping capabilities for containers.
pub const DIND_ESSENTIAL: [&str; 12] = [
    "SYS_ADMIN",
    "NET_ADMIN",
    "NET_RAW",
    "MKNOD",
    "SYS_CHROOT",
    "SETUID",
    "SETGID",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETPCAP",
    "KILL",
];

pub fn cap_name(bit: u32) -> String {
    CAP_NAMES
        .get(bit as usize)
        .map_or_else(|| format!("CAP_{bit}"), |n| format!("CAP_{n}"))
}

pub fn cap_bit(name: &str) -> Option<u32> {
    let n = name.strip_prefix("CAP_").unwrap_or(name);
    CAP_NAMES.iter().position(|c| *c == n).map(|p| p as u32)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CapLevel {
    /// Every capability the kernel knows is effective (`--privileged`).
    Full,
    /// All of [`DIND_ESSENTIAL`] but not everything (e.g. `--cap-add ALL --cap-drop SYS_RESOURCE`).
    NearPrivileged,
    /// Docker's default set or less.
    Restricted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapsProbe {
    pub effective: u64,
    pub bounding: u64,
    /// Highest capability number of this kernel (`/proc/sys/kernel/cap_last_cap`).
    pub last_cap: u32,
    pub effective_names: Vec<String>,
    /// Known capabilities (≤ last_cap) not in the effective set.
    pub missing: Vec<String>,
    pub level: CapLevel,
}

impl CapsProbe {
    pub fn from_sets(effective: u64, bounding: u64, last_cap: u32) -> Self {
        let bits = 0..=last_cap.min(63);
        let effective_names = bits
            .clone()
            .filter(|b| effective >> b & 1 == 1)
            .map(cap_name)
            .collect();
        let missing: Vec<String> = bits
            .filter(|b| effective >> b & 1 == 0)
            .map(cap_name)
            .collect();
        let has_all_essential = DIND_ESSENTIAL
            .iter()
            .all(|n| cap_bit(n).is_some_and(|b| effective >> b & 1 == 1));
        let level = if missing.is_empty() {
            CapLevel::Full
        } else if has_all_essential {
            CapLevel::NearPrivileged
        } else {
            CapLevel::Restricted
        };
        CapsProbe {
            effective,
            bounding,
            last_cap,
            effective_names,
            missing,
            level,
        }
    }

    pub fn has(&self, bit: u32) -> bool {
        bit < 64 && self.effective >> bit & 1 == 1
    }

    /// Essential capabilities for an inner daemon that are missing.
    pub fn missing_essential(&self) -> Vec<String> {
        DIND_ESSENTIAL
            .iter()
            .filter(|n| !cap_bit(n).is_some_and(|b| self.has(b)))
            .map(|n| format!("CAP_{n}"))
            .collect()
    }
}

/// The fields of `/proc/self/status` the probe uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusFields {
    pub cap_eff: Option<u64>,
    pub cap_bnd: Option<u64>,
    /// real, effective, saved, fs
    pub uid: Option<[u32; 4]>,
    pub gid: Option<[u32; 4]>,
    pub groups: Vec<u32>,
    /// 0 disabled, 1 strict, 2 filter
    pub seccomp: Option<u32>,
}

pub fn parse_status(text: &str) -> StatusFields {
    let mut s = StatusFields::default();
    let ids = |v: &str| -> Option<[u32; 4]> {
        let n: Vec<u32> = v
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        n.try_into().ok()
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "CapEff" => s.cap_eff = u64::from_str_radix(v, 16).ok(),
            "CapBnd" => s.cap_bnd = u64::from_str_radix(v, 16).ok(),
            "Uid" => s.uid = ids(v),
            "Gid" => s.gid = ids(v),
            "Groups" => {
                s.groups = v
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            }
            "Seccomp" => s.seccomp = v.parse().ok(),
            _ => {}
        }
    }
    s
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UidMapEntry {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserNamespace {
    pub uid_map: Vec<UidMapEntry>,
    /// The map is not the initial namespace's identity `0 0 4294967295`.
    pub in_user_namespace: bool,
}

pub fn parse_uid_map(text: &str) -> UserNamespace {
    let uid_map: Vec<UidMapEntry> = text
        .lines()
        .filter_map(|l| {
            let n: Vec<u32> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            match n[..] {
                [inside, outside, count] => Some(UidMapEntry {
                    inside,
                    outside,
                    count,
                }),
                _ => None,
            }
        })
        .collect();
    let identity = uid_map.len() == 1
        && uid_map[0]
            == UidMapEntry {
                inside: 0,
                outside: 0,
                count: u32::MAX,
            };
    UserNamespace {
        in_user_namespace: !uid_map.is_empty() && !identity,
        uid_map,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_set_is_restricted_and_named() {
        let c = CapsProbe::from_sets(0xa80425fb, 0xa80425fb, 40);
        assert_eq!(c.level, CapLevel::Restricted);
        assert!(c.effective_names.contains(&"CAP_NET_RAW".to_string()));
        assert!(c.missing.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!c.has(CAP_SYS_ADMIN) && !c.has(CAP_NET_ADMIN));
        assert!(c.missing_essential().contains(&"CAP_NET_ADMIN".to_string()));
    }

    #[test]
    fn levels_full_and_near() {
        assert_eq!(
            CapsProbe::from_sets(0x1ffffffffff, 0, 40).level,
            CapLevel::Full
        );
        let near = CapsProbe::from_sets(0x3ffeffffff, 0, 40);
        assert_eq!(near.level, CapLevel::NearPrivileged);
        assert_eq!(
            near.missing,
            [
                "CAP_SYS_RESOURCE",
                "CAP_PERFMON",
                "CAP_BPF",
                "CAP_CHECKPOINT_RESTORE"
            ]
        );
        // An older kernel that knows fewer caps: all of them = full.
        assert_eq!(
            CapsProbe::from_sets(0x3fffffffff, 0, 37).level,
            CapLevel::Full
        );
    }

    #[test]
    fn uid_map_identity_vs_userns() {
        assert!(!parse_uid_map("         0          0 4294967295\n").in_user_namespace);
        let u = parse_uid_map("         0     165536      65536\n");
        assert!(u.in_user_namespace);
        assert_eq!(u.uid_map[0].outside, 165536);
    }

    #[test]
    fn status_fields() {
        let s = parse_status("Uid:\t1000\t1000\t1000\t1000\nGroups:\t1000 999 \nCapEff:\t0000000000000000\nSeccomp:\t2\n");
        assert_eq!(s.uid, Some([1000; 4]));
        assert_eq!(s.groups, [1000, 999]);
        assert_eq!((s.cap_eff, s.seccomp), (Some(0), Some(2)));
    }
}
