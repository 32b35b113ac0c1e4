//! The real bbolt for tests that check archy's bbolt writer (tests/ipam_bolt.rs, tests/hostile.rs):
//! Debian's go.etcd.io/bbolt 1.3.6 (golang-github-coreos-bbolt-dev, the version podman 4.3
//! vendors) built with Debian's Go into a small tool, tests/fixtures/boltcheck/main.go.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use archy::heal::boltdb::Db;

/// The Go tool, built once per test binary into target/tmp (a directory per binary, so two
/// binaries building at once do not race).
pub fn boltcheck() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("boltcheck-{}", env!("CARGO_CRATE_NAME")));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/boltcheck/main.go"),
            dir.join("main.go"),
        )
        .unwrap();
        let out = Command::new("go")
            .args(["build", "-o", "boltcheck", "."])
            .current_dir(&dir)
            .env("GOPATH", "/usr/share/gocode")
            .env("GO111MODULE", "off")
            .env("GOCACHE", dir.join("cache"))
            .env("GOFLAGS", "")
            .output()
            .expect("`go` not found: install golang-go and golang-github-coreos-bbolt-dev (scripts/test does)");
        assert!(
            out.status.success(),
            "building the bbolt checker: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("boltcheck")
    })
}

/// Run the tool; its stdout (it must succeed).
pub fn go(args: &[&str]) -> String {
    let out = Command::new(boltcheck()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "boltcheck {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every network bucket of the file.
pub fn networks(db: &Db) -> BTreeSet<String> {
    db.root
        .items
        .iter()
        .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
        .collect()
}
