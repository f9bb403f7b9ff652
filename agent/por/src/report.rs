//! The file a challenge run writes and a verifier checks: the seed it
//! answers and, per resource, the proof and how long the work took.

use serde::{Deserialize, Serialize};

use crate::cpu::{self, CpuParams, CpuProof, CpuVerdict};
use crate::gpu::{self, GpuParams, GpuProof, GpuVerdict};
use crate::memory::{self, MemParams, MemProof, MemVerdict};
use crate::storage::{self, DiskParams, DiskProof, DiskVerdict};
use crate::{PorError, Seed};

pub const SCHEMA: &str = "xnode.challenge/v1";

/// The seed of proofs carried in an attestation report: derived from the
/// report's freshness (the verifier's nonce or a beacon), so the work was
/// done after that was known, and the report's signature and TPM quote
/// bind the proofs to the node with its inventory.
pub fn attestation_seed(freshness: &[u8]) -> Seed {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"xnode-por/attestation\0");
    h.update(freshness);
    Seed(h.finalize().into())
}

/// The parameters each proof in a report is checked with.
#[derive(Debug, Clone, Default)]
pub struct ProofParams {
    pub cpu: Option<CpuParams>,
    pub memory: Option<MemParams>,
    pub disk: Option<DiskParams>,
    pub gpu: Option<GpuClaim>,
}

/// What a GPU proof is checked against: the parameters, and the cards the
/// node claims (their UUIDs, as its inventory lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuClaim {
    pub params: GpuParams,
    pub uuids: Vec<String>,
}

impl GpuClaim {
    /// The default claim for cards of these UUIDs and memory sizes: the
    /// product sized to the smallest card.
    pub fn for_cards(cards: &[(String, u64)]) -> Option<GpuClaim> {
        let smallest = cards.iter().map(|c| c.1).min()?;
        Some(GpuClaim {
            params: GpuParams::for_memory(smallest),
            uuids: cards.iter().map(|c| c.0.clone()).collect(),
        })
    }

