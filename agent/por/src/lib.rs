//! Proof of resource: a node proves the capacity it offers by answering
//! challenges a verifier seeds, so that answering costs the claimed
//! resource and checking costs the verifier little.
//!
//! Each protocol has the same shape: the verifier sends a fresh seed and
//! the parameters; the prover does the work and commits to it (a Merkle
//! root); the verifier then sends a nonce the prover could not predict;
//! the prover opens the sampled parts; the verifier checks them. See
//! `docs/proof-of-resource.md` for each protocol's soundness argument.

pub mod cpu;
pub mod gpu;
pub mod iobuf;
pub mod memory;
pub mod merkle;
pub mod report;
pub mod seed;
pub mod storage;
pub mod sweep;
pub mod walk;

pub use seed::Seed;

/// Why a challenge could not be run or did not check out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PorError {
    /// Parameters out of range or inconsistent; nothing was run.
    #[error("invalid parameters: {0}")]
    Params(String),
    /// A seed or nonce that is not what the protocol takes.
    #[error("invalid seed: {0}")]
    Seed(String),
    /// The proof does not check out: the prover did not do the work it
    /// committed to, or the proof was damaged.
    #[error("rejected: {0}")]
    Rejected(String),
    /// A file the prover keeps (a plot) could not be made, read or trusted.
    #[error("{0}")]
    Io(String),
}

/// Sample `k` of a challenge: a number below `below`, drawn from the
/// verifier's nonce and the prover's commitment, so the prover learns it
/// only after committing. The modulo's bias is below `below / 2^64`.
pub(crate) fn sample(label: &str, nonce: &Seed, root: &merkle::Hash, k: u32, below: u64) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0u8]);
    h.update(nonce.0);
    h.update(root);
    h.update(k.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b) % below
}

/// What every check starts with: the proof answers the challenge the
/// verifier made (its parameters, seed and nonce), not one the prover chose.
pub(crate) fn same_challenge<P: PartialEq + std::fmt::Debug>(
    asked: (&P, &Seed, &Seed),
    answered: (&P, &Seed, &Seed),
) -> Result<(), PorError> {
    if answered.0 != asked.0 {
        return Err(PorError::Rejected(format!(
            "the proof's parameters {:?} are not the challenge's {:?}",
            answered.0, asked.0
        )));
    }
    if answered.1 != asked.1 || answered.2 != asked.2 {
        return Err(PorError::Rejected(
            "the proof answers another seed or nonce".into(),
        ));
    }
    Ok(())
}
