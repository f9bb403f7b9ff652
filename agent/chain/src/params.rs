//! The chain's genesis (`app_state` in CometBFT's genesis.json) and the
//! parameters every validator applies the same way (docs/chain.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use x509_cert::Certificate;

use crate::ChainError;

pub const GENESIS_SCHEMA: &str = "xnode.chain-genesis/v1";

/// What `InitChain` reads from genesis.json's `app_state`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub schema: String,
    pub params: Params,
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    /// The data-source registry nodes are assigned from, block by block.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// Upgrades known at genesis: name → height (more can be scheduled by
    /// the authority).
    #[serde(default)]
    pub upgrades: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// Hex Ed25519 public key.
    pub address: String,
    pub balance: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A short stable name: `[a-z0-9][a-z0-9._-]*`, at most 64 bytes.
    pub id: String,
    /// Where a node fetches the data from (http:// or https://).
    pub url: String,
}

impl Source {
    pub fn validate(&self) -> Result<(), String> {
        let ok_id = !self.id.is_empty()
            && self.id.len() <= 64
            && self.id.as_bytes()[0].is_ascii_alphanumeric()
            && self.id.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if !ok_id {
            return Err(format!(
                "source id '{}' must be 1-64 bytes of [a-z0-9._-], starting with a letter or digit",
                self.id
            ));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://"))
            || self.url.len() > 2048
        {
            return Err(format!(
                "source '{}': url must be http:// or https:// and at most 2048 bytes",
                self.id
            ));
        }
        Ok(())
    }
}

/// Chain parameters. Fractions are in basis points (1/10,000) so that
/// every validator computes the same integer result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Tokens every transaction pays (burned).
    pub fee: u64,
    /// Tokens per started KiB of transaction, on top of `fee` (0 until the
    /// `fee-per-kib` upgrade sets it).
    #[serde(default)]
    pub fee_per_kib: u64,
    /// A node must re-attest at least this many blocks after its last
    /// accepted attestation, or it lapses and is slashed.
    pub attest_window: u64,
    /// The envelope's beacon must be the hash of one of the last this many
    /// blocks.
    pub beacon_window: u64,
    /// A CID for the assignment at height h is accepted in blocks h+1 ..=
    /// h+submit_window.
    pub submit_window: u64,
    /// Bonded stake below this gives no voting power.
    pub min_stake: u64,
    /// Bonded tokens per unit of voting power.
    pub power_unit: u64,
    /// Unstaked tokens stay slashable for this many blocks.
    pub unbonding_blocks: u64,
    /// Slashed for double signing (CometBFT's DuplicateVote or
    /// LightClientAttack evidence); the node is also jailed for good.
    pub slash_double_sign_bps: u64,
    /// Slashed when a node lets its attestation lapse.
    pub slash_missed_attestation_bps: u64,
    /// PEM CA certificates trusted to issue EK certificates. A node
    /// registers only with an EK certificate chaining to one of them, so
    /// with none no node can register.
    #[serde(default)]
    pub ek_cas: Vec<String>,
    /// PCR index → hex value every attestation must quote.
    #[serde(default)]
    pub expected_pcrs: BTreeMap<u32, String>,
    /// Accept nodes whose own probe reports a software TPM.
    #[serde(default)]
    pub allow_software_tpm: bool,
    /// A report's time may be at most this many seconds before the block's.
    pub max_report_age_secs: u64,
    /// The account that may add data sources and schedule upgrades.
    #[serde(default)]
    pub authority: Option<String>,
    /// Accounts trusted to run the credential exchange with new nodes and
    /// record (EK, AK) activations (the authority may too).
    #[serde(default)]
    pub activators: Vec<String>,
}

