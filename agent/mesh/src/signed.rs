//! Signed mesh payloads: libp2p's signed envelope (the construction libp2p
//! uses for its own peer records), with Xnode's domain and a payload type
//! per kind of message, so a signature made for one kind never verifies as
//! another.

use libp2p::core::SignedEnvelope;
use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Rejected;

const DOMAIN: &str = "xnode-mesh";

/// What a signed payload is, and the most bytes its envelope may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub payload_type: &'static str,
    pub max_bytes: usize,
}

pub const SERVICE_RECORD: Kind = Kind {
    payload_type: "/xnode/service-record/1",
    max_bytes: 8 * 1024,
};
pub const METRICS: Kind = Kind {
    payload_type: "/xnode/metrics/1",
    max_bytes: 16 * 1024,
};
pub const ATTESTATION: Kind = Kind {
    payload_type: "/xnode/attestation/1",
    max_bytes: 96 * 1024,
};

/// Serialize `payload` once as JSON and sign those bytes.
pub fn seal<T: Serialize>(key: &Keypair, kind: Kind, payload: &T) -> Result<Vec<u8>, Rejected> {
    let bytes = serde_json::to_vec(payload).map_err(|e| Rejected::Malformed(e.to_string()))?;
    let envelope = SignedEnvelope::new(key, DOMAIN.into(), kind.payload_type.into(), bytes)
        .map_err(|e| Rejected::Malformed(format!("signing: {e}")))?;
    let out = envelope.into_protobuf_encoding();
    if out.len() > kind.max_bytes {
        return Err(Rejected::Oversized {
            size: out.len(),
            limit: kind.max_bytes,
        });
    }
    Ok(out)
}

/// A payload whose signature checked out, with its signer.
#[derive(Debug, Clone)]
pub struct Opened<T> {
    pub payload: T,
    pub signer: PeerId,
    pub signer_key: PublicKey,
}

/// Check size, signature and payload type, then parse the payload.
pub fn open<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<Opened<T>, Rejected> {
    if bytes.len() > kind.max_bytes {
        return Err(Rejected::Oversized {
            size: bytes.len(),
            limit: kind.max_bytes,
        });
    }
    let envelope = SignedEnvelope::from_protobuf_encoding(bytes)
        .map_err(|e| Rejected::Malformed(format!("envelope: {e}")))?;
    let (payload, key) = envelope
        .payload_and_signing_key(DOMAIN.into(), kind.payload_type.as_bytes())
        .map_err(|e| Rejected::BadSignature(e.to_string()))?;
    let payload = serde_json::from_slice(payload)
        .map_err(|e| Rejected::Malformed(format!("{}: {e}", kind.payload_type)))?;
    Ok(Opened {
        payload,
        signer: key.to_peer_id(),
        signer_key: key.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_names_the_signer() {
        let key = Keypair::generate_ed25519();
        let bytes = seal(&key, METRICS, &serde_json::json!({"a": 1})).unwrap();
        let opened: Opened<serde_json::Value> = open(METRICS, &bytes).unwrap();
        assert_eq!(opened.signer, key.public().to_peer_id());
        assert_eq!(opened.payload["a"], 1);
    }

    #[test]
    fn a_signature_for_one_kind_does_not_open_as_another() {
        let key = Keypair::generate_ed25519();
        let bytes = seal(&key, METRICS, &serde_json::json!({})).unwrap();
        let err = open::<serde_json::Value>(SERVICE_RECORD, &bytes).unwrap_err();
        assert!(matches!(err, Rejected::BadSignature(_)), "{err}");
    }

    #[test]
    fn a_flipped_payload_byte_breaks_the_signature() {
        let key = Keypair::generate_ed25519();
        let mut bytes = seal(&key, METRICS, &serde_json::json!({"v": "aaaa"})).unwrap();
        let at = bytes.windows(4).position(|w| w == b"aaaa").unwrap();
        bytes[at] = b'b';
        let err = open::<serde_json::Value>(METRICS, &bytes).unwrap_err();
        assert!(matches!(err, Rejected::BadSignature(_)), "{err}");
    }

    #[test]
    fn garbage_and_oversize_are_refused_before_parsing() {
        let err = open::<serde_json::Value>(METRICS, b"not an envelope").unwrap_err();
        assert!(matches!(err, Rejected::Malformed(_)), "{err}");
        let big = vec![0u8; METRICS.max_bytes + 1];
        let err = open::<serde_json::Value>(METRICS, &big).unwrap_err();
        assert!(matches!(err, Rejected::Oversized { .. }), "{err}");
    }
}
