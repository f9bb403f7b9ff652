//! CPU: parallel, seeded, sequential work: one SHA-256 chain per claimed
//! core, checkpointed, committed, and checked by re-computing segments the
//! verifier samples after the commitment.
//!
//! Lane `l` starts at `seed.derive("xnode-por/cpu/lane", l)`; step `i`
//! maps `x` to SHA-256(x || l || i), `steps_per_lane` times; every
//! `segment` steps the value is a checkpoint. The commitment is the Merkle root over every lane's
//! checkpoints. A segment is correct when hashing its start checkpoint
//! `segment` times gives its end checkpoint; the verifier samples
//! `samples` segments from a nonce sent after the root and re-computes
//! them. Work not done shows as wrong segments: a prover that did a
//! fraction `f` of the work passes with probability at most `f^samples`
//! (see `pass_probability`); the time bound the verifier sets on the
//! commitment is what makes "the work" mean "the claimed cores".

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{self, hex_hash, Hash, Proof, Tree};
use crate::{PorError, Seed};

const LANE_LABEL: &str = "xnode-por/cpu/lane";
const SAMPLE_LABEL: &str = "xnode-por/cpu/sample";

/// Most checkpoints a proof may commit to (32 bytes each in the prover's
/// memory: 512 MiB).
pub const MAX_CHECKPOINTS: u64 = 1 << 24;

/// What ties `commit` and `check` together; chosen by the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuParams {
    /// Parallel lanes: one per claimed core.
    pub lanes: u32,
    /// Sequential SHA-256 steps in each lane.
    pub steps_per_lane: u64,
    /// Steps between checkpoints: what the verifier re-computes per sample.
    pub segment: u64,
    /// Segments the verifier samples.
    pub samples: u32,
}

impl CpuParams {
    /// The defaults for a claim of `cores` cores: 2^24 steps a lane (about
    /// a second on a core with SHA extensions), segments of 2^11 steps, 64
    /// samples. The verifier re-computes 64 × 2^11 = 2^17 steps, under 1%
    /// of even one lane's 2^24.
    pub fn for_cores(cores: u32) -> CpuParams {
        CpuParams {
            lanes: cores,
            steps_per_lane: 1 << 24,
            segment: 1 << 11,
            samples: 64,
        }
    }

    pub fn validate(&self) -> Result<(), PorError> {
        let bad = |why: String| Err(PorError::Params(why));
        if !(1..=4096).contains(&self.lanes) {
            return bad(format!("lanes must be 1 to 4096, not {}", self.lanes));
        }
        if self.segment == 0 {
            return bad("segment must be at least 1 step".into());
        }
        if self.steps_per_lane == 0 || self.steps_per_lane % self.segment != 0 {
            return bad(format!(
                "steps_per_lane ({}) must be a positive multiple of segment ({})",
                self.steps_per_lane, self.segment
            ));
        }
        if self.checkpoints() > MAX_CHECKPOINTS {
            return bad(format!(
                "{} checkpoints (lanes × (steps_per_lane / segment + 1)) is over the limit of {MAX_CHECKPOINTS}",
                self.checkpoints()
            ));
        }
        if !(1..=4096).contains(&self.samples) {
            return bad(format!("samples must be 1 to 4096, not {}", self.samples));
        }
        Ok(())
    }

    pub fn segments_per_lane(&self) -> u64 {
        self.steps_per_lane / self.segment.max(1)
    }

    fn checkpoints(&self) -> u64 {
        u64::from(self.lanes).saturating_mul(self.segments_per_lane().saturating_add(1))
    }

    /// SHA-256 steps the honest prover makes.
    pub fn prover_steps(&self) -> u64 {
        u64::from(self.lanes).saturating_mul(self.steps_per_lane)
    }

    /// SHA-256 steps the verifier makes (re-computing the samples; the
    /// Merkle proofs add `2 × samples × log2(checkpoints)` more).
    pub fn verifier_steps(&self) -> u64 {
        u64::from(self.samples).saturating_mul(self.segment)
    }

