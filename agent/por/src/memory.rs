//! Memory: the node fills the claimed RAM with a seed-derived table whose
//! entries are expensive to recompute, commits to it, and then walks it
//! at random from a nonce it could not predict, under a time bound.
//!
//! Lane `l` (one per fill thread) holds `per_lane` entries of 32 bytes:
//! `T[0]` comes from the seed, and `T[i]` hashes `T[i-1]` with three
//! earlier entries that `T[i-1]` picks at random. The commitment is a
//! Merkle root over every entry.
//!
//! The nonce starts a walk of `walk_steps` dependent reads: each step
//! reads the entry its state points at and hashes it into the next state.
//! An honest node makes one RAM read and one hash a step. A node that kept
//! only part of the table must rebuild each missing entry it meets from
//! its predecessor and random parents, which are often missing too: tens
//! to hundreds of hashes a step (the cheating provers in the tests). The
//! verifier times the walk; the bound it sets is what a rebuild cannot
//! meet.
//!
//! The prover commits to the walk's state every `walk_segment` steps. The
//! verifier samples `walk_samples` segments and re-walks them from the
//! opened entries, and samples `checks` entries whose derivation it
//! re-computes from their opened inputs (a table of cheap junk fails).
//!
//! After the walk, the sweep (`crate::sweep`) reads the whole table
//! `sweep_passes` times under keys the nonce starts: the walk shows the
//! table is held, the sweep how fast it streams.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{self, hex_hash, hex_hashes, Hash, Proof, Tree};
use crate::sweep::{self, Shape, Sweep, SweepOpening};
use crate::{walk, PorError, Seed};

const LANE_LABEL: &str = "xnode-por/mem/lane";
const CHECK_LABEL: &str = "xnode-por/mem/check";
const WALK_LABEL: &str = "xnode-por/mem/walk";
const WALK_SAMPLE_LABEL: &str = "xnode-por/mem/walk-sample";

/// Bytes per entry.
pub const ENTRY_BYTES: u64 = 32;
/// Entries per bottom subtree: the prover keeps the tree above these and
/// rebuilds a subtree (127 hashes) to open an entry, so the tree costs it
/// 1/32 of the table rather than as much again. Openings are few (the
/// sampled ones); the walk reads the table itself.
pub const CHUNK: u64 = sweep::CHUNK_ENTRIES as u64;
/// Random earlier entries each entry depends on, besides its predecessor.
pub const PARENTS: usize = 3;
/// Bytes the default sweep reads in all (its passes × the table), so that
/// a small table's bandwidth is not one short pass's.
const SWEEP_BYTES: u64 = 4 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemParams {
    /// The memory claimed, in bytes.
    pub bytes: u64,
    /// Fill threads; each fills its own part of the table.
    pub lanes: u32,
    /// Entries whose derivation the verifier re-computes.
    pub checks: u32,
    /// Dependent reads in the timed walk.
    pub walk_steps: u64,
    /// Steps between the walk's committed states.
    pub walk_segment: u64,
    /// Walk segments the verifier re-walks.
    pub walk_samples: u32,
    /// Timed passes over the whole table after the walk (the bandwidth
    /// figure), each keyed by the one before.
    pub sweep_passes: u32,
    /// Chunk folds of the sweep the verifier re-computes.
    pub sweep_samples: u32,
}

impl MemParams {
    /// Defaults for a claim of `bytes` filled by `lanes` threads: 64
    /// derivation checks; a walk of 2^22 reads (about a second), committed
    /// every 32 steps, 32 segments re-walked; a sweep of at least 4 GiB in
    /// all where 64 passes reach it (1 to 64 passes), 32 folds re-computed.
    pub fn for_claim(bytes: u64, lanes: u32) -> MemParams {
        MemParams {
            bytes,
            lanes,
            checks: 64,
            walk_steps: 1 << 22,
            walk_segment: 32,
            walk_samples: 32,
            sweep_passes: (SWEEP_BYTES.div_ceil(bytes.max(1))).clamp(1, 64) as u32,
            sweep_samples: 32,
        }
    }

