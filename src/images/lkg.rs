//! Last-known-good images and the images that failed: `<state-dir>/images/<app>.json`.
//!
//! After an app has been healthy for [`HEALTHY_TICKS`] ticks in a row on an image (its probe
//! passing; without a probe, running with the same start), that image's **id** is its
//! last-known-good. When the app then runs another image (a new tag or digest, a rebuilt
//! `build:` context) and that image never becomes healthy within the app's window, reconcile
//! recreates the container from the last-known-good id (local storage, no registry), records the
//! failed image in the app's `bad_images` (like the updater's `bad-versions`) and does not try
//! it again while the manifest names it, until `archy reconcile --retry APP` clears it.
//!
//! [`step`] decides a tick from the record and what the tick saw (pure); the record is written
//! atomically and only when it changed, so a steady tick writes nothing. [`kept_image_ids`] is
//! what an image clean-up must not remove.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Healthy ticks in a row before an image becomes the app's last-known-good.
pub const HEALTHY_TICKS: u32 = 3;

/// The reconcile timer's interval (seconds): a window of `failures` probes is this many
/// seconds per probe.
pub const TICK_SECS: i64 = 30;

/// Seconds a changed image of `m` has to become healthy before it is rolled back:
/// `rollback_after`, else the probe's `start_period` plus `failures` ticks (the probe defaults
/// for an app without one).
pub fn window(m: &crate::manifest::Manifest) -> i64 {
    use crate::manifest::health::{DEFAULT_FAILURES, DEFAULT_START_PERIOD};
    if let Some(after) = &m.rollback_after {
        return after.get().as_secs() as i64;
    }
    let (start, failures) = m
        .health
        .as_ref()
        .map_or((DEFAULT_START_PERIOD, DEFAULT_FAILURES), |h| {
            (h.start_period(), h.failures())
        });
    start.as_secs() as i64 + i64::from(failures) * TICK_SECS
}

/// The largest record read (bytes): a few images' ids, references and evidence.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Ticks a changed image is seen on before its window can end: the window's length in ticks
/// (at least one), so a clock stepped forward (NTP after a boot on fake-hwclock time) cannot
/// end it after a single tick.
pub fn window_ticks(window: i64) -> u32 {
    u32::try_from((window / TICK_SECS).max(1)).unwrap_or(u32::MAX)
}

/// `<state-dir>/images`: one record per app.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("images")
}

/// `<state-dir>/images/<app>.json`.
pub fn path(state_dir: &Path, app: &str) -> PathBuf {
    dir(state_dir).join(format!("{app}.json"))
}

/// An image the app was healthy on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoodImage {
    /// The image id (`sha256` hex, as podman lists it).
    pub id: String,
    /// The reference the container was created from.
    pub reference: String,
    /// Unix seconds it became last-known-good.
    pub at: i64,
}

/// An image being tried: seen running, not yet healthy for [`HEALTHY_TICKS`] ticks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub id: String,
    pub reference: String,
    /// Unix seconds of the first tick that saw the app run it.
    pub since: i64,
    /// Healthy ticks in a row.
    pub healthy_ticks: u32,
    /// Ticks that saw the app run it (the window needs [`window_ticks`] of them as well as its
    /// time).
    #[serde(default)]
    pub ticks: u32,
    /// It was healthy at least once (then the health ladder, not a rollback, handles it).
    pub passed: bool,
    /// The container start the last tick saw (`<id>@<started-at>`): without a probe, a tick is
    /// healthy when the container runs with the same start as on the tick before.
    pub start_key: Option<String>,
}

/// An image that did not become healthy in its window: not tried again while the manifest
/// names its reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadImage {
    pub id: String,
    pub reference: String,
    pub evidence: String,
    /// Unix seconds.
    pub at: i64,
}

/// The last rollback, shown by status until acknowledged or the manifest names another image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub from_id: String,
    pub from_reference: String,
    pub to_id: String,
    pub to_reference: String,
    pub evidence: String,
    /// Unix seconds.
    pub at: i64,
    #[serde(default)]
    pub acknowledged: bool,
}

impl Rollback {
    /// `rolled back to <id> (<ref>): <evidence>`.
    pub fn describe(&self) -> String {
        format!(
            "rolled back to {} ({}): {} ({}) {}",
            crate::podman::short_id(&self.to_id),
            self.to_reference,
            self.from_reference,
            crate::podman::short_id(&self.from_id),
            self.evidence
        )
    }
}

