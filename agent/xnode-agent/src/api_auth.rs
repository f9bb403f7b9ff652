//! Authentication of the local API over TCP: each request carries an
//! Ed25519 signature over its method, path, an expiry and a nonce. A
//! signature is good once (the nonce is remembered until the expiry) and
//! for at most `MAX_LIFETIME`, so a captured request cannot be replayed.
//!
//! `Authorization: Xnode-Ed25519 key=<hex>,expires=<unix>,nonce=<hex>,sig=<hex>`
//! signs `xnode-api/v1\n<METHOD>\n<path?query>\n<expires>\n<nonce>`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

pub const SCHEME: &str = "Xnode-Ed25519";
/// The longest a signed request may stay valid.
pub const MAX_LIFETIME_SECS: u64 = 300;

fn message(method: &str, path: &str, expires: u64, nonce: &str) -> Vec<u8> {
    format!("xnode-api/v1\n{method}\n{path}\n{expires}\n{nonce}").into_bytes()
}

/// The Authorization header value for one request.
pub fn sign(key: &SigningKey, method: &str, path: &str, now: u64) -> String {
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let nonce = hex::encode(nonce);
    let expires = now + 60;
    let sig = key.sign(&message(method, path, expires, &nonce));
    format!(
        "{SCHEME} key={},expires={expires},nonce={nonce},sig={}",
        hex::encode(key.verifying_key().to_bytes()),
        hex::encode(sig.to_bytes())
    )
}

/// A signing key from a file holding the 32-byte seed (the node key
/// format: `xnode-agent identity --state-dir DIR` makes `DIR/node.key`).
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "{}: {} bytes, expected a 32-byte Ed25519 seed",
            path.display(),
            bytes.len()
        )
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The keys allowed to use the API, and the nonces already used.
#[derive(Debug)]
pub struct Authorizer {
    keys: BTreeSet<[u8; 32]>,
    seen: Mutex<HashMap<String, u64>>,
}

impl Authorizer {
    /// One hex Ed25519 public key per line; `#` comments and blank lines
    /// are ignored.
    pub fn from_file(path: &Path) -> anyhow::Result<Authorizer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the API's authorized keys {}", path.display()))?;
        let mut keys = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let key = hex::decode(line)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .filter(|k| VerifyingKey::from_bytes(k).is_ok())
                .with_context(|| {
                    format!(
                        "{}:{}: not a hex Ed25519 public key (64 hex digits)",
                        path.display(),
                        i + 1
                    )
                })?;
            keys.insert(key);
        }
        if keys.is_empty() {
            anyhow::bail!(
                "{}: no keys: the TCP API would refuse everyone",
                path.display()
            );
        }
        Ok(Authorizer {
            keys,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Check one request's header; Err says why it is refused.
    pub fn check(
        &self,
        header: Option<&str>,
        method: &str,
        path: &str,
        now: u64,
    ) -> Result<(), String> {
        let header = header.ok_or("no Authorization header")?;
        let fields = header
            .strip_prefix(SCHEME)
            .map(str::trim)
            .ok_or_else(|| format!("the Authorization scheme is not {SCHEME}"))?;
        let mut map = HashMap::new();
        for part in fields.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or("malformed Authorization field")?;
            map.insert(k, v);
        }
        let get = |k: &str| {
            map.get(k)
                .copied()
                .ok_or(format!("Authorization lacks {k}"))
        };
        let key: [u8; 32] = hex::decode(get("key")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("bad key")?;
        if !self.keys.contains(&key) {
            return Err("key not authorized".into());
        }
        let expires: u64 = get("expires")?.parse().map_err(|_| "bad expires")?;
        if expires <= now {
            return Err("the signature has expired".into());
        }
        if expires > now + MAX_LIFETIME_SECS {
            return Err(format!(
                "the signature is valid for more than {MAX_LIFETIME_SECS} s"
            ));
        }
        let nonce = get("nonce")?;
        if nonce.len() < 16 || nonce.len() > 64 || hex::decode(nonce).is_err() {
            return Err("bad nonce: 8 to 32 bytes of hex".into());
        }
        let sig: [u8; 64] = hex::decode(get("sig")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("bad sig")?;
        let vk = VerifyingKey::from_bytes(&key).map_err(|_| "bad key")?;
        vk.verify(
            &message(method, path, expires, nonce),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .map_err(|_| "bad signature")?;
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| "internal error: nonce cache poisoned")?;
        seen.retain(|_, exp| *exp > now);
        if seen.insert(nonce.to_string(), expires).is_some() {
            return Err("replayed request (nonce already used)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn setup() -> (SigningKey, Authorizer, tempfile::TempDir) {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(
            &path,
            format!(
                "# operators\n{}\n",
                hex::encode(key.verifying_key().to_bytes())
            ),
        )
        .unwrap();
        (key, Authorizer::from_file(&path).unwrap(), dir)
    }

    #[test]
    fn a_signed_request_passes_once() {
        let (key, auth, _d) = setup();
        let h = sign(&key, "GET", "/v1/status", 1000);
        assert_eq!(auth.check(Some(&h), "GET", "/v1/status", 1000), Ok(()));
        assert_eq!(
            auth.check(Some(&h), "GET", "/v1/status", 1001),
            Err("replayed request (nonce already used)".into())
        );
    }

    #[test]
    fn refusals_say_why() {
        let (key, auth, _d) = setup();
        let h = sign(&key, "GET", "/v1/status", 1000);
        assert_eq!(
            auth.check(Some(&h), "GET", "/v1/attestation", 1000),
            Err("bad signature".into())
        );
        assert_eq!(
            auth.check(Some(&h), "GET", "/v1/status", 1061),
            Err("the signature has expired".into())
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let h = sign(&other, "GET", "/v1/status", 1000);
        assert_eq!(
            auth.check(Some(&h), "GET", "/v1/status", 1000),
            Err("key not authorized".into())
        );
        assert_eq!(
            auth.check(None, "GET", "/", 0),
            Err("no Authorization header".into())
        );
        assert!(auth
            .check(Some("Bearer abc"), "GET", "/", 0)
            .unwrap_err()
            .contains("scheme"));
        // A far-future expiry would make a long-lived token: refused.
        let far = sign(&key, "GET", "/v1/status", 100_000);
        assert!(auth
            .check(Some(&far), "GET", "/v1/status", 1000)
            .unwrap_err()
            .contains("more than"));
    }

    #[test]
    fn key_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "not-a-key\n").unwrap();
        let e = Authorizer::from_file(&p).unwrap_err().to_string();
        assert!(e.contains(":1: not a hex Ed25519 public key"), "{e}");
        std::fs::write(&p, "# nobody\n").unwrap();
        assert!(Authorizer::from_file(&p)
            .unwrap_err()
            .to_string()
            .contains("no keys"));
    }
}
