//! The verification of one envelope: every check in a fixed order, each
//! with pass/fail/skip and its reason. Never panics on any input.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature as EdSignature, VerifyingKey};
use serde::Serialize;
use x509_cert::Certificate;

use crate::credential::{ek_id, Registry};
use crate::format::{self, Envelope, FreshnessKind, Report};
use crate::tpm::{self, PublicKey, Signature, TPM_ALG_SHA256};
use crate::{ekcert, eventlog, VerifyError};

/// EK certificate chains already verified against this policy's anchors,
/// by SHA-256 of the certificate: a verifier sees the same EK in every
/// attestation of a node, and the chain's signatures need checking once.
#[derive(Debug, Default)]
pub struct ChainCache(std::sync::Mutex<std::collections::HashMap<[u8; 32], String>>);

impl Clone for ChainCache {
    // A changed policy (e.g. other anchors) starts with an empty cache.
    fn clone(&self) -> Self {
        ChainCache::default()
    }
}

/// What the caller requires of an envelope.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// CA certificates trusted to issue EK certificates.
    pub ek_cas: Vec<Certificate>,
    /// (EK, AK) pairs proven by credential activation.
    pub activations: Option<Registry>,
    /// The nonce this verifier sent, for interactive freshness.
    pub nonce: Option<Vec<u8>>,
    /// The beacon (e.g. a recent block hash) the report must be bound to.
    pub beacon: Option<Vec<u8>>,
    /// Reject reports older than this many seconds.
    pub max_age_secs: Option<u64>,
    /// Reject reports whose sequence is below this (replay of older reports).
    pub min_sequence: Option<u64>,
    /// PCR index → expected value in the quoted bank.
    pub expected_pcrs: Option<BTreeMap<u32, Vec<u8>>>,
    /// The verifier's clock.
    pub now_unix: u64,
    /// Chains verified so far (validity periods are still checked each time).
    pub chain_cache: ChainCache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub ok: bool,
    pub checks: Vec<Check>,
    /// The report, once its bytes were read (whether or not it verified).
    #[serde(skip)]
    pub report: Option<Report>,
}

impl Outcome {
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

struct Run {
    checks: Vec<Check>,
}

impl Run {
    fn record(&mut self, name: &'static str, r: Result<String, String>) -> bool {
        let (status, detail) = match r {
            Ok(d) => (Status::Pass, d),
            Err(d) => (Status::Fail, d),
        };
        self.checks.push(Check {
            name,
            status,
            detail,
        });
        status == Status::Pass
    }

