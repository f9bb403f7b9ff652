//! `attest`: probe → report → envelope signed by the node key and bound to
//! the TPM by a quote over the report's hash and the caller's freshness.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use xnode_verify::credential::{Challenge, Response, CHALLENGE_VERSION, RESPONSE_VERSION};
use xnode_verify::format::{self, Envelope, EnvelopeSignature, FreshnessKind, Report, TpmEvidence};

use crate::tpm::Tpm;
use crate::{files, AttestError, NodeIdentity};

/// PCRs quoted by default: firmware and boot (0-7), the UKI/system (11), and 14 (shim/MOK).
pub const DEFAULT_PCRS: &[u8] = &[0, 1, 2, 3, 4, 5, 6, 7, 11, 14];
const SEQUENCE_FILE: &str = "sequence.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    Nonce(Vec<u8>),
    Beacon(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct AttestOptions {
    pub state_dir: PathBuf,
    pub tcti: probe::TpmSource,
    pub freshness: Freshness,
    pub pcrs: Vec<u8>,
    pub event_log: PathBuf,
    /// A proof-of-resource report (`xnode-agent challenge run
    /// --for-attestation`) to carry in the report.
    pub capacity: Option<Vec<u8>>,
}

/// What `attest` made, and what the operator should be told.
#[derive(Debug)]
pub struct Attested {
    pub envelope: Vec<u8>,
    pub peer_id: String,
    pub sequence: u64,
    pub software_tpm: bool,
    pub created_identity: bool,
    pub created_ak: bool,
    pub has_ek_certificate: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SequenceState {
    sequence: u64,
}

fn next_sequence(state_dir: &Path) -> Result<u64, AttestError> {
    let path = state_dir.join(SEQUENCE_FILE);
    let last = match files::read_optional(&path)? {
        Some(b) => serde_json::from_slice::<SequenceState>(&b)
            .map_err(|e| AttestError::Corrupted {
                path: path.clone(),
                why: e.to_string(),
                consequence: "verifiers that track sequences will reject reports until the count passes theirs",
            })?
            .sequence,
        None => 0,
    };
    let next = last
        .checked_add(1)
        .ok_or_else(|| AttestError::Invalid("sequence counter exhausted".into()))?;
    let json = serde_json::to_vec(&SequenceState { sequence: next })
        .map_err(|e| AttestError::Invalid(e.to_string()))?;
    files::write_private(&path, &json)?;
    Ok(next)
}

pub fn attest(opts: &AttestOptions) -> Result<Attested, AttestError> {
    if opts.pcrs.is_empty() {
        return Err(AttestError::Invalid("no PCRs selected to quote".into()));
    }
    let timing = std::env::var_os("XNODE_TIMING").is_some();
    let t0 = std::time::Instant::now();
    let phase = |name: &str| {
        if timing {
            eprintln!(
                "attest: {name} at {:.1} ms",
                t0.elapsed().as_secs_f64() * 1e3
            );
        }
    };
    // A TPM that is plainly absent fails before anything is written.
    crate::tpm::tcti_conf(&opts.tcti)?;
    let fresh = match &opts.freshness {
        Freshness::Nonce(n) | Freshness::Beacon(n) => n,
    };
    let proofs = opts
        .capacity
        .as_deref()
        .map(|bytes| capacity_answers(bytes, fresh))
        .transpose()?;
    let (identity, created_identity) = NodeIdentity::load_or_create(&opts.state_dir)?;

    // The TPM section first, before the TPM is opened (a swtpm socket serves
    // one client at a time); the other sections in parallel with the TPM work.
    let tpm_section = probe::probe(&probe::ProbeOptions {
        tpm: opts.tcti.clone(),
        sections: vec![probe::SectionName::Tpm],
        ..Default::default()
    })
    .tpm;
    let rest = std::thread::spawn(|| {
        probe::probe(&probe::ProbeOptions {
            tpm: probe::TpmSource::None,
            sections: probe::SectionName::ALL
                .into_iter()
                .filter(|s| *s != probe::SectionName::Tpm)
                .collect(),
            ..Default::default()
        })
    });
    let tpm_open = Tpm::open(&opts.tcti, &opts.state_dir);
    let mut inventory = rest
        .join()
        .map_err(|_| AttestError::Invalid("the probe thread panicked".into()))?;
    inventory.tpm = tpm_section;
    let mut tpm = tpm_open?;
    phase("probed; TPM open, EK and AK loaded");
    let software_tpm = inventory
        .tpm
        .as_ref()
        .and_then(|t| t.ok())
        .is_some_and(|t| t.software);
    let system = inventory.system.as_ref().and_then(|s| s.ok());
    let boot_id = system.and_then(|s| s.boot_id.clone());
    let system_store_path = system
        .and_then(|s| s.nixos.as_ref())
        .and_then(|n| n.current_system.clone());

    let inventory_json =
        serde_json::to_value(&inventory).map_err(|e| AttestError::Invalid(e.to_string()))?;
    let capacity = proofs
        .map(|p| capacity_checked(p, fresh, &inventory_json))
        .transpose()?;
    let sequence = next_sequence(&opts.state_dir)?;
    let (kind, fresh) = match &opts.freshness {
        Freshness::Nonce(n) => (FreshnessKind::Nonce, n),
        Freshness::Beacon(b) => (FreshnessKind::Beacon, b),
    };
    let report = Report {
        schema: format::REPORT_SCHEMA.into(),
        node_id: identity.peer_id(),
        node_key: hex::encode(identity.public_key()),
        sequence,
        time_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        boot_id,
        system_store_path,
        freshness: format::Freshness {
            kind,
            value: hex::encode(fresh),
        },
        software_tpm,
        inventory: serde_json::value::to_raw_value(&inventory)
            .map_err(|e| AttestError::Invalid(e.to_string()))?,
        capacity,
    };
    // Serialized once: these exact bytes are signed, quoted and shipped.
    let report_bytes =
        serde_json::to_vec(&report).map_err(|e| AttestError::Invalid(e.to_string()))?;

    let qualifying = quote_binding(fresh, &report_bytes);
    let (quote, signature, pcrs) = quote_stable(&mut tpm, &opts.pcrs, &qualifying)?;
    phase("quoted");
    let sig = identity.sign(&format::pae(format::PAYLOAD_TYPE, &report_bytes));

    let envelope = Envelope {
        version: format::ENVELOPE_VERSION.into(),
        payload_type: format::PAYLOAD_TYPE.into(),
        payload: format::b64(&report_bytes),
        signatures: vec![EnvelopeSignature {
            keyid: identity.peer_id(),
            sig: format::b64(&sig),
        }],
        tpm: TpmEvidence {
            quote: format::b64(&quote),
            signature: format::b64(&signature),
            pcr_bank: "sha256".into(),
            pcrs: pcrs
                .into_iter()
                .map(|(i, v)| (i.to_string(), hex::encode(v)))
                .collect::<BTreeMap<_, _>>(),
            ak_public: format::b64(&tpm.ak_public),
            ek_public: format::b64(&tpm.ek_public),
            ek_certificate: tpm.ek_certificate.as_deref().map(format::b64),
            event_log: crate::tpm::read_event_log(&opts.event_log).map(|l| format::b64(&l)),
        },
    };
    Ok(Attested {
        envelope: serde_json::to_vec_pretty(&envelope)
            .map_err(|e| AttestError::Invalid(e.to_string()))?,
        peer_id: identity.peer_id(),
        sequence,
        software_tpm,
        created_identity,
        created_ak: tpm.ak_created,
        has_ek_certificate: tpm.ek_certificate.is_some(),
    })
}

fn capacity_error(why: String) -> AttestError {
    AttestError::Invalid(format!("--capacity: {why}"))
}

/// The proof-of-resource report to embed, parsed, and answering this
/// attestation's nonce or beacon: checked before anything else is done.
fn capacity_answers(
    bytes: &[u8],
    freshness: &[u8],
) -> Result<por::report::ChallengeReport, AttestError> {
    let proofs =
        por::report::ChallengeReport::parse(bytes).map_err(|e| capacity_error(e.to_string()))?;
    let seed = por::report::attestation_seed(freshness);
    if proofs.seed != seed {
        return Err(capacity_error(format!(
            "the proofs answer seed {}; for this nonce or beacon they must answer {seed} \
             (xnode-agent challenge run --for-attestation {})",
            proofs.seed,
            hex::encode(freshness)
        )));
    }
    Ok(proofs)
}

/// The proofs checked as a verifier will check them, GPUs against the
/// inventory this report carries: a report that would fail there is
/// refused here, with why.
fn capacity_checked(
    proofs: por::report::ChallengeReport,
    freshness: &[u8],
    inventory: &serde_json::Value,
) -> Result<Box<serde_json::value::RawValue>, AttestError> {
    let seed = por::report::attestation_seed(freshness);
    proofs
        .check_claimed(&seed, por::report::GpuClaim::from_inventory(inventory))
        .map_err(|e| capacity_error(format!("the proofs do not check out: {e}")))?;
    serde_json::value::to_raw_value(&proofs).map_err(|e| capacity_error(e.to_string()))
}

/// The prover's own computation of the qualifying data (the verifier has
/// its own in `xnode_verify::format::binding`; a known-answer test in each
/// pins both to docs/attestation.md).
fn quote_binding(freshness: &[u8], report: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let report_hash = Sha256::digest(report);
    let mut input = Vec::with_capacity(format::BINDING_DOMAIN.len() + freshness.len() + 32);
    input.extend_from_slice(b"xnode-attestation-v1\0");
    input.extend_from_slice(freshness);
    input.extend_from_slice(&report_hash);
    Sha256::digest(&input).to_vec()
}

type QuoteParts = (Vec<u8>, Vec<u8>, Vec<(u8, Vec<u8>)>);

/// Quote, then read the PCR values: a PCR extended in between would make
/// values and the quoted digest disagree, so check and try again.
fn quote_stable(tpm: &mut Tpm, pcrs: &[u8], qualifying: &[u8]) -> Result<QuoteParts, AttestError> {
    use sha2::{Digest, Sha256};
    for _ in 0..5 {
        let (quote, sig) = tpm.quote(pcrs, qualifying)?;
        let values = tpm.read_pcrs(pcrs)?;
        let quoted = xnode_verify::tpm::parse_quote(&quote)
            .map_err(|e| AttestError::Invalid(format!("the TPM's quote: {e}")))?;
        let mut sorted = values.clone();
        sorted.sort_by_key(|(i, _)| *i);
        let digest = Sha256::digest(
            sorted
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .collect::<Vec<u8>>(),
        );
        if quoted.pcr_digest == digest.as_slice() {
            return Ok((quote, sig, values));
        }
    }
    Err(AttestError::Invalid(
        "PCRs kept changing while quoting; try again when boot measurements settle".into(),
    ))
}

/// The node's side of credential activation: unwrap the verifier's secret.
pub fn activate(
    state_dir: &Path,
    tcti: &probe::TpmSource,
    challenge: &Challenge,
) -> Result<Response, AttestError> {
    if challenge.version != CHALLENGE_VERSION {
        return Err(AttestError::Invalid(format!(
            "unknown challenge version '{}' (expected {CHALLENGE_VERSION})",
            challenge.version
        )));
    }
    let mut tpm = Tpm::open(tcti, state_dir)?;
    let ek = xnode_verify::credential::ek_id(&tpm.ek_public);
    if challenge.ek_public_sha256 != ek {
        return Err(AttestError::Invalid(format!(
            "the challenge is for EK {}, not this TPM's EK {ek}",
            challenge.ek_public_sha256
        )));
    }
    let ak_name = hex::encode(
        xnode_verify::tpm::name(&tpm.ak_public).map_err(|e| AttestError::Invalid(e.to_string()))?,
    );
    if challenge.ak_name != ak_name {
        return Err(AttestError::Invalid(format!(
            "the challenge is for AK {}, not this node's AK {ak_name}",
            challenge.ak_name
        )));
    }
    let bad = |e: xnode_verify::VerifyError| AttestError::Invalid(format!("challenge: {e}"));
    let secret = tpm.activate_credential(
        format::unb64("credential_blob", &challenge.credential_blob).map_err(bad)?,
        format::unb64("encrypted_secret", &challenge.encrypted_secret).map_err(bad)?,
    )?;
    Ok(Response {
        version: RESPONSE_VERSION.into(),
        ak_name,
        secret: hex::encode(secret),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_agrees_with_the_published_vector() {
        // The same vector as xnode-verify's test and docs/attestation.md.
        assert_eq!(
            hex::encode(quote_binding(&[1, 2, 3, 4], b"{}")),
            "7b9ed60d35f2fe88edd684fe2d140bb56fa369e491b89a804ed8c2a749ea9a03"
        );
    }

    #[test]
    fn sequence_increases_and_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_sequence(dir.path()).unwrap(), 1);
        assert_eq!(next_sequence(dir.path()).unwrap(), 2);
        std::fs::write(dir.path().join(SEQUENCE_FILE), b"{oops").unwrap();
        assert!(next_sequence(dir.path())
            .unwrap_err()
            .to_string()
            .contains("corrupted"));
        assert_eq!(
            std::fs::read(dir.path().join(SEQUENCE_FILE)).unwrap(),
            b"{oops"
        );
    }
}
