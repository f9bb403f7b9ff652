//! Memory bandwidth: timed passes that read the whole committed table,
//! after the nonce. The walk proves the table is held; the sweep shows
//! how fast it streams.
//!
//! A pass folds each chunk of the table (64 entries, 2 KiB, 256 words)
//! with a key of 256 words: `fold = XOR over i of (w_i + k_i mod 2^64)`,
//! where `w_i` is the chunk's i-th little-endian 64-bit word. Nobody can
//! compute a fold without every word of the chunk, and the key is new for
//! every pass: pass `p`'s key comes from the nonce and the root of pass
//! `p - 1` (the first pass's from the walk's last state, so the sweep
//! follows the walk). No pass can start before the one before it has
//! committed to a fold of every chunk, and a fold of a chunk not read is
//! made up, which the samples catch: `passes` passes cost `passes` reads
//! of the table. The fold
//! is two vector instructions a word, well under what a memory read
//! costs, so an honest pass runs at the rate memory streams.
//!
//! Each pass commits to its folds: a leaf holds the folds of `GROUP`
//! chunks of one lane, each lane's thread builds a tree over its leaves,
//! and the pass's root is a tree over the lanes' roots. The verifier
//! samples (pass, chunk) pairs once every root is fixed, opens each
//! sampled chunk against the table's root, re-computes its fold with the
//! pass's key, and checks the fold's leaf against the pass's root.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{self, hex_hash, hex_hashes, Hash, Proof, Tree};
use crate::{PorError, Seed};

const KEY_LABEL: &str = "xnode-por/mem/sweep-key";
const SAMPLE_LABEL: &str = "xnode-por/mem/sweep-sample";

/// Table entries in a chunk: the unit a fold covers and the verifier
/// opens (the memory table's bottom subtree).
pub const CHUNK_ENTRIES: usize = 64;
/// 64-bit words in a chunk, and in a pass's key.
pub const WORDS: usize = CHUNK_ENTRIES * 4;
/// Chunk folds in one leaf of a pass's tree: the tree costs a pass one
/// leaf hash per 64 KiB read.
pub const GROUP: u64 = 32;

pub type Key = [u64; WORDS];

/// How the table is laid out: lanes of whole chunks, each swept by its
/// own thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub lanes: u32,
    pub chunks_per_lane: u64,
}

impl Shape {
    pub fn chunks(&self) -> u64 {
        u64::from(self.lanes) * self.chunks_per_lane
    }

    fn groups_per_lane(&self) -> u64 {
        self.chunks_per_lane.div_ceil(GROUP)
    }

    /// The chunks of a lane's group `group`: (first, count).
    fn group_span(&self, group: u64) -> (u64, u64) {
        let first = group * GROUP;
        (first, GROUP.min(self.chunks_per_lane - first))
    }
}

/// Pass `pass`'s key: from the nonce, the table's root and the root of
/// the pass before (for the first pass, the walk's last state).
pub fn key(nonce: &Seed, table_root: &Hash, pass: u32, previous: &Hash) -> Box<Key> {
    let mut key = Box::new([0u64; WORDS]);
    for (block, words) in key.chunks_mut(4).enumerate() {
        let mut h = Sha256::new();
        h.update(KEY_LABEL.as_bytes());
        h.update([0u8]);
        h.update(nonce.0);
        h.update(table_root);
        h.update(pass.to_le_bytes());
        h.update(previous);
        h.update((block as u32).to_le_bytes());
        let d = h.finalize();
        for (w, bytes) in words.iter_mut().zip(d.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            *w = u64::from_le_bytes(b);
        }
    }
    key
}

/// The fold of one chunk under a key. Eight accumulators, XORed at the
/// end, let the compiler keep the loop in vector registers.
pub fn fold(chunk: &[Hash], key: &Key) -> u64 {
    let mut acc = [0u64; 8];
    for (j, (entry, k)) in chunk.iter().zip(key.chunks_exact(4)).enumerate() {
        for w in 0..4 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&entry[8 * w..8 * w + 8]);
            acc[(4 * j + w) % 8] ^= u64::from_le_bytes(b).wrapping_add(k[w]);
        }
    }
    acc.iter().fold(0, |a, x| a ^ x)
}

