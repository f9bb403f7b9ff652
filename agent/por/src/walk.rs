//! The timed walk the memory and storage challenges share: from a nonce
//! the prover could not predict, a chain of dependent reads whose every
//! step needs the data the claim is about. The prover commits to the
//! walk's state every segment; the verifier re-walks sampled segments.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{self, hex_hash, Hash, Proof, Tree};
use crate::{PorError, Seed};

/// The walk's first state: bound to the nonce and to the commitment the
/// walk reads from, so it cannot start before either is fixed.
pub(crate) fn start(label: &str, nonce: &Seed, root: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0u8]);
    h.update(nonce.0);
    h.update(root);
    h.finalize().into()
}

/// Which of `below` items a state reads.
pub(crate) fn index(state: &Hash, below: u64) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&state[..8]);
    u64::from_le_bytes(b) % below
}

/// The next state: the read data hashed after the state, so no part of
/// the hash can be computed before the state is known.
pub(crate) fn step(state: &Hash, data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(state);
    h.update(data);
    h.finalize().into()
}

fn leaf(segment: u64, state: &Hash) -> Hash {
    merkle::indexed_leaf(segment, state)
}

/// The tree over the committed states (the start first, the end last).
pub(crate) fn tree(states: &[Hash]) -> Tree {
    Tree::new(
        states
            .iter()
            .enumerate()
            .map(|(j, s)| leaf(j as u64, s))
            .collect(),
    )
    .unwrap_or_else(|| unreachable!("a walk has a start"))
}

/// The segments the verifier re-walks: drawn from the nonce and both
/// commitments, so they are fixed only once the walk is. `work` hashes in
/// a row stand between the commitments and the draw, so a prover that
/// tries walk commitments until the draw misses its made-up segments pays
/// `work` hashes a try (the verifier pays them once).
pub(crate) fn sampled(
    label: &str,
    nonce: &Seed,
    (root, walk_root): (&Hash, &Hash),
    samples: u32,
    segments: u64,
    work: u64,
) -> Vec<u64> {
    let mut bound: Hash = Sha256::digest([root.as_slice(), walk_root.as_slice()].concat()).into();
    for _ in 0..work {
        bound = Sha256::digest(bound).into();
    }
    (0..samples)
        .map(|k| crate::sample(label, nonce, &bound, k, segments))
        .collect()
}

/// A sampled segment's two committed states with their proofs in the
/// walk's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub segment: u64,
    #[serde(with = "hex_hash")]
    pub start: Hash,
    #[serde(with = "hex_hash")]
    pub end: Hash,
    pub start_proof: Proof,
    pub end_proof: Proof,
}

impl Segment {
    /// Segment `j` of the walk whose committed states are `states`.
    pub(crate) fn open(tree: &Tree, states: &[Hash], j: u64) -> Segment {
        let proof = |i: u64| {
            tree.prove(i as usize)
                .unwrap_or_else(|| unreachable!("a sampled segment is in the walk"))
        };
        Segment {
            segment: j,
            start: states[j as usize],
            end: states[j as usize + 1],
            start_proof: proof(j),
            end_proof: proof(j + 1),
        }
    }

    /// The segment is the sampled one `j` of `segments`, its states are in
    /// the walk's commitment, and the first and last segments meet the
    /// walk's start and end.
    pub(crate) fn check_place(
        &self,
        j: u64,
        segments: u64,
        walk_root: &Hash,
        first: &Hash,
        last: &Hash,
    ) -> Result<(), PorError> {
        let reject = |why: String| Err(PorError::Rejected(why));
        if self.segment != j {
            return reject(format!(
                "walk segment {} opened, the nonce sampled {j}",
                self.segment
            ));
        }
        let states = segments as usize + 1;
        let in_walk = |i: u64, s: &Hash, p: &Proof| {
            merkle::verify(walk_root, states, i as usize, &leaf(i, s), p)
        };
        if !in_walk(j, &self.start, &self.start_proof)
            || !in_walk(j + 1, &self.end, &self.end_proof)
        {
            return reject(format!(
                "walk segment {j}: a state is not in the walk's commitment"
            ));
        }
        if j == 0 && self.start != *first {
            return reject("the walk does not start from the nonce".into());
        }
        if j + 1 == segments && self.end != *last {
            return reject("the walk's last segment does not end at its end".into());
        }
        Ok(())
    }
}
