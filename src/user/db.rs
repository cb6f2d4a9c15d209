//! `/etc/passwd`, `/etc/group`, `/etc/gshadow` and `/etc/subuid`/`subgid` as colon-separated text,
//! kept line by line: comments, NIS `+`/`-` lines and anything we do not
//! understand are carried through untouched, and an edited line changes only
//! the field that was edited. Rendering an unedited file gives back exactly
//! the input bytes.

/// A colon-separated database file, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColonFile {
    lines: Vec<String>,
    trailing_newline: bool,
}

impl ColonFile {
    pub fn parse(text: &str) -> Self {
        if text.is_empty() {
            return ColonFile::default();
        }
        let trailing_newline = text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        ColonFile {
            lines: body.split('\n').map(str::to_owned).collect(),
            trailing_newline,
        }
    }

    pub fn render(&self) -> String {
        let mut out = self.lines.join("\n");
        if self.trailing_newline && !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Fields of line `i`, or `None` for comments, NIS lines and blank lines.
    fn fields(&self, i: usize) -> Option<Vec<&str>> {
        let line = &self.lines[i];
        if line.is_empty() || line.starts_with(['#', '+', '-']) {
            return None;
        }
        Some(line.split(':').collect())
    }

    /// Index of the entry named `name` (first field).
    fn find(&self, name: &str) -> Option<usize> {
        (0..self.lines.len()).find(|&i| self.fields(i).is_some_and(|f| f[0] == name))
    }

    /// Replace field `field` of line `i`, leaving every other byte alone.
    fn set_field(&mut self, i: usize, field: usize, value: &str) {
        let mut f: Vec<String> = self.lines[i].split(':').map(str::to_owned).collect();
        while f.len() <= field {
            f.push(String::new());
        }
        f[field] = value.to_owned();
        self.lines[i] = f.join(":");
    }

    fn append(&mut self, line: String) {
        self.lines.push(line);
        self.trailing_newline = true;
    }
}

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

fn split_members(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The user the main command runs as when `WS_USER` is unset and it exists.
pub const DEFAULT_WORKSPACE_USER: &str = "workspace";

/// The user named by `WS_USER` (`setting`), or the default rule: `workspace`
/// if it exists, else `root`.
pub fn effective_user_name<'a>(setting: Option<&'a str>, passwd: &PasswdFile) -> &'a str {
    match setting {
        Some(name) => name,
        None if passwd.by_name(DEFAULT_WORKSPACE_USER).is_some() => DEFAULT_WORKSPACE_USER,
        None => "root",
    }
}

/// `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasswdFile(pub ColonFile);

impl PasswdFile {
    pub fn parse(text: &str) -> Self {
        PasswdFile(ColonFile::parse(text))
    }

    /// Well-formed entries (7 fields, numeric ids), in file order.
    pub fn entries(&self) -> Vec<PasswdEntry> {
        (0..self.0.lines.len())
            .filter_map(|i| {
                let f = self.0.fields(i)?;
                if f.len() != 7 {
                    return None;
                }
                Some(PasswdEntry {
                    name: f[0].to_owned(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    gecos: f[4].to_owned(),
                    home: f[5].to_owned(),
                    shell: f[6].to_owned(),
                })
            })
            .collect()
    }

    pub fn by_name(&self, name: &str) -> Option<PasswdEntry> {
        self.entries().into_iter().find(|e| e.name == name)
    }

    /// The passwd entry of the user the main command runs as: `WS_USER`
    /// (`setting`; a number names the entry with that uid), or the default rule.
    pub fn workspace_user(&self, setting: Option<&str>) -> Option<PasswdEntry> {
        let name = effective_user_name(setting, self);
        self.by_name(name)
            .or_else(|| name.parse().ok().and_then(|uid| self.by_uid(uid)))
    }

    pub fn by_uid(&self, uid: u32) -> Option<PasswdEntry> {
        self.entries().into_iter().find(|e| e.uid == uid)
    }
}

/// `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupFile(pub ColonFile);

impl GroupFile {
    pub fn parse(text: &str) -> Self {
        GroupFile(ColonFile::parse(text))
    }

    fn entry_at(&self, i: usize) -> Option<GroupEntry> {
        let f = self.0.fields(i)?;
        if f.len() != 4 {
            return None;
        }
        Some(GroupEntry {
            name: f[0].to_owned(),
            gid: f[2].parse().ok()?,
            members: split_members(f[3]),
        })
    }

    /// Well-formed entries (4 fields, numeric gid), in file order.
    pub fn entries(&self) -> Vec<GroupEntry> {
        (0..self.0.lines.len())
            .filter_map(|i| self.entry_at(i))
            .collect()
    }

    pub fn by_name(&self, name: &str) -> Option<GroupEntry> {
        self.entries().into_iter().find(|e| e.name == name)
    }

    pub fn by_gid(&self, gid: u32) -> Option<GroupEntry> {
        self.entries().into_iter().find(|e| e.gid == gid)
    }

    /// Any line using `name`, well-formed or not (names must stay unique).
    pub fn name_taken(&self, name: &str) -> bool {
        self.0.find(name).is_some()
    }

    pub(crate) fn set_gid(&mut self, name: &str, gid: u32) -> bool {
        match self.0.find(name) {
            Some(i) => {
                self.0.set_field(i, 2, &gid.to_string());
                true
            }
            None => false,
        }
    }

    pub(crate) fn add_member(&mut self, name: &str, user: &str) -> bool {
        add_member_field(&mut self.0, name, 3, user)
    }