    pub fn validate(&self) -> Result<(), PorError> {
        let bad = |why: String| Err(PorError::Params(why));
        if !(1..=4096).contains(&self.lanes) {
            return bad(format!("lanes must be 1 to 4096, not {}", self.lanes));
        }
        let unit = u64::from(self.lanes) * CHUNK * ENTRY_BYTES;
        if self.bytes == 0 || self.bytes % unit != 0 {
            return bad(format!(
                "bytes ({}) must be a positive multiple of lanes × {CHUNK} entries × {ENTRY_BYTES} bytes ({unit})",
                self.bytes
            ));
        }
        if self.bytes > 1 << 42 {
            return bad(format!("bytes ({}) is over the limit of 4 TiB", self.bytes));
        }
        if self.walk_segment == 0
            || self.walk_steps == 0
            || self.walk_steps % self.walk_segment != 0
        {
            return bad(format!(
                "walk_steps ({}) must be a positive multiple of walk_segment ({})",
                self.walk_steps, self.walk_segment
            ));
        }
        if self.walk_steps / self.walk_segment > 1 << 24 {
            return bad("more than 2^24 walk segments".into());
        }
        if !(1..=256).contains(&self.sweep_passes) {
            return bad(format!(
                "sweep_passes must be 1 to 256, not {}",
                self.sweep_passes
            ));
        }
        for (name, n) in [
            ("checks", self.checks),
            ("walk_samples", self.walk_samples),
            ("sweep_samples", self.sweep_samples),
        ] {
            if !(1..=4096).contains(&n) {
                return bad(format!("{name} must be 1 to 4096, not {n}"));
            }
        }
        Ok(())
    }

    pub fn entries(&self) -> u64 {
        self.bytes / ENTRY_BYTES
    }

    pub fn per_lane(&self) -> u64 {
        self.entries() / u64::from(self.lanes.max(1))
    }

    fn walk_segments(&self) -> u64 {
        self.walk_steps / self.walk_segment.max(1)
    }

    /// The table as the sweep sees it: lanes of whole chunks.
    pub fn shape(&self) -> Shape {
        Shape {
            lanes: self.lanes,
            chunks_per_lane: self.per_lane() / CHUNK,
        }
    }

    /// Bytes the sweep reads: every pass reads the table.
    pub fn sweep_bytes(&self) -> u64 {
        self.bytes * u64::from(self.sweep_passes)
    }

    /// Hashes the honest prover makes: the fill, the tree, the walk, the
    /// sweep's commitments (its reads are not counted).
    pub fn prover_hashes(&self) -> u64 {
        3 * self.entries() + self.walk_steps + sweep::prover_hashes(self.shape(), self.sweep_passes)
    }

    /// Hashes the verifier makes: the derivations and walk steps it
    /// re-computes and the Merkle proofs it checks.
    pub fn verifier_hashes(&self) -> u64 {
        let depth = 64 - self.entries().leading_zeros() as u64;
        let walked = u64::from(self.walk_samples) * self.walk_segment;
        let proofs = u64::from(self.checks) * (PARENTS as u64 + 2) + walked;
        u64::from(self.checks)
            + walked
            + proofs * (depth + 1)
            + sweep::verifier_hashes(self.shape(), self.sweep_samples)
    }
}

fn lane_start(seed: &Seed, lane: u32) -> Hash {
    seed.derive(LANE_LABEL, u64::from(lane))
}

/// The random earlier entries (lane-local indices below `i`) that entry
/// `i` depends on, picked by its predecessor.
fn parents_of(prev: &Hash, i: u64) -> [u64; PARENTS] {
    let mut out = [0; PARENTS];
    for (k, p) in out.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&prev[8 * k..8 * k + 8]);
        *p = u64::from_le_bytes(b) % i;
    }
    out
}

fn derive(lane: u32, i: u64, prev: &Hash, parents: [&Hash; PARENTS]) -> Hash {
    let mut h = Sha256::new();
    h.update(lane.to_le_bytes());
    h.update(i.to_le_bytes());
    h.update(prev);
    for p in parents {
        h.update(p);
    }
    h.finalize().into()
}

fn leaf(index: u64, entry: &Hash) -> Hash {
    merkle::indexed_leaf(index, entry)
}

