//! Pure planning: desired apps + podman's listing → one action per app, plus orphans.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::manifest::Owner;
use crate::podman::{Container, ContainerState};

/// What an app needs to reach its desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Running and matching: nothing to do.
    Ok,
    /// No container: create and start it.
    Create,
    /// The container differs from the spec: stop, remove (volumes kept), create, start.
    Recreate,
    /// The container matches but is not running.
    Start,
    /// The container matches but a file it consumes was rewritten: restart it to re-read it.
    Restart,
    /// The container matches but is paused.
    Unpause,
    /// An unmanaged container holds the name and `--adopt` was given: replace it.
    Adopt,
    /// An unmanaged container holds the name: left alone (needs `--adopt`).
    Conflict,
    /// The app is disabled and its container exists: stop and remove it (volumes kept).
    Remove,
    /// The app is disabled and has no container.
    Absent,
    /// The app's container is run by systemd (Quadlet): archy leaves it alone.
    Delegated,
}

impl Action {
    /// Whether carrying out this action creates a container.
    pub fn creates(self) -> bool {
        matches!(self, Action::Create | Action::Recreate | Action::Adopt)
    }
    /// Whether this action changes anything.
    pub fn changes(self) -> bool {
        !matches!(
            self,
            Action::Ok | Action::Absent | Action::Delegated | Action::Conflict
        )
    }
    /// For "done" lines: created, recreated, started …
    pub fn past_tense(self) -> &'static str {
        match self {
            Action::Create => "created",
            Action::Recreate => "recreated",
            Action::Start => "started",
            Action::Restart => "restarted",
            Action::Unpause => "unpaused",
            Action::Adopt => "adopted",
            Action::Remove => "removed",
            other => other.as_str(),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Ok => "ok",
            Action::Create => "create",
            Action::Recreate => "recreate",
            Action::Start => "start",
            Action::Restart => "restart",
            Action::Unpause => "unpause",
            Action::Adopt => "adopt",
            Action::Conflict => "conflict",
            Action::Remove => "remove",
            Action::Absent => "absent",
            Action::Delegated => "delegated",
        }
    }
}

/// The desired state of one app, as planning needs it.
#[derive(Debug, Clone)]
pub struct Desired {
    pub app: String,
    pub container_name: String,
    pub spec_hash: String,
    pub enabled: bool,
    pub owner: Owner,
    /// Why the running container must restart although it matches (a consumed file was rewritten).
    pub restart_reason: Option<String>,
}

/// The plan for one app.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppPlan {
    pub app: String,
    pub container_name: String,
    pub action: Action,
    pub reason: String,
    /// The managed container the action works on, if any.
    pub existing: Option<String>,
    /// The unmanaged container holding the name (for Adopt / Conflict).
    pub squatter: Option<String>,
    /// Further managed containers of this app (duplicates, e.g. renamed by hand): removed.
    pub duplicates: Vec<String>,
}

/// A managed container whose app has no manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Orphan {
    pub app: String,
    pub container_name: String,
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub apps: Vec<AppPlan>,
    pub orphans: Vec<Orphan>,
}

/// Options that change planning.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub adopt: bool,
}

