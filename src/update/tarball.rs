//! Static checks on a release, as a tar.gz (before it ships or is installed) or as an
//! installed release directory (before rolling back to it).
//!
//! Only headers are read: entry contents are never unpacked or read (a header claiming a 10 GB
//! sparse file costs nothing), except that `--sha256` streams the raw file through SHA-256.
//! The rules live in [`check_entries`], a pure function over [`EntryInfo`] records, so a tarball
//! and a directory are judged by exactly the same code.
//!
//! The incident behind these rules: releases v1.7.38 and v1.7.39 shipped a web-ui tarball whose
//! root directory was `drwx------`; nginx (another user) then answered 500 on every page.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Exact mode the root directory must have (`drwxr-xr-x`).
pub const ROOT_MODE: u32 = 0o755;

/// Most entries a directory scan visits before giving up (a release is a few thousand files).
const MAX_DIR_ENTRIES: usize = 1_000_000;

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Other,
}

impl Kind {
    /// The `ls -l` type letter.
    fn letter(self) -> char {
        match self {
            Kind::Dir => 'd',
            Kind::File | Kind::Hardlink | Kind::Other => '-',
            Kind::Symlink => 'l',
            Kind::CharDevice => 'c',
            Kind::BlockDevice => 'b',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
        }
    }
}

/// One entry as the checks see it: path as stored (tar) or relative to the root (directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub path: String,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Symlink or hardlink target as stored.
    pub link: Option<String>,
    /// Declared size in bytes (for a sparse file, its logical size).
    pub size: u64,
}

/// Which rule an entry broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    RootMode,
    NoRoot,
    DirNotWorldReadable,
    FileNotWorldReadable,
    AbsolutePath,
    DotDot,
    SpecialFile,
    SetuidSetgid,
    LinkEscapes,
    /// A symlink chain longer than the kernel follows (40 links): never resolves.
    LinkLoop,
    /// A hardlink to a path no earlier entry created (extraction would link to whatever is on
    /// disk there, or fail), or to a directory.
    HardlinkTarget,
    /// A directory that entries live in but that has no entry of its own: extraction creates
    /// it with the umask's mode (0700 under umask 077, the incident again).
    ImpliedDir,
    /// The root directory replaced by a non-directory entry.
    RootNotDir,
    MissingRequired,
    DigestMismatch,
}

/// One broken rule, with the entry's path and mode.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub rule: Rule,
    pub path: String,
    /// Octal permission bits, e.g. `0700`; `None` when the violation is not about one entry.
    pub mode: Option<String>,
    /// `ls -l` form, e.g. `drwx------`.
    pub mode_text: Option<String>,
    pub message: String,
}

impl Violation {
    fn entry(rule: Rule, entry: &EntryInfo, message: impl Into<String>) -> Self {
        Violation {
            rule,
            path: entry.path.clone(),
            mode: Some(format!("{:04o}", entry.mode)),
            mode_text: Some(mode_text(entry.kind, entry.mode)),
            message: message.into(),
        }
    }

    fn general(rule: Rule, path: &str, message: impl Into<String>) -> Self {
        Violation {
            rule,
            path: path.to_string(),
            mode: None,
            mode_text: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.mode, &self.mode_text) {
            (Some(mode), Some(text)) => {
                write!(f, "{}  {mode} ({text})  {}", self.path, self.message)
            }
            _ => write!(f, "{}  {}", self.path, self.message),
        }
    }
}

/// `ls -l` rendering of type and permission bits, with s/S and t/T for the special bits.
pub fn mode_text(kind: Kind, mode: u32) -> String {
    crate::fsutil::mode_string(kind.letter(), mode)
}

/// The path without leading `./` and trailing `/` (`.` and `./` become the empty root path).
fn normalize(path: &str) -> String {
    let mut rest = path;
    loop {
        if let Some(stripped) = rest.strip_prefix("./") {
            rest = stripped;
        } else if rest == "." {
            rest = "";
        } else {
            break;
        }
    }
    let parts: Vec<&str> = rest
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut joined = parts.join("/");
    if path.starts_with('/') {
        joined.insert(0, '/');
    }
    joined
}

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

