//! A binary Merkle tree over 32-byte leaves: SHA-256 with the leaf and
//! inner-node prefixes of RFC 6962 (0x00, 0x01), so a leaf can never pass
//! for an inner node. A level with an odd count carries its last node up
//! unchanged (no duplication, which would let two leaf lists share a root).
//! The root does not commit to the leaf count: the verifier takes it from
//! the challenge's parameters, never from the prover.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The hash a leaf enters the tree as.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The leaf of a value at an index: `leaf_hash(index LE ‖ value)`.
pub fn indexed_leaf(index: u64, value: &Hash) -> Hash {
    let mut data = [0u8; 40];
    data[..8].copy_from_slice(&index.to_le_bytes());
    data[8..].copy_from_slice(value);
    leaf_hash(&data)
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Every level of the tree, leaves first, kept so any leaf can be opened.
#[derive(Debug, Clone)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

/// The sibling hashes from a leaf up to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    #[serde(with = "hex_hashes")]
    pub siblings: Vec<Hash>,
}

impl Tree {
    /// A tree over leaf hashes (see `leaf_hash`); None when there are none.
    pub fn new(leaves: Vec<Hash>) -> Option<Tree> {
        if leaves.is_empty() {
            return None;
        }
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let up = level
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [odd] => *odd,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(up);
        }
        Some(Tree { levels })
    }

    pub fn root(&self) -> Hash {
        self.levels[self.levels.len() - 1][0]
    }

    pub fn leaves(&self) -> usize {
        self.levels[0].len()
    }

    /// The proof for leaf `index`; None when out of range.
    pub fn prove(&self, mut index: usize) -> Option<Proof> {
        if index >= self.leaves() {
            return None;
        }
        let mut siblings = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = index ^ 1;
            if sibling < level.len() {
                siblings.push(level[sibling]);
            }
            index /= 2;
        }
        Some(Proof { siblings })
    }
}

/// Whether `leaf` (a leaf hash) is leaf `index` of the tree of `leaves`
/// leaves with this root. The proof must have exactly the siblings that
/// tree shape needs.
pub fn verify(root: &Hash, leaves: usize, mut index: usize, leaf: &Hash, proof: &Proof) -> bool {
    if index >= leaves {
        return false;
    }
    let mut width = leaves;
    let mut node = *leaf;
    let mut siblings = proof.siblings.iter();
    while width > 1 {
        let carried = index % 2 == 0 && index + 1 == width;
        if !carried {
            let Some(s) = siblings.next() else {
                return false;
            };
            node = if index % 2 == 0 {
                node_hash(&node, s)
            } else {
                node_hash(s, &node)
            };
        }
        index /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && node == *root
}

/// A list of hashes as hex strings in serde.
pub mod hex_hashes {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|h| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(h, &mut out).map_err(serde::de::Error::custom)?;
                Ok(out)
            })
            .collect()
    }
}

/// One hash as 64 hex digits in serde.
pub mod hex_hash {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let h = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&h, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u64).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    #[test]
    fn every_leaf_of_every_shape_proves_and_no_other_does() {
        for n in 1..=33 {
            let tree = Tree::new(leaves(n)).unwrap();
            for i in 0..n {
                let p = tree.prove(i).unwrap();
                let leaf = tree.levels[0][i];
                assert!(verify(&tree.root(), n, i, &leaf, &p), "n={n} i={i}");
                // Another leaf or another index: refused. (The leaf count is not
                // committed to: the verifier knows it from the parameters.)
                let other = leaf_hash(b"other");
                assert!(!verify(&tree.root(), n, i, &other, &p), "n={n} i={i}");
                if n > 1 {
                    assert!(!verify(&tree.root(), n, (i + 1) % n, &leaf, &p));
                }
            }
            assert!(tree.prove(n).is_none());
        }
    }

    #[test]
    fn a_proof_with_a_sibling_too_many_or_too_few_is_refused() {
        let tree = Tree::new(leaves(8)).unwrap();
        let leaf = tree.levels[0][3];
        let mut p = tree.prove(3).unwrap();
        p.siblings.push([0; 32]);
        assert!(!verify(&tree.root(), 8, 3, &leaf, &p));
        p.siblings.truncate(2);
        assert!(!verify(&tree.root(), 8, 3, &leaf, &p));
    }

    #[test]
    fn no_leaves_no_tree() {
        assert!(Tree::new(Vec::new()).is_none());
    }

    #[test]
    fn proofs_round_trip_through_json() {
        let tree = Tree::new(leaves(5)).unwrap();
        let p = tree.prove(4).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Proof>(&json).unwrap(), p);
    }
}
