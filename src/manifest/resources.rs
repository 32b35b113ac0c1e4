//! The `logging:` and `resources:` keys: how much log, memory, CPU and process table an app's
//! container may take, as types whose `Deserialize` checks them (like `types`), plus the load-time
//! cross-checks that name the numbers (bitcoind's dbcache + maxmempool, ElectrumX's `CACHE_MB`,
//! the sum of reservations against the host's memory), so a limit that cannot hold is a manifest
//! error or a warning, never a silent OOM kill.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Manifest, Renderer};

/// Bound on an app's log when its manifest says nothing: podman's `k8s-file` driver with
/// `max-size` 10 MiB. Why: it is the one driver podman itself bounds per container on every
/// host (journald's bound is the host-wide `SystemMaxUse`, and a node without journald — a
/// container host without systemd as PID 1 — has none); 10 MiB keeps days of a chatty
/// bitcoind's stdout (its real log is debug.log in its volume) and costs at most 10 MiB × apps.
pub const DEFAULT_LOG_MAX_SIZE: &str = "10m";

/// podman's smallest `--memory` (it refuses less than 6 MiB).
const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;

/// bitcoind's defaults when bitcoin.conf does not set them: `-dbcache` 450 MiB
/// (`nDefaultDbCache`, src/txdb.h) and `-maxmempool` 300 MB (`DEFAULT_MAX_MEMPOOL_SIZE_MB`,
/// src/kernel/mempool_options.h).
const BITCOIND_DEFAULT_DBCACHE_MIB: u64 = 450;
const BITCOIND_DEFAULT_MAXMEMPOOL_MB: u64 = 300;
/// ElectrumX's default `CACHE_MB` (electrumx/server/env.py).
const ELECTRUMX_DEFAULT_CACHE_MB: u64 = 1200;

const MIB: u64 = 1024 * 1024;

/// A YAML scalar (string or number) parsed by `T`'s `FromStr`: `memory: 512m` and
/// `memory: 536870912`, `cpus: 1.5` and `cpus: "1.5"` read alike. serde_norway adds key and line.
fn from_yaml_scalar<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr<Err = String>,
{
    struct Parse<T>(std::marker::PhantomData<T>);
    impl<T: FromStr<Err = String>> serde::de::Visitor<'_> for Parse<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a number")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
            text.parse().map_err(E::custom)
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<T, E> {
            self.visit_str(&n.to_string())
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<T, E> {
            self.visit_str(&n.to_string())
        }

        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<T, E> {
            self.visit_str(&n.to_string())
        }
    }
    de.deserialize_any(Parse(std::marker::PhantomData))
}

/// A size as podman takes it: a number of bytes with an optional unit `b`, `k`, `m`, `g`
/// (binary, either case), e.g. `512m`, `2g`, `10M`. Kept as written (what podman gets and the
/// spec hash covers); the byte count parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteSize {
    text: String,
    bytes: u64,
}

impl ByteSize {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whole MiB, rounded down (for messages).
    pub fn mib(&self) -> u64 {
        self.bytes / MIB
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` must be a size like `512m`, `2g` or a number of bytes");
        let trimmed = text.trim();
        let (digits, unit) = match trimmed.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => trimmed.split_at(at),
            None => (trimmed, ""),
        };
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1024,
            "m" | "mb" | "mib" => MIB,
            "g" | "gb" | "gib" => 1024 * MIB,
            _ => return Err(bad()),
        };
        let bytes = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .filter(|&b| b > 0)
            .ok_or_else(bad)?;
        Ok(ByteSize {
            text: trimmed.to_string(),
            bytes,
        })
    }
}

/// `cpus:` — how many CPUs' time the container may use, podman's `--cpus` (e.g. `0.5`, `2`);
/// more than 0, at most 3 decimals. Kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpus {
    text: String,
}

impl FromStr for Cpus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` must be a number of CPUs above 0, like `0.5` or `2`");
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 3
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || whole.len() > 4
        {
            return Err(bad());
        }
        if text.parse::<f64>().map_or(true, |v| v <= 0.0) {
            return Err(bad());
        }
        Ok(Cpus {
            text: text.to_string(),
        })
    }
}

/// `oom_score_adj:` — podman's `--oom-score-adj`, -1000 (never killed) to 1000 (killed first).
/// A value below the one archy runs with needs CAP_SYS_RESOURCE (rootful podman has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OomScoreAdj(i16);