/// The input could not be read as a tar.gz at all (exit 2, not a violation).
#[derive(Debug)]
pub struct Unreadable(pub String);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Unreadable {}

fn unreadable(path: &Path, what: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Unreadable(format!(
        "cannot read {} as a tar.gz: {what}",
        path.display()
    )))
}

/// Bytes of zeros after the end-of-archive marker accepted as padding (GNU tar pads to its
/// 10 KiB record; anything past this is not padding).
const MAX_TRAILING_ZEROS: u64 = 1024 * 1024;

/// Read every header of a tar.gz (never the contents). Errors are [`Unreadable`].
///
/// Every gzip member is read (`tar` and `gunzip` read them all, so a second member appended to
/// a clean one is part of the release), the archive must end with its end-of-archive marker
/// (two zero blocks, then only zero padding), and pax global headers (`git archive` writes one)
/// are metadata, not entries.
pub fn read_tarball(path: &Path) -> Result<Vec<EntryInfo>> {
    let mut file = File::open(path).map_err(|e| unreadable(path, e))?;
    let mut magic = [0u8; 2];
    file.read_exact(&mut magic)
        .map_err(|_| unreadable(path, "file is too short to be gzip"))?;
    if magic != [0x1f, 0x8b] {
        return Err(unreadable(path, "not a gzip file"));
    }
    let file = File::open(path).map_err(|e| unreadable(path, e))?;
    let gz = flate2::read::MultiGzDecoder::new(BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let mut out = Vec::new();
    for entry in archive.entries().map_err(|e| unreadable(path, e))? {
        let entry = entry.map_err(|e| unreadable(path, e))?;
        let header = entry.header();
        let kind = match header.entry_type() {
            // Metadata for the whole archive (git archive's commit id), not a file to extract.
            tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                Kind::File
            }
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::Hardlink,
            tar::EntryType::Char => Kind::CharDevice,
            tar::EntryType::Block => Kind::BlockDevice,
            tar::EntryType::Fifo => Kind::Fifo,
            _ => Kind::Other,
        };
        let entry_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mode = header
            .mode()
            .map_err(|e| unreadable(path, format!("bad mode on {entry_path}: {e}")))?;
        out.push(EntryInfo {
            link: entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned()),
            path: entry_path,
            kind,
            mode: mode & 0o7777,
            size: entry.size(),
        });
    }
    // The entry iterator stops at the first zero block, or at the end of the stream: only the
    // first is a complete archive. What follows must be the second zero block and padding.
    check_end_marker(archive.into_inner()).map_err(|what| unreadable(path, what))?;
    if out.is_empty() {
        return Err(unreadable(path, "the archive has no entries"));
    }
    Ok(out)
}

/// After the entries: at least one more zero block (the marker is two), then only zeros.
fn check_end_marker(mut rest: impl Read) -> Result<(), String> {
    let mut seen: u64 = 0;
    let mut buf = [0u8; 8192];
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("after the last entry: {e}")),
        };
        if let Some(at) = buf[..n].iter().position(|b| *b != 0) {
            return Err(format!(
                "data after the end-of-archive marker ({} bytes past it); a second archive \
                 appended to the first is not accepted",
                seen + at as u64
            ));
        }
        seen += n as u64;
        if seen > MAX_TRAILING_ZEROS {
            return Err(format!(
                "more than {MAX_TRAILING_ZEROS} bytes after the end-of-archive marker"
            ));
        }
    }
    if seen < 512 {
        return Err(
            "no end-of-archive marker (two zero blocks): the archive is truncated or incomplete"
                .into(),
        );
    }
    Ok(())
}

/// SHA-256 of a file as lowercase hex, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("failed to read {}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Compare a digest given on the command line with the actual one (pure).
pub fn check_digest(expected: &str, actual: &str, file: &str) -> Option<Violation> {
    if expected.trim().eq_ignore_ascii_case(actual) {
        None
    } else {
        Some(Violation::general(
            Rule::DigestMismatch,
            file,
            format!("sha256 is {actual}, expected {}", expected.trim()),
        ))
    }
}