/// Fill one lane's part of the table.
fn fill_lane(seed: &Seed, lane: u32, part: &mut [Hash]) {
    part[0] = lane_start(seed, lane);
    for i in 1..part.len() {
        let prev = part[i - 1];
        let [a, b, c] = parents_of(&prev, i as u64);
        part[i] = derive(
            lane,
            i as u64,
            &prev,
            [&part[a as usize], &part[b as usize], &part[c as usize]],
        );
    }
}

/// The entries (global indices) whose derivation the nonce has checked:
/// lane-local index 1 or more, so each has a predecessor.
pub fn checked(params: &MemParams, nonce: &Seed, root: &Hash) -> Vec<u64> {
    let per_lane = params.per_lane();
    (0..params.checks)
        .map(|k| {
            let pick = crate::sample(
                CHECK_LABEL,
                nonce,
                root,
                k,
                u64::from(params.lanes) * (per_lane - 1),
            );
            (pick / (per_lane - 1)) * per_lane + pick % (per_lane - 1) + 1
        })
        .collect()
}

fn walk_start(nonce: &Seed, root: &Hash) -> Hash {
    walk::start(WALK_LABEL, nonce, root)
}

/// The walk segments the verifier re-walks.
pub fn walk_sampled(params: &MemParams, nonce: &Seed, root: &Hash, walk_root: &Hash) -> Vec<u64> {
    walk::sampled(
        WALK_SAMPLE_LABEL,
        nonce,
        (root, walk_root),
        params.walk_samples,
        params.walk_segments(),
        0,
    )
}

/// An entry with its Merkle proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryOpening {
    pub index: u64,
    #[serde(with = "hex_hash")]
    pub value: Hash,
    pub proof: Proof,
}

/// A checked entry, its predecessor and its parents, in that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivationOpening {
    pub entries: Vec<EntryOpening>,
}

/// One re-walked segment: its two committed states with their proofs in
/// the walk's tree, and every entry it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkOpening {
    #[serde(flatten)]
    pub states: walk::Segment,
    pub reads: Vec<EntryOpening>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemProof {
    pub params: MemParams,
    pub seed: Seed,
    #[serde(with = "hex_hash")]
    pub root: Hash,
    pub nonce: Seed,
    /// The walk's last state and the root over its committed states.
    #[serde(with = "hex_hash")]
    pub walk_end: Hash,
    #[serde(with = "hex_hash")]
    pub walk_root: Hash,
    pub checks: Vec<DerivationOpening>,
    pub walk: Vec<WalkOpening>,
    /// The root of each sweep pass, in order.
    #[serde(with = "hex_hashes")]
    pub sweep_roots: Vec<Hash>,
    pub sweep: Vec<SweepOpening>,
}

/// The filled table and the tree above its bottom subtrees.
#[derive(Debug)]
pub struct MemCommitment {
    params: MemParams,
    seed: Seed,
    table: Vec<Hash>,
    upper: Tree,
}

