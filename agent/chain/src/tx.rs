//! Transactions: JSON in one canonical form, signed by the sender's
//! Ed25519 key over a domain-separated encoding of the body, which names
//! the chain so that a transaction cannot be replayed on another.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What the sender signs: this domain, then the body's canonical JSON.
pub const SIGN_DOMAIN: &[u8] = b"xnode-chain/tx/v1\0";
/// Largest transaction the application reads (an envelope with an event
/// log is tens of KiB).
pub const MAX_TX_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tx {
    pub body: Body,
    /// Hex Ed25519 signature over `SIGN_DOMAIN ‖ canonical(body)`.
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Body {
    pub chain_id: String,
    /// Hex Ed25519 public key: the account, and for node messages the node.
    pub sender: String,
    /// The sender's next nonce: 0 for its first transaction.
    pub nonce: u64,
    /// What the sender pays; at least the chain's fee for this size.
    pub fee: u64,
    pub msg: Msg,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Msg {
    Transfer {
        to: String,
        amount: u64,
    },
    /// Register, or re-attest: the node's attestation envelope, bound to the
    /// hash of block `beacon_height`.
    Attest {
        /// Base64 of the envelope's exact bytes.
        envelope: String,
        beacon_height: u64,
        /// Hex Ed25519 CometBFT consensus key, for a node that validates.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        validator_key: Option<String>,
    },
    Stake {
        amount: u64,
    },
    Unstake {
        amount: u64,
    },
    /// The CID of what the node fetched from `source`, assigned to it at
    /// `height`.
    SubmitCid {
        height: u64,
        source: String,
        cid: String,
    },
    /// An activator (or the authority) vouches that it ran the credential
    /// exchange (`xnode-agent credential challenge|accept`) and that the AK
    /// with this Name lives in the TPM with this EK.
    Activate {
        /// Hex SHA-256 of the EK's TPMT_PUBLIC.
        ek_public_sha256: String,
        /// Hex Name of the AK.
        ak_name: String,
    },
    /// Authority only.
    AddSource {
        id: String,
        url: String,
    },
    /// Authority only: switch to the named rules at `height`.
    ScheduleUpgrade {
        name: String,
        height: u64,
    },
}

impl Msg {
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Transfer { .. } => "transfer",
            Msg::Attest { .. } => "attest",
            Msg::Stake { .. } => "stake",
            Msg::Unstake { .. } => "unstake",
            Msg::SubmitCid { .. } => "submit_cid",
            Msg::Activate { .. } => "activate",
            Msg::AddSource { .. } => "add_source",
            Msg::ScheduleUpgrade { .. } => "schedule_upgrade",
        }
    }
}

/// Parse a hex Ed25519 public key (the form addresses take everywhere).
pub fn parse_address(s: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(s)
        .ok()
        .filter(|_| s.bytes().all(|b| !b.is_ascii_uppercase()))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("'{s}' is not an address (64 lowercase hex digits)"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| format!("'{s}' is not an Ed25519 public key"))
}

fn canonical_body(body: &Body) -> Vec<u8> {
    let mut out = SIGN_DOMAIN.to_vec();
    // Serializing our own structs cannot fail: no maps with non-string keys.
    out.extend(serde_json::to_vec(body).unwrap_or_default());
    out
}

