//! podman's IP allocations for netavark networks, read as data (pure): which addresses of
//! archy's networks are reserved for a container that will never release them.
//!
//! podman (not netavark) allocates: containers/common `libnetwork/netavark/ipam.go` keeps, in
//! a bbolt file `ipam.db` beside netavark's config, one bucket per network name holding a
//! bucket per subnet (raw address → container id, plus `lastIP`) and an `ids` bucket
//! (container id → JSON list of its addresses). `allocIPs` writes both at a container's
//! network setup, `deallocIPs` removes both at its teardown, looking the addresses up by id.
//! So an address stays reserved for ever when:
//! - podman forgot the container (its database lost, a ghost killed behind its back): no
//!   teardown will ever run for that id — **forgotten**;
//! - the container was set up again without a teardown in between (runtime dirs wiped,
//!   podman's refresh): `allocIPs` rewrote `ids[id]` with the new address, and the old
//!   address's subnet key is no longer reachable from any id — **superseded**.
//!
//! On a /24 each leak costs one of 253 addresses; a node that heals often runs out ("IPAM
//! error: failed to find free IP in range") and no container of the network starts again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::boltdb::{Bucket, Item};

/// `ipam.go`'s `idBucket` and `lastIP` keys.
const IDS_BUCKET: &[u8] = b"ids";

/// Why an allocation will never be released by podman.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeakKind {
    /// podman does not know the container (nothing will tear it down).
    Forgotten,
    /// podman knows the container, but its `ids` entry names other addresses now.
    Superseded,
}

/// One address reserved in `ipam.db` for a container that will never release it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leak {
    pub network: String,
    pub subnet: String,
    pub address: IpAddr,
    pub container_id: String,
    pub kind: LeakKind,
    /// The subnet bucket's key as stored (4 or 16 bytes: an IPv4 address podman never writes
    /// as 16 still is released by the key it has).
    #[serde(skip)]
    pub key: Vec<u8>,
}

impl Leak {
    /// What a step targets: `network/address`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.network, self.address)
    }

    pub fn describe(&self) -> String {
        let id = crate::podman::short_id(&self.container_id);
        match self.kind {
            LeakKind::Forgotten => format!(
                "{} on {} reserved for container {id}, which podman no longer knows",
                self.address, self.network
            ),
            LeakKind::Superseded => format!(
                "{} on {} reserved for container {id}, which has another address now",
                self.address, self.network
            ),
        }
    }
}

/// A subnet bucket's key as an address: 4 or 16 raw bytes (`util.NormalizeIP`); anything
/// else (`lastIP`) is not an allocation.
fn address_of(key: &[u8]) -> Option<IpAddr> {
    match key.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(key[0], key[1], key[2], key[3]))),
        16 => <[u8; 16]>::try_from(key)
            .ok()
            .map(|b| IpAddr::V6(Ipv6Addr::from(b)).to_canonical()),
        _ => None,
    }
}

/// `ids[id]`: Go's `json.Marshal([]net.IP)`, a list of address strings.
fn listed(ids: Option<&Bucket>, id: &str) -> BTreeSet<IpAddr> {
    let Some(Item::Value(json)) = ids.and_then(|b| b.get(id.as_bytes())) else {
        return BTreeSet::new();
    };
    serde_json::from_slice::<Vec<String>>(json)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .map(|a| a.to_canonical())
        .collect()
}

/// The leaks on `networks` (archy's network names): allocations to a container podman does
/// not know (`known`: every id podman lists), or not listed under their container's id. An
/// address a live network namespace holds (`live`, the kernel's word) is never a leak, whoever
/// the database says it belongs to.
pub fn leaks(
    root: &Bucket,
    networks: &BTreeSet<String>,
    known: &BTreeSet<String>,
    live: &BTreeSet<IpAddr>,
) -> Vec<Leak> {
    let mut out = Vec::new();
    for network in networks {
        let Some(net) = root.bucket(network.as_bytes()) else {
            continue;
        };
        let ids = net.bucket(IDS_BUCKET);
        let mut listed_by_id: BTreeMap<&str, BTreeSet<IpAddr>> = BTreeMap::new();
        for (subnet_key, item) in &net.items {
            let Item::Bucket(subnet) = item else { continue };
            if subnet_key.as_slice() == IDS_BUCKET {
                continue;
            }
            for (key, value) in &subnet.items {
                let (Some(address), Item::Value(id)) = (address_of(key), value) else {
                    continue;
                };
                let Ok(id) = std::str::from_utf8(id) else {
                    continue;
                };
                if live.contains(&address) {
                    continue;
                }
                let kind = if !known.contains(id) {
                    LeakKind::Forgotten
                } else if !listed_by_id
                    .entry(id)
                    .or_insert_with(|| listed(ids, id))
                    .contains(&address)
                {
                    LeakKind::Superseded
                } else {
                    continue;
                };
                out.push(Leak {
                    network: network.clone(),
                    subnet: String::from_utf8_lossy(subnet_key).into_owned(),
                    address,
                    container_id: id.to_string(),
                    kind,
                    key: key.clone(),
                });
            }
        }
    }
    out
}

