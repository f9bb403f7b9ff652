//! The mesh at scale: N real mesh nodes (the same `Mesh` as production, on
//! libp2p's memory transport) in one process. Measures
//!
//! 1. DHT lookup success and cost with 0% and 20% of nodes killed;
//! 2. gossip coverage and the time to reach 99% of live nodes;
//! 3. delegation placement against an oracle that knows every node.
//!
//! Run: `cargo run --release -p mesh --example mesh_sim -- [NODES] [LOOKUPS]
//! [LOW HIGH]` (defaults 1000, 1000, and connection watermarks 48 and 64:
//! a thousand nodes share one machine's memory here, where a real node
//! keeps 96 to 128). Figures are recorded in docs/benchmarks.md.
//!
//! Kademlia's periodic routing-table refresh is off for the run (a real
//! node refreshes every 5 minutes): a thousand nodes refreshing on two
//! cores spend them on Noise handshakes with peers they then trim. Tables
//! fill from the joins and the lookups themselves.
//!
//! Attestation here is simulated: each node announces a JSON resource
//! claim that `Declared` accepts as it is. The TPM path is tested for real
//! in tests/memory_fleet.rs; this measures placement, not attestation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::PeerId;
use mesh::delegate::{AssignmentOutcome, Task};
use mesh::node::{Config, Mesh, Transport};
use mesh::observe::AttestationCheck;
use mesh::record::{self, Offer};
use mesh::{Resources, Visibility, Watermarks};
use sha2::{Digest, Sha256};
use testkit::XorShift;

/// Lookups run this many at a time.
const LOOKUP_BATCH: usize = 20;

/// Simulation only: the announced "envelope" is the node's resource claim.
struct Declared;

impl AttestationCheck for Declared {
    fn check(&self, _peer: &PeerId, envelope: &[u8], _now: u64) -> Result<Resources, String> {
        serde_json::from_slice(envelope).map_err(|e| e.to_string())
    }
}

