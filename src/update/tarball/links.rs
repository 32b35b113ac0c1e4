//! Where links point after extraction: the entries are replayed in order into a model of the
//! extracted tree, each entry's parent path resolved through the symlinks extracted before it
//! (as `tar` resolves it when it creates the entry), and every symlink left at the end resolved
//! through the final tree (as nginx resolves it later), component by component like the kernel
//! does. Any step above the release root is an escape. Purely a model: nothing is unpacked.

use std::collections::{HashMap, VecDeque};

use super::{normalize, EntryInfo, Kind, Rule, Violation};

/// Symlinks the kernel follows in one lookup before giving up with ELOOP (Linux MAXSYMLINKS).
const MAX_LINK_HOPS: usize = 40;

/// One path in the model tree (components from the extraction directory).
type Loc = Vec<String>;

#[derive(Debug, Clone)]
enum Node {
    Dir,
    /// A file (or anything that is neither a directory nor a symlink).
    Other,
    /// A symlink with its target as stored, and the entry that made it (for the report).
    Link {
        target: String,
        entry: usize,
    },
}

/// Why a lookup failed.
enum Fail {
    /// A step went above the release root.
    Leaves,
    /// A symlink on the way is absolute.
    Absolute(String),
    /// More than [`MAX_LINK_HOPS`] symlinks.
    Loop,
}

struct Model<'a> {
    boundary: &'a [String],
    nodes: HashMap<Loc, Node>,
}

impl Model<'_> {
    /// Resolve `rest` starting at `at` (inside the root), following symlinks of the model
    /// (the last component only when `follow_last`).
    fn walk(&self, mut at: Loc, rest: &[String], follow_last: bool) -> Result<Loc, Fail> {
        let mut todo: VecDeque<String> = rest.iter().cloned().collect();
        let mut hops = 0;
        while let Some(component) = todo.pop_front() {
            match component.as_str() {
                "" | "." => {}
                ".." => {
                    if at.len() <= self.boundary.len() {
                        return Err(Fail::Leaves);
                    }
                    at.pop();
                }
                name => {
                    at.push(name.to_string());
                    if todo.is_empty() && !follow_last {
                        continue;
                    }
                    if let Some(Node::Link { target, .. }) = self.nodes.get(&at) {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return Err(Fail::Loop);
                        }
                        if target.starts_with('/') {
                            return Err(Fail::Absolute(target.clone()));
                        }
                        at.pop();
                        for part in target.split('/').rev() {
                            todo.push_front(part.to_string());
                        }
                    }
                }
            }
        }
        Ok(at)
    }

    /// The components of a stored path below the root, or None when it is not under it.
    fn below_root(&self, stored: &str) -> Option<Vec<String>> {
        let norm = normalize(stored);
        let parts: Vec<String> = norm
            .split('/')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        parts
            .starts_with(self.boundary)
            .then(|| parts[self.boundary.len()..].to_vec())
    }
}

fn fail_message(fail: &Fail, what: &str) -> (Rule, String) {
    match fail {
        Fail::Leaves => (
            Rule::LinkEscapes,
            format!("{what} leaves the release root when resolved through the archive's own links"),
        ),
        Fail::Absolute(target) => (
            Rule::LinkEscapes,
            format!("{what} goes through an absolute symlink ({target:?}) out of the release root"),
        ),
        Fail::Loop => (
            Rule::LinkLoop,
            format!("{what} does not resolve: more than {MAX_LINK_HOPS} symlinks in a chain"),
        ),
    }
}

