//! The TPM 2.0 structures a verifier reads (TPM 2.0 Library, Part 2):
//! TPMS_ATTEST with TPMS_QUOTE_INFO, TPMT_SIGNATURE and TPMT_PUBLIC, and
//! the object Name. Parsed in pure Rust so no TPM library is needed.

use sha2::{Digest, Sha256, Sha384};

use crate::wire::Reader;
use crate::VerifyError;

pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
pub const TPM_ALG_RSA: u16 = 0x0001;
pub const TPM_ALG_SHA1: u16 = 0x0004;
pub const TPM_ALG_SHA256: u16 = 0x000B;
pub const TPM_ALG_SHA384: u16 = 0x000C;
pub const TPM_ALG_SHA512: u16 = 0x000D;
pub const TPM_ALG_NULL: u16 = 0x0010;
pub const TPM_ALG_RSASSA: u16 = 0x0014;
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
pub const TPM_ALG_ECDSA: u16 = 0x0018;
pub const TPM_ALG_ECDAA: u16 = 0x001A;
pub const TPM_ALG_ECC: u16 = 0x0023;
pub const TPM_ECC_NIST_P256: u16 = 0x0003;

/// TPMS_ATTEST of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub magic: u32,
    pub kind: u16,
    pub qualified_signer: Vec<u8>,
    pub extra_data: Vec<u8>,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
    pub firmware_version: u64,
    /// (hash algorithm, selected PCR indices in ascending order) per bank.
    pub pcr_select: Vec<(u16, Vec<u8>)>,
    pub pcr_digest: Vec<u8>,
}

pub fn parse_quote(bytes: &[u8]) -> Result<Quote, VerifyError> {
    let mut r = Reader::new(bytes, "TPMS_ATTEST");
    let magic = r.u32()?;
    let kind = r.u16()?;
    let qualified_signer = r.tpm2b()?.to_vec();
    let extra_data = r.tpm2b()?.to_vec();
    let clock = r.u64()?;
    let reset_count = r.u32()?;
    let restart_count = r.u32()?;
    let safe = r.u8()? != 0;
    let firmware_version = r.u64()?;
    if kind != TPM_ST_ATTEST_QUOTE {
        return Err(VerifyError::Malformed(format!(
            "TPMS_ATTEST: type 0x{kind:04x} is not a quote (0x8018)"
        )));
    }
    let count = r.u32()?;
    if count > 16 {
        return Err(VerifyError::Malformed(format!(
            "TPMS_ATTEST: {count} PCR banks selected"
        )));
    }
    let mut pcr_select = Vec::new();
    for _ in 0..count {
        let alg = r.u16()?;
        let size = r.u8()? as usize;
        let bitmap = r.bytes(size)?;
        let mut pcrs = Vec::new();
        for (byte_idx, byte) in bitmap.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    pcrs.push((byte_idx * 8 + bit) as u8);
                }
            }
        }
        pcr_select.push((alg, pcrs));
    }
    let pcr_digest = r.tpm2b()?.to_vec();
    r.finish()?;
    Ok(Quote {
        magic,
        kind,
        qualified_signer,
        extra_data,
        clock,
        reset_count,
        restart_count,
        safe,
        firmware_version,
        pcr_select,
        pcr_digest,
    })
}

/// TPMT_SIGNATURE, for the schemes an attestation key uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    Ecdsa { hash: u16, r: Vec<u8>, s: Vec<u8> },
    RsaSsa { hash: u16, sig: Vec<u8> },
    RsaPss { hash: u16, sig: Vec<u8> },
}

pub fn parse_signature(bytes: &[u8]) -> Result<Signature, VerifyError> {
    let mut r = Reader::new(bytes, "TPMT_SIGNATURE");
    let alg = r.u16()?;
    let hash = r.u16()?;
    let sig = match alg {
        TPM_ALG_ECDSA => Signature::Ecdsa {
            hash,
            r: r.tpm2b()?.to_vec(),
            s: r.tpm2b()?.to_vec(),
        },
        TPM_ALG_RSASSA => Signature::RsaSsa {
            hash,
            sig: r.tpm2b()?.to_vec(),
        },
        TPM_ALG_RSAPSS => Signature::RsaPss {
            hash,
            sig: r.tpm2b()?.to_vec(),
        },
        other => {
            return Err(VerifyError::Unsupported(format!(
                "signature algorithm 0x{other:04x} (supported: ECDSA, RSASSA, RSAPSS)"
            )))
        }
    };
    r.finish()?;
    Ok(sig)
}

/// The public key inside a TPMT_PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa { modulus: Vec<u8>, exponent: u32 },
    Ecc { curve: u16, x: Vec<u8>, y: Vec<u8> },
}

/// TPMT_PUBLIC, with the fields a verifier needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    pub name_alg: u16,
    pub attributes: u32,
    pub key: PublicKey,
    /// The symmetric algorithm of a storage key (AES-128-CFB for the EK): (alg, bits, mode).
    pub symmetric: Option<(u16, u16, u16)>,
}

/// Object attributes (Part 2, 8.3).
pub const ATTR_FIXED_TPM: u32 = 1 << 1;
pub const ATTR_FIXED_PARENT: u32 = 1 << 4;
pub const ATTR_SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
pub const ATTR_RESTRICTED: u32 = 1 << 16;
pub const ATTR_DECRYPT: u32 = 1 << 17;
pub const ATTR_SIGN: u32 = 1 << 18;