    pub(crate) fn append(&mut self, name: &str, gid: u32) {
        self.0.append(format!("{name}:x:{gid}:"));
    }
}

/// `/etc/gshadow` (`name:password:admins:members`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GshadowFile(pub ColonFile);

impl GshadowFile {
    pub fn parse(text: &str) -> Self {
        GshadowFile(ColonFile::parse(text))
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.find(name).is_some()
    }

    pub fn members(&self, name: &str) -> Option<Vec<String>> {
        let i = self.0.find(name)?;
        let f = self.0.fields(i)?;
        Some(split_members(f.get(3).copied().unwrap_or("")))
    }

    pub(crate) fn append(&mut self, name: &str) {
        // `!`: no group password, as groupadd writes it.
        self.0.append(format!("{name}:!::"));
    }

    pub(crate) fn add_member(&mut self, name: &str, user: &str) -> bool {
        add_member_field(&mut self.0, name, 3, user)
    }
}

/// Add `user` to the comma-separated member list in `field` of entry `name`;
/// false if the entry is missing. Already a member: unchanged.
fn add_member_field(file: &mut ColonFile, name: &str, field: usize, user: &str) -> bool {
    let Some(i) = file.find(name) else {
        return false;
    };
    let current = file
        .fields(i)
        .and_then(|f| f.get(field).map(|s| (*s).to_owned()))
        .unwrap_or_default();
    let members = split_members(&current);
    if members.iter().any(|m| m == user) {
        return true;
    }
    let value = if current.is_empty() {
        user.to_owned()
    } else {
        format!("{current},{user}")
    };
    file.set_field(i, field, &value);
    true
}

/// One line of `/etc/subuid` or `/etc/subgid`: `owner:start:count`, the
/// owner a name or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubIdEntry {
    pub owner: String,
    pub start: u64,
    pub count: u64,
}

impl SubIdEntry {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.count)
    }
}

/// `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubIdFile(pub ColonFile);

impl SubIdFile {
    pub fn parse(text: &str) -> Self {
        SubIdFile(ColonFile::parse(text))
    }

    /// Well-formed ranges, in file order.
    pub fn entries(&self) -> Vec<SubIdEntry> {
        (0..self.0.lines.len())
            .filter_map(|i| match self.0.fields(i)?[..] {
                [owner, start, count] if !owner.trim().is_empty() => Some(SubIdEntry {
                    owner: owner.trim().to_owned(),
                    start: start.trim().parse().ok()?,
                    count: count.trim().parse().ok()?,
                }),
                _ => None,
            })
            .collect()
    }

    /// Adds the line `owner:start:count`.
    pub(crate) fn append(&mut self, line: &str) {
        self.0.append(line.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GROUP: &str = "\
root:x:0:
# local groups below
daemon:x:1:
sudo:x:27:workspace
+nisgroup
weird line without colons
docker:x:998:alice,bob
workspace:x:1000:
";

    #[test]
    fn subid_append_keeps_every_other_line() {
        let mut f = SubIdFile::parse("# ranges\n+nis\nalice:100000:65536");
        assert_eq!(f.entries().len(), 1);
        f.append("workspace:165536:65536");
        assert_eq!(
            f.0.render(),
            "# ranges\n+nis\nalice:100000:65536\nworkspace:165536:65536\n"
        );
        assert_eq!(f.entries()[1].end(), 165536 + 65536);
    }

    #[test]
    fn render_is_byte_identical() {
        for text in [GROUP, "", "a:x:1:", "a:x:1:\n\n", "\n", "x:y\r\nz:w\r\n"] {
            assert_eq!(ColonFile::parse(text).render(), text, "{text:?}");
        }
    }

    #[test]
    fn group_entries_skip_odd_lines() {
        let g = GroupFile::parse(GROUP);
        let names: Vec<_> = g.entries().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["root", "daemon", "sudo", "docker", "workspace"]);
        assert_eq!(g.by_gid(998).unwrap().members, ["alice", "bob"]);
        assert_eq!(g.by_name("root").unwrap().members, Vec::<String>::new());
    }

    #[test]
    fn passwd_entries() {
        let p = PasswdFile::parse(
            "root:x:0:0:root:/root:/bin/bash\n#c\nworkspace:x:1000:1000:Dev,,,:/home/workspace:/bin/zsh\nbad:x:nan:1:::\n",
        );
        let e = p.by_name("workspace").unwrap();
        assert_eq!((e.uid, e.gid), (1000, 1000));
        assert_eq!(e.gecos, "Dev,,,");
        assert_eq!(e.shell, "/bin/zsh");
        assert_eq!(p.by_uid(0).unwrap().home, "/root");
        assert!(p.by_name("bad").is_none());
    }

    #[test]
    fn edit_touches_only_one_field() {
        let mut g = GroupFile::parse(GROUP);
        assert!(g.set_gid("docker", 999));
        assert!(g.add_member("workspace", "alice"));
        assert!(g.add_member("docker", "alice")); // already there
        assert!(!g.add_member("nope", "alice"));
        let want = GROUP
            .replace("docker:x:998:", "docker:x:999:")
            .replace("workspace:x:1000:", "workspace:x:1000:alice");
        assert_eq!(g.0.render(), want);
    }

    #[test]
    fn append_adds_newline_when_missing() {
        let mut g = GroupFile::parse("root:x:0:");
        g.append("docker", 999);
        assert_eq!(g.0.render(), "root:x:0:\ndocker:x:999:\n");
        let mut s = GshadowFile::parse("root:*::\n");
        s.append("docker");
        assert!(s.add_member("docker", "workspace"));
        assert_eq!(s.0.render(), "root:*::\ndocker:!::workspace\n");
        assert_eq!(s.members("docker").unwrap(), ["workspace"]);
    }
}
