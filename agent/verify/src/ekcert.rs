//! EK certificate checks: the chain to CA certificates the caller trusts,
//! validity, and that the certificate's key is the EK that was quoted.
//!
//! TPM EK certificates are not TLS certificates (no host names, critical
//! TPM-specific SANs), so a TLS path validator would reject them; this
//! checks what matters for an EK: signatures up to a trusted anchor.

use der::{Decode, Encode};
use x509_cert::Certificate;

use crate::tpm::PublicKey;
use crate::VerifyError;

const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
const SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
/// At most this many certificates between the EK certificate and an anchor.
const MAX_CHAIN: usize = 8;

pub fn parse_der(der: &[u8]) -> Result<Certificate, VerifyError> {
    Certificate::from_der(der)
        .map_err(|e| VerifyError::Malformed(format!("X.509 certificate: {e}")))
}

/// Every certificate in PEM text (other blocks are ignored).
pub fn parse_pem_bundle(text: &str) -> Result<Vec<Certificate>, VerifyError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let after = &rest[start + 27..];
        let end = after
            .find("-----END CERTIFICATE-----")
            .ok_or_else(|| VerifyError::Malformed("PEM certificate without END line".into()))?;
        let b64: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        out.push(parse_der(&crate::format::unb64("PEM certificate", &b64)?)?);
        rest = &after[end..];
    }
    Ok(out)
}

/// Verify `child`'s signature with `issuer`'s public key (ring: constant
/// time, and an order of magnitude faster than pure-Rust big integers).
fn verify_signed_by(child: &Certificate, issuer: &Certificate) -> Result<(), String> {
    use ring::signature as sig;
    let tbs = child.tbs_certificate.to_der().map_err(|e| e.to_string())?;
    let signature = child
        .signature
        .as_bytes()
        .ok_or("signature is not a whole number of bytes")?;
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or("issuer key bit string")?;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string());
    let alg: &dyn sig::VerificationAlgorithm = match (
        child.signature_algorithm.oid.to_string().as_str(),
        curve.as_deref(),
    ) {
        (SHA256_WITH_RSA, _) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (SHA384_WITH_RSA, _) => &sig::RSA_PKCS1_2048_8192_SHA384,
        (SHA512_WITH_RSA, _) => &sig::RSA_PKCS1_2048_8192_SHA512,
        (ECDSA_SHA256, Some(P256)) => &sig::ECDSA_P256_SHA256_ASN1,
        (ECDSA_SHA384, Some(P256)) => &sig::ECDSA_P256_SHA384_ASN1,
        (ECDSA_SHA256, Some(P384)) => &sig::ECDSA_P384_SHA256_ASN1,
        (ECDSA_SHA384, Some(P384)) => &sig::ECDSA_P384_SHA384_ASN1,
        (other, curve) => {
            return Err(format!(
                "unsupported certificate signature algorithm {other} (issuer curve {curve:?})"
            ))
        }
    };
    sig::UnparsedPublicKey::new(alg, key)
        .verify(&tbs, signature)
        .map_err(|_| {
            "the certificate's signature does not verify with its issuer's key".to_string()
        })
}

pub fn validity_ok(c: &Certificate, now_unix: u64) -> Result<(), String> {
    let v = &c.tbs_certificate.validity;
    let nb = v.not_before.to_unix_duration().as_secs();
    let na = v.not_after.to_unix_duration().as_secs();
    if now_unix < nb {
        return Err(format!("not valid before {nb} (unix)"));
    }
    if now_unix > na {
        return Err(format!("expired at {na} (unix)"));
    }
    Ok(())
}

/// Check that `ek_cert` chains to one of `anchors` (each signature and
/// validity period on the way). Returns the anchor's subject.
pub fn verify_chain(
    ek_cert: &Certificate,
    anchors: &[Certificate],
    now_unix: u64,
) -> Result<String, String> {
    validity_ok(ek_cert, now_unix).map_err(|e| format!("EK certificate {e}"))?;
    let mut current = ek_cert;
    for _ in 0..MAX_CHAIN {
        let issuer_name = &current.tbs_certificate.issuer;
        let wanted_key = authority_key_id(current);
        let candidates: Vec<&Certificate> = anchors
            .iter()
            .filter(|a| &a.tbs_certificate.subject == issuer_name)
            // CAs may share a subject (every swtpm_localca is "swtpm-localca");
            // the key identifiers, where both certificates carry them, tell
            // which one signed, so only that one's signature is checked.
            .filter(|a| match (&wanted_key, subject_key_id(a)) {
                (Some(w), Some(k)) => *w == k,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "no trusted CA certificate has subject '{issuer_name}'"
            ));
        }
        let mut last_err = String::new();
        let mut next = None;
        for cand in candidates {
            match verify_signed_by(current, cand).and_then(|_| validity_ok(cand, now_unix)) {
                Ok(()) => {
                    next = Some(cand);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let issuer = next.ok_or_else(|| format!("signed by '{issuer_name}': {last_err}"))?;
        // A trusted certificate that is self-issued ends the chain; an
        // intermediate the caller trusts ends it too once its issuer is absent.
        if issuer.tbs_certificate.subject == issuer.tbs_certificate.issuer
            || !anchors
                .iter()
                .any(|a| a.tbs_certificate.subject == issuer.tbs_certificate.issuer)
        {
            return Ok(issuer.tbs_certificate.subject.to_string());
        }
        current = issuer;
    }
    Err(format!("chain longer than {MAX_CHAIN} certificates"))
}

fn authority_key_id(c: &Certificate) -> Option<Vec<u8>> {
    use x509_cert::ext::pkix::AuthorityKeyIdentifier;
    let (_, aki) = c.tbs_certificate.get::<AuthorityKeyIdentifier>().ok()??;
    aki.key_identifier.map(|k| k.as_bytes().to_vec())
}

fn subject_key_id(c: &Certificate) -> Option<Vec<u8>> {
    use x509_cert::ext::pkix::SubjectKeyIdentifier;
    let (_, ski) = c.tbs_certificate.get::<SubjectKeyIdentifier>().ok()??;
    Some(ski.0.as_bytes().to_vec())
}

/// Does the certificate certify this TPM public key?
pub fn certifies(cert: &Certificate, key: &PublicKey) -> Result<(), String> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or("certificate key bit string")?;
    match (spki.algorithm.oid.to_string().as_str(), key) {
        (RSA_ENCRYPTION, PublicKey::Rsa { modulus, exponent }) => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            use rsa::traits::PublicKeyParts;
            let k = rsa::RsaPublicKey::from_pkcs1_der(bits)
                .map_err(|e| format!("certificate RSA key: {e}"))?;
            let same = k.n().to_bytes_be() == strip_zeros(modulus)
                && k.e() == &rsa::BigUint::from(*exponent);
            same.then_some(())
                .ok_or_else(|| "certificate's RSA key is not the quoted EK".into())
        }
        (EC_PUBLIC_KEY, PublicKey::Ecc { x, y, .. }) => {
            // Uncompressed SEC1: 0x04 ‖ X ‖ Y.
            let half = bits.len().saturating_sub(1) / 2;
            let same = bits.first() == Some(&4)
                && strip_zeros(&bits[1..1 + half]) == strip_zeros(x)
                && strip_zeros(&bits[1 + half..]) == strip_zeros(y);
            same.then_some(())
                .ok_or_else(|| "certificate's EC key is not the quoted EK".into())
        }
        (alg, _) => Err(format!(
            "certificate key type {alg} does not match the EK's type"
        )),
    }
}

fn strip_zeros(v: &[u8]) -> Vec<u8> {
    let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    v[first..].to_vec()
}