/// The allocations on `network`: (address, container id), by subnet then address.
pub fn allocations(root: &Bucket, network: &str) -> Vec<(IpAddr, String)> {
    let Some(net) = root.bucket(network.as_bytes()) else {
        return Vec::new();
    };
    net.items
        .iter()
        .filter(|(k, _)| k.as_slice() != IDS_BUCKET)
        .filter_map(|(_, item)| match item {
            Item::Bucket(subnet) => Some(subnet),
            Item::Value(_) => None,
        })
        .flat_map(|subnet| subnet.items.iter())
        .filter_map(|(k, v)| match (address_of(k), v) {
            (Some(address), Item::Value(id)) => {
                Some((address, String::from_utf8_lossy(id).into_owned()))
            }
            _ => None,
        })
        .collect()
}

/// Every container id with an allocation on `networks`.
pub fn allocated_ids(root: &Bucket, networks: &BTreeSet<String>) -> BTreeSet<String> {
    networks
        .iter()
        .flat_map(|n| allocations(root, n))
        .map(|(_, id)| id)
        .collect()
}

/// `root` without `leaks`: each address's subnet key (only while it still names the same
/// container), and the `ids` entry of a forgotten container once none of its addresses is
/// left reserved — what `deallocIPs` would have deleted.
pub fn without(root: &Bucket, leaks: &[Leak]) -> (Bucket, Vec<String>) {
    let mut tree = root.clone();
    let mut done = Vec::new();
    for leak in leaks {
        let Some(net) = tree.bucket_mut(leak.network.as_bytes()) else {
            continue;
        };
        let key = &leak.key;
        let Some(subnet) = net.bucket_mut(leak.subnet.as_bytes()) else {
            continue;
        };
        let same =
            matches!(subnet.get(key), Some(Item::Value(v)) if v == leak.container_id.as_bytes());
        if same && subnet.delete_value(key) {
            done.push(format!("IP reservation {} released", leak.describe()));
        }
    }
    let forgotten: BTreeSet<(&str, &str)> = leaks
        .iter()
        .filter(|l| l.kind == LeakKind::Forgotten)
        .map(|l| (l.network.as_str(), l.container_id.as_str()))
        .collect();
    for (network, id) in forgotten {
        let Some(net) = tree.bucket_mut(network.as_bytes()) else {
            continue;
        };
        let still_held = net.items.iter().any(|(k, item)| {
            k.as_slice() != IDS_BUCKET
                && matches!(item, Item::Bucket(s) if s.items.iter().any(|(_, v)| matches!(v, Item::Value(v) if v == id.as_bytes())))
        });
        if !still_held {
            if let Some(ids) = net.bucket_mut(IDS_BUCKET) {
                ids.delete_value(id.as_bytes());
            }
        }
    }
    (tree, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn v(s: &str) -> Item {
        Item::Value(s.as_bytes().to_vec())
    }

    fn bucket(mut items: Vec<(Vec<u8>, Item)>) -> Bucket {
        items.sort_by(|x, y| x.0.cmp(&y.0));
        Bucket::new(0, items)
    }

    /// As `allocIPs` leaves it: A holds .2 (and .5 from a setup before its runtime dirs were
    /// wiped, superseded), B holds .3, C (forgotten) .4; another network "web" holds .4 for B.
    fn ipam() -> Bucket {
        let archy = bucket(vec![
            (
                b"10.89.0.0/24".to_vec(),
                Item::Bucket(bucket(vec![
                    (vec![10, 89, 0, 2], v(A)),
                    (vec![10, 89, 0, 3], v(B)),
                    (vec![10, 89, 0, 4], v(C)),
                    (vec![10, 89, 0, 5], v(A)),
                    (b"lastIP".to_vec(), Item::Value(vec![10, 89, 0, 5])),
                ])),
            ),
            (
                b"ids".to_vec(),
                Item::Bucket(bucket(vec![
                    (A.as_bytes().to_vec(), v("[\"10.89.0.2\"]")),
                    (B.as_bytes().to_vec(), v("[\"10.89.0.3\"]")),
                    (C.as_bytes().to_vec(), v("[\"10.89.0.4\"]")),
                ])),
            ),
        ]);
        let web = bucket(vec![
            (
                b"10.89.0.0/24".to_vec(),
                Item::Bucket(bucket(vec![(vec![10, 89, 0, 4], v(C))])),
            ),
            (
                b"ids".to_vec(),
                Item::Bucket(bucket(vec![(C.as_bytes().to_vec(), v("[\"10.89.0.4\"]"))])),
            ),
        ]);
        bucket(vec![
            (b"archy".to_vec(), Item::Bucket(archy)),
            (b"web".to_vec(), Item::Bucket(web)),
        ])
    }

    fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
        items.iter().cloned().collect()
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forgotten_and_superseded_allocations_of_archys_networks_are_leaks() {
        let found = leaks(
            &ipam(),
            &set(&["archy".to_string()]),
            &set(&[A.to_string(), B.to_string()]),
            &set(&[addr("10.89.0.2"), addr("10.89.0.3")]),
        );
        let got: Vec<(String, LeakKind)> = found
            .iter()
            .map(|l| (l.address.to_string(), l.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("10.89.0.4".to_string(), LeakKind::Forgotten),
                ("10.89.0.5".to_string(), LeakKind::Superseded),
            ]
        );
        assert!(found.iter().all(|l| l.network == "archy"), "{found:?}");
    }

    #[test]
    fn an_address_a_live_namespace_holds_is_never_a_leak() {
        let found = leaks(
            &ipam(),
            &set(&["archy".to_string()]),
            &set(&[A.to_string(), B.to_string()]),
            &set(&[addr("10.89.0.4"), addr("10.89.0.5")]),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn releasing_removes_the_subnet_keys_and_a_forgotten_containers_ids_entry_only() {
        let root = ipam();
        let networks = set(&["archy".to_string()]);
        let known = set(&[A.to_string(), B.to_string()]);
        let found = leaks(&root, &networks, &known, &BTreeSet::new());
        let (after, done) = without(&root, &found);
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(leaks(&after, &networks, &known, &BTreeSet::new()).is_empty());
        let archy = after.bucket(b"archy").unwrap();
        let subnet = archy.bucket(b"10.89.0.0/24").unwrap();
        assert!(
            subnet.get(&[10, 89, 0, 2]).is_some(),
            "A's live address kept"
        );
        assert!(subnet.get(&[10, 89, 0, 3]).is_some(), "B's address kept");
        assert!(subnet.get(b"lastIP").is_some());
        let ids = archy.bucket(b"ids").unwrap();
        assert!(
            ids.get(A.as_bytes()).is_some(),
            "A is known: its ids entry stays"
        );
        assert!(
            ids.get(C.as_bytes()).is_none(),
            "C's ids entry goes with its address"
        );
        // Another network's allocations for the same id are not archy's.
        assert_eq!(after.bucket(b"web"), root.bucket(b"web"));
    }

    #[test]
    fn a_key_that_changed_hands_since_the_probe_is_left() {
        let root = ipam();
        let networks = set(&["archy".to_string()]);
        let found = leaks(
            &root,
            &networks,
            &set(&[A.to_string(), B.to_string()]),
            &BTreeSet::new(),
        );
        // Between the probe and the repair, .4 was released and given to B.
        let mut moved = root.clone();
        let subnet = moved
            .bucket_mut(b"archy")
            .unwrap()
            .bucket_mut(b"10.89.0.0/24")
            .unwrap();
        subnet.delete_value(&[10, 89, 0, 4]);
        subnet.items.insert(2, (vec![10, 89, 0, 4], v(B)));
        let (after, done) = without(&moved, &found);
        assert_eq!(done.len(), 1, "{done:?}");
        let subnet = after
            .bucket(b"archy")
            .unwrap()
            .bucket(b"10.89.0.0/24")
            .unwrap();
        assert_eq!(subnet.get(&[10, 89, 0, 4]), Some(&v(B)));
    }
}
