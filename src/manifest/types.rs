//! Manifest values that are types, not strings (podlet's habit): their `Deserialize` checks
//! them, so a manifest that parses holds only valid ones and nothing downstream re-parses a
//! string or `.expect()`s. Errors name the expectation; serde_norway adds the key and the line.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Scalar;

/// A value read from one YAML string and checked by its `FromStr` (whose error is the message).
/// Parsed inside the visitor, so serde_norway puts the key's path and line on the error.
pub(super) fn from_yaml_str<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr<Err = String>,
{
    struct Parse<T>(std::marker::PhantomData<T>);
    impl<T: FromStr<Err = String>> serde::de::Visitor<'_> for Parse<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
            text.parse().map_err(E::custom)
        }
    }
    de.deserialize_str(Parse(std::marker::PhantomData))
}

/// The built-in renderers `configs:` may name: the one list validation, rendering and the
/// bitcoind-host question use. Serialised as the name a manifest writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Renderer {
    #[serde(rename = "bitcoin.conf")]
    BitcoinConf,
    #[serde(rename = "lnd.conf")]
    LndConf,
    #[serde(rename = "electrumx.env")]
    ElectrumxEnv,
    #[serde(rename = "nginx-ui.conf")]
    NginxUiConf,
    #[serde(rename = "containers.conf")]
    ContainersConf,
}

impl Renderer {
    /// Every renderer, in the order error messages list them.
    pub const ALL: [Renderer; 5] = [
        Renderer::BitcoinConf,
        Renderer::LndConf,
        Renderer::ElectrumxEnv,
        Renderer::NginxUiConf,
        Renderer::ContainersConf,
    ];

    /// The name a manifest's `render:` key uses.
    pub fn name(self) -> &'static str {
        match self {
            Renderer::BitcoinConf => "bitcoin.conf",
            Renderer::LndConf => "lnd.conf",
            Renderer::ElectrumxEnv => "electrumx.env",
            Renderer::NginxUiConf => "nginx-ui.conf",
            Renderer::ContainersConf => "containers.conf",
        }
    }

    pub fn from_name(name: &str) -> Option<Renderer> {
        Renderer::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The bitcoind RPC consumer a file of this renderer makes its app, if any (so whether it
    /// needs bitcoind's host name and an RPC user): lnd.conf and electrumx.env always; an nginx
    /// UI only when it proxies an RPC path (`rpc_path`; a UI that does not talk to bitcoind gets
    /// no credential).
    pub fn rpc_consumer(
        self,
        settings: &BTreeMap<String, Scalar>,
    ) -> Option<crate::rpc_users::ConsumerKind> {
        use crate::rpc_users::ConsumerKind;
        match self {
            Renderer::LndConf => Some(ConsumerKind::Lnd),
            Renderer::ElectrumxEnv => Some(ConsumerKind::Electrumx),
            Renderer::NginxUiConf if settings.contains_key("rpc_path") => {
                Some(ConsumerKind::UiProxy)
            }
            Renderer::NginxUiConf | Renderer::BitcoinConf | Renderer::ContainersConf => None,
        }
    }
}

impl std::fmt::Display for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Renderer {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Renderer::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Renderer::ALL.iter().map(|r| r.name()).collect();
            format!("`{name}` is not a built-in renderer ({})", names.join(", "))
        })
    }
}

impl<'de> Deserialize<'de> for Renderer {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        from_yaml_str(de)
    }
}

/// `restart:` — podman's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    Always,
    /// `on-failure` or `on-failure:N` (at most N restarts).
    OnFailure(Option<u32>),
    UnlessStopped,
}

impl FromStr for Restart {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let policy = match text.split_once(':') {
            Some(("on-failure", n)) => n.parse().ok().map(|n| Restart::OnFailure(Some(n))),
            Some(_) => None,
            None => match text {
                "no" => Some(Restart::No),
                "always" => Some(Restart::Always),
                "on-failure" => Some(Restart::OnFailure(None)),
                "unless-stopped" => Some(Restart::UnlessStopped),
                _ => None,
            },
        };
        policy
            .ok_or_else(|| format!("`{text}` must be no, always, on-failure[:N] or unless-stopped"))
    }
}

/// As podman's `--restart` takes it.
impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restart::No => f.write_str("no"),
            Restart::Always => f.write_str("always"),
            Restart::OnFailure(None) => f.write_str("on-failure"),
            Restart::OnFailure(Some(n)) => write!(f, "on-failure:{n}"),
            Restart::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl<'de> Deserialize<'de> for Restart {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        from_yaml_str(de)
    }
}

