//! One probe's outcome, shared by the runners ([`super::probe`], [`super::poller`]) and the
//! chain-aware answers ([`super::chain`]).

use serde::{Deserialize, Serialize};

/// One probe's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    pub ok: bool,
    /// Status code, connect error, or exit code and output tail (secrets redacted).
    pub evidence: String,
    /// Chain-aware probes: alive but not ready (starting, syncing, waiting for the operator),
    /// which is not a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `bitcoin_rpc:`: where the chain is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainProgress>,
}

impl ProbeResult {
    pub(crate) fn new(ok: bool, evidence: String) -> Self {
        ProbeResult {
            ok,
            evidence: crate::output::redact(&evidence),
            phase: None,
            chain: None,
        }
    }
}

/// Where a chain node is, from `getblockchaininfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainProgress {
    pub blocks: u64,
    pub headers: u64,
    /// `verificationprogress` in millionths (0–1000000).
    pub progress_ppm: u32,
    /// `initialblockdownload`.
    pub ibd: bool,
}

impl ChainProgress {
    /// `41.2 %, 512000/870000 blocks`.
    pub fn describe(&self) -> String {
        format!(
            "{}.{} %, {}/{} blocks",
            self.progress_ppm / 10_000,
            self.progress_ppm % 10_000 / 1_000,
            self.blocks,
            self.headers
        )
    }
}

/// What a passing-or-not probe answer says beyond pass/fail: the app is alive but not ready,
/// and that is not a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "phase")]
pub enum Phase {
    /// Alive, not ready yet (bitcoind loading: `-28`; lnd unlocked, starting its server).
    Starting,
    /// bitcoind answers and is in initial block download.
    Syncing(ChainProgress),
    /// lnd waits for its operator to create or unlock the wallet.
    WaitingForOperator,
}
