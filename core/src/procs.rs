//! The process table from `/proc` as plain data, and who gets signalled at
//! stop (pure functions over that table).

use std::path::Path;

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    /// `R`, `S`, `D`, `T`, `Z`, ...
    pub state: char,
}

impl Proc {
    /// A zombie has ended; only its parent's wait is missing.
    pub fn alive(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// `(pid, text of /proc/PID/stat)` for every process in `proc` (`/proc` in
/// production): the one walk of the process directory. Processes that end
/// while the directory is read are left out.
pub fn stat_entries(proc: &Path) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((pid, stat))
        })
        .collect()
}

/// Every process in `proc` (`/proc` in production). Processes that end while
/// the directory is read are left out.
pub fn read_table(proc: &Path) -> Vec<Proc> {
    stat_entries(proc)
        .into_iter()
        .filter_map(|(pid, stat)| {
            let (state, ppid) = parse_stat(&stat)?;
            Some(Proc { pid, ppid, state })
        })
        .collect()
}

/// State and parent PID from a `/proc/PID/stat` line. The command name may
/// contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The parent PID from a `/proc/PID/stat` line.
pub fn parse_stat_ppid(stat: &str) -> Option<i32> {
    parse_stat(stat).map(|(_, ppid)| ppid)
}

/// Whether `proc` is the `/proc` of our own PID namespace: its `self` link
/// names our pid. Another namespace's `/proc` would have us signal strangers
/// by numbers that mean other processes here.
pub fn proc_is_ours(proc: &Path) -> bool {
    std::fs::read_link(proc.join("self"))
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse::<u32>().ok()))
        == Some(std::process::id())
}

/// PIDs of every descendant of `root`, read from `proc`.
pub fn descendants(proc: &Path, root: i32) -> Vec<i32> {
    let table = read_table(proc);
    let pairs: Vec<(i32, i32)> = table
        .iter()
        .filter(|p| p.alive())
        .map(|p| (p.pid, p.ppid))
        .collect();
    descendants_of(&pairs, root)
}

/// Pure: descendants of `root` in a (pid, ppid) list.
pub fn descendants_of(parent_of: &[(i32, i32)], root: i32) -> Vec<i32> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == p)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Pure, for PID 1: live processes that entered our PID namespace from
/// outside (`docker exec`, `kubectl exec`, `nsenter`; their parent is not in
/// the namespace, so their parent PID reads 0), with their live descendants.
/// They are not in ws-init's tree, so no SIGCHLD tells when they end.
pub fn outsiders(table: &[Proc], own_pid: i32) -> Vec<i32> {
    let live: Vec<(i32, i32)> = table
        .iter()
        .filter(|p| p.alive() && p.pid != own_pid)
        .map(|p| (p.pid, p.ppid))
        .collect();
    let mut found: Vec<i32> = live
        .iter()
        .filter(|(_, ppid)| *ppid == 0)
        .map(|(pid, _)| *pid)
        .collect();
    let roots = found.clone();
    for root in roots {
        found.extend(descendants_of(&live, root));
    }
    found
}

/// Pure: every live process but ws-init itself.
pub fn others(table: &[Proc], own_pid: i32) -> Vec<i32> {
    table
        .iter()
        .filter(|p| p.alive() && p.pid != own_pid)
        .map(|p| p.pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, state: char) -> Proc {
        Proc { pid, ppid, state }
    }

    #[test]
    fn stat_entries_reads_numbered_directories_with_a_stat_file() {
        let t = tempfile::tempdir().unwrap();
        for (dir, stat) in [
            ("12", Some("12 (a b) S 1 0")),
            ("self", Some("x")),
            ("13", None),
        ] {
            std::fs::create_dir(t.path().join(dir)).unwrap();
            if let Some(stat) = stat {
                std::fs::write(t.path().join(dir).join("stat"), stat).unwrap();
            }
        }
        assert_eq!(
            stat_entries(t.path()),
            vec![(12, "12 (a b) S 1 0".to_string())]
        );
        assert_eq!(read_table(t.path()), vec![p(12, 1, 'S')]);
        assert!(stat_entries(&t.path().join("missing")).is_empty());
    }

    #[test]
    fn stat_survives_odd_command_names() {
        assert_eq!(parse_stat("123 (sleep) S 45 123 45 0"), Some(('S', 45)));
        assert_eq!(parse_stat_ppid("7 (a) b) (c) R 1 7 7 0"), Some(1));
        assert_eq!(parse_stat("9 (z) Z 1 9"), Some(('Z', 1)));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn descendants_walks_the_whole_tree_only() {
        let table = [(10, 1), (11, 10), (12, 11), (13, 10), (20, 1), (21, 20)];
        let mut d = descendants_of(&table, 10);
        d.sort();
        assert_eq!(d, vec![11, 12, 13]);
        assert!(descendants_of(&table, 12).is_empty());
    }

    #[test]
    fn outsiders_are_exec_d_processes_and_their_children() {
        let table = [
            p(1, 0, 'S'),   // ws-init
            p(7, 1, 'S'),   // the main command
            p(8, 7, 'S'),   // its child
            p(30, 0, 'S'),  // docker exec'd editor server
            p(31, 30, 'S'), // its worker
            p(32, 31, 'Z'), // an ended grandchild
            p(40, 0, 'Z'),  // an exec'd process that ended, not yet reaped outside
            p(50, 1, 'S'),  // an orphan adopted by ws-init: ours
        ];
        let mut o = outsiders(&table, 1);
        o.sort();
        assert_eq!(o, [30, 31]);
        let mut all = others(&table, 1);
        all.sort();
        assert_eq!(all, [7, 8, 30, 31, 50]);
        assert!(outsiders(&[p(1, 0, 'S')], 1).is_empty());
    }

    #[test]
    fn this_proc_is_ours_and_finds_a_real_child() {
        let _children = crate::test_support::children_lock();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let found = descendants(Path::new("/proc"), me);
        assert!(found.contains(&(child.id() as i32)), "{found:?}");
        assert!(proc_is_ours(Path::new("/proc")));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
