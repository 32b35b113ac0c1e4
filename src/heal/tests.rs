//! Classification and planning on output captured from podman 4.3.1 / runc 1.1.5 on this
//! machine kind (`tests/fixtures/heal-*`), in an isolated root under /tmp/healexp.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;

const INFO_TOO_SMALL: &str = include_str!("../../tests/fixtures/heal-info-db-too-small.stderr.txt");
const INFO_INVALID: &str = include_str!("../../tests/fixtures/heal-info-db-invalid.stderr.txt");
const PS_INVALID: &str = include_str!("../../tests/fixtures/heal-ps-db-invalid.stderr.txt");
const RENUMBER_TOO_SMALL: &str =
    include_str!("../../tests/fixtures/heal-renumber-db-too-small.stderr.txt");
const MISMATCH: &str = include_str!("../../tests/fixtures/heal-info-db-config-mismatch.stderr.txt");
/// Rootless only (not reproducible as root here): the wording podman 4 prints, from field reports.
const MIGRATE: &str = include_str!("../../tests/fixtures/heal-rootless-migrate.stderr.txt");
const INFO_DEBUG: &str = include_str!("../../tests/fixtures/heal-info-debug.stderr.txt");
const INFO_JSON: &str = include_str!("../../tests/fixtures/heal-podman-info.json");
const RUNC_LIST: &str = include_str!("../../tests/fixtures/heal-runc-list.json");
const PS_EXTERNAL: &str = include_str!("../../tests/fixtures/heal-ps-external-storage.json");
const CONMON: &str = include_str!("../../tests/fixtures/heal-conmon-cmdline.txt");

fn db() -> PathBuf {
    PathBuf::from("/tmp/healexp/static/bolt_state.db")
}

#[test]
fn truncated_and_garbage_databases_are_corrupt_with_their_path() {
    for (text, reason) in [
        (INFO_TOO_SMALL, "file size too small"),
        (RENUMBER_TOO_SMALL, "file size too small"),
        (INFO_INVALID, "invalid database"),
        (PS_INVALID, "invalid database"),
    ] {
        assert_eq!(
            classify_engine_error(text),
            EngineError::DbCorrupt {
                db: db(),
                reason: reason.into()
            },
            "{text}"
        );
    }
}

#[test]
fn database_errors_that_are_not_corruption_are_left_alone() {
    let locked =
        "Error: opening database /var/lib/containers/storage/libpod/bolt_state.db: timeout\n";
    assert!(matches!(
        classify_engine_error(locked),
        EngineError::Other { .. }
    ));
    let perm =
        "Error: opening database /x/bolt_state.db: open /x/bolt_state.db: permission denied\n";
    assert!(matches!(
        classify_engine_error(perm),
        EngineError::Other { .. }
    ));
}

#[test]
fn configuration_mismatch_is_reported_not_repaired() {
    let err = classify_engine_error(MISMATCH);
    assert_eq!(
        err,
        EngineError::ConfigMismatch {
            detail: "database storage graph driver \"overlay\" does not match our storage graph driver \"vfs\": database configuration mismatch".into()
        }
    );
    let facts = Facts {
        engine_error: Some(err),
        ..Facts::default()
    };
    assert!(plan(&facts, PlanOptions::default()).is_empty());
    let advice = next_advice(&facts, PlanOptions::default());
    assert!(advice.contains("does not guess"), "{advice}");
}

#[test]
fn pause_process_hint_means_migrate() {
    assert!(matches!(
        classify_engine_error(MIGRATE),
        EngineError::NeedsMigrate { .. }
    ));
    let facts = Facts {
        engine_error: Some(classify_engine_error(MIGRATE)),
        ..Facts::default()
    };
    let steps = plan(&facts, PlanOptions::default());
    assert_eq!(steps[0].kind, StepKind::SystemMigrate);
}

#[test]
fn lock_exhaustion_means_renumber() {
    let text =
        "Error: allocating lock for new container: allocation failed; exceeded num_locks (2048)\n";
    assert!(matches!(
        classify_engine_error(text),
        EngineError::Locks { .. }
    ));
}

#[test]
fn debug_lines_give_static_and_tmp_dirs() {
    let paths = parse_debug_paths(INFO_DEBUG);
    assert_eq!(paths.graph_root, Some("/tmp/healexp/graph".into()));
    assert_eq!(paths.run_root, Some("/tmp/healexp/run".into()));
    assert_eq!(paths.static_dir, Some("/tmp/healexp/static".into()));
    assert_eq!(paths.tmp_dir, Some("/tmp/healexp/tmp".into()));
    assert_eq!(paths.volume_path, Some("/tmp/healexp/volumes".into()));
    assert_eq!(paths.db, Some(db()));
    assert_eq!(paths.oci_runtime, Some("/usr/bin/runc".into()));
}

