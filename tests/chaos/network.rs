//! Network faults: the archy network deleted while containers run; recreated with a wrong subnet.

use crate::common::*;
use crate::support::*;

fn subnet_of(root: &TestRoot) -> String {
    root.podman_ok(&[
        "network",
        "inspect",
        "--format",
        "{{range .Subnets}}{{.Subnet}}{{end}}",
        &root.network,
    ])
}

fn network_fault(fault: &str, wrong_subnet: bool) {
    let mut case = Case::new(
        fault,
        "network recreated with its subnet; containers recreated; volumes intact",
    );
    let root = TestRoot::new();
    let a = app_with_data(&root, "na", "");
    let b = app_with_data(&root, "nb", "");
    case.run();
    // `network rm -f` removes the containers attached to it too.
    root.podman_ok(&["network", "rm", "-f", &root.network]);
    if wrong_subnet {
        // 10.230-249.x.0/24 is never a TestRoot subnet.
        let octets: Vec<&str> = root.subnet.split('.').collect();
        let wrong = format!(
            "10.{}.{}.0/24",
            230 + octets[1].parse::<u32>().unwrap() % 20,
            octets[2]
        );
        root.podman_ok(&["network", "create", "--subnet", &wrong, &root.network]);
    }
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(subnet_of(&root), root.subnet);
    for (app, data) in [("na", &a), ("nb", &b)] {
        assert_eq!(root.state(&format!("archy-{app}")), "running", "{out:?}");
        case.data_kept(
            volume_file(&root, app).as_deref() == Some(data.as_str()),
            app,
        );
    }
    let hosts = root.podman_ok(&["exec", "archy-na", "cat", "/etc/hosts"]);
    assert!(
        hosts.contains(&root.gateway),
        "host alias on the right gateway: {hosts}"
    );
    case.pass();
}

#[test]
fn network_deleted_while_containers_run() {
    network_fault(
        "network: `archy` network deleted while containers run",
        false,
    );
}

#[test]
fn network_recreated_with_the_wrong_subnet() {
    network_fault(
        "network: `archy` network recreated with the wrong subnet",
        true,
    );
}

#[test]
fn concurrent_targeted_reconciles_create_the_network() {
    let mut case = Case::new(
        "network: absent, and several targeted `reconcile APP` runs create it at once",
        "\"already exists\" is re-inspected and accepted when the subnet matches; every run succeeds",
    );
    let root = TestRoot::new();
    let apps: Vec<String> = (1..=6).map(|i| format!("c{i}")).collect();
    for app in &apps {
        root.simple_manifest(app, "");
    }
    for round in 0..iterations(2, 5) {
        case.run();
        let _ = root.podman(&["rm", "-a", "-f", "-t", "0"]);
        let _ = root.podman(&["network", "rm", "-f", &root.network]);
        let children: Vec<_> = apps
            .iter()
            .map(|app| root.archy_cmd().args(["reconcile", app]).output_spawn())
            .collect();
        for (app, child) in apps.iter().zip(children) {
            let out = Out::from(child.wait_with_output().unwrap());
            assert_eq!(out.code, 0, "round {round} {app}: {out:?}");
        }
        assert_eq!(subnet_of(&root), root.subnet);
        for app in &apps {
            assert_eq!(root.state(&format!("archy-{app}")), "running");
        }
        case.pass();
    }
}

trait SpawnPiped {
    fn output_spawn(&mut self) -> std::process::Child;
}

impl SpawnPiped for std::process::Command {
    fn output_spawn(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}