/// Whether a `--sha256` value is 64 hex digits.
pub fn valid_sha256(text: &str) -> bool {
    let text = text.trim();
    text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// Describe an installed release directory as entries (root = `.`), without following
/// symlinks, so [`check_entries`] can judge it like a tarball.
pub fn scan_dir(root: &Path) -> Result<Vec<EntryInfo>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir_path, rel)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&dir_path)
            .with_context(|| format!("failed to inspect {}", dir_path.display()))?;
        out.push(entry_from_meta(
            if rel.is_empty() { "." } else { &rel },
            &dir_path,
            &meta,
        )?);
        if !meta.is_dir() {
            continue;
        }
        let mut children: Vec<_> = std::fs::read_dir(&dir_path)
            .with_context(|| format!("failed to list {}", dir_path.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("failed to list {}", dir_path.display()))?;
        children.sort_by_key(|c| std::cmp::Reverse(c.file_name()));
        for child in children {
            if out.len() + stack.len() > MAX_DIR_ENTRIES {
                anyhow::bail!(
                    "{} has more than {MAX_DIR_ENTRIES} entries; refusing to scan it",
                    root.display()
                );
            }
            let name = child.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            stack.push((child.path(), child_rel));
        }
    }
    Ok(out)
}

fn entry_from_meta(rel: &str, path: &Path, meta: &std::fs::Metadata) -> Result<EntryInfo> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else if ft.is_block_device() {
        Kind::BlockDevice
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        Kind::Other
    };
    let link = if kind == Kind::Symlink {
        let target = std::fs::read_link(path)
            .with_context(|| format!("failed to read symlink {}", path.display()))?;
        Some(target.to_string_lossy().into_owned())
    } else {
        None
    };
    Ok(EntryInfo {
        path: rel.to_string(),
        kind,
        mode: meta.mode() & 0o7777,
        link,
        size: meta.size(),
    })
}