#[test]
fn engine_paths_from_info_and_debug_rootful_and_rootless() {
    let info = parse_info(INFO_JSON).unwrap();
    let debug = parse_debug_paths(INFO_DEBUG);
    let p = engine_paths(Some(&info), &debug, None, 0, None);
    assert_eq!(p.graph_root, Some("/tmp/healexp/graph".into()));
    assert_eq!(p.volume_path, Some("/tmp/healexp/volumes".into()));
    assert_eq!(p.db, Some(db()));
    assert_eq!(p.oci_root, Some("/run/runc".into()));
    assert!(!p.rootless);
    let rootless = engine_paths(None, &debug, None, 1000, Some(Path::new("/run/user/1000")));
    assert_eq!(rootless.oci_root, Some("/run/user/1000/runc".into()));
    assert!(rootless.rootless);
}

#[test]
fn corrupt_database_path_comes_from_the_error_when_podman_cannot_start() {
    let err = classify_engine_error(INFO_TOO_SMALL);
    let debug = DebugPaths::default();
    let p = engine_paths(None, &debug, Some(&err), 0, None);
    assert_eq!(p.db, Some(db()));
    assert_eq!(p.static_dir, Some("/tmp/healexp/static".into()));
}

#[test]
fn runc_listing_and_conmon_argv_parse() {
    let list = parse_runc_list(RUNC_LIST).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].status, "running");
    assert!(under_any(
        &list[0].bundle,
        &[Path::new("/tmp/healexp/graph")]
    ));
    assert!(!under_any(
        &list[0].bundle,
        &[Path::new("/tmp/healexp/gra")]
    ));
    assert!(parse_runc_list("null").unwrap().is_empty());

    let argv: Vec<String> = CONMON.lines().map(String::from).collect();
    let c = parse_conmon_argv(42, &argv).unwrap();
    assert_eq!(c.id.len(), 64);
    assert!(c
        .bundle
        .starts_with("/tmp/healexp/graph/overlay-containers/"));
    assert!(parse_conmon_argv(1, &["/bin/sleep".into(), "-c".into()]).is_none());
}

#[test]
fn storage_only_containers_split_by_ownership() {
    let listing = crate::podman::parse_ps(PS_EXTERNAL).unwrap();
    let (known, storage) = split_external(&listing, &BTreeSet::new());
    assert!(known.is_empty());
    assert_eq!(storage.len(), 1);
    assert_eq!(storage[0].name, "c1");
    assert!(!storage[0].managed, "c1 is not archy's");
    let names: BTreeSet<String> = ["c1".to_string()].into();
    let (_, storage) = split_external(&listing, &names);
    assert!(storage[0].managed, "a manifest's container name is archy's");
    assert!(is_managed_name("archy-lnd", &BTreeSet::new()));
}

fn ghost(id: &str) -> OciContainer {
    OciContainer {
        id: id.into(),
        pid: 7,
        status: "running".into(),
        bundle: format!("/g/overlay-containers/{id}/userdata"),
    }
}

fn db_lost_facts() -> Facts {
    Facts {
        storage_only: Some(vec![
            StorageOnly {
                id: "aaa".into(),
                name: "archy-app".into(),
                managed: true,
                buildah: false,
            },
            StorageOnly {
                id: "bbb".into(),
                name: "other".into(),
                managed: false,
                buildah: false,
            },
        ]),
        ghosts: Some(vec![ghost("aaa"), ghost("bbb")]),
        ghost_conmons: Some(vec![]),
        orphan_volumes: Some(vec!["vol1".into()]),
        stale_runtime: Some(vec![]),
        ..Facts::default()
    }
}

#[test]
fn after_db_loss_archys_containers_ghosts_and_volumes_are_planned_in_order() {
    let facts = db_lost_facts();
    let steps = plan(&facts, PlanOptions::default());
    let kinds: Vec<StepKind> = steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            StepKind::RemoveStorageOnly,
            StepKind::KillGhosts,
            StepKind::RegisterVolumes
        ]
    );
    assert_eq!(
        steps[0].targets,
        vec!["aaa"],
        "not archy's: kept without --yes"
    );
    assert_eq!(
        steps[1].targets,
        vec!["aaa"],
        "the kept container's process is kept too"
    );
    assert_eq!(steps[2].targets, vec!["vol1"]);
    let advice = next_advice(&facts, PlanOptions::default());
    assert!(
        advice.contains("--yes") && advice.contains("other"),
        "{advice}"
    );

    let yes = plan(&facts, PlanOptions { yes: true });
    assert_eq!(yes[0].targets, vec!["aaa", "bbb"]);
    assert_eq!(yes[1].targets, vec!["aaa", "bbb"]);
}