    /// The most a prover that did only `fraction` of the segments can pass
    /// with: each sample must land on a segment it did.
    pub fn pass_probability(&self, fraction: f64) -> f64 {
        fraction.clamp(0.0, 1.0).powi(self.samples as i32)
    }
}

fn lane_start(seed: &Seed, lane: u32) -> Hash {
    seed.derive(LANE_LABEL, u64::from(lane))
}

/// `n` sequential steps from `x`, which is step `first` of `lane`. Each
/// step hashes the lane and the step's index with the value (44 bytes, one
/// SHA-256 block), so a segment is right only at its own place: one
/// computed for another lane or another segment, or a pair of values
/// repeated, does not pass.
fn chain(mut x: Hash, lane: u32, first: u64, n: u64) -> Hash {
    let mut block = [0u8; 44];
    block[32..36].copy_from_slice(&lane.to_le_bytes());
    for step in first..first + n {
        block[..32].copy_from_slice(&x);
        block[36..].copy_from_slice(&step.to_le_bytes());
        x = Sha256::digest(block).into();
    }
    x
}

fn leaf(lane: u32, index: u64, checkpoint: &Hash) -> Hash {
    let mut data = [0u8; 44];
    data[..4].copy_from_slice(&lane.to_le_bytes());
    data[4..12].copy_from_slice(&index.to_le_bytes());
    data[12..].copy_from_slice(checkpoint);
    merkle::leaf_hash(&data)
}

fn leaf_position(params: &CpuParams, lane: u32, index: u64) -> usize {
    (u64::from(lane) * (params.segments_per_lane() + 1) + index) as usize
}

/// The segments the verifier samples: from the nonce it sent after the
/// commitment, and the commitment itself.
pub fn sampled(params: &CpuParams, nonce: &Seed, root: &Hash) -> Vec<(u32, u64)> {
    let per_lane = params.segments_per_lane();
    let total = u64::from(params.lanes) * per_lane;
    (0..params.samples)
        .map(|i| {
            let pick = crate::sample(SAMPLE_LABEL, nonce, root, i, total);
            ((pick / per_lane) as u32, pick % per_lane)
        })
        .collect()
}

/// The nonce when no verifier is there to send one after the commitment
/// (a proof made ahead and checked from a file): derived from the seed and
/// the root. A prover can then try roots until the samples miss its
/// skipped work; each try passes with at most `pass_probability`, 2^-64
/// for half the work under the defaults, so that buys nothing against a
/// claim of twice the cores. A live verifier sends its own nonce.
pub fn self_nonce(seed: &Seed, root: &Hash) -> Seed {
    let mut h = Sha256::new();
    h.update(b"xnode-por/cpu/self-nonce\0");
    h.update(seed.0);
    h.update(root);
    Seed(h.finalize().into())
}

/// The prover's side after the work: every checkpoint and the tree over
/// them, kept to answer the nonce.
#[derive(Debug)]
pub struct CpuCommitment {
    params: CpuParams,
    seed: Seed,
    checkpoints: Vec<Vec<Hash>>,
    tree: Tree,
}

/// Do the work: one thread per lane. `progress` counts steps done (it
/// moves once a segment) for a progress display.
pub fn commit(
    params: &CpuParams,
    seed: &Seed,
    progress: &AtomicU64,
) -> Result<CpuCommitment, PorError> {
    params.validate()?;
    let checkpoints = std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..params.lanes)
            .map(|lane| {
                scope.spawn(move || {
                    let mut x = lane_start(seed, lane);
                    let mut out = Vec::with_capacity(params.segments_per_lane() as usize + 1);
                    out.push(x);
                    for i in 0..params.segments_per_lane() {
                        x = chain(x, lane, i * params.segment, params.segment);
                        out.push(x);
                        progress.fetch_add(params.segment, Ordering::Relaxed);
                    }
                    out
                })
            })
            .collect();
        lanes
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| PorError::Params("a lane's thread panicked".into()))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    Ok(CpuCommitment::from_checkpoints(*params, *seed, checkpoints))
}