fn sym_def(r: &mut Reader<'_>) -> Result<Option<(u16, u16, u16)>, VerifyError> {
    let alg = r.u16()?;
    if alg == TPM_ALG_NULL {
        return Ok(None);
    }
    Ok(Some((alg, r.u16()?, r.u16()?)))
}

fn scheme(r: &mut Reader<'_>) -> Result<(), VerifyError> {
    match r.u16()? {
        TPM_ALG_NULL => {}
        TPM_ALG_ECDAA => {
            r.u16()?;
            r.u16()?;
        }
        _ => {
            r.u16()?;
        }
    }
    Ok(())
}

pub fn parse_public(bytes: &[u8]) -> Result<Public, VerifyError> {
    let mut r = Reader::new(bytes, "TPMT_PUBLIC");
    let kind = r.u16()?;
    let name_alg = r.u16()?;
    let attributes = r.u32()?;
    let _auth_policy = r.tpm2b()?;
    let (key, symmetric) = match kind {
        TPM_ALG_RSA => {
            let symmetric = sym_def(&mut r)?;
            scheme(&mut r)?;
            let _bits = r.u16()?;
            let exponent = match r.u32()? {
                0 => 65537,
                e => e,
            };
            let modulus = r.tpm2b()?.to_vec();
            (PublicKey::Rsa { modulus, exponent }, symmetric)
        }
        TPM_ALG_ECC => {
            let symmetric = sym_def(&mut r)?;
            scheme(&mut r)?;
            let curve = r.u16()?;
            scheme(&mut r)?; // KDF
            let x = r.tpm2b()?.to_vec();
            let y = r.tpm2b()?.to_vec();
            (PublicKey::Ecc { curve, x, y }, symmetric)
        }
        other => {
            return Err(VerifyError::Unsupported(format!(
                "public key type 0x{other:04x} (supported: RSA, ECC)"
            )))
        }
    };
    r.finish()?;
    Ok(Public {
        name_alg,
        attributes,
        key,
        symmetric,
    })
}

/// Digest of `data` with a TPM hash algorithm.
pub fn hash(alg: u16, data: &[u8]) -> Result<Vec<u8>, VerifyError> {
    Ok(match alg {
        TPM_ALG_SHA1 => {
            use sha1::Digest as _;
            sha1::Sha1::digest(data).to_vec()
        }
        TPM_ALG_SHA256 => Sha256::digest(data).to_vec(),
        TPM_ALG_SHA384 => Sha384::digest(data).to_vec(),
        TPM_ALG_SHA512 => sha2::Sha512::digest(data).to_vec(),
        other => {
            return Err(VerifyError::Unsupported(format!(
                "hash algorithm 0x{other:04x}"
            )))
        }
    })
}

/// The object's Name: nameAlg ‖ H_nameAlg(TPMT_PUBLIC).
pub fn name(public_bytes: &[u8]) -> Result<Vec<u8>, VerifyError> {
    let p = parse_public(public_bytes)?;
    let mut n = p.name_alg.to_be_bytes().to_vec();
    n.extend(hash(p.name_alg, public_bytes)?);
    Ok(n)
}

/// PCR digest of a quote: H(PCR values concatenated in selection order).
pub fn pcr_digest(alg: u16, values: &[&[u8]]) -> Result<Vec<u8>, VerifyError> {
    hash(alg, &values.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample_quote() -> Vec<u8> {
        let mut q = Vec::new();
        q.extend(TPM_GENERATED_VALUE.to_be_bytes());
        q.extend(TPM_ST_ATTEST_QUOTE.to_be_bytes());
        q.extend([0, 2, 0xAB, 0xCD]); // signer name
        q.extend([0, 3, 1, 2, 3]); // extra data
        q.extend(42u64.to_be_bytes());
        q.extend(1u32.to_be_bytes());
        q.extend(0u32.to_be_bytes());
        q.push(1);
        q.extend(7u64.to_be_bytes());
        q.extend(1u32.to_be_bytes());
        q.extend(TPM_ALG_SHA256.to_be_bytes());
        q.extend([3, 0x81, 0x08, 0x40]); // PCRs 0, 7, 11, 22
        q.extend([0, 32]);
        q.extend([9u8; 32]);
        q
    }

    #[test]
    fn quote_fields() {
        let q = parse_quote(&sample_quote()).unwrap();
        assert_eq!(q.magic, TPM_GENERATED_VALUE);
        assert_eq!(q.extra_data, [1, 2, 3]);
        assert_eq!(q.clock, 42);
        assert_eq!(q.pcr_select, vec![(TPM_ALG_SHA256, vec![0, 7, 11, 22])]);
        assert_eq!(q.pcr_digest, [9u8; 32]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let q = sample_quote();
        for cut in 0..q.len() {
            assert!(parse_quote(&q[..cut]).is_err());
        }
        let mut long = q.clone();
        long.push(0);
        assert!(parse_quote(&long)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
    }

    #[test]
    fn signature_and_public_reject_unknown_algorithms() {
        assert!(matches!(
            parse_signature(&[0, 0x99, 0, 0x0B]),
            Err(VerifyError::Unsupported(_))
        ));
        assert!(matches!(
            parse_public(&[0, 0x25, 0, 0x0B, 0, 0, 0, 0, 0, 0]),
            Err(VerifyError::Unsupported(_))
        ));
    }
}
