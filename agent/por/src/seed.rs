//! Seeds and nonces: 32 bytes a verifier chose, given as 64 hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::PorError;

/// 32 bytes from the verifier (a seed before the work, a nonce after the
/// commitment).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seed(pub [u8; 32]);

impl Seed {
    /// A value derived from this seed for one purpose (`label`) and one
    /// index: SHA-256(label || 0x00 || seed || index, little-endian).
    pub fn derive(&self, label: &str, index: u64) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update([0u8]);
        h.update(self.0);
        h.update(index.to_le_bytes());
        h.finalize().into()
    }
}

impl FromStr for Seed {
    type Err = PorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(PorError::Seed(format!(
                "expected 64 hex digits (32 bytes), got {} characters",
                s.len()
            )));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| PorError::Seed(format!("not hex: {e}")))?;
        Ok(Seed(out))
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seed({self})")
    }
}

impl Serialize for Seed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_hex() {
        let s = Seed([0x5a; 32]);
        assert_eq!(s.to_string(), "5a".repeat(32));
        assert_eq!(s.to_string().parse::<Seed>().unwrap(), s);
    }

    #[test]
    fn wrong_length_and_non_hex_are_refused() {
        let short = "ab".parse::<Seed>().unwrap_err();
        assert!(short.to_string().contains("64 hex digits"), "{short}");
        let bad = "zz".repeat(32).parse::<Seed>().unwrap_err();
        assert!(bad.to_string().contains("not hex"), "{bad}");
    }

    #[test]
    fn derivations_differ_by_label_and_index() {
        let s = Seed([7; 32]);
        assert_ne!(s.derive("a", 0), s.derive("b", 0));
        assert_ne!(s.derive("a", 0), s.derive("a", 1));
        assert_eq!(s.derive("a", 1), s.derive("a", 1));
    }
}
