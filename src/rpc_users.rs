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
    /// archy's own `bitcoin_rpc:` health probe (user `archy-probe`).
    Probe,
}

/// One bitcoind RPC consumer: its user name (the app id) and kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Consumer {
    pub name: String,
    pub kind: ConsumerKind,
}

/// One RPC call a consumer makes, and where in the consumer's source it makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    /// The consumer's file that sends it (at the version the shipped image runs).
    pub source: &'static str,
}

const fn call(method: &'static str, source: &'static str) -> Call {
    Call { method, source }
}

/// Every call lnd 0.18.4-beta (manifests/lnd.yaml) makes to its bitcoind backend with ZMQ (the
/// rendered lnd.conf sets zmqpubrawblock/zmqpubrawtx, so rpcpolling is off). Traced in
/// lightningnetwork/lnd v0.18.4-beta and the modules its go.mod pins: btcsuite/btcwallet
/// v0.16.10-0.20240912233857-ffb143c77cc5 (its `chain` package is lnd's bitcoind client) and
/// btcsuite/btcd v0.24.3-0.20240921052913-67b8efd3ba53 (`rpcclient`, which maps each Go call
/// to the RPC of the same name).
pub const LND_CALLS: &[Call] = &[
    // lnwallet/chainfee/estimator.go BitcoindEstimator.fetchEstimate (RawRequest).
    call("estimatesmartfee", "lnd lnwallet/chainfee/estimator.go"),
    // chain/bitcoind_conn.go BitcoindConn.GetBlock; chain/bitcoind_client.go FilterBlocks,
    // Rescan (block contents for the wallet and the notifier).
    call("getblock", "btcwallet chain/bitcoind_conn.go"),
    // chain/bitcoind_conn.go NewBitcoindConn (the network check) and chain/bitcoind_client.go
    // GetBestBlock; lnd chainreg/taproot_check.go backendSupportsTaproot.
    call("getblockchaininfo", "btcwallet chain/bitcoind_conn.go"),
    // chain/bitcoind_conn.go getBlockHashDuringStartup (the genesis hash: which network);
    // lnd chainntnfs/bitcoindnotify/bitcoind.go historicalSpendDetails.
    call("getblockhash", "btcwallet chain/bitcoind_conn.go"),
    // chain/bitcoind_client.go GetBlockHeader, GetBlockHeaderVerbose, GetBlockHeight;
    // lnd chainntnfs/bitcoindnotify/bitcoind.go Start.
    call("getblockheader", "btcwallet chain/bitcoind_client.go"),
    // lnd chainreg/taproot_check.go (RawRequest, bitcoind >= 23.0).
    call("getdeploymentinfo", "lnd chainreg/taproot_check.go"),
    // btcd rpcclient/infrastructure.go BackendVersion calls getinfo first and needs bitcoind's
    // "method not found" (-32601) to fall back to getnetworkinfo; a 403 fails the detection,
    // and with it SendRawTransaction, TestMempoolAccept and GetTxSpendingPrevOut
    // (rpcclient/rawtransactions.go). Bitcoin Core has no getinfo: allowing it costs nothing.
    call("getinfo", "btcd rpcclient/infrastructure.go"),
    // lnd lnwallet/chainfee/estimator.go BitcoindEstimator.fetchMinMempoolFee (RawRequest).
    call("getmempoolinfo", "lnd lnwallet/chainfee/estimator.go"),
    // lnd chainreg/chainregistry.go getBitcoindHealthCheckCmd; btcwallet
    // chain/bitcoind_events.go hasSpendingPrevoutRPC; btcd rpcclient BackendVersion.
    call("getnetworkinfo", "lnd chainreg/chainregistry.go"),
    // lnd chainreg/chainregistry.go checkOutboundPeers (the chain backend health check off
    // regtest/simnet) and lnwallet/chainfee/filtermanager.go fetchBitcoindFilters (peers'
    // fee filters).
    call("getpeerinfo", "lnd chainreg/chainregistry.go"),
    // chain/mempool.go (the mempool mirror btcwallet keeps when bitcoind < 24 lacks
    // gettxspendingprevout) and chain/bitcoind_client.go GetRawMempool.
    call("getrawmempool", "btcwallet chain/mempool.go"),
    // chain/bitcoind_client.go GetRawTransaction(Verbose); lnd chainntnfs/bitcoindnotify/
    // bitcoind.go historicalConfDetails (txindex) and the mempool spend lookup.
    call("getrawtransaction", "btcwallet chain/bitcoind_client.go"),
    // chain/bitcoind_client.go GetTxOut; lnd chainntnfs/bitcoindnotify/bitcoind.go
    // RegisterSpendNtfn and lnwallet/btcwallet/blockchain.go GetUtxo.
    call("gettxout", "btcwallet chain/bitcoind_client.go"),
    // chain/bitcoind_zmq_events.go getTxSpendingPrevOut (LookupInputSpend) on bitcoind >= 24:
    // refused, btcwallet reads the error as "not in the mempool" and the sweeper stops seeing
    // its own sweeps.
    call(
        "gettxspendingprevout",
        "btcwallet chain/bitcoind_zmq_events.go",
    ),
    // lnd chainreg/chainregistry.go NewPartialChainControl: checks that bitcoind publishes
    // rawblock and rawtx before using ZMQ.
    call("getzmqnotifications", "lnd chainreg/chainregistry.go"),
    // chain/bitcoind_client.go SendRawTransaction (the wallet's PublishTransaction).
    call("sendrawtransaction", "btcwallet chain/bitcoind_client.go"),
    // chain/bitcoind_client.go TestMempoolAccept (lnd lnwallet/btcwallet/btcwallet.go
    // PublishTransaction and CheckMempoolAcceptance).
    call("testmempoolaccept", "btcwallet chain/bitcoind_client.go"),
    // lnd chainreg/chainregistry.go getBitcoindHealthCheckCmd: the health check's call on
    // bitcoind >= 0.15.
    call("uptime", "lnd chainreg/chainregistry.go"),
];