/// Violations of the link and implied-directory rules. `boundary` is the root directory's
/// path (empty for `./`).
pub(super) fn check(entries: &[EntryInfo], boundary: &[String]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut model = Model {
        boundary,
        nodes: HashMap::new(),
    };
    model.nodes.insert(boundary.to_vec(), Node::Dir);
    // Locations in the order entries created them, for the implied-directory pass.
    let mut placed: Vec<(Loc, usize)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        // Absolute and `..` entry paths are reported by their own rules.
        if entry.path.starts_with('/') {
            continue;
        }
        let Some(rel) = model.below_root(&entry.path) else {
            continue;
        };
        if rel.iter().any(|c| c == "..") {
            continue;
        }
        // The root's own entries are judged by the root rules.
        let Some((name, parents)) = rel.split_last() else {
            continue;
        };
        let parent = match model.walk(boundary.to_vec(), parents, true) {
            Ok(parent) => parent,
            Err(fail) => {
                let (rule, message) = fail_message(&fail, "its parent directory");
                out.push(Violation::entry(rule, entry, message));
                continue;
            }
        };
        let mut loc = parent;
        loc.push(name.clone());
        let node = match entry.kind {
            Kind::Dir => Node::Dir,
            Kind::Symlink => Node::Link {
                target: entry.link.clone().unwrap_or_default(),
                entry: i,
            },
            Kind::Hardlink => {
                let target = entry.link.as_deref().unwrap_or("");
                match hardlink_node(&model, target, i) {
                    Ok(node) => node,
                    Err((rule, message)) => {
                        out.push(Violation::entry(rule, entry, message));
                        continue;
                    }
                }
            }
            _ => Node::Other,
        };
        model.nodes.insert(loc.clone(), node);
        placed.push((loc, i));
    }
    // Every symlink left at the end, resolved through the final tree.
    let mut final_links: Vec<(&Loc, &String, usize)> = model
        .nodes
        .iter()
        .filter_map(|(loc, node)| match node {
            Node::Link { target, entry } => Some((loc, target, *entry)),
            _ => None,
        })
        .collect();
    final_links.sort_by_key(|(_, _, entry)| *entry);
    for (loc, target, i) in final_links {
        let parent = loc[..loc.len() - 1].to_vec();
        let parts: Vec<String> = target.split('/').map(String::from).collect();
        let result = if target.starts_with('/') {
            Err(Fail::Absolute(target.clone()))
        } else {
            model.walk(parent, &parts, true)
        };
        if let Err(fail) = result {
            let kind = match entries[i].kind {
                Kind::Hardlink => "hardlink to a symlink",
                _ => "symlink",
            };
            let (rule, message) = fail_message(&fail, &format!("{kind} to {target:?}"));
            out.push(Violation::entry(rule, &entries[i], message));
        }
    }
    // Directories entries live in that have no entry of their own.
    let mut reported = std::collections::HashSet::new();
    for (loc, i) in &placed {
        for end in boundary.len() + 1..loc.len() {
            let dir = &loc[..end];
            if !model.nodes.contains_key(dir) && reported.insert(dir.to_vec()) {
                out.push(Violation::general(
                    Rule::ImpliedDir,
                    &format!("{}/", dir.join("/")),
                    format!(
                        "directory has no entry of its own (needed by {}); extraction would \
                         create it with the umask's mode (0700 under umask 077), so it must \
                         be in the archive as 0755",
                        entries[*i].path
                    ),
                ));
            }
        }
    }
    out
}

/// What a hardlink entry becomes: a copy of the node it names (a hardlink to a symlink is
/// a second symlink with the same target, judged where the hardlink lies).
fn hardlink_node(model: &Model, target: &str, entry: usize) -> Result<Node, (Rule, String)> {
    let escapes = || {
        (
            Rule::LinkEscapes,
            format!("hardlink to {target:?} escapes the root"),
        )
    };
    if target.starts_with('/') {
        return Err(escapes());
    }
    let rel = model.below_root(target).ok_or_else(escapes)?;
    let loc = model
        .walk(model.boundary.to_vec(), &rel, false)
        .map_err(|fail| fail_message(&fail, &format!("hardlink to {target:?}")))?;
    match model.nodes.get(&loc) {
        None => Err((
            Rule::HardlinkTarget,
            format!("hardlink to {target:?}, which no earlier entry of the archive created"),
        )),
        Some(Node::Dir) => Err((
            Rule::HardlinkTarget,
            format!("hardlink to the directory {target:?}"),
        )),
        Some(Node::Other) => Ok(Node::Other),
        Some(Node::Link { target, .. }) => Ok(Node::Link {
            target: target.clone(),
            entry,
        }),
    }
}