impl Tx {
    pub fn sign(body: Body, key: &SigningKey) -> Tx {
        let signature = hex::encode(key.sign(&canonical_body(&body)).to_bytes());
        Tx { body, signature }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decode and check the signature. Only the canonical encoding is
    /// accepted, so one transaction has one hash.
    pub fn decode(bytes: &[u8]) -> Result<Tx, TxError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(TxError::Malformed(format!(
                "{} bytes, more than the {MAX_TX_BYTES} a transaction may have",
                bytes.len()
            )));
        }
        let tx: Tx = serde_json::from_slice(bytes)
            .map_err(|e| TxError::Malformed(format!("not an xnode transaction: {e}")))?;
        if tx.to_bytes() != bytes {
            return Err(TxError::Malformed(
                "not in canonical form (compact JSON, fields in schema order)".into(),
            ));
        }
        let key = parse_address(&tx.body.sender).map_err(TxError::Malformed)?;
        let sig: [u8; 64] = hex::decode(&tx.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| TxError::Malformed("signature is not 64 hex bytes".into()))?;
        key.verify_strict(&canonical_body(&tx.body), &Signature::from_bytes(&sig))
            .map_err(|_| TxError::BadSignature)?;
        Ok(tx)
    }
}

/// Why a transaction was refused before it touched the state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxError {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("bad signature: the sender's key did not sign this body")]
    BadSignature,
}

/// The envelope bytes an `Attest` message carries.
pub fn envelope_bytes(b64: &str) -> Result<Vec<u8>, String> {
    B64.decode(b64)
        .map_err(|e| format!("envelope is not base64: {e}"))
}

pub fn encode_envelope(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&[i; 32])
    }

    fn body(k: &SigningKey) -> Body {
        Body {
            chain_id: "test".into(),
            sender: hex::encode(k.verifying_key().as_bytes()),
            nonce: 0,
            fee: 10,
            msg: Msg::Transfer {
                to: hex::encode(key(2).verifying_key().as_bytes()),
                amount: 5,
            },
        }
    }

    #[test]
    fn signed_tx_round_trips() {
        let k = key(1);
        let tx = Tx::sign(body(&k), &k);
        assert_eq!(Tx::decode(&tx.to_bytes()).unwrap(), tx);
    }

    #[test]
    fn forged_and_altered_txs_are_refused() {
        let k = key(1);
        let mut tx = Tx::sign(body(&k), &k);
        // Another key signing the body does not make it the sender's.
        let forged = Tx::sign(body(&k), &key(3));
        assert_eq!(Tx::decode(&forged.to_bytes()), Err(TxError::BadSignature));
        // The amount changed after signing.
        tx.body.msg = Msg::Transfer {
            to: hex::encode(key(2).verifying_key().as_bytes()),
            amount: 5_000,
        };
        assert_eq!(Tx::decode(&tx.to_bytes()), Err(TxError::BadSignature));
        // The same body signed for another chain.
        let mut other = body(&k);
        other.chain_id = "other".into();
        let mut moved = Tx::sign(other, &k);
        moved.body.chain_id = "test".into();
        assert_eq!(Tx::decode(&moved.to_bytes()), Err(TxError::BadSignature));
    }

    #[test]
    fn non_canonical_and_junk_bytes_are_malformed() {
        let k = key(1);
        let tx = Tx::sign(body(&k), &k);
        let pretty = serde_json::to_vec_pretty(&tx).unwrap();
        for bad in [
            pretty.as_slice(),
            b"".as_slice(),
            b"{}",
            b"\xff\xfe",
            b"{\"body\":1,\"signature\":\"\"}",
        ] {
            assert!(
                matches!(Tx::decode(bad), Err(TxError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut extra: serde_json::Value = serde_json::from_slice(&tx.to_bytes()).unwrap();
        extra["body"]["memo"] = "x".into();
        assert!(matches!(
            Tx::decode(&serde_json::to_vec(&extra).unwrap()),
            Err(TxError::Malformed(_))
        ));
        let huge = vec![b' '; MAX_TX_BYTES + 1];
        assert!(matches!(Tx::decode(&huge), Err(TxError::Malformed(_))));
    }

    #[test]
    fn addresses_are_lowercase_hex_keys() {
        let k = hex::encode(key(1).verifying_key().as_bytes());
        assert!(parse_address(&k).is_ok());
        assert!(parse_address(&k.to_uppercase()).is_err());
        assert!(parse_address("00").is_err());
        assert!(parse_address("zz").is_err());
    }
}
