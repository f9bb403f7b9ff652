//! The Xnode chain's ABCI application (docs/chain.md): accounts with
//! signed, nonced transactions; the registry of attested nodes, checked
//! by the same offline verifier as `xnode-agent verify`; staking, the
//! validator set and slashing; per-block data-source assignment and the
//! CIDs nodes submit for it; queries; an app hash every validator agrees
//! on; and height-based upgrades.

pub mod abci;
pub mod app;
pub mod assign;
pub mod cid;
pub mod driver;
pub mod params;
pub mod query;
pub mod state;
pub mod store;
pub mod tx;
pub mod upgrade;

pub use app::{App, TxOutcome};
pub use params::{Genesis, Params};
pub use state::State;
pub use tx::{Body, Msg, Tx};

/// Result codes of `CheckTx` and `FinalizeBlock` (docs/chain.md#codes).
pub mod codes {
    pub const OK: u32 = 0;
    /// Not a canonical, well-formed transaction.
    pub const MALFORMED: u32 = 1;
    /// The signature is not the sender's over this body.
    pub const BAD_SIGNATURE: u32 = 2;
    /// Signed for another chain.
    pub const WRONG_CHAIN: u32 = 3;
    /// Not the sender's next nonce (a replay, or one ahead).
    pub const BAD_NONCE: u32 = 4;
    /// The fee is below the chain's for this size.
    pub const FEE: u32 = 5;
    /// Not enough balance (or bonded stake) for this.
    pub const FUNDS: u32 = 6;
    /// The attestation did not verify or is not acceptable here.
    pub const ATTESTATION: u32 = 7;
    /// The sender is not a registered (or not an active) node.
    pub const NOT_A_NODE: u32 = 8;
    /// Not the source this node was assigned at that height, or outside
    /// the submission window.
    pub const NOT_ASSIGNED: u32 = 9;
    /// Only the authority may do this.
    pub const UNAUTHORIZED: u32 = 10;
    /// An argument is out of range or malformed.
    pub const INVALID: u32 = 11;
    /// It exists already.
    pub const DUPLICATE: u32 = 12;
    /// Query: nothing at that path.
    pub const NOT_FOUND: u32 = 13;
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("genesis: {0}")]
    Genesis(String),
    /// The application must stop without committing (CometBFT stops too,
    /// and resumes from the last commit once the cause is fixed).
    #[error("halt: {0}")]
    Halt(String),
    #[error("{path}: {why}")]
    Store {
        path: std::path::PathBuf,
        why: String,
    },
}
