//! TPM2_MakeCredential in pure Rust (TPM 2.0 Library Part 1, 24 "Credential
//! Protection"), and the files of the activation exchange.
//!
//! The verifier wraps a random secret so that only the TPM holding the
//! endorsement key can unwrap it, and only for a key with the attestation
//! key's exact Name. A node that answers with the secret proves that its AK
//! lives in the same TPM as its EK.

use aes::Aes128;
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tpm::{self, PublicKey, TPM_ALG_SHA256};
use crate::VerifyError;

pub const CHALLENGE_VERSION: &str = "xnode.credential-challenge/v1";
pub const RESPONSE_VERSION: &str = "xnode.credential-response/v1";
pub const REGISTRY_VERSION: &str = "xnode.activations/v1";

/// What the verifier sends to the node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    pub version: String,
    /// Hex SHA-256 of the EK's TPMT_PUBLIC.
    pub ek_public_sha256: String,
    /// Hex Name of the AK the credential is bound to.
    pub ak_name: String,
    /// Base64 TPM2B_ID_OBJECT contents.
    pub credential_blob: String,
    /// Base64 TPM2B_ENCRYPTED_SECRET contents.
    pub encrypted_secret: String,
}

/// The verifier's own record of a challenge; holds only the secret's hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub version: String,
    pub ek_public_sha256: String,
    pub ak_name: String,
    pub secret_sha256: String,
    pub issued_unix: u64,
}

/// What the node answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub version: String,
    pub ak_name: String,
    /// Hex of the unwrapped secret.
    pub secret: String,
}

/// The verifier's list of (EK, AK) pairs proven by activation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub version: String,
    pub activations: Vec<Activation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    pub ek_public_sha256: String,
    pub ak_name: String,
    pub activated_unix: u64,
}

impl Registry {
    pub fn contains(&self, ek_public_sha256: &str, ak_name: &str) -> bool {
        self.activations
            .iter()
            .any(|a| a.ek_public_sha256 == ek_public_sha256 && a.ak_name == ak_name)
    }
}

type HmacSha256 = Hmac<Sha256>;

