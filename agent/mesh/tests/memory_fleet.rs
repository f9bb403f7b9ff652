//! Five mesh nodes in one process on libp2p's memory transport, each with a
//! real attestation from its own swtpm: service discovery through the DHT,
//! gossiped metrics and attestations, delegation to attested nodes,
//! reassignment after a node is killed, and a majority result with one node
//! lying.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{attested, eventually, memory_config, start};
use mesh::delegate::{AssignmentOutcome, Builtin, Executor, Task};
use mesh::observe::ServiceMetric;
use mesh::{Offer, Resources, Visibility};
use serde_json::json;
use testkit::{missing, Swtpm};

/// Answers every task with the same made-up digest.
struct Liar;

impl Executor for Liar {
    fn run(&self, _kind: &str, _input: &serde_json::Value) -> Result<serde_json::Value, String> {
        Ok(json!({ "digest": "00".repeat(32) }))
    }
}

fn chain_task(id: &str) -> Task {
    Task {
        id: id.into(),
        kind: "sha256-chain".into(),
        input: json!({"seed": "c0ffee", "rounds": 10_000}),
        needs: Resources {
            cpus: 1,
            memory_mb: 64,
            ..Resources::default()
        },
        deadline_ms: 3_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_discover_gossip_and_delegate() {
    if !Swtpm::available() {
        missing(Swtpm::NEEDS);
        return;
    }
    let (ids, policy) = tokio::task::spawn_blocking(|| attested(5)).await.unwrap();
    let mut nodes = Vec::new();
    let mut handles = Vec::new();
    let mut bootstrap = None;
    for (i, id) in ids.iter().enumerate() {
        let mut config = memory_config(&policy);
        config.bootstrap = bootstrap.iter().cloned().collect();
        // Node 4 lies about every task it runs.
        if i == 4 {
            config.executor = Arc::new(Liar);
        } else {
            config.executor = Arc::new(Builtin);
        }
        let (mesh, handle, addr) = start(id.key.clone(), config).await;
        bootstrap.get_or_insert(addr);
        nodes.push(mesh);
        handles.push(handle);
    }
    let mesh = |i: usize| nodes[i].clone();

    // Discovery: a record published on node 2 is found from node 3, with
    // its endpoint and provider; an unpublished name finds nothing.
    let offer = Offer {
        service: "hello-web".into(),
        version: "1".into(),
        endpoints: vec!["/ip4/192.0.2.7/tcp/8080".parse().unwrap()],
        visibility: Visibility::Public,
        needs: Resources::default(),
        ttl_secs: 600,
    };
    mesh(2).publish(offer).await.unwrap();
    let provider = mesh(2).peer_id();
    let found = eventually(30, "node 3 finds hello-web", || async {
        let r = mesh(3).find("hello-web").await.unwrap();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].provider, provider);
    assert_eq!(found[0].endpoints[0].to_string(), "/ip4/192.0.2.7/tcp/8080");
    assert!(mesh(3).find("no-such-service").await.unwrap().is_empty());

    // A private worker is never in the DHT; its allowlisted peer reaches it
    // directly, anyone else is told nothing.
    let private = Offer {
        service: "secret-db".into(),
        version: "1".into(),
        endpoints: vec!["/ip4/192.0.2.8/tcp/5432".parse().unwrap()],
        visibility: Visibility::Private {
            allow: vec![mesh(0).peer_id()],
        },
        needs: Resources::default(),
        ttl_secs: 600,
    };
    mesh(1).publish(private).await.unwrap();
    assert!(mesh(3).find("secret-db").await.unwrap().is_empty());
    let seen = mesh(0)
        .describe(mesh(1).peer_id(), "secret-db")
        .await
        .unwrap();
    assert_eq!(seen.map(|r| r.service), Some("secret-db".to_string()));
    assert_eq!(
        mesh(3)
            .describe(mesh(1).peer_id(), "secret-db")
            .await
            .unwrap(),
        None
    );

    // Gossip: every node announces its attestation and its load; node 0
    // verifies all four others' envelopes and aggregates their metrics.
    // Loads are chosen so the liar (4) and node 1 rank first.
    let loads = [0.9, 0.05, 0.3, 0.4, 0.0];
    for (i, id) in ids.iter().enumerate() {
        mesh(i)
            .announce_attestation(id.envelope.clone())
            .await
            .unwrap();
    }
    let expected_cpus = {
        let nodes = eventually(60, "node 0 verifies four attestations", || async {
            let n = mesh(0).nodes().await.unwrap();
            (n.iter().filter(|(_, v)| v.attested.is_some()).count() == 5).then_some(n)
        })
        .await;
        nodes[0].1.attested.unwrap().cpus
    };
    assert!(
        expected_cpus >= 1,
        "the attested inventory shows the host's CPUs"
    );
    let mut tick = 0;
    eventually(60, "node 0 aggregates metrics of every node", || {
        tick += 1;
        let nodes = nodes.clone();
        async move {
            // Re-sent until the gossip mesh has formed: an early report may
            // reach nobody.
            if tick % 5 == 1 {
                for (i, m) in nodes.iter().enumerate() {
                    let metric = ServiceMetric {
                        service: "ipfs".into(),
                        uptime_secs: 100 + i as u64,
                        response_ms: Some(10 * (i as u32 + 1)),
                        subscriptions: 1,
                        faults: 0,
                    };
                    m.publish_metrics(loads[i], vec![metric]).await.unwrap();
                }
            }
            let v = nodes[0].services().await.unwrap();
            v.iter()
                .find(|s| s.service == "ipfs" && s.nodes.len() == 5)
                .cloned()
        }
    })
    .await;
    let views = mesh(0).services().await.unwrap();
    let ipfs = views.iter().find(|s| s.service == "ipfs").unwrap();
    assert_eq!(ipfs.mean_response_ms, Some(30.0));
    assert_eq!(ipfs.min_uptime_secs, 100);

    // Three replicas go to the three least-loaded attested nodes other
    // than the requester, the liar (load 0.0) among them; the two honest
    // nodes outvote it.
    let honest = Builtin.run("sha256-chain", &chain_task("x").input).unwrap();
    let three = mesh(0).delegate(chain_task("majority"), 3).await.unwrap();
    assert_eq!(
        three.output, honest,
        "the majority's answer is the honest one"
    );
    assert_eq!(three.dissenting, vec![mesh(4).peer_id()]);
    assert_eq!(three.agreeing.len(), 2);
    let ranked_first_two = [mesh(4).peer_id(), mesh(1).peer_id()];
    for p in ranked_first_two {
        assert!(
            three.assignments.iter().any(|a| a.peer == p),
            "least-loaded node {p} was chosen"
        );
    }
    let score = mesh(0).status().await.unwrap().scores[&mesh(4).peer_id().to_string()].clone();
    assert!(score.score < 0, "the liar lost score: {score:?}");

    // Reassignment: node 1 (least loaded honest node) is killed; a task
    // placed on it fails over to the next node and still completes.
    let killed = mesh(1).peer_id();
    handles[1].abort();
    let _ = (&mut handles[1]).await;
    let mut task = chain_task("failover");
    task.deadline_ms = 2_000;
    let one = mesh(0).delegate(task, 3).await.unwrap();
    assert_eq!(one.output, honest);
    assert!(one.reassigned >= 1, "{one:?}");
    assert!(
        one.assignments
            .iter()
            .any(|a| a.peer == killed && matches!(a.outcome, AssignmentOutcome::Failed { .. })),
        "the killed node's assignment failed: {:?}",
        one.assignments
    );
    assert!(!one.agreeing.contains(&killed));
    // Its metrics are still fresh, but the next task does not wait on it.
    let mut task = chain_task("after-failover");
    task.deadline_ms = 2_000;
    let next = mesh(0).delegate(task, 1).await.unwrap();
    assert!(
        next.assignments.iter().all(|a| a.peer != killed),
        "the node that just failed was tried again first: {:?}",
        next.assignments
    );
    assert_eq!(next.reassigned, 0, "{next:?}");

    // A task nobody can fit is refused up front, naming why.
    let mut huge = chain_task("huge");
    huge.needs.gpus = 64;
    let err = mesh(0).delegate(huge, 1).await.unwrap_err().to_string();
    assert!(err.contains("verified attestations fit"), "{err}");
}
