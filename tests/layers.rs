//! Layers only point down: a module may use its own layer and the ones
//! below, never one above. The tables are the architecture of both crates
//! (the bring-up program's `src/` and the resident core's `core/src/`); this
//! test reads every file and fails on an import that goes up, naming the
//! file, the path and both layers. The core depends on libc alone.

use std::path::{Path, PathBuf};

/// Layers, lowest first.
const LAYERS: &[&str] = &[
    "base",
    "config",
    "probe",
    "plan",
    "apply",
    "supervise",
    "app",
];

/// Module path (as under `crate::`) → layer. The longest matching prefix
/// wins, so a submodule can sit below its parent (`rootless::probe`).
const TABLE: &[(&str, &str)] = &[
    // Pure helpers that import nothing of the crate. `exit` and
    // `stop_budget` are re-exports of ws_init_core's.
    ("exit", "base"),
    ("stop_budget", "base"),
    ("user::db", "base"),
    // The environment, parsed once.
    ("config", "config"),
    // Reads the system into plain data.
    ("probe", "probe"),
    ("rootless::probe", "probe"),
    // Pure decisions: every step, its failure policy and its data.
    ("plan", "plan"),
    ("rootless::plan", "plan"),
    // Carries out the steps.
    ("prepare", "apply"),
    ("bringup", "apply"),
    ("tls", "apply"),
    ("user", "apply"),
    ("rootless::prepare", "apply"),
    ("rootless::safe_fs", "apply"),
    ("rootless::client", "apply"),
    // Talks to a running Docker (`wait-docker`, the remote check); what
    // keeps running is the core's.
    ("docker_api", "supervise"),
    // Wiring and commands.
    ("rootless", "app"),
    ("app", "app"),
    ("cli", "app"),
    ("detach", "app"),
    ("handoff", "app"),
    ("doctor", "app"),
    ("logging", "app"),
    ("main", "app"),
    ("entry", "app"),
    ("bin", "app"),
    ("lib", "app"),
];

/// The resident core's layers, lowest first.
const CORE_LAYERS: &[&str] = &["base", "parts", "driver", "loop", "run"];

const CORE_TABLE: &[(&str, &str)] = &[
    // Plain data, system calls and parsers.
    ("log", "base"),
    ("reactor", "base"),
    ("exit", "base"),
    ("fd", "base"),
    ("http", "base"),
    ("procs", "base"),
    ("signals", "base"),
    ("spawn", "base"),
    ("pid1", "base"),
    ("backoff", "base"),
    ("stop_budget", "base"),
    ("handover", "base"),
    ("paths", "base"),
    ("pidfiles", "base"),
    ("atomic", "base"),
    ("test_support", "base"),
    // One concern each, driven by the poll loop: readiness, dockerd's log,
    // DNS, reaping, the supervisor's pure decisions.
    ("ping", "parts"),
    ("logs", "parts"),
    ("dns", "parts"),
    ("inner_containers", "parts"),
    ("reaper", "parts"),
    ("supervise", "parts"),
    // Performs the supervisor's decisions.
    ("supervisor", "driver"),
    // The poll loop over every part, the bring-up child, the ordered stop.
    ("event_loop", "loop"),
    ("bringup_child", "loop"),
    ("stop", "loop"),
    // The flows: PID 1, start-docker's supervisor, the entry.
    ("workspace", "run"),
    ("supervise_docker", "run"),
    ("entry", "run"),
    ("lib", "run"),
];

/// A crate's architecture: its source directory, layers and table.
struct Arch {
    src: PathBuf,
    layers: &'static [&'static str],
    table: &'static [(&'static str, &'static str)],
}

fn root() -> Arch {
    Arch {
        src: Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        layers: LAYERS,
        table: TABLE,
    }
}

fn core() -> Arch {
    Arch {
        src: Path::new(env!("CARGO_MANIFEST_DIR")).join("core/src"),
        layers: CORE_LAYERS,
        table: CORE_TABLE,
    }
}

fn layer_of(module: &[String]) -> Option<(&'static str, usize)> {
    root().layer_of(module)
}

impl Arch {
    fn layer_of(&self, module: &[String]) -> Option<(&'static str, usize)> {
        let layers = self.layers;
        self.table
            .iter()
            .filter(|(prefix, _)| {
                let p: Vec<&str> = prefix.split("::").collect();
                p.len() <= module.len() && p.iter().zip(module).all(|(a, b)| a == b)
            })
            .max_by_key(|(prefix, _)| prefix.split("::").count())
            .map(|(_, layer)| (*layer, layers.iter().position(|l| l == layer).unwrap()))
    }
}