#[test]
fn corrupt_database_is_moved_aside_before_anything_that_needs_podman() {
    let facts = Facts {
        engine_error: Some(classify_engine_error(INFO_TOO_SMALL)),
        stale_runtime: Some(vec![]),
        ..Facts::default()
    };
    let steps = plan(&facts, PlanOptions::default());
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].kind, StepKind::MoveDbAside);
    assert_eq!(steps[0].targets, vec![db().display().to_string()]);
    let probes = probes(&facts);
    assert_eq!(probes[0].status, Status::Broken);
    assert_eq!(probes[1].status, Status::Broken);
    assert!(probes[1].evidence[0].contains("file size too small"));
    assert!(probes[2..]
        .iter()
        .take(3)
        .all(|p| p.status == Status::Unknown));
}

#[test]
fn unknown_engine_failure_escalates_migrate_runtime_dirs_renumber() {
    let facts = Facts {
        engine_error: Some(EngineError::Other {
            detail: "something odd".into(),
        }),
        paths: EnginePaths {
            tmp_dir: Some("/run/libpod".into()),
            run_root: Some("/run/containers/storage".into()),
            ..EnginePaths::default()
        },
        ..Facts::default()
    };
    let steps = plan(&facts, PlanOptions::default());
    let kinds: Vec<StepKind> = steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            StepKind::SystemMigrate,
            StepKind::ClearRuntimeDirs,
            StepKind::SystemRenumber
        ]
    );
    assert_eq!(
        steps[1].targets,
        vec!["/run/libpod", "/run/containers/storage"]
    );
    let next = next_step(steps, &[StepKind::SystemMigrate]).unwrap();
    assert_eq!(next.kind, StepKind::ClearRuntimeDirs);
}

#[test]
fn healthy_facts_plan_nothing() {
    let facts = Facts {
        storage_only: Some(vec![]),
        ghosts: Some(vec![]),
        ghost_conmons: Some(vec![]),
        orphan_volumes: Some(vec![]),
        network_debris: Some(vec![]),
        stale_runtime: Some(vec![]),
        ..Facts::default()
    };
    assert!(healthy(&probes(&facts)));
    assert!(plan(&facts, PlanOptions::default()).is_empty());
}

#[test]
fn network_debris_is_broken_and_released_after_ghosts_are_killed() {
    let debris = network::Debris {
        container_id: "5d56896d04d0886b96987fa7c14d72985013ac3a333fc035cb1f8af11fef70ce".into(),
        networks: vec!["archy".into()],
        netns: Some("/run/netns/netns-528d8f0c".into()),
        ips: vec!["10.89.0.2/24".into()],
        rules: vec!["nat: -A CNI-HOSTPORT-DNAT …".into()],
        ..network::Debris::default()
    };
    let facts = Facts {
        storage_only: Some(vec![]),
        ghosts: Some(vec![OciContainer {
            id: "abc".into(),
            pid: 7,
            status: "running".into(),
            bundle: "/x".into(),
        }]),
        ghost_conmons: Some(vec![]),
        orphan_volumes: Some(vec![]),
        network_debris: Some(vec![debris]),
        stale_runtime: Some(vec![]),
        ..Facts::default()
    };
    let probe = probes(&facts)
        .into_iter()
        .find(|p| p.name == ProbeName::NetworkDebris)
        .unwrap();
    assert_eq!(probe.status, Status::Broken);
    assert!(
        probe.evidence[0].contains("container 5d56896d04d0 (unknown to podman) left on network archy: network namespace /run/netns/netns-528d8f0c; 1 iptables rule(s)"),
        "{:?}",
        probe.evidence
    );
    let kinds: Vec<StepKind> = plan(&facts, PlanOptions::default())
        .iter()
        .map(|s| s.kind)
        .collect();
    assert_eq!(
        kinds,
        [StepKind::KillGhosts, StepKind::ReleaseNetworkDebris]
    );
}

#[test]
fn broken_db_name_carries_a_compact_utc_stamp() {
    assert_eq!(
        broken_db_path(&db(), "2026-11-26T20:07:55Z"),
        PathBuf::from("/tmp/healexp/static/bolt_state.db.broken-20261126T200755Z")
    );
}

