//! The node key: the 32-byte Ed25519 seed in `node.key`, the same key that
//! signs attestations, so the mesh PeerId is the attested one.

use std::path::Path;

use libp2p::identity::Keypair;

use crate::error::MeshError;

pub fn load_seed_file(path: &Path) -> Result<Keypair, MeshError> {
    let mut seed = std::fs::read(path)
        .map_err(|e| MeshError::Invalid(format!("reading the node key {}: {e}", path.display())))?;
    if seed.len() != 32 {
        return Err(MeshError::Invalid(format!(
            "{}: expected a 32-byte Ed25519 seed, found {} bytes",
            path.display(),
            seed.len()
        )));
    }
    Keypair::ed25519_from_bytes(&mut seed)
        .map_err(|e| MeshError::Invalid(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_file_gives_its_peer_id_and_a_short_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("xnode-mesh-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.key");
        std::fs::write(&path, [7u8; 32]).unwrap();
        let a = load_seed_file(&path).unwrap();
        let b = Keypair::ed25519_from_bytes([7u8; 32]).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        std::fs::write(&path, [7u8; 31]).unwrap();
        let err = load_seed_file(&path).unwrap_err().to_string();
        assert!(err.contains("32-byte"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
