//! The import graph of `src/` only points downward (ARCHITECTURE.md): nothing outside `src/cmd/`
//! (but `lib.rs`, `cli.rs`, `main.rs`) names `crate::cmd`, and no two modules import each
//! other: neither two top-level modules (`manifest` ↔ `plan`) nor two sibling modules
//! (`cmd::quadlet` ↔ `cmd::reconcile`). A module and its own submodules may refer to each
//! other (that is how Rust nests them). Read from the source text, comments stripped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a.rs` → [a], `src/a/mod.rs` → [a], `src/a/b.rs` → [a, b]; lib.rs/main.rs → [].
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without `//` comments (doc comments included) and string contents.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            if !in_str && ch == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if ch == '"' && prev != '\\' {
                in_str = !in_str;
                kept.push(ch);
            } else if !in_str {
                kept.push(ch);
            }
            prev = ch;
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

fn ident_path(s: &str) -> ModPath {
    s.split("::")
        .map(|p| p.trim().to_string())
        .take_while(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .collect()
}

/// Every path that starts with `crate::`, `super::` or `self::`, resolved to an absolute path
/// (`use crate::{a::b, c}` groups expanded one level).
fn references(code: &str, me: &ModPath) -> Vec<ModPath> {
    let mut refs = Vec::new();
    // The module a `super::` in this file refers to is the parent of the file's module.
    let parent: ModPath = me[..me.len().saturating_sub(1)].to_vec();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", parent),
        ("self::", me.clone()),
    ] {
        let mut rest = code;
        while let Some(pos) = rest.find(prefix) {
            let before = rest[..pos].chars().last();
            rest = &rest[pos + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let p = ident_path(item.trim_start_matches(['{', ' ', '\n']));
                    if !p.is_empty() {
                        refs.push(base.iter().cloned().chain(p).collect());
                    }
                }
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                let p = ident_path(&rest[..end]);
                if !p.is_empty() {
                    refs.push(base.iter().cloned().chain(p).collect());
                }
            }
        }
    }
    refs
}

/// A module and its submodules, and the command layer's two halves: `cli.rs` holds the clap tree
/// whose subcommand arguments live in the `cmd/` files (one file per subcommand), and `cmd`
/// dispatches on it. Together they are the top layer; nothing else may name either.
fn related(a: &ModPath, b: &ModPath) -> bool {
    let command_layer = |m: &ModPath| matches!(m.first().map(String::as_str), Some("cli" | "cmd"));
    a.starts_with(b) || b.starts_with(a) || (command_layer(a) && command_layer(b))
}

struct Graph {
    /// module → (module it names → first file that does)
    edges: BTreeMap<ModPath, BTreeMap<ModPath, String>>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<ModPath, BTreeMap<ModPath, String>> = BTreeMap::new();
    for file in &files {
        let me = module_of(&src, file);
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for r in references(&code, &me) {
            // The longest prefix of the path that is a module.
            let target = (1..=r.len())
                .rev()
                .map(|n| r[..n].to_vec())
                .find(|p| modules.contains(p));
            if let Some(target) = target {
                if !related(&me, &target) {
                    edges
                        .entry(me.clone())
                        .or_default()
                        .entry(target)
                        .or_insert_with(|| file.strip_prefix(&src).unwrap().display().to_string());
                }
            }
        }
    }
    Graph { edges }
}

#[test]
fn nothing_below_the_command_layer_names_crate_cmd() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let allowed = ["lib.rs", "cli.rs", "main.rs"];
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("cmd")))
        .filter(|f| !allowed.iter().any(|a| *f == &src.join(a)))
        .filter(|f| code_of(&std::fs::read_to_string(f).unwrap()).contains("crate::cmd"))
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "modules below src/cmd name crate::cmd: {offenders:?}"
    );
}

#[test]
fn no_two_modules_import_each_other() {
    let g = graph();
    let name = |m: &ModPath| m.join("::");
    let mut cycles = Vec::new();
    // Between files' modules (siblings such as cmd::quadlet and cmd::reconcile included) …
    for (a, targets) in &g.edges {
        for (b, file_a) in targets {
            if a < b {
                if let Some(file_b) = g.edges.get(b).and_then(|t| t.get(a)) {
                    cycles.push(format!("{} ({file_a}) <-> {} ({file_b})", name(a), name(b)));
                }
            }
        }
    }
    // … and between top-level modules, whichever of their files does the naming.
    let mut top: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (a, targets) in &g.edges {
        for (b, file) in targets {
            if let (Some(ta), Some(tb)) = (a.first(), b.first()) {
                if ta != tb {
                    top.entry(ta.clone())
                        .or_default()
                        .entry(tb.clone())
                        .or_insert_with(|| file.clone());
                }
            }
        }
    }
    for (a, targets) in &top {
        for (b, file_a) in targets {
            if a < b {
                if let Some(file_b) = top.get(b).and_then(|t| t.get(a)) {
                    cycles.push(format!("{a} ({file_a}) <-> {b} ({file_b})"));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules importing each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_scanner_sees_the_imports_it_must_see() {
    // Guards the checks above against a scanner that silently finds nothing.
    let g = graph();
    let has = |a: &[&str], b: &[&str]| {
        let a: ModPath = a.iter().map(|s| s.to_string()).collect();
        let b: ModPath = b.iter().map(|s| s.to_string()).collect();
        g.edges.get(&a).is_some_and(|t| t.contains_key(&b))
    };
    assert!(
        has(&["cmd", "reconcile"], &["reconcile"]),
        "{:?}",
        g.edges.keys().collect::<Vec<_>>()
    );
    assert!(has(&["plan"], &["manifest"]));
    assert!(has(&["heal", "system"], &["exec"]) || has(&["heal", "system"], &["podman"]));
    let refs = references(
        &code_of("use crate::{a::b, c};\nuse super::d::E;\n// crate::zz\nlet s = \"crate::yy\";"),
        &vec!["m".into(), "n".into()],
    );
    assert_eq!(
        refs,
        vec![
            vec!["a".to_string(), "b".into()],
            vec!["c".into()],
            vec!["m".into(), "d".into(), "E".into()],
        ]
    );
}
