//! GPU: on each claimed card at once, a seeded product `C = A·B` of n×n
//! matrices of 32-bit integers, committed under a Merkle root and checked
//! entry by sampled entry.
//!
//! - **Exact.** Arithmetic wraps modulo 2^32, which every GPU and CPU does
//!   the same way, so there is no floating-point tolerance to argue about.
//! - **Per card.** A and B derive from the seed and the card's UUID, so
//!   each card's product is its own; the proof names every UUID, and the
//!   verifier demands exactly the claimed set: a card that is missing,
//!   swapped or counted twice is caught.
//! - **Cheap to check.** One entry of C costs the verifier a row of A, a
//!   column of B and their dot product (3n operations), against the
//!   prover's n³ multiply-adds.
//!
//! This module holds the protocol and a CPU reference prover, which CI
//! runs at small sizes; a GPU prover computes the same C and commits it
//! the same way ([`CardCommitment::from_leaves`], [`chunk_leaves`]).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{self, Hash, Tree};
use crate::{sample, PorError, Seed};

/// Entries of C per Merkle leaf: an opening carries 256 bytes of C.
pub const CHUNK: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuParams {
    /// A, B and C are n×n (a multiple of [`CHUNK`]).
    pub n: u32,
    /// Entries of C checked per card.
    pub samples: u32,
    /// Hashes in a row between the commitments and the nonce, so that a
    /// prover re-committing until the samples miss its guesses pays them
    /// on every try.
    pub sampling_work: u64,
}

impl GpuParams {
    /// An n×n product with the default sampling.
    pub fn with_n(n: u32) -> GpuParams {
        GpuParams {
            n,
            ..GpuParams::for_memory(0)
        }
    }

    /// The largest product whose three matrices (12·n² bytes) fit in 80% of
    /// a card's memory, checked at 64 entries.
    pub fn for_memory(bytes: u64) -> GpuParams {
        let budget = bytes / 10 * 8 / 12;
        let n = (budget as f64).sqrt() as u64 / u64::from(CHUNK) * u64::from(CHUNK);
        GpuParams {
            n: n.clamp(u64::from(CHUNK), 1 << 18) as u32,
            samples: 64,
            sampling_work: 1 << 20,
        }
    }

    pub fn validate(&self) -> Result<(), PorError> {
        let bad = |why: String| Err(PorError::Params(why));
        if self.n < CHUNK || self.n % CHUNK != 0 || self.n > 1 << 18 {
            return bad(format!(
                "n must be a multiple of {CHUNK} from {CHUNK} to 2^18, not {}",
                self.n
            ));
        }
        if !(1..=1024).contains(&self.samples) {
            return bad(format!("samples must be 1 to 1024, not {}", self.samples));
        }
        if self.sampling_work > 1 << 30 {
            return bad(format!(
                "sampling_work must be at most 2^30, not {}",
                self.sampling_work
            ));
        }
        Ok(())
    }

    fn entries(&self) -> u64 {
        u64::from(self.n) * u64::from(self.n)
    }

    fn chunks(&self) -> u64 {
        self.entries() / u64::from(CHUNK)
    }

    /// Multiply-adds a card does.
    pub fn prover_macs(&self) -> u64 {
        self.entries() * u64::from(self.n)
    }

    /// Multiply-adds the verifier does per card.
    pub fn verifier_macs(&self) -> u64 {
        u64::from(self.samples) * u64::from(self.n)
    }
}

/// The matrices of one card, from the seed and its UUID. Elements are
/// SplitMix64 of a key and the element's index: cheap on a GPU and for
/// the verifier, and without structure a product could exploit.
#[derive(Debug, Clone, Copy)]
pub struct Matrices {
    n: u32,
    a_key: u64,
    b_key: u64,
}

