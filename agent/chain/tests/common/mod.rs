//! A chain for the tests, and nodes with their own manufactured swtpm.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use attest::{AttestOptions, Freshness};
use ed25519_dalek::SigningKey;
use testkit::Swtpm;
use xnode_chain::driver::{Driver, Wallet};
use xnode_chain::params::{development_params, Genesis, GenesisAccount, Source, GENESIS_SCHEMA};
use xnode_chain::{Msg, State};

pub const CHAIN: &str = "xnode-test";
pub const FEE: u64 = 10;

pub fn faucet() -> Wallet {
    Wallet::from_seed(200)
}

pub fn genesis(extra_accounts: &[String], sources: usize) -> Genesis {
    let mut params = development_params();
    params.attest_window = 20;
    params.beacon_window = 8;
    params.submit_window = 3;
    params.min_stake = 1_000;
    params.power_unit = 100;
    params.unbonding_blocks = 5;
    params.authority = Some(faucet().address());
    let mut accounts = vec![GenesisAccount {
        address: faucet().address(),
        balance: 1_000_000,
    }];
    accounts.extend(extra_accounts.iter().map(|a| GenesisAccount {
        address: a.clone(),
        balance: 10_000,
    }));
    Genesis {
        schema: GENESIS_SCHEMA.into(),
        params,
        accounts,
        sources: (0..sources)
            .map(|i| Source {
                id: format!("source-{i}"),
                url: format!("http://127.0.0.1:9/{i}"),
            })
            .collect(),
        upgrades: Default::default(),
    }
}

/// Everything a block may not change when all its transactions fail:
/// the state but for the height, hashes and block bookkeeping.
pub fn comparable(st: &State) -> serde_json::Value {
    let mut v = serde_json::to_value(st).unwrap();
    for k in [
        "height",
        "app_hash",
        "block_hashes",
        "assignments",
        "block_time",
    ] {
        v["core"][k] = serde_json::Value::Null;
    }
    v
}

pub fn codes(block: &xnode_chain::driver::Block) -> Vec<u32> {
    block.results.iter().map(|r| r.code).collect()
}

/// A node: its swtpm, its state directory with the node key, its wallet.
pub struct Node {
    pub tpm: Swtpm,
    pub state: PathBuf,
    pub tcti: probe::TpmSource,
    pub wallet: Wallet,
}

impl Node {
    pub fn new(seed: u8) -> Node {
        let tpm = Swtpm::manufactured();
        let state = tpm.state_dir("node");
        // The node key attest will load: known before the first attestation.
        std::fs::create_dir_all(&state).unwrap();
        attest::files::write_private(&state.join(attest::identity::KEY_FILE), &[seed; 32]).unwrap();
        let tcti = tpm.tcti().parse().unwrap();
        Node {
            tpm,
            state,
            tcti,
            wallet: Wallet::new(SigningKey::from_bytes(&[seed; 32])),
        }
    }

    pub fn address(&self) -> String {
        self.wallet.address()
    }

    /// An envelope bound to `beacon` (a block hash).
    pub fn envelope(&self, beacon: &[u8]) -> Vec<u8> {
        self.envelope_in(&self.state, beacon)
    }

    /// An envelope from this node's TPM with the node key and AK of
    /// another state directory (another node identity on the same TPM).
    pub fn envelope_in(&self, state_dir: &std::path::Path, beacon: &[u8]) -> Vec<u8> {
        attest::attest(&AttestOptions {
            state_dir: state_dir.to_path_buf(),
            tcti: self.tcti.clone(),
            freshness: Freshness::Beacon(beacon.to_vec()),
            pcrs: attest::attest::DEFAULT_PCRS.to_vec(),
            event_log: self.tpm.path().join("no-event-log"),
            capacity: None,
        })
        .expect("attest")
        .envelope
    }

    /// The activator's side of the credential exchange with this node's
    /// TPM, for the AK in `envelope`, as the message it sends the chain.
    pub fn activation(&self, envelope: &[u8]) -> Msg {
        use xnode_verify::credential;
        let env: xnode_verify::Envelope = serde_json::from_slice(envelope).unwrap();
        let ek = xnode_verify::format::unb64("", &env.tpm.ek_public).unwrap();
        let ak = xnode_verify::format::unb64("", &env.tpm.ak_public).unwrap();
        let (challenge, pending) = credential::issue(&ek, &ak, 0, &mut rand_core::OsRng).unwrap();
        let response = attest::activate(&self.state, &self.tcti, &challenge).expect("activate");
        let a = credential::accept(&pending, &response, 0).expect("accept");
        Msg::Activate {
            ek_public_sha256: a.ek_public_sha256,
            ak_name: a.ak_name,
        }
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.tpm.ca_bundle.as_ref().unwrap()).unwrap()
    }

    pub fn attest_tx(
        &mut self,
        d: &Driver,
        beacon_height: u64,
        validator: Option<String>,
    ) -> Vec<u8> {
        let env = self.envelope(&d.hash_at(beacon_height).unwrap());
        self.wallet.sign(
            CHAIN,
            FEE,
            Msg::Attest {
                envelope: xnode_chain::tx::encode_envelope(&env),
                beacon_height,
                validator_key: validator,
            },
        )
    }
}

/// A state directory holding the node key of `seed`.
pub fn key_dir(under: &Node, name: &str, seed: u8) -> PathBuf {
    let dir = under.tpm.state_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    attest::files::write_private(&dir.join(attest::identity::KEY_FILE), &[seed; 32]).unwrap();
    dir
}

/// `n` nodes, or None (with the reason printed) where swtpm is missing.
pub fn nodes(n: u8) -> Option<Vec<Node>> {
    if !Swtpm::available() {
        println!("SKIPPED: swtpm and swtpm_setup are needed for real attestations (scripts/test installs them)");
        return None;
    }
    Some((0..n).map(|i| Node::new(100 + i)).collect())
}