    fn skip(&mut self, name: &'static str, why: impl Into<String>) {
        self.checks.push(Check {
            name,
            status: Status::Skip,
            detail: why.into(),
        });
    }
}

/// The decoded TPM evidence.
struct Evidence {
    quote_bytes: Vec<u8>,
    quote: tpm::Quote,
    signature: Signature,
    ak_public_bytes: Vec<u8>,
    ak: tpm::Public,
    ek_public_bytes: Vec<u8>,
    ek: tpm::Public,
    pcrs: BTreeMap<u32, Vec<u8>>,
    ek_cert: Option<Vec<u8>>,
    event_log: Option<Vec<u8>>,
}

fn decode_evidence(env: &Envelope) -> Result<Evidence, VerifyError> {
    let t = &env.tpm;
    if t.pcr_bank != "sha256" {
        return Err(VerifyError::Unsupported(format!(
            "PCR bank '{}' (supported: sha256)",
            t.pcr_bank
        )));
    }
    let quote_bytes = format::unb64("tpm.quote", &t.quote)?;
    let ak_public_bytes = format::unb64("tpm.ak_public", &t.ak_public)?;
    let ek_public_bytes = format::unb64("tpm.ek_public", &t.ek_public)?;
    let mut pcrs = BTreeMap::new();
    for (k, v) in &t.pcrs {
        let idx: u32 = k.parse().ok().filter(|i| *i < 24).ok_or_else(|| {
            VerifyError::Malformed(format!("tpm.pcrs: '{k}' is not a PCR index 0-23"))
        })?;
        pcrs.insert(idx, format::unhex("tpm.pcrs", v)?);
    }
    Ok(Evidence {
        quote: tpm::parse_quote(&quote_bytes)?,
        signature: tpm::parse_signature(&format::unb64("tpm.signature", &t.signature)?)?,
        ak: tpm::parse_public(&ak_public_bytes)?,
        ek: tpm::parse_public(&ek_public_bytes)?,
        quote_bytes,
        ak_public_bytes,
        ek_public_bytes,
        pcrs,
        ek_cert: t
            .ek_certificate
            .as_deref()
            .map(|c| format::unb64("tpm.ek_certificate", c))
            .transpose()?,
        event_log: t
            .event_log
            .as_deref()
            .map(|l| format::unb64("tpm.event_log", l))
            .transpose()?,
    })
}

/// Verify one envelope (its exact bytes) against a policy.
pub fn verify(envelope_bytes: &[u8], policy: &Policy) -> Outcome {
    let mut run = Run { checks: Vec::new() };
    let report = verify_into(&mut run, envelope_bytes, policy);
    Outcome {
        ok: !run.checks.iter().any(|c| c.status == Status::Fail),
        checks: run.checks,
        report,
    }
}

fn verify_into(run: &mut Run, bytes: &[u8], policy: &Policy) -> Option<Report> {
    // 1. The envelope and its report.
    let env: Envelope = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => {
            run.record("envelope", Err(format!("not an xnode envelope: {e}")));
            return None;
        }
    };
    if env.version != format::ENVELOPE_VERSION {
        run.record(
            "envelope",
            Err(format!(
                "unknown envelope version '{}': this verifier reads {}",
                env.version,
                format::ENVELOPE_VERSION
            )),
        );
        return None;
    }
    if env.payload_type != format::PAYLOAD_TYPE {
        run.record(
            "envelope",
            Err(format!(
                "payload type '{}' is not {}",
                env.payload_type,
                format::PAYLOAD_TYPE
            )),
        );
        return None;
    }
    let payload = match format::unb64("payload", &env.payload) {
        Ok(p) => p,
        Err(e) => {
            run.record("envelope", Err(e.to_string()));
            return None;
        }
    };
    run.record(
        "envelope",
        Ok(format!(
            "{} with a {}-byte report",
            env.version,
            payload.len()
        )),
    );

    let report: Report = match serde_json::from_slice(&payload) {
        Ok(r) => r,
        Err(e) => {
            run.record(
                "report",
                Err(format!("report is not {}: {e}", format::REPORT_SCHEMA)),
            );
            return None;
        }
    };
    if report.schema != format::REPORT_SCHEMA {
        run.record(
            "report",
            Err(format!("unknown report schema '{}'", report.schema)),
        );
        return Some(report);
    }
    run.record(
        "report",
        Ok(format!(
            "node {} sequence {}",
            report.node_id, report.sequence
        )),
    );

    // 2. The node's key and signature.
    let node_key = check_node_identity(run, &env, &report);
    match node_key {
        Some(key) => {
            run.record("node_signature", node_signature(&env, &payload, &key));
        }
        None => run.skip("node_signature", "no usable node key"),
    }

    // 3. The TPM evidence.
    let ev = match decode_evidence(&env) {
        Ok(ev) => ev,
        Err(e) => {
            run.record("tpm_evidence", Err(e.to_string()));
            return Some(report);
        }
    };
    run.record("quote_structure", quote_structure(&ev));
    run.record("ak_attributes", ak_attributes(&ev.ak));
    run.record("quote_signature", quote_signature(&ev));
    run.record("binding", binding(&ev, &report, &payload));
    run.record("pcr_digest", pcr_digest(&ev));
    run.record("ek_certificate", ek_certificate(&ev, policy));
    run.record("ak_activation", ak_activation(&ev, policy));
    run.record("freshness", freshness(&report, policy));
    match policy.min_sequence {
        Some(min) => {
            run.record(
                "sequence",
                if report.sequence >= min {
                    Ok(format!("{} ≥ {min}", report.sequence))
                } else {
                    Err(format!(
                        "sequence {} is below {min}: an old report replayed",
                        report.sequence
                    ))
                },
            );
        }
        None => run.skip("sequence", "no minimum sequence given (--min-sequence)"),
    }
    match &policy.expected_pcrs {
        Some(exp) => {
            run.record("expected_pcrs", expected_pcrs(&ev, exp));
        }
        None => run.skip(
            "expected_pcrs",
            "no expected PCR values given (--expect-pcrs)",
        ),
    }
    match &ev.event_log {
        Some(log) => {
            run.record("event_log", event_log(&ev, log));
        }
        None => run.skip("event_log", "the envelope carries no event log"),
    }
    match &report.capacity {
        Some(raw) => {
            run.record("capacity", capacity(&report, raw.get()));
        }
        None => run.skip("capacity", "the report carries no proof of resource"),
    }
    Some(report)
}