/// A rollback that could not happen: the last-known-good image was gone from local storage
/// (removed by hand). The app stays on the image it runs; status fails until a new image becomes
/// last-known-good or the operator acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostGood {
    /// The last-known-good image that was gone.
    pub id: String,
    pub reference: String,
    /// The image that did not become healthy (recorded bad).
    pub from_id: String,
    pub from_reference: String,
    /// Unix seconds.
    pub at: i64,
}

impl LostGood {
    /// `cannot roll back: last-known-good image <id12> (<ref>) is gone; <bad ref> (<id12>) stays`.
    pub fn describe(&self) -> String {
        format!(
            "cannot roll back: last-known-good image {} ({}) is gone; {} ({}) keeps running",
            crate::podman::short_id(&self.id),
            self.reference,
            self.from_reference,
            crate::podman::short_id(&self.from_id)
        )
    }
}

/// One app's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageRecord {
    pub last_known_good: Option<GoodImage>,
    /// The last-known-good before the current one (an image clean-up keeps it too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_good: Option<GoodImage>,
    pub trial: Option<Trial>,
    pub bad_images: Vec<BadImage>,
    pub rolled_back: Option<Rollback>,
    /// The last rollback that could not happen (its last-known-good image was gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_good: Option<LostGood>,
}

impl ImageRecord {
    /// The bad image the manifest's reference names, if it is one.
    pub fn refuses(&self, reference: &str) -> Option<&BadImage> {
        self.bad_images.iter().find(|b| b.reference == reference)
    }

    /// The rollback status should fail on: not acknowledged, and the manifest (`reference`, as
    /// resolved) still names the image rolled back from.
    pub fn alarm(&self, reference: &str) -> Option<&Rollback> {
        self.rolled_back
            .as_ref()
            .filter(|r| !r.acknowledged && r.from_reference == reference)
    }
}

/// Read a record: None when missing; an error when it is not a regular file of at most
/// [`MAX_RECORD_BYTES`] (never blocks on a FIFO nor follows a link) or does not parse.
fn read(path: &Path) -> Result<Option<ImageRecord>> {
    let Some(bytes) = crate::fsutil::read_regular_bounded(path, MAX_RECORD_BYTES)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("failed to parse the image record {}", path.display()))
}

/// The record; missing → empty. An unreadable record is logged and read as empty (the next
/// healthy ticks record a last-known-good again); [`save`] moves it aside before it writes.
pub fn load(state_dir: &Path, app: &str) -> ImageRecord {
    let path = path(state_dir, app);
    read(&path)
        .unwrap_or_else(|e| {
            tracing::warn!(
                "{e:#}; read as empty, moved aside to {}.broken-<UTC time> before the next write",
                path.display()
            );
            None
        })
        .unwrap_or_default()
}

/// `<path>.broken-20261206T052402Z` (UTC now), like heal-podman's broken databases.
fn broken_path(path: &Path) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".broken-{stamp}"));
    path.with_file_name(name)
}

/// Move an unreadable record aside (kept, never deleted) so a write does not replace it.
fn keep_aside_if_unreadable(path: &Path) -> Result<()> {
    let Err(err) = read(path) else {
        return Ok(());
    };
    let aside = broken_path(path);
    std::fs::rename(path, &aside).with_context(|| {
        format!(
            "failed to move the unreadable record {} aside to {}",
            path.display(),
            aside.display()
        )
    })?;
    tracing::warn!("{err:#}; moved aside to {}", aside.display());
    Ok(())
}

/// Write the record atomically.
pub fn save(state_dir: &Path, app: &str, record: &ImageRecord) -> Result<()> {
    let path = path(state_dir, app);
    let write = || -> Result<()> {
        let dir = dir(state_dir);
        if !dir.is_dir() {
            crate::fsutil::ensure_dir(&dir, 0o755)?;
        }
        keep_aside_if_unreadable(&path)?;
        let text = serde_json::to_string_pretty(record).context("failed to encode")?;
        crate::fsutil::write_atomic(&path, text.as_bytes(), 0o644)
    };
    write().with_context(|| {
        format!(
            "failed to record the images of app {app} in {}",
            path.display()
        )
    })
}

/// Every app's last-known-good image id and the one before it: what an image clean-up must
/// keep (each app's way back; the image an app runs is kept by podman itself).
pub fn kept_image_ids(state_dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(std::result::Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let app = name.strip_suffix(".json")?.to_string();
            let record = load(state_dir, &app);
            Some(
                [record.last_known_good, record.previous_good]
                    .into_iter()
                    .flatten()
                    .map(|g| g.id),
            )
        })
        .flatten()
        .collect()
}

