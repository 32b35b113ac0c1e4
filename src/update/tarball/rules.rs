//! The rules a release must follow, judged from header records alone: one pure function,
//! [`check_entries`], for a tarball and an installed directory alike.

use std::collections::HashSet;

use super::{links, mode_text, normalize, EntryInfo, Kind, Rule, Violation, ROOT_MODE};

/// Find the root directory entry: `./` (or `.`) if present, otherwise the single top-level
/// directory every entry lives under.
fn find_root(entries: &[EntryInfo]) -> Option<usize> {
    if let Some(i) = entries.iter().position(|e| normalize(&e.path).is_empty()) {
        return Some(i);
    }
    let tops: HashSet<&str> = entries
        .iter()
        .map(|e| e.path.trim_start_matches("./"))
        .map(|p| {
            p.split('/')
                .find(|c| !c.is_empty() && *c != ".")
                .unwrap_or("")
        })
        .collect();
    if tops.len() != 1 {
        return None;
    }
    let top = tops.into_iter().next()?;
    entries
        .iter()
        .position(|e| e.kind == Kind::Dir && normalize(&e.path) == top)
}

/// Apply every rule to a list of entries; `required` paths (as stored, `./` optional) must be
/// present. Returns the violations in entry order, required-path misses last.
pub fn check_entries(entries: &[EntryInfo], required: &[String]) -> Vec<Violation> {
    let mut out = Vec::new();
    let root = find_root(entries);
    if root.is_none() {
        out.push(Violation::general(
            Rule::NoRoot,
            "(root)",
            "no root directory entry (expected `./` or one top-level directory); \
             unpacking would create it with whatever mode the umask gives",
        ));
    }
    // Extraction applies every entry for the root in turn, the last one wins: judge them all.
    let root_path = root.map(|i| normalize(&entries[i].path));
    for entry in entries {
        let norm = normalize(&entry.path);
        let is_root = root_path.as_deref() == Some(norm.as_str());
        if is_root && entry.kind != Kind::Dir {
            out.push(Violation::entry(
                Rule::RootNotDir,
                entry,
                "the release root must be a directory",
            ));
        } else if is_root && entry.mode & 0o7777 != ROOT_MODE {
            out.push(Violation::entry(
                Rule::RootMode,
                entry,
                format!(
                    "root directory must be {ROOT_MODE:04o} ({})",
                    mode_text(Kind::Dir, ROOT_MODE)
                ),
            ));
        }
        if entry.path.starts_with('/') {
            out.push(Violation::entry(Rule::AbsolutePath, entry, "absolute path"));
        }
        if norm.split('/').any(|c| c == "..") {
            out.push(Violation::entry(Rule::DotDot, entry, "path contains `..`"));
        }
        if entry.mode & 0o6000 != 0 {
            out.push(Violation::entry(
                Rule::SetuidSetgid,
                entry,
                "setuid/setgid bit set",
            ));
        }
        match entry.kind {
            // The root's own rule (exactly 0755) is stricter and already reported.
            Kind::Dir if !is_root && entry.mode & 0o005 != 0o005 => {
                out.push(Violation::entry(
                    Rule::DirNotWorldReadable,
                    entry,
                    "directory not readable and searchable by others (needs o+rx)",
                ));
            }
            Kind::File if entry.mode & 0o004 == 0 => {
                out.push(Violation::entry(
                    Rule::FileNotWorldReadable,
                    entry,
                    "file not readable by others (needs o+r)",
                ));
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo | Kind::Socket | Kind::Other => {
                out.push(Violation::entry(
                    Rule::SpecialFile,
                    entry,
                    format!("{:?} entries are not allowed", entry.kind).to_lowercase(),
                ));
            }
            _ => {}
        }
    }
    let boundary: Vec<String> = root_path
        .filter(|p| !p.is_empty())
        .map(|p| p.split('/').map(String::from).collect())
        .unwrap_or_default();
    out.extend(links::check(entries, &boundary));
    let present: HashSet<String> = entries.iter().map(|e| normalize(&e.path)).collect();
    for req in required {
        if !present.contains(&normalize(req)) {
            out.push(Violation::general(
                Rule::MissingRequired,
                req,
                "required path is missing",
            ));
        }
    }
    out
}
