//! CometBFT's keys: Ed25519 key generation, the JSON files CometBFT reads
//! them from (`config/node_key.json`, p2p/key.go; `priv_validator_key.json`,
//! privval/file.go), and the addresses and node ids derived from a public
//! key (crypto/ed25519).

use std::fs;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::home::{InitError, NODE_KEY};

const PRIV_KEY_TYPE: &str = "tendermint/PrivKeyEd25519";
pub(super) const PUB_KEY_TYPE: &str = "tendermint/PubKeyEd25519";

/// `{"type": ..., "value": base64}`, CometBFT's amino-style JSON for keys.
// No Debug: it holds a private key.
#[derive(Serialize, Deserialize)]
struct TypedKey {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// config/node_key.json (p2p/key.go NodeKey).
// No Debug: it holds a private key.
#[derive(Serialize, Deserialize)]
struct NodeKeyFile {
    priv_key: TypedKey,
}

/// config/priv_validator_key.json (privval/file.go FilePVKey).
// No Debug: it holds a private key.
#[derive(Serialize, Deserialize)]
struct PvKeyFile {
    address: String,
    pub_key: TypedKey,
    priv_key: TypedKey,
}

/// CometBFT's address of an Ed25519 public key: the first 20 bytes of its
/// SHA-256 (crypto/ed25519 PubKey.Address).
pub fn pubkey_address(pubkey: &[u8; 32]) -> [u8; 20] {
    let digest = sha2::Sha256::digest(pubkey);
    let mut out = [0u8; 20];
    out.copy_from_slice(&digest[..20]);
    out
}

/// A node id as peers write it before `@`: lowercase hex of the address.
pub fn node_id_of(pubkey: &[u8; 32]) -> String {
    hex::encode(pubkey_address(pubkey))
}

/// A validator address as CometBFT writes it: uppercase hex.
pub fn validator_address_of(pubkey: &[u8; 32]) -> String {
    hex::encode_upper(pubkey_address(pubkey))
}

/// Decode a `tendermint/PrivKeyEd25519` value (seed ‖ pubkey) and check that
/// the seed yields that public key; returns the public key.
fn decode_priv_key(k: &TypedKey) -> Result<[u8; 32], String> {
    if k.kind != PRIV_KEY_TYPE {
        return Err(format!(
            "priv_key.type is '{}', not '{PRIV_KEY_TYPE}'",
            k.kind
        ));
    }
    let bytes = B64
        .decode(&k.value)
        .map_err(|e| format!("priv_key.value is not base64: {e}"))?;
    let pair: [u8; 64] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "priv_key.value holds {} bytes, not 64 (seed ‖ public key)",
            bytes.len()
        )
    })?;
    let signing = ed25519_dalek::SigningKey::from_keypair_bytes(&pair)
        .map_err(|_| "priv_key.value: the public half does not belong to the seed".to_string())?;
    Ok(signing.verifying_key().to_bytes())
}

pub(super) fn parse_node_key(bytes: &[u8]) -> Result<[u8; 32], String> {
    let f: NodeKeyFile =
        serde_json::from_slice(bytes).map_err(|e| format!("not a node key: {e}"))?;
    decode_priv_key(&f.priv_key)
}

pub(super) fn parse_pv_key(bytes: &[u8]) -> Result<[u8; 32], String> {
    let f: PvKeyFile =
        serde_json::from_slice(bytes).map_err(|e| format!("not a validator key: {e}"))?;
    let public = decode_priv_key(&f.priv_key)?;
    if f.pub_key.kind != PUB_KEY_TYPE {
        return Err(format!(
            "pub_key.type is '{}', not '{PUB_KEY_TYPE}'",
            f.pub_key.kind
        ));
    }
    if B64.decode(&f.pub_key.value).ok().as_deref() != Some(&public[..]) {
        return Err("pub_key does not match priv_key".into());
    }
    if !f
        .address
        .eq_ignore_ascii_case(&validator_address_of(&public))
    {
        return Err(format!(
            "address {} is not the address of pub_key ({})",
            f.address,
            validator_address_of(&public)
        ));
    }
    Ok(public)
}

pub(super) fn new_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng)
}

pub(super) fn node_key_json(k: &ed25519_dalek::SigningKey) -> Result<Vec<u8>, InitError> {
    let f = NodeKeyFile {
        priv_key: TypedKey {
            kind: PRIV_KEY_TYPE.into(),
            value: B64.encode(k.to_keypair_bytes()),
        },
    };
    // CometBFT writes this one compact (cmtjson.Marshal).
    serde_json::to_vec(&f).map_err(|e| InitError::Render {
        reason: e.to_string(),
    })
}

