//! Rolling back: decide (pure [`plan`]) from the symlinks, the previous release's static checks
//! and any interrupted rollback; then act ([`execute`]): record the intent, switch `current`,
//! run the restart command once, append to history, clear the intent.
//!
//! After a rollback `current` and `previous` name the same release, which is how a second
//! rollback knows there is nothing left to do (and never swaps back to the bad release).

use anyhow::{Context, Result};
use serde_json::json;

use super::journal::{Journal, RollbackIntent};
use super::release::{Layout, LinkState};
use super::tarball::{self, Violation};
use crate::exec::Cmd;

/// What the previous release's directory looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviousDir {
    /// Not looked at (no previous, or it equals current).
    Unchecked,
    Missing,
    Violations(Vec<Violation>),
    Clean,
}

/// Everything the rollback decision depends on.
#[derive(Debug, Clone)]
pub struct Facts {
    pub current: LinkState,
    pub previous: LinkState,
    pub previous_dir: PreviousDir,
    pub intent: Option<RollbackIntent>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do; the message says why.
    NothingToDo(String),
    /// An earlier rollback switched `current` but may not have restarted: finish it.
    Resume(RollbackIntent),
    /// Point `current` at `to`.
    Switch { from: Option<String>, to: String },
    /// Cannot roll back; `current` stays as it is.
    Refuse(String),
}

/// Decide what a rollback should do (pure).
pub fn plan(facts: &Facts) -> Plan {
    if let Some(intent) = &facts.intent {
        if facts.current.version() == Some(intent.to.as_str()) {
            return Plan::Resume(intent.clone());
        }
    }
    let Some(previous) = facts.previous.version() else {
        return Plan::Refuse("no previous release to roll back to (no `previous` symlink)".into());
    };
    if facts.current.version() == Some(previous) {
        return Plan::NothingToDo(format!(
            "already rolled back: current and previous are both {previous}"
        ));
    }
    match &facts.previous_dir {
        PreviousDir::Missing => Plan::Refuse(format!(
            "previous release {previous} is missing (releases/{previous} does not exist)"
        )),
        PreviousDir::Violations(violations) => {
            let list: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
            Plan::Refuse(format!(
                "previous release {previous} fails the static checks:\n{}",
                list.join("\n")
            ))
        }
        PreviousDir::Unchecked | PreviousDir::Clean => Plan::Switch {
            from: facts.current.version().map(String::from),
            to: previous.to_string(),
        },
    }
}

/// Read the facts from disk (scans the previous release only when it would be used).
pub fn gather(layout: &Layout, journal: &Journal) -> Result<Facts> {
    let current = layout.current()?;
    let previous = layout.previous()?;
    let previous_dir = match previous.version() {
        Some(v) if current.version() != Some(v) => {
            let dir = layout.release_dir(v);
            if dir.is_dir() {
                let entries = tarball::scan_dir(&dir)?;
                let violations = tarball::check_entries(&entries, &[]);
                if violations.is_empty() {
                    PreviousDir::Clean
                } else {
                    PreviousDir::Violations(violations)
                }
            } else {
                PreviousDir::Missing
            }
        }
        _ => PreviousDir::Unchecked,
    };
    Ok(Facts {
        current,
        previous,
        previous_dir,
        intent: journal.intent()?,
    })
}

/// What a rollback did; serialised snake_case, as the JSON output and status records say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackAction {
    RolledBack,
    /// Finished a rollback an earlier run left half done.
    Resumed,
    /// Dry run.
    WouldRollBack,
    NothingToDo,
    Refused,
}

/// What a rollback did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub action: RollbackAction,
    pub from: Option<String>,
    pub to: Option<String>,
    pub message: String,
    /// The restart command line, when it ran.
    pub restarted: Option<String>,
}

impl Outcome {
    pub fn changed(&self) -> bool {
        matches!(
            self.action,
            RollbackAction::RolledBack | RollbackAction::Resumed
        )
    }
}