/// Fill the table (one thread per lane) and commit to it. `progress`
/// counts entries filled, a lane's share at a time.
pub fn commit(
    params: &MemParams,
    seed: &Seed,
    progress: &std::sync::atomic::AtomicU64,
) -> Result<MemCommitment, PorError> {
    params.validate()?;
    let entries = usize::try_from(params.entries()).map_err(|_| {
        PorError::Params("the table does not fit this machine's address space".into())
    })?;
    let mut table = Vec::new();
    table
        .try_reserve_exact(entries)
        .map_err(|e| PorError::Params(format!("cannot allocate {} bytes: {e}", params.bytes)))?;
    table.resize(entries, [0u8; 32]);
    let per_lane = params.per_lane() as usize;
    std::thread::scope(|s| {
        for (lane, part) in table.chunks_mut(per_lane).enumerate() {
            s.spawn(move || {
                fill_lane(seed, lane as u32, part);
                progress.fetch_add(part.len() as u64, std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    let mut roots = vec![[0u8; 32]; entries / CHUNK as usize];
    std::thread::scope(|s| {
        let per_thread = roots.len().div_ceil(params.lanes as usize);
        for (t, out) in roots.chunks_mut(per_thread).enumerate() {
            let table = &table;
            s.spawn(move || {
                for (k, r) in out.iter_mut().enumerate() {
                    *r = chunk_tree(table, (t * per_thread + k) as u64).root();
                }
            });
        }
    });
    let upper = Tree::new(roots).unwrap_or_else(|| unreachable!("validated: at least one chunk"));
    Ok(MemCommitment {
        params: *params,
        seed: *seed,
        table,
        upper,
    })
}

fn chunk_tree(table: &[Hash], chunk: u64) -> Tree {
    let first = (chunk * CHUNK) as usize;
    entries_tree(chunk, &table[first..first + CHUNK as usize])
}

/// The bottom subtree over chunk `chunk`'s entries.
fn entries_tree(chunk: u64, entries: &[Hash]) -> Tree {
    let leaves = entries
        .iter()
        .enumerate()
        .map(|(k, e)| leaf(chunk * CHUNK + k as u64, e))
        .collect();
    Tree::new(leaves).unwrap_or_else(|| unreachable!("a chunk is not empty"))
}

impl MemCommitment {
    pub fn root(&self) -> Hash {
        self.upper.root()
    }

    /// Open one entry: rebuild its bottom subtree, then the stored path.
    pub fn open_entry(&self, index: u64) -> EntryOpening {
        let bottom = chunk_tree(&self.table, index / CHUNK)
            .prove((index % CHUNK) as usize)
            .unwrap_or_else(|| unreachable!("an index inside its chunk"));
        let top = self
            .upper
            .prove((index / CHUNK) as usize)
            .unwrap_or_else(|| unreachable!("a chunk inside the table"));
        let mut siblings = bottom.siblings;
        siblings.extend(top.siblings);
        EntryOpening {
            index,
            value: self.table[index as usize],
            proof: Proof { siblings },
        }
    }

    /// A whole chunk's entries with the chunk's proof in the table's tree.
    pub fn open_chunk(&self, chunk: u64) -> (Vec<Hash>, Proof) {
        let first = (chunk * CHUNK) as usize;
        let proof = self
            .upper
            .prove(chunk as usize)
            .unwrap_or_else(|| unreachable!("a chunk inside the table"));
        (self.table[first..first + CHUNK as usize].to_vec(), proof)
    }

    /// Sweep the table after the walk that ended at `walk_end` (the
    /// bandwidth figure): `progress` counts chunks folded, out of
    /// `sweep_passes × chunks`.
    pub fn sweep(
        &self,
        nonce: &Seed,
        walk_end: &Hash,
        progress: &std::sync::atomic::AtomicU64,
    ) -> Sweep {
        sweep::run(
            &self.table,
            self.params.shape(),
            sweep::Start {
                nonce,
                table_root: &self.root(),
                after: walk_end,
            },
            self.params.sweep_passes,
            progress,
        )
    }

    /// Walk the table from the nonce: the states every `walk_segment`
    /// steps (the first is the start, the last the end).
    pub fn walk(&self, nonce: &Seed) -> Vec<Hash> {
        let entries = self.params.entries();
        let mut state = walk_start(nonce, &self.root());
        let mut states = Vec::with_capacity(self.params.walk_segments() as usize + 1);
        states.push(state);
        for _ in 0..self.params.walk_segments() {
            for _ in 0..self.params.walk_segment {
                state = walk::step(&state, &self.table[walk::index(&state, entries) as usize]);
            }
            states.push(state);
        }
        states
    }

    /// Answer the nonce: walk and sweep the table (the timed parts), then
    /// open the derivation checks, the sampled walk segments and the
    /// sampled folds.
    pub fn open(&self, nonce: &Seed) -> MemProof {
        let states = self.walk(nonce);
        let sweep = self.sweep(
            nonce,
            &states[states.len() - 1],
            &std::sync::atomic::AtomicU64::new(0),
        );
        self.open_walked(nonce, &states, &sweep)
    }

    /// The openings for a walk whose states are `states` and a sweep.
    pub fn open_walked(&self, nonce: &Seed, states: &[Hash], sweep: &Sweep) -> MemProof {
        let root = self.root();
        let per_lane = self.params.per_lane();
        let entries = self.params.entries();
        let checks = checked(&self.params, nonce, &root)
            .into_iter()
            .map(|g| {
                let base = g - g % per_lane;
                let prev = self.table[g as usize - 1];
                let mut at = vec![g, g - 1];
                at.extend(parents_of(&prev, g % per_lane).map(|p| base + p));
                DerivationOpening {
                    entries: at.into_iter().map(|i| self.open_entry(i)).collect(),
                }
            })
            .collect();
        let walk_tree = walk::tree(states);
        let walk_root = walk_tree.root();
        let walk = walk_sampled(&self.params, nonce, &root, &walk_root)
            .into_iter()
            .map(|j| {
                let mut state = states[j as usize];
                let reads = (0..self.params.walk_segment)
                    .map(|_| {
                        let o = self.open_entry(walk::index(&state, entries));
                        state = walk::step(&state, &o.value);
                        o
                    })
                    .collect();
                WalkOpening {
                    states: walk::Segment::open(&walk_tree, states, j),
                    reads,
                }
            })
            .collect();
        MemProof {
            params: self.params,
            seed: self.seed,
            root,
            nonce: *nonce,
            walk_end: states[states.len() - 1],
            walk_root,
            checks,
            walk,
            sweep_roots: sweep.roots(),
            sweep: sweep.open(&self.table, nonce, self.params.sweep_samples, &|c| {
                self.open_chunk(c)
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemVerdict {
    pub derivations_checked: u32,
    pub steps_rewalked: u64,
    pub folds_checked: u32,
}

/// Check a proof against the verifier's parameters, seed and nonce. The
/// time bound is the caller's: it times the answer to the nonce, which is
/// mostly the walk.
pub fn check(
    proof: &MemProof,
    params: &MemParams,
    seed: &Seed,
    nonce: &Seed,
) -> Result<MemVerdict, PorError> {
    params.validate()?;
    crate::same_challenge(
        (params, seed, nonce),
        (&proof.params, &proof.seed, &proof.nonce),
    )?;
    let reject = |why: String| Err(PorError::Rejected(why));
    let entries = params.entries() as usize;
    let in_tree = |o: &EntryOpening| {
        merkle::verify(
            &proof.root,
            entries,
            o.index as usize,
            &leaf(o.index, &o.value),
            &o.proof,
        )
    };
    let per_lane = params.per_lane();
    let want = checked(params, nonce, &proof.root);
    if proof.checks.len() != want.len() {
        return reject(format!(
            "{} derivations opened, {} sampled",
            proof.checks.len(),
            want.len()
        ));
    }
    for (d, g) in proof.checks.iter().zip(want) {
        let [this, prev, rest @ ..] = d.entries.as_slice() else {
            return reject(format!("entry {g}: its derivation is not opened"));
        };
        let (lane, i) = ((g / per_lane) as u32, g % per_lane);
        let base = g - i;
        let want_parents = parents_of(&prev.value, i).map(|p| base + p);
        let at: Vec<u64> = d.entries.iter().map(|o| o.index).collect();
        let mut expected = vec![g, g - 1];
        expected.extend(want_parents);
        if at != expected {
            return reject(format!(
                "entry {g}: opened entries {at:?}, its derivation needs {expected:?}"
            ));
        }
        if let Some(o) = d.entries.iter().find(|o| !in_tree(o)) {
            return reject(format!("entry {}: not in the commitment", o.index));
        }
        let parents: Vec<&Hash> = rest.iter().map(|o| &o.value).collect();
        let [a, b, c] = parents.as_slice() else {
            return reject(format!("entry {g}: {} parents opened", parents.len()));
        };
        if derive(lane, i, &prev.value, [a, b, c]) != this.value {
            return reject(format!(
                "entry {g}: not derived from its inputs (the table was not filled as asked)"
            ));
        }
        if i == 1 && prev.value != lane_start(seed, lane) {
            return reject(format!("lane {lane} does not start from the seed"));
        }
    }
    let want = walk_sampled(params, nonce, &proof.root, &proof.walk_root);
    if proof.walk.len() != want.len() {
        return reject(format!(
            "{} walk segments opened, {} sampled",
            proof.walk.len(),
            want.len()
        ));
    }
    for (w, j) in proof.walk.iter().zip(want) {
        w.states.check_place(
            j,
            params.walk_segments(),
            &proof.walk_root,
            &walk_start(nonce, &proof.root),
            &proof.walk_end,
        )?;
        if w.reads.len() as u64 != params.walk_segment {
            return reject(format!(
                "walk segment {j}: {} reads, not {}",
                w.reads.len(),
                params.walk_segment
            ));
        }
        let mut state = w.states.start;
        for o in &w.reads {
            let at = walk::index(&state, params.entries());
            if o.index != at {
                return reject(format!(
                    "walk segment {j}: read entry {}, the walk reads {at}",
                    o.index
                ));
            }
            if !in_tree(o) {
                return reject(format!(
                    "walk segment {j}: entry {} is not in the commitment",
                    o.index
                ));
            }
            state = walk::step(&state, &o.value);
        }
        if state != w.states.end {
            return reject(format!(
                "walk segment {j}: re-walked, it does not end at its committed state"
            ));
        }
    }
    let chunks = (params.entries() / CHUNK) as usize;
    sweep::check(
        &proof.sweep_roots,
        &proof.sweep,
        (params.shape(), params.sweep_passes, params.sweep_samples),
        sweep::Start {
            nonce,
            table_root: &proof.root,
            after: &proof.walk_end,
        },
        &|c, entries, p| {
            merkle::verify(
                &proof.root,
                chunks,
                c as usize,
                &entries_tree(c, entries).root(),
                p,
            )
        },
    )?;
    Ok(MemVerdict {
        derivations_checked: params.checks,
        steps_rewalked: u64::from(params.walk_samples) * params.walk_segment,
        folds_checked: params.sweep_samples,
    })
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashSet;
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// A small table for the protocol's mechanics: 4 lanes, 64 KiB, a
    /// walk of 1,024 steps.
    fn small() -> MemParams {
        MemParams {
            walk_steps: 1024,
            ..MemParams::for_claim(4 * 512 * ENTRY_BYTES, 4)
        }
    }

    fn nonce(i: u64) -> Seed {
        Seed(Seed([9; 32]).derive("test nonce", i))
    }

    #[test]
    fn an_honest_prover_passes_every_nonce() {
        let seed = Seed([1; 32]);
        let progress = AtomicU64::new(0);
        let work = commit(&small(), &seed, &progress).unwrap();
        assert_eq!(
            progress.load(std::sync::atomic::Ordering::Relaxed),
            small().entries()
        );
        for i in 0..100 {
            let n = nonce(i);
            let v = check(&work.open(&n), &small(), &seed, &n).unwrap();
            assert_eq!(
                (v.derivations_checked, v.steps_rewalked, v.folds_checked),
                (64, 32 * 32, 32)
            );
        }
    }

    #[test]
    fn a_table_of_cheap_junk_fails_the_derivation_checks() {
        // Entries anyone can recompute from the seed and the index in one
        // hash: nothing to keep in memory, and every derivation is wrong.
        let seed = Seed([2; 32]);
        let params = small();
        let table: Vec<Hash> = (0..params.entries())
            .map(|i| seed.derive("junk", i))
            .collect();
        let roots = (0..params.entries() / CHUNK)
            .map(|c| chunk_tree(&table, c).root())
            .collect();
        let cheat = MemCommitment {
            params,
            seed,
            table,
            upper: Tree::new(roots).unwrap(),
        };
        for i in 0..100 {
            let n = nonce(i);
            let err = check(&cheat.open(&n), &params, &seed, &n).unwrap_err();
            assert!(
                err.to_string().contains("not derived from its inputs"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_walk_with_made_up_states_fails() {
        // A node that skips the walk and commits to states it made up.
        let seed = Seed([4; 32]);
        let params = small();
        let work = commit(&params, &seed, &AtomicU64::new(0)).unwrap();
        for i in 0..100 {
            let n = nonce(i);
            let mut states = work.walk(&n);
            let last = states.len() - 1;
            for (j, s) in states.iter_mut().enumerate().skip(1) {
                if j < last {
                    *s = seed.derive("made up", j as u64);
                }
            }
            let sweep = work.sweep(&n, &states[states.len() - 1], &AtomicU64::new(0));
            let err =
                check(&work.open_walked(&n, &states, &sweep), &params, &seed, &n).unwrap_err();
            assert!(
                err.to_string()
                    .contains("does not end at its committed state"),
                "{err}"
            );
        }
    }

    /// Hashes a node holding only the entries `kept` says must make, on
    /// top of the honest walk's, to walk `steps` steps from `nonce`: each
    /// entry it lacks is rebuilt from its predecessor and parents,
    /// themselves rebuilt when lacking. What it rebuilds it may keep in a
    /// cache of `cache` entries, emptied when full. `table` is the true
    /// table, read only where the node has the value. Counting stops past
    /// `give_up`: the node has missed the bound by then.
    fn cheater_rebuilds(
        work: &MemCommitment,
        kept: &dyn Fn(u64) -> bool,
        nonce: &Seed,
        steps: u64,
        cache: usize,
        give_up: u64,
    ) -> u64 {
        let table = &work.table;
        let per_lane = work.params.per_lane();
        let entries = work.params.entries();
        let mut have: HashSet<u64> = HashSet::new();
        let mut spent = 0;
        let known = |e: u64, have: &HashSet<u64>| e % per_lane == 0 || kept(e) || have.contains(&e);
        let mut state = walk_start(nonce, &work.root());
        for _ in 0..steps {
            let target = walk::index(&state, entries);
            let mut stack = vec![target];
            while let Some(e) = stack.pop() {
                if known(e, &have) {
                    continue;
                }
                let base = e - e % per_lane;
                let mut needs = vec![e - 1];
                if known(e - 1, &have) {
                    needs
                        .extend(parents_of(&table[e as usize - 1], e % per_lane).map(|p| base + p));
                }
                let missing: Vec<u64> = needs.into_iter().filter(|n| !known(*n, &have)).collect();
                if missing.is_empty() {
                    if have.len() >= cache {
                        have.clear();
                    }
                    have.insert(e);
                    spent += 1;
                    if spent > give_up {
                        return spent;
                    }
                } else {
                    stack.push(e);
                    stack.extend(missing);
                }
            }
            state = walk::step(&state, &table[target as usize]);
        }
        spent
    }

    /// Which entries a cheating node keeps.
    type Keeps = Box<dyn Fn(u64) -> bool>;

    #[test]
    fn a_prover_holding_half_the_memory_misses_the_bound_every_time() {
        // The default table on a 32 MiB claim, walked 4,096 steps (the
        // default walk is longer; the cost per step is what matters). An
        // honest step is one read and one hash. The verifier's bound is 4
        // times the honest walk's time; a node holding half the table
        // (and a cache of 1/16 more) needs over 6 rebuild hashes a step to
        // miss it, counting each rebuild as one hash although it is three
        // SHA-256 blocks and four reads.
        let params = MemParams::for_claim(32 << 20, 1);
        let seed = Seed([3; 32]);
        let work = commit(&params, &seed, &AtomicU64::new(0)).unwrap();
        let per_lane = params.per_lane();
        let steps = 4096;
        let cache = params.entries() as usize / 16;
        let strategies: [(&str, Keeps); 3] = [
            ("every other entry", Box::new(|e| e % 2 == 0)),
            (
                "the first half of the lane",
                Box::new(move |e| e % per_lane < per_lane / 2),
            ),
            (
                "a random half",
                Box::new(move |e| seed.derive("kept", e)[0] & 1 == 0),
            ),
        ];
        let trials = 100;
        for (name, kept) in &strategies {
            let mut least = u64::MAX;
            let mut over = 0;
            for t in 0..trials {
                let rebuilt =
                    cheater_rebuilds(&work, kept.as_ref(), &nonce(t), steps, cache, 6 * steps);
                least = least.min(rebuilt);
                if rebuilt > 6 * steps {
                    over += 1;
                }
            }
            eprintln!(
                "{name}: over the bound in {over} of {trials} walks; fewest rebuild hashes a step {:.1} (counting stops at 6)",
                least as f64 / steps as f64
            );
            assert!(
                over * 100 >= trials * 99,
                "{name}: over the bound {over} times in {trials}"
            );
        }
    }

    #[test]
    fn a_tampered_proof_is_rejected_with_the_reason() {
        let seed = Seed([6; 32]);
        let params = small();
        let work = commit(&params, &seed, &AtomicU64::new(0)).unwrap();
        let n = nonce(1);
        let good = work.open(&n);

        let mut p = good.clone();
        p.walk[5].reads[3].value[0] ^= 1;
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(err.to_string().contains("not in the commitment"), "{err}");

        let mut p = good.clone();
        p.walk[5].states.end[0] ^= 1;
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(
            err.to_string().contains("not in the walk's commitment"),
            "{err}"
        );

        let mut p = good.clone();
        p.checks[2].entries[0].value[0] ^= 1;
        assert!(check(&p, &params, &seed, &n).is_err());

        let mut p = good.clone();
        p.checks[2].entries.truncate(3);
        assert!(check(&p, &params, &seed, &n).is_err());

        let mut p = good.clone();
        p.walk.pop();
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(
            err.to_string()
                .contains("31 walk segments opened, 32 sampled"),
            "{err}"
        );

        let mut p = good.clone();
        p.walk_root[0] ^= 1;
        assert!(check(&p, &params, &seed, &n).is_err());

        // The sweep is checked with the rest: a pass's root, a fold, a
        // pass left out.
        let mut p = good.clone();
        p.sweep_roots[1][0] ^= 1;
        assert!(check(&p, &params, &seed, &n).is_err());
        let mut p = good.clone();
        p.sweep[4].folds[0] ^= 1;
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(err.to_string().contains("sweep"), "{err}");
        let mut p = good.clone();
        p.sweep_roots.pop();
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(err.to_string().contains("passes"), "{err}");
        let mut p = good.clone();
        p.sweep[7].entries[3][0] ^= 1;
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(
            err.to_string().contains("not in the table's commitment"),
            "{err}"
        );

        let err = check(&good, &params, &seed, &nonce(2)).unwrap_err();
        assert!(err.to_string().contains("another seed or nonce"), "{err}");

        let other = MemParams {
            checks: 8,
            ..params
        };
        let err = check(&good, &other, &seed, &n).unwrap_err();
        assert!(err.to_string().contains("parameters"), "{err}");
    }

    #[test]
    fn bad_parameters_are_refused_before_any_work() {
        let ok = small();
        for (bad, why) in [
            (MemParams { lanes: 0, ..ok }, "lanes must be 1 to 4096"),
            (MemParams { bytes: 1000, ..ok }, "positive multiple of"),
            (MemParams { bytes: 0, ..ok }, "positive multiple of"),
            (
                MemParams {
                    bytes: 1 << 43,
                    lanes: 1,
                    ..ok
                },
                "over the limit",
            ),
            (MemParams { checks: 0, ..ok }, "checks must be 1 to 4096"),
            (
                MemParams {
                    sweep_passes: 0,
                    ..ok
                },
                "sweep_passes must be 1 to 256",
            ),
            (
                MemParams {
                    sweep_passes: 257,
                    ..ok
                },
                "sweep_passes must be 1 to 256",
            ),
            (
                MemParams {
                    sweep_samples: 0,
                    ..ok
                },
                "sweep_samples must be 1 to 4096",
            ),
            (
                MemParams {
                    walk_samples: 5000,
                    ..ok
                },
                "walk_samples must be 1 to 4096",
            ),
            (
                MemParams {
                    walk_steps: 1000,
                    ..ok
                },
                "multiple of walk_segment",
            ),
            (
                MemParams {
                    walk_segment: 0,
                    ..ok
                },
                "multiple of walk_segment",
            ),
        ] {
            let err = commit(&bad, &Seed([0; 32]), &AtomicU64::new(0)).unwrap_err();
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_verifier_does_under_one_percent_of_the_work() {
        for bytes in [32u64 << 20, 1 << 30, 64 << 30] {
            let p = MemParams::for_claim(bytes, 16);
            p.validate().unwrap();
            assert!(p.verifier_hashes() * 100 <= p.prover_hashes(), "{p:?}");
        }
    }

    #[test]
    fn proofs_round_trip_through_json() {
        let seed = Seed([8; 32]);
        let work = commit(&small(), &seed, &AtomicU64::new(0)).unwrap();
        let proof = work.open(&nonce(0));
        let json = serde_json::to_string(&proof).unwrap();
        assert_eq!(serde_json::from_str::<MemProof>(&json).unwrap(), proof);
    }
}