/// A leaf of a pass's tree: the folds of one group of a lane.
fn leaf(pass: u32, lane: u32, group: u64, folds: &[u64]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(pass.to_le_bytes());
    h.update(lane.to_le_bytes());
    h.update(group.to_le_bytes());
    for f in folds {
        h.update(f.to_le_bytes());
    }
    h.finalize().into()
}

/// The folds of a lane's group `group` in a pass, from the table.
fn group_folds(table: &[Hash], shape: Shape, key: &Key, lane: u32, group: u64) -> Vec<u64> {
    let (first, count) = shape.group_span(group);
    let base = (u64::from(lane) * shape.chunks_per_lane + first) as usize * CHUNK_ENTRIES;
    table[base..base + count as usize * CHUNK_ENTRIES]
        .chunks_exact(CHUNK_ENTRIES)
        .map(|c| fold(c, key))
        .collect()
}

/// One pass as the prover keeps it: its key and its trees, so sampled
/// folds can be opened later (the folds themselves are re-computed then).
#[derive(Debug)]
struct Pass {
    key: Box<Key>,
    lanes: Vec<Tree>,
    top: Tree,
}

/// The sweep as the prover keeps it.
#[derive(Debug)]
pub struct Sweep {
    shape: Shape,
    passes: Vec<Pass>,
}

/// What a sweep answers: the nonce, the table's root, and the value the
/// first pass's key follows (the walk's last state).
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    pub nonce: &'a Seed,
    pub table_root: &'a Hash,
    pub after: &'a Hash,
}

