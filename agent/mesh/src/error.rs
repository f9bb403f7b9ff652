//! Why a record, message or request from the mesh was refused.

/// Every refusal names its reason; the node lowers the sender's score by
/// [`Rejected::penalty`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("oversized: {size} bytes, the limit is {limit}")]
    Oversized { size: usize, limit: usize },
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("forged: {0}")]
    Forged(String),
    #[error("expired: {0}")]
    Expired(String),
    #[error("stale: {0}")]
    Stale(String),
    #[error("over the rate limit: {0}")]
    RateLimited(String),
    #[error("attestation refused: {0}")]
    Attestation(String),
}

impl Rejected {
    /// Whether every honest validator would refuse it too. Only these are
    /// charged to the peer that forwarded a message: clocks, rates and
    /// verifier policies differ between honest nodes, so a stale,
    /// rate-limited or unattested message is dropped without blame.
    pub fn objective(&self) -> bool {
        matches!(
            self,
            Rejected::Oversized { .. }
                | Rejected::Malformed(_)
                | Rejected::BadSignature(_)
                | Rejected::Forged(_)
        )
    }

    /// Score taken from the peer that sent it. Signature and forgery
    /// failures cost most: an honest peer never produces them.
    pub fn penalty(&self) -> i64 {
        match self {
            Rejected::BadSignature(_) | Rejected::Forged(_) => 25,
            Rejected::Oversized { .. } | Rejected::Malformed(_) => 20,
            Rejected::Attestation(_) => 10,
            Rejected::Expired(_) | Rejected::Stale(_) | Rejected::RateLimited(_) => 5,
        }
    }
}

/// A request to the local mesh node that could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("the mesh node has stopped")]
    Stopped,
    #[error("{0}")]
    Network(String),
    #[error("delegation failed: {0}")]
    Delegation(String),
}