/// Whether the image `image_id` (as podman lists it) is one of `kept` ([`kept_image_ids`]).
pub fn is_kept(kept: &BTreeSet<String>, image_id: &str) -> bool {
    let image_id = image_id.trim_start_matches("sha256:");
    kept.iter().any(|id| {
        let id = id.trim_start_matches("sha256:");
        !id.is_empty() && image_id.starts_with(id)
    })
}

/// What one tick saw of an app's container.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The image id it runs (from the listing).
    pub image_id: String,
    /// The reference it was created from.
    pub reference: String,
    pub running: bool,
    /// `<id>@<started-at>`.
    pub start_key: String,
    /// Probed apps: the probe passed (or the chain answered) this tick. None: no probe.
    pub probe_healthy: Option<bool>,
    /// Evidence of the last failure, for the bad-image record.
    pub evidence: String,
}

/// A rollback [`step`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackTo {
    pub id: String,
    pub reference: String,
    /// Why, for the plan's reason and the log.
    pub reason: String,
}

/// One tick of an app's record (pure): count healthy ticks toward a last-known-good, or, when
/// the image tried has not been healthy within `window` seconds of its first sight and a
/// last-known-good exists, record it bad and ask for the rollback.
pub fn step(
    before: &ImageRecord,
    seen: &Seen,
    window: i64,
    now: i64,
) -> (ImageRecord, Option<RollbackTo>) {
    let mut r = before.clone();
    if seen.image_id.is_empty() {
        return (r, None);
    }
    if r.last_known_good
        .as_ref()
        .is_some_and(|g| g.id == seen.image_id)
    {
        r.trial = None;
        return (r, None);
    }
    let mut trial = match r.trial.take() {
        Some(t) if t.id == seen.image_id => t,
        _ => Trial {
            id: seen.image_id.clone(),
            reference: seen.reference.clone(),
            since: now,
            healthy_ticks: 0,
            ticks: 0,
            passed: false,
            start_key: None,
        },
    };
    let healthy = seen.running
        && match seen.probe_healthy {
            Some(passed) => passed,
            None => trial.start_key.as_deref() == Some(seen.start_key.as_str()),
        };
    // A first sight in the future is a clock stepped back since: the window starts now.
    trial.since = trial.since.min(now);
    trial.ticks = trial.ticks.saturating_add(1);
    trial.start_key = seen.running.then(|| seen.start_key.clone());
    if healthy {
        trial.healthy_ticks = trial.healthy_ticks.saturating_add(1);
        trial.passed = true;
    } else {
        trial.healthy_ticks = 0;
    }
    if trial.healthy_ticks >= HEALTHY_TICKS {
        r.previous_good = r.last_known_good.take();
        r.last_known_good = Some(GoodImage {
            id: trial.id,
            reference: trial.reference,
            at: now,
        });
        r.rolled_back = None;
        r.lost_good = None;
        return (r, None);
    }
    // Both its time and its ticks: a clock stepped forward does not end it early.
    let expired = now >= trial.since.saturating_add(window) && trial.ticks >= window_ticks(window);
    let Some(good) = r
        .last_known_good
        .clone()
        .filter(|_| expired && !trial.passed)
    else {
        r.trial = Some(trial);
        return (r, None);
    };
    let rollback = roll_back(&mut r, trial, good, seen, window, now);
    (r, Some(rollback))
}

/// The rollback `step` asked for cannot happen: its last-known-good image is gone from local
/// storage (pure). The image tried stays recorded bad; the rollback is not claimed (`before`'s
/// stays), the gone image is no longer the way back (no rollback is tried again each tick)
/// and the record says why for status.
pub fn good_image_gone(before: &ImageRecord, stepped: ImageRecord, now: i64) -> ImageRecord {
    let mut r = stepped;
    let (Some(good), Some(rb)) = (r.last_known_good.take(), r.rolled_back.take()) else {
        return r;
    };
    r.rolled_back.clone_from(&before.rolled_back);
    r.lost_good = Some(LostGood {
        id: good.id,
        reference: good.reference,
        from_id: rb.from_id,
        from_reference: rb.from_reference,
        at: now,
    });
    r
}