/// The proofs of resource in the report answer a seed derived from its
/// freshness and check out at the protocols' default parameters.
fn capacity(report: &Report, raw: &str) -> Result<String, String> {
    let fresh =
        format::unhex("freshness.value", &report.freshness.value).map_err(|e| e.to_string())?;
    let seed = por::report::attestation_seed(&fresh);
    let proofs = por::report::ChallengeReport::parse(raw.as_bytes()).map_err(|e| e.to_string())?;
    if proofs.seed != seed {
        return Err(format!(
            "the proofs answer seed {}, not {seed}, the one this report's freshness gives: they were made for another attestation",
            proofs.seed
        ));
    }
    // The GPUs claimed are the ones the signed inventory lists.
    let inventory: serde_json::Value =
        serde_json::from_str(report.inventory.get()).map_err(|e| e.to_string())?;
    proofs
        .check_claimed(&seed, por::report::GpuClaim::from_inventory(&inventory))
        .map(|lines| lines.join("; "))
        .map_err(|e| e.to_string())
}

fn check_node_identity(run: &mut Run, env: &Envelope, report: &Report) -> Option<[u8; 32]> {
    let r = (|| {
        let key: [u8; 32] = hex::decode(&report.node_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or("node_key is not 32 bytes of hex")?;
        let derived = format::peer_id(&key);
        if derived != report.node_id {
            return Err(format!(
                "node_id {} is not the PeerId of node_key ({derived})",
                report.node_id
            ));
        }
        if env.signatures.len() != 1 || env.signatures[0].keyid != report.node_id {
            return Err(
                "the envelope must carry exactly one signature, by the report's node".to_string(),
            );
        }
        Ok(key)
    })();
    match r {
        Ok(key) => {
            run.record(
                "node_identity",
                Ok(format!("PeerId {} matches node_key", report.node_id)),
            );
            Some(key)
        }
        Err(e) => {
            run.record("node_identity", Err(e));
            None
        }
    }
}

fn node_signature(env: &Envelope, payload: &[u8], key: &[u8; 32]) -> Result<String, String> {
    let vk = VerifyingKey::from_bytes(key)
        .map_err(|e| format!("node_key is not an Ed25519 point: {e}"))?;
    let sig =
        format::unb64("signatures[0].sig", &env.signatures[0].sig).map_err(|e| e.to_string())?;
    let sig = EdSignature::from_slice(&sig).map_err(|e| format!("signature: {e}"))?;
    vk.verify_strict(&format::pae(&env.payload_type, payload), &sig)
        .map(|_| "Ed25519 signature over the report verifies".into())
        .map_err(|_| "Ed25519 signature over the report does not verify".into())
}

fn quote_structure(ev: &Evidence) -> Result<String, String> {
    if ev.quote.magic != tpm::TPM_GENERATED_VALUE {
        return Err(format!(
            "magic 0x{:08x} is not TPM_GENERATED_VALUE: not produced by a TPM",
            ev.quote.magic
        ));
    }
    Ok(format!(
        "TPM-generated quote, reset count {}, clock {} ms",
        ev.quote.reset_count, ev.quote.clock
    ))
}

fn ak_attributes(ak: &tpm::Public) -> Result<String, String> {
    let need = [
        (tpm::ATTR_RESTRICTED, "restricted"),
        (tpm::ATTR_SIGN, "sign"),
        (tpm::ATTR_FIXED_TPM, "fixedTPM"),
        (tpm::ATTR_FIXED_PARENT, "fixedParent"),
        (tpm::ATTR_SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
    ];
    let missing: Vec<&str> = need
        .iter()
        .filter(|(bit, _)| ak.attributes & bit == 0)
        .map(|(_, n)| *n)
        .collect();
    if missing.is_empty() {
        Ok("restricted, fixedTPM signing key created in the TPM".into())
    } else {
        Err(format!(
            "the AK lacks {}: it could sign data that did not come from the TPM",
            missing.join(", ")
        ))
    }
}

fn quote_signature(ev: &Evidence) -> Result<String, String> {
    use ring::signature as sig;
    let msg = &ev.quote_bytes;
    let bad = |_| "the quote's signature does not verify with the AK".to_string();
    match (&ev.signature, &ev.ak.key) {
        (Signature::Ecdsa { hash, r, s }, PublicKey::Ecc { curve, x, y })
            if *curve == tpm::TPM_ECC_NIST_P256 =>
        {
            if *hash != TPM_ALG_SHA256 {
                return Err(format!(
                    "ECDSA quote hash 0x{hash:04x} (supported: SHA-256)"
                ));
            }
            let alg = &sig::ECDSA_P256_SHA256_FIXED;
            let point = [&[4u8][..], &pad32(x)?, &pad32(y)?].concat();
            let rs = [pad32(r)?, pad32(s)?].concat();
            sig::UnparsedPublicKey::new(alg, point)
                .verify(msg, &rs)
                .map_err(bad)?;
            Ok("ECDSA P-256 signature by the AK verifies".into())
        }
        (
            Signature::RsaSsa { hash, sig: s } | Signature::RsaPss { hash, sig: s },
            PublicKey::Rsa { modulus, exponent },
        ) => {
            if *hash != TPM_ALG_SHA256 {
                return Err(format!("RSA quote hash 0x{hash:04x} (supported: SHA-256)"));
            }
            let params = match ev.signature {
                Signature::RsaSsa { .. } => &sig::RSA_PKCS1_2048_8192_SHA256,
                _ => &sig::RSA_PSS_2048_8192_SHA256,
            };
            let e = exponent.to_be_bytes();
            sig::RsaPublicKeyComponents {
                n: modulus.as_slice(),
                e: &e[..],
            }
            .verify(params, msg, s)
            .map_err(bad)?;
            Ok("RSA signature by the AK verifies".into())
        }
        _ => Err("signature scheme does not match the AK's key type".into()),
    }
}

/// A P-256 field element or scalar as 32 big-endian bytes.
fn pad32(v: &[u8]) -> Result<[u8; 32], String> {
    if v.len() > 32 {
        return Err("ECC value longer than 32 bytes".into());
    }
    let mut b = [0u8; 32];
    b[32 - v.len()..].copy_from_slice(v);
    Ok(b)
}

fn binding(ev: &Evidence, report: &Report, payload: &[u8]) -> Result<String, String> {
    let fresh = format::unhex("report.freshness.value", &report.freshness.value)
        .map_err(|e| e.to_string())?;
    let expect = format::binding(&fresh, payload);
    if ev.quote.extra_data == expect {
        Ok("qualifying data = SHA-256(domain ‖ freshness ‖ SHA-256(report))".into())
    } else {
        Err("the quote's qualifying data does not bind this report and freshness value: the quote was made for something else".into())
    }
}

fn pcr_digest(ev: &Evidence) -> Result<String, String> {
    let [(bank, selected)] = ev.quote.pcr_select.as_slice() else {
        return Err(format!(
            "the quote selects {} banks; one (sha256) is expected",
            ev.quote.pcr_select.len()
        ));
    };
    if *bank != TPM_ALG_SHA256 {
        return Err(format!("the quote's bank is 0x{bank:04x}, not sha256"));
    }
    let listed: Vec<u32> = ev.pcrs.keys().copied().collect();
    let quoted: Vec<u32> = selected.iter().map(|p| u32::from(*p)).collect();
    if listed != quoted {
        return Err(format!(
            "the envelope lists PCRs {listed:?} but the quote covers {quoted:?}"
        ));
    }
    let values: Vec<&[u8]> = ev.pcrs.values().map(Vec::as_slice).collect();
    let d = tpm::pcr_digest(TPM_ALG_SHA256, &values).map_err(|e| e.to_string())?;
    if d == ev.quote.pcr_digest {
        Ok(format!("PCRs {quoted:?} match the quoted digest"))
    } else {
        Err("the PCR values do not hash to the quoted PCR digest".into())
    }
}

fn ek_certificate(ev: &Evidence, policy: &Policy) -> Result<String, String> {
    let der = ev.ek_cert.as_ref().ok_or("the envelope has no EK certificate (the TPM's NV holds none): the EK cannot be traced to its manufacturer")?;
    if policy.ek_cas.is_empty() {
        return Err("no trusted EK CA certificates given (--ek-ca FILE)".into());
    }
    let cert = ekcert::parse_der(der).map_err(|e| e.to_string())?;
    ekcert::certifies(&cert, &ev.ek.key)?;
    let key: [u8; 32] =
        sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), der)).into();
    let cached = policy
        .chain_cache
        .0
        .lock()
        .ok()
        .and_then(|c| c.get(&key).cloned());
    let anchor = match cached {
        Some(anchor) => {
            ekcert::validity_ok(&cert, policy.now_unix)
                .map_err(|e| format!("EK certificate {e}"))?;
            anchor
        }
        None => {
            let anchor = ekcert::verify_chain(&cert, &policy.ek_cas, policy.now_unix)?;
            if let Ok(mut c) = policy.chain_cache.0.lock() {
                c.insert(key, anchor.clone());
            }
            anchor
        }
    };
    Ok(format!(
        "EK certificate for the quoted EK chains to '{anchor}'"
    ))
}