impl OomScoreAdj {
    pub fn get(self) -> i16 {
        self.0
    }
}

impl FromStr for OomScoreAdj {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.parse::<i16>()
            .ok()
            .filter(|v| (-1000..=1000).contains(v))
            .map(OomScoreAdj)
            .ok_or_else(|| format!("`{text}` must be a whole number from -1000 to 1000"))
    }
}

/// `pids_limit:` — the most processes and threads the container may hold, podman's
/// `--pids-limit`; 1 or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidsLimit(u32);

impl PidsLimit {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for PidsLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.parse::<u32>()
            .ok()
            .filter(|&v| v > 0)
            .map(PidsLimit)
            .ok_or_else(|| format!("`{text}` must be a whole number of processes, 1 or more"))
    }
}

macro_rules! scalar_serde {
    ($($t:ty => $show:expr),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                #[allow(clippy::redundant_closure_call)]
                f.write_str(&($show)(self))
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                from_yaml_scalar(de)
            }
        }

        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
scalar_serde!(
    ByteSize => |s: &ByteSize| s.text.clone(),
    Cpus => |s: &Cpus| s.text.clone(),
    OomScoreAdj => |s: &OomScoreAdj| s.0.to_string(),
    PidsLimit => |s: &PidsLimit| s.0.to_string()
);

/// `logging.driver:` — where podman sends the container's stdout and stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogDriver {
    /// A file per container, bounded by `max_size` (the default).
    #[default]
    #[serde(rename = "k8s-file")]
    K8sFile,
    /// The systemd journal, bounded host-wide by journald.conf's `SystemMaxUse`.
    #[serde(rename = "journald")]
    Journald,
    /// Discarded.
    #[serde(rename = "none")]
    None,
}

impl LogDriver {
    /// The name podman's `--log-driver` and Quadlet's `LogDriver=` take.
    pub fn name(self) -> &'static str {
        match self {
            LogDriver::K8sFile => "k8s-file",
            LogDriver::Journald => "journald",
            LogDriver::None => "none",
        }
    }
}

/// `logging:` as a manifest writes it. Leaving it out is `driver: k8s-file, max_size: 10m`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default)]
    pub driver: LogDriver,
    /// The log file's bound (k8s-file only; default [`DEFAULT_LOG_MAX_SIZE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
}

impl Logging {
    /// What the container gets: the driver, and for k8s-file always a bound.
    pub fn effective(manifest: Option<&Logging>) -> Logging {
        let mut logging = manifest.cloned().unwrap_or_default();
        if logging.driver == LogDriver::K8sFile && logging.max_size.is_none() {
            logging.max_size = Some(
                DEFAULT_LOG_MAX_SIZE
                    .parse()
                    .expect("the default log bound parses"),
            );
        }
        logging
    }

    /// podman arguments: `--log-driver D [--log-opt max-size=S]`.
    pub fn podman_args(&self) -> Vec<String> {
        let mut args = vec!["--log-driver".to_string(), self.driver.name().to_string()];
        if let Some(size) = &self.max_size {
            args.push("--log-opt".into());
            args.push(format!("max-size={size}"));
        }
        args
    }
}

/// `resources:` as a manifest writes it; every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Hard memory limit (`--memory`): above it the kernel kills a process of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Soft limit (`--memory-reservation`) the kernel reclaims towards under pressure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<PidsLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<OomScoreAdj>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }

    /// podman arguments, one flag per key given.
    pub fn podman_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(value) = value {
                args.push(flag.to_string());
                args.push(value);
            }
        };
        push("--memory", self.memory.as_ref().map(ToString::to_string));
        push(
            "--memory-reservation",
            self.memory_reservation.as_ref().map(ToString::to_string),
        );
        push("--cpus", self.cpus.as_ref().map(ToString::to_string));
        push("--pids-limit", self.pids_limit.map(|p| p.to_string()));
        push("--oom-score-adj", self.oom_score_adj.map(|o| o.to_string()));
        args
    }
}

