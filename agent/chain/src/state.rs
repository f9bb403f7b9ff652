//! The replicated state and its app hash.
//!
//! Everything is in ordered maps of integers and strings, so its JSON is
//! the same on every validator. The app hash chains block to block:
//! `SHA-256(domain ‖ previous app hash ‖ SHA-256(JSON of the state without
//! the CID records) ‖ SHA-256(JSON of the records this block added))`, so
//! the records, which only grow, are hashed once each.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::params::{Params, Source};

pub const APP_HASH_DOMAIN: &[u8] = b"xnode-chain/app-hash/v1\0";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub balance: u64,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Attested within the window: assigned sources, may validate.
    Active,
    /// Missed its re-attestation (slashed once); a good attestation
    /// makes it active again.
    Lapsed,
    /// Double signed: slashed and never active again.
    Jailed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Unbonding {
    pub release_height: u64,
    pub amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Hex Ed25519 node key (= its account address).
    pub key: String,
    pub peer_id: String,
    /// SHA-256 of the EK public area: one TPM backs one node.
    pub ek_id: String,
    pub status: NodeStatus,
    pub registered_height: u64,
    pub attested_height: u64,
    /// The report's sequence: the next must be higher.
    pub sequence: u64,
    pub software_tpm: bool,
    pub system_store_path: Option<String>,
    /// The verifier's `capacity` detail for the last attestation
    /// (proof-of-resource amounts proven), or why there was none.
    pub capacity: String,
    /// Hex Ed25519 CometBFT consensus key.
    pub validator_key: Option<String>,
    pub bonded: u64,
    pub unbonding: Vec<Unbonding>,
    pub slashed: u64,
}

/// An (EK, AK) pair an activator vouched for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ActivationRecord {
    pub ak_name: String,
    pub activator: String,
    pub height: u64,
}

/// A CID a node submitted for its assignment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub height: u64,
    pub source: String,
    pub node: String,
    pub cid: String,
    pub submitted_height: u64,
}

/// Everything but the CID records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Core {
    pub chain_id: String,
    /// The last finalized height (0 before the first block).
    pub height: u64,
    /// Raised by each applied upgrade.
    pub app_version: u64,
    pub params: Params,
    pub accounts: BTreeMap<String, Account>,
    pub nodes: BTreeMap<String, Node>,
    /// EK id → node key.
    pub ek_owners: BTreeMap<String, String>,
    /// EK id → the AK activated for it.
    pub activations: BTreeMap<String, ActivationRecord>,
    pub sources: BTreeMap<String, Source>,
    /// Pending upgrades: height → name.
    pub upgrades: BTreeMap<u64, String>,
    /// Applied upgrades: height → name.
    pub applied_upgrades: BTreeMap<u64, String>,
    /// Hex hashes of the last `beacon_window` blocks.
    pub block_hashes: BTreeMap<u64, String>,
    /// Height → node key → source id, for the last `submit_window` heights.
    pub assignments: BTreeMap<u64, BTreeMap<String, String>>,
    /// The voting power this application last gave CometBFT, by hex
    /// consensus key.
    pub validators: BTreeMap<String, u64>,
    /// Tokens burned as fees or slashed.
    pub burned: u64,
    /// The last block's time (seconds since the epoch).
    pub block_time: u64,
    /// Hex app hash after `height`.
    pub app_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub core: Core,
    /// Key: `{height:020}/{node}`, so records sort by height.
    pub records: BTreeMap<String, Record>,
}

pub fn record_key(height: u64, node: &str) -> String {
    format!("{height:020}/{node}")
}

impl State {
    pub fn account(&self, address: &str) -> Account {
        self.core.accounts.get(address).cloned().unwrap_or_default()
    }

    /// The app hash after a block that added `new_records` (in order).
    pub fn next_app_hash(&mut self, previous: &[u8], new_records: &[Record]) -> [u8; 32] {
        // The hash cannot cover itself: blank while hashing.
        let own = std::mem::take(&mut self.core.app_hash);
        let core = Sha256::digest(serde_json::to_vec(&self.core).unwrap_or_default());
        self.core.app_hash = own;
        let records = Sha256::digest(serde_json::to_vec(new_records).unwrap_or_default());
        let mut h = Sha256::new();
        h.update(APP_HASH_DOMAIN);
        h.update(previous);
        h.update(core);
        h.update(records);
        h.finalize().into()
    }
}