fn kad_point(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn distance(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Iterative lookup (alpha = 3) replayed over the nodes' real routing
/// tables: the number of rounds until a node holding the record answers.
/// libp2p does not report a query's depth, so hops are measured this way.
fn replay_hops(
    from: PeerId,
    target: &[u8; 32],
    tables: &HashMap<PeerId, Vec<PeerId>>,
    holders: &HashSet<PeerId>,
    live: &HashSet<PeerId>,
) -> Option<u32> {
    let point = |p: &PeerId| kad_point(&p.to_bytes());
    let mut known: BTreeMap<[u8; 32], PeerId> = BTreeMap::new();
    for p in tables.get(&from)? {
        known.insert(distance(&point(p), target), *p);
    }
    let mut asked: HashSet<PeerId> = HashSet::new();
    for round in 1..=32u32 {
        let batch: Vec<PeerId> = known
            .values()
            .filter(|p| !asked.contains(p))
            .take(3)
            .copied()
            .collect();
        if batch.is_empty() {
            return None;
        }
        for p in &batch {
            asked.insert(*p);
            if !live.contains(p) {
                continue;
            }
            if holders.contains(p) {
                return Some(round);
            }
            for q in tables.get(p).into_iter().flatten() {
                known.insert(distance(&point(q), target), *q);
            }
        }
    }
    None
}

/// Connections opened and trimmed, summed over the nodes.
async fn churn(meshes: &[Mesh]) -> (u64, u64) {
    join_all(meshes.iter().map(Mesh::status))
        .await
        .into_iter()
        .flatten()
        .fold((0, 0), |(o, t), s| {
            (o + s.connections_opened, t + s.connections_trimmed)
        })
}

/// Waits until the joins' routing-table refreshes have finished (no node
/// has a Kademlia query in flight), so the measurements that follow do not
/// share the CPU with the start-up.
async fn settle(meshes: &[Mesh]) {
    let start = Instant::now();
    let (mut opened, _) = churn(meshes).await;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let statuses = join_all(meshes.iter().map(Mesh::status)).await;
        let queries: usize = statuses.iter().flatten().map(|s| s.kad_queries).sum();
        let busy = statuses
            .iter()
            .flatten()
            .filter(|s| s.kad_queries > 0)
            .count();
        let (now_opened, trimmed) = churn(meshes).await;
        let mut tables: Vec<f64> = statuses
            .iter()
            .flatten()
            .map(|s| s.routing_table as f64)
            .collect();
        tables.sort_by(f64::total_cmp);
        println!(
            "  settling: {queries} Kademlia queries in flight on {busy} nodes; \
             {:.0} connections opened a second, {trimmed} trimmed in all; \
             routing tables p0 {} p50 {}",
            (now_opened - opened) as f64 / 10.0,
            percentile(&tables, 0.0),
            percentile(&tables, 0.5),
        );
        opened = now_opened;
        if queries == 0 || start.elapsed() > Duration::from_secs(1800) {
            break;
        }
    }
    println!("settled after {:.1} s", start.elapsed().as_secs_f64());
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1000);
    let lookups = args.get(1).copied().unwrap_or(1000);
    let watermarks = Watermarks {
        low: args.get(2).copied().unwrap_or(48) as u32,
        high: args.get(3).copied().unwrap_or(64) as u32,
        grace: Duration::from_secs(10),
    };
    let mut rng = XorShift(0x005E_ED0F_3E5B);
    println!(
        "mesh simulation: {n} nodes, {lookups} lookups per phase, memory transport, \
         connections trimmed to {} above {}",
        watermarks.low, watermarks.high
    );

    // Start the nodes; each joins through three random earlier ones.
    let t0 = Instant::now();
    let mut meshes: Vec<Mesh> = Vec::new();
    let mut handles = Vec::new();
    let mut addrs: Vec<libp2p::Multiaddr> = Vec::new();
    let mut claims: HashMap<PeerId, Resources> = HashMap::new();
    for i in 0..n {
        let bootstrap = (0..3.min(i)).map(|_| addrs[rng.below(i)].clone()).collect();
        let config = Config {
            transport: Transport::Memory,
            bootstrap,
            attestation_check: Some(Arc::new(Declared)),
            kad_query_timeout: Duration::from_secs(20),
            kad_refresh_interval: Duration::from_secs(24 * 3600),
            // Connections nothing uses close, as on real nodes.
            idle_connection_timeout: Duration::from_secs(30),
            gossip_heartbeat: Duration::from_millis(500),
            watermarks,
            ..Config::default()
        };
        let (mesh, h) = Mesh::spawn(Keypair::generate_ed25519(), config).unwrap();
        let addr = mesh.listen("/memory/0".parse().unwrap()).await.unwrap();
        addrs.push(addr.with(Protocol::P2p(mesh.peer_id())));
        let cpus = [2u32, 4, 8, 16, 32, 64][rng.below(6)];
        claims.insert(
            mesh.peer_id(),
            Resources {
                cpus,
                memory_mb: u64::from(cpus) * 4096,
                gpus: [0u32, 0, 0, 1, 2, 8][rng.below(6)],
                disk_gb: 500,
            },
        );
        meshes.push(mesh);
        handles.push(h);
        if (i + 1) % 100 == 0 {
            println!(
                "  {} nodes up after {:.1} s",
                i + 1,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    println!("started in {:.1} s", t0.elapsed().as_secs_f64());
    settle(&meshes).await;

    // Records: 50 providers publish one service each.
    let providers: Vec<usize> = (0..50)
        .map(|_| rng.below(n))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut keys = Vec::new();
    for (k, &i) in providers.iter().enumerate() {
        let service = format!("svc-{k}");
        meshes[i]
            .publish(Offer {
                service: service.clone(),
                version: "1".into(),
                endpoints: vec!["/ip4/192.0.2.1/tcp/1".parse().unwrap()],
                visibility: Visibility::Public,
                needs: Resources::default(),
                ttl_secs: 3600,
            })
            .await
            .unwrap();
        keys.push(record::record_key(&service, &meshes[i].peer_id()));
    }
    // Until every put and provide has finished and none is left to retry.
    let placed_at = Instant::now();
    loop {
        let statuses = join_all(providers.iter().map(|&i| meshes[i].status())).await;
        let (placing, unplaced) = statuses.iter().fold((0, 0), |(p, u), s| {
            let s = s.as_ref().unwrap();
            (p + s.placing.len(), u + s.unplaced.len())
        });
        if placing + unplaced == 0 || placed_at.elapsed() > Duration::from_secs(600) {
            println!(
                "records: {} published; {placing} still being put and {unplaced} not taken by the DHT after {:.1} s",
                providers.len(),
                placed_at.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let mut live: HashSet<PeerId> = meshes.iter().map(Mesh::peer_id).collect();
    let all: Vec<PeerId> = meshes.iter().map(Mesh::peer_id).collect();
    for phase in ["0% killed", "20% killed"] {
        if phase == "20% killed" {
            let mut victims: HashSet<usize> = HashSet::new();
            while victims.len() < n / 5 {
                victims.insert(rng.below(n));
            }
            for &v in &victims {
                handles[v].abort();
                live.remove(&all[v]);
            }
            println!("killed {} nodes", victims.len());
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let live_idx: Vec<usize> = (0..n).filter(|i| live.contains(&all[*i])).collect();
        // Routing tables of the live nodes, for the hop replay.
        // Every node asked at once: one by one, a thousand busy nodes
        // take minutes to answer in turn.
        let tables: HashMap<PeerId, Vec<PeerId>> =
            join_all(live_idx.iter().map(|&i| meshes[i].routing_table()))
                .await
                .into_iter()
                .zip(&live_idx)
                .map(|(t, &i)| (all[i], t.unwrap()))
                .collect();
        let table_sizes: Vec<f64> = tables.values().map(|t| t.len() as f64).collect();
        let mut open: Vec<f64> = join_all(live_idx.iter().map(|&i| meshes[i].status()))
            .await
            .into_iter()
            .map(|s| s.unwrap().connected.len() as f64)
            .collect();
        open.sort_by(f64::total_cmp);
        println!(
            "connections per live node, {phase}: p50 {} max {}",
            percentile(&open, 0.5),
            percentile(&open, 1.0)
        );
        let mut found = 0usize;
        let mut requests = Vec::new();
        let mut millis = Vec::new();
        let mut hops = Vec::new();
        let mut missed = Vec::new();
        // A few lookups at a time: a thousand nodes share two cores here,
        // and a burst of lookups at once measures the CPU, not the DHT.
        let mut results = Vec::new();
        for _ in 0..lookups.div_ceil(LOOKUP_BATCH) {
            let mut futs = Vec::new();
            for _ in 0..LOOKUP_BATCH.min(lookups - results.len()) {
                let from = live_idx[rng.below(live_idx.len())];
                let key = keys[rng.below(keys.len())].clone();
                let mesh = meshes[from].clone();
                futs.push(tokio::spawn(async move {
                    (from, key.clone(), mesh.get_record(key).await)
                }));
            }
            for f in futs {
                results.push(f.await.unwrap());
            }
        }
        for (from, key, r) in results {
            let s = r.unwrap();
            if s.found {
                found += 1;
            } else {
                missed.push(format!("{} requests in {} ms", s.requests, s.millis));
            }
            requests.push(f64::from(s.requests));
            millis.push(s.millis as f64);
            // The record sits on the K closest nodes to its key; the live
            // ones among them are the holders a lookup can reach.
            let target = kad_point(key.as_ref());
            let mut by_distance: Vec<&PeerId> = all.iter().collect();
            by_distance.sort_by_key(|p| distance(&kad_point(&p.to_bytes()), &target));
            let holders: HashSet<PeerId> = by_distance
                .into_iter()
                .take(mesh::node::replication_factor().get())
                .filter(|p| live.contains(p))
                .copied()
                .collect();
            if let Some(h) = replay_hops(all[from], &target, &tables, &holders, &live) {
                hops.push(f64::from(h));
            }
        }
        if !missed.is_empty() {
            println!("  missed lookups: {}", missed.join("; "));
        }
        for v in [&mut requests, &mut millis, &mut hops] {
            v.sort_by(f64::total_cmp);
        }
        println!(
            "lookups, {phase}: {found}/{lookups} found ({:.2}%); libp2p requests per lookup p50 {} p95 {}; \
             hops (replayed over {} routing tables, median size {}) p50 {} p95 {} (log2 N = {:.1}); latency p50 {} ms",
            100.0 * found as f64 / lookups as f64,
            percentile(&requests, 0.5),
            percentile(&requests, 0.95),
            tables.len(),
            percentile(&{
                let mut t = table_sizes.clone();
                t.sort_by(f64::total_cmp);
                t
            }, 0.5),
            percentile(&hops, 0.5),
            percentile(&hops, 0.95),
            (n as f64).log2(),
            percentile(&millis, 0.5),
        );

        // Gossip: one live node reports; time until 99% of live nodes hold it.
        let origin = live_idx[rng.below(live_idx.len())];
        let origin_peer = all[origin];
        let sent = Instant::now();
        meshes[origin]
            .publish_metrics(0.5, Vec::new())
            .await
            .unwrap();
        let mut t99 = None;
        let mut coverage = 0.0;
        while sent.elapsed() < Duration::from_secs(60) {
            let have = join_all(live_idx.iter().map(|&i| meshes[i].nodes()))
                .await
                .into_iter()
                .filter(|nodes| {
                    nodes
                        .as_ref()
                        .unwrap()
                        .iter()
                        .any(|(p, v)| *p == origin_peer && v.metrics_unix.is_some())
                })
                .count();
            coverage = have as f64 / live_idx.len() as f64;
            if coverage >= 0.99 && t99.is_none() {
                t99 = Some(sent.elapsed());
            }
            if coverage >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "gossip, {phase}: coverage {:.2}% of {} live nodes; 99% reached after {}",
            coverage * 100.0,
            live_idx.len(),
            t99.map_or("never (60 s)".to_string(), |d| format!(
                "{:.2} s",
                d.as_secs_f64()
            ))
        );
    }

    // Placement: every live node announces its claim and a load; a
    // requester places tasks; the oracle knows every live node exactly.
    let live_idx: Vec<usize> = (0..n).filter(|i| live.contains(&all[*i])).collect();
    let mut loads: HashMap<PeerId, f32> = HashMap::new();
    for &i in &live_idx {
        let load = (rng.below(1000) as f32) / 1000.0;
        loads.insert(all[i], load);
        let claim = serde_json::to_vec(&claims[&all[i]]).unwrap();
        meshes[i].announce_attestation(claim).await.unwrap();
        meshes[i].publish_metrics(load, Vec::new()).await.unwrap();
    }
    let requester = live_idx[0];
    let seen_at = Instant::now();
    loop {
        let view = meshes[requester].nodes().await.unwrap();
        let complete = view
            .iter()
            .filter(|(p, v)| *p != all[requester] && v.attested.is_some() && v.load.is_some())
            .count();
        if complete + 1 >= live_idx.len() || seen_at.elapsed() > Duration::from_secs(60) {
            println!(
                "placement: the requester knows {complete} of {} other live nodes' attested resources and load",
                live_idx.len() - 1
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut optimal, mut fitting, mut regret, mut placed) = (0usize, 0usize, 0f64, 0usize);
    let mut reassigned = 0u32;
    let mut failures: BTreeMap<String, u32> = BTreeMap::new();
    let tasks = 200;
    for t in 0..tasks {
        let need = Resources {
            cpus: [1u32, 4, 16, 32][rng.below(4)],
            memory_mb: 1024,
            gpus: [0u32, 0, 1, 2][rng.below(4)],
            disk_gb: 0,
        };
        let task = Task {
            id: format!("t{t}"),
            kind: "echo".into(),
            input: serde_json::json!({"t": t}),
            needs: need,
            deadline_ms: 10_000,
        };
        let Ok(d) = meshes[requester].delegate(task, 1).await else {
            continue;
        };
        placed += 1;
        reassigned += d.reassigned;
        for a in &d.assignments {
            let why = match &a.outcome {
                AssignmentOutcome::Answered { .. } => continue,
                AssignmentOutcome::Refused { reason } => format!("refused: {reason}"),
                AssignmentOutcome::Failed { reason } => format!("failed: {reason}"),
            };
            *failures.entry(why).or_insert(0u32) += 1;
        }
        let chosen = d.agreeing[0];
        if claims[&chosen].fits(&need) {
            fitting += 1;
        }
        let best = live_idx
            .iter()
            .map(|i| all[*i])
            .filter(|p| *p != all[requester] && claims[p].fits(&need))
            .map(|p| loads[&p])
            .fold(f32::INFINITY, f32::min);
        // Tasks the requester placed count as load in its own ranking, so a
        // node once chosen can be passed over: regret shows the cost.
        let r = f64::from(loads[&chosen] - best);
        regret += r;
        if r <= 1e-6 {
            optimal += 1;
        }
    }
    println!(
        "placement: {placed}/{tasks} placed; {fitting} on nodes that fit; {optimal} on the oracle's least-loaded node; \
         mean load regret {:.4}; {reassigned} reassignment(s) after a refusal, failure or missed deadline",
        regret / placed.max(1) as f64
    );
    for (why, count) in &failures {
        println!("  {count} assignment(s) {why}");
    }
}
