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
