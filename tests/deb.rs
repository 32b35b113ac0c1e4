//! The Debian package, as Debian's own tools see it: `packaging/build-deb` (cargo-deb) builds it
//! from the test binary, `lintian` reports no errors and no warnings, `dpkg -i` installs it on
//! this machine, the installed `archy --version`, `man archy` and `archy status` work, and
//! `dpkg --remove` / `dpkg --purge` leave exactly what README says (remove keeps
//! /var/lib/archy and the conffile /etc/default/archy; purge removes both and keeps the
//! operator's own files in /etc/archy/manifests).
//!
//! Installing touches the real system, so one test at a time on the machine takes
//! `/tmp/archy-deb-install.lock`, and the test refuses to run over an archy state it did not
//! make (it would purge it).

mod common;

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Build the package from the binary this test run uses (`--profile dev --no-build`): the
/// release build would cost CI minutes, and nothing lintian or dpkg checks differs.
fn build_package(out_dir: &Path) -> PathBuf {
    // target/<profile>/archy -> target: the target dir cargo-deb must look in.
    let target_dir = Path::new(env!("CARGO_BIN_EXE_archy"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let out = Command::new(repo().join("packaging/build-deb"))
        .args(["--profile", "dev", "--no-build", "--fast"])
        .arg(out_dir)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .expect("run packaging/build-deb");
    assert!(out.status.success(), "build-deb failed: {}", text(&out));
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(deb.is_file(), "{}", deb.display());
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("archy_{}-1_", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );
    deb
}

#[test]
fn lintian_reports_no_errors_and_no_warnings() {
    let out_dir = tempfile::tempdir().unwrap();
    let deb = build_package(out_dir.path());
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--pedantic", "--info"])
        .arg(&deb)
        .output()
        .expect("lintian is installed by scripts/test");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let bad: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(bad.is_empty(), "lintian: {bad:#?}\n{}", text(&out));
    assert!(out.status.success(), "{}", text(&out));
    // Every override is used (an unused one means the reason written next to it is stale).
    assert!(!report.contains("unused-override"), "{report}");

    let control = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .output()
        .unwrap();
    let control = String::from_utf8_lossy(&control.stdout).into_owned();
    // shlibs-computed libc dependency, plus podman.
    assert!(control.contains("Depends: libc6 (>= "), "{control}");
    assert!(control.contains("podman (>= 4.3)"), "{control}");
    assert!(
        control.contains(&format!("Version: {}-1\n", env!("CARGO_PKG_VERSION"))),
        "{control}"
    );
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for path in [
        "./usr/bin/archy",
        "./etc/default/archy",
        "./usr/share/man/man8/archy.8.gz",
        "./usr/share/doc/archy/copyright",
        "./usr/share/doc/archy/changelog.Debian.gz",
        "./usr/lib/systemd/system/archy-reconcile.timer",
        "./usr/share/bash-completion/completions/archy",
        "./usr/share/archy/manifests/lnd.yaml",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path}:\n{listing}"
        );
    }
    for unit in std::fs::read_dir(repo().join("systemd-timers")).unwrap() {
        let name = unit.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            listing.contains(&format!("./usr/lib/systemd/system/{name}")),
            "{name}:\n{listing}"
        );
    }
    assert!(
        !listing.contains("./var/lib/archy"),
        "state is made by postinst (0700), never shipped:\n{listing}"
    );
}

/// Run dpkg, waiting (up to 5 minutes) while another package manager holds its lock: other
/// work on this machine installs packages too.
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("run dpkg");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let locked = !out.status.success() && stderr.contains("lock");
        if !locked || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn package_state() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev}", "archy"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn leftover_units() -> Vec<String> {
    let mut found = Vec::new();
    for dir in [
        "/usr/lib/systemd/system",
        "/etc/systemd/system/multi-user.target.wants",
        "/etc/systemd/system/timers.target.wants",
        "/var/lib/systemd/deb-systemd-helper-enabled",
        "/var/lib/systemd/deb-systemd-helper-masked",
    ] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("archy-") {
                found.push(format!("{dir}/{name}"));
            }
        }
    }
    found
}