/// Where links point after extraction: the entries are replayed in order into a model of the
/// extracted tree, each entry's parent path resolved through the symlinks extracted before it
/// (as `tar` resolves it when it creates the entry), and every symlink left at the end resolved
/// through the final tree (as nginx resolves it later), component by component like the kernel
/// does. Any step above the release root is an escape. Purely a model: nothing is unpacked.
mod links {
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
                format!(
                    "{what} leaves the release root when resolved through the archive's own links"
                ),
            ),
            Fail::Absolute(target) => (
                Rule::LinkEscapes,
                format!(
                    "{what} goes through an absolute symlink ({target:?}) out of the release root"
                ),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Builds a tar.gz in memory with the `tar` crate, one header at a time.
    struct Tb {
        builder: tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
    }

    impl Tb {
        fn new() -> Self {
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            Tb {
                builder: tar::Builder::new(gz),
            }
        }

        /// A clean release: `./` 0755, a directory, files, an internal symlink.
        fn clean() -> Self {
            Tb::new()
                .dir("./", 0o755)
                .dir("./web-ui/", 0o755)
                .file("./web-ui/index.html", 0o644)
                .dir("./bin/", 0o755)
                .file("./bin/archipelago", 0o755)
                .symlink("./web-ui/latest.html", "index.html")
        }

        fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(size);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h
        }

        fn dir(mut self, path: &str, mode: u32) -> Self {
            let mut h = Self::header(tar::EntryType::Directory, mode, 0);
            self.builder
                .append_data(&mut h, path, std::io::empty())
                .unwrap();
            self
        }

        fn file(mut self, path: &str, mode: u32) -> Self {
            let data = b"hello\n";
            let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
            self.builder.append_data(&mut h, path, &data[..]).unwrap();
            self
        }

        fn special(mut self, path: &str, kind: tar::EntryType) -> Self {
            let mut h = Self::header(kind, 0o644, 0);
            self.builder
                .append_data(&mut h, path, std::io::empty())
                .unwrap();
            self
        }

        fn symlink(self, path: &str, target: &str) -> Self {
            self.link(tar::EntryType::Symlink, path, target)
        }

        fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
            let mut h = Self::header(kind, 0o777, 0);
            self.builder.append_link(&mut h, path, target).unwrap();
            self
        }

        /// Writes the path bytes straight into the header, bypassing the `tar` crate's
        /// refusal of absolute and `..` paths (a malicious tarball would not ask).
        fn raw_path_file(mut self, path: &str) -> Self {
            let data = b"x";
            let mut h = Self::header(tar::EntryType::Regular, 0o644, 1);
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            self.builder.append(&h, &data[..]).unwrap();
            self
        }

        /// A GNU sparse file whose header claims `logical` bytes but stores one 512-byte block.
        fn sparse(mut self, path: &str, logical: u64) -> Self {
            let mut h = Self::header(tar::EntryType::GNUSparse, 0o644, 512);
            {
                let gnu = h.as_gnu_mut().unwrap();
                gnu.sparse[0].set_offset(logical - 512);
                gnu.sparse[0].set_length(512);
                gnu.set_real_size(logical);
            }
            h.set_path(path).unwrap();
            h.set_cksum();
            self.builder.append(&h, &[7u8; 512][..]).unwrap();
            self
        }

        fn write(self, dir: &Path) -> std::path::PathBuf {
            let bytes = self.builder.into_inner().unwrap().finish().unwrap();
            let path = dir.join("release.tar.gz");
            std::fs::write(&path, bytes).unwrap();
            path
        }
    }

    fn check(tb: Tb) -> Vec<Violation> {
        check_req(tb, &[])
    }

    fn check_req(tb: Tb, required: &[&str]) -> Vec<Violation> {
        let dir = tempfile::tempdir().unwrap();
        let path = tb.write(dir.path());
        let entries = read_tarball(&path).unwrap();
        let required: Vec<String> = required.iter().map(|s| s.to_string()).collect();
        check_entries(&entries, &required)
    }

    fn rules(violations: &[Violation]) -> Vec<(Rule, String)> {
        violations
            .iter()
            .map(|v| (v.rule, v.path.clone()))
            .collect()
    }

    #[test]
    fn clean_tarball_passes() {
        assert_eq!(check(Tb::clean()), vec![]);
        assert_eq!(
            check_req(Tb::clean(), &["bin/archipelago", "./web-ui"]),
            vec![]
        );
    }

    #[test]
    fn incident_root_drwx_only_owner_is_reported_with_path_and_both_mode_forms() {
        let tb = Tb::new()
            .dir("./", 0o700)
            .dir("./web-ui/", 0o755)
            .file("./web-ui/index.html", 0o644);
        let v = check(tb);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].rule, Rule::RootMode);
        assert_eq!(v[0].path, "./");
        assert_eq!(v[0].mode.as_deref(), Some("0700"));
        assert_eq!(v[0].mode_text.as_deref(), Some("drwx------"));
        assert_eq!(
            v[0].to_string(),
            "./  0700 (drwx------)  root directory must be 0755 (drwxr-xr-x)"
        );
    }

    #[test]
    fn single_top_level_directory_is_the_root() {
        let tb = Tb::new()
            .dir("web-ui/", 0o700)
            .file("web-ui/index.html", 0o644);
        assert_eq!(rules(&check(tb)), [(Rule::RootMode, "web-ui/".into())]);
        let ok = Tb::new()
            .dir("web-ui/", 0o755)
            .file("web-ui/index.html", 0o644);
        assert_eq!(check(ok), vec![]);
    }

    #[test]
    fn root_must_be_exactly_0755() {
        let tb = Tb::new().dir("./", 0o775).file("./a", 0o644);
        assert_eq!(rules(&check(tb)), [(Rule::RootMode, "./".into())]);
    }

    #[test]
    fn missing_root_entry_is_reported() {
        let tb = Tb::new().file("a", 0o644).file("b", 0o644);
        assert_eq!(rules(&check(tb)), [(Rule::NoRoot, "(root)".into())]);
    }

    #[test]
    fn subdirectory_without_o_rx_is_reported() {
        let tb = Tb::clean().dir("./private/", 0o750).dir("./noexec/", 0o754);
        assert_eq!(
            rules(&check(tb)),
            [
                (Rule::DirNotWorldReadable, "private/".into()),
                (Rule::DirNotWorldReadable, "noexec/".into())
            ]
        );
    }

    #[test]
    fn file_without_o_r_is_reported() {
        // (The `tar` crate stores `./web-ui/x` as `web-ui/x`; paths are reported as stored.)
        let v = check(Tb::clean().file("./web-ui/secret.js", 0o640));
        assert_eq!(
            rules(&v),
            [(Rule::FileNotWorldReadable, "web-ui/secret.js".into())]
        );
        assert_eq!(v[0].mode_text.as_deref(), Some("-rw-r-----"));
    }

    #[test]
    fn absolute_path_is_reported() {
        let tb = Tb::clean().raw_path_file("/etc/passwd");
        assert_eq!(
            rules(&check(tb)),
            [(Rule::AbsolutePath, "/etc/passwd".into())]
        );
    }

    #[test]
    fn dotdot_path_is_reported() {
        let tb = Tb::clean().raw_path_file("./web-ui/../../evil");
        assert_eq!(
            rules(&check(tb)),
            [(Rule::DotDot, "./web-ui/../../evil".into())]
        );
    }

    #[test]
    fn device_nodes_and_fifos_are_reported() {
        let tb = Tb::clean()
            .special("./dev-null", tar::EntryType::Char)
            .special("./disk", tar::EntryType::Block)
            .special("./pipe", tar::EntryType::Fifo);
        assert_eq!(
            rules(&check(tb)),
            [
                (Rule::SpecialFile, "dev-null".into()),
                (Rule::SpecialFile, "disk".into()),
                (Rule::SpecialFile, "pipe".into())
            ]
        );
    }

    #[test]
    fn setuid_and_setgid_are_reported() {
        let v = check(Tb::clean().file("./bin/su", 0o4755).dir("./g/", 0o2755));
        assert_eq!(
            rules(&v),
            [
                (Rule::SetuidSetgid, "bin/su".into()),
                (Rule::SetuidSetgid, "g/".into())
            ]
        );
        assert_eq!(v[0].mode.as_deref(), Some("4755"));
        assert_eq!(v[0].mode_text.as_deref(), Some("-rwsr-xr-x"));
        assert_eq!(v[1].mode_text.as_deref(), Some("drwxr-sr-x"));
    }

    #[test]
    fn escaping_symlinks_are_reported_and_internal_ones_are_not() {
        let tb = Tb::clean()
            .symlink("./web-ui/up", "../bin/archipelago")
            .symlink("./web-ui/out", "../../etc/shadow")
            .symlink("./abs", "/etc/shadow");
        assert_eq!(
            rules(&check(tb)),
            [
                (Rule::LinkEscapes, "web-ui/out".into()),
                (Rule::LinkEscapes, "abs".into())
            ]
        );
    }

    #[test]
    fn escaping_hardlink_is_reported() {
        let tb = Tb::clean()
            .link(tar::EntryType::Link, "./ok", "./web-ui/index.html")
            .link(tar::EntryType::Link, "./bad", "../../etc/shadow");
        assert_eq!(rules(&check(tb)), [(Rule::LinkEscapes, "bad".into())]);
    }

    #[test]
    fn missing_required_path_is_reported() {
        let v = check_req(Tb::clean(), &["web-ui/index.html", "web-ui/app.js"]);
        assert_eq!(rules(&v), [(Rule::MissingRequired, "web-ui/app.js".into())]);
    }

    #[test]
    fn digest_is_compared_case_insensitively() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let actual = sha256_file(&path).unwrap();
        assert_eq!(
            actual,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(check_digest(&actual.to_uppercase(), &actual, "f").is_none());
        let v = check_digest(&"0".repeat(64), &actual, "f").unwrap();
        assert_eq!(v.rule, Rule::DigestMismatch);
        assert!(valid_sha256(&actual));
        assert!(!valid_sha256("abc"));
    }

    #[test]
    fn huge_sparse_entry_is_checked_from_headers_only() {
        let ten_gb = 10 * 1024 * 1024 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let path = Tb::clean().sparse("./huge.img", ten_gb).write(dir.path());
        assert!(std::fs::metadata(&path).unwrap().len() < 64 * 1024);
        let started = std::time::Instant::now();
        let entries = read_tarball(&path).unwrap();
        let took = started.elapsed();
        let huge = entries.iter().find(|e| e.path == "huge.img").unwrap();
        assert_eq!(huge.size, ten_gb);
        assert_eq!(check_entries(&entries, &[]), vec![]);
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
        eprintln!("10 GB sparse entry checked in {took:?}");
    }

    #[test]
    fn unreadable_inputs_are_unreadable_errors() {
        let dir = tempfile::tempdir().unwrap();
        let not_gzip = dir.path().join("plain.tar");
        std::fs::write(&not_gzip, b"this is not gzip at all").unwrap();
        let missing = dir.path().join("missing.tar.gz");
        let garbage = dir.path().join("garbage.tar.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[0xAB; 1024]).unwrap();
        std::fs::write(&garbage, gz.finish().unwrap()).unwrap();
        for path in [&not_gzip, &missing, &garbage] {
            let err = read_tarball(path).unwrap_err();
            assert!(err.downcast_ref::<Unreadable>().is_some(), "{err:#}");
        }
    }

    #[test]
    fn directory_scan_applies_the_same_rules() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("1.0.0");
        std::fs::create_dir_all(root.join("web-ui")).unwrap();
        std::fs::write(root.join("web-ui/index.html"), "hi").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("web-ui/pw")).unwrap();
        let set = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        set(&root, 0o700).unwrap();
        set(&root.join("web-ui"), 0o755).unwrap();
        set(&root.join("web-ui/index.html"), 0o600).unwrap();
        let v = check_entries(&scan_dir(&root).unwrap(), &[]);
        assert_eq!(
            rules(&v),
            [
                (Rule::RootMode, ".".into()),
                (Rule::FileNotWorldReadable, "web-ui/index.html".into()),
                (Rule::LinkEscapes, "web-ui/pw".into()),
            ]
        );
        std::fs::remove_file(root.join("web-ui/pw")).unwrap();
        set(&root, 0o755).unwrap();
        set(&root.join("web-ui/index.html"), 0o644).unwrap();
        assert_eq!(check_entries(&scan_dir(&root).unwrap(), &[]), vec![]);
    }

    #[test]
    fn symlink_chain_through_links_of_the_archive_itself_escapes() {
        // Issue 14 case 1: each link is harmless as text (`l0/..` stays in the root), but
        // resolved through `l0 -> .` as extraction does, `l1` already is the root's parent.
        let mut tb = Tb::clean().symlink("./l0", ".");
        for n in 1..=12 {
            tb = tb.symlink(&format!("./l{n}"), &format!("l{}/..", n - 1));
        }
        let tb = tb.symlink("./pw", "l12/etc/passwd");
        let v = check(tb);
        let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&"l1") && paths.contains(&"pw"), "{v:?}");
        assert!(!paths.contains(&"l0"), "{v:?}");
        assert!(v.iter().all(|v| v.rule == Rule::LinkEscapes), "{v:?}");
        let pw = v.iter().find(|v| v.path == "pw").unwrap();
        assert!(pw.message.contains("leaves the release root"), "{pw}");
    }

    #[test]
    fn entries_written_through_an_archive_symlink_are_resolved_too() {
        // `up -> ..` escapes; a file extracted through `sub/x -> ..` (fine on its own) to
        // `sub/x/../..` would land outside as well.
        let v = check(
            Tb::clean()
                .dir("./sub/", 0o755)
                .symlink("./sub/x", "..")
                .symlink("./sub/x2", "x/.."),
        );
        assert_eq!(rules(&v), [(Rule::LinkEscapes, "sub/x2".into())]);
    }

    #[test]
    fn hardlink_to_an_inner_symlink_is_judged_where_the_hardlink_lies() {
        let v = check(
            Tb::clean()
                .dir("./a/", 0o755)
                .dir("./a/b/", 0o755)
                .symlink("./a/b/up", "../../web-ui/index.html")
                .link(tar::EntryType::Link, "./hl", "a/b/up")
                .link(tar::EntryType::Link, "./ghost", "not/in/archive"),
        );
        assert_eq!(
            rules(&v),
            [
                (Rule::HardlinkTarget, "ghost".into()),
                (Rule::LinkEscapes, "hl".into())
            ]
        );
    }

    #[test]
    fn symlink_loops_are_reported() {
        let v = check(Tb::clean().symlink("./a", "b").symlink("./b", "a"));
        assert_eq!(
            rules(&v),
            [(Rule::LinkLoop, "a".into()), (Rule::LinkLoop, "b".into())]
        );
    }

    #[test]
    fn top_level_directory_root_is_the_boundary() {
        // With `web-ui/` as the root, `..` from it reaches the extraction directory: outside.
        let v = check(
            Tb::new()
                .dir("web-ui/", 0o755)
                .file("web-ui/index.html", 0o644)
                .symlink("web-ui/ok", "./index.html")
                .symlink("web-ui/sibling", "../other-release/x"),
        );
        assert_eq!(rules(&v), [(Rule::LinkEscapes, "web-ui/sibling".into())]);
    }

    #[test]
    fn implied_directories_without_entries_are_reported() {
        // Issue 14 case 3: `a/` and `a/b/` would be created with the umask's mode.
        let v = check(
            Tb::new()
                .dir("web-ui/", 0o755)
                .file("web-ui/a/b/c.html", 0o644),
        );
        assert_eq!(
            rules(&v),
            [
                (Rule::ImpliedDir, "web-ui/a/".into()),
                (Rule::ImpliedDir, "web-ui/a/b/".into())
            ]
        );
        assert!(v[0].message.contains("umask"), "{}", v[0]);
    }

    #[test]
    fn concatenated_gzip_members_are_all_read() {
        // Issue 14 case 2: a clean first member without its end marker, then a second member
        // carrying the bad entries and the marker.
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = Tb::header(tar::EntryType::Directory, 0o755, 0);
            b.append_data(&mut h, "./", std::io::empty()).unwrap();
            let mut bytes = b.into_inner().unwrap();
            bytes.truncate(bytes.len() - 1024); // drop the end-of-archive marker
            bytes
        };
        let second = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = Tb::header(tar::EntryType::Regular, 0o4755, 0);
            b.append_data(&mut h, "su", std::io::empty()).unwrap();
            b.into_inner().unwrap()
        };
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let path = dir.path().join("two.tar.gz");
        std::fs::write(&path, [gz(&first), gz(&second)].concat()).unwrap();
        let entries = read_tarball(&path).unwrap();
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(
            rules(&check_entries(&entries, &[])),
            [(Rule::SetuidSetgid, "su".into())]
        );
        // The first member alone has no end marker: unreadable, not "ok".
        std::fs::write(&path, gz(&first)).unwrap();
        let err = read_tarball(&path).unwrap_err();
        assert!(
            err.to_string().contains("no end-of-archive marker"),
            "{err:#}"
        );
        // A second complete archive after the first one's marker is refused too.
        let mut whole = first.clone();
        whole.extend_from_slice(&[0u8; 1024]);
        whole.extend_from_slice(&second);
        std::fs::write(&path, gz(&whole)).unwrap();
        let err = read_tarball(&path).unwrap_err();
        assert!(
            err.to_string().contains("after the end-of-archive marker"),
            "{err:#}"
        );
    }

    #[test]
    fn pax_global_header_is_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let record = b"52 comment=0123456789012345678901234567890123456789\n";
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XGlobalHeader);
        h.set_mode(0o666);
        h.set_size(record.len() as u64);
        b.append_data(&mut h, "pax_global_header", &record[..])
            .unwrap();
        let mut h = Tb::header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, "web-ui/", std::io::empty()).unwrap();
        let path = dir.path().join("g.tar.gz");
        std::fs::write(&path, b.into_inner().unwrap().finish().unwrap()).unwrap();
        let entries = read_tarball(&path).unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(check_entries(&entries, &[]), vec![]);
    }

    #[test]
    fn a_release_directory_that_is_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("1.0.0")).unwrap();
        let v = check_entries(&scan_dir(&dir.path().join("1.0.0")).unwrap(), &[]);
        assert_eq!(rules(&v), [(Rule::RootNotDir, ".".into())]);
    }

    #[test]
    fn mode_text_matches_ls() {
        assert_eq!(mode_text(Kind::Dir, 0o700), "drwx------");
        assert_eq!(mode_text(Kind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_text(Kind::File, 0o6644), "-rwSr-Sr--");
        assert_eq!(mode_text(Kind::Dir, 0o1777), "drwxrwxrwt");
    }
}