/// The checks of one manifest's `logging:` and `resources:` (called by `validate`).
pub fn validate(m: &Manifest) -> Result<(), String> {
    if let Some(logging) = &m.logging {
        if let (Some(size), driver) = (&logging.max_size, logging.driver) {
            if driver != LogDriver::K8sFile {
                return Err(format!(
                    "key `logging.max_size`: `{size}` applies to driver k8s-file only ({} is {})",
                    driver.name(),
                    if driver == LogDriver::Journald {
                        "bounded by journald.conf's SystemMaxUse"
                    } else {
                        "never stored"
                    }
                ));
            }
        }
    }
    let Some(r) = &m.resources else {
        return Ok(());
    };
    if let Some(memory) = &r.memory {
        if memory.bytes() < MIN_MEMORY_BYTES {
            return Err(format!(
                "key `resources.memory`: `{memory}` is below podman's minimum of 6m"
            ));
        }
        if let Some(reservation) = &r.memory_reservation {
            if reservation.bytes() > memory.bytes() {
                return Err(format!(
                    "key `resources.memory_reservation`: `{reservation}` ({} MiB) is above `resources.memory` `{memory}` ({} MiB)",
                    reservation.mib(),
                    memory.mib()
                ));
            }
        }
        check_bitcoind(m, memory)?;
        check_electrumx(m, memory)?;
    }
    Ok(())
}

/// A number setting of a config of this renderer (`configs[i].settings.KEY`), with where it is.
fn setting(m: &Manifest, renderer: Renderer, key: &str) -> Option<(u64, String)> {
    m.configs
        .iter()
        .enumerate()
        .filter(|(_, c)| c.render == renderer)
        .find_map(|(i, c)| {
            let value = c.settings.get(key)?;
            Some((
                value.0.trim().parse().ok()?,
                format!("configs[{i}].settings.{key}"),
            ))
        })
}

/// bitcoind holds its UTXO cache (`dbcache`, MiB) and mempool (`maxmempool`, MB) in memory
/// whatever else it does: together above the limit, it is OOM-killed once the cache fills.
fn check_bitcoind(m: &Manifest, memory: &ByteSize) -> Result<(), String> {
    if !m.configs.iter().any(|c| c.render == Renderer::BitcoinConf) {
        return Ok(());
    }
    let (dbcache, dbcache_from) = setting(m, Renderer::BitcoinConf, "dbcache")
        .unwrap_or((BITCOIND_DEFAULT_DBCACHE_MIB, "bitcoind's default".into()));
    let (mempool, mempool_from) = setting(m, Renderer::BitcoinConf, "maxmempool")
        .unwrap_or((BITCOIND_DEFAULT_MAXMEMPOOL_MB, "bitcoind's default".into()));
    let needed = dbcache
        .saturating_mul(MIB)
        .saturating_add(mempool.saturating_mul(1_000_000));
    if needed > memory.bytes() {
        return Err(format!(
            "key `resources.memory`: `{memory}` ({} MiB) is below bitcoind's dbcache {dbcache} MiB ({dbcache_from}) + maxmempool {mempool} MB ({mempool_from}) = {} MiB; raise the limit or lower dbcache",
            memory.mib(),
            needed / MIB
        ));
    }
    Ok(())
}

/// ElectrumX keeps up to `CACHE_MB` of UTXOs and history in memory before it flushes.
fn check_electrumx(m: &Manifest, memory: &ByteSize) -> Result<(), String> {
    if !m.configs.iter().any(|c| c.render == Renderer::ElectrumxEnv) {
        return Ok(());
    }
    let (cache, from) = setting(m, Renderer::ElectrumxEnv, "CACHE_MB")
        .or_else(|| {
            let v = m.env.get("CACHE_MB")?;
            Some((v.0.trim().parse().ok()?, "env.CACHE_MB".into()))
        })
        .unwrap_or((ELECTRUMX_DEFAULT_CACHE_MB, "ElectrumX's default".into()));
    if cache.saturating_mul(MIB) > memory.bytes() {
        return Err(format!(
            "key `resources.memory`: `{memory}` ({} MiB) is below ElectrumX's CACHE_MB {cache} MiB ({from}); raise the limit or lower CACHE_MB",
            memory.mib()
        ));
    }
    Ok(())
}

