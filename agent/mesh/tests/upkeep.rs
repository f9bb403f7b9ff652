//! The mesh's upkeep on real swarms (memory transport):
//!
//! - connection trimming: a hub that 16 peers join closes its idle
//!   connections down to the low watermark, keeps its gossipsub mesh, keeps
//!   the trimmed peers in its routing table, and still reaches a trimmed
//!   peer's record (the lookup dials it again);
//! - record placement: a record the DHT could not take (a node alone) is
//!   reported as unplaced and put again once there are peers;
//! - a peer that dialled before it listened is routed to once it listens
//!   (its new address is pushed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{eventually, start};
use libp2p::identity::Keypair;
use mesh::node::{Config, Transport};
use mesh::{Offer, Resources, Visibility, Watermarks};

const SPOKES: usize = 16;

fn config() -> Config {
    Config {
        transport: Transport::Memory,
        gossip_heartbeat: Duration::from_millis(200),
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowded_node_trims_idle_connections_and_still_reaches_everyone() {
    // The grace must outlast Identify on a busy machine: the hub learns an
    // inbound spoke's listen address, and so routes to it, only from there.
    let marks = Watermarks {
        low: 2,
        high: 4,
        grace: Duration::from_secs(5),
    };
    let (hub, _hh, hub_addr) = start(
        Keypair::generate_ed25519(),
        Config {
            watermarks: marks,
            ..config()
        },
    )
    .await;
    let mut spokes = Vec::new();
    for _ in 0..SPOKES {
        let mut c = config();
        c.bootstrap = vec![hub_addr.clone()];
        let (m, h, _) = start(Keypair::generate_ed25519(), c).await;
        spokes.push((m, h));
    }
    // Generous: on a loaded CI machine the spokes' routing-table refreshes
    // (each reaching the hub again) take a while to reach all sixteen.
    eventually(90, "the hub knows every spoke", || async {
        (hub.status().await.unwrap().routing_table >= SPOKES).then_some(())
    })
    .await;

    // Trimmed: no more than the low watermark beyond the gossip mesh, and
    // fewer than the peers that joined.
    let status = eventually(60, "the hub trims to its low watermark", || async {
        let s = hub.status().await.unwrap();
        let mesh: HashSet<_> = s.gossip_mesh.iter().collect();
        let unprotected = s.connected.iter().filter(|p| !mesh.contains(p)).count();
        (unprotected <= marks.low as usize && s.connected.len() < SPOKES).then_some(s)
    })
    .await;
    let connected: HashSet<_> = status.connected.iter().copied().collect();
    assert!(
        status.gossip_mesh.iter().all(|p| connected.contains(p)),
        "the gossip mesh is never trimmed: {status:?}"
    );
    assert!(
        status.routing_table >= SPOKES,
        "trimmed peers stay in the routing table: {status:?}"
    );
    // The churn counters saw it: every spoke connected, the excess was trimmed.
    assert!(status.connections_opened >= SPOKES as u64, "{status:?}");
    assert!(
        status.connections_trimmed as usize >= SPOKES - status.connected.len(),
        "{status:?}"
    );

    // A trimmed spoke publishes; the hub's lookup reaches it again.
    let (trimmed, _) = spokes
        .iter()
        .find(|(m, _)| !connected.contains(&m.peer_id()))
        .expect("a spoke the hub disconnected");
    trimmed
        .publish(Offer {
            service: "after-trim".into(),
            version: "1".into(),
            endpoints: vec!["/ip4/192.0.2.7/tcp/80".parse().unwrap()],
            visibility: Visibility::Public,
            needs: Resources::default(),
            ttl_secs: 600,
        })
        .await
        .unwrap();
    let found = eventually(30, "the hub finds the trimmed spoke's record", || async {
        let r = hub.find("after-trim").await.unwrap();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(found[0].provider, trimmed.peer_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_dialled_before_listening_is_routed_to_once_it_listens() {
    let (known, _hk, known_addr) = start(Keypair::generate_ed25519(), config()).await;
    // The newcomer dials its bootstrap peer as it spawns; it listens only
    // once that connection is up, so the first identify carried no address.
    let mut c = config();
    c.bootstrap = vec![known_addr];
    let (newcomer, _hn) = mesh::Mesh::spawn(Keypair::generate_ed25519(), c).unwrap();
    eventually(30, "the newcomer is connected", || async {
        let s = known.status().await.unwrap();
        s.connected.contains(&newcomer.peer_id()).then_some(())
    })
    .await;
    assert_eq!(known.status().await.unwrap().routing_table, 0);
    newcomer.listen("/memory/0".parse().unwrap()).await.unwrap();
    // Well before the next identify round (5 min): the address is pushed.
    eventually(60, "the known node routes to the newcomer", || async {
        (known.status().await.unwrap().routing_table == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn watermarks_above_the_connection_limit_are_refused() {
    let c = Config {
        max_connections: 16,
        watermarks: Watermarks {
            low: 8,
            high: 32,
            grace: Duration::from_secs(1),
        },
        ..config()
    };
    let err = mesh::Mesh::spawn(Keypair::generate_ed25519(), c).unwrap_err();
    assert!(
        err.to_string().contains("above the connection limit"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_dht_could_not_take_is_placed_once_peers_come() {
    let (alone, _ha, alone_addr) = start(Keypair::generate_ed25519(), config()).await;
    alone
        .publish(Offer {
            service: "early-bird".into(),
            version: "1".into(),
            endpoints: vec!["/ip4/192.0.2.8/tcp/80".parse().unwrap()],
            visibility: Visibility::Public,
            needs: Resources::default(),
            ttl_secs: 600,
        })
        .await
        .unwrap();
    eventually(10, "the lone node reports its record unplaced", || async {
        let s = alone.status().await.unwrap();
        (s.unplaced == ["early-bird"] && s.placing.is_empty()).then_some(())
    })
    .await;

    // A peer joins; the next republish tick (30 s) puts the record again.
    let mut c = config();
    c.bootstrap = vec![alone_addr];
    let (late, _hl, _) = start(Keypair::generate_ed25519(), c).await;
    eventually(
        150,
        "the record is placed and the newcomer holds it",
        || async {
            let s = alone.status().await.unwrap();
            let placed = s.unplaced.is_empty() && s.placing.is_empty();
            let key = mesh::record::record_key("early-bird", &alone.peer_id());
            (placed && late.get_record(key).await.unwrap().found).then_some(())
        },
    )
    .await;
}
