//! Hostile manifests: proptest over arbitrary text and over structured manifests with hostile
//! strings (parse + validate never panic; every rejection names a key or a YAML location), and
//! hand cases through the real binary.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use archy::manifest::{parse, validate, validate_set, Policy};
use proptest::prelude::*;

use crate::common::*;
use crate::support::*;

/// A rejection names a key (`key \`…\``, serde's `field \`…\``), a YAML location (`at line N
/// column M`) or the document as a whole (`document root: `). Not merely any backtick: the
/// document-root hint itself holds some, which once let every message through.
fn is_clear(err: &str) -> bool {
    let located = err.match_indices(" at line ").any(|(i, _)| {
        let rest = &err[i + " at line ".len()..];
        rest.starts_with(|c: char| c.is_ascii_digit()) && rest.contains(" column ")
    });
    let keyed = err.contains("key `") || err.contains("field `");
    !err.trim().is_empty() && (located || keyed || err.starts_with("document root: "))
}

#[test]
fn clear_means_a_key_a_line_or_the_root() {
    assert!(is_clear("key `ports`: `x` is not a port"));
    assert!(is_clear("unknown field `a0`, expected one of `app`"));
    assert!(is_clear(
        "mapping values are not allowed at line 2 column 8"
    ));
    assert!(is_clear(
        "document root: invalid type (a manifest is one YAML mapping)"
    ));
    assert!(!is_clear(
        "invalid type (a manifest is one YAML mapping of `app`)"
    ));
    assert!(!is_clear("something at line endings"));
    assert!(!is_clear("  "));
}

fn check(text: &str, policy: &Policy) -> Result<(), String> {
    match parse(text) {
        Err(e) => {
            prop_assert_clear(&e, text)?;
        }
        Ok(m) => {
            if let Err(e) = validate(&m, policy) {
                prop_assert_clear(&e, text)?;
            } else {
                // Accepted: what reaches podman's argv is within the documented grammar.
                let name = m.container_name();
                if !archy::manifest::is_podman_name(&name) {
                    return Err(format!("accepted container name {name:?}"));
                }
                for k in m.env.keys() {
                    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(format!("accepted env key {k:?}"));
                    }
                }
                let (_, _) = validate_set(vec![m]);
            }
        }
    }
    Ok(())
}

fn prop_assert_clear(err: &str, text: &str) -> Result<(), String> {
    if is_clear(err) {
        Ok(())
    } else {
        Err(format!("unclear rejection {err:?} for {text:?}"))
    }
}

