//! Errors of the probe, each naming the file or interface it came from.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed {path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("TPM at {source_desc}: {reason}")]
    Tpm { source_desc: String, reason: String },
}

impl ProbeError {
    pub fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ProbeError::Malformed {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
