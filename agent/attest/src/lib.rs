//! The prover side of Xnode attestation: the node's identity key, its TPM
//! keys (EK, AK), the credential-activation answer, and `attest`, which
//! turns a probe into a signed, TPM-quoted envelope (docs/attestation.md).
//!
//! Verification lives in `xnode-verify`, which shares the format types
//! with this crate but none of the checking code.

pub mod attest;
pub mod error;
pub mod files;
pub mod identity;
pub mod tpm;

pub use attest::{activate, attest, AttestOptions, Attested, Freshness};
pub use error::AttestError;
pub use identity::NodeIdentity;