impl Params {
    /// Reject parameters the chain could not run with, naming the field.
    pub fn validate(&self) -> Result<(), ChainError> {
        let bad =
            |field: &str, why: &str| Err(ChainError::Genesis(format!("params.{field}: {why}")));
        if self.attest_window == 0 {
            return bad("attest_window", "must be at least 1 block");
        }
        if self.beacon_window == 0 || self.beacon_window > 10_000 {
            return bad("beacon_window", "must be 1 to 10000 blocks");
        }
        if self.submit_window == 0 || self.submit_window > 10_000 {
            return bad("submit_window", "must be 1 to 10000 blocks");
        }
        if self.power_unit == 0 {
            return bad("power_unit", "must be at least 1");
        }
        for (f, v) in [
            ("slash_double_sign_bps", self.slash_double_sign_bps),
            (
                "slash_missed_attestation_bps",
                self.slash_missed_attestation_bps,
            ),
        ] {
            if v > 10_000 {
                return bad(f, "is in basis points: at most 10000");
            }
        }
        for (i, v) in &self.expected_pcrs {
            if *i > 23 || hex::decode(v).map(|b| b.len() != 32).unwrap_or(true) {
                return bad(
                    "expected_pcrs",
                    &format!("PCR {i}: need an index 0-23 and 32 hex bytes"),
                );
            }
        }
        if let Some(a) = &self.authority {
            crate::tx::parse_address(a)
                .map_err(|e| ChainError::Genesis(format!("params.authority: {e}")))?;
        }
        for a in &self.activators {
            crate::tx::parse_address(a)
                .map_err(|e| ChainError::Genesis(format!("params.activators: {e}")))?;
        }
        self.ek_authorities()?;
        Ok(())
    }

    pub fn ek_authorities(&self) -> Result<Vec<Certificate>, ChainError> {
        let mut out = Vec::new();
        for (i, pem) in self.ek_cas.iter().enumerate() {
            let certs = xnode_verify::ekcert::parse_pem_bundle(pem)
                .map_err(|e| ChainError::Genesis(format!("params.ek_cas[{i}]: {e}")))?;
            if certs.is_empty() {
                return Err(ChainError::Genesis(format!(
                    "params.ek_cas[{i}]: no PEM certificate in it"
                )));
            }
            out.extend(certs);
        }
        Ok(out)
    }

    /// The fee a transaction of `len` bytes pays.
    pub fn fee_for(&self, len: usize) -> u64 {
        let kib = (len as u64).div_ceil(1024);
        self.fee
            .saturating_add(self.fee_per_kib.saturating_mul(kib))
    }
}

impl Genesis {
    pub fn parse(bytes: &[u8]) -> Result<Genesis, ChainError> {
        let g: Genesis = serde_json::from_slice(bytes)
            .map_err(|e| ChainError::Genesis(format!("app_state: {e}")))?;
        if g.schema != GENESIS_SCHEMA {
            return Err(ChainError::Genesis(format!(
                "app_state.schema is '{}', this application reads {GENESIS_SCHEMA}",
                g.schema
            )));
        }
        g.params.validate()?;
        for a in &g.accounts {
            crate::tx::parse_address(&a.address)
                .map_err(|e| ChainError::Genesis(format!("accounts: {e}")))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &g.sources {
            s.validate().map_err(ChainError::Genesis)?;
            if !seen.insert(&s.id) {
                return Err(ChainError::Genesis(format!("sources: '{}' twice", s.id)));
            }
        }
        Ok(g)
    }
}

/// Defaults for a development chain (`xnode-chain genesis`): blocks of
/// about a second, so the windows are minutes.
pub fn development_params() -> Params {
    Params {
        fee: 10,
        fee_per_kib: 0,
        attest_window: 600,
        beacon_window: 100,
        submit_window: 10,
        min_stake: 1_000,
        power_unit: 1_000,
        unbonding_blocks: 1_000,
        slash_double_sign_bps: 500,
        slash_missed_attestation_bps: 100,
        ek_cas: Vec::new(),
        expected_pcrs: BTreeMap::new(),
        allow_software_tpm: true,
        max_report_age_secs: 3_600,
        authority: None,
        activators: Vec::new(),
    }
}