fn ak_activation(ev: &Evidence, policy: &Policy) -> Result<String, String> {
    let reg = policy.activations.as_ref().ok_or("no activation registry given (--activations FILE): the AK is not known to share a TPM with the EK")?;
    let ek = ek_id(&ev.ek_public_bytes);
    let ak = hex::encode(tpm::name(&ev.ak_public_bytes).map_err(|e| e.to_string())?);
    if reg.contains(&ek, &ak) {
        Ok(format!(
            "AK {}… was activated for EK {}…",
            &ak[..16],
            &ek[..16]
        ))
    } else {
        Err(format!(
            "AK {ak} was never activated for EK {ek}: run the credential exchange first"
        ))
    }
}

fn freshness(report: &Report, policy: &Policy) -> Result<String, String> {
    let value = format::unhex("report.freshness.value", &report.freshness.value)
        .map_err(|e| e.to_string())?;
    let mut ok = Vec::new();
    let expected = match report.freshness.kind {
        FreshnessKind::Nonce => policy.nonce.as_ref().map(|n| ("nonce", n)),
        FreshnessKind::Beacon => policy.beacon.as_ref().map(|b| ("beacon", b)),
    };
    match expected {
        Some((what, want)) if *want == value => ok.push(format!("{what} matches")),
        Some((what, _)) => {
            return Err(format!(
                "the report's {what} is not the one expected: a replayed or foreign report"
            ))
        }
        None if policy.nonce.is_some() || policy.beacon.is_some() => {
            return Err(format!(
                "the report is bound to a {:?}, not to what was asked",
                report.freshness.kind
            )
            .to_lowercase())
        }
        None => {}
    }
    if let Some(max) = policy.max_age_secs {
        if report.time_unix > policy.now_unix.saturating_add(300) {
            return Err(format!(
                "the report is dated {} s in the future",
                report.time_unix - policy.now_unix
            ));
        }
        let age = policy.now_unix.saturating_sub(report.time_unix);
        if age > max {
            return Err(format!("the report is {age} s old, more than {max} s"));
        }
        ok.push(format!("{age} s old ≤ {max} s"));
    }
    if ok.is_empty() {
        Err("no freshness requirement given (--nonce, --beacon or --max-age)".into())
    } else {
        Ok(ok.join(", "))
    }
}

