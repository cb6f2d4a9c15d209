//! Capabilities from `/proc/self/status` and the user-namespace map.

use serde::Serialize;

pub use ::caps::Capability;
use ::caps::CapsHashSet;

pub const CAP_SYS_ADMIN: Capability = Capability::CAP_SYS_ADMIN;
pub const CAP_NET_ADMIN: Capability = Capability::CAP_NET_ADMIN;

/// What an inner dockerd + runc use: namespaces and mounts, bridge and iptables,
/// device nodes, ownership changes and dropping capabilities for containers.
pub const DIND_ESSENTIAL: [Capability; 12] = [
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_RAW,
    Capability::CAP_MKNOD,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_SETPCAP,
    Capability::CAP_KILL,
];

/// `CAP_CHOWN`, … as the kernel headers spell it.
pub fn cap_name(cap: Capability) -> String {
    cap.to_string()
}

/// Every capability the `caps` crate knows, in bit order.
fn known() -> Vec<Capability> {
    let mut all: Vec<Capability> = ::caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all
}

/// The highest capability number ws-init has a name for: the fallback when
/// `/proc/sys/kernel/cap_last_cap` cannot be read.
pub fn last_known_cap() -> u32 {
    known().last().map_or(0, |c| u32::from(c.index()))
}

/// The capabilities of a `/proc/PID/status` bitmask (`CapEff`, `CapBnd`) that
/// have a name; bits above the newest known capability are left out.
pub fn set_of(mask: u64) -> CapsHashSet {
    ::caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .collect()
}

/// The name of capability number `bit`, or `CAP_<bit>` for one newer than
/// the `caps` crate.
fn bit_name(known: &[Capability], bit: u32) -> String {
    known
        .iter()
        .find(|c| u32::from(c.index()) == bit)
        .map_or_else(|| format!("CAP_{bit}"), |c| cap_name(*c))
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
        let known = known();
        let bits = 0..=last_cap.min(63);
        let effective_names = bits
            .clone()
            .filter(|b| effective >> b & 1 == 1)
            .map(|b| bit_name(&known, b))
            .collect();
        let missing: Vec<String> = bits
            .filter(|b| effective >> b & 1 == 0)
            .map(|b| bit_name(&known, b))
            .collect();
        let effective_set = set_of(effective);
        let has_all_essential = DIND_ESSENTIAL.iter().all(|c| effective_set.contains(c));
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

    pub fn has(&self, cap: Capability) -> bool {
        self.effective & cap.bitmask() != 0
    }

    /// Essential capabilities for an inner daemon that are missing.
    pub fn missing_essential(&self) -> Vec<String> {
        DIND_ESSENTIAL
            .iter()
            .filter(|c| !self.has(**c))
            .map(|c| cap_name(*c))
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

/// The lines of a `/proc/PID/uid_map` or `gid_map` (malformed lines left out).
pub fn parse_id_map_entries(text: &str) -> Vec<UidMapEntry> {
    text.lines()
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
        .collect()
}

pub fn parse_uid_map(text: &str) -> UserNamespace {
    let uid_map = parse_id_map_entries(text);
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
        // A kernel newer than the caps crate: its extra capability is named by number.
        let newer = CapsProbe::from_sets(0x3ffeffffff, 0, 41);
        assert_eq!(newer.missing.last().unwrap(), "CAP_41");
        // Bits 0..=37 without SYS_RESOURCE (24).
        let set = set_of(0x3ffeffffff);
        assert_eq!(set.len(), 37);
        assert!(!set.contains(&Capability::CAP_SYS_RESOURCE));
        assert!(set.contains(&Capability::CAP_AUDIT_READ));
        assert_eq!(last_known_cap(), 40);
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