/// Record `trial` bad and the rollback to `good` (pure; [`step`]'s last case).
fn roll_back(
    r: &mut ImageRecord,
    trial: Trial,
    good: GoodImage,
    seen: &Seen,
    window: i64,
    now: i64,
) -> RollbackTo {
    let evidence = if seen.running {
        format!(
            "not healthy within {}s: {}",
            window,
            if seen.evidence.is_empty() {
                "no passing probe"
            } else {
                &seen.evidence
            }
        )
    } else {
        format!("not running within {window}s")
    };
    if !r
        .bad_images
        .iter()
        .any(|b| b.reference == trial.reference && b.id == trial.id)
    {
        r.bad_images.push(BadImage {
            id: trial.id.clone(),
            reference: trial.reference.clone(),
            evidence: evidence.clone(),
            at: now,
        });
    }
    let reason = format!(
        "image {} ({}) {evidence}; back to last-known-good {} ({})",
        trial.reference,
        crate::podman::short_id(&trial.id),
        crate::podman::short_id(&good.id),
        good.reference
    );
    r.rolled_back = Some(Rollback {
        from_id: trial.id,
        from_reference: trial.reference,
        to_id: good.id.clone(),
        to_reference: good.reference.clone(),
        evidence,
        at: now,
        acknowledged: false,
    });
    RollbackTo {
        id: good.id,
        reference: good.reference,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, reference: &str, healthy: Option<bool>, start: &str) -> Seen {
        Seen {
            image_id: id.into(),
            reference: reference.into(),
            running: true,
            start_key: start.into(),
            probe_healthy: healthy,
            evidence: "connection refused".into(),
        }
    }

    #[test]
    fn an_image_clean_up_keeps_every_apps_last_known_good_and_previous_image() {
        let dir = tempfile::tempdir().unwrap();
        let good = |id: &str| GoodImage {
            id: id.into(),
            reference: "t".into(),
            at: 1,
        };
        let a = ImageRecord {
            last_known_good: Some(good("aaa")),
            previous_good: Some(good("bbb")),
            ..ImageRecord::default()
        };
        save(dir.path(), "a", &a).unwrap();
        save(dir.path(), "b", &ImageRecord::default()).unwrap();
        assert_eq!(load(dir.path(), "a"), a);
        assert_eq!(
            kept_image_ids(dir.path()).into_iter().collect::<Vec<_>>(),
            ["aaa", "bbb"]
        );
        assert!(kept_image_ids(&dir.path().join("none")).is_empty());
    }

    #[test]
    fn three_healthy_ticks_make_an_image_last_known_good() {
        let mut r = ImageRecord::default();
        for (i, now) in [100, 130, 160].into_iter().enumerate() {
            let (next, rb) = step(&r, &seen("aaa", "t:1", Some(true), "c@1"), 90, now);
            assert_eq!(rb, None);
            assert_eq!(next.last_known_good.is_some(), i == 2, "tick {i}: {next:?}");
            r = next;
        }
        assert_eq!(r.last_known_good.as_ref().unwrap().id, "aaa");
        assert_eq!(r.trial, None);
        // A steady tick changes nothing (nothing to write).
        let (same, _) = step(&r, &seen("aaa", "t:1", Some(false), "c@2"), 90, 200);
        assert_eq!(same, r);
        // Without a probe: the same start on consecutive ticks counts.
        let mut r = ImageRecord::default();
        for now in [100, 130, 160, 190] {
            r = step(&r, &seen("bbb", "t:1", None, "c@1"), 90, now).0;
        }
        assert_eq!(r.last_known_good.unwrap().id, "bbb");
        let mut r = ImageRecord::default();
        for (now, start) in [(100, "c@1"), (130, "c@2"), (160, "c@3"), (190, "c@4")] {
            r = step(&r, &seen("bbb", "t:1", None, start), 90, now).0;
        }
        assert_eq!(r.last_known_good, None, "a restarting container never is");
    }

    #[test]
    fn an_image_never_healthy_in_its_window_is_rolled_back_once_and_recorded_bad() {
        let good = ImageRecord {
            last_known_good: Some(GoodImage {
                id: "aaa".into(),
                reference: "t:1".into(),
                at: 1,
            }),
            ..ImageRecord::default()
        };
        let bad = seen("bbb", "t:2", Some(false), "c@1");
        let (r, rb) = step(&good, &bad, 90, 1000);
        assert_eq!((rb, r.trial.as_ref().unwrap().since), (None, 1000));
        let (r, rb) = step(&r, &bad, 90, 1060);
        assert_eq!(rb, None, "inside the window");
        let (r, rb) = step(&r, &bad, 90, 1090);
        let rb = rb.expect("rolled back at the window's end");
        assert_eq!((rb.id.as_str(), rb.reference.as_str()), ("aaa", "t:1"));
        assert!(
            rb.reason
                .contains("image t:2 (bbb) not healthy within 90s: connection refused"),
            "{}",
            rb.reason
        );
        assert_eq!(r.bad_images.len(), 1);
        assert_eq!(r.refuses("t:2").unwrap().id, "bbb");
        assert!(r.alarm("t:2").is_some());
        assert!(r.alarm("t:3").is_none(), "the manifest moved on");
        assert_eq!(r.trial, None);
        // An image that passed once is the health ladder's, not a rollback's.
        let (r2, _) = step(&good, &seen("ccc", "t:3", Some(true), "c@1"), 90, 1000);
        let (_, rb) = step(&r2, &seen("ccc", "t:3", Some(false), "c@1"), 90, 2000);
        assert_eq!(rb, None);
        // No last-known-good: nothing to go back to.
        let (r3, _) = step(&ImageRecord::default(), &bad, 90, 1000);
        assert_eq!(step(&r3, &bad, 90, 5000).1, None);
        // The next good image becomes last-known-good and ends the alarm.
        let mut r4 = r;
        for now in [2000, 2030, 2060] {
            r4 = step(&r4, &seen("ccc", "t:3", Some(true), "c@9"), 90, now).0;
        }
        assert_eq!(r4.last_known_good.as_ref().unwrap().id, "ccc");
        assert_eq!(r4.previous_good.as_ref().unwrap().id, "aaa");
        assert_eq!(r4.rolled_back, None);
        assert_eq!(r4.bad_images.len(), 1, "the bad image stays refused");
    }

    #[test]
    fn a_gone_last_known_good_is_no_rollback_and_is_not_tried_again() {
        let good = ImageRecord {
            last_known_good: Some(GoodImage {
                id: "aaa".into(),
                reference: "t:1".into(),
                at: 1,
            }),
            ..ImageRecord::default()
        };
        let bad = seen("bbb", "t:2", Some(false), "c@1");
        let mut r = good;
        let mut asked = None;
        for now in [1000, 1030, 1060, 1090] {
            let before = r.clone();
            let (next, rb) = step(&r, &bad, 90, now);
            r = match rb {
                Some(rb) => {
                    asked = Some(rb);
                    good_image_gone(&before, next, now)
                }
                None => next,
            };
        }
        assert_eq!(asked.unwrap().id, "aaa");
        assert_eq!(r.rolled_back, None, "no rollback claimed");
        assert_eq!(r.last_known_good, None, "no longer the way back");
        assert_eq!(r.refuses("t:2").unwrap().id, "bbb", "still refused");
        assert_eq!(
            r.lost_good.as_ref().unwrap().describe(),
            "cannot roll back: last-known-good image aaa (t:1) is gone; t:2 (bbb) keeps running"
        );
        // Later ticks ask for nothing; the next healthy image ends it.
        assert_eq!(step(&r, &bad, 90, 5000).1, None);
        for now in [6000, 6030, 6060] {
            r = step(&r, &seen("ccc", "t:3", Some(true), "c@2"), 90, now).0;
        }
        assert_eq!(r.lost_good, None);
    }

    #[test]
    fn an_unreadable_record_is_moved_aside_before_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "web");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"{torn").unwrap();
        assert_eq!(load(dir.path(), "web"), ImageRecord::default());
        save(dir.path(), "web", &ImageRecord::default()).unwrap();
        let names: Vec<String> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let aside = names
            .iter()
            .find(|n| n.starts_with("web.json.broken-") && n.ends_with('Z'))
            .unwrap_or_else(|| panic!("{names:?}"));
        assert_eq!(std::fs::read(p.with_file_name(aside)).unwrap(), b"{torn");
        assert_eq!(names.len(), 2, "{names:?}");
        // A readable record is replaced in place, nothing set aside.
        save(dir.path(), "web", &ImageRecord::default()).unwrap();
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 2);
    }

    #[test]
    fn kept_ids_match_podmans_listing() {
        let kept: BTreeSet<String> = ["sha256:abc".to_string(), String::new()].into();
        assert!(is_kept(&kept, "abcdef"));
        assert!(is_kept(&kept, "sha256:abcdef"));
        assert!(!is_kept(&kept, "abd"));
        assert!(!is_kept(&BTreeSet::new(), "abc"));
    }
}