/// Carry out a rollback under the caller's update lock. `source` names the caller in history.
///
/// Long, and kept whole on purpose: the order of its steps (intent written, link switched,
/// restart run, history appended, pending and intent cleared) is what makes a kill -9 at any
/// point resumable, and that order is easiest to check when it reads top to bottom in one place.
#[allow(clippy::too_many_lines)]
pub fn execute(
    layout: &Layout,
    journal: &Journal,
    restart: &[String],
    reason: &str,
    dry_run: bool,
    source: &str,
) -> Result<Outcome> {
    let facts = gather(layout, journal)?;
    let decided = plan(&facts);
    let (from, to, intent) = match decided {
        Plan::NothingToDo(message) => {
            if !dry_run {
                // A stale intent (current moved elsewhere since) means nothing any more.
                journal.clear_intent()?;
            }
            return Ok(Outcome {
                action: RollbackAction::NothingToDo,
                from: None,
                to: facts.current.version().map(String::from),
                message,
                restarted: None,
            });
        }
        Plan::Refuse(message) => {
            return Ok(Outcome {
                action: RollbackAction::Refused,
                from: facts.current.version().map(String::from),
                to: facts.previous.version().map(String::from),
                message,
                restarted: None,
            })
        }
        Plan::Resume(intent) => (intent.from.clone(), intent.to.clone(), Some(intent)),
        Plan::Switch { from, to } => (from, to, None),
    };
    let command_line = Cmd::new(&restart[0]).args(&restart[1..]).display();
    if dry_run {
        let message = match &intent {
            Some(_) => {
                format!("would finish the interrupted rollback to {to} and run `{command_line}`")
            }
            None => format!(
                "would switch current from {} to {to} and run `{command_line}`",
                from.as_deref().unwrap_or("(none)")
            ),
        };
        return Ok(Outcome {
            action: RollbackAction::WouldRollBack,
            from,
            to: Some(to),
            message,
            restarted: None,
        });
    }
    let resumed = intent.is_some();
    if resumed {
        tracing::info!("finishing an interrupted rollback to {to}");
    } else {
        journal.write_intent(&RollbackIntent {
            from: from.clone(),
            to: to.clone(),
            reason: reason.to_string(),
            started_at: crate::state::now_rfc3339(),
        })?;
        layout
            .set_current(&to)
            .with_context(|| format!("failed to switch current to release {to}"))?;
        tracing::info!(
            "current now points at release {to} (was {})",
            from.as_deref().unwrap_or("none")
        );
    }
    Cmd::new(&restart[0])
        .args(&restart[1..])
        .kind(crate::exec::Kind::RestartCommand)
        .run()
        .with_context(|| {
            format!("current points at {to}, but the restart command `{command_line}` failed; run `archy rollback` again to retry it")
        })?;
    journal.append_history(json!({
        "event": "rolled_back",
        "from": from,
        "to": to,
        "reason": reason,
        "source": source,
        "resumed": resumed,
    }))?;
    match journal.pending() {
        // The armed update is abandoned: the boot check has nothing left to verify.
        Ok(Some(pending)) if Some(pending.version.as_str()) == from.as_deref() => {
            journal.clear_pending()?;
        }
        Ok(_) => {}
        // A damaged marker was an update of the release just left (verify-update treats it so).
        Err(err) => {
            tracing::warn!("removing the damaged pending marker: {err:#}");
            journal.clear_pending()?;
        }
    }
    journal.clear_intent()?;
    Ok(Outcome {
        action: if resumed {
            RollbackAction::Resumed
        } else {
            RollbackAction::RolledBack
        },
        message: format!(
            "{} from {} to {to}; ran `{command_line}`",
            if resumed {
                "finished an interrupted rollback"
            } else {
                "rolled back"
            },
            from.as_deref().unwrap_or("(none)")
        ),
        from,
        to: Some(to),
        restarted: Some(command_line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(v: &str) -> LinkState {
        LinkState::Release(v.into())
    }

    fn facts(current: LinkState, previous: LinkState, dir: PreviousDir) -> Facts {
        Facts {
            current,
            previous,
            previous_dir: dir,
            intent: None,
        }
    }

    #[test]
    fn switches_to_a_clean_previous() {
        let f = facts(rel("2"), rel("1"), PreviousDir::Clean);
        assert_eq!(
            plan(&f),
            Plan::Switch {
                from: Some("2".into()),
                to: "1".into()
            }
        );
    }

    #[test]
    fn current_equal_to_previous_is_nothing_to_do() {
        let f = facts(rel("1"), rel("1"), PreviousDir::Unchecked);
        assert_eq!(
            plan(&f),
            Plan::NothingToDo("already rolled back: current and previous are both 1".into())
        );
    }

    #[test]
    fn refuses_without_previous_or_with_a_missing_or_bad_one() {
        let none = facts(rel("2"), LinkState::Missing, PreviousDir::Unchecked);
        assert!(matches!(plan(&none), Plan::Refuse(m) if m.contains("no previous release")));
        let missing = facts(rel("2"), rel("1"), PreviousDir::Missing);
        assert!(matches!(plan(&missing), Plan::Refuse(m) if m.contains("is missing")));
        let violation = tarball::check_entries(
            &[tarball::EntryInfo {
                path: ".".into(),
                kind: tarball::Kind::Dir,
                mode: 0o700,
                link: None,
                size: 0,
            }],
            &[],
        );
        let bad = facts(rel("2"), rel("1"), PreviousDir::Violations(violation));
        assert!(
            matches!(plan(&bad), Plan::Refuse(m) if m.contains("0700 (drwx------)")),
            "{:?}",
            plan(&bad)
        );
    }

    #[test]
    fn an_interrupted_rollback_is_resumed_not_mistaken_for_done() {
        let intent = RollbackIntent {
            from: Some("2".into()),
            to: "1".into(),
            reason: "r".into(),
            started_at: "t".into(),
        };
        let mut f = facts(rel("1"), rel("1"), PreviousDir::Unchecked);
        f.intent = Some(intent.clone());
        assert_eq!(plan(&f), Plan::Resume(intent.clone()));
        // Killed before the switch: current still 2, so switch as usual.
        let mut f = facts(rel("2"), rel("1"), PreviousDir::Clean);
        f.intent = Some(intent);
        assert!(matches!(plan(&f), Plan::Switch { .. }));
    }
}
