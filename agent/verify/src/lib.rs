//! Offline verifier of Xnode attestation envelopes.
//!
//! Pure Rust with no TPM library in its dependency tree: a verifier trusts
//! nothing the node runs. The format is specified in docs/attestation.md.

pub mod checks;
pub mod credential;
pub mod ekcert;
pub mod eventlog;
pub mod files;
pub mod format;
pub mod tpm;
mod wire;

pub use checks::{verify, Check, Outcome, Policy, Status};
pub use format::{Envelope, Report};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed {0}")]
    Malformed(String),
    #[error("unsupported {0}")]
    Unsupported(String),
}