impl CpuCommitment {
    fn from_checkpoints(params: CpuParams, seed: Seed, checkpoints: Vec<Vec<Hash>>) -> Self {
        let leaves = checkpoints
            .iter()
            .enumerate()
            .flat_map(|(lane, cps)| {
                cps.iter()
                    .enumerate()
                    .map(move |(i, c)| leaf(lane as u32, i as u64, c))
            })
            .collect();
        let tree =
            Tree::new(leaves).unwrap_or_else(|| unreachable!("validated: at least one lane"));
        CpuCommitment {
            params,
            seed,
            checkpoints,
            tree,
        }
    }

    /// The commitment sent to the verifier before it sends the nonce.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// Open the segments the nonce samples.
    pub fn open(&self, nonce: &Seed) -> CpuProof {
        let root = self.root();
        let openings = sampled(&self.params, nonce, &root)
            .into_iter()
            .map(|(lane, index)| {
                let cps = &self.checkpoints[lane as usize];
                let proof = |i: u64| {
                    self.tree
                        .prove(leaf_position(&self.params, lane, i))
                        .unwrap_or_else(|| unreachable!("a sampled checkpoint is in the tree"))
                };
                SegmentOpening {
                    lane,
                    index,
                    start: cps[index as usize],
                    end: cps[index as usize + 1],
                    start_proof: proof(index),
                    end_proof: proof(index + 1),
                }
            })
            .collect();
        CpuProof {
            params: self.params,
            seed: self.seed,
            root,
            nonce: *nonce,
            openings,
        }
    }
}

/// One sampled segment: its two checkpoints and their Merkle proofs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentOpening {
    pub lane: u32,
    pub index: u64,
    #[serde(with = "hex_hash")]
    pub start: Hash,
    #[serde(with = "hex_hash")]
    pub end: Hash,
    pub start_proof: Proof,
    pub end_proof: Proof,
}

/// What the prover returns: self-describing, so it can be checked later
/// from a file, against the seed and nonce the verifier chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuProof {
    pub params: CpuParams,
    pub seed: Seed,
    #[serde(with = "hex_hash")]
    pub root: Hash,
    pub nonce: Seed,
    pub openings: Vec<SegmentOpening>,
}

/// What a check established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuVerdict {
    pub segments_checked: u32,
    pub steps_checked: u64,
}

