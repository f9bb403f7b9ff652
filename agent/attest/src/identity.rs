//! The node's identity: an Ed25519 key created once, stored with 0600
//! permissions, never printed. Its public key is the node's libp2p PeerId.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use rand_core::OsRng;

use crate::{files, AttestError};

pub const KEY_FILE: &str = "node.key";

pub struct NodeIdentity {
    key: SigningKey,
    path: PathBuf,
}

impl std::fmt::Debug for NodeIdentity {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("peer_id", &self.peer_id())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Load the key from `state_dir/node.key`, creating it on first use.
    /// A corrupted file is an error and is never overwritten.
    pub fn load_or_create(state_dir: &Path) -> Result<(NodeIdentity, bool), AttestError> {
        let path = state_dir.join(KEY_FILE);
        match files::read_optional(&path)? {
            Some(bytes) => {
                let seed: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| AttestError::Corrupted {
                            path: path.clone(),
                            why: format!(
                                "expected a 32-byte Ed25519 seed, found {} bytes",
                                bytes.len()
                            ),
                            consequence: "a new key gives the node a new PeerId",
                        })?;
                Ok((
                    NodeIdentity {
                        key: SigningKey::from_bytes(&seed),
                        path,
                    },
                    false,
                ))
            }
            None => {
                let key = SigningKey::generate(&mut OsRng);
                files::write_private(&path, key.as_bytes())?;
                Ok((NodeIdentity { key, path }, true))
            }
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The libp2p PeerId of this key.
    pub fn peer_id(&self) -> String {
        libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.public_key())
            .map(|pk| {
                libp2p_identity::PeerId::from_public_key(&libp2p_identity::PublicKey::from(pk))
                    .to_string()
            })
            .unwrap_or_else(|_| unreachable!("a dalek verifying key is a valid Ed25519 point"))
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = NodeIdentity::load_or_create(dir.path()).unwrap();
        assert!(created);
        let (b, created) = NodeIdentity::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a.peer_id(), b.peer_id());
        assert!(!format!("{a:?}").contains(&hex::encode(a.key.as_bytes())));
    }

    #[test]
    fn peer_id_agrees_with_the_verifiers_own_derivation() {
        // Two implementations: libp2p-identity here, hand-written in xnode-verify.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let (id, _) = NodeIdentity::load_or_create(dir.path()).unwrap();
            assert_eq!(
                id.peer_id(),
                xnode_verify::format::peer_id(&id.public_key())
            );
        }
    }

    #[test]
    fn corrupted_key_is_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(KEY_FILE);
        std::fs::write(&p, b"torn").unwrap();
        let err = NodeIdentity::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("corrupted") && err.contains("found 4 bytes"),
            "{err}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"torn");
    }
}