fn key(seed: &Seed, label: &str, uuid: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"xnode-por/gpu/");
    h.update(label.as_bytes());
    h.update([0u8]);
    h.update(seed.0);
    h.update(uuid.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// SplitMix64's finalizer over `key ⊕ index·φ`.
fn element(key: u64, index: u64) -> u32 {
    let mut z = key ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}

impl Matrices {
    pub fn for_card(params: &GpuParams, seed: &Seed, uuid: &str) -> Matrices {
        Matrices {
            n: params.n,
            a_key: key(seed, "A", uuid),
            b_key: key(seed, "B", uuid),
        }
    }

    /// The keys of A and B, for a prover that makes them elsewhere.
    pub fn keys(&self) -> (u64, u64) {
        (self.a_key, self.b_key)
    }

    pub fn a(&self, i: u32, k: u32) -> u32 {
        element(self.a_key, u64::from(i) * u64::from(self.n) + u64::from(k))
    }

    pub fn b(&self, k: u32, j: u32) -> u32 {
        element(self.b_key, u64::from(k) * u64::from(self.n) + u64::from(j))
    }

    /// Entry (i, j) of A·B, as the verifier computes it.
    pub fn entry(&self, i: u32, j: u32) -> u32 {
        (0..self.n).fold(0u32, |acc, k| {
            acc.wrapping_add(self.a(i, k).wrapping_mul(self.b(k, j)))
        })
    }

    /// All of C = A·B on the CPU, row bands on `threads` threads; `progress`
    /// counts finished rows.
    pub fn product(&self, threads: u32, progress: &AtomicU64) -> Vec<u32> {
        let n = self.n as usize;
        let b: Vec<u32> = (0..self.n)
            .flat_map(|k| (0..self.n).map(move |j| (k, j)))
            .map(|(k, j)| self.b(k, j))
            .collect();
        let mut c = vec![0u32; n * n];
        let band = n.div_ceil(threads.max(1) as usize);
        std::thread::scope(|s| {
            for (t, rows) in c.chunks_mut(band * n).enumerate() {
                let b = &b;
                s.spawn(move || {
                    for (r, row) in rows.chunks_mut(n).enumerate() {
                        let i = (t * band + r) as u32;
                        for k in 0..n {
                            let a = self.a(i, k as u32);
                            for (out, bk) in row.iter_mut().zip(&b[k * n..(k + 1) * n]) {
                                *out = out.wrapping_add(a.wrapping_mul(*bk));
                            }
                        }
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        c
    }
}

/// The leaf of chunk `index`: its entries, little-endian, after the index.
pub fn chunk_leaf(index: u64, values: &[u32]) -> Hash {
    let mut data = Vec::with_capacity(8 + values.len() * 4);
    data.extend_from_slice(&index.to_le_bytes());
    for v in values {
        data.extend_from_slice(&v.to_le_bytes());
    }
    merkle::leaf_hash(&data)
}

/// The leaves of consecutive chunks of C, from chunk `first` on, hashed
/// on `threads` threads. `c` holds whole chunks.
pub fn chunk_leaves(first: u64, c: &[u32], threads: u32) -> Vec<Hash> {
    let chunks: Vec<&[u32]> = c.chunks(CHUNK as usize).collect();
    let per = chunks.len().div_ceil(threads.max(1) as usize).max(1);
    let mut leaves = vec![[0u8; 32]; chunks.len()];
    std::thread::scope(|s| {
        for (t, (out, group)) in leaves.chunks_mut(per).zip(chunks.chunks(per)).enumerate() {
            s.spawn(move || {
                for (i, (leaf, chunk)) in out.iter_mut().zip(group).enumerate() {
                    *leaf = chunk_leaf(first + (t * per + i) as u64, chunk);
                }
            });
        }
    });
    leaves
}

/// One card's commitment: the tree over its chunks. The product stays
/// with the prover (in host memory, or on the card), which hands over the
/// sampled chunks when the commitment is opened.
#[derive(Debug)]
pub struct CardCommitment {
    uuid: String,
    tree: Tree,
}

impl CardCommitment {
    /// Commit to the leaves of a card's product (`n²/64` of them, in order).
    pub fn from_leaves(
        params: &GpuParams,
        uuid: &str,
        leaves: Vec<Hash>,
    ) -> Result<CardCommitment, PorError> {
        if leaves.len() as u64 != params.chunks() {
            return Err(PorError::Params(format!(
                "{} leaves, not n²/{CHUNK} = {}",
                leaves.len(),
                params.chunks()
            )));
        }
        let tree =
            Tree::new(leaves).ok_or_else(|| PorError::Params("n must be positive".into()))?;
        Ok(CardCommitment {
            uuid: uuid.to_string(),
            tree,
        })
    }

    /// Commit to a card's whole product, row by row (n·n entries).
    pub fn new(
        params: &GpuParams,
        uuid: &str,
        c: &[u32],
        threads: u32,
    ) -> Result<CardCommitment, PorError> {
        if c.len() as u64 != params.entries() {
            return Err(PorError::Params(format!(
                "the product has {} entries, not n² = {}",
                c.len(),
                params.entries()
            )));
        }
        CardCommitment::from_leaves(params, uuid, chunk_leaves(0, c, threads))
    }

    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// The chunks the nonce samples (their indices, in sample order).
    pub fn sampled_chunks(&self, params: &GpuParams, nonce: &Seed) -> Vec<u64> {
        let root = self.root();
        (0..params.samples)
            .map(|k| sample_entry(params, &self.uuid, nonce, &root, k) / u64::from(CHUNK))
            .collect()
    }

    /// Open the sampled chunks; `chunk` hands over a chunk's entries.
    pub fn open(
        &self,
        params: &GpuParams,
        nonce: &Seed,
        mut chunk: impl FnMut(u64) -> Result<Vec<u32>, PorError>,
    ) -> Result<CardProof, PorError> {
        let openings = self
            .sampled_chunks(params, nonce)
            .into_iter()
            .map(|index| {
                Ok(ChunkOpening {
                    chunk: index,
                    values: chunk(index)?,
                    proof: self
                        .tree
                        .prove(index as usize)
                        .ok_or_else(|| PorError::Params(format!("no chunk {index}")))?,
                })
            })
            .collect::<Result<_, PorError>>()?;
        Ok(CardProof {
            uuid: self.uuid.clone(),
            root: self.root(),
            openings,
        })
    }
}

fn sample_entry(params: &GpuParams, uuid: &str, nonce: &Seed, root: &Hash, k: u32) -> u64 {
    sample(
        &format!("xnode-por/gpu/entry/{uuid}"),
        nonce,
        root,
        k,
        params.entries(),
    )
}

/// The nonce a prover derives itself, after committing every card:
/// `sampling_work` hashes in a row after the commitments.
pub fn self_nonce(params: &GpuParams, seed: &Seed, cards: &[(&str, Hash)]) -> Seed {
    let mut h = Sha256::new();
    h.update(b"xnode-por/gpu/self-nonce\0");
    h.update(seed.0);
    for (uuid, root) in cards {
        h.update((uuid.len() as u64).to_le_bytes());
        h.update(uuid.as_bytes());
        h.update(root);
    }
    let mut nonce: Hash = h.finalize().into();
    for _ in 0..params.sampling_work {
        nonce = Sha256::digest(nonce).into();
    }
    Seed(nonce)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOpening {
    pub chunk: u64,
    pub values: Vec<u32>,
    pub proof: merkle::Proof,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardProof {
    pub uuid: String,
    #[serde(with = "crate::merkle::hex_hash")]
    pub root: Hash,
    pub openings: Vec<ChunkOpening>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProof {
    pub params: GpuParams,
    pub seed: Seed,
    pub nonce: Seed,
    pub cards: Vec<CardProof>,
}

/// Commit every card's product (in host memory) and open it at the
/// self-derived nonce.
pub fn prove(
    params: &GpuParams,
    seed: &Seed,
    products: Vec<(String, Vec<u32>)>,
    threads: u32,
) -> Result<GpuProof, PorError> {
    let cards = products
        .iter()
        .map(|(uuid, c)| CardCommitment::new(params, uuid, c, threads))
        .collect::<Result<Vec<_>, _>>()?;
    let nonce = nonce_for(params, seed, &cards);
    let chunk = |c: &[u32], i: u64| {
        let start = (i * u64::from(CHUNK)) as usize;
        Ok(c[start..start + CHUNK as usize].to_vec())
    };
    let proofs = cards
        .iter()
        .zip(&products)
        .map(|(card, (_, c))| card.open(params, &nonce, |i| chunk(c, i)))
        .collect::<Result<_, _>>()?;
    Ok(GpuProof {
        params: *params,
        seed: *seed,
        nonce,
        cards: proofs,
    })
}

/// The nonce for a set of commitments.
pub fn nonce_for(params: &GpuParams, seed: &Seed, cards: &[CardCommitment]) -> Seed {
    let roots: Vec<(&str, Hash)> = cards.iter().map(|c| (c.uuid(), c.root())).collect();
    self_nonce(params, seed, &roots)
}

/// The CPU reference prover: every claimed card's product computed here.
/// `progress` counts rows done across cards.
pub fn prove_reference(
    params: &GpuParams,
    seed: &Seed,
    uuids: &[String],
    threads: u32,
    progress: &AtomicU64,
) -> Result<GpuProof, PorError> {
    params.validate()?;
    let products = uuids
        .iter()
        .map(|u| {
            let c = Matrices::for_card(params, seed, u).product(threads, progress);
            (u.clone(), c)
        })
        .collect();
    prove(params, seed, products, threads)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuVerdict {
    pub cards: usize,
    pub entries_checked: u64,
}

/// Check a proof against the challenge and the claimed cards (their UUIDs).
pub fn check(
    proof: &GpuProof,
    params: &GpuParams,
    seed: &Seed,
    claimed: &[String],
) -> Result<GpuVerdict, PorError> {
    params.validate()?;
    let reject = |why: String| Err(PorError::Rejected(why));
    if proof.params != *params {
        return reject(format!(
            "the proof's parameters {:?} are not the challenge's {:?}",
            proof.params, params
        ));
    }
    if proof.seed != *seed {
        return reject("the proof answers another seed".into());
    }
    let mut answered: Vec<&str> = proof.cards.iter().map(|c| c.uuid.as_str()).collect();
    let mut wanted: Vec<&str> = claimed.iter().map(String::as_str).collect();
    answered.sort_unstable();
    wanted.sort_unstable();
    if answered.windows(2).any(|w| w[0] == w[1]) {
        return reject("the proof names a card twice".into());
    }
    if answered != wanted {
        return reject(format!(
            "the proof's cards {answered:?} are not the claimed {wanted:?}: a card is missing or swapped"
        ));
    }
    let roots: Vec<(&str, Hash)> = proof
        .cards
        .iter()
        .map(|c| (c.uuid.as_str(), c.root))
        .collect();
    if proof.nonce != self_nonce(params, seed, &roots) {
        return reject("the nonce is not the one the commitments give".into());
    }
    let mut checked = 0;
    for card in &proof.cards {
        if card.openings.len() != params.samples as usize {
            return reject(format!(
                "card {}: {} openings, the challenge samples {}",
                card.uuid,
                card.openings.len(),
                params.samples
            ));
        }
        let m = Matrices::for_card(params, seed, &card.uuid);
        for (k, o) in card.openings.iter().enumerate() {
            let entry = sample_entry(params, &card.uuid, &proof.nonce, &card.root, k as u32);
            let chunk = entry / u64::from(CHUNK);
            if o.chunk != chunk || o.values.len() != CHUNK as usize {
                return reject(format!(
                    "card {}: opening {k} is not the sampled chunk {chunk}",
                    card.uuid
                ));
            }
            let leaf = chunk_leaf(chunk, &o.values);
            if !merkle::verify(
                &card.root,
                params.chunks() as usize,
                chunk as usize,
                &leaf,
                &o.proof,
            ) {
                return reject(format!(
                    "card {}: chunk {chunk} is not in the commitment",
                    card.uuid
                ));
            }
            let (i, j) = (
                (entry / u64::from(params.n)) as u32,
                (entry % u64::from(params.n)) as u32,
            );
            let got = o.values[(entry % u64::from(CHUNK)) as usize];
            if got != m.entry(i, j) {
                return reject(format!(
                    "card {}: C[{i}][{j}] is {got}, not the product's value",
                    card.uuid
                ));
            }
            checked += 1;
        }
    }
    Ok(GpuVerdict {
        cards: proof.cards.len(),
        entries_checked: checked,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A test's product, sampled with little work between commitment and
    /// nonce (the default's 2^20 hashes would dominate a product this small).
    fn params() -> GpuParams {
        GpuParams {
            n: 128,
            samples: 64,
            sampling_work: 16,
        }
    }

    fn cards() -> Vec<String> {
        vec![
            "GPU-0b3c1f2e-aaaa-bbbb-cccc-000000000001".into(),
            "GPU-0b3c1f2e-aaaa-bbbb-cccc-000000000002".into(),
        ]
    }

    fn seed(i: u64) -> Seed {
        Seed(Seed([9; 32]).derive("test", i))
    }

    fn products(p: &GpuParams, s: &Seed, uuids: &[String]) -> Vec<(String, Vec<u32>)> {
        uuids
            .iter()
            .map(|u| {
                (
                    u.clone(),
                    Matrices::for_card(p, s, u).product(2, &AtomicU64::new(0)),
                )
            })
            .collect()
    }

    #[test]
    fn the_product_is_exact_and_matches_the_verifiers_entries() {
        let p = params();
        let s = seed(0);
        let m = Matrices::for_card(&p, &s, &cards()[0]);
        let progress = AtomicU64::new(0);
        let c = m.product(3, &progress);
        assert_eq!(progress.load(Ordering::Relaxed), u64::from(p.n));
        for (i, j) in [(0, 0), (5, 77), (127, 127), (64, 1)] {
            assert_eq!(c[(i * p.n + j) as usize], m.entry(i, j));
        }
        // Another card, another seed: other matrices.
        let other = Matrices::for_card(&p, &s, &cards()[1]);
        assert_ne!(m.a(0, 0), other.a(0, 0));
        assert_ne!(
            m.a(0, 0),
            Matrices::for_card(&p, &seed(1), &cards()[0]).a(0, 0)
        );
    }

    #[test]
    fn an_honest_prover_passes_every_time() {
        let p = params();
        for i in 0..20 {
            let s = seed(i);
            let proof = prove_reference(&p, &s, &cards(), 2, &AtomicU64::new(0)).unwrap();
            let v = check(&proof, &p, &s, &cards()).unwrap();
            assert_eq!(v.entries_checked, 128);
        }
    }

    #[test]
    fn a_prover_that_computed_half_of_each_product_fails_every_time() {
        // Half of C right, the rest guessed: each sample lands on a guess
        // with probability 1/2, so 64 samples pass with 2^-64.
        let p = params();
        let half = (p.n * p.n / 2) as usize;
        for i in 0..100 {
            let s = seed(i);
            let mut cheat = products(&p, &s, &cards());
            for (_, c) in &mut cheat {
                for (e, v) in c[half..].iter_mut().enumerate() {
                    *v = element(i, e as u64);
                }
            }
            // Half the rows instead of the second half of them: the same.
            if i % 2 == 1 {
                for (_, c) in &mut cheat {
                    c.rotate_left(half);
                }
            }
            let proof = prove(&p, &s, cheat, 2).unwrap();
            let e = check(&proof, &p, &s, &cards()).unwrap_err().to_string();
            assert!(e.contains("not the product's value"), "{e}");
        }
    }

    #[test]
    fn a_missing_swapped_or_doubled_card_is_caught() {
        let p = params();
        let s = seed(3);
        let claimed = cards();
        let reason = |products: Vec<(String, Vec<u32>)>| {
            let proof = prove(&p, &s, products, 2).unwrap();
            check(&proof, &p, &s, &claimed).unwrap_err().to_string()
        };
        // One card proven, two claimed.
        let one = claimed[..1].to_vec();
        assert!(reason(products(&p, &s, &one)).contains("missing or swapped"));
        // The second card swapped for another.
        let swapped = vec![
            claimed[0].clone(),
            "GPU-ffffffff-0000-0000-0000-000000000009".into(),
        ];
        assert!(reason(products(&p, &s, &swapped)).contains("missing or swapped"));
        // One card's product shown under both names.
        let mut twice = products(&p, &s, &claimed[..1]);
        twice.push((claimed[1].clone(), twice[0].1.clone()));
        assert!(reason(twice).contains("not the product's value"));
        // The same card twice.
        let doubled = vec![claimed[0].clone(), claimed[0].clone()];
        assert!(reason(products(&p, &s, &doubled)).contains("twice"));
    }

    #[test]
    fn tampered_or_retargeted_proofs_are_rejected() {
        let p = params();
        let s = seed(4);
        let proof = prove_reference(&p, &s, &cards(), 2, &AtomicU64::new(0)).unwrap();
        let fails = |proof: &GpuProof, params: &GpuParams, seed: &Seed, why: &str| {
            let e = check(proof, params, seed, &cards())
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{why}: {e}");
        };
        let mut t = proof.clone();
        t.cards[0].openings[3].values[0] ^= 1;
        fails(&t, &p, &s, "not in the commitment");
        let mut t = proof.clone();
        t.cards[1].root[0] ^= 1;
        fails(&t, &p, &s, "nonce is not");
        let mut t = proof.clone();
        t.cards[0].openings.pop();
        fails(&t, &p, &s, "63 openings");
        fails(&proof, &p, &seed(5), "another seed");
        // A smaller product than the challenge's.
        let small = GpuParams { n: 64, ..p };
        let cheap = prove_reference(&small, &s, &cards(), 2, &AtomicU64::new(0)).unwrap();
        fails(&cheap, &p, &s, "parameters");
        // Through JSON and back, still good.
        let back: GpuProof = serde_json::from_str(&serde_json::to_string(&proof).unwrap()).unwrap();
        check(&back, &p, &s, &cards()).unwrap();
    }

    #[test]
    fn parameters_are_checked_and_sized_to_the_card() {
        for bad in [
            GpuParams { n: 0, ..params() },
            GpuParams { n: 100, ..params() },
            GpuParams {
                n: 1 << 19,
                ..params()
            },
            GpuParams {
                samples: 0,
                ..params()
            },
            GpuParams {
                sampling_work: 1 << 31,
                ..params()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(PorError::Params(_))),
                "{bad:?}"
            );
        }
        // An 80 GiB card: the largest n whose three matrices fit in 80%.
        let h100 = GpuParams::for_memory(80 << 30);
        h100.validate().unwrap();
        let budget = (80u64 << 30) / 10 * 8 / 12;
        assert!(u64::from(h100.n).pow(2) <= budget);
        assert!(u64::from(h100.n + CHUNK).pow(2) > budget);
        // The verifier's share: 64 entries of n multiply-adds against n³,
        // under 1% from the test's n = 128 up.
        let share = |p: GpuParams| p.verifier_macs() as f64 / p.prover_macs() as f64;
        assert!(share(h100) < 1e-7, "{}", share(h100));
        assert!(share(params()) < 0.01, "{}", share(params()));
    }
}