/// Every call ElectrumX 1.18.0 (PyPI `e-x` 1.18.0, the version manifests/electrumx.yaml runs)
/// makes for COIN=Bitcoin: its Daemon class in electrumx/server/daemon.py, which the block
/// processor, mempool and sessions reach only through its methods.
pub const ELECTRUMX_CALLS: &[Call] = &[
    // Daemon.estimatefee (it probes estimatesmartfee with no params once: bitcoind answers
    // -1, not -32601 "method not found", so the legacy `estimatefee` is never sent).
    call("estimatesmartfee", "electrumx/server/daemon.py"),
    // Daemon.raw_blocks and deserialised_block.
    call("getblock", "electrumx/server/daemon.py"),
    // Daemon.height.
    call("getblockcount", "electrumx/server/daemon.py"),
    // Daemon.block_hex_hashes (batched).
    call("getblockhash", "electrumx/server/daemon.py"),
    // Daemon.getnetworkinfo and relayfee.
    call("getnetworkinfo", "electrumx/server/daemon.py"),
    // Daemon.mempool_hashes.
    call("getrawmempool", "electrumx/server/daemon.py"),
    // Daemon.getrawtransaction(s) (batched).
    call("getrawtransaction", "electrumx/server/daemon.py"),
    // Daemon.broadcast_transaction.
    call("sendrawtransaction", "electrumx/server/daemon.py"),
    // Daemon.broadcast_package.
    call("submitpackage", "electrumx/server/daemon.py"),
];