fn expected_pcrs(ev: &Evidence, exp: &BTreeMap<u32, Vec<u8>>) -> Result<String, String> {
    let mut bad = Vec::new();
    for (idx, want) in exp {
        match ev.pcrs.get(idx) {
            Some(v) if v == want => {}
            Some(_) => bad.push(format!("PCR {idx} differs")),
            None => bad.push(format!("PCR {idx} not quoted")),
        }
    }
    if bad.is_empty() {
        Ok(format!("{} PCRs as expected", exp.len()))
    } else {
        Err(bad.join(", "))
    }
}

fn event_log(ev: &Evidence, log: &[u8]) -> Result<String, String> {
    let events = eventlog::parse(log).map_err(|e| e.to_string())?;
    let replayed = eventlog::replay(&events, TPM_ALG_SHA256).map_err(|e| e.to_string())?;
    let mut compared = 0;
    for (pcr, value) in &replayed {
        if let Some(quoted) = ev.pcrs.get(pcr) {
            if quoted != value {
                return Err(format!(
                    "replaying the log gives another PCR {pcr} than the quote"
                ));
            }
            compared += 1;
        }
    }
    if compared == 0 {
        return Err("the log measures none of the quoted PCRs".into());
    }
    Ok(format!(
        "{} events replay to the {compared} quoted PCRs they touch",
        events.len()
    ))
}