#[test]
fn boot_time_parses() {
    assert_eq!(
        parse_btime("cpu 1 2\nbtime 1795723000\nprocesses 5\n"),
        Some(1_795_723_000)
    );
    assert_eq!(parse_btime("cpu 1\n"), None);
}

#[test]
fn rootless_runtime_dir_follows_podmans_choice() {
    use std::path::Path;
    assert_eq!(
        rootless_runtime_dir(1000, Some(Path::new("/run/user/1000")), false),
        Path::new("/run/user/1000")
    );
    assert_eq!(
        rootless_runtime_dir(1000, None, true),
        Path::new("/run/user/1000")
    );
    assert_eq!(
        rootless_runtime_dir(1001, None, false),
        Path::new("/tmp/podman-run-1001")
    );
}

#[test]
fn conmon_lookalikes_are_identified_by_owner_executable_and_id() {
    let argv: Vec<String> = [
        "conmon",
        "-c",
        &"ab".repeat(32),
        "-b",
        "/g/overlay-containers/x/userdata",
    ]
    .iter()
    .map(std::string::ToString::to_string)
    .collect();
    let mut c = parse_conmon_argv(7, &argv).unwrap();
    c.uid = Some(0);
    c.exe_is_conmon = true;
    assert_eq!(unidentified_conmon(&c, 0), None);
    let by_nobody = Conmon {
        uid: Some(65534),
        ..c.clone()
    };
    let note = unidentified_conmon(&by_nobody, 0).unwrap();
    assert!(
        note.contains("pid 7") && note.contains("(uid 65534)") && note.contains("left alone"),
        "{note}"
    );
    let other_exe = Conmon {
        exe_is_conmon: false,
        ..c.clone()
    };
    assert!(unidentified_conmon(&other_exe, 0)
        .unwrap()
        .contains("executable"));
    let bad_id = Conmon {
        id: "x; rm".into(),
        ..c.clone()
    };
    assert!(unidentified_conmon(&bad_id, 0)
        .unwrap()
        .contains("container id"));
    let unknown = Conmon { uid: None, ..c };
    assert!(unidentified_conmon(&unknown, 0).is_some());
}

/// `podman ps -a --external --format json` with the working container of a build killed
/// mid-RUN (podman 4.3.1): `Command: ["buildah"]`.
const PS_BUILDAH: &str = include_str!("../../tests/fixtures/heal-ps-external-buildah.json");

#[test]
fn buildah_working_containers_are_not_damage_and_never_removed() {
    let listing = crate::podman::parse_ps(PS_BUILDAH).unwrap();
    let (_, storage) = split_external(&listing, &BTreeSet::new());
    assert_eq!(storage.len(), 1);
    assert!(storage[0].buildah, "{storage:?}");
    let facts = Facts {
        storage_only: Some(storage),
        ghosts: Some(vec![]),
        ghost_conmons: Some(vec![]),
        orphan_volumes: Some(vec![]),
        network_debris: Some(vec![]),
        stale_runtime: Some(vec![]),
        ..Facts::default()
    };
    let probes = probes(&facts);
    assert!(healthy(&probes), "{probes:?}");
    let evidence = &probes
        .iter()
        .find(|p| p.name == ProbeName::StorageOnly)
        .unwrap()
        .evidence;
    assert!(
        evidence
            .iter()
            .any(|e| e.contains("buildah working container")),
        "{evidence:?}"
    );
    assert!(plan(&facts, PlanOptions { yes: true }).is_empty());
}

#[test]
fn stale_namespaces_and_orphan_bridges_are_broken_and_each_has_its_step() {
    let facts = Facts {
        storage_only: Some(vec![]),
        ghosts: Some(vec![]),
        ghost_conmons: Some(vec![]),
        orphan_volumes: Some(vec![]),
        network_debris: Some(vec![]),
        stale_namespaces: Some(vec![network::StaleNamespace {
            path: "/run/netns/netns-b78c0aa0".into(),
            network: "archy".into(),
            veths: vec!["veth1234".into()],
            ips: vec!["10.89.0.2".into()],
            container_id: None,
        }]),
        orphan_bridges: Some(vec![network::OrphanBridge {
            name: "cni-podman7".into(),
            addresses: vec!["10.89.0.1/24".into()],
        }]),
        stale_runtime: Some(vec![]),
        ..Facts::default()
    };
    let probe = probes(&facts)
        .into_iter()
        .find(|p| p.name == ProbeName::NetworkDebris)
        .unwrap();
    assert_eq!(probe.status, Status::Broken);
    assert_eq!(
        probe.evidence,
        [
            "network namespace /run/netns/netns-b78c0aa0 on network archy left by an earlier attachment no running container has: no process in it; veth veth1234; address 10.89.0.2",
            "bridge cni-podman7 (10.89.0.1/24) belongs to no podman network and has nothing attached",
        ]
    );
    let steps = plan(&facts, PlanOptions::default());
    let kinds: Vec<StepKind> = steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            StepKind::ReleaseStaleNamespaces,
            StepKind::RemoveOrphanBridges
        ]
    );
    assert_eq!(steps[0].targets, ["/run/netns/netns-b78c0aa0"]);
    assert_eq!(steps[1].targets, ["cni-podman7"]);
}

