//! A driver that plays CometBFT's part, block by block, in process: it
//! makes the requests CometBFT would (`InitChain`, `CheckTx`,
//! `FinalizeBlock` with a block hash and time, `Commit`) and keeps what
//! they answered. The tests, the determinism replay and the benchmark
//! drive the application through it.

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{
    ExecTxResult, Misbehavior, RequestFinalizeBlock, RequestInitChain, ValidatorUpdate,
};

use crate::params::Genesis;
use crate::tx::{Body, Msg, Tx};
use crate::upgrade::Upgrade;
use crate::{App, ChainError};

#[derive(Debug)]
pub struct Driver {
    pub app: App,
    pub chain_id: String,
    /// The block hashes so far (index = height - 1).
    pub hashes: Vec<[u8; 32]>,
    /// The app hash after each height (index = height - 1).
    pub app_hashes: Vec<Vec<u8>>,
    /// What each block carried, to replay on another instance.
    pub blocks: Vec<(Vec<Vec<u8>>, Vec<Misbehavior>)>,
    genesis: Genesis,
    /// Genesis time (now, when the driver starts); blocks follow a
    /// second apart.
    pub genesis_time: i64,
}

#[derive(Debug)]
pub struct Block {
    pub height: u64,
    pub hash: [u8; 32],
    pub results: Vec<ExecTxResult>,
    pub validator_updates: Vec<ValidatorUpdate>,
    pub events: Vec<tendermint_proto::v0_38::abci::Event>,
    pub app_hash: Vec<u8>,
}

pub fn init_request(chain_id: &str, genesis: &Genesis, time: i64) -> RequestInitChain {
    RequestInitChain {
        time: Some(Timestamp {
            seconds: time,
            nanos: 0,
        }),
        chain_id: chain_id.into(),
        app_state_bytes: serde_json::to_vec(genesis).unwrap_or_default().into(),
        initial_height: 1,
        ..Default::default()
    }
}

/// The hash the driver gives block `height`: a function of the chain so
/// far and the block's transactions, as a real block hash is.
pub fn block_hash(previous: &[u8], height: u64, txs: &[Vec<u8>]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"xnode-chain/driver-block\0");
    h.update(previous);
    h.update(height.to_be_bytes());
    for t in txs {
        h.update(Sha256::digest(t));
    }
    h.finalize().into()
}

impl Driver {
    pub fn new(chain_id: &str, genesis: &Genesis) -> Result<Driver, ChainError> {
        Self::with_upgrades(chain_id, genesis, crate::upgrade::KNOWN)
    }

    pub fn with_upgrades(
        chain_id: &str,
        genesis: &Genesis,
        upgrades: &'static [Upgrade],
    ) -> Result<Driver, ChainError> {
        Self::at_time(chain_id, genesis, upgrades, now())
    }

    /// A driver whose genesis is at `genesis_time` (seconds since the
    /// epoch), for runs that must match to the byte.
    pub fn at_time(
        chain_id: &str,
        genesis: &Genesis,
        upgrades: &'static [Upgrade],
        genesis_time: i64,
    ) -> Result<Driver, ChainError> {
        let (app, _) = App::init_with(&init_request(chain_id, genesis, genesis_time), upgrades)?;
        Ok(Driver {
            app,
            chain_id: chain_id.into(),
            hashes: Vec::new(),
            app_hashes: Vec::new(),
            blocks: Vec::new(),
            genesis: genesis.clone(),
            genesis_time,
        })
    }

    /// A driver that resumes this chain from `app` (e.g. one loaded from
    /// a store, or another binary's).
    pub fn resume(&self, app: App) -> Driver {
        Driver {
            app,
            chain_id: self.chain_id.clone(),
            hashes: self.hashes.clone(),
            app_hashes: self.app_hashes.clone(),
            blocks: self.blocks.clone(),
            genesis: self.genesis.clone(),
            genesis_time: self.genesis_time,
        }
    }