impl Serialize for Restart {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One `ports:` entry in podman's `-p` syntax, `[[ip:][hostPort]:]containerPort[/proto]`
/// (ports may be ranges `a-b`). Kept as written: that text is what podman gets and what the
/// spec hash covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    text: String,
    /// Address ("" for all), host port range, protocol; None when podman picks the host port.
    host: Option<(String, u16, u16, String)>,
}

impl Port {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host side: address ("" for all), first and last port, protocol. `None` when podman
    /// picks the host port (`80`, `127.0.0.1::80`).
    pub fn host_binding(&self) -> Option<(String, u16, u16, String)> {
        self.host.clone()
    }
}

impl FromStr for Port {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{spec}` is not podman -p syntax ([[ip:][hostPort]:]containerPort[/tcp|udp])")
        };
        let (body, proto) = match spec.rsplit_once('/') {
            Some((b, p)) => (b, Some(p)),
            None => (spec, None),
        };
        if !matches!(proto, None | Some("tcp" | "udp" | "sctp")) {
            return Err(bad());
        }
        let range = |p: &str| -> Option<(u16, u16)> {
            let (lo, hi) = p.split_once('-').unwrap_or((p, p));
            let (lo, hi) = (lo.parse::<u16>().ok()?, hi.parse::<u16>().ok()?);
            (lo > 0 && hi > 0).then_some((lo, hi))
        };
        let host_range = |h: &str| {
            if h.is_empty() {
                Some(None)
            } else {
                range(h).map(Some)
            }
        };
        let parts: Vec<&str> = body.rsplitn(3, ':').collect();
        let (container, host, ip) = match parts.as_slice() {
            [c] => (*c, None, ""),
            [c, h] => (*c, host_range(h).ok_or_else(bad)?, ""),
            [c, h, ip] => {
                let bare = ip.trim_matches(|c| c == '[' || c == ']');
                if ip.parse::<std::net::IpAddr>().is_err()
                    && bare.parse::<std::net::Ipv6Addr>().is_err()
                {
                    return Err(bad());
                }
                (*c, host_range(h).ok_or_else(bad)?, bare)
            }
            _ => return Err(bad()),
        };
        range(container).ok_or_else(bad)?;
        let ip = if matches!(ip, "0.0.0.0" | "::") {
            ""
        } else {
            ip
        };
        let proto = proto.unwrap_or("tcp").to_string();
        Ok(Port {
            text: spec.to_string(),
            host: host.map(|(lo, hi)| (ip.to_string(), lo, hi, proto)),
        })
    }
}

/// One `volumes:` entry, `SOURCE:DEST[:OPTIONS]`: a named volume or an absolute host path
/// without `..`, an absolute destination, podman's known options. Kept as written. Whether a
/// host path is allowed depends on the policy (`validate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    text: String,
    /// Where the source is a host path (a bind mount), that path.
    host_source: Option<std::path::PathBuf>,
}

impl Volume {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host path of a bind mount; None for a named volume.
    pub fn host_source(&self) -> Option<&std::path::Path> {
        self.host_source.as_deref()
    }
}

impl FromStr for Volume {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        if spec.contains('\0') {
            return Err(format!("`{}` contains a NUL byte", spec.escape_debug()));
        }
        let parts: Vec<&str> = spec.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(format!("`{spec}` is not SOURCE:DEST[:OPTIONS]"));
        }
        let (source, dest) = (parts[0], parts[1]);
        if !dest.starts_with('/') {
            return Err(format!(
                "`{spec}`: destination `{dest}` must be an absolute path"
            ));
        }
        let host_source = if source.starts_with('/') {
            let path = std::path::Path::new(source);
            if path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!("`{spec}`: source must not contain `..`"));
            }
            Some(path.to_path_buf())
        } else if super::is_podman_name(source) {
            None
        } else {
            return Err(format!("`{spec}`: source must be an absolute path or a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"));
        };
        if let Some(options) = parts.get(2) {
            let known = [
                "ro", "rw", "z", "Z", "U", "O", "copy", "nocopy", "shared", "rshared", "slave",
                "rslave", "private", "rprivate", "exec", "noexec", "suid", "nosuid", "dev",
                "nodev",
            ];
            if let Some(bad) = options.split(',').find(|o| !known.contains(o)) {
                return Err(format!("`{spec}`: unknown volume option `{bad}`"));
            }
        }
        Ok(Volume {
            text: spec.to_string(),
            host_source,
        })
    }
}