pub(super) fn pv_key_json(k: &ed25519_dalek::SigningKey) -> Result<Vec<u8>, InitError> {
    let public = k.verifying_key().to_bytes();
    let f = PvKeyFile {
        address: validator_address_of(&public),
        pub_key: TypedKey {
            kind: PUB_KEY_TYPE.into(),
            value: B64.encode(public),
        },
        priv_key: TypedKey {
            kind: PRIV_KEY_TYPE.into(),
            value: B64.encode(k.to_keypair_bytes()),
        },
    };
    // CometBFT indents this one by two spaces (cmtjson.MarshalIndent).
    serde_json::to_vec_pretty(&f).map_err(|e| InitError::Render {
        reason: e.to_string(),
    })
}

/// The node id (what peers put before `@`) of the node key in `home`.
pub fn node_id(home: &Path) -> Result<String, InitError> {
    let path = home.join(NODE_KEY);
    let bytes = fs::read(&path).map_err(|e| InitError::Io {
        path: path.clone(),
        doing: "read",
        source: e,
    })?;
    let public = parse_node_key(&bytes).map_err(|reason| InitError::KeyUnparseable {
        path: path.clone(),
        reason,
    })?;
    Ok(node_id_of(&public))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Published pairs, each a pub_key and the address CometBFT printed for it:
    // the v0.38 OpenAPI ValidatorInfo example (rpc/openapi/openapi.yaml), the
    // /status example of spec/rpc/README.md, and the sample genesis.json of
    // docs/core/using-cometbft.md.
    #[test]
    fn address_matches_published_pairs() {
        for (pubkey, address) in [
            (
                "A6DoBUypNtUAyEHWtQ9bFjfNg8Bo9CrnkUGl6k6OHN4=",
                "5D6A51A8E9899C44079C6AF90618BA0369070E6E",
            ),
            (
                "Z+8kntVegi1sQiWLYwFSVLNWqdAUGEy7lskL78gxLZI=",
                "38FB765D0092470989360ECA1C89CD06C2C1583C",
            ),
            (
                "P/V6GHuZrb8rs/k1oBorxc6vyXMlnzhJmv7LmjELDys=",
                "B547AB87E79F75A4A3198C57A8C2FDAF8628CB47",
            ),
        ] {
            let pk: [u8; 32] = B64.decode(pubkey).unwrap().try_into().unwrap();
            assert_eq!(validator_address_of(&pk), address);
            assert_eq!(node_id_of(&pk), address.to_lowercase());
        }
    }

    // The private key layout (seed ‖ public key) checked on a key published in
    // CometBFT's docs (docs/core/using-cometbft.md, `cometbft gen_validator`):
    // the seed must yield the public half and the documented pub_key.
    #[test]
    fn private_key_layout_matches_published_key() {
        let priv_key = TypedKey {
            kind: PRIV_KEY_TYPE.into(),
            value: "EDJY9W6zlAw+su6ITgTKg2nTZcHAH1NMTW5iwlgmNDuX1f35+OR4HMN88ZtQzsAwhETq4k3vzM3n6WTk5ii16Q==".into(),
        };
        let public = decode_priv_key(&priv_key).unwrap();
        assert_eq!(
            B64.encode(public),
            "l9X9+fjkeBzDfPGbUM7AMIRE6uJN78zN5+lk5OYotek="
        );
        let mut flipped = B64.decode(&priv_key.value).unwrap();
        flipped[40] ^= 1;
        let bad = TypedKey {
            kind: PRIV_KEY_TYPE.into(),
            value: B64.encode(flipped),
        };
        assert!(decode_priv_key(&bad)
            .unwrap_err()
            .contains("does not belong"));
    }

    #[test]
    fn generated_keys_round_trip_in_cometbft_format() {
        let key = new_signing_key();
        let public = key.verifying_key().to_bytes();
        let node = node_key_json(&key).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&node).unwrap();
        assert_eq!(v["priv_key"]["type"], PRIV_KEY_TYPE);
        assert_eq!(
            B64.decode(v["priv_key"]["value"].as_str().unwrap())
                .unwrap()
                .len(),
            64
        );
        assert_eq!(parse_node_key(&node).unwrap(), public);

        let pv = pv_key_json(&key).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&pv).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 3);
        let address = v["address"].as_str().unwrap();
        assert_eq!(address, address.to_uppercase());
        assert_eq!(address, validator_address_of(&public));
        assert_eq!(v["pub_key"]["type"], PUB_KEY_TYPE);
        assert_eq!(v["pub_key"]["value"], B64.encode(public));
        assert_eq!(parse_pv_key(&pv).unwrap(), public);

        // A tampered address is caught.
        let tampered = String::from_utf8(pv)
            .unwrap()
            .replace(address, &"0".repeat(40));
        assert!(parse_pv_key(tampered.as_bytes())
            .unwrap_err()
            .contains("not the address"));
    }
}