/// Decide one action per desired app. `managed` is the labelled listing; `all` is the full
/// listing when known (it reveals unmanaged containers squatting a desired name), and
/// `known_apps` is every app id that has a manifest (valid or not) so orphans are only
/// containers no manifest claims.
pub fn plan(
    desired: &[Desired],
    managed: &[Container],
    all: Option<&[Container]>,
    known_apps: &BTreeSet<String>,
    options: Options,
) -> Plan {
    let mut by_app: BTreeMap<&str, Vec<&Container>> = BTreeMap::new();
    for c in managed.iter().filter(|c| c.is_managed()) {
        by_app.entry(c.app().unwrap_or("")).or_default().push(c);
    }
    let mut apps = Vec::new();
    for d in desired {
        let candidates = by_app.get(d.app.as_str()).cloned().unwrap_or_default();
        // Prefer the container with the desired name, then the newest; the rest are duplicates.
        let chosen = candidates
            .iter()
            .find(|c| c.name() == d.container_name)
            .or_else(|| candidates.first())
            .copied();
        let duplicates: Vec<String> = candidates
            .iter()
            .filter(|c| Some(c.id.as_str()) != chosen.map(|c| c.id.as_str()))
            .map(|c| c.id.clone())
            .collect();
        let squatter = all
            .and_then(|all| {
                all.iter()
                    .find(|c| !c.is_managed() && c.name() == d.container_name)
            })
            .map(|c| c.id.clone());
        let (action, reason) = decide(d, chosen, squatter.is_some(), options);
        apps.push(AppPlan {
            app: d.app.clone(),
            container_name: d.container_name.clone(),
            action,
            reason,
            existing: chosen.map(|c| c.id.clone()),
            squatter: if matches!(action, Action::Adopt | Action::Conflict) {
                squatter
            } else {
                None
            },
            duplicates,
        });
    }
    let orphans = managed
        .iter()
        .filter(|c| c.is_managed() && !known_apps.contains(c.app().unwrap_or("")))
        .map(|c| Orphan {
            app: c.app().unwrap_or("").to_string(),
            container_name: c.name().to_string(),
            id: c.id.clone(),
        })
        .collect();
    Plan { apps, orphans }
}

