//! Errors of the prover, each saying what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is corrupted ({why}); it was left untouched: restore it from a backup, or move it away to start afresh ({consequence})")]
    Corrupted {
        path: PathBuf,
        why: String,
        consequence: &'static str,
    },
    #[error("no TPM at {tcti}: {why}. Pass --tcti swtpm:host=H,port=P for a software TPM, or check that the kernel's TPM driver is loaded")]
    NoTpm { tcti: String, why: String },
    #[error("TPM {step}: {source}{hint}")]
    Tpm {
        step: &'static str,
        hint: &'static str,
        #[source]
        source: tss_esapi::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl AttestError {
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> AttestError {
        let path = path.into();
        move |source| AttestError::Io {
            action,
            path,
            source,
        }
    }

    pub fn tpm(step: &'static str) -> impl FnOnce(tss_esapi::Error) -> AttestError {
        move |source| {
            // TPM_RC_OBJECT_MEMORY: without a resource manager, objects other
            // tools left loaded fill the TPM's few slots.
            let hint = if source
                .to_string()
                .contains("out of memory for object contexts")
            {
                " (objects left loaded by other tools fill the TPM: use /dev/tpmrm0, or run `tpm2_flushcontext -t`)"
            } else {
                ""
            };
            AttestError::Tpm { step, hint, source }
        }
    }
}
