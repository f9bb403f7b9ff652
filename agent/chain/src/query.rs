//! ABCI `Query` paths (docs/chain.md#queries): JSON answers about the
//! committed state.

use serde::Serialize;
use tendermint_proto::v0_38::abci::ResponseQuery;

use crate::codes;
use crate::state::{record_key, State};

/// The paths, for `--help` and errors.
pub const PATHS: &[&str] = &[
    "/app",
    "/params",
    "/beacon[/<height>]",
    "/account/<address>",
    "/node/<address or peer id>",
    "/nodes",
    "/activation/<EK sha256>",
    "/validators",
    "/sources",
    "/assignment[/<height>]",
    "/records/<height>[/<node>]",
];

#[derive(Serialize)]
struct AppInfo<'a> {
    chain_id: &'a str,
    height: u64,
    app_version: u64,
    app_hash: &'a str,
    block_time: u64,
    burned: u64,
    nodes: usize,
    records: usize,
    pending_upgrades: &'a std::collections::BTreeMap<u64, String>,
    applied_upgrades: &'a std::collections::BTreeMap<u64, String>,
}

fn found(height: u64, value: impl Serialize) -> ResponseQuery {
    ResponseQuery {
        code: codes::OK,
        value: serde_json::to_vec(&value).unwrap_or_default().into(),
        height: height as i64,
        ..Default::default()
    }
}

fn failed(code: u32, height: u64, log: String) -> ResponseQuery {
    ResponseQuery {
        code,
        log,
        height: height as i64,
        codespace: "xnode".into(),
        ..Default::default()
    }
}

fn parse_height(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// Answer from the committed state `st`; `mempool` (the state CheckTx
/// keeps) gives an account's pending nonce.
pub fn answer(st: &State, mempool: &State, path: &str, height: i64) -> ResponseQuery {
    let c = &st.core;
    let at = c.height;
    if height != 0 && height != at as i64 {
        return failed(
            codes::INVALID,
            at,
            format!(
                "this application answers at its latest height ({at}) only; asked for {height}"
            ),
        );
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let missing = |what: String| failed(codes::NOT_FOUND, at, what);
    match parts.as_slice() {
        ["app"] => found(
            at,
            AppInfo {
                chain_id: &c.chain_id,
                height: at,
                app_version: c.app_version,
                app_hash: &c.app_hash,
                block_time: c.block_time,
                burned: c.burned,
                nodes: c.nodes.len(),
                records: st.records.len(),
                pending_upgrades: &c.upgrades,
                applied_upgrades: &c.applied_upgrades,
            },
        ),
        ["params"] => found(at, &c.params),
        // The block hash an attestation binds to, as the chain checks it.
        ["beacon"] => match c.block_hashes.iter().next_back() {
            Some((h, hash)) => found(at, serde_json::json!({"height": h, "hash": hash})),
            None => missing("no block yet".into()),
        },
        ["beacon", h] => match parse_height(h).and_then(|h| c.block_hashes.get(&h).map(|x| (h, x)))
        {
            Some((h, hash)) => found(at, serde_json::json!({"height": h, "hash": hash})),
            None => missing(format!(
                "no beacon at '{h}': the chain keeps the last {} block hashes",
                c.params.beacon_window
            )),
        },
        ["account", a] => match c.accounts.get(*a) {
            Some(acct) => found(
                at,
                serde_json::json!({
                    "balance": acct.balance,
                    "nonce": acct.nonce,
                    // After the transactions the mempool holds: what the
                    // sender's next one must carry.
                    "pending_nonce": mempool.account(a).nonce.max(acct.nonce),
                }),
            ),
            None => missing(format!("no account {a}")),
        },
        ["node", n] => match c
            .nodes
            .get(*n)
            .or_else(|| c.nodes.values().find(|x| x.peer_id == *n))
        {
            Some(node) => found(at, node),
            None => missing(format!("no node {n}")),
        },
        ["activation", ek] => match c.activations.get(*ek) {
            Some(a) => found(at, a),
            None => missing(format!("no activation for EK {ek}")),
        },
        ["nodes"] => found(at, c.nodes.values().collect::<Vec<_>>()),
        ["validators"] => found(at, &c.validators),
        ["sources"] => found(at, c.sources.values().collect::<Vec<_>>()),
        ["assignment"] => match c.assignments.get(&at) {
            Some(a) => found(at, serde_json::json!({"height": at, "assignment": a})),
            None => missing(format!("no assignment at {at}")),
        },
        ["assignment", h] => {
            match parse_height(h).and_then(|h| c.assignments.get(&h).map(|a| (h, a))) {
                Some((h, a)) => found(at, serde_json::json!({"height": h, "assignment": a})),
                None => missing(format!(
                    "no assignment at '{h}': the chain keeps the last {} heights",
                    c.params.submit_window + 1
                )),
            }
        }
        ["records", h] => match parse_height(h) {
            Some(h) => {
                let from = record_key(h, "");
                let to = record_key(h + 1, "");
                found(
                    at,
                    st.records
                        .range(from..to)
                        .map(|(_, r)| r)
                        .collect::<Vec<_>>(),
                )
            }
            None => failed(codes::INVALID, at, format!("'{h}' is not a height")),
        },
        ["records", h, n] => {
            match parse_height(h).and_then(|h| st.records.get(&record_key(h, n))) {
                Some(r) => found(at, r),
                None => missing(format!("no record of node {n} at height {h}")),
            }
        }
        _ => failed(
            codes::NOT_FOUND,
            at,
            format!(
                "unknown query path '{path}'; the paths are {}",
                PATHS.join(", ")
            ),
        ),
    }
}
