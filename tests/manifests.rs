//! The bundled appliance manifests and the demo set are valid and describe the appliance.

use std::path::Path;

use archy::manifest::{load_dir, Policy};

#[test]
fn appliance_manifests_validate() {
    let loaded = load_dir(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests")),
        &Policy::default(),
    )
    .unwrap();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut apps: Vec<&str> = loaded.apps.iter().map(|m| m.app.as_str()).collect();
    apps.sort();
    assert_eq!(
        apps,
        vec![
            "bitcoin-knots",
            "bitcoin-ui",
            "electrs-ui",
            "electrumx",
            "lnd",
            "lnd-ui"
        ]
    );
    let renderers: Vec<&str> = loaded
        .apps
        .iter()
        .flat_map(|m| m.configs.iter().map(|c| c.render.as_str()))
        .collect();
    for r in [
        "bitcoin.conf",
        "lnd.conf",
        "electrumx.env",
        "nginx-ui.conf",
        "containers.conf",
    ] {
        assert!(renderers.contains(&r), "{r} rendered by some app");
    }
    // Every volume source of the appliance lies under archy's or the release's roots.
    let policy = Policy {
        allowed_volume_roots: vec!["/var/lib/archy".into(), "/opt/archipelago/current".into()],
    };
    let strict = load_dir(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests")),
        &policy,
    )
    .unwrap();
    assert!(strict.errors.is_empty(), "{:?}", strict.errors);
}

#[test]
fn demo_manifests_validate_once_placed() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/manifests"
    ));
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path())
            .unwrap()
            .replace("@DEMO@", "/tmp/archy-demo");
        std::fs::write(dir.path().join(entry.file_name()), text).unwrap();
    }
    let loaded = load_dir(dir.path(), &Policy::default()).unwrap();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.apps.len(), 3);
    assert!(
        loaded.apps.iter().all(|m| m.build.is_some()),
        "the demo needs no registry"
    );
}
