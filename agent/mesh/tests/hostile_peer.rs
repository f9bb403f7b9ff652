//! Bad input from a hostile peer: garbage, oversized, stale and forged
//! gossip, and forged, misplaced and expired DHT records. Each is refused
//! with its reason; the objective faults lower the sender's score until it
//! is banned, and the honest nodes go on. (Replayed gossip is covered by the
//! gate's unit tests.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{eventually, now, start};
use libp2p::identity::Keypair;
use mesh::node::{Config, Transport};
use mesh::observe::{MetricReport, METRICS_TOPIC};
use mesh::record::{self, Offer};
use mesh::{signed, Resources, Visibility};

fn config() -> Config {
    Config {
        transport: Transport::Memory,
        gossip_heartbeat: Duration::from_millis(200),
        ..Config::default()
    }
}

fn offer(service: &str, ttl: u64) -> Offer {
    Offer {
        service: service.into(),
        version: "1".into(),
        endpoints: vec!["/ip4/192.0.2.1/tcp/80".parse().unwrap()],
        visibility: Visibility::Public,
        needs: Resources::default(),
        ttl_secs: ttl,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_and_its_sender_banned() {
    let honest_key = Keypair::generate_ed25519();
    let hostile_key = Keypair::generate_ed25519();
    let (honest, _h1, honest_addr) = start(honest_key.clone(), config()).await;
    let mut c = config();
    c.bootstrap = vec![honest_addr.clone()];
    let (witness, _h2, witness_addr) = start(Keypair::generate_ed25519(), c.clone()).await;
    // The hostile peer connects to both: invalid gossip is never forwarded,
    // so only direct peers ever see it.
    c.bootstrap.push(witness_addr);
    let (hostile, _h3, _) = start(hostile_key.clone(), c).await;
    let hostile_id = hostile.peer_id().to_string();

    // The honest node publishes a real record; the witness finds it.
    honest.publish(offer("real", 600)).await.unwrap();
    eventually(30, "the witness finds the real record", || async {
        (witness.find("real").await.unwrap().len() == 1).then_some(())
    })
    .await;

    // Forged DHT records: the honest node's name signed by the hostile key,
    // a record stored under another service's key, and an expired one.
    let victim = honest.peer_id();
    let mut forged = offer("real", 600).into_record(victim, None, now());
    forged.endpoints = vec!["/ip4/203.0.113.66/tcp/80".parse().unwrap()];
    let forged = signed::seal(&hostile_key, signed::SERVICE_RECORD, &forged).unwrap();
    hostile
        .inject_record(record::record_key("real", &victim), forged)
        .await
        .unwrap();
    let own = offer("mine", 600).into_record(hostile.peer_id(), None, now());
    let own = own.seal(&hostile_key).unwrap();
    hostile
        .inject_record(record::record_key("real", &hostile.peer_id()), own)
        .await
        .unwrap();
    let mut stale = offer("old", 60).into_record(hostile.peer_id(), None, now() - 3600);
    stale.expires_unix = now() - 60;
    let stale = stale.seal(&hostile_key).unwrap();
    hostile
        .inject_record(record::record_key("old", &hostile.peer_id()), stale)
        .await
        .unwrap();

    // Gossip: garbage, an oversized message, a report naming another node,
    // a stale report, and a replay of a valid one.
    let report = |node, seq, time| MetricReport {
        node,
        seq,
        time_unix: time,
        load: 0.1,
        services: vec![],
    };
    let hostile_peer = hostile.peer_id();
    let bad: Vec<Vec<u8>> = vec![
        b"not an envelope".to_vec(),
        vec![0u8; signed::METRICS.max_bytes + 100],
        signed::seal(&hostile_key, signed::METRICS, &report(victim, 1, now())).unwrap(),
        signed::seal(
            &hostile_key,
            signed::METRICS,
            &report(hostile_peer, 2, now() - 3600),
        )
        .unwrap(),
    ];
    for b in bad {
        hostile.inject_gossip(METRICS_TOPIC, b).await.unwrap();
    }

    // The honest node and the witness charge the hostile peer; it keeps
    // sending until it is banned by both.
    let mut n = 0u32;
    eventually(
        60,
        "the hostile peer is banned by the honest node and the witness",
        || {
            n += 1;
            let (hostile, honest, witness, id) = (
                hostile.clone(),
                honest.clone(),
                witness.clone(),
                hostile_id.clone(),
            );
            async move {
                let junk = format!("junk {n}").into_bytes();
                let _ = hostile.inject_gossip(METRICS_TOPIC, junk).await;
                let a = honest
                    .status()
                    .await
                    .unwrap()
                    .scores
                    .get(&id)
                    .map(|s| s.banned);
                let b = witness
                    .status()
                    .await
                    .unwrap()
                    .scores
                    .get(&id)
                    .map(|s| s.banned);
                (a == Some(true) && b == Some(true)).then_some(())
            }
        },
    )
    .await;
    let score = honest.status().await.unwrap().scores[&hostile_id].clone();
    assert!(score.score <= mesh::score::BAN_AT, "{score:?}");
    assert!(score.rejected >= 4, "{score:?}");

    // Banned means disconnected and refused.
    eventually(30, "the hostile peer is disconnected", || async {
        let s = honest.status().await.unwrap();
        (!s.connected.contains(&hostile_peer)).then_some(())
    })
    .await;

    // Nothing invalid was stored or reported; the honest service is intact.
    let found = witness.find("real").await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].provider, victim);
    assert_eq!(found[0].endpoints[0].to_string(), "/ip4/192.0.2.1/tcp/80");
    assert!(witness.find("old").await.unwrap().is_empty());
    assert!(
        honest.services().await.unwrap().is_empty(),
        "no hostile metrics were aggregated"
    );

    // Invalid requests from the local side get a clear error.
    let err = honest
        .publish(offer("Bad Name", 600))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("service name"), "{err}");
    let err = honest.find("").await.unwrap_err().to_string();
    assert!(err.contains("service name"), "{err}");
    let err = honest.publish(offer("x", 0)).await.unwrap_err().to_string();
    assert!(err.contains("ttl_secs"), "{err}");
}
