//! Manifest values that are types, not strings (podlet's habit): their `Deserialize` checks
//! them, so a manifest that parses holds only valid ones and nothing downstream re-parses a
//! string or `.expect()`s. Errors name the expectation; serde_norway adds the key and the line.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Scalar;

/// A value read from one YAML string and checked by its `FromStr` (whose error is the message).
/// Parsed inside the visitor, so serde_norway puts the key's path and line on the error.
fn from_yaml_str<'de, D, T>(de: D) -> Result<T, D::Error>
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

#[cfg(test)]
mod tests {
    use super::*;

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