/// Check a proof against the parameters, seed and nonce the verifier
/// chose. Any difference is a rejection that says what differed.
pub fn check(
    proof: &CpuProof,
    params: &CpuParams,
    seed: &Seed,
    nonce: &Seed,
) -> Result<CpuVerdict, PorError> {
    params.validate()?;
    crate::same_challenge(
        (params, seed, nonce),
        (&proof.params, &proof.seed, &proof.nonce),
    )?;
    let reject = |why: String| Err(PorError::Rejected(why));
    let want = sampled(params, nonce, &proof.root);
    if proof.openings.len() != want.len() {
        return reject(format!(
            "{} segments opened, {} sampled",
            proof.openings.len(),
            want.len()
        ));
    }
    let leaves = params.checkpoints() as usize;
    for (n, (o, (lane, index))) in proof.openings.iter().zip(want).enumerate() {
        if (o.lane, o.index) != (lane, index) {
            return reject(format!(
                "opening {n} is lane {} segment {}, the nonce sampled lane {lane} segment {index}",
                o.lane, o.index
            ));
        }
        let at = |i| leaf_position(params, lane, i);
        if !merkle::verify(
            &proof.root,
            leaves,
            at(index),
            &leaf(lane, index, &o.start),
            &o.start_proof,
        ) || !merkle::verify(
            &proof.root,
            leaves,
            at(index + 1),
            &leaf(lane, index + 1, &o.end),
            &o.end_proof,
        ) {
            return reject(format!(
                "lane {lane} segment {index}: a checkpoint is not in the commitment"
            ));
        }
        if index == 0 && o.start != lane_start(seed, lane) {
            return reject(format!("lane {lane} does not start from the seed"));
        }
        if chain(o.start, lane, index * params.segment, params.segment) != o.end {
            return reject(format!(
                "lane {lane} segment {index}: its end is not {} steps from its start (work not done)",
                params.segment
            ));
        }
    }
    Ok(CpuVerdict {
        segments_checked: params.samples,
        steps_checked: params.verifier_steps(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Small enough for a debug build: 4 lanes of 64 segments of 16 steps.
    fn small() -> CpuParams {
        CpuParams {
            lanes: 4,
            steps_per_lane: 64 * 16,
            segment: 16,
            samples: 64,
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
        assert_eq!(progress.load(Ordering::Relaxed), small().prover_steps());
        for i in 0..200 {
            let n = nonce(i);
            let v = check(&work.open(&n), &small(), &seed, &n).unwrap();
            assert_eq!(v.segments_checked, 64);
        }
    }

    #[test]
    fn the_work_depends_on_the_seed() {
        let p = AtomicU64::new(0);
        let a = commit(&small(), &Seed([1; 32]), &p).unwrap();
        let b = commit(&small(), &Seed([2; 32]), &p).unwrap();
        assert_ne!(a.root(), b.root());
        // A proof made for one seed does not answer another.
        let n = nonce(0);
        let err = check(&a.open(&n), &small(), &Seed([2; 32]), &n).unwrap_err();
        assert!(err.to_string().contains("another seed"), "{err}");
    }

    /// The cheater the time bound leaves: it could only do half the work,
    /// so it does the first half of every lane and fills in the rest.
    fn half_done(
        params: &CpuParams,
        seed: &Seed,
        filler: impl Fn(u32, u64) -> Hash,
    ) -> CpuCommitment {
        let half = params.segments_per_lane() / 2;
        let checkpoints = (0..params.lanes)
            .map(|lane| {
                let mut x = lane_start(seed, lane);
                let mut cps = vec![x];
                for i in 1..=params.segments_per_lane() {
                    if i <= half {
                        x = chain(x, lane, (i - 1) * params.segment, params.segment);
                        cps.push(x);
                    } else {
                        cps.push(filler(lane, i));
                    }
                }
                cps
            })
            .collect();
        CpuCommitment::from_checkpoints(*params, *seed, checkpoints)
    }

    #[test]
    fn a_prover_that_did_half_the_work_fails_every_time() {
        let seed = Seed([3; 32]);
        let params = small();
        // Guessed checkpoints, and the laziest guess (all zeros): both are
        // caught.
        let guessed = half_done(&params, &seed, |lane, i| {
            Seed([4; 32]).derive("guess", u64::from(lane) << 32 | i)
        });
        let repeated = half_done(&params, &seed, |_, _| [0; 32]);
        let trials = 500;
        let mut caught = 0;
        for i in 0..trials {
            let n = nonce(i);
            for cheat in [&guessed, &repeated] {
                match check(&cheat.open(&n), &params, &seed, &n) {
                    Err(PorError::Rejected(why)) => {
                        assert!(why.contains("work not done"), "{why}");
                        caught += 1;
                    }
                    other => panic!("a half-done proof was not rejected: {other:?}"),
                }
            }
        }
        assert_eq!(caught, 2 * trials);
        // The bound the soundness argument gives for it: 2^-64.
        assert!(params.pass_probability(0.5) < 1e-19);
    }

    #[test]
    fn a_prover_that_ran_half_the_lanes_fails_every_time() {
        let seed = Seed([5; 32]);
        let params = small();
        let honest = commit(&params, &seed, &AtomicU64::new(0)).unwrap();
        // Half the lanes real, the other half copies of them (a machine
        // with half the cores claiming them twice).
        let mut checkpoints = honest.checkpoints.clone();
        let half = params.lanes as usize / 2;
        for lane in half..params.lanes as usize {
            checkpoints[lane] = checkpoints[lane - half].clone();
        }
        let cheat = CpuCommitment::from_checkpoints(params, seed, checkpoints);
        for i in 0..500 {
            let n = nonce(i);
            let err = check(&cheat.open(&n), &params, &seed, &n).unwrap_err();
            assert!(matches!(err, PorError::Rejected(_)), "{err}");
        }
    }

    #[test]
    fn one_segment_repeated_along_a_lane_fails_every_time() {
        // One segment's work, its two ends alternated along every lane:
        // cheap, and it would make half the segments look right if a step
        // did not depend on its place.
        let seed = Seed([7; 32]);
        let params = small();
        let checkpoints = (0..params.lanes)
            .map(|lane| {
                let a = lane_start(&seed, lane);
                let b = chain(a, lane, 0, params.segment);
                (0..=params.segments_per_lane())
                    .map(|i| if i % 2 == 0 { a } else { b })
                    .collect()
            })
            .collect();
        let cheat = CpuCommitment::from_checkpoints(params, seed, checkpoints);
        let mut passed = 0;
        for i in 0..500 {
            let n = nonce(i);
            if check(&cheat.open(&n), &params, &seed, &n).is_ok() {
                passed += 1;
            }
        }
        assert_eq!(passed, 0);
    }

    #[test]
    fn a_tampered_proof_is_rejected_with_the_reason() {
        let seed = Seed([6; 32]);
        let params = small();
        let work = commit(&params, &seed, &AtomicU64::new(0)).unwrap();
        let n = nonce(1);
        let good = work.open(&n);

        let mut p = good.clone();
        p.openings[3].end[0] ^= 1;
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(err.to_string().contains("not in the commitment"), "{err}");

        let mut p = good.clone();
        p.openings.pop();
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(
            err.to_string().contains("63 segments opened, 64 sampled"),
            "{err}"
        );

        let mut p = good.clone();
        p.openings.swap(0, 1);
        assert!(check(&p, &params, &seed, &n).is_err());

        let mut p = good.clone();
        p.root[0] ^= 1;
        assert!(check(&p, &params, &seed, &n).is_err());

        let mut p = good.clone();
        p.params.samples = 8;
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(err.to_string().contains("parameters"), "{err}");

        // Another nonce than the one the verifier sent.
        let err = check(&good, &params, &seed, &nonce(2)).unwrap_err();
        assert!(err.to_string().contains("another seed or nonce"), "{err}");
    }

    #[test]
    fn bad_parameters_are_refused_before_any_work() {
        let ok = small();
        for (bad, why) in [
            (CpuParams { lanes: 0, ..ok }, "lanes must be 1 to 4096"),
            (CpuParams { segment: 0, ..ok }, "segment must be at least 1"),
            (
                CpuParams {
                    steps_per_lane: 100,
                    ..ok
                },
                "positive multiple of segment",
            ),
            (CpuParams { samples: 0, ..ok }, "samples must be 1 to 4096"),
            (
                CpuParams {
                    lanes: 4096,
                    steps_per_lane: 1 << 30,
                    segment: 16,
                    samples: 64,
                },
                "over the limit",
            ),
        ] {
            let err = commit(&bad, &Seed([0; 32]), &AtomicU64::new(0)).unwrap_err();
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_defaults_keep_the_verifier_under_one_percent() {
        for cores in [1, 2, 16, 128] {
            let p = CpuParams::for_cores(cores);
            p.validate().unwrap();
            assert!(p.verifier_steps() * 100 <= p.prover_steps(), "{p:?}");
        }
    }

    #[test]
    fn proofs_round_trip_through_json() {
        let seed = Seed([8; 32]);
        let work = commit(&small(), &seed, &AtomicU64::new(0)).unwrap();
        let proof = work.open(&nonce(0));
        let json = serde_json::to_string(&proof).unwrap();
        assert_eq!(serde_json::from_str::<CpuProof>(&json).unwrap(), proof);
    }
}
