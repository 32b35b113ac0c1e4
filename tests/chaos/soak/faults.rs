//! The soak's faults: each injects one kind and runs what the node would run after it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{config_file, Kind, Node, APPS};
use crate::common::install::write_release;
use crate::common::*;
use crate::hostile::hostile_manifests;
use crate::support::*;
use crate::tarballs::{tarball, HOSTILE_TARBALLS};

impl Node {
    // ---- the faults ----

    /// Inject one fault and run what the node would run after it; its random choices go into
    /// the sequence (`note`) as they are made.
    pub(super) fn inject(&mut self, kind: Kind) {
        match kind {
            Kind::ContainerKill | Kind::ContainerStop | Kind::ContainerRm => {
                self.container_fault(kind)
            }
            Kind::ContainerCreated => self.left_created(),
            Kind::ContainerRenamed => self.renamed(),
            Kind::ImageRemoved => self.image_removed(),
            Kind::PortSquatter => self.port_squatter(),
            Kind::EngineDbDeleted | Kind::EngineDbCorrupt | Kind::EngineGhost => {
                self.engine_db(kind)
            }
            Kind::EngineRuntimeWiped => self.runtime_wiped(),
            Kind::Reboot => self.reboot(),
            Kind::KillReconcile => self.kill_reconcile(),
            Kind::KillRender => self.kill_render(),
            Kind::KillRollback => self.kill_rollback(),
            Kind::ConcurrentReconciles => self.concurrent_reconciles(),
            Kind::ConfigDamaged => self.config_damaged(),
            Kind::ConfigSymlink => self.config_symlink(),
            Kind::StateFull => self.state_full(),
            Kind::NetworkDeleted | Kind::NetworkWrongSubnet => self.network_fault(kind),
            Kind::HostileManifest => self.hostile_manifest(),
            Kind::UnloadableManifest => self.unloadable_manifest(),
            Kind::HostileTarball => self.hostile_tarball(),
            Kind::BadUpdate => self.bad_update(),
            Kind::ClockStep => self.clock_step(),
            Kind::ExecLeak => self.exec_leak(),
        }
    }