/// Sweep `table` (laid out as `shape`) `passes` times, one thread per
/// lane. `progress` counts chunks folded, a lane's share of a pass at a
/// time.
pub fn run(
    table: &[Hash],
    shape: Shape,
    start: Start,
    passes: u32,
    progress: &std::sync::atomic::AtomicU64,
) -> Sweep {
    let Start {
        nonce,
        table_root,
        after,
    } = start;
    let mut done: Vec<Pass> = Vec::with_capacity(passes as usize);
    let lane_entries = shape.chunks_per_lane as usize * CHUNK_ENTRIES;
    for pass in 0..passes {
        let previous = done.last().map_or(*after, |p| p.top.root());
        let key = key(nonce, table_root, pass, &previous);
        let lanes: Vec<Tree> = std::thread::scope(|s| {
            let workers: Vec<_> = table
                .chunks(lane_entries)
                .enumerate()
                .map(|(lane, part)| {
                    let key = &key;
                    s.spawn(move || {
                        let lane = lane as u32;
                        let leaves = part
                            .chunks(GROUP as usize * CHUNK_ENTRIES)
                            .enumerate()
                            .map(|(g, span)| {
                                let folds: Vec<u64> = span
                                    .chunks_exact(CHUNK_ENTRIES)
                                    .map(|c| fold(c, key))
                                    .collect();
                                leaf(pass, lane, g as u64, &folds)
                            })
                            .collect();
                        progress
                            .fetch_add(shape.chunks_per_lane, std::sync::atomic::Ordering::Relaxed);
                        Tree::new(leaves).unwrap_or_else(|| unreachable!("a lane has a chunk"))
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let top = Tree::new(lanes.iter().map(Tree::root).collect())
            .unwrap_or_else(|| unreachable!("a table has a lane"));
        done.push(Pass { key, lanes, top });
    }
    Sweep {
        shape,
        passes: done,
    }
}

/// The (pass, chunk) pairs the verifier re-computes: drawn from the nonce
/// and every pass's root, so they are fixed only once the last pass is.
pub fn sampled(nonce: &Seed, roots: &[Hash], shape: Shape, samples: u32) -> Vec<(u32, u64)> {
    let bound: Hash = Sha256::digest(roots.concat()).into();
    let chunks = shape.chunks();
    (0..samples)
        .map(|k| {
            let pick = crate::sample(SAMPLE_LABEL, nonce, &bound, k, roots.len() as u64 * chunks);
            ((pick / chunks) as u32, pick % chunks)
        })
        .collect()
}

/// A sampled fold: the chunk's entries with the chunk's proof in the
/// table's tree, and its group's folds with their proofs in the pass's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepOpening {
    pub pass: u32,
    pub chunk: u64,
    #[serde(with = "hex_hashes")]
    pub entries: Vec<Hash>,
    pub chunk_proof: Proof,
    /// The folds of the chunk's group, in order.
    pub folds: Vec<u64>,
    pub group_proof: Proof,
    #[serde(with = "hex_hash")]
    pub lane_root: Hash,
    pub lane_proof: Proof,
}

impl Sweep {
    pub fn roots(&self) -> Vec<Hash> {
        self.passes.iter().map(|p| p.top.root()).collect()
    }

    /// Open the sampled folds. `open_chunk` gives a chunk's entries and
    /// their proof in the table's tree.
    pub fn open(
        &self,
        table: &[Hash],
        nonce: &Seed,
        samples: u32,
        open_chunk: &dyn Fn(u64) -> (Vec<Hash>, Proof),
    ) -> Vec<SweepOpening> {
        let shape = self.shape;
        sampled(nonce, &self.roots(), shape, samples)
            .into_iter()
            .map(|(p, chunk)| {
                let pass = &self.passes[p as usize];
                let lane = (chunk / shape.chunks_per_lane) as u32;
                let group = chunk % shape.chunks_per_lane / GROUP;
                let (entries, chunk_proof) = open_chunk(chunk);
                let tree = &pass.lanes[lane as usize];
                SweepOpening {
                    pass: p,
                    chunk,
                    entries,
                    chunk_proof,
                    folds: group_folds(table, shape, &pass.key, lane, group),
                    group_proof: tree
                        .prove(group as usize)
                        .unwrap_or_else(|| unreachable!("a group inside its lane")),
                    lane_root: tree.root(),
                    lane_proof: pass
                        .top
                        .prove(lane as usize)
                        .unwrap_or_else(|| unreachable!("a lane inside the table")),
                }
            })
            .collect()
    }
}

/// Check a sweep's openings against its roots. `chunk_in_table` checks a
/// chunk's entries and proof against the table's root.
pub fn check(
    roots: &[Hash],
    openings: &[SweepOpening],
    (shape, passes, samples): (Shape, u32, u32),
    start: Start,
    chunk_in_table: &dyn Fn(u64, &[Hash], &Proof) -> bool,
) -> Result<(), PorError> {
    let Start {
        nonce,
        table_root,
        after,
    } = start;
    let reject = |why: String| Err(PorError::Rejected(why));
    if passes == 0 || shape.chunks() == 0 {
        return Err(PorError::Params(
            "a sweep needs at least one pass over at least one chunk".into(),
        ));
    }
    if roots.len() != passes as usize {
        return reject(format!(
            "the sweep commits to {} passes, the challenge asks for {passes}",
            roots.len()
        ));
    }
    let want = sampled(nonce, roots, shape, samples);
    if openings.len() != want.len() {
        return reject(format!(
            "{} sweep folds opened, {} sampled",
            openings.len(),
            want.len()
        ));
    }
    for (o, (p, chunk)) in openings.iter().zip(want) {
        if (o.pass, o.chunk) != (p, chunk) {
            return reject(format!(
                "sweep: opened pass {} chunk {}, the sample is pass {p} chunk {chunk}",
                o.pass, o.chunk
            ));
        }
        if o.entries.len() != CHUNK_ENTRIES || !chunk_in_table(chunk, &o.entries, &o.chunk_proof) {
            return reject(format!(
                "sweep pass {p}: chunk {chunk} is not in the table's commitment"
            ));
        }
        let lane = (chunk / shape.chunks_per_lane) as u32;
        let group = chunk % shape.chunks_per_lane / GROUP;
        let (first, count) = shape.group_span(group);
        if o.folds.len() as u64 != count {
            return reject(format!(
                "sweep pass {p}: {} folds in chunk {chunk}'s group, not {count}",
                o.folds.len()
            ));
        }
        let previous = if p == 0 {
            *after
        } else {
            roots[p as usize - 1]
        };
        let key = key(nonce, table_root, p, &previous);
        let at = (chunk % shape.chunks_per_lane - first) as usize;
        if o.folds[at] != fold(&o.entries, &key) {
            return reject(format!(
                "sweep pass {p}: chunk {chunk}'s fold is not the chunk's (the pass did not read it)"
            ));
        }
        let in_lane = merkle::verify(
            &o.lane_root,
            shape.groups_per_lane() as usize,
            group as usize,
            &leaf(p, lane, group, &o.folds),
            &o.group_proof,
        );
        let lane_in_pass = merkle::verify(
            &roots[p as usize],
            shape.lanes as usize,
            lane as usize,
            &o.lane_root,
            &o.lane_proof,
        );
        if !in_lane || !lane_in_pass {
            return reject(format!(
                "sweep pass {p}: chunk {chunk}'s fold is not in the pass's commitment"
            ));
        }
    }
    Ok(())
}

/// Hashes the prover makes for a sweep beyond reading: keys, leaves and
/// trees.
pub fn prover_hashes(shape: Shape, passes: u32) -> u64 {
    let groups = u64::from(shape.lanes) * shape.groups_per_lane();
    u64::from(passes) * (64 + 2 * groups + u64::from(shape.lanes))
}

/// Hashes the verifier makes: per sample, the chunk's subtree and path,
/// the pass's key, the group's leaf and its two paths.
pub fn verifier_hashes(shape: Shape, samples: u32) -> u64 {
    let depth = |n: u64| u64::from(64 - n.leading_zeros());
    let per_sample = 2 * CHUNK_ENTRIES as u64
        + depth(shape.chunks())
        + 64
        + GROUP / 4
        + depth(shape.groups_per_lane())
        + depth(u64::from(shape.lanes));
    u64::from(samples) * per_sample
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// 4 lanes of 40 chunks (the last group of each lane is partial): 320
    /// KiB, swept 3 times.
    const SHAPE: Shape = Shape {
        lanes: 4,
        chunks_per_lane: 40,
    };
    const PASSES: u32 = 3;
    const SAMPLES: u32 = 32;
    const ROOT: Hash = [0x5a; 32];
    const WALK_END: Hash = [0xa5; 32];

    fn start(nonce: &Seed) -> Start<'_> {
        Start {
            nonce,
            table_root: &ROOT,
            after: &WALK_END,
        }
    }

    fn table() -> Vec<Hash> {
        let seed = Seed([7; 32]);
        (0..SHAPE.chunks() * CHUNK_ENTRIES as u64)
            .map(|i| seed.derive("table", i))
            .collect()
    }

    fn nonce(i: u64) -> Seed {
        Seed(Seed([9; 32]).derive("sweep test nonce", i))
    }

    /// Open `sweep`, whose folds the prover computed from `folded`, with
    /// the true table's entries.
    fn open(sweep: &Sweep, folded: &[Hash], table: &[Hash], n: &Seed) -> Vec<SweepOpening> {
        sweep.open(folded, n, SAMPLES, &|c| {
            let first = c as usize * CHUNK_ENTRIES;
            (
                table[first..first + CHUNK_ENTRIES].to_vec(),
                Proof { siblings: vec![] },
            )
        })
    }

    fn check_against(
        table: &[Hash],
        roots: &[Hash],
        o: &[SweepOpening],
        n: &Seed,
    ) -> Result<(), PorError> {
        check(
            roots,
            o,
            (SHAPE, PASSES, SAMPLES),
            start(n),
            &|c, entries, _| {
                let first = c as usize * CHUNK_ENTRIES;
                entries == &table[first..first + CHUNK_ENTRIES]
            },
        )
    }

    #[test]
    fn the_fold_is_the_xor_of_each_word_plus_its_key_word() {
        let table = table();
        let key = key(&nonce(0), &ROOT, 0, &WALK_END);
        let chunk = &table[..CHUNK_ENTRIES];
        let bytes: Vec<u8> = chunk.concat();
        let by_definition = bytes
            .chunks_exact(8)
            .zip(key.iter())
            .map(|(w, k)| u64::from_le_bytes(w.try_into().unwrap()).wrapping_add(*k))
            .fold(0, |a, x| a ^ x);
        assert_eq!(fold(chunk, &key), by_definition);
        // Every word counts, and every key word.
        let mut other = chunk.to_vec();
        other[63][31] ^= 0x80;
        assert_ne!(fold(&other, &key), by_definition);
        let mut k2 = key.clone();
        k2[0] ^= 1;
        assert_ne!(fold(chunk, &k2), by_definition);
    }

    #[test]
    fn an_honest_sweep_passes_every_nonce() {
        let table = table();
        for i in 0..100 {
            let n = nonce(i);
            let progress = AtomicU64::new(0);
            let sweep = run(&table, SHAPE, start(&n), PASSES, &progress);
            assert_eq!(
                progress.load(std::sync::atomic::Ordering::Relaxed),
                u64::from(PASSES) * SHAPE.chunks()
            );
            let roots = sweep.roots();
            assert_eq!(roots.len(), PASSES as usize);
            check_against(&table, &roots, &open(&sweep, &table, &table, &n), &n).unwrap();
        }
    }

    /// Which chunks a cheating node does not read.
    type Skips = Box<dyn Fn(u64) -> bool>;

    #[test]
    fn a_sweep_that_skips_half_the_chunks_fails_every_time() {
        // The node folds made-up data for the chunks it does not read (it
        // cannot know their folds otherwise) and commits to those folds.
        let table = table();
        let per_lane = SHAPE.chunks_per_lane;
        let seed = Seed([3; 32]);
        let skips: [(&str, Skips); 3] = [
            ("every other chunk", Box::new(|c| c % 2 == 1)),
            (
                "the second half of each lane",
                Box::new(move |c| c % per_lane >= per_lane / 2),
            ),
            (
                "a random half",
                Box::new(move |c| seed.derive("skipped", c)[0] & 1 == 1),
            ),
        ];
        for (name, skipped) in &skips {
            let folded: Vec<Hash> = table
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let c = (i / CHUNK_ENTRIES) as u64;
                    if skipped(c) {
                        seed.derive("made up", i as u64)
                    } else {
                        *e
                    }
                })
                .collect();
            let mut passed = 0;
            for i in 0..100 {
                let n = nonce(i);
                let sweep = run(&folded, SHAPE, start(&n), PASSES, &AtomicU64::new(0));
                let o = open(&sweep, &folded, &table, &n);
                match check_against(&table, &sweep.roots(), &o, &n) {
                    Ok(()) => passed += 1,
                    Err(e) => assert!(e.to_string().contains("did not read it"), "{name}: {e}"),
                }
            }
            assert_eq!(passed, 0, "{name}: passed {passed} of 100");
        }
    }

    #[test]
    fn a_sweep_that_reads_the_table_once_for_every_pass_fails() {
        // To read the table once and fold it under every pass's key, the
        // node must know every key at the start: it takes each from the
        // walk's end instead of the pass before, and commits honestly to
        // what it folded. Only samples of the first pass agree.
        let table = table();
        for i in 0..100 {
            let n = nonce(i);
            let passes = (0..PASSES)
                .map(|p| {
                    let key = key(&n, &ROOT, p, &WALK_END);
                    let lanes: Vec<Tree> = (0..SHAPE.lanes)
                        .map(|lane| {
                            let leaves = (0..SHAPE.groups_per_lane())
                                .map(|g| {
                                    leaf(p, lane, g, &group_folds(&table, SHAPE, &key, lane, g))
                                })
                                .collect();
                            Tree::new(leaves).unwrap()
                        })
                        .collect();
                    let top = Tree::new(lanes.iter().map(Tree::root).collect()).unwrap();
                    Pass { key, lanes, top }
                })
                .collect();
            let sweep = Sweep {
                shape: SHAPE,
                passes,
            };
            let e = check_against(
                &table,
                &sweep.roots(),
                &open(&sweep, &table, &table, &n),
                &n,
            )
            .unwrap_err();
            assert!(e.to_string().contains("did not read it"), "{e}");
        }
    }

    #[test]
    fn a_damaged_sweep_is_rejected_with_the_reason() {
        let table = table();
        let n = nonce(1);
        let sweep = run(&table, SHAPE, start(&n), PASSES, &AtomicU64::new(0));
        let roots = sweep.roots();
        let good = open(&sweep, &table, &table, &n);
        let reason = |roots: &[Hash], o: &[SweepOpening]| {
            check_against(&table, roots, o, &n).unwrap_err().to_string()
        };

        assert!(reason(&roots[..2], &good).contains("commits to 2 passes"));
        assert!(reason(&roots, &good[1..]).contains("31 sweep folds opened, 32 sampled"));
        let mut o = good.clone();
        o.swap(0, 1);
        assert!(reason(&roots, &o).contains("the sample is"));
        let mut o = good.clone();
        o[2].entries[0][0] ^= 1;
        assert!(reason(&roots, &o).contains("not in the table's commitment"));
        let mut o = good.clone();
        o[2].folds.pop();
        assert!(reason(&roots, &o).contains("folds in chunk"));
        let mut o = good.clone();
        o[3].lane_root[0] ^= 1;
        assert!(reason(&roots, &o).contains("not in the pass's commitment"));
        // A fold that is not the chunk's but sits in the group next to
        // the sampled one changes the leaf.
        let mut o = good.clone();
        let at = (o[3].chunk % SHAPE.chunks_per_lane % GROUP) as usize;
        let other = if at == 0 { 1 } else { 0 };
        o[3].folds[other] ^= 1;
        assert!(reason(&roots, &o).contains("not in the pass's commitment"));
        // A sweep that did not follow this walk has other keys.
        let other = [0u8; 32];
        let e = check(
            &roots,
            &good,
            (SHAPE, PASSES, SAMPLES),
            Start {
                after: &other,
                ..start(&n)
            },
            &|_, _, _| true,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("did not read it") || e.to_string().contains("not in the pass"),
            "{e}"
        );
        // No passes or no chunks: a clear error, not a division by zero.
        let none = Shape {
            lanes: 1,
            chunks_per_lane: 0,
        };
        let e = check(
            &roots,
            &good,
            (none, PASSES, SAMPLES),
            start(&n),
            &|_, _, _| true,
        );
        assert!(e.unwrap_err().to_string().contains("at least one pass"));
        let e = check(&roots, &good, (SHAPE, 0, SAMPLES), start(&n), &|_, _, _| {
            true
        });
        assert!(e.unwrap_err().to_string().contains("at least one pass"));
        // Another nonce draws other samples and other keys.
        let e = check_against(&table, &roots, &good, &nonce(2)).unwrap_err();
        assert!(
            e.to_string().contains("the sample is") || e.to_string().contains("did not read it"),
            "{e}"
        );
    }

    #[test]
    fn proofs_round_trip_through_json() {
        let table = table();
        let n = nonce(0);
        let sweep = run(&table, SHAPE, start(&n), PASSES, &AtomicU64::new(0));
        let o = open(&sweep, &table, &table, &n);
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<Vec<SweepOpening>>(&json).unwrap(), o);
    }
}
