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

mod links;
mod read;
mod rules;

pub use read::{check_digest, read_tarball, scan_dir, sha256_file, valid_sha256, Unreadable};
pub use rules::check_entries;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;

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
