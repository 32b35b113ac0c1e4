//! The YAML-bomb bound: how much a manifest may mean once its aliases are expanded.
//!
//! serde_norway expands an alias (`*a`) by replaying its anchor's events, so 250 KiB of
//! `command: [&a "<100 KB>", *a, *a, …]` means 3.9 GB of strings (a tick measured 11.4 GB RSS and
//! 16 s). Its own repetition limit counts jumps, not bytes, and does not stop that. Before the
//! real parse, one walk over the document charges every scalar's bytes and every node; it
//! stops as soon as the budget is spent, so a bomb costs at most [`MAX_EXPANDED_BYTES`] of work.
//!
//! Anchors stay allowed (nothing in a manifest needs them, but a file using one to repeat a
//! short value is not wrong); what is refused is their expansion past the bound.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, Visitor};

use super::MAX_MANIFEST_BYTES;

/// Expanded size allowed, in bytes of scalar text plus one per node. Without aliases a manifest
/// cannot mean much more than its text (an escape like `\L` turns 2 bytes into 3; a flow map
/// `{a,b}` holds 3 nodes in 2 bytes), so 4 times the file limit passes every manifest written
/// out by hand and stops a bomb after 1 MiB of work.
pub const MAX_EXPANDED_BYTES: usize = 4 * MAX_MANIFEST_BYTES as usize;

/// `Err` with a message naming the problem when `text`'s aliases expand past
/// [`MAX_EXPANDED_BYTES`]; `Ok` otherwise, also for YAML the real parse will reject (it says
/// why with a location).
pub fn check(text: &str) -> Result<(), String> {
    let left = Cell::new(MAX_EXPANDED_BYTES);
    let exceeded = Cell::new(false);
    let walk = Walk {
        left: &left,
        exceeded: &exceeded,
    };
    let _ = walk.deserialize(serde_norway::Deserializer::from_str(text));
    if exceeded.get() {
        Err(format!(
            "document root: YAML aliases expand this manifest past {MAX_EXPANDED_BYTES} bytes (4 times the \
             {MAX_MANIFEST_BYTES}-byte file limit): refused unexpanded as a YAML bomb; write the \
             values out instead of repeating an anchor (`*name`)"
        ))
    } else {
        Ok(())
    }
}

/// One node of the walk: charges what it visits against the shared budget.
#[derive(Clone, Copy)]
struct Walk<'a> {
    left: &'a Cell<usize>,
    exceeded: &'a Cell<bool>,
}

impl Walk<'_> {
    /// Take `bytes` (plus one for the node) from the budget; an error once it is spent, which
    /// ends the walk at once.
    fn charge<E: de::Error>(self, bytes: usize) -> Result<(), E> {
        if let Some(left) = self.left.get().checked_sub(bytes.saturating_add(1)) {
            self.left.set(left);
            Ok(())
        } else {
            self.exceeded.set(true);
            Err(E::custom("expansion bound exceeded"))
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.charge(1)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.charge(8)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.charge(8)
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.charge(16)
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.charge(16)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.charge(8)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.charge(v.len())
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.charge(v.len())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.charge(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.charge(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.charge(0)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.charge(0)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }

    /// A tagged value (`!tag value`): the tag is small, the value is walked.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess as _;
        let (IgnoredAny, variant) = data.variant()?;
        variant.newtype_variant_seed(self)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `command: [&a "<100 KB of x>", *a, …]` in a file under the size limit.
    pub(crate) fn known_key_bomb() -> String {
        let x = "x".repeat(100 * 1024);
        let mut yaml = format!("app: bomb\nimage: i\ncommand: [&a \"{x}\"");
        while yaml.len() < 250 * 1024 {
            yaml.push_str(", *a");
        }
        yaml.push_str("]\n");
        yaml
    }

    #[test]
    fn a_bomb_of_known_keys_is_refused_quickly() {
        let yaml = known_key_bomb();
        assert!(yaml.len() as u64 <= MAX_MANIFEST_BYTES);
        let started = std::time::Instant::now();
        let err = check(&yaml).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            err.contains("YAML aliases expand this manifest past"),
            "{err}"
        );
    }

    #[test]
    fn honest_manifests_and_small_aliases_pass() {
        // A few aliases that repeat a short value stay allowed.
        let yaml = "app: a\nimage: i\nenv: {A: &v hello, B: *v}\ncommand: [&c x, *c, *c]\n";
        check(yaml).unwrap();
        // Written-out text up to the file limit, in the densest shapes: escapes that grow
        // (`\L` is 3 bytes), flow maps of null values, long scalars.
        let grow = format!("k: \"{}\"\n", "\\L".repeat(100 * 1024));
        check(&grow).unwrap();
        let nodes = format!("k: {{{}z}}\n", "a,".repeat(120 * 1024));
        check(&nodes).unwrap();
        check(&format!("k: {}\n", "x".repeat(250 * 1024))).unwrap();
        // Not YAML at all: left to the real parse, which says where.
        check("[unclosed").unwrap();
    }

    #[test]
    fn nested_aliases_are_charged_per_expansion() {
        // 2 KB repeated 10 × 10 × 10 times: 2 MB in few enough jumps that serde_norway's own
        // repetition limit (100 jumps per event) lets it through.
        let mut yaml = format!("env: {{A: &a0 \"{}\"}}\n", "x".repeat(2048));
        for i in 1..4 {
            let p = format!("*a{}", i - 1);
            yaml.push_str(&format!("k{i}: &a{i} [{}]\n", vec![p; 10].join(", ")));
        }
        assert!(check(&yaml).is_err());
        // Two levels (200 KB) are within the bound.
        let two = yaml.lines().take(3).collect::<Vec<_>>().join("\n");
        check(&two).unwrap();
    }
}