/// `src/a/b.rs` → `[a, b]`; `src/a.rs` → `[a]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text before a match ends a word: `crate::` is not part of `ws_crate::`
/// (nor `super::`, with `colon`, part of `super::super::`).
fn starts_path(before: &str, colon: bool) -> bool {
    before.chars().last().map_or(true, |c| {
        !(c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    })
}

fn ident_chars(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    s[..end].trim_end_matches(':')
}

/// Every module path the text names through `crate::` (groups such as
/// `crate::{a, b::c}` included) or `super::`, resolved from `module`.
fn referenced(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        // Comments may name anything.
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let before_ok = starts_path(&rest[..i], false);
            if before_ok {
                if let Some(group) = after.strip_prefix('{') {
                    let body = &group[..group.find('}').unwrap_or(group.len())];
                    for item in body.split(',') {
                        let item = ident_chars(item.trim());
                        if !item.is_empty() && item != "self" {
                            out.push(item.split("::").map(str::to_string).collect());
                        }
                    }
                } else {
                    let path = ident_chars(after);
                    if !path.is_empty() {
                        out.push(path.split("::").map(str::to_string).collect());
                    }
                }
            }
            rest = after;
        }
        let mut rest = code;
        while let Some(i) = rest.find("super::") {
            let before_ok = starts_path(&rest[..i], true);
            let mut after = &rest[i..];
            if before_ok {
                // A file's own module is `module`; each `super` climbs one.
                let mut base: Vec<String> = module.to_vec();
                let mut tests_inline = false;
                while let Some(a) = after.strip_prefix("super::") {
                    if base.pop().is_none() {
                        tests_inline = true;
                    }
                    after = a;
                }
                let path = ident_chars(after);
                // `use super::*` in an inline test module is the file itself.
                if !tests_inline && !path.is_empty() && path != "*" {
                    base.extend(path.split("::").map(str::to_string));
                    out.push(base);
                }
            } else {
                after = &rest[i + "super::".len()..];
            }
            rest = &after[after.len().min(1)..];
        }
    }
    out
}

#[test]
fn every_module_is_in_the_layer_table() {
    for arch in [root(), core()] {
        let mut files = Vec::new();
        rust_files(&arch.src, &mut files);
        let missing: Vec<_> = files
            .iter()
            .map(|f| module_of(&arch.src, f))
            .filter(|m| arch.layer_of(m).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "{}: modules without a layer: {missing:?}",
            arch.src.display()
        );
    }
}

#[test]
fn imports_only_point_down() {
    for arch in [root(), core()] {
        let mut files = Vec::new();
        rust_files(&arch.src, &mut files);
        files.sort();
        let mut up = Vec::new();
        for f in &files {
            let module = module_of(&arch.src, f);
            let (from, from_i) = arch.layer_of(&module).unwrap();
            let text = std::fs::read_to_string(f).unwrap();
            for target in referenced(&text, &module) {
                let Some((to, to_i)) = arch.layer_of(&target) else {
                    continue; // not a crate module (a type or function of the file itself)
                };
                if to_i > from_i {
                    up.push(format!(
                        "{}: {} ({from}) uses {} ({to})",
                        f.strip_prefix(&arch.src).unwrap().display(),
                        module.join("::"),
                        target.join("::")
                    ));
                }
            }
        }
        up.sort();
        up.dedup();
        assert!(
            up.is_empty(),
            "{}: imports that point up (allowed: {}):\n{}",
            arch.src.display(),
            arch.layers.join(" -> "),
            up.join("\n")
        );
    }
}

/// PID 1 stays small: the core links libc and std, nothing else.
#[test]
fn the_core_depends_on_libc_alone() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("core/Cargo.toml"))
            .unwrap();
    let deps: Vec<&str> = manifest
        .split("\n[")
        .find(|section| section.starts_with("dependencies]"))
        .expect("core/Cargo.toml has a [dependencies] section")
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split('=').next().map(str::trim))
        .collect();
    assert_eq!(deps, ["libc"], "core/Cargo.toml [dependencies]");
}

#[test]
fn the_check_sees_an_upward_import() {
    let probe = vec!["probe".to_string()];
    let refs = referenced(
        "use crate::{config, plan::make_plan};\nlet x = crate::bringup::apply; // crate::app\n",
        &probe,
    );
    let layers: Vec<_> = refs.iter().map(|r| layer_of(r).unwrap().0).collect();
    assert_eq!(layers, ["config", "plan", "apply"]);
    let sub = vec!["rootless".to_string(), "plan".to_string()];
    let refs = referenced("use super::probe::X; super::runtime_dir(1);", &sub);
    assert_eq!(
        refs,
        [
            vec!["rootless".to_string(), "probe".into(), "X".into()],
            vec!["rootless".to_string(), "runtime_dir".into()]
        ]
    );
    assert_eq!(
        layer_of(&refs[1]).unwrap().0,
        "app",
        "rootless.rs is wiring"
    );
}
