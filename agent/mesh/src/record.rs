//! Service Mesh Worker records: what a provider offers under a service
//! name, signed by its node key, with an expiry.

use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::identity::Keypair;
use libp2p::kad::RecordKey;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Rejected;
use crate::resources::Resources;
use crate::signed;

pub const SCHEMA: &str = "xnode.mesh.service/v1";
/// A record lives at most a day; providers republish well before.
pub const MAX_TTL_SECS: u64 = 24 * 3600;
/// Clocks across the mesh may disagree this much.
pub const CLOCK_SKEW_SECS: u64 = 120;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", deny_unknown_fields)]
pub enum Visibility {
    /// Advertised in the DHT to everyone.
    Public,
    /// Never advertised; answered only to the peers listed.
    Private { allow: Vec<PeerId> },
}

/// A reference to the provider's latest attestation envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationRef {
    /// Hex SHA-256 of the envelope's exact bytes.
    pub sha256: String,
    pub time_unix: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    pub schema: String,
    pub service: String,
    pub version: String,
    pub provider: PeerId,
    pub endpoints: Vec<Multiaddr>,
    pub visibility: Visibility,
    pub needs: Resources,
    pub attestation: Option<AttestationRef>,
    pub issued_unix: u64,
    pub expires_unix: u64,
}

/// What a provider asks to publish; the node fills in the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    pub service: String,
    #[serde(default)]
    pub version: String,
    pub endpoints: Vec<Multiaddr>,
    #[serde(default = "public")]
    pub visibility: Visibility,
    #[serde(default)]
    pub needs: Resources,
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
}

fn public() -> Visibility {
    Visibility::Public
}

fn default_ttl() -> u64 {
    3600
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `[a-z0-9][a-z0-9._-]{0,63}`: names are DHT keys and CLI arguments.
pub fn check_service_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "service name {name:?}: use 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        ))
    }
}

fn key_of(parts: &[&[u8]]) -> RecordKey {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    RecordKey::new(&h.finalize().to_vec())
}

/// The DHT key providers of `service` announce under.
pub fn provider_key(service: &str) -> RecordKey {
    key_of(&[b"xnode/service/v1", service.as_bytes()])
}

/// The DHT key of one provider's signed record for `service`.
pub fn record_key(service: &str, provider: &PeerId) -> RecordKey {
    key_of(&[
        b"xnode/service-record/v1",
        service.as_bytes(),
        &provider.to_bytes(),
    ])
}

impl Offer {
    pub fn check(&self) -> Result<(), String> {
        check_service_name(&self.service)?;
        if self.endpoints.is_empty() {
            return Err("an offer needs at least one endpoint".into());
        }
        if self.ttl_secs == 0 || self.ttl_secs > MAX_TTL_SECS {
            return Err(format!(
                "ttl_secs {} is not in 1..={MAX_TTL_SECS}",
                self.ttl_secs
            ));
        }
        if self.version.len() > 64 {
            return Err("version: at most 64 characters".into());
        }
        Ok(())
    }

    pub fn into_record(
        self,
        provider: PeerId,
        attestation: Option<AttestationRef>,
        now: u64,
    ) -> ServiceRecord {
        ServiceRecord {
            schema: SCHEMA.into(),
            service: self.service,
            version: self.version,
            provider,
            endpoints: self.endpoints,
            visibility: self.visibility,
            needs: self.needs,
            attestation,
            issued_unix: now,
            expires_unix: now + self.ttl_secs,
        }
    }
}

impl ServiceRecord {
    pub fn seal(&self, key: &Keypair) -> Result<Vec<u8>, Rejected> {
        signed::seal(key, signed::SERVICE_RECORD, self)
    }

    pub fn is_private(&self) -> bool {
        matches!(self.visibility, Visibility::Private { .. })
    }

    pub fn allows(&self, peer: &PeerId) -> bool {
        match &self.visibility {
            Visibility::Public => true,
            Visibility::Private { allow } => *peer == self.provider || allow.contains(peer),
        }
    }
}

