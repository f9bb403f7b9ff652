//! The attestation envelope and the report it carries (docs/attestation.md).
//!
//! The envelope is DSSE-style JSON: the report travels as base64 of its
//! exact bytes, the node signs the DSSE pre-authentication encoding of
//! those bytes, and nothing is re-serialized before verifying.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::VerifyError;

pub const ENVELOPE_VERSION: &str = "xnode.envelope/v1";
pub const REPORT_SCHEMA: &str = "xnode.report/v1";
pub const PAYLOAD_TYPE: &str = "application/vnd.xnode.report.v1+json";
/// Domain separation for the quote's qualifying data.
pub const BINDING_DOMAIN: &[u8] = b"xnode-attestation-v1\0";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub version: String,
    pub payload_type: String,
    /// Base64 (standard, padded) of the exact report bytes.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
    pub tpm: TpmEvidence,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// The signer's libp2p PeerId.
    pub keyid: String,
    /// Base64 Ed25519 signature over PAE(payload_type, payload bytes).
    pub sig: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TpmEvidence {
    /// Base64 TPMS_ATTEST, exactly as the TPM signed it.
    pub quote: String,
    /// Base64 TPMT_SIGNATURE by the attestation key over `quote`.
    pub signature: String,
    /// The PCR bank quoted: "sha256".
    pub pcr_bank: String,
    /// PCR index (decimal) → value (hex), for every quoted PCR.
    pub pcrs: BTreeMap<String, String>,
    /// Base64 TPMT_PUBLIC of the attestation key.
    pub ak_public: String,
    /// Base64 TPMT_PUBLIC of the endorsement key.
    pub ek_public: String,
    /// Base64 DER EK certificate from the TPM's NV, when it has one.
    pub ek_certificate: Option<String>,
    /// Base64 TCG PC Client crypto-agile event log, when readable.
    pub event_log: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub schema: String,
    /// libp2p PeerId of `node_key`.
    pub node_id: String,
    /// Hex Ed25519 public key of the node.
    pub node_key: String,
    /// Strictly increasing per node key.
    pub sequence: u64,
    pub time_unix: u64,
    pub boot_id: Option<String>,
    /// /run/current-system on NixOS.
    pub system_store_path: Option<String>,
    pub freshness: Freshness,
    /// The TPM is a software TPM: no hardware root of trust.
    pub software_tpm: bool,
    /// The probe's inventory document (xnode.inventory/v1), kept as the
    /// exact JSON it arrived as: the verifier checks signatures over it and
    /// leaves its interpretation to the caller.
    pub inventory: Box<serde_json::value::RawValue>,
    /// Proof of resource (an `xnode.challenge/v1` report) whose seed is
    /// derived from `freshness`, kept as the exact JSON it arrived as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    /// "nonce" (from an interactive verifier) or "beacon" (e.g. a block hash).
    pub kind: FreshnessKind,
    /// Hex bytes.
    pub value: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FreshnessKind {
    Nonce,
    Beacon,
}

/// DSSE pre-authentication encoding: what the node key signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The quote's qualifying data: SHA-256(domain ‖ freshness ‖ SHA-256(report)).
pub fn binding(freshness: &[u8], report: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(BINDING_DOMAIN);
    h.update(freshness);
    h.update(Sha256::digest(report));
    h.finalize().into()
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn unb64(field: &str, s: &str) -> Result<Vec<u8>, VerifyError> {
    B64.decode(s)
        .map_err(|e| VerifyError::Malformed(format!("{field}: not base64 ({e})")))
}

pub fn unhex(field: &str, s: &str) -> Result<Vec<u8>, VerifyError> {
    hex::decode(s).map_err(|e| VerifyError::Malformed(format!("{field}: not hex ({e})")))
}

/// libp2p PeerId of an Ed25519 key: base58btc of the identity multihash
/// of the protobuf-encoded public key (libp2p peer-ids spec).
pub fn peer_id(ed25519_public: &[u8; 32]) -> String {
    // PublicKey { Type: Ed25519 (1), Data: 32 bytes } in protobuf.
    let mut proto = vec![0x08, 0x01, 0x12, 0x20];
    proto.extend_from_slice(ed25519_public);
    // Keys of 42 bytes or less use the identity multihash (code 0x00).
    let mut mh = vec![0x00, proto.len() as u8];
    mh.extend(proto);
    bs58::encode(mh).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn binding_known_answer() {
        // docs/attestation.md publishes this vector.
        let got = hex::encode(binding(&[0x01, 0x02, 0x03, 0x04], b"{}"));
        assert_eq!(got, BINDING_VECTOR);
    }

    /// Computed independently (Python hashlib) and published in docs/attestation.md.
    const BINDING_VECTOR: &str = "7b9ed60d35f2fe88edd684fe2d140bb56fa369e491b89a804ed8c2a749ea9a03";

    #[test]
    fn ed25519_peer_ids_have_the_libp2p_prefix() {
        let id = peer_id(&[7u8; 32]);
        assert!(id.starts_with("12D3KooW"), "{id}");
        assert_eq!(bs58::decode(&id).into_vec().unwrap()[6..], [7u8; 32]);
    }
}
