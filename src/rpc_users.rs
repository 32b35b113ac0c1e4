//! Least-privilege bitcoind RPC users, all derived from the one canonical secret.
//!
//! Every app that talks to bitcoind (lnd, electrumx, the UI that proxies RPC) gets its own
//! `rpcauth` user named after the app, with a password derived from the canonical password and
//! the consumer's name (HMAC-SHA256), so rotating the one secret rotates every consumer and
//! re-rendering is stable. Each user gets an `rpcwhitelist`; the canonical user keeps full access
//! for the operator (`rpcwhitelistdefault=0`: without it Bitcoin Core denies every user that has
//! no whitelist as soon as any whitelist exists — `g_rpc_whitelist_default` in bitcoin/bitcoin
//! src/httprpc.cpp, `InitRPCAuthentication`).

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::secret::Secret;

/// What a consumer does with bitcoind; decides its whitelist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsumerKind {
    /// lnd's bitcoind backend.
    Lnd,
    /// ElectrumX's daemon client.
    Electrumx,
    /// A browser UI whose nginx proxies RPC calls.
    UiProxy,
}

/// One bitcoind RPC consumer: its user name (the app id) and kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Consumer {
    pub name: String,
    pub kind: ConsumerKind,
}

/// Calls nix-bitcoin allows its `public` RPC user, which its lnd, electrs, fulcrum and mempool
/// modules all use. Source: fort-nix/nix-bitcoin modules/bitcoind-rpc-public-whitelist.nix
/// (commit c4f1724), in its order.
pub const NIX_BITCOIN_PUBLIC: &[&str] = &[
    "echo",
    "getinfo",
    "getindexinfo",
    "help",
    "ping",
    "uptime",
    "getbestblockhash",
    "getblock",
    "getblockchaininfo",
    "getblockcount",
    "getblockfilter",
    "getblockfrompeer",
    "getblockhash",
    "getblockheader",
    "getblockstats",
    "getchaintips",
    "getchaintxstats",
    "getdeploymentinfo",
    "getdifficulty",
    "getmempoolancestors",
    "getmempooldescendants",
    "getmempoolentry",
    "getmempoolinfo",
    "getrawmempool",
    "gettxout",
    "gettxoutproof",
    "gettxoutsetinfo",
    "scantxoutset",
    "verifytxoutproof",
    "getblocktemplate",
    "getmininginfo",
    "getnetworkhashps",
    "getnetworkinfo",
    "getnodeaddresses",
    "getpeerinfo",
    "analyzepsbt",
    "combinepsbt",
    "combinerawtransaction",
    "converttopsbt",
    "createpsbt",
    "createrawtransaction",
    "decodepsbt",
    "decoderawtransaction",
    "decodescript",
    "finalizepsbt",
    "fundrawtransaction",
    "getrawtransaction",
    "joinpsbts",
    "sendrawtransaction",
    "signrawtransactionwithkey",
    "testmempoolaccept",
    "utxoupdatepsbt",
    "createmultisig",
    "deriveaddresses",
    "estimatesmartfee",
    "getdescriptorinfo",
    "signmessagewithprivkey",
    "validateaddress",
    "verifymessage",
    "getzmqnotifications",
];

/// ElectrumX 1.18 (PyPI `e-x` 1.18.0, src/electrumx/server/daemon.py) also relays transaction
/// packages with `submitpackage`, which nix-bitcoin's list (written for electrs) lacks.
const ELECTRUMX_EXTRA: &[&str] = &["submitpackage"];

/// A browser UI gets the read-only part of the public list: nothing that broadcasts, asks peers,
/// scans the UTXO set (minutes of CPU) or takes a private key over HTTP.
const UI_EXCLUDED: &[&str] = &[
    "getblockfrompeer",
    "getblocktemplate",
    "gettxoutsetinfo",
    "scantxoutset",
    "sendrawtransaction",
    "signmessagewithprivkey",
    "signrawtransactionwithkey",
    "fundrawtransaction",
];

impl ConsumerKind {
    /// The calls this kind of consumer may make, sorted.
    pub fn whitelist(self) -> Vec<&'static str> {
        let mut calls: Vec<&'static str> = match self {
            // nix-bitcoin runs lnd with the public user (modules/lnd.nix: bitcoind.rpcuser).
            ConsumerKind::Lnd => NIX_BITCOIN_PUBLIC.to_vec(),
            ConsumerKind::Electrumx => NIX_BITCOIN_PUBLIC
                .iter()
                .chain(ELECTRUMX_EXTRA)
                .copied()
                .collect(),
            ConsumerKind::UiProxy => NIX_BITCOIN_PUBLIC
                .iter()
                .filter(|c| !UI_EXCLUDED.contains(c))
                .copied()
                .collect(),
        };
        calls.sort_unstable();
        calls.dedup();
        calls
    }
}

/// The consumer's RPC password: HMAC-SHA256 keyed with the canonical password over
/// `archy-rpc-consumer:<name>`, hex (64 characters, safe in URLs and config lines).
pub fn consumer_password(secret: &Secret, name: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.password.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(b"archy-rpc-consumer:");
    mac.update(name.as_bytes());
    let password = hex::encode(mac.finalize().into_bytes());
    crate::output::register_secret(&password);
    password
}

/// `user:password` and its HTTP basic token, as a consumer sends them.
pub fn basic_token(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    crate::output::register_secret(&token);
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(password: &str) -> Secret {
        Secret {
            user: "archy".into(),
            password: password.into(),
        }
    }

    #[test]
    fn passwords_are_stable_per_consumer_and_follow_the_secret() {
        let a = consumer_password(&secret("one"), "lnd");
        assert_eq!(a, consumer_password(&secret("one"), "lnd"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, consumer_password(&secret("one"), "electrumx"));
        assert_ne!(a, consumer_password(&secret("two"), "lnd"));
        // Known answer: python3 -c "import hmac;print(hmac.new(b'one',
        //   b'archy-rpc-consumer:lnd','sha256').hexdigest())"
        assert_eq!(
            a,
            "8a7a2026caa38bc24834ea77559002fcf4be0ea173b352384450c1eadaf96028"
        );
    }

    #[test]
    fn whitelists_are_least_privilege() {
        let ui = ConsumerKind::UiProxy.whitelist();
        assert!(ui.contains(&"getblockchaininfo"));
        assert!(!ui.contains(&"sendrawtransaction"));
        assert!(!ui.contains(&"stop"));
        let lnd = ConsumerKind::Lnd.whitelist();
        for call in [
            "getblockchaininfo",
            "sendrawtransaction",
            "estimatesmartfee",
            "getzmqnotifications",
        ] {
            assert!(lnd.contains(&call), "{call}");
        }
        let ex = ConsumerKind::Electrumx.whitelist();
        assert!(ex.contains(&"submitpackage"));
        for kind in [
            ConsumerKind::Lnd,
            ConsumerKind::Electrumx,
            ConsumerKind::UiProxy,
        ] {
            let list = kind.whitelist();
            for admin in [
                "stop",
                "dumpprivkey",
                "sendtoaddress",
                "setban",
                "invalidateblock",
            ] {
                assert!(!list.contains(&admin), "{kind:?} {admin}");
            }
            assert!(
                list.windows(2).all(|w| w[0] < w[1]),
                "sorted, no duplicates"
            );
        }
    }
}