#[test]
fn dpkg_installs_runs_removes_and_purges_as_documented() {
    common::require_podman();
    let out_dir = tempfile::tempdir().unwrap();
    let deb = build_package(out_dir.path());
    let deb = deb.to_str().unwrap();

    // One package test at a time on this machine (other worktrees run this test too).
    let lock = File::create("/tmp/archy-deb-install.lock").unwrap();
    lock.lock().unwrap();
    let before = package_state();
    if !before.starts_with("ii") && !before.starts_with("rc") {
        for path in ["/var/lib/archy", "/etc/archy", "/etc/default/archy"] {
            assert!(
                !Path::new(path).exists(),
                "{path} exists but archy is not installed: refusing to purge what this test did \
                 not make"
            );
        }
    }

    let dropins = Path::new("/etc/containers/containers.conf.d");
    let dropins_before = dropins.exists();
    let backups = Path::new("/var/backups/archy");
    let backups_before = backups.exists();
    let out = dpkg(&["-i", deb]);
    assert!(out.status.success(), "dpkg -i: {}", text(&out));
    assert_eq!(package_state(), "ii", "installed");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(backups).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            mode, 0o700,
            "the lnd manifest's backup directory is made 0700"
        );
    }
    assert_eq!(mode("/var/lib/archy"), 0o700, "state is root only");
    assert_eq!(mode("/etc/archy/manifests"), 0o755);
    // podman's drop-in directory, where the shipped bitcoin-knots manifest renders 50-archy.conf.
    assert!(Path::new("/etc/containers/containers.conf.d").is_dir());
    let conffiles = Command::new("dpkg-query")
        .args(["--control-show", "archy", "conffiles"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&conffiles.stdout).trim(),
        "/etc/default/archy"
    );
    // Installed, not enabled: no wants-symlink for any unit.
    let enabled: Vec<String> = leftover_units()
        .into_iter()
        .filter(|p| p.contains(".wants/"))
        .collect();
    assert!(
        enabled.is_empty(),
        "the package never enables a unit: {enabled:?}"
    );
    assert!(Path::new("/usr/lib/systemd/system/archy-reconcile.timer").is_file());

    // The installed paths work.
    let version = Command::new("/usr/bin/archy")
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("archy {}", env!("CARGO_PKG_VERSION")),
        "{}",
        text(&version)
    );
    for page in ["archy", "archy-status"] {
        let man = Command::new("man")
            .arg(page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .env("LANG", "C.UTF-8")
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&man.stdout).into_owned();
        assert!(man.status.success(), "man {page}: {}", text(&man));
        assert!(shown.contains("NAME"), "{shown}");
        assert!(shown.contains(page), "{shown}");
    }
    // `archy status` with the installed defaults (/etc/archy/manifests, /var/lib/archy,
    // /run/archy); podman itself is pointed at an isolated root so the machine's containers
    // are never listed or touched.
    let root = common::TestRoot::empty();
    let podman_env: Vec<(String, String)> = root
        .env()
        .iter()
        .filter(|(k, _)| k.starts_with("CONTAINERS_"))
        .cloned()
        .collect();
    let status = Command::new("/usr/bin/archy")
        .arg("status")
        .envs(podman_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("ARCHY_LOG")
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("status: converged"),
        "{}",
        text(&status)
    );

    // Operator data: an edited conffile, a secret in the state dir, a file of their own next
    // to the manifests.
    std::fs::write("/etc/default/archy", "ARCHY_NETWORK=site\n").unwrap();
    std::fs::create_dir_all("/var/lib/archy/secrets").unwrap();
    std::fs::write("/var/lib/archy/secrets/bitcoin-rpc.json", "{}").unwrap();
    std::fs::write("/etc/archy/manifests/operator-notes.txt", "mine").unwrap();

    let out = dpkg(&["--remove", "archy"]);
    assert!(out.status.success(), "dpkg --remove: {}", text(&out));
    assert_eq!(package_state(), "rc", "removed, config files left");
    assert!(!Path::new("/usr/bin/archy").exists());
    assert!(!Path::new("/usr/share/man/man8/archy.8.gz").exists());
    assert!(
        !Path::new("/usr/lib/systemd/system/archy-reconcile.timer").exists(),
        "units go with the package"
    );
    assert_eq!(
        std::fs::read_to_string("/etc/default/archy").unwrap(),
        "ARCHY_NETWORK=site\n",
        "remove keeps the edited conffile"
    );
    assert!(
        Path::new("/var/lib/archy/secrets/bitcoin-rpc.json").exists(),
        "remove keeps the state (and its secret)"
    );

    let out = dpkg(&["--purge", "archy"]);
    assert!(out.status.success(), "dpkg --purge: {}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("purged /var/lib/archy"), "{said}");
    assert_eq!(package_state(), "", "purged: dpkg forgets the package");
    for gone in ["/etc/default/archy", "/var/lib/archy", "/run/archy"] {
        assert!(!Path::new(gone).exists(), "purge leaves {gone}");
    }
    assert_eq!(
        std::fs::read_to_string("/etc/archy/manifests/operator-notes.txt").unwrap(),
        "mine",
        "purge keeps files the package did not make"
    );
    assert!(leftover_units().is_empty(), "{:?}", leftover_units());
    assert!(dropins.is_dir(), "podman's drop-in directory stays");
    assert!(backups.is_dir(), "purge never removes the backups");
    if !backups_before {
        std::fs::remove_dir_all(backups).unwrap();
    }
    std::fs::remove_dir_all("/etc/archy").unwrap();
    if !dropins_before {
        // Leave the machine as the test found it.
        let _ = std::fs::remove_dir(dropins);
    }
}