    /// The same blocks on a fresh instance from genesis.
    pub fn replay(&self) -> Result<Driver, ChainError> {
        let mut fresh = Driver::at_time(
            &self.chain_id,
            &self.genesis,
            crate::upgrade::KNOWN,
            self.genesis_time,
        )?;
        for (txs, misbehavior) in &self.blocks {
            fresh.block_with(txs.clone(), misbehavior.clone())?;
        }
        Ok(fresh)
    }

    pub fn height(&self) -> u64 {
        self.app.committed().core.height
    }

    /// The hash block `height` will have if it carries `txs`.
    pub fn next_hash(&self, txs: &[Vec<u8>]) -> [u8; 32] {
        let prev = self.hashes.last().copied().unwrap_or([0; 32]);
        block_hash(&prev, self.height() + 1, txs)
    }

    pub fn block(&mut self, txs: Vec<Vec<u8>>) -> Result<Block, ChainError> {
        self.block_with(txs, Vec::new())
    }

    /// Finalize and commit the next block.
    pub fn block_with(
        &mut self,
        txs: Vec<Vec<u8>>,
        misbehavior: Vec<Misbehavior>,
    ) -> Result<Block, ChainError> {
        let height = self.height() + 1;
        let hash = self.next_hash(&txs);
        let req = RequestFinalizeBlock {
            txs: txs.iter().cloned().map(Into::into).collect(),
            misbehavior: misbehavior.clone(),
            hash: hash.to_vec().into(),
            height: height as i64,
            time: Some(Timestamp {
                seconds: self.genesis_time + height as i64,
                nanos: 0,
            }),
            ..Default::default()
        };
        let resp = self.app.finalize_block(&req)?;
        self.app.commit();
        self.blocks.push((txs, misbehavior));
        self.hashes.push(hash);
        self.app_hashes.push(resp.app_hash.to_vec());
        Ok(Block {
            height,
            hash,
            results: resp.tx_results,
            validator_updates: resp.validator_updates,
            events: resp.events,
            app_hash: resp.app_hash.to_vec(),
        })
    }

    /// The hash of a block already made.
    pub fn hash_at(&self, height: u64) -> Option<[u8; 32]> {
        self.hashes
            .get(usize::try_from(height).ok()?.checked_sub(1)?)
            .copied()
    }

    /// A query's JSON answer, or its code and log.
    pub fn query(&self, path: &str) -> Result<serde_json::Value, (u32, String)> {
        let r = self.app.query(path, 0);
        if r.code != 0 {
            return Err((r.code, r.log));
        }
        serde_json::from_slice(&r.value).map_err(|e| (u32::MAX, e.to_string()))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An account that signs transactions and counts its nonce.
#[derive(Debug)]
pub struct Wallet {
    pub key: SigningKey,
    pub nonce: u64,
}

impl Wallet {
    pub fn new(key: SigningKey) -> Wallet {
        Wallet { key, nonce: 0 }
    }

    pub fn from_seed(seed: u8) -> Wallet {
        Wallet::new(SigningKey::from_bytes(&[seed; 32]))
    }

    pub fn address(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Sign `msg` with the next nonce (counted as used).
    pub fn sign(&mut self, chain_id: &str, fee: u64, msg: Msg) -> Vec<u8> {
        let tx = self.sign_unused(chain_id, fee, msg);
        self.nonce += 1;
        tx
    }

    /// Sign `msg` with the next nonce, not counting it as used (for a
    /// transaction that is meant to be refused).
    pub fn sign_unused(&self, chain_id: &str, fee: u64, msg: Msg) -> Vec<u8> {
        Tx::sign(
            Body {
                chain_id: chain_id.into(),
                sender: self.address(),
                nonce: self.nonce,
                fee,
                msg,
            },
            &self.key,
        )
        .to_bytes()
    }
}