/// podman 5.4 (libpod `sqlite_state_internal.go`): a `db.sql` that is not a database fails the
/// first transaction, with no path in the message.
#[test]
fn a_corrupt_sqlite_database_is_recognised_and_found_from_the_paths() {
    let err = classify_engine_error(
        "time=\"x\" level=info msg=\"Using sqlite as database backend\"\nError: beginning transaction: file is not a database\n",
    );
    assert!(
        matches!(&err, EngineError::DbCorrupt { db, reason } if db.as_os_str().is_empty() && reason == "file is not a database"),
        "{err:?}"
    );
    // No path lines (podman prints them only after opening the database): nothing guessed here.
    let p = engine_paths(None, &DebugPaths::default(), Some(&err), 0, None);
    assert_eq!(p.db, None);
    // With a static dir known, the database is there.
    let debug = DebugPaths {
        static_dir: Some("/srv/pod/static".into()),
        graph_root: Some("/srv/pod/graph".into()),
        sqlite: true,
        ..DebugPaths::default()
    };
    let p = engine_paths(None, &debug, Some(&err), 0, None);
    assert_eq!(p.db, Some("/srv/pod/static/db.sql".into()));
    assert!(matches!(
        classify_engine_error("Error: x: database disk image is malformed\n"),
        EngineError::DbCorrupt { .. }
    ));
}

#[test]
fn podman_5_reports_sqlite_and_its_database_is_where_libpod_puts_it() {
    let debug = parse_debug_paths(
        "time=\"x\" level=info msg=\"Using sqlite as database backend\"\ntime=\"x\" level=debug msg=\"Using graph root /var/lib/containers/storage\"\ntime=\"x\" level=debug msg=\"Using static dir /var/lib/containers/storage/libpod\"\n",
    );
    assert!(debug.sqlite);
    let p = engine_paths(None, &debug, None, 0, None);
    // The default static dir: the database sits in the graph root.
    assert_eq!(p.db, Some("/var/lib/containers/storage/db.sql".into()));
    assert_eq!(
        p.static_dir,
        Some("/var/lib/containers/storage/libpod".into())
    );
    // `podman info` says so too (podman 5's host.databaseBackend).
    let info: Info = serde_json::from_str(
        r#"{"host":{"databaseBackend":"sqlite","networkBackend":"netavark"}}"#,
    )
    .unwrap();
    let debug = DebugPaths {
        static_dir: Some("/t/static".into()),
        ..DebugPaths::default()
    };
    let p = engine_paths(Some(&info), &debug, None, 0, None);
    assert_eq!(p.db, Some("/t/static/db.sql".into()));
    assert_eq!(info.host.network_backend, "netavark");
    // A BoltDB podman 5 keeps (it exists from podman 4): the debug line names it.
    let bolt = parse_debug_paths(INFO_DEBUG);
    assert!(!bolt.sqlite);
    assert_eq!(engine_paths(None, &bolt, None, 0, None).db, Some(db()));
}

#[test]
fn config_files_give_the_keys_podman_would_read() {
    let text = "[containers]\nstatic_dir = \"/wrong\"\n[engine]\n# static_dir = \"/commented\"\nstatic_dir = \"/srv/static\" # trailing\n[network]\nx = 1\n";
    assert_eq!(
        toml_string(text, "engine", "static_dir").as_deref(),
        Some("/srv/static")
    );
    assert_eq!(toml_string(text, "engine", "tmp_dir"), None);
    assert_eq!(
        toml_string("[storage]\ngraphroot='/g'\n", "storage", "graphroot").as_deref(),
        Some("/g")
    );
    assert_eq!(sqlite_db_path(None, None), None);
}
