//! Resource-aware task delegation: the wire format of the task protocol,
//! the executors that run tasks, the choice of nodes, and the majority
//! rule for tasks run on several nodes.

use std::collections::BTreeMap;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::observe::NodeView;
use crate::resources::Resources;

pub const PROTOCOL: &str = "/xnode/task/1";
/// A node not heard from (metrics or attestation) for this long is not
/// chosen: it may be gone.
pub const MAX_SILENCE_SECS: u64 = 600;
/// A node a task failed to reach (down, unreachable or past the deadline)
/// is tried after every other fitting node for this long.
pub const UNREACHABLE_FOR: std::time::Duration = std::time::Duration::from_secs(120);
/// The most replicas a task may ask for.
pub const MAX_REPLICAS: usize = 15;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Chosen by the requester; echoed in the answer.
    pub id: String,
    /// What to run: an executor kind the worker knows (`sha256-chain`, `echo`).
    pub kind: String,
    pub input: serde_json::Value,
    #[serde(default)]
    pub needs: Resources,
    /// The requester waits this long for an answer, then gives the task to
    /// the next node (the worker's late answer is discarded).
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Run(Task),
    /// Ask a provider for its signed record of a (possibly private) service.
    Describe {
        service: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Done {
        id: String,
        output: serde_json::Value,
    },
    Refused {
        id: String,
        reason: String,
    },
    /// Base64 of the signed record, or none when the asker may not see it.
    Record {
        envelope: Option<String>,
    },
}

/// Runs tasks on a worker. Executors are pure functions of their input, so
/// replicas of one task agree unless a worker is faulty or lying.
pub trait Executor: Send + Sync + 'static {
    fn run(&self, kind: &str, input: &serde_json::Value) -> Result<serde_json::Value, String>;
}

/// The tasks every Xnode can run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtin;

/// `sha256-chain` at most this many rounds: bounded work per request.
pub const MAX_CHAIN_ROUNDS: u64 = 50_000_000;

impl Executor for Builtin {
    fn run(&self, kind: &str, input: &serde_json::Value) -> Result<serde_json::Value, String> {
        match kind {
            "echo" => Ok(input.clone()),
            // Sequential hashing: h = SHA-256(seed), then h = SHA-256(h)
            // `rounds` times. Deterministic work whose answer only the
            // work produces.
            "sha256-chain" => {
                let seed = input
                    .get("seed")
                    .and_then(|s| s.as_str())
                    .ok_or("sha256-chain: input.seed (hex) is required")?;
                let rounds = input
                    .get("rounds")
                    .and_then(|r| r.as_u64())
                    .ok_or("sha256-chain: input.rounds (integer) is required")?;
                if rounds > MAX_CHAIN_ROUNDS {
                    return Err(format!(
                        "sha256-chain: rounds {rounds} > {MAX_CHAIN_ROUNDS}"
                    ));
                }
                let mut h: [u8; 32] =
                    Sha256::digest(hex::decode(seed).map_err(|e| format!("seed: {e}"))?).into();
                for _ in 0..rounds {
                    h = Sha256::digest(h).into();
                }
                Ok(serde_json::json!({ "digest": hex::encode(h) }))
            }
            other => Err(format!("unknown task kind {other:?}")),
        }
    }
}

/// One candidate, as the requester sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub peer: PeerId,
    pub attested: Resources,
    pub load: f32,
}

/// Nodes whose attested resources fit `need`, least loaded first. A node
/// with no verified attestation is never chosen: capacity it only claims
/// does not count. Ties go to the larger machine, then to the PeerId, so
/// every requester with the same view chooses the same nodes.
pub fn rank<'a>(
    nodes: impl Iterator<Item = (&'a PeerId, &'a NodeView)>,
    need: &Resources,
    exclude: &[PeerId],
    in_flight: &BTreeMap<PeerId, u32>,
) -> Vec<Candidate> {
    let mut c: Vec<Candidate> = nodes
        .filter(|(p, _)| !exclude.contains(p))
        .filter_map(|(p, v)| {
            let attested = v.attested?;
            attested.fits(need).then(|| Candidate {
                peer: *p,
                attested,
                // Tasks this requester already placed there count as load
                // until the next metrics report shows them.
                load: v.load.unwrap_or(0.5) + 0.05 * in_flight.get(p).copied().unwrap_or(0) as f32,
            })
        })
        .collect();
    c.sort_by(|a, b| {
        a.load
            .total_cmp(&b.load)
            .then(b.attested.cpus.cmp(&a.attested.cpus))
            .then(b.attested.memory_mb.cmp(&a.attested.memory_mb))
            .then(a.peer.cmp(&b.peer))
    });
    c
}