    /// The default claim for the GPUs an `xnode.inventory/v1` document
    /// lists (`gpus.ok.devices[]`, those with a UUID and a memory size);
    /// None when it lists none.
    pub fn from_inventory(inventory: &serde_json::Value) -> Option<GpuClaim> {
        let cards: Vec<(String, u64)> = inventory["gpus"]["ok"]["devices"]
            .as_array()?
            .iter()
            .filter_map(|d| {
                Some((
                    d["uuid"].as_str()?.to_string(),
                    d["memory_total_bytes"].as_u64()?,
                ))
            })
            .collect();
        GpuClaim::for_cards(&cards)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeReport {
    pub schema: String,
    pub seed: Seed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuResult {
    /// What computed the products: `cuda`, or `cpu-reference` (trials
    /// and tests: the same products, on the CPU).
    pub prover: String,
    /// Each card's times, by the prover's clock.
    pub cards: Vec<GpuCardTime>,
    pub proof: GpuProof,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuCardTime {
    pub uuid: String,
    /// The product, kernel start to end: what a time bound applies to.
    pub product_ms: u64,
    /// Copying the product back and committing to it.
    pub commit_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskResult {
    /// Making the plot, when this run made it; absent when the run walked
    /// a plot made before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plot_ms: Option<u64>,
    /// The walk: what the time bound applies to.
    pub walk_ms: u64,
    /// The part of the walk spent in disk reads.
    pub read_ms: u64,
    /// Whether the reads went past the page cache (O_DIRECT).
    pub direct_io: bool,
    pub proof: DiskProof,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemResult {
    /// Filling and committing to the table, by the prover's clock.
    pub fill_ms: u64,
    /// The walk: what the time bound applies to.
    pub walk_ms: u64,
    /// The sweep's passes, in microseconds: `sweep_bytes / sweep_us` is
    /// the bandwidth the node shows.
    pub sweep_us: u64,
    pub proof: MemProof,
}

impl MemResult {
    /// The sweep's rate in MiB/s (binary megabytes, as `mbw` counts).
    pub fn sweep_mib_s(&self) -> f64 {
        self.proof.params.sweep_bytes() as f64 / 1_048_576.0 / (self.sweep_us.max(1) as f64 / 1e6)
    }
}

/// The nonce when no verifier sends one after the table's commitment: see
/// `cpu::self_nonce`, whose argument holds here too (a made-up walk fails
/// each sampled segment).
pub fn mem_self_nonce(seed: &Seed, root: &crate::merkle::Hash) -> Seed {
    cpu::self_nonce(&Seed(seed.derive("xnode-por/mem/self-nonce", 0)), root)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuResult {
    /// From the seed to the commitment, by the prover's clock: a verifier
    /// that was there times it itself.
    pub elapsed_ms: u64,
    pub proof: CpuProof,
}

impl ChallengeReport {
    pub fn parse(bytes: &[u8]) -> Result<ChallengeReport, PorError> {
        let r: ChallengeReport = serde_json::from_slice(bytes)
            .map_err(|e| PorError::Rejected(format!("not a challenge report: {e}")))?;
        if r.schema != SCHEMA {
            return Err(PorError::Rejected(format!(
                "schema {:?}, expected {SCHEMA:?}",
                r.schema
            )));
        }
        Ok(r)
    }

    fn answers(&self, seed: &Seed) -> Result<(), PorError> {
        if self.seed != *seed {
            return Err(PorError::Rejected(format!(
                "the report answers seed {}, not {seed}",
                self.seed
            )));
        }
        Ok(())
    }

    /// Check the CPU proof made with a self-derived nonce (see
    /// `cpu::self_nonce`) against the verifier's seed and parameters.
    pub fn check_cpu(&self, seed: &Seed, params: &CpuParams) -> Result<CpuVerdict, PorError> {
        self.answers(seed)?;
        let result = self
            .cpu
            .as_ref()
            .ok_or_else(|| PorError::Rejected("the report has no CPU proof".into()))?;
        let nonce = cpu::self_nonce(seed, &result.proof.root);
        cpu::check(&result.proof, params, seed, &nonce)
    }

    /// Check the GPU proof against the seed and the claimed cards.
    pub fn check_gpu(&self, seed: &Seed, claim: &GpuClaim) -> Result<GpuVerdict, PorError> {
        self.answers(seed)?;
        let result = self
            .gpu
            .as_ref()
            .ok_or_else(|| PorError::Rejected("the report has no GPU proof".into()))?;
        gpu::check(&result.proof, &claim.params, seed, &claim.uuids)
    }

    /// Check the storage proof: a walk of the plot seeded by `plot_seed`
    /// from the report's seed (the plot was committed before it, or was
    /// made from it).
    pub fn check_disk(
        &self,
        seed: &Seed,
        params: &DiskParams,
        plot_seed: &Seed,
    ) -> Result<DiskVerdict, PorError> {
        self.answers(seed)?;
        let result = self
            .disk
            .as_ref()
            .ok_or_else(|| PorError::Rejected("the report has no storage proof".into()))?;
        storage::check(&result.proof, params, plot_seed, seed)
    }

    /// Check every proof in the report against the protocols' default
    /// parameters for the amount it claims (its lanes, bytes or plot), and
    /// the storage walk against its bound: one line per resource. What
    /// the amounts are worth is the caller's to judge, with the inventory.
    ///
    /// A GPU proof is checked against `gpus`, which the caller takes from
    /// the node's inventory (`GpuClaim::for_cards`): the cards are the
    /// claim, not what the proof says.
    pub fn check_claimed(
        &self,
        seed: &Seed,
        gpus: Option<GpuClaim>,
    ) -> Result<Vec<String>, PorError> {
        self.check_all(
            seed,
            &ProofParams {
                cpu: self
                    .cpu
                    .as_ref()
                    .map(|r| CpuParams::for_cores(r.proof.params.lanes)),
                memory: self
                    .memory
                    .as_ref()
                    .map(|r| MemParams::for_claim(r.proof.params.bytes, r.proof.params.lanes)),
                disk: self
                    .disk
                    .as_ref()
                    .map(|r| DiskParams::for_claim(r.proof.params.plot.bytes)),
                gpu: gpus,
            },
        )
    }

    /// Check every proof in the report with the parameters given for it,
    /// and the storage walk against its bound: one line per resource.
    pub fn check_all(&self, seed: &Seed, params: &ProofParams) -> Result<Vec<String>, PorError> {
        let missing = |what: &str| {
            PorError::Rejected(format!(
                "the report has a {what} proof but no {what} parameters were given for it"
            ))
        };
        let mut lines = Vec::new();
        if let Some(r) = &self.cpu {
            let p = params.cpu.as_ref().ok_or_else(|| missing("cpu"))?;
            self.check_cpu(seed, p)?;
            lines.push(format!(
                "cpu: {} core(s), {} steps a lane in {:.2} s",
                p.lanes,
                p.steps_per_lane,
                r.elapsed_ms as f64 / 1000.0
            ));
        }
        if let Some(r) = &self.memory {
            let p = params.memory.as_ref().ok_or_else(|| missing("memory"))?;
            self.check_memory(seed, p)?;
            lines.push(format!(
                "memory: {} bytes, a walk of {} reads in {:.2} s, swept {} time(s) at {:.0} MiB/s",
                p.bytes,
                p.walk_steps,
                r.walk_ms as f64 / 1000.0,
                p.sweep_passes,
                r.sweep_mib_s()
            ));
        }
        if let Some(r) = &self.disk {
            let p = params.disk.as_ref().ok_or_else(|| missing("storage"))?;
            self.check_disk(seed, p, &r.proof.plot_seed)?;
            let (walk, bound) = (r.walk_ms as f64 / 1000.0, p.walk_bound().as_secs_f64());
            if walk > bound {
                return Err(PorError::Rejected(format!(
                    "the storage walk took {walk:.2} s, over the bound of {bound:.2} s"
                )));
            }
            lines.push(format!(
                "storage: {} bytes, plot {} from seed {}, a walk of {} reads in {walk:.2} s (bound {bound:.2} s)",
                p.plot.bytes,
                hex::encode(r.proof.plot_root),
                r.proof.plot_seed,
                p.walk_steps
            ));
        }
        if let Some(r) = &self.gpu {
            let claim = params.gpu.as_ref().ok_or_else(|| {
                PorError::Rejected(
                    "the report has a GPU proof but no GPU is claimed (the inventory lists none)"
                        .into(),
                )
            })?;
            self.check_gpu(seed, claim)?;
            let slowest = r.cards.iter().map(|c| c.product_ms).max().unwrap_or(0);
            lines.push(format!(
                "gpu: {} card(s) ({}), {}×{} products, the slowest in {:.2} s ({})",
                claim.uuids.len(),
                claim.uuids.join(", "),
                claim.params.n,
                claim.params.n,
                slowest as f64 / 1000.0,
                r.prover
            ));
        }
        if lines.is_empty() {
            return Err(PorError::Rejected("the report has no proof in it".into()));
        }
        Ok(lines)
    }

    /// Check the memory proof made with a self-derived nonce.
    pub fn check_memory(&self, seed: &Seed, params: &MemParams) -> Result<MemVerdict, PorError> {
        self.answers(seed)?;
        let result = self
            .memory
            .as_ref()
            .ok_or_else(|| PorError::Rejected("the report has no memory proof".into()))?;
        let nonce = mem_self_nonce(seed, &result.proof.root);
        memory::check(&result.proof, params, seed, &nonce)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicU64;

    use super::*;

    fn params() -> CpuParams {
        CpuParams {
            lanes: 2,
            steps_per_lane: 32 * 8,
            segment: 8,
            samples: 16,
        }
    }

    fn report(seed: Seed) -> ChallengeReport {
        let work = cpu::commit(&params(), &seed, &AtomicU64::new(0)).unwrap();
        let nonce = cpu::self_nonce(&seed, &work.root());
        ChallengeReport {
            schema: SCHEMA.into(),
            seed,
            cpu: Some(CpuResult {
                elapsed_ms: 1,
                proof: work.open(&nonce),
            }),
            memory: None,
            disk: None,
            gpu: None,
        }
    }

    #[test]
    fn a_gpu_proof_is_checked_against_the_claimed_cards() {
        let seed = attestation_seed(b"nonce");
        let uuids = vec!["GPU-a".to_string(), "GPU-b".to_string()];
        let claim = GpuClaim {
            params: GpuParams::with_n(128),
            uuids: uuids.clone(),
        };
        let proof =
            gpu::prove_reference(&claim.params, &seed, &uuids, 2, &AtomicU64::new(0)).unwrap();
        let mut r = report(seed);
        r.cpu = None;
        r.gpu = Some(GpuResult {
            prover: "cpu-reference".into(),
            cards: uuids
                .iter()
                .map(|u| GpuCardTime {
                    uuid: u.clone(),
                    product_ms: 1500,
                    commit_ms: 10,
                })
                .collect(),
            proof,
        });
        let back = ChallengeReport::parse(&serde_json::to_vec(&r).unwrap()).unwrap();
        let lines = back.check_claimed(&seed, Some(claim.clone())).unwrap();
        assert_eq!(
            lines,
            ["gpu: 2 card(s) (GPU-a, GPU-b), 128×128 products, the slowest in 1.50 s (cpu-reference)"]
        );
        // The inventory's cards are the claim: another set fails, none fails.
        let other = GpuClaim {
            uuids: vec!["GPU-a".into(), "GPU-c".into()],
            ..claim.clone()
        };
        let e = back.check_claimed(&seed, Some(other)).unwrap_err();
        assert!(e.to_string().contains("missing or swapped"), "{e}");
        let e = back.check_claimed(&seed, None).unwrap_err();
        assert!(e.to_string().contains("no GPU is claimed"), "{e}");
        // Sized to the smallest card.
        let sized = GpuClaim::for_cards(&[("GPU-a".into(), 80 << 30), ("GPU-b".into(), 40 << 30)]);
        assert_eq!(sized.unwrap().params, GpuParams::for_memory(40 << 30));
        assert_eq!(GpuClaim::for_cards(&[]), None);
        let inventory = serde_json::json!({"gpus": {"ok": {"devices": [
            {"uuid": "GPU-a", "memory_total_bytes": 85_899_345_920u64},
            {"uuid": "GPU-b", "memory_total_bytes": null}
        ]}}});
        let from = GpuClaim::from_inventory(&inventory).unwrap();
        assert_eq!(from.uuids, ["GPU-a"]);
        assert_eq!(from.params, GpuParams::for_memory(80 << 30));
        assert_eq!(
            GpuClaim::from_inventory(&serde_json::json!({"gpus": {"error": "x"}})),
            None
        );
    }

    #[test]
    fn a_report_round_trips_and_checks() {
        let seed = Seed([1; 32]);
        let bytes = serde_json::to_vec(&report(seed)).unwrap();
        let back = ChallengeReport::parse(&bytes).unwrap();
        back.check_cpu(&seed, &params()).unwrap();
    }

    #[test]
    fn claimed_amounts_are_checked_at_the_default_parameters() {
        // One lane at the defaults (2^24 steps): the check names the amount.
        let seed = attestation_seed(b"a verifier's nonce");
        let p = CpuParams::for_cores(1);
        let work = cpu::commit(&p, &seed, &AtomicU64::new(0)).unwrap();
        let mut r = ChallengeReport {
            schema: SCHEMA.into(),
            seed,
            cpu: Some(CpuResult {
                elapsed_ms: 1000,
                proof: work.open(&cpu::self_nonce(&seed, &work.root())),
            }),
            memory: None,
            disk: None,
            gpu: None,
        };
        let lines = r.check_claimed(&seed, None).unwrap();
        assert_eq!(lines, ["cpu: 1 core(s), 16777216 steps a lane in 1.00 s"]);
        let err = r
            .check_claimed(&attestation_seed(b"another nonce"), None)
            .unwrap_err();
        assert!(err.to_string().contains("answers seed"), "{err}");

        // Proofs at lighter parameters than the defaults prove nothing here.
        r.cpu = report(seed).cpu;
        let err = r.check_claimed(&seed, None).unwrap_err();
        assert!(err.to_string().contains("parameters"), "{err}");
        r.cpu = None;
        let err = r.check_claimed(&seed, None).unwrap_err();
        assert!(err.to_string().contains("no proof in it"), "{err}");
    }

    #[test]
    fn another_seed_another_nonce_or_schema_is_refused() {
        let seed = Seed([1; 32]);
        let r = report(seed);
        let err = r.check_cpu(&Seed([2; 32]), &params()).unwrap_err();
        assert!(err.to_string().contains("answers seed"), "{err}");

        // Opened for a nonce of the prover's choosing, not the derived one.
        let mut chosen = r.clone();
        let work = cpu::commit(&params(), &seed, &AtomicU64::new(0)).unwrap();
        chosen.cpu.as_mut().unwrap().proof = work.open(&Seed([3; 32]));
        let err = chosen.check_cpu(&seed, &params()).unwrap_err();
        assert!(err.to_string().contains("another seed or nonce"), "{err}");

        let mut v = serde_json::to_value(&r).unwrap();
        v["schema"] = "xnode.challenge/v0".into();
        let err = ChallengeReport::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
        let err = ChallengeReport::parse(b"{").unwrap_err();
        assert!(err.to_string().contains("not a challenge report"), "{err}");
    }
}