/// `90`, `90s`, `2m`, `1m 30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|_| "must be a duration like `90s`, `2m` or a number of seconds".to_string())
}

/// A duration as a manifest writes it (`90`, `90s`, `2m`, `1m 30s`), kept as written for
/// messages; the value parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanDuration {
    text: String,
    value: Duration,
}

impl HumanDuration {
    pub fn get(&self) -> Duration {
        self.value
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let value = parse_duration(text).map_err(|e| format!("`{text}` {e}"))?;
        Ok(HumanDuration {
            text: text.to_string(),
            value,
        })
    }
}

/// Ports and volumes print, serialise and deserialise as the text a manifest writes.
macro_rules! as_written {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                from_yaml_str(de)
            }
        }

        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.text)
            }
        }
    )*};
}
as_written!(Port, Volume, HumanDuration);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_syntax() {
        for good in [
            "80",
            "8080:80",
            "127.0.0.1:8081:80",
            "127.0.0.1::80",
            "9735:9735/tcp",
            "[::1]:80:80",
            "1000-1001:1000-1001",
        ] {
            assert_eq!(good.parse::<Port>().unwrap().to_string(), good);
        }
        for no in [
            "",
            "0",
            "70000",
            "a:80",
            "1.2.3:80:80",
            "80/icmp",
            "1:2:3:4",
        ] {
            let err = no.parse::<Port>().unwrap_err();
            assert!(err.contains("is not podman -p syntax"), "{no}: {err}");
        }
        let binding = |p: &str| p.parse::<Port>().unwrap().host_binding();
        assert_eq!(binding("80"), None);
        assert_eq!(binding("127.0.0.1::80"), None);
        assert_eq!(
            binding("0.0.0.0:8080:80"),
            Some((String::new(), 8080, 8080, "tcp".into()))
        );
        assert_eq!(
            binding("[::1]:1000-1001:1000-1001/udp"),
            Some(("::1".into(), 1000, 1001, "udp".into()))
        );
    }

    #[test]
    fn durations_parse_once_and_print_as_written() {
        let d: HumanDuration = "1m 30s".parse().unwrap();
        assert_eq!(
            (d.get().as_secs(), d.to_string()),
            (90, "1m 30s".to_string())
        );
        assert_eq!("45".parse::<HumanDuration>().unwrap().get().as_secs(), 45);
        let err = "soon".parse::<HumanDuration>().unwrap_err();
        assert_eq!(
            err,
            "`soon` must be a duration like `90s`, `2m` or a number of seconds"
        );
    }

    #[test]
    fn volume_syntax() {
        let v: Volume = "/var/lib/archy/x:/x:ro,Z".parse().unwrap();
        assert_eq!(
            v.host_source(),
            Some(std::path::Path::new("/var/lib/archy/x"))
        );
        assert_eq!(v.to_string(), "/var/lib/archy/x:/x:ro,Z");
        assert_eq!("data:/d".parse::<Volume>().unwrap().host_source(), None);
        for (bad, why) in [
            ("data", "is not SOURCE:DEST[:OPTIONS]"),
            ("x:relative", "must be an absolute path"),
            ("/a/../b:/d", "must not contain `..`"),
            ("-x:/d", "absolute path or a volume name"),
            ("x:/d:bogus", "unknown volume option `bogus`"),
        ] {
            let err = bad.parse::<Volume>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn restart_policies_round_trip_and_bad_ones_say_what_is_expected() {
        for text in [
            "no",
            "always",
            "on-failure",
            "on-failure:5",
            "unless-stopped",
        ] {
            assert_eq!(text.parse::<Restart>().unwrap().to_string(), text);
        }
        for bad in ["sometimes", "on-failure:x", "always:1", ""] {
            let err = bad.parse::<Restart>().unwrap_err();
            assert!(
                err.contains("must be no, always, on-failure[:N] or unless-stopped"),
                "{err}"
            );
        }
    }

    #[test]
    fn renderers_parse_by_name_only() {
        for r in Renderer::ALL {
            assert_eq!(r.name().parse::<Renderer>().unwrap(), r);
        }
        let err = "nope.conf".parse::<Renderer>().unwrap_err();
        assert!(
            err.starts_with("`nope.conf` is not a built-in renderer (bitcoin.conf, lnd.conf"),
            "{err}"
        );
    }
}