/// The bitcoin UI's documented needs (issue 24): the node page reads chain state, network
/// state, the indexes and the ZMQ endpoints. No peer data (getpeerinfo, getnodeaddresses: a
/// web page must not learn the node's peers), nothing that broadcasts, scans or signs.
pub const UI_CALLS: &[Call] = &[
    call("getblockchaininfo", "issue 24: the bitcoin UI's node page"),
    call("getindexinfo", "issue 24: the bitcoin UI's node page"),
    call("getnetworkinfo", "issue 24: the bitcoin UI's node page"),
    call(
        "getzmqnotifications",
        "issue 24: the bitcoin UI's node page",
    ),
];

/// The RPC user archy's own `bitcoin_rpc:` probe asks bitcoind as.
pub const PROBE_USER: &str = "archy-probe";

/// The probe user's HTTP basic token (`archy-probe:<derived password>`, base64).
pub fn probe_token(secret: &Secret) -> String {
    basic_token(PROBE_USER, &consumer_password(secret, PROBE_USER))
}

/// archy's `bitcoin_rpc:` health probe (src/health/chain.rs): one call.
pub const PROBE_CALLS: &[Call] = &[call("getblockchaininfo", "archy src/health/chain.rs")];

impl ConsumerKind {
    /// The calls this kind of consumer makes, with their sources.
    pub fn calls(self) -> &'static [Call] {
        match self {
            ConsumerKind::Lnd => LND_CALLS,
            ConsumerKind::Electrumx => ELECTRUMX_CALLS,
            ConsumerKind::UiProxy => UI_CALLS,
            ConsumerKind::Probe => PROBE_CALLS,
        }
    }

    /// The calls this kind of consumer may make, sorted.
    pub fn whitelist(self) -> Vec<&'static str> {
        let mut calls: Vec<&'static str> = self.calls().iter().map(|c| c.method).collect();
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
    fn whitelists_are_the_traced_calls_and_nothing_else() {
        assert_eq!(
            ConsumerKind::Lnd.whitelist(),
            [
                "estimatesmartfee",
                "getblock",
                "getblockchaininfo",
                "getblockhash",
                "getblockheader",
                "getdeploymentinfo",
                "getinfo",
                "getmempoolinfo",
                "getnetworkinfo",
                "getpeerinfo",
                "getrawmempool",
                "getrawtransaction",
                "gettxout",
                "gettxspendingprevout",
                "getzmqnotifications",
                "sendrawtransaction",
                "testmempoolaccept",
                "uptime",
            ]
        );
        assert_eq!(
            ConsumerKind::Electrumx.whitelist(),
            [
                "estimatesmartfee",
                "getblock",
                "getblockcount",
                "getblockhash",
                "getnetworkinfo",
                "getrawmempool",
                "getrawtransaction",
                "sendrawtransaction",
                "submitpackage",
            ]
        );
        assert_eq!(
            ConsumerKind::UiProxy.whitelist(),
            [
                "getblockchaininfo",
                "getindexinfo",
                "getnetworkinfo",
                "getzmqnotifications"
            ]
        );
        assert_eq!(ConsumerKind::Probe.whitelist(), ["getblockchaininfo"]);
        for kind in [
            ConsumerKind::Lnd,
            ConsumerKind::Electrumx,
            ConsumerKind::UiProxy,
            ConsumerKind::Probe,
        ] {
            // One entry per method, each with its source.
            let calls = kind.calls();
            assert_eq!(calls.len(), kind.whitelist().len(), "{kind:?}: duplicates");
            assert!(calls.iter().all(|c| !c.source.is_empty()), "{kind:?}");
            for never in [
                "fundrawtransaction",
                "scantxoutset",
                "gettxoutsetinfo",
                "getblocktemplate",
                "getblockfrompeer",
                "signrawtransactionwithkey",
                "signmessagewithprivkey",
                "stop",
                "dumpprivkey",
                "sendtoaddress",
                "setban",
                "invalidateblock",
            ] {
                assert!(!kind.whitelist().contains(&never), "{kind:?} {never}");
            }
        }
    }
}