    /// A tick while the wall clock runs ahead (an RTC-less board before NTP, a wrong manual
    /// setting), then the clock set right: the completion record is dated in the future, which
    /// status must call overdue until a tick at the right time.
    fn clock_step(&mut self) {
        let ahead = *self.pick(&[600u64, 3_600, 86_400]);
        self.note(&format!("+{ahead}s"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let future = (now + ahead).to_string();
        let out = self.archy_env(
            &["reconcile", "--lock-wait", "120s"],
            &[("ARCHY_NOW", future.as_str())],
        );
        self.expect(&out, 0, "reconcile with the clock ahead");
        let status = self.archy(&["status"]);
        self.expect(&status, 1, "status after the clock was set back");
        if !status.all().contains("in the future") {
            self.fail(&format!("status names the future completion: {status:?}"));
        }
        self.tick();
    }

    /// An app given an `exec:` probe that never ends: each tick kills the probe's exec session
    /// at its deadline, so none is left running in the container; then the probe goes again.
    fn exec_leak(&mut self) {
        let app = *self.pick(&APPS);
        self.note(app);
        let probed = format!(
            "{}health:\n  exec: [\"/bin/sleep\", \"1000\"]\n  failures: 100\n  start_period: 0\n",
            super::manifest_text(self, app)
        );
        self.root.manifest(app, &probed);
        let name = format!("archy-{app}");
        for _ in 0..2 {
            self.tick();
            let top = self.podman_ok(&["top", &name, "args"]);
            if top.contains("sleep 1000") {
                self.fail(&format!("an exec probe was left running in {name}: {top}"));
            }
        }
        self.write_manifests();
        self.tick();
    }

    /// Kill, stop or remove a random app's container; a tick repairs it.
    fn container_fault(&mut self, kind: Kind) {
        let app = *self.pick(&APPS);
        self.note(app);
        let name = format!("archy-{app}");
        match kind {
            Kind::ContainerKill => self.podman_ok(&["kill", &name]),
            Kind::ContainerStop => self.podman_ok(&["stop", "-t", "0", &name]),
            _ => self.podman_ok(&["rm", "-f", "-t", "0", &name]),
        };
        self.tick();
        self.indexer_replaced(true);
    }

    /// What a crash between create and start leaves: the full spec, never started.
    fn left_created(&mut self) {
        // What a crash between create and start leaves: the full spec, never started.
        let app = *self.pick(&APPS);
        self.note(app);
        let name = format!("archy-{app}");
        let clone = format!("archy-{app}-clone");
        self.podman_ok(&["container", "clone", &name, &clone]);
        self.podman_ok(&["rm", "-f", "-t", "0", &name]);
        self.podman_ok(&["rename", &clone, &name]);
        self.tick();
        self.indexer_replaced(true);
    }

    /// A container renamed by hand; the tick removes it (volumes kept) and recreates.
    fn renamed(&mut self) {
        let app = *self.pick(&APPS);
        self.note(app);
        self.podman_ok(&["rename", &format!("archy-{app}"), &format!("by-hand-{app}")]);
        self.tick();
        self.indexer_replaced(false);
    }

    /// The build app's image removed (and with it its container); the tick rebuilds offline.
    fn image_removed(&mut self) {
        let image = self.podman_ok(&["inspect", "--format", "{{.ImageName}}", "archy-indexer"]);

        self.note(&image);
        self.podman_ok(&["rmi", "-f", &image]);
        self.tick();
        self.indexer_replaced(true);
    }

    /// An unmanaged container on an app's port: that app fails naming it, the others run; converges once it is gone.
    fn port_squatter(&mut self) {
        let app = *self.pick(&APPS);
        self.note(app);
        let port = self.ports[app];
        self.podman_ok(&["rm", "-f", "-t", "0", &format!("archy-{app}")]);
        let publish = format!("127.0.0.1:{port}:80");
        self.podman_ok(&[
            "run",
            "-d",
            "--name",
            "squatter",
            "--network",
            &self.root.network.clone(),
            "-p",
            &publish,
            TEST_IMAGE,
        ]);
        let out = self.archy(&["reconcile", "--lock-wait", "120s"]);
        self.expect(&out, 1, "reconcile with a squatter on a port");
        if !out.all().contains(&port.to_string()) {
            self.fail(&format!("the failure names port {port}: {out:?}"));
        }
        for other in APPS.iter().filter(|a| **a != app) {
            if self.root.state(&format!("archy-{other}")) != "running" {
                self.fail(&format!(
                    "{other} stopped while {app}'s port was squatted: {out:?}"
                ));
            }
        }
        self.podman_ok(&["rm", "-f", "-t", "0", "squatter"]);
        self.tick();
        self.indexer_replaced(true);
    }

    /// podman's state DB deleted, truncated, or an older one restored (every container a ghost).
    fn engine_db(&mut self, kind: Kind) {
        let db = self.root.dir.join("static/bolt_state.db");
        match kind {
            Kind::EngineDbDeleted => std::fs::remove_file(&db).unwrap(),
            Kind::EngineDbCorrupt => std::fs::OpenOptions::new()
                .write(true)
                .open(&db)
                .unwrap()
                .set_len(4096)
                .unwrap(),
            _ => {
                std::fs::copy(&self.db_before_apps, &db).unwrap();
            }
        }
        self.heal_and_tick();
        self.indexer_replaced(true);
    }

    /// Container processes killed and podman's runtime dirs wiped under them.
    fn runtime_wiped(&mut self) {
        kill_root_processes(&self.root.dir);
        unmount_runtime_except(&self.root.dir, &[&self.root.state_dir]);
        self.wipe_runtime_dirs();
        self.heal_and_tick();
        self.indexer_replaced(true);
    }

    /// A reboot, then the boot sequence.
    fn reboot(&mut self) {
        // A power cut: processes and mounts gone; a boot: /run (netns) and the firewall
        // start empty. The bridge is kept: deleted, CNI's bridge plugin (1.1.1, kernel
        // 6.18) fails to recreate it ("could not set bridge's mac: invalid argument").
        release_leaked_host_state(&self.root.dir, &self.root.gateway, &self.root.network);
        unmount_runtime_except(&self.root.dir, &[&self.root.state_dir]);
        self.wipe_runtime_dirs();
        for step in [
            &["heal-podman"][..],
            &["render-config"],
            &["reconcile", "--lock-wait", "120s"],
        ] {
            let out = self.archy(step);
            self.expect(&out, 0, &format!("boot: {step:?}"));
        }
        let out = self.archy(&["verify-update"]);
        self.expect(&out, 0, "boot: verify-update");
        if !out.stdout.contains("nothing pending") {
            self.fail(&format!("boot verify-update with nothing armed: {out:?}"));
        }
        self.indexer_replaced(true);
    }

    /// archy SIGKILLed at a random point of a reconcile with work to do.
    fn kill_reconcile(&mut self) {
        let by_hand = self.rng.below(2) == 0;
        if by_hand {
            for app in APPS {
                self.podman_ok(&["rm", "-f", "-t", "0", &format!("archy-{app}")]);
            }
        } else {
            self.epoch += 1;
            self.write_manifests();
        }
        let delay = Duration::from_millis(self.rng.below(1500));
        self.note(&format!(
            "{} after {delay:?}",
            if by_hand { "removed" } else { "respec" }
        ));
        self.killed_after(&["reconcile"], delay);
        self.tick();
        self.indexer_replaced(by_hand);
    }

    /// archy SIGKILLed at a random point of `render-config --rotate-secret`: no torn file.
    fn kill_render(&mut self) {
        let delay = Duration::from_micros(self.rng.below(8000));
        self.note(&format!("after {delay:?}"));
        self.killed_after(&["render-config", "--rotate-secret"], delay);
        for f in ["bitcoin.conf", "lnd.conf", "electrumx.env"] {
            let whole = std::fs::read_to_string(self.cfg.join(f)).is_ok_and(|t| {
                t.starts_with("# Generated by archy") && t.ends_with('\n') && t.lines().count() >= 3
            });
            if !whole {
                self.fail(&format!("{f} torn by a kill after {delay:?}"));
            }
        }
        self.tick();
        self.indexer_replaced(false);
    }

    /// An update installed, archy SIGKILLed at a random point of `rollback`; the next finishes it.
    fn kill_rollback(&mut self) {
        let (old, new) = self.install_update();
        let restarts = self.restarts();
        let delay = Duration::from_micros(self.rng.below(300_000));
        self.note(&format!("{new}->{old} after {delay:?}"));
        self.killed_after(&["rollback"], delay);
        let current = self.link("current");
        if current != format!("releases/{old}") && current != format!("releases/{new}") {
            self.fail(&format!("current -> {current} after a kill at {delay:?}"));
        }
        let out = self.archy(&["rollback"]);
        self.expect(&out, 0, "rollback after a killed rollback");
        if self.link("current") != format!("releases/{old}") || self.restarts() <= restarts {
            self.fail(&format!(
                "rollback finished: current -> {}, restarts {} -> {}: {out:?}",
                self.link("current"),
                restarts,
                self.restarts()
            ));
        }
    }

    /// 2–5 reconciles at once on removed containers: each container created once.
    fn concurrent_reconciles(&mut self) {
        let n = 2 + self.rng.below(4) as usize;
        self.note(&format!("{n} runs"));
        for app in APPS {
            self.podman_ok(&["rm", "-f", "-t", "0", &format!("archy-{app}")]);
        }
        self.root.take_podman_calls();
        let children: Vec<_> = (0..n)
            .map(|_| self.spawn_archy(&["reconcile", "--lock-wait", "120s"], &[]))
            .collect();
        for child in children {
            let out = self.finish(child, &["reconcile"], Duration::from_secs(300));
            self.expect(&out, 0, "concurrent reconcile");
        }
        let runs = self
            .root
            .take_podman_calls()
            .iter()
            .filter(|c| c.starts_with("run "))
            .count();
        if runs != APPS.len() {
            self.fail(&format!(
                "{n} concurrent reconciles ran {runs} containers, not one per app"
            ));
        }
        self.indexer_replaced(true);
    }

    /// A rendered config edited, deleted, made read-only, or both.
    fn config_damaged(&mut self) {
        let app = *self.pick(&APPS);
        self.note(app);
        let file = self.cfg.join(config_file(app));
        let good = std::fs::read(&file).unwrap();
        let how = *self.pick(&["edited", "deleted", "read-only", "edited+read-only"]);
        self.note(&format!("{} {how}", config_file(app)));
        if how.contains("edited") {
            std::fs::write(&file, "[Bitcoind]\nbitcoind.rpcpass=guess\n").unwrap();
        }
        if how == "deleted" {
            std::fs::remove_file(&file).unwrap();
        }
        if how.contains("read-only") {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        }
        self.tick();
        let mode = std::fs::metadata(&file)
            .map(|m| m.permissions().mode() & 0o7777)
            .ok();
        if std::fs::read(&file).ok() != Some(good) || mode != Some(0o600) {
            self.fail(&format!("{} not restored (mode {mode:?})", file.display()));
        }
        self.indexer_replaced(false);
    }

    /// A rendered config replaced by a symlink: not written through; converges once it is gone.
    fn config_symlink(&mut self) {
        let app = *self.pick(&APPS);
        self.note(app);
        let file = self.cfg.join(config_file(app));
        let elsewhere = self.root.dir.join("elsewhere.conf");
        std::fs::write(&elsewhere, "keep me").unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        let out = self.archy(&["reconcile", "--lock-wait", "120s"]);
        // A config consumed as an env file resolves outside the allowed roots: the manifest is
        // invalid (exit 2, "resolves to"); any other is refused when written (exit 1, "symlink").
        let named = match out.code {
            1 => out.all().contains("symlink"),
            2 => out.all().contains("resolves to"),
            _ => false,
        };
        if !named || !out.all().contains(&file.display().to_string()) {
            self.fail(&format!(
                "the error names the symlink {}: {out:?}",
                file.display()
            ));
        }
        if std::fs::read_to_string(&elsewhere).unwrap() != "keep me" {
            self.fail("written through a symlink");
        }
        std::fs::remove_file(&file).unwrap();
        self.tick();
        self.indexer_replaced(false);
    }

    /// The state dir's file system full: a clean failure, nothing changed; converges once freed.
    fn state_full(&mut self) {
        let files: Vec<PathBuf> = [
            "secrets/bitcoin-rpc.json",
            "cfg/bitcoin.conf",
            "cfg/lnd.conf",
            "cfg/electrumx.env",
        ]
        .iter()
        .map(|f| self.root.state_dir.join(f))
        .collect();
        let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
        let filler = self.root.state_dir.join("filler");
        let _ = Command::new("dd")
            .args([
                "if=/dev/zero",
                &format!("of={}", filler.display()),
                "bs=1k",
                "count=4096",
            ])
            .output();
        let out = self.archy(&["render-config", "--rotate-secret"]);
        if out.code == 0 || !out.all().contains("No space left on device") {
            self.fail(&format!("rotate-secret on a full file system: {out:?}"));
        }
        let out = self.archy(&["reconcile", "--lock-wait", "120s"]);
        if !matches!(out.code, 0 | 1) {
            self.fail(&format!("reconcile on a full file system: {out:?}"));
        }
        for (f, b) in files.iter().zip(&before) {
            if std::fs::read(f).ok().as_ref() != Some(b) {
                self.fail(&format!("{} changed on a full file system", f.display()));
            }
        }
        std::fs::remove_file(&filler).unwrap();
        self.tick();
    }

    /// archy's network removed (with its containers), or recreated on a wrong subnet.
    fn network_fault(&mut self, kind: Kind) {
        let net = self.root.network.clone();
        self.podman_ok(&["network", "rm", "-f", &net]);
        if kind == Kind::NetworkWrongSubnet {
            let o: Vec<u32> = self
                .root
                .subnet
                .split('.')
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            let wrong = format!("10.{}.{}.0/24", 230 + o[1] % 20, o[2]);
            self.podman_ok(&["network", "create", "--subnet", &wrong, &net]);
        }
        self.tick();
        self.indexer_replaced(true);
    }

    /// A hostile manifest put in (rejected, nothing removed even with --prune), taken out.
    fn hostile_manifest(&mut self) {
        let app = *self.pick(&APPS);
        self.note(app);
        let mut all = hostile_manifests(app, self.ports[app]);
        let i = self.rng.below(all.len() as u64) as usize;
        let h = all.swap_remove(i);
        self.note(h.fault);
        let path = self.root.manifest(h.file, &h.yaml);
        let out = self.archy(&["reconcile", "--prune", "--lock-wait", "120s"]);
        self.expect(&out, 2, &format!("reconcile --prune beside {}", h.fault));
        for e in &h.expect {
            if !out.all().contains(e.as_str()) {
                self.fail(&format!("{}: expected {e:?} in {out:?}", h.fault));
            }
        }
        for a in APPS {
            if self.root.state(&format!("archy-{a}")) != "running" {
                self.fail(&format!("{a} not running beside {}: {out:?}", h.fault));
            }
        }
        std::fs::remove_file(path).unwrap();
        self.tick();
    }

    /// An app's manifest made unloadable: rejected, its app kept even with --prune; restored.
    fn unloadable_manifest(&mut self) {
        let app = *self.pick(&APPS);
        self.note(app);
        let how = *self.pick(&["dangling symlink", "directory", "fifo", "symlink loop"]);
        self.note(how);
        let path = self.root.manifests.join(format!("{app}.yaml"));
        let aside = self.root.dir.join(format!("{app}.yaml.aside"));
        std::fs::rename(&path, &aside).unwrap();
        match how {
            "dangling symlink" => {
                std::os::unix::fs::symlink(self.root.dir.join("nowhere.yaml"), &path).unwrap()
            }
            "directory" => std::fs::create_dir(&path).unwrap(),
            "fifo" => {
                let st = Command::new("mkfifo").arg(&path).status().unwrap();
                assert!(st.success(), "mkfifo");
            }
            _ => std::os::unix::fs::symlink(&path, &path).unwrap(),
        }
        let out = self.archy(&["reconcile", "--prune", "--lock-wait", "120s"]);
        let running = APPS
            .iter()
            .all(|a| self.root.state(&format!("archy-{a}")) == "running");
        let named = out.all().contains(&format!("{app}.yaml"));
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
        std::fs::rename(&aside, &path).unwrap();
        if out.code != 2 || !named || !running {
            self.fail(&format!(
                "{app}.yaml a {how}: reconcile --prune must exit 2 naming it and remove nothing (all running: {running}): {out:?}"
            ));
        }
        self.tick();
    }

    /// A hostile release tarball judged: refused, `current` unchanged.
    fn hostile_tarball(&mut self) {
        let (name, entry, build) = *self.pick(&HOSTILE_TARBALLS);
        self.note(name);
        let dir = self.root.dir.join("tarballs");
        std::fs::create_dir_all(&dir).unwrap();
        let path = tarball(&dir, name, build);
        let current = self.link("current");
        let out = self.archy(&["verify-update", "--tarball", path.to_str().unwrap()]);
        self.expect(&out, 1, "verify-update on a hostile tarball");
        if !out.all().contains(entry) {
            self.fail(&format!("the refusal names {entry}: {out:?}"));
        }
        if self.link("current") != current {
            self.fail("a tarball check changed `current`");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An armed update whose UI never answers: the boot check rolls it back.
    fn bad_update(&mut self) {
        let (old, new) = self.install_update();
        self.note(&format!("{new}->{old}"));
        let out = self.archy(&["verify-update", "--arm"]);
        self.expect(&out, 0, "verify-update --arm");
        let url = format!("https://127.0.0.1:{}/", free_port());
        let out = self.archy(&[
            "verify-update",
            "--url",
            &url,
            "--interval",
            "100ms",
            "--timeout",
            "1s",
        ]);
        self.expect(
            &out,
            1,
            "boot verify-update of a release whose UI never answers",
        );
        let bad = std::fs::read_to_string(self.root.state_dir.join("update/bad-versions"))
            .unwrap_or_default();
        if self.link("current") != format!("releases/{old}")
            || !bad.lines().any(|l| l == new.to_string())
        {
            self.fail(&format!(
                "not rolled back to {old} / {new} not recorded bad: {out:?}"
            ));
        }
        // The operator is told until the next boot check passes.
        let status = self.archy(&["status"]);
        if status.code != 1 || !status.all().contains("verify-update failed") {
            self.fail(&format!("status after a rolled-back update: {status:?}"));
        }
        let out = self.archy(&["verify-update"]);
        self.expect(&out, 0, "the next boot's verify-update (nothing pending)");
    }

    /// Add a detail (a random choice) to the current fault in the sequence.
    pub(super) fn note(&mut self, detail: &str) {
        if let Some(last) = self.sequence.last_mut() {
            last.push(' ');
            last.push_str(detail);
        }
    }

    pub(super) fn wipe_runtime_dirs(&self) {
        let _ = std::fs::remove_dir_all(self.root.dir.join("tmp"));
        let _ = std::fs::remove_dir_all(self.root.dir.join("run"));
    }

    pub(super) fn bridge(&self) -> Option<String> {
        let out = self.podman(&[
            "network",
            "inspect",
            "--format",
            "{{.NetworkInterface}}",
            &self.root.network,
        ]);
        Some(out.stdout.trim().to_string()).filter(|b| out.code == 0 && !b.is_empty())
    }

    pub(super) fn link(&self, name: &str) -> String {
        std::fs::read_link(self.opt.join(name))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_else(|e| format!("<{e}>"))
    }

    pub(super) fn restarts(&self) -> usize {
        std::fs::read_to_string(&self.restart_log).map_or(0, |t| t.lines().count())
    }

    /// What the updater does: install release N+1, `previous` -> the current one, `current` ->
    /// the new one (each by renaming a new symlink over the old), older releases pruned.
    pub(super) fn install_update(&mut self) -> (u32, u32) {
        let old: u32 = self
            .link("current")
            .trim_start_matches("releases/")
            .parse()
            .unwrap_or_else(|_| self.fail(&format!("current -> {}", self.link("current"))));
        self.release += 1;
        let new = self.release;
        write_release(&self.opt, &new.to_string());
        for (link, v) in [("previous", old), ("current", new)] {
            let tmp = self.opt.join(format!(".{link}.updater"));
            std::os::unix::fs::symlink(format!("releases/{v}"), &tmp).unwrap();
            std::fs::rename(&tmp, self.opt.join(link)).unwrap();
        }
        for e in std::fs::read_dir(self.opt.join("releases"))
            .unwrap()
            .flatten()
        {
            let v = e.file_name().to_string_lossy().into_owned();
            if v != old.to_string() && v != new.to_string() {
                std::fs::remove_dir_all(e.path()).unwrap();
            }
        }
        (old, new)
    }
}