/// Open a record's envelope and check everything a reader must: the
/// signature, that the signer is the provider it names, the schema, the
/// name, the expiry, and (when given) the DHT key it was stored under.
pub fn verify(
    bytes: &[u8],
    stored_under: Option<&RecordKey>,
    now: u64,
) -> Result<ServiceRecord, Rejected> {
    let opened = signed::open::<ServiceRecord>(signed::SERVICE_RECORD, bytes)?;
    let r = opened.payload;
    if opened.signer != r.provider {
        return Err(Rejected::Forged(format!(
            "record names provider {} but is signed by {}",
            r.provider, opened.signer
        )));
    }
    if r.schema != SCHEMA {
        return Err(Rejected::Malformed(format!(
            "schema {:?}, expected {SCHEMA}",
            r.schema
        )));
    }
    check_service_name(&r.service).map_err(Rejected::Malformed)?;
    if r.expires_unix <= now {
        return Err(Rejected::Expired(format!(
            "record expired at {}",
            r.expires_unix
        )));
    }
    if r.issued_unix > now + CLOCK_SKEW_SECS
        || r.expires_unix - r.issued_unix.min(r.expires_unix) > MAX_TTL_SECS
    {
        return Err(Rejected::Malformed(
            "issued in the future or lives past the maximum TTL".into(),
        ));
    }
    if r.is_private() {
        return Err(Rejected::Forged(
            "a private record is never published".into(),
        ));
    }
    if let Some(key) = stored_under {
        if *key != record_key(&r.service, &r.provider) {
            return Err(Rejected::Forged(format!(
                "record for {:?} stored under another service's key",
                r.service
            )));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer {
            service: "hello-web".into(),
            version: "1.0".into(),
            endpoints: vec!["/ip4/10.0.0.1/tcp/8080".parse().unwrap()],
            visibility: Visibility::Public,
            needs: Resources::default(),
            ttl_secs: 600,
        }
    }

    #[test]
    fn a_sealed_record_verifies_under_its_key() {
        let key = Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let r = offer().into_record(me, None, 1000);
        let bytes = r.seal(&key).unwrap();
        let got = verify(&bytes, Some(&record_key("hello-web", &me)), 1001).unwrap();
        assert_eq!(got, r);
    }

    #[test]
    fn forged_expired_and_misplaced_records_are_refused() {
        let key = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        // Signed by another key than the provider it names.
        let forged = offer().into_record(me, None, 1000).seal(&other).unwrap();
        assert!(matches!(
            verify(&forged, None, 1001),
            Err(Rejected::Forged(_))
        ));
        // Expired.
        let bytes = offer().into_record(me, None, 1000).seal(&key).unwrap();
        assert!(matches!(
            verify(&bytes, None, 1600),
            Err(Rejected::Expired(_))
        ));
        // Stored under another service's key.
        let err = verify(&bytes, Some(&record_key("other", &me)), 1001).unwrap_err();
        assert!(matches!(err, Rejected::Forged(_)), "{err}");
        // A private record never belongs in the DHT.
        let mut private = offer();
        private.visibility = Visibility::Private { allow: vec![] };
        let bytes = private.into_record(me, None, 1000).seal(&key).unwrap();
        assert!(matches!(
            verify(&bytes, None, 1001),
            Err(Rejected::Forged(_))
        ));
    }

    #[test]
    fn names_and_offers_are_checked() {
        assert!(check_service_name("hello-web.v2").is_ok());
        for bad in ["", "Hello", "-x", "a b", &"x".repeat(65)] {
            assert!(check_service_name(bad).is_err(), "{bad:?}");
        }
        let mut o = offer();
        o.endpoints.clear();
        assert!(o.check().is_err());
        let mut o = offer();
        o.ttl_secs = MAX_TTL_SECS + 1;
        assert!(o.check().is_err());
    }

    #[test]
    fn keys_differ_per_service_and_provider() {
        let a = Keypair::generate_ed25519().public().to_peer_id();
        let b = Keypair::generate_ed25519().public().to_peer_id();
        assert_ne!(record_key("s", &a), record_key("s", &b));
        assert_ne!(record_key("s", &a), record_key("t", &a));
        assert_ne!(provider_key("s"), record_key("s", &a));
    }
}
