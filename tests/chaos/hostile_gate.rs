//! Issue 14, cases 1–4: the release gate (`verify-update --tarball`, and `rollback`'s check of
//! the release it switches to) against tarballs built with the tools a release engineer or an
//! attacker uses: GNU tar, Python's `tarfile`, `git archive`. Each case also shows, with the
//! real `tar`, what extraction would do, so the test proves the danger it guards against.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::install::{set_mode, Install};
use crate::common::Out;
use crate::support::*;

fn run(cmd: &mut Command) -> Out {
    Out::from(cmd.output().expect("run command"))
}

fn ok(cmd: &mut Command) -> Out {
    let out = run(cmd);
    assert_eq!(out.code, 0, "{cmd:?}: {out:?}");
    out
}

fn verify(tarball: &Path) -> Out {
    run(Command::new(env!("CARGO_BIN_EXE_archy"))
        .args(["verify-update", "--output", "json", "--tarball"])
        .arg(tarball)
        .env_remove("ARCHY_LOG"))
}

/// The symlink chain of case 1 in `dir`: `l0 -> .`, `lN -> l(N-1)/..`, `pw -> l12/etc/passwd`.
fn plant_chain(dir: &Path) {
    std::os::unix::fs::symlink(".", dir.join("l0")).unwrap();
    for n in 1..=12 {
        std::os::unix::fs::symlink(format!("l{}/..", n - 1), dir.join(format!("l{n}"))).unwrap();
    }
    std::os::unix::fs::symlink("l12/etc/passwd", dir.join("pw")).unwrap();
}

/// A clean release tree: root, web-ui/, web-ui/index.html, all 0755/0644.
fn clean_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("web-ui")).unwrap();
    std::fs::write(dir.join("web-ui/index.html"), "<html>").unwrap();
    set_mode(dir, 0o755);
    set_mode(&dir.join("web-ui"), 0o755);
    set_mode(&dir.join("web-ui/index.html"), 0o644);
}

#[test]
fn symlink_chain_through_the_archives_own_links() {
    let mut case = Case::hostile(
        "#01",
        "release gate: symlink chain through links of the same archive (`l1 -> l0/..`, … `pw -> l12/etc/passwd`; GNU tar), and the same chain in the previous release",
        "verify-update refused (exit 1) naming `l1` and `pw`; `rollback --dry-run` refuses to switch (exit 1)",
    );
    case.run();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("release");
    std::fs::create_dir(&tree).unwrap();
    clean_tree(&tree);
    plant_chain(&tree);
    let tarball = tmp.path().join("chain.tar.gz");
    ok(Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .arg("."));
    // What extraction does: `pw` ends up as the host's /etc/passwd.
    let deep = tmp.path().join("x");
    std::fs::create_dir(&deep).unwrap();
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&deep));
    assert_eq!(
        std::fs::canonicalize(deep.join("pw")).unwrap(),
        PathBuf::from("/etc/passwd"),
        "the test archive does escape when extracted"
    );
    let out = verify(&tarball);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    let paths: Vec<String> = doc["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{} {}", v["rule"], v["path"]))
        .collect();
    assert!(
        paths.iter().any(|p| p == "\"link-escapes\" \"./l1\"")
            && paths.iter().any(|p| p == "\"link-escapes\" \"./pw\""),
        "{paths:?}"
    );
    // The same chain inside the release `rollback` would switch to.
    let install = Install::new();
    plant_chain(&install.root.join("releases/1"));
    let out = install.archy(&["rollback", "--dry-run"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("fails the static checks"), "{out:?}");
    assert!(out.stderr.contains("pw"), "{out:?}");
    assert!(!out.all().contains("would switch"), "{out:?}");
    assert_eq!(install.current(), "releases/2");
    case.pass();
}

/// Python builds case 2: a clean first gzip member without its end marker, then a second member
/// with the root again as 0700, a 0600 file, a setuid file and a link to /etc/shadow.
const TWO_MEMBERS_PY: &str = r#"
import gzip, io, sys, tarfile
def member(entries, end):
    buf = io.BytesIO()
    t = tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT)
    for name, kind, mode, link in entries:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, 1700000000
        if link:
            info.linkname = link
        data = b"x" if kind == tarfile.REGTYPE else b""
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    end_of_entries = t.offset
    t.close()
    raw = buf.getvalue()
    return gzip.compress(raw if end else raw[:end_of_entries])
first = member([("./", tarfile.DIRTYPE, 0o755, None),
                ("./web-ui", tarfile.DIRTYPE, 0o755, None),
                ("./web-ui/index.html", tarfile.REGTYPE, 0o644, None)], end=False)
second = member([("./", tarfile.DIRTYPE, 0o700, None),
                 ("./web-ui/secret.js", tarfile.REGTYPE, 0o600, None),
                 ("./web-ui/su", tarfile.REGTYPE, 0o4755, None),
                 ("./web-ui/shadow", tarfile.SYMTYPE, 0o777, "/etc/shadow")], end=True)
