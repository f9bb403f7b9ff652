//! Per-block data-source assignment: a pure function of the block hash,
//! the active nodes and the source registry, so any node or observer can
//! compute it (`xnode-agent chain assignment` does).
//!
//! Both lists are sorted, then each is shuffled (Fisher-Yates) by its own
//! stream of `SHA-256(domain ‖ block hash ‖ list tag ‖ counter)`, and the
//! i-th node gets the i-th source. Every node gets a different source;
//! when there are more nodes than sources, the nodes shuffled past the
//! end get none that block, and shuffling nodes too makes that fall on
//! different nodes each block.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

pub const ASSIGN_DOMAIN: &[u8] = b"xnode-chain/assign/v1\0";

struct Stream {
    seed: Vec<u8>,
    counter: u64,
}

impl Stream {
    fn new(block_hash: &[u8], tag: &[u8]) -> Stream {
        let mut seed = ASSIGN_DOMAIN.to_vec();
        seed.extend_from_slice(block_hash);
        seed.extend_from_slice(tag);
        Stream { seed, counter: 0 }
    }

    /// Uniform in `0..n` (n ≥ 1), by the widening multiply: the bias is
    /// below n/2^64, and every validator draws the same value.
    fn below(&mut self, n: usize) -> usize {
        let mut h = Sha256::new();
        h.update(&self.seed);
        h.update(self.counter.to_be_bytes());
        self.counter += 1;
        let d = h.finalize();
        let mut x = [0u8; 8];
        x.copy_from_slice(&d[..8]);
        ((u128::from(u64::from_be_bytes(x)) * n as u128) >> 64) as usize
    }
}

fn shuffled<T: Ord + Clone>(items: impl IntoIterator<Item = T>, stream: &mut Stream) -> Vec<T> {
    let mut v: Vec<T> = items.into_iter().collect();
    v.sort();
    for i in (1..v.len()).rev() {
        let j = stream.below(i + 1);
        v.swap(i, j);
    }
    v
}

/// Node key → source id for the block with `block_hash`.
pub fn assign<'a>(
    block_hash: &[u8],
    active_nodes: impl IntoIterator<Item = &'a str>,
    sources: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, String> {
    let nodes = shuffled(active_nodes, &mut Stream::new(block_hash, b"nodes"));
    let sources = shuffled(sources, &mut Stream::new(block_hash, b"sources"));
    nodes
        .into_iter()
        .zip(sources)
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_gets_a_different_source_and_all_agree() {
        let nodes = ["n1", "n2", "n3", "n4"];
        let sources = ["a", "b", "c", "d", "e"];
        let a = assign(&[7; 32], nodes, sources);
        assert_eq!(a.len(), 4);
        let mut used: Vec<_> = a.values().collect();
        used.sort();
        used.dedup();
        assert_eq!(used.len(), 4, "{a:?}");
        // Input order does not matter: validators may hold them in any.
        let b = assign(
            &[7; 32],
            ["n4", "n2", "n3", "n1"],
            ["e", "d", "c", "b", "a"],
        );
        assert_eq!(a, b);
    }

    #[test]
    fn block_hashes_move_the_assignment() {
        let nodes = ["n1", "n2", "n3", "n4"];
        let sources = ["a", "b", "c", "d"];
        let distinct: std::collections::BTreeSet<_> = (0u8..32)
            .map(|i| assign(&[i; 32], nodes, sources))
            .collect();
        // 24 permutations; 32 blocks land on many of them.
        assert!(distinct.len() >= 10, "{}", distinct.len());
    }

    #[test]
    fn more_nodes_than_sources_leaves_different_nodes_out() {
        let nodes = ["n1", "n2", "n3", "n4", "n5"];
        let mut left_out = std::collections::BTreeSet::new();
        for i in 0u8..40 {
            let a = assign(&[i; 32], nodes, ["a", "b"]);
            assert_eq!(a.len(), 2);
            for n in nodes {
                if !a.contains_key(n) {
                    left_out.insert(n);
                }
            }
        }
        assert_eq!(left_out.len(), 5);
        assert!(assign(&[0; 32], nodes, []).is_empty());
    }
}