fn decide(
    d: &Desired,
    current: Option<&Container>,
    name_squatted: bool,
    options: Options,
) -> (Action, String) {
    if d.owner == Owner::Systemd {
        return (Action::Delegated, "owned by systemd (Quadlet unit)".into());
    }
    if !d.enabled {
        return match current {
            Some(c) => (
                Action::Remove,
                format!("app is disabled; container {} exists", c.name()),
            ),
            None => (Action::Absent, "app is disabled".into()),
        };
    }
    let Some(c) = current else {
        if name_squatted {
            return if options.adopt {
                (
                    Action::Adopt,
                    format!(
                        "unmanaged container {} holds the name; adopting",
                        d.container_name
                    ),
                )
            } else {
                (Action::Conflict, format!("unmanaged container {} holds the name; left alone (use --adopt to replace it)", d.container_name))
            };
        }
        return (Action::Create, "no container".into());
    };
    if c.name() != d.container_name {
        return (
            Action::Recreate,
            format!(
                "container is named {}, expected {}",
                c.name(),
                d.container_name
            ),
        );
    }
    match c.spec_hash() {
        Some(h) if h == d.spec_hash => {}
        Some(h) => {
            return (
                Action::Recreate,
                format!(
                    "spec changed ({} -> {})",
                    &h[..h.len().min(12)],
                    &d.spec_hash[..12]
                ),
            )
        }
        None => return (Action::Recreate, "container has no spec hash".into()),
    }
    match &c.state {
        ContainerState::Running => match &d.restart_reason {
            Some(reason) => (Action::Restart, reason.clone()),
            None => (Action::Ok, "running".into()),
        },
        ContainerState::Paused => (Action::Unpause, "paused".into()),
        state => (Action::Start, format!("state is {state}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(app: &str, hash: &str) -> Desired {
        Desired {
            app: app.into(),
            container_name: format!("archy-{app}"),
            spec_hash: hash.repeat(64 / hash.len()),
            enabled: true,
            owner: Owner::Archy,
            restart_reason: None,
        }
    }

    fn container(app: &str, name: &str, hash: &str, state: &str) -> Container {
        let mut c = Container {
            id: format!("id-{name}"),
            names: vec![name.into()],
            state: ContainerState::parse(state),
            ..Default::default()
        };
        c.labels.insert("io.archy.managed".into(), "true".into());
        c.labels.insert("io.archy.app".into(), app.into());
        c.labels
            .insert("io.archy.spec-hash".into(), hash.repeat(64 / hash.len()));
        c
    }

    fn known(apps: &[&str]) -> BTreeSet<String> {
        apps.iter().map(std::string::ToString::to_string).collect()
    }

    fn actions(p: &Plan) -> Vec<(&str, Action)> {
        p.apps.iter().map(|a| (a.app.as_str(), a.action)).collect()
    }

    #[test]
    fn each_state_maps_to_its_action() {
        let want = vec![
            desired("a", "a"),
            desired("b", "b"),
            desired("c", "c"),
            desired("d", "d"),
            desired("e", "e"),
        ];
        let have = vec![
            container("a", "archy-a", "a", "running"),
            container("b", "archy-b", "0", "running"),
            container("c", "archy-c", "c", "exited"),
            container("d", "archy-d", "d", "created"),
        ];
        let p = plan(
            &want,
            &have,
            None,
            &known(&["a", "b", "c", "d", "e"]),
            Options::default(),
        );
        assert_eq!(
            actions(&p),
            vec![
                ("a", Action::Ok),
                ("b", Action::Recreate),
                ("c", Action::Start),
                ("d", Action::Start),
                ("e", Action::Create)
            ]
        );
        assert!(p.apps[1].reason.starts_with("spec changed"));
        assert!(p.orphans.is_empty());
    }

    #[test]
    fn renamed_container_is_recreated_and_duplicates_listed() {
        let want = vec![desired("a", "a")];
        let have = vec![
            container("a", "renamed", "a", "running"),
            container("a", "archy-a", "a", "running"),
        ];
        let p = plan(&want, &have, None, &known(&["a"]), Options::default());
        assert_eq!(p.apps[0].action, Action::Ok);
        assert_eq!(p.apps[0].duplicates, vec!["id-renamed".to_string()]);
        let p = plan(&want, &have[..1], None, &known(&["a"]), Options::default());
        assert_eq!(p.apps[0].action, Action::Recreate);
        assert!(p.apps[0].reason.contains("named renamed"));
    }

    #[test]
    fn squatter_is_conflict_unless_adopting() {
        let want = vec![desired("a", "a")];
        let squatter = Container {
            id: "old".into(),
            names: vec!["archy-a".into()],
            state: ContainerState::Running,
            ..Default::default()
        };
        let all = vec![squatter];
        let p = plan(&want, &[], Some(&all), &known(&["a"]), Options::default());
        assert_eq!(p.apps[0].action, Action::Conflict);
        assert!(p.apps[0].reason.contains("--adopt"));
        let p = plan(
            &want,
            &[],
            Some(&all),
            &known(&["a"]),
            Options { adopt: true },
        );
        assert_eq!(p.apps[0].action, Action::Adopt);
        assert_eq!(p.apps[0].squatter.as_deref(), Some("old"));
    }

    #[test]
    fn orphans_are_managed_containers_without_manifest() {
        let have = vec![
            container("gone", "archy-gone", "a", "running"),
            container("broken", "archy-broken", "a", "running"),
        ];
        let p = plan(&[], &have, None, &known(&["broken"]), Options::default());
        assert_eq!(p.orphans.len(), 1);
        assert_eq!(p.orphans[0].app, "gone");
    }

    #[test]
    fn rewritten_config_restarts_a_matching_running_container() {
        let mut d = desired("a", "a");
        d.restart_reason = Some("config /x rewritten".into());
        let have = vec![container("a", "archy-a", "a", "running")];
        let p = plan(&[d], &have, None, &known(&["a"]), Options::default());
        assert_eq!(p.apps[0].action, Action::Restart);
        assert_eq!(p.apps[0].reason, "config /x rewritten");
    }

    #[test]
    fn disabled_and_delegated_apps() {
        let mut off = desired("a", "a");
        off.enabled = false;
        let mut sys = desired("b", "b");
        sys.owner = Owner::Systemd;
        let have = vec![container("a", "archy-a", "a", "running")];
        let p = plan(
            &[off.clone(), sys],
            &have,
            None,
            &known(&["a", "b"]),
            Options::default(),
        );
        assert_eq!(
            actions(&p),
            vec![("a", Action::Remove), ("b", Action::Delegated)]
        );
        let p = plan(&[off], &[], None, &known(&["a"]), Options::default());
        assert_eq!(p.apps[0].action, Action::Absent);
    }
}