open(sys.argv[1], "wb").write(first + second)
open(sys.argv[2], "wb").write(first)
"#;

#[test]
fn second_gzip_member_and_missing_end_marker() {
    let mut case = Case::hostile(
        "#02",
        "release gate: two gzip members (clean first half without end marker; root 0700, 0600 file, setuid file, link to /etc/shadow in the second; Python tarfile)",
        "every member read: refused (exit 1) naming all four; the first half alone refused as unreadable (no end-of-archive marker, exit 2)",
    );
    case.run();
    let tmp = tempfile::tempdir().unwrap();
    let both = tmp.path().join("two.tar.gz");
    let first = tmp.path().join("first.tar.gz");
    ok(Command::new("python3")
        .arg("-c")
        .arg(TWO_MEMBERS_PY)
        .arg(&both)
        .arg(&first));
    // GNU tar reads both members: all seven entries would be extracted.
    let listed = ok(Command::new("tar").arg("-tzf").arg(&both));
    assert_eq!(listed.stdout.lines().count(), 7, "{listed:?}");
    let out = verify(&both);
    assert_eq!(out.code, 1, "{out:?}");
    let rules: Vec<String> = out.json()["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            format!(
                "{} {}",
                v["rule"].as_str().unwrap(),
                v["path"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "root-mode ./",
        "file-not-world-readable ./web-ui/secret.js",
        "setuid-setgid ./web-ui/su",
        "link-escapes ./web-ui/shadow",
    ] {
        assert!(rules.iter().any(|r| r == expected), "{expected}: {rules:?}");
    }
    let out = verify(&first);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.all().contains("no end-of-archive marker"), "{out:?}");
    case.pass();
}

#[test]
fn implied_directories_without_entries() {
    let mut case = Case::hostile(
        "#03",
        "release gate: `web-ui/` and `web-ui/a/b/c.html` without entries for `a/`, `a/b/` (GNU tar --no-recursion)",
        "refused (exit 1) naming `web-ui/a/` and `web-ui/a/b/` (extraction under umask 077 makes them 0700)",
    );
    case.run();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("src");
    std::fs::create_dir_all(tree.join("web-ui/a/b")).unwrap();
    std::fs::write(tree.join("web-ui/a/b/c.html"), "<html>").unwrap();
    for d in ["web-ui", "web-ui/a", "web-ui/a/b"] {
        set_mode(&tree.join(d), 0o755);
    }
    set_mode(&tree.join("web-ui/a/b/c.html"), 0o644);
    let tarball = tmp.path().join("implied.tar.gz");
    ok(Command::new("tar")
        .arg("--no-recursion")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .args(["web-ui", "web-ui/a/b/c.html"]));
    // What extraction under umask 077 does: the incident's 0700 directory.
    let out_dir = tmp.path().join("x");
    std::fs::create_dir(&out_dir).unwrap();
    ok(Command::new("sh")
        .arg("-c")
        .arg("umask 077 && tar -xzf \"$0\" -C \"$1\"")
        .arg(&tarball)
        .arg(&out_dir));
    use std::os::unix::fs::PermissionsExt;
    let made = std::fs::metadata(out_dir.join("web-ui/a")).unwrap();
    assert_eq!(made.permissions().mode() & 0o777, 0o700);
    let out = verify(&tarball);
    assert_eq!(out.code, 1, "{out:?}");
    let implied: Vec<String> = out.json()["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["rule"] == "implied-dir")
        .map(|v| v["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(implied, ["web-ui/a/", "web-ui/a/b/"]);
    case.pass();
}

#[test]
fn git_archive_of_a_clean_tree_is_accepted() {
    let mut case = Case::hostile(
        "#04",
        "release gate false positive: `git -c tar.umask=022 archive --format=tar.gz HEAD web-ui` (pax global header, top-level directory root)",
        "accepted (exit 0, \"ok\"); the pax global header is metadata",
    );
    case.run();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    clean_tree(&repo);
    std::fs::create_dir(repo.join("web-ui/js")).unwrap();
    std::fs::write(repo.join("web-ui/js/app.js"), "1").unwrap();
    let git = |args: &[&str]| {
        ok(Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args))
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "release"]);
    let tarball = tmp.path().join("web-ui.tar.gz");
    git(&[
        "-c",
        "tar.umask=022",
        "archive",
        "--format=tar.gz",
        "-o",
        tarball.to_str().unwrap(),
        "HEAD",
        "web-ui",
    ]);
    let listed = ok(Command::new("tar").arg("-tvzf").arg(&tarball));
    assert!(listed.stdout.contains("web-ui/js/app.js"), "{listed:?}");
    let out = verify(&tarball);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["violations"], serde_json::json!([]), "{out:?}");
    case.pass();
}