/// A warning when the enabled apps' memory reservations add up past the host's memory
/// (`mem_total` bytes, /proc/meminfo's MemTotal): the kernel cannot honour them all.
pub fn reservations_warning(apps: &[Manifest], mem_total: u64) -> Option<String> {
    let reserved: Vec<(&str, u64)> = apps
        .iter()
        .filter(|m| m.enabled)
        .filter_map(|m| {
            let r = m.resources.as_ref()?.memory_reservation.as_ref()?;
            Some((m.app.as_str(), r.bytes()))
        })
        .collect();
    let sum: u64 = reserved.iter().map(|(_, b)| b).sum();
    (sum > mem_total).then(|| {
        let each: Vec<String> = reserved
            .iter()
            .map(|(app, b)| format!("{app} {} MiB", b / MIB))
            .collect();
        format!(
            "memory reservations add up to {} MiB ({}), above the host's MemTotal of {} MiB: \
             under memory pressure not every app gets its reservation",
            sum / MIB,
            each.join(", "),
            mem_total / MIB
        )
    })
}

/// The host's MemTotal in bytes (/proc/meminfo), if readable.
pub fn host_mem_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse, Policy};

    fn check(yaml: &str) -> Result<Manifest, String> {
        let m = parse(yaml)?;
        crate::manifest::validate(&m, &Policy::default())?;
        Ok(m)
    }

    #[test]
    fn sizes_parse_with_binary_units_and_print_as_written() {
        for (text, bytes) in [
            ("512m", 512 * MIB),
            ("2G", 2048 * MIB),
            ("10k", 10240),
            ("4096", 4096),
            ("1gb", 1024 * MIB),
        ] {
            let s: ByteSize = text.parse().unwrap();
            assert_eq!((s.bytes(), s.to_string()), (bytes, text.to_string()));
        }
        for bad in ["", "m", "1.5g", "-1m", "10x", "0", "99999999999999999999g"] {
            let err = bad.parse::<ByteSize>().unwrap_err();
            assert!(err.contains("must be a size like `512m`"), "{bad}: {err}");
        }
    }

    #[test]
    fn cpus_oom_and_pids_check_their_ranges() {
        for good in ["0.5", "2", "1.25", "0.001"] {
            assert_eq!(good.parse::<Cpus>().unwrap().to_string(), good);
        }
        for bad in ["0", "0.0", "-1", "1.2345", "x", ".5", ""] {
            assert!(bad.parse::<Cpus>().is_err(), "{bad}");
        }
        assert_eq!("-1000".parse::<OomScoreAdj>().unwrap().get(), -1000);
        assert_eq!(
            "1001".parse::<OomScoreAdj>().unwrap_err(),
            "`1001` must be a whole number from -1000 to 1000"
        );
        assert!("0".parse::<PidsLimit>().is_err());
        assert_eq!("64".parse::<PidsLimit>().unwrap().get(), 64);
    }

    #[test]
    fn resources_parse_from_numbers_and_strings_and_become_podman_flags() {
        let m = check(
            "app: a\nimage: i\nresources: {memory: 512m, memory_reservation: 268435456, cpus: 1.5, pids_limit: 100, oom_score_adj: -500}\n",
        )
        .unwrap();
        assert_eq!(
            m.resources.unwrap().podman_args().join(" "),
            "--memory 512m --memory-reservation 268435456 --cpus 1.5 --pids-limit 100 --oom-score-adj -500"
        );
    }

    #[test]
    fn bad_resource_values_name_key_line_and_expectation() {
        let err = check("app: a\nimage: i\nresources:\n  memory: lots\n").unwrap_err();
        assert_eq!(
            err,
            "resources.memory: `lots` must be a size like `512m`, `2g` or a number of bytes at line 4 column 11"
        );
        let err = check("app: a\nimage: i\nresources: {oom_score_adj: 5000}\n").unwrap_err();
        assert!(
            err.contains(
                "resources.oom_score_adj: `5000` must be a whole number from -1000 to 1000"
            ),
            "{err}"
        );
        let err = check("app: a\nimage: i\nresources: {memroy: 1g}\n").unwrap_err();
        assert!(err.contains("unknown field `memroy`"), "{err}");
        let err = check("app: a\nimage: i\nresources: {memory: 4m}\n").unwrap_err();
        assert!(err.contains("below podman's minimum of 6m"), "{err}");
        let err = check("app: a\nimage: i\nresources: {memory: 256m, memory_reservation: 1g}\n")
            .unwrap_err();
        assert_eq!(err, "key `resources.memory_reservation`: `1g` (1024 MiB) is above `resources.memory` `256m` (256 MiB)");
    }

    #[test]
    fn logging_defaults_to_a_bounded_file_and_refuses_a_bound_it_cannot_apply() {
        let m = check("app: a\nimage: i\n").unwrap();
        assert_eq!(
            Logging::effective(m.logging.as_ref())
                .podman_args()
                .join(" "),
            "--log-driver k8s-file --log-opt max-size=10m"
        );
        let m = check("app: a\nimage: i\nlogging: {max_size: 1m}\n").unwrap();
        assert_eq!(
            Logging::effective(m.logging.as_ref())
                .podman_args()
                .join(" "),
            "--log-driver k8s-file --log-opt max-size=1m"
        );
        let m = check("app: a\nimage: i\nlogging: {driver: journald}\n").unwrap();
        assert_eq!(
            Logging::effective(m.logging.as_ref())
                .podman_args()
                .join(" "),
            "--log-driver journald"
        );
        let err =
            check("app: a\nimage: i\nlogging: {driver: journald, max_size: 1m}\n").unwrap_err();
        assert!(err.contains("key `logging.max_size`: `1m` applies to driver k8s-file only (journald is bounded by journald.conf's SystemMaxUse)"), "{err}");
        let err = check("app: a\nimage: i\nlogging: {driver: syslog}\n").unwrap_err();
        assert!(err.starts_with("logging.driver: unknown variant `syslog`, expected one of `k8s-file`, `journald`, `none`"), "{err}");
    }

    const BITCOIND: &str = "app: btc\nimage: i\nresources: {memory: MEM}\nconfigs:\n  - render: bitcoin.conf\n    path: /var/lib/archy/b/bitcoin.conf\n    settings: {SETTINGS}\n";

    #[test]
    fn a_dbcache_above_the_memory_limit_is_refused_naming_both_numbers() {
        let yaml =
            |mem: &str, settings: &str| BITCOIND.replace("MEM", mem).replace("SETTINGS", settings);
        let err = check(&yaml("1g", "dbcache: 2048")).unwrap_err();
        assert_eq!(
            err,
            "key `resources.memory`: `1g` (1024 MiB) is below bitcoind's dbcache 2048 MiB (configs[0].settings.dbcache) + maxmempool 300 MB (bitcoind's default) = 2334 MiB; raise the limit or lower dbcache"
        );
        // Defaults count: 450 MiB + 300 MB = 736 MiB.
        let err = check(&yaml("700m", "txindex: 1")).unwrap_err();
        assert!(err.contains("dbcache 450 MiB (bitcoind's default) + maxmempool 300 MB (bitcoind's default) = 736 MiB"), "{err}");
        assert!(check(&yaml("3g", "dbcache: 2048")).is_ok());
        assert!(check(&yaml("1g", "dbcache: 512, maxmempool: 100")).is_ok());
    }

    #[test]
    fn an_electrumx_cache_above_the_limit_is_refused() {
        let yaml = "app: electrumx\nimage: i\nresources: {memory: 1g}\nconfigs:\n  - render: electrumx.env\n    path: /var/lib/archy/e/electrumx.env\n    settings: {COIN: Bitcoin}\n";
        let err = check(yaml).unwrap_err();
        assert_eq!(err, "key `resources.memory`: `1g` (1024 MiB) is below ElectrumX's CACHE_MB 1200 MiB (ElectrumX's default); raise the limit or lower CACHE_MB");
        let ok = yaml.replace("COIN: Bitcoin", "COIN: Bitcoin, CACHE_MB: 400");
        assert!(check(&ok).is_ok());
    }

    #[test]
    fn reservations_past_mem_total_warn_with_each_app() {
        let a = check("app: a\nimage: i\nresources: {memory_reservation: 1g}\n").unwrap();
        let b = check("app: b\nimage: i\nresources: {memory_reservation: 2g}\n").unwrap();
        let apps = [a, b];
        assert_eq!(reservations_warning(&apps, 4096 * MIB), None);
        assert_eq!(
            reservations_warning(&apps, 2048 * MIB).unwrap(),
            "memory reservations add up to 3072 MiB (a 1024 MiB, b 2048 MiB), above the host's MemTotal of 2048 MiB: under memory pressure not every app gets its reservation"
        );
        assert_eq!(
            parse_mem_total("MemTotal:        8039532 kB\nMemFree: 1 kB\n"),
            Some(8_039_532 * 1024)
        );
    }
}
