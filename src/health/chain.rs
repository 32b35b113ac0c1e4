//! Chain-aware probes, run from the host like `http:` (no podman call): `bitcoin_rpc:` asks
//! bitcoind `getblockchaininfo` as archy's own probe user, `lnd_state:` asks lnd's REST
//! `GET /v1/state` (no macaroon). What the answers mean is here, pure ([`bitcoin_answer`],
//! [`lnd_answer`]) and unit tested; the runners in [`super::probe`] only send one request each.

use serde::Deserialize;

pub use super::result::{ChainProgress, Phase};
use super::ProbeResult;

/// bitcoind's "still loading" error (`RPC_IN_WARMUP`, bitcoin/bitcoin src/rpc/protocol.h).
pub const RPC_IN_WARMUP: i64 = -28;
pub use crate::rpc_users::PROBE_USER;

fn with_phase(ok: bool, evidence: String, phase: Option<Phase>) -> ProbeResult {
    let mut r = ProbeResult::new(ok, evidence);
    r.phase = phase;
    r
}

#[derive(Deserialize)]
struct RpcReply {
    #[serde(default)]
    result: Option<BlockchainInfo>,
    #[serde(default)]
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcError {
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct BlockchainInfo {
    blocks: u64,
    headers: u64,
    verificationprogress: f64,
    initialblockdownload: bool,
}

/// What bitcoind's answer to `getblockchaininfo` means. Pure.
pub fn bitcoin_answer(status: u16, body: &str) -> ProbeResult {
    let reply: Option<RpcReply> = serde_json::from_str(body).ok();
    match reply {
        Some(RpcReply {
            result: Some(info), ..
        }) => {
            let progress = ChainProgress {
                blocks: info.blocks,
                headers: info.headers,
                progress_ppm: (info.verificationprogress.clamp(0.0, 1.0) * 1_000_000.0).round()
                    as u32,
                ibd: info.initialblockdownload,
            };
            let mut r = if progress.ibd {
                with_phase(
                    true,
                    format!("syncing {}", progress.describe()),
                    Some(Phase::Syncing(progress)),
                )
            } else {
                with_phase(true, format!("synced, {} blocks", progress.blocks), None)
            };
            r.chain = Some(progress);
            r
        }
        Some(RpcReply {
            error: Some(e), ..
        }) if e.code == RPC_IN_WARMUP => with_phase(
            false,
            format!("bitcoind is starting: {}", e.message),
            Some(Phase::Starting),
        ),
        Some(RpcReply { error: Some(e), .. }) => ProbeResult::new(
            false,
            format!("getblockchaininfo: HTTP {status}, error {}: {}", e.code, e.message),
        ),
        _ if status == 401 || status == 403 => ProbeResult::new(
            false,
            format!(
                "getblockchaininfo: HTTP {status}: bitcoind refused archy's probe user `{PROBE_USER}` (is bitcoin.conf rendered by archy?)"
            ),
        ),
        _ => ProbeResult::new(false, format!("getblockchaininfo: HTTP {status}, no JSON-RPC answer")),
    }
}

/// lnd's wallet states (lightningnetwork/lnd lnrpc/stateservice.proto, `enum WalletState`)
/// and what each means. Pure.
pub fn lnd_answer(status: u16, body: &str) -> ProbeResult {
    if status != 200 {
        return ProbeResult::new(false, format!("GET /v1/state: HTTP {status}"));
    }
    #[derive(Deserialize)]
    struct State {
        // proto3's zero value (NON_EXISTING) may be left out of the JSON.
        #[serde(default)]
        state: Option<String>,
    }
    let Ok(State { state }) = serde_json::from_str::<State>(body) else {
        return ProbeResult::new(false, "GET /v1/state: not lnd's state JSON".into());
    };
    let state = state.unwrap_or_else(|| "NON_EXISTING".into());
    match state.as_str() {
        "NON_EXISTING" => with_phase(
            false,
            "lnd state NON_EXISTING: waiting for the operator to create the wallet (`lncli create`)".into(),
            Some(Phase::WaitingForOperator),
        ),
        "LOCKED" => with_phase(
            false,
            "lnd state LOCKED: waiting for the operator to unlock the wallet (`lncli unlock`)".into(),
            Some(Phase::WaitingForOperator),
        ),
        "UNLOCKED" | "RPC_ACTIVE" | "WAITING_TO_START" => with_phase(
            false,
            format!("lnd state {state}: starting"),
            Some(Phase::Starting),
        ),
        "SERVER_ACTIVE" => ProbeResult::new(true, "lnd state SERVER_ACTIVE".into()),
        other => ProbeResult::new(false, format!("lnd state `{other}`: unknown")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(blocks: u64, headers: u64, progress: f64, ibd: bool) -> String {
        format!(
            r#"{{"result":{{"chain":"main","blocks":{blocks},"headers":{headers},"verificationprogress":{progress},"initialblockdownload":{ibd}}},"error":null,"id":"archy"}}"#
        )
    }

    #[test]
    fn bitcoind_answers_mean_starting_syncing_or_healthy() {
        let r = bitcoin_answer(200, &info(512_000, 870_000, 0.41234, true));
        assert!(r.ok);
        assert_eq!(r.evidence, "syncing 41.2 %, 512000/870000 blocks");
        let Some(Phase::Syncing(p)) = r.phase else {
            panic!("{r:?}")
        };
        assert_eq!(
            (p.blocks, p.headers, p.progress_ppm, p.ibd),
            (512_000, 870_000, 412_340, true)
        );
        let r = bitcoin_answer(200, &info(870_000, 870_000, 0.999_999_1, false));
        assert_eq!((r.ok, r.phase), (true, None));
        assert_eq!(r.chain.map(|c| c.ibd), Some(false));
        assert_eq!(r.evidence, "synced, 870000 blocks");
        let r = bitcoin_answer(
            500,
            r#"{"result":null,"error":{"code":-28,"message":"Loading block index…"},"id":"archy"}"#,
        );
        assert_eq!((r.ok, r.phase), (false, Some(Phase::Starting)));
        assert_eq!(r.evidence, "bitcoind is starting: Loading block index…");
        let r = bitcoin_answer(403, "");
        assert!(
            !r.ok && r.phase.is_none() && r.evidence.contains("archy-probe"),
            "{r:?}"
        );
        let r = bitcoin_answer(500, r#"{"result":null,"error":{"code":-1,"message":"x"}}"#);
        assert_eq!(r.evidence, "getblockchaininfo: HTTP 500, error -1: x");
        assert!(!bitcoin_answer(502, "<html>").ok);
    }

    #[test]
    fn lnd_states_from_stateservice_proto() {
        for (state, ok, phase) in [
            ("NON_EXISTING", false, Some(Phase::WaitingForOperator)),
            ("LOCKED", false, Some(Phase::WaitingForOperator)),
            ("UNLOCKED", false, Some(Phase::Starting)),
            ("RPC_ACTIVE", false, Some(Phase::Starting)),
            ("WAITING_TO_START", false, Some(Phase::Starting)),
            ("SERVER_ACTIVE", true, None),
            ("SOMETHING_NEW", false, None),
        ] {
            let r = lnd_answer(200, &format!(r#"{{"state":"{state}"}}"#));
            assert_eq!((r.ok, r.phase), (ok, phase), "{state}: {r:?}");
        }
        let r = lnd_answer(200, "{}");
        assert_eq!(r.phase, Some(Phase::WaitingForOperator));
        assert!(r.evidence.contains("lncli create"), "{r:?}");
        assert!(lnd_answer(200, r#"{"state":"LOCKED"}"#)
            .evidence
            .contains("lncli unlock"));
        let r = lnd_answer(500, "");
        assert_eq!(
            (r.ok, r.phase, r.evidence.as_str()),
            (false, None, "GET /v1/state: HTTP 500")
        );
    }
}