/// KDFa with SHA-256 (Part 1, 11.4.10.2): HMAC counter mode.
pub fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter = 1u32;
    while out.len() < bytes {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend(mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// KDFe with SHA-256 (Part 1, 11.4.10.3), for ECC key exchange.
pub fn kdfe(z: &[u8], label: &str, party_u: &[u8], party_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter = 1u32;
    while out.len() < bytes {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(label.as_bytes());
        h.update([0]);
        h.update(party_u);
        h.update(party_v);
        out.extend(h.finalize());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// The two halves of a made credential, as the TPM's ActivateCredential takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCredential {
    pub credential_blob: Vec<u8>,
    pub encrypted_secret: Vec<u8>,
}

/// TPM2_MakeCredential: wrap `secret` (≤ 32 bytes) to the EK for the AK's Name.
pub fn make_credential(
    ek_public: &[u8],
    ak_name: &[u8],
    secret: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<MadeCredential, VerifyError> {
    let ek = tpm::parse_public(ek_public)?;
    if ek.name_alg != TPM_ALG_SHA256 {
        return Err(VerifyError::Unsupported(format!(
            "EK name algorithm 0x{:04x} (supported: SHA-256)",
            ek.name_alg
        )));
    }
    if secret.len() > 32 {
        return Err(VerifyError::Malformed(
            "credential secret longer than 32 bytes".into(),
        ));
    }
    let sym_bits = match ek.symmetric {
        Some((0x0006, 128, 0x0043)) => 128, // AES-128-CFB
        other => {
            return Err(VerifyError::Unsupported(format!(
                "EK symmetric definition {other:?} (supported: AES-128-CFB)"
            )))
        }
    };
    let (seed, encrypted_secret) = match &ek.key {
        PublicKey::Rsa { modulus, exponent } => {
            let mut seed = vec![0u8; 32];
            rng.fill_bytes(&mut seed);
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(modulus),
                rsa::BigUint::from(*exponent),
            )
            .map_err(|e| VerifyError::Malformed(format!("EK RSA key: {e}")))?;
            let padding = rsa::Oaep::new_with_label::<Sha256, _>("IDENTITY\0");
            let enc = key
                .encrypt(rng, padding, &seed)
                .map_err(|e| VerifyError::Malformed(format!("RSA-OAEP to the EK: {e}")))?;
            (seed, enc)
        }
        PublicKey::Ecc { curve, x, y } => {
            if *curve != tpm::TPM_ECC_NIST_P256 {
                return Err(VerifyError::Unsupported(format!(
                    "EK curve 0x{curve:04x} (supported: P-256)"
                )));
            }
            let point = p256::EncodedPoint::from_affine_coordinates(
                p256::FieldBytes::from_slice(&pad32(x)?),
                p256::FieldBytes::from_slice(&pad32(y)?),
                false,
            );
            let ek_key = p256::PublicKey::from_sec1_bytes(point.as_bytes())
                .map_err(|_| VerifyError::Malformed("EK ECC point is not on P-256".into()))?;
            let eph = p256::ecdh::EphemeralSecret::random(rng);
            let eph_point = p256::EncodedPoint::from(eph.public_key());
            let z = eph.diffie_hellman(&ek_key);
            let (ex, ey) = (
                eph_point.x().map(|v| v.to_vec()).unwrap_or_default(),
                eph_point.y().map(|v| v.to_vec()).unwrap_or_default(),
            );
            let seed = kdfe(z.raw_secret_bytes(), "IDENTITY", &ex, &pad32(x)?, 256);
            let mut enc = Vec::new();
            enc.extend((ex.len() as u16).to_be_bytes());
            enc.extend(&ex);
            enc.extend((ey.len() as u16).to_be_bytes());
            enc.extend(&ey);
            (seed, enc)
        }
    };

    // encIdentity = CFB(symKey, IV = 0, TPM2B_DIGEST(secret))
    let sym_key = kdfa(&seed, "STORAGE", ak_name, &[], sym_bits);
    let mut enc_identity = (secret.len() as u16).to_be_bytes().to_vec();
    enc_identity.extend_from_slice(secret);
    cfb_mode::Encryptor::<Aes128>::new_from_slices(&sym_key, &[0u8; 16])
        .map_err(|_| VerifyError::Malformed("AES key size".into()))?
        .encrypt(&mut enc_identity);

    let hmac_key = kdfa(&seed, "INTEGRITY", &[], &[], 256);
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&hmac_key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(&enc_identity);
    mac.update(ak_name);
    let integrity = mac.finalize().into_bytes();

    let mut blob = (integrity.len() as u16).to_be_bytes().to_vec();
    blob.extend_from_slice(&integrity);
    blob.extend(enc_identity);
    Ok(MadeCredential {
        credential_blob: blob,
        encrypted_secret,
    })
}

fn pad32(v: &[u8]) -> Result<Vec<u8>, VerifyError> {
    if v.len() > 32 {
        return Err(VerifyError::Malformed(
            "ECC coordinate longer than 32 bytes".into(),
        ));
    }
    let mut out = vec![0u8; 32 - v.len()];
    out.extend_from_slice(v);
    Ok(out)
}

/// SHA-256 of a TPMT_PUBLIC, hex: how the registry names an EK.
pub fn ek_id(ek_public: &[u8]) -> String {
    hex::encode(Sha256::digest(ek_public))
}

/// Verifier: make a challenge for the EK and AK an envelope presents.
/// Returns what to send and what to keep (only the secret's hash).
pub fn issue(
    ek_public: &[u8],
    ak_public: &[u8],
    now_unix: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<(Challenge, Pending), VerifyError> {
    let ak = tpm::parse_public(ak_public)?;
    if ak.attributes & (tpm::ATTR_RESTRICTED | tpm::ATTR_SIGN | tpm::ATTR_FIXED_TPM)
        != tpm::ATTR_RESTRICTED | tpm::ATTR_SIGN | tpm::ATTR_FIXED_TPM
    {
        return Err(VerifyError::Malformed(
            "the AK is not a restricted fixedTPM signing key".into(),
        ));
    }
    let ak_name = tpm::name(ak_public)?;
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let made = make_credential(ek_public, &ak_name, &secret, rng)?;
    let ek = ek_id(ek_public);
    let challenge = Challenge {
        version: CHALLENGE_VERSION.into(),
        ek_public_sha256: ek.clone(),
        ak_name: hex::encode(&ak_name),
        credential_blob: crate::format::b64(&made.credential_blob),
        encrypted_secret: crate::format::b64(&made.encrypted_secret),
    };
    let pending = Pending {
        version: CHALLENGE_VERSION.into(),
        ek_public_sha256: ek,
        ak_name: hex::encode(&ak_name),
        secret_sha256: hex::encode(Sha256::digest(secret)),
        issued_unix: now_unix,
    };
    Ok((challenge, pending))
}

/// Verifier: accept a node's answer to a pending challenge.
pub fn accept(
    pending: &Pending,
    response: &Response,
    now_unix: u64,
) -> Result<Activation, VerifyError> {
    if response.version != RESPONSE_VERSION {
        return Err(VerifyError::Unsupported(format!(
            "response version '{}'",
            response.version
        )));
    }
    if response.ak_name != pending.ak_name {
        return Err(VerifyError::Malformed(
            "the response names another AK than the challenge".into(),
        ));
    }
    let secret = crate::format::unhex("secret", &response.secret)?;
    if hex::encode(Sha256::digest(&secret)) != pending.secret_sha256 {
        return Err(VerifyError::Malformed(
            "wrong secret: the AK is not in the TPM that holds this EK".into(),
        ));
    }
    Ok(Activation {
        ek_public_sha256: pending.ek_public_sha256.clone(),
        ak_name: pending.ak_name.clone(),
        activated_unix: now_unix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_known_answer() {
        // Independent computation (Python hmac/hashlib) of
        // KDFa(SHA-256, key=0x00..1f, "STORAGE", "name", "", 128).
        let key: Vec<u8> = (0u8..32).collect();
        assert_eq!(
            hex::encode(kdfa(&key, "STORAGE", b"name", b"", 128)),
            KDFA_VECTOR
        );
        assert_eq!(kdfa(&key, "INTEGRITY", b"", b"", 256).len(), 32);
        assert_eq!(kdfa(&key, "X", b"", b"", 520).len(), 65);
    }

    const KDFA_VECTOR: &str = "97f1ccec355e7643a61c69d29ad6404d";
}