/// What happened on one node that was given the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub peer: PeerId,
    pub outcome: AssignmentOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentOutcome {
    /// Answered; the output's SHA-256 (hex).
    Answered {
        output_sha256: String,
    },
    Refused {
        reason: String,
    },
    /// Did not answer in time, or the connection failed.
    Failed {
        reason: String,
    },
}

/// The result of a delegated task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delegated {
    pub task: String,
    pub output: serde_json::Value,
    /// Nodes whose answer is the accepted one.
    pub agreeing: Vec<PeerId>,
    /// Nodes that answered something else.
    pub dissenting: Vec<PeerId>,
    /// How many times the task moved to another node after a failure.
    pub reassigned: u32,
    pub assignments: Vec<Assignment>,
}

pub fn output_digest(output: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(output).unwrap_or_default(),
    ))
}

/// Accept the output that more than half of `replicas` nodes returned.
/// Returns the winning digest, or why none won.
pub fn majority(answers: &[(PeerId, String)], replicas: usize) -> Result<String, String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, d) in answers {
        *counts.entry(d).or_default() += 1;
    }
    let need = replicas / 2 + 1;
    match counts.iter().max_by_key(|(_, n)| **n) {
        Some((d, n)) if *n >= need => Ok((*d).to_string()),
        Some((_, n)) => Err(format!(
            "no majority: the most common answer came from {n} of {} nodes, {need} needed",
            answers.len()
        )),
        None => Err("no node answered".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_chain_is_deterministic_and_bounded() {
        let a = Builtin
            .run(
                "sha256-chain",
                &serde_json::json!({"seed": "00", "rounds": 3}),
            )
            .unwrap();
        let b = Builtin
            .run(
                "sha256-chain",
                &serde_json::json!({"seed": "00", "rounds": 3}),
            )
            .unwrap();
        assert_eq!(a, b);
        let mut h: [u8; 32] = Sha256::digest([0u8]).into();
        for _ in 0..3 {
            h = Sha256::digest(h).into();
        }
        assert_eq!(a["digest"], hex::encode(h));
        assert!(Builtin
            .run(
                "sha256-chain",
                &serde_json::json!({"seed": "zz", "rounds": 1})
            )
            .is_err());
        let too_many = serde_json::json!({"seed": "00", "rounds": MAX_CHAIN_ROUNDS + 1});
        assert!(Builtin.run("sha256-chain", &too_many).is_err());
        assert!(Builtin.run("rm-rf", &serde_json::json!({})).is_err());
    }

    #[test]
    fn rank_keeps_attested_fitting_nodes_least_loaded_first() {
        let (a, b, c, d) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        let view = |cpus, load: f32, attested: bool| NodeView {
            attested: attested.then_some(Resources {
                cpus,
                memory_mb: 1024,
                gpus: 0,
                disk_gb: 10,
            }),
            load: Some(load),
            ..NodeView::default()
        };
        let nodes: BTreeMap<PeerId, NodeView> = [
            (a, view(8, 0.7, true)),
            (b, view(8, 0.1, true)),
            (c, view(2, 0.0, true)),   // too small
            (d, view(64, 0.0, false)), // not attested
        ]
        .into_iter()
        .collect();
        let need = Resources {
            cpus: 4,
            ..Resources::default()
        };
        let ranked = rank(nodes.iter(), &need, &[], &BTreeMap::new());
        assert_eq!(ranked.iter().map(|c| c.peer).collect::<Vec<_>>(), [b, a]);
        let ranked = rank(nodes.iter(), &need, &[b], &BTreeMap::new());
        assert_eq!(ranked.iter().map(|c| c.peer).collect::<Vec<_>>(), [a]);
    }

    #[test]
    fn majority_needs_more_than_half_of_the_replicas() {
        let p = || PeerId::random();
        let ans = |d: &[&str]| d.iter().map(|d| (p(), d.to_string())).collect::<Vec<_>>();
        assert_eq!(majority(&ans(&["x", "x", "y"]), 3).unwrap(), "x");
        assert!(majority(&ans(&["x", "y", "z"]), 3).is_err());
        // Two of five agreeing is not a majority even if nobody else agrees.
        assert!(majority(&ans(&["x", "x", "y", "z", "w"]), 5).is_err());
        assert!(majority(&[], 1).is_err());
    }
}
