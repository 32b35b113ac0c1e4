//! The import graph of `src/` points down a layer table (ARCHITECTURE.md) and has no loops.
//!
//! Every `crate::`, `super::` and `self::` path of every file is an edge from the file's module
//! to the longest module its path names (read from the source text, comments and strings
//! stripped). Two graphs are checked for strongly connected components (Tarjan): the top-level
//! modules (`manifest` → `state` → `secret`, whichever of their files does the naming), where the
//! one allowed component is the command layer's `cli` ↔ `cmd` (cli.rs holds the clap tree whose
//! arguments live in the `cmd/` files, and `cmd::run` dispatches on it); and the files, where a
//! module and its own submodules may name each other (that is how Rust nests them) but no other
//! loop is allowed. So a loop of three modules fails as surely as a pair.
//! `scripts/layering` prints both graphs' components.
#![allow(clippy::disallowed_methods)] // tests drive podman, iptables and archy directly

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

/// Layers, top first: a module may name modules of its own layer or below (loops are caught by
/// the components), never above. The one exception is the by-design `cmd` → `cli` pair.
const LAYERS: &[(&str, &[&str])] = &[
    ("command line", &["cli"]),
    ("commands", &["cmd"]),
    (
        "engines",
        &[
            "reconcile",
            "status",
            "backup",
            "heal",
            "health",
            "update",
            "images",
            "render",
            "guard",
        ],
    ),
    ("context", &["ctx"]),
    (
        "decisions",
        &[
            "plan",
            "spec",
            "quadlet",
            "manifest",
            "metrics",
            "adopt",
            "rpc_users",
        ],
    ),
    (
        "effects",
        &[
            "podman", "exec", "fsutil", "lock", "secret", "state", "procinfo", "clock", "exit",
        ],
    ),
    ("shared", &["output", "logging"]),
];

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&top))
}

struct Graph {
    /// module → (module it names → first file that does); a module's edges to its own
    /// submodules and ancestors are left out.
    edges: BTreeMap<ModPath, BTreeMap<ModPath, String>>,
}