fn config(quick: u32, full_count: u32) -> ProptestConfig {
    ProptestConfig {
        cases: iterations(quick as usize, full_count as usize) as u32,
        // Bounded in time too, whatever the case count.
        timeout: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Tokens that make YAML-ish text: keys, indicators, anchors, tags, hostile scalars.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("app: ".to_string()),
        Just("image: ".to_string()),
        Just("build: ".to_string()),
        Just("context: ".to_string()),
        Just("env: ".to_string()),
        Just("ports: ".to_string()),
        Just("volumes: ".to_string()),
        Just("configs: ".to_string()),
        Just("depends_on: ".to_string()),
        Just("container_name: ".to_string()),
        Just("stop_timeout: ".to_string()),
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("- ".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(", ".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("!!binary ".to_string()),
        Just("!tag ".to_string()),
        Just("<<: ".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("|\n".to_string()),
        Just("---\n".to_string()),
        Just("~".to_string()),
        Just("99999999999999999999".to_string()),
        Just("-1".to_string()),
        Just("../../etc".to_string()),
        Just("$(rm -rf /)".to_string()),
        Just("a;b|c&d`e`".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{feff}".to_string()),
        "[a-z0-9:/._-]{0,12}",
        any::<String>(),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|v| v.concat())
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,10}",
        Just("../../etc".to_string()),
        Just("a;rm -rf /".to_string()),
        Just("$(touch /tmp/x)".to_string()),
        Just("`id`".to_string()),
        Just("--privileged".to_string()),
        Just("-v=/:/host".to_string()),
        Just("a b".to_string()),
        Just("a\nb".to_string()),
        Just(String::new()),
        Just("/etc:/etc".to_string()),
        Just("0.0.0.0:22:22".to_string()),
        any::<String>(),
    ]
}

/// Structured manifests: every key present or not, each value a hostile string.
fn structured() -> impl Strategy<Value = String> {
    (
        hostile_string(),
        proptest::option::of(hostile_string()),
        proptest::option::of(hostile_string()),
        proptest::collection::btree_map(hostile_string(), hostile_string(), 0..3),
        proptest::collection::vec(hostile_string(), 0..3),
        proptest::collection::vec(hostile_string(), 0..3),
        proptest::collection::vec(hostile_string(), 0..3),
        proptest::option::of(hostile_string()),
        proptest::option::of(hostile_string()),
        proptest::option::of(proptest::collection::vec(hostile_string(), 0..3)),
    )
        .prop_map(
            |(app, name, image, env, ports, volumes, deps, network, restart, command)| {
                let mut doc = serde_json::Map::new();
                doc.insert("app".into(), app.into());
                if let Some(n) = name {
                    doc.insert("container_name".into(), n.into());
                }
                doc.insert("image".into(), image.unwrap_or_else(|| "i".into()).into());
                let env: BTreeMap<String, String> = env;
                doc.insert("env".into(), serde_json::to_value(env).unwrap());
                doc.insert("ports".into(), ports.into());
                doc.insert("volumes".into(), volumes.into());
                doc.insert("depends_on".into(), deps.into());
                if let Some(n) = network {
                    doc.insert("network".into(), n.into());
                }
                if let Some(r) = restart {
                    doc.insert("restart".into(), r.into());
                }
                if let Some(c) = command {
                    doc.insert("command".into(), c.into());
                }
                serde_norway::to_string(&serde_json::Value::Object(doc)).unwrap()
            },
        )
}

#[test]
fn fuzz_manifest_text() {
    let mut case = Case::new(
        "input: arbitrary YAML-ish text (proptest)",
        "parse+validate never panic; every rejection names a key or a YAML location",
    );
    case.run();
    let policy = Policy {
        allowed_volume_roots: vec!["/var/lib/archy".into()],
        ..Policy::default()
    };
    proptest!(config(256, 5000), |(text in yamlish())| {
        check(&text, &policy).map_err(TestCaseError::fail)?;
    });
    case.pass();
}

#[test]
fn fuzz_structured_manifests() {
    let mut case = Case::new(
        "input: structured manifests with hostile strings (proptest)",
        "rejected naming the key, or accepted only within the argv grammar (no shell)",
    );
    case.run();
    let policy = Policy {
        allowed_volume_roots: vec!["/var/lib/archy".into()],
        ..Policy::default()
    };
    proptest!(config(256, 5000), |(text in structured())| {
        check(&text, &policy).map_err(TestCaseError::fail)?;
    });
    case.pass();
}

/// A hostile manifest of the matrix: the file it goes in (`<file>.yaml`), its text, what the
/// rejection must say, and the environment the rejection needs.
pub(crate) struct Hostile {
    pub fault: &'static str,
    pub file: &'static str,
    pub yaml: String,
    pub expect: Vec<String>,
    pub env: Vec<(&'static str, &'static str)>,
}

/// Every hostile manifest of the matrix, beside an app `good` (file `good.yaml`) that publishes
/// host port `port`. Used by the cases here and by the soak (put in, then taken out).
pub(crate) fn hostile_manifests(good: &str, port: u16) -> Vec<Hostile> {
    // Only keys a manifest knows, so the bound on alias expansion (not the unknown-key check)
    // is what refuses it: 100 KB repeated ~39,000 times, 3.9 GB if expanded.
    let mut bomb = format!(
        "app: bomb\nimage: i\ncommand: [&a \"{}\"",
        "x".repeat(100 * 1024)
    );
    while bomb.len() < 250 * 1024 {
        bomb.push_str(", *a");
    }
    bomb.push_str("]\n");
    let h = |fault, file, yaml: String, expect: &[&str], env| Hostile {
        fault,
        file,
        yaml,
        expect: expect
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        env,
    };
    vec![
        h(
            "input: YAML bomb (billion laughs aliases)",
            "bomb",
            bomb,
            &["bomb.yaml", "YAML aliases expand this manifest past"],
            vec![],
        ),
        h(
            "input: huge manifest (300 KiB > 256 KiB limit)",
            "huge",
            format!("app: huge\nimage: i\n# {}\n", "x".repeat(300 * 1024)),
            &["huge.yaml", "limited to 262144 bytes"],
            vec![],
        ),
        h(
            "input: duplicate app ids",
            "zz-dup",
            format!("app: {good}\nimage: {TEST_IMAGE}\npull: never\n"),
            &["zz-dup.yaml", "already defined"],
            vec![],
        ),
        h(
            "input: `app: ../../etc`",
            "trav",
            "app: ../../etc\nimage: i\n".into(),
            &["key `app`", "../../etc"],
            vec![],
        ),
        h(
            "input: container name with shell metacharacters",
            "meta",
            "app: meta\nimage: i\ncontainer_name: \"x; touch /tmp/pwned\"\n".into(),
            &["key `container_name`"],
            vec![],
        ),
        h(
            "input: env key with shell metacharacters",
            "metaenv",
            "app: metaenv\nimage: i\nenv: {\"A$(id)\": x}\n".into(),
            &["key `env`"],
            vec![],
        ),
        h(
            "input: bind-mount source outside ARCHY_ALLOWED_VOLUME_ROOTS",
            "vol",
            "app: vol\nimage: i\nvolumes: [\"/etc:/host-etc\"]\n".into(),
            &["key `volumes`", "outside the allowed roots"],
            vec![("ARCHY_ALLOWED_VOLUME_ROOTS", "/var/lib/archy")],
        ),
        Hostile {
            expect: vec![
                "key `ports`".into(),
                format!("app `{good}`"),
                "app `zz-port`".into(),
                "zz-port.yaml".into(),
                format!("{good}.yaml"),
            ],
            ..h(
                "input: host port already used by another app",
                "zz-port",
                format!("app: zz-port\nimage: i\nports: [\"127.0.0.1:{port}:80\"]\n"),
                &[],
                vec![],
            )
        },
    ]
}

/// One bad manifest beside a good one, through the binary: exit 2, the message, the good app
/// still converges.
fn rejected(fault: &str) {
    rejected_beside(fault, "", 0);
}

fn rejected_beside(fault: &str, good: &str, port: u16) {
    let hostile = hostile_manifests("good", port)
        .into_iter()
        .find(|h| h.fault == fault)
        .expect("a hostile manifest of that name");
    let mut case = Case::new(fault, "rejected with a clear error; other apps converge");
    let root = TestRoot::new();
    root.simple_manifest("good", good);
    root.manifest(hostile.file, &hostile.yaml);
    case.run();
    let started = Instant::now();
    let mut cmd = root.archy_cmd();
    cmd.arg("reconcile");
    for (k, v) in &hostile.env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let (code, text) = (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(code, Some(2), "{text}");
    for e in &hostile.expect {
        assert!(text.contains(e.as_str()), "expected {e:?} in: {text}");
    }
    assert_eq!(root.state("archy-good"), "running", "{text}");
    case.pass();
}

#[test]
fn yaml_bomb() {
    rejected("input: YAML bomb (billion laughs aliases)");
}

#[test]
fn huge_manifest() {
    rejected("input: huge manifest (300 KiB > 256 KiB limit)");
}

#[test]
fn duplicate_app_ids() {
    rejected("input: duplicate app ids");
}

#[test]
fn app_id_path_traversal() {
    rejected("input: `app: ../../etc`");
}

#[test]
fn shell_metacharacters_in_names_and_env_keys() {
    rejected("input: container name with shell metacharacters");
    rejected("input: env key with shell metacharacters");
}

#[test]
fn volume_outside_allowed_roots() {
    rejected("input: bind-mount source outside ARCHY_ALLOWED_VOLUME_ROOTS");
}

#[test]
fn host_port_used_by_another_app() {
    let port = free_port();
    rejected_beside(
        "input: host port already used by another app",
        &format!("ports: [\"{port}:80\"]\n"),
        port,
    );
}

#[test]
fn metacharacters_in_values_reach_podman_literally() {
    let mut case = Case::new(
        "input: shell metacharacters in env values and command args",
        "passed to podman as argv, literally; no shell ever runs them",
    );
    let root = TestRoot::new();
    let marker = root.dir.join("pwned");
    let m = marker.display();
    let value = format!("$(touch {m}); `touch {m}` && touch {m} | x > {m}");
    root.simple_manifest("lit", &format!("env: {{EVIL: {value:?}}}\n"));
    case.run();
    let out = root.archy(&["reconcile", "-v"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!marker.exists(), "a shell ran a value");
    let env = root.podman_ok(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        "archy-lit",
    ]);
    assert!(env.lines().any(|l| l == format!("EVIL={value}")), "{env}");
    case.pass();
}

#[test]
fn manifest_entries_that_cannot_be_read_as_files() {
    let mut case = Case::new(
        "input: `lnd.yaml` a dangling symlink, a symlink loop, a directory, a FIFO, a link to /dev/zero",
        "invalid manifest (exit 2) naming the file and the reason; `--prune` removes nothing; other apps converge",
    );
    let root = TestRoot::new();
    root.simple_manifest("lnd", "");
    root.simple_manifest("other", "");
    let out = root.archy(&["reconcile"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lnd_id = root.container_id("archy-lnd");
    let lnd = root.manifests.join("lnd.yaml");
    let saved = std::fs::read(&lnd).unwrap();
    type Make = fn(&std::path::Path);
    let faults: [(&str, &str, Make); 5] = [
        ("dangling symlink", "dangling symlink", |p| {
            std::os::unix::fs::symlink("/nonexistent/lnd.yaml", p).unwrap();
        }),
        ("symlink loop", "symlink loop", |p| {
            std::os::unix::fs::symlink(p.file_name().unwrap(), p).unwrap();
        }),
        ("directory", "a directory", |p| {
            std::fs::create_dir(p).unwrap();
        }),
        ("FIFO", "a FIFO", |p| {
            assert!(std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .unwrap()
                .success());
        }),
        ("/dev/zero", "a device", |p| {
            std::os::unix::fs::symlink("/dev/zero", p).unwrap();
        }),
    ];
    for (what, reason, make) in faults {
        case.run();
        std::fs::remove_file(&lnd).unwrap();
        make(&lnd);
        for args in [vec!["reconcile"], vec!["reconcile", "--prune"]] {
            let out = root.archy(&args);
            assert_eq!(out.code, 2, "{what} {args:?}: {out:?}");
            assert!(
                out.all().contains("invalid manifest")
                    && out.all().contains(&lnd.display().to_string())
                    && out.all().contains(reason),
                "{what} {args:?}: {out:?}"
            );
        }
        case.data_kept(
            root.container("archy-lnd").is_some() && root.container_id("archy-lnd") == lnd_id,
            "archy-lnd pruned",
        );
        assert_eq!(root.state("archy-other"), "running");
        if std::fs::symlink_metadata(&lnd).unwrap().is_dir() {
            std::fs::remove_dir(&lnd).unwrap();
        } else {
            std::fs::remove_file(&lnd).unwrap();
        }
        std::fs::write(&lnd, &saved).unwrap();
        case.pass();
    }
}
