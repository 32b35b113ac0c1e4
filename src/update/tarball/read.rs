//! Reading header records: from a tar.gz (every gzip member, the end-of-archive marker
//! required) or from an installed release directory; the file's SHA-256.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::{EntryInfo, Kind, Rule, Violation, MAX_DIR_ENTRIES};

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
