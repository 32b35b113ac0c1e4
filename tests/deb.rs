//! `packaging/build-deb` builds a .deb (here with the debug binary) whose file list is the
//! documented layout: binary, units, man pages, completions, default manifests and directories.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn names_in(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_package_installs_the_documented_layout() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(repo().join("packaging/build-deb"))
        .arg(env!("CARGO_BIN_EXE_archy"))
        .arg(out_dir.path())
        // The debug binary is large: no compression keeps the test fast.
        .env("ARCHY_DEB_COMPRESSION", "none")
        .output()
        .expect("run packaging/build-deb");
    assert!(
        out.status.success(),
        "build-deb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(deb.is_file(), "{}", deb.display());

    let list = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(list.status.success());
    let listing = String::from_utf8_lossy(&list.stdout).into_owned();
    // `drwxr-xr-x root/root 0 date time ./path`: the path is the last field.
    let entries: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|l| Some((l.split_whitespace().next()?, l.split_whitespace().last()?)))
        .collect();
    let has = |path: &str| entries.iter().any(|(_, p)| *p == format!(".{path}"));
    let mode_of = |path: &str| {
        entries
            .iter()
            .find(|(_, p)| *p == format!(".{path}"))
            .map(|(m, _)| m.to_string())
    };

    assert_eq!(
        mode_of("/usr/bin/archy").as_deref(),
        Some("-rwxr-xr-x"),
        "{listing}"
    );
    for unit in names_in(&repo().join("systemd-timers"), "") {
        assert!(
            has(&format!("/usr/lib/systemd/system/{unit}")),
            "{unit}:\n{listing}"
        );
    }
    let pages = names_in(&repo().join("man"), ".8");
    assert!(pages.contains(&"archy.8".to_string()));
    for page in &pages {
        assert!(
            has(&format!("/usr/share/man/man8/{page}.gz")),
            "{page}:\n{listing}"
        );
    }
    for path in [
        "/usr/share/bash-completion/completions/archy",
        "/usr/share/zsh/vendor-completions/_archy",
        "/usr/share/fish/vendor_completions.d/archy.fish",
        "/usr/share/archy/manifests/",
        "/etc/archy/manifests/",
        "/etc/containers/containers.conf.d/",
    ] {
        assert!(has(path), "{path}:\n{listing}");
    }
    assert_eq!(
        mode_of("/var/lib/archy/").as_deref(),
        Some("drwx------"),
        "{listing}"
    );
    for manifest in names_in(&repo().join("manifests"), ".yaml") {
        assert!(
            has(&format!("/usr/share/archy/manifests/{manifest}")),
            "{manifest}:\n{listing}"
        );
    }
    assert!(
        entries
            .iter()
            .all(|(_, p)| !p.starts_with("./tmp") && !p.contains("/target/")),
        "nothing from the build tree leaks in:\n{listing}"
    );

    let info = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .output()
        .unwrap();
    let control = String::from_utf8_lossy(&info.stdout);
    assert!(control.contains("Package: archy\n"), "{control}");
    assert!(
        control.contains(&format!("Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{control}"
    );
    assert!(control.contains("Depends: podman"), "{control}");

    // The packaged binary is the one given, and it runs.
    let root = tempfile::tempdir().unwrap();
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path())
        .status()
        .unwrap();
    assert!(x.success());
    let version = Command::new(root.path().join("usr/bin/archy"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}
