//! The one clock archy reads: the system clock, or the hidden `ARCHY_NOW` override tests use to
//! simulate ticks without sleeping. Records (`state`), health decisions and status's ages all
//! read it, so a simulated hour is an hour for every one of them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The hidden clock override: `ARCHY_NOW=<unix seconds | RFC 3339>` makes archy believe it is
/// that time (tests simulate ticks without sleeping).
pub const NOW_ENV: &str = "ARCHY_NOW";

/// Now, in Unix seconds: [`NOW_ENV`] when set (tests), else the system clock.
pub fn now() -> anyhow::Result<i64> {
    if let Some(text) = std::env::var_os(NOW_ENV) {
        let text = text.to_string_lossy();
        return parse_now(&text)
            .map_err(|e| crate::exit::invalid(format!("{NOW_ENV}={text:?}: {e}")));
    }
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("the system clock is before 1970"))?
        .as_secs() as i64)
}

/// The latest time archy handles: 9999-12-31T23:59:59Z (RFC 3339 has four-digit years), in
/// Unix seconds. Far enough that sums like `now + back-off` never overflow.
pub const MAX_SECS: i64 = 253_402_300_799;

fn parse_now(text: &str) -> Result<i64, String> {
    if let Ok(secs) = text.trim().parse::<i64>() {
        return if (0..=MAX_SECS).contains(&secs) {
            Ok(secs)
        } else {
            Err(format!(
                "expected Unix seconds from 0 to {MAX_SECS} (1970 to 9999)"
            ))
        };
    }
    humantime::parse_rfc3339_weak(text.trim())
        .map_err(|_| "expected Unix seconds or an RFC 3339 time".to_string())?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| "before 1970".to_string())
}

/// RFC 3339 text for a Unix time (records and status), clamped to 1970..=9999.
pub fn rfc3339(secs: i64) -> String {
    humantime::format_rfc3339_seconds(
        UNIX_EPOCH + Duration::from_secs(secs.clamp(0, MAX_SECS) as u64),
    )
    .to_string()
}

/// A wall-clock reading with the monotonic clock beside it (`CLOCK_BOOTTIME`, which counts
/// suspend too, and the boot it belongs to), so a later reading can tell a clock step (NTP
/// setting an RTC-less board's clock an hour forward) from time that really passed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    /// `/proc/sys/kernel/random/boot_id`: boottimes of different boots are not comparable.
    pub boot_id: String,
    /// Seconds since boot (`CLOCK_BOOTTIME`).
    pub boottime: i64,
    /// The wall clock at that moment (Unix seconds, [`now`]).
    pub wall: i64,
}

/// A tick's time: the wall clock and, where known, the monotonic one beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Now {
    /// Unix seconds ([`now`]).
    pub wall: i64,
    pub anchor: Option<Anchor>,
}

impl Now {
    /// Wall time only (no monotonic reading: no clock steps are seen).
    pub fn at(wall: i64) -> Self {
        Now { wall, anchor: None }
    }
}

/// The hidden monotonic overrides for tests, beside [`NOW_ENV`]: `ARCHY_BOOTTIME` (seconds)
/// and `ARCHY_BOOT_ID`. With `ARCHY_NOW` set and no `ARCHY_BOOTTIME`, the monotonic clock
/// follows the simulated wall clock (a simulated hour really passed, no step).
pub const BOOTTIME_ENV: &str = "ARCHY_BOOTTIME";
pub const BOOT_ID_ENV: &str = "ARCHY_BOOT_ID";

/// This moment's [`Anchor`] for wall time `wall`; None when the boot id cannot be read.
pub fn anchor(wall: i64) -> Option<Anchor> {
    let boot_id = match std::env::var(BOOT_ID_ENV) {
        Ok(id) => id,
        Err(_) => std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()?
            .trim()
            .to_string(),
    };
    let boottime = match std::env::var(BOOTTIME_ENV) {
        Ok(text) => text.trim().parse().ok()?,
        Err(_) if std::env::var_os(NOW_ENV).is_some() => wall,
        Err(_) => rustix::time::clock_gettime(rustix::time::ClockId::Boottime).tv_sec,
    };
    Some(Anchor {
        boot_id,
        boottime,
        wall,
    })
}

/// How far the wall clock ran ahead of the monotonic clock since `then` (seconds; 0 for
/// another boot or a clock that did not run ahead). Pure.
pub fn forward_step(then: &Anchor, now: &Anchor) -> i64 {
    if then.boot_id != now.boot_id {
        return 0;
    }
    let expected = then
        .wall
        .saturating_add(now.boottime.saturating_sub(then.boottime));
    now.wall.saturating_sub(expected).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_override_takes_seconds_or_rfc3339() {
        assert_eq!(parse_now("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_now("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert!(parse_now("tomorrow").is_err());
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        // Extremes are refused or clamped, never a panic.
        for extreme in [
            "9223372036854775807",
            "-9223372036854775808",
            "-1",
            "253402300800",
        ] {
            assert!(parse_now(extreme).is_err(), "{extreme}");
        }
        assert_eq!(parse_now("253402300799"), Ok(MAX_SECS));
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn a_forward_step_is_wall_time_the_boot_clock_did_not_see() {
        let at = |boot: &str, boottime, wall| Anchor {
            boot_id: boot.into(),
            boottime,
            wall,
        };
        let then = at("b1", 100, 1_000);
        assert_eq!(forward_step(&then, &at("b1", 130, 1_030)), 0, "a tick");
        assert_eq!(
            forward_step(&then, &at("b1", 130, 4_630)),
            3_600,
            "NTP stepped"
        );
        assert_eq!(forward_step(&then, &at("b1", 130, 900)), 0, "set back");
        assert_eq!(forward_step(&then, &at("b2", 5, 9_000)), 0, "another boot");
    }
}