impl Graph {
    /// The same graph between top-level modules (the crate root, lib.rs and main.rs, left out:
    /// it names everything and nothing names it).
    fn top(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut top: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (a, targets) in &self.edges {
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
        top
    }

    fn files(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.edges
            .iter()
            .map(|(a, t)| {
                let t = t.iter().map(|(b, f)| (b.join("::"), f.clone())).collect();
                (a.join("::"), t)
            })
            .collect()
    }
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
                if !(me.starts_with(&target) || target.starts_with(&me)) {
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

/// Strongly connected components of more than one node (Tarjan), each sorted, in name order.
fn components(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flat_map(|t| t.keys()) {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w.as_str()]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w.as_str()) {
                    let low = self.low[v].min(self.index[w.as_str()]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

/// A component with the edges that close it, for the failure message.
fn explain(edges: &BTreeMap<String, BTreeMap<String, String>>, component: &[String]) -> String {
    let mut lines = vec![component.join(" ")];
    for a in component {
        for (b, file) in edges.get(a).into_iter().flatten() {
            if component.contains(b) {
                lines.push(format!("  {a} -> {b} ({file})"));
            }
        }
    }
    lines.join("\n")
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

/// Settings, not clap, below the command line: only cli.rs, cmd/ and the crate root see clap or
/// the `cli` module (as fd's walker never sees clap's `Opts`).
#[test]
fn clap_and_cli_stay_in_the_command_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let allowed = ["lib.rs", "cli.rs", "main.rs"];
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("cmd")))
        .filter(|f| !allowed.iter().any(|a| *f == &src.join(a)))
        .filter(|f| {
            let code = code_of(&std::fs::read_to_string(f).unwrap());
            code.contains("clap::") || code.contains("use clap") || code.contains("crate::cli")
        })
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "clap or cli below the command layer: {offenders:?}"
    );
}

#[test]
fn the_import_graph_has_no_loops() {
    let g = graph();
    let top = g.top();
    let allowed = vec!["cli".to_string(), "cmd".to_string()];
    let loops: Vec<String> = components(&top)
        .iter()
        .filter(|c| **c != allowed)
        .map(|c| explain(&top, c))
        .collect();
    assert!(
        loops.is_empty(),
        "top-level modules in a loop:\n{}",
        loops.join("\n")
    );
    // In the file graph the same pair shows as cli.rs with the cmd/ files that name it back
    // (`generate_docs` renders the clap tree, args use `cli::parse_duration`).
    let files = g.files();
    let command_layer = |m: &String| m == "cli" || m == "cmd" || m.starts_with("cmd::");
    let loops: Vec<String> = components(&files)
        .iter()
        .filter(|c| !c.iter().all(command_layer))
        .map(|c| explain(&files, c))
        .collect();
    assert!(loops.is_empty(), "modules in a loop:\n{}", loops.join("\n"));
}

#[test]
fn imports_point_down_the_layer_table() {
    let top = graph().top();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let unplaced: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(&src, f).first().cloned())
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from LAYERS: {unplaced:?}"
    );
    let mut upward = Vec::new();
    for (a, targets) in &top {
        for (b, file) in targets {
            let (la, lb) = (layer_of(a).unwrap(), layer_of(b).unwrap());
            if lb < la && !(a == "cmd" && b == "cli") {
                upward.push(format!(
                    "{a} ({}) -> {b} ({}) in {file}",
                    LAYERS[la].0, LAYERS[lb].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports pointing up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn a_loop_of_three_is_one_component() {
    let edge = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry(a.to_string())
                .or_default()
                .insert(b.to_string(), format!("{a}.rs"));
        }
        g
    };
    let three = edge(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "e")]);
    assert_eq!(components(&three), vec![vec!["a", "b", "c"]]);
    assert!(explain(&three, &components(&three)[0]).contains("c -> a (c.rs)"));
    assert!(components(&edge(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
}

/// What `scripts/layering` shows: every component of both graphs (`--nocapture`).
#[test]
fn print_import_components() {
    let g = graph();
    for (what, edges) in [("top-level modules", g.top()), ("modules", g.files())] {
        let found = components(&edges);
        println!(
            "{what}: {} strongly connected component(s) of more than one",
            found.len()
        );
        for c in &found {
            println!("{}", explain(&edges, c));
        }
    }
}

#[test]
fn the_scanner_sees_the_imports_it_must_see() {
    // Guards the checks above against a scanner that silently finds nothing.
    let g = graph();
    let has = |a: &[&str], b: &[&str]| {
        let a: ModPath = a.iter().map(std::string::ToString::to_string).collect();
        let b: ModPath = b.iter().map(std::string::ToString::to_string).collect();
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

/// ARCHITECTURE.md fits a screen (≤ 100 columns, ≤ 60 lines) and names every module: each
/// top-level module and each part of a file's path (`heal/engine.rs` as `engine` beside
/// `heal/`).
#[test]
fn architecture_names_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let wide: Vec<usize> = doc
        .lines()
        .enumerate()
        .filter(|(_, l)| l.chars().count() > 100)
        .map(|(i, _)| i + 1)
        .collect();
    assert!(
        wide.is_empty(),
        "ARCHITECTURE.md lines over 100 columns: {wide:?}"
    );
    assert!(
        doc.lines().count() <= 60,
        "ARCHITECTURE.md is longer than a screen"
    );
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let missing: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&src).unwrap().with_extension(""))
        .filter(|rel| {
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let top = &parts[0];
            let named_top = doc.contains(&format!("`{top}.rs`"))
                || doc.contains(&format!("`{top}/`"))
                || doc.contains(&format!("`{top}`"));
            let named_file = parts[1..].iter().all(|p| {
                p == "mod" || doc.contains(&format!("`{p}`")) || doc.contains(&format!("`{p}/`"))
            });
            !(named_top && named_file)
        })
        .map(|rel| rel.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "modules ARCHITECTURE.md does not name: {missing:?}"
    );
}
