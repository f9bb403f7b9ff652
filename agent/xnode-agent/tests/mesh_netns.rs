//! Three `xnode-agent mesh run` processes, each in its own network
//! namespace, joined by veth links to a bridge: real TCP and QUIC through
//! the kernel. Node 2 joins over TCP, node 3 over QUIC (through the peer its
//! first-boot file names) and listens on QUIC
//! only; a service node 3 publishes is found from node 2, every node
//! hears the others' gossiped metrics, and the agent's health check for the
//! mesh reads node 1's peers from its API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent, missing, Netns};
use serde_json::Value;

struct Node {
    child: Child,
    api: PathBuf,
    log: PathBuf,
    peer: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mesh_cli(api: &Path, args: &[&str]) -> (bool, String) {
    let out = agent()
        .arg("mesh")
        .args(args)
        .arg("--api")
        .arg(api)
        .arg("--json")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(if out.status.success() {
            &out.stdout
        } else {
            &out.stderr
        })
        .into_owned(),
    )
}

/// Poll until `check` holds; the bound only keeps a broken build from
/// hanging and asserts no speed.
fn eventually(what: &str, nodes: &[&Node], mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check() {
        if Instant::now() > deadline {
            for n in nodes {
                eprintln!(
                    "--- {}:\n{}",
                    n.log.display(),
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                );
            }
            panic!("gave up waiting: {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn three_namespaces_discover_and_gossip_over_tcp_and_quic() {
    if !common::is_root() || !common::have("ip") {
        missing("root and iproute2 to create network namespaces");
        return;
    }
    let tag = std::process::id() % 100_000;
    let Some(hub) = Netns::add(format!("xm-hub-{tag}")) else {
        missing("permission to create network namespaces (ip netns add)");
        return;
    };
    hub.ip("link add br0 type bridge");
    hub.ip("link set br0 up");
    let mut spaces = Vec::new();
    for i in 1..=3 {
        let ns = Netns::add(format!("xm-n{i}-{tag}")).unwrap();
        ns.ip(&format!(
            "link add eth0 type veth peer name p{i} netns {}",
            hub.0
        ));
        hub.ip(&format!("link set p{i} master br0 up"));
        ns.ip(&format!("addr add 10.77.0.{i}/24 dev eth0"));
        ns.ip("link set eth0 up");
        ns.ip("link set lo up");
        spaces.push(ns);
    }

    let dir = tempfile::tempdir().unwrap();
    let start = |i: usize, listen: &[String], bootstrap: Option<String>| -> Node {
        let key = dir.path().join(format!("n{i}.key"));
        let seed: [u8; 32] =
            std::array::from_fn(|b| (b as u8).wrapping_mul(31).wrapping_add(i as u8));
        std::fs::write(&key, seed).unwrap();
        let peer = mesh::key::load_seed_file(&key)
            .unwrap()
            .public()
            .to_peer_id()
            .to_string();
        // Each node's own first-boot file (absent unless written below),
        // never the host's.
        let node_config = dir.path().join(format!("n{i}.firstboot.json"));
        let api = dir.path().join(format!("n{i}.sock"));
        let log = dir.path().join(format!("n{i}.log"));
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &spaces[i - 1].0,
            env!("CARGO_BIN_EXE_xnode-agent"),
        ])
        .args(["mesh", "run", "--no-manifest", "--metrics-interval", "1"])
        .arg("--key")
        .arg(&key)
        .arg("--api")
        .arg(&api)
        .arg("--node-config")
        .arg(&node_config);
        for l in listen {
            cmd.args(["--listen", l]);
        }
        if let Some(b) = bootstrap {
            cmd.args(["--bootstrap", &b]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let node = Node {
            child,
            api,
            log,
            peer,
        };
        eventually(&format!("node {i} serves its API"), &[&node], || {
            node.api.exists()
        });
        node
    };

    let n1 = start(
        1,
        &[
            "/ip4/10.77.0.1/tcp/4100".into(),
            "/ip4/10.77.0.1/udp/4100/quic-v1".into(),
        ],
        None,
    );
    let n2 = start(
        2,
        &["/ip4/10.77.0.2/tcp/4100".into()],
        Some(format!("/ip4/10.77.0.1/tcp/4100/p2p/{}", n1.peer)),
    );
    // Node 3 joins through the bootstrap peer its first-boot configuration
    // names, as an operator's xnode.json would.
    std::fs::write(
        dir.path().join("n3.firstboot.json"),
        serde_json::json!({
            "schema": "xnode.firstboot/v1",
            "role": "full",
            "bootstrap": {"mesh": [format!("/ip4/10.77.0.1/udp/4100/quic-v1/p2p/{}", n1.peer)]},
        })
        .to_string(),
    )
    .unwrap();
    let n3 = start(3, &["/ip4/10.77.0.3/udp/4100/quic-v1".into()], None);
    let log3 = std::fs::read_to_string(&n3.log).unwrap();
    assert!(
        log3.contains("1 bootstrap peer(s) from"),
        "node 3 did not read its first-boot file: {log3}"
    );
    let all = [&n1, &n2, &n3];

    // Node 3 listens on QUIC alone.
    let (ok, out) = mesh_cli(&n3.api, &["status"]);
    assert!(ok, "{out}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["peer_id"], n3.peer.as_str());
    assert_eq!(
        status["listen"],
        serde_json::json!(["/ip4/10.77.0.3/udp/4100/quic-v1"])
    );

    // Discovery: node 3 publishes, node 2 finds it with its endpoint.
    let (ok, out) = mesh_cli(
        &n3.api,
        &[
            "publish",
            "hello-web",
            "--endpoint",
            "/ip4/10.77.0.3/tcp/8080",
        ],
    );
    assert!(ok, "{out}");
    eventually("node 2 finds node 3's hello-web", &all, || {
        let (ok, out) = mesh_cli(&n2.api, &["find", "hello-web"]);
        ok && out.contains(&n3.peer) && out.contains("/ip4/10.77.0.3/tcp/8080")
    });
    let (ok, out) = mesh_cli(&n2.api, &["find", "no-such-service"]);
    assert!(!ok && out.contains("no live record"), "{out}");

    // Gossip: each node hears the others' metrics.
    for (n, others) in [(&n1, [&n2, &n3]), (&n2, [&n1, &n3]), (&n3, [&n1, &n2])] {
        eventually(
            &format!("{} hears the others' metrics", n.peer),
            &all,
            || {
                let (ok, out) = mesh_cli(&n.api, &["nodes"]);
                let Ok(nodes) = serde_json::from_str::<Vec<Value>>(&out) else {
                    return false;
                };
                ok && others.iter().all(|o| {
                    nodes
                        .iter()
                        .any(|v| v["peer"] == o.peer.as_str() && v["metrics_unix"].is_u64())
                })
            },
        );
    }

    // The agent's own health check for a mesh service, against node 1's
    // API: healthy, with node 1's two peers.
    let service: supervisor::manifest::Service = serde_json::from_value(serde_json::json!({
        "name": "mesh",
        "unit": "xnode-mesh.service",
        "kind": "mesh",
        "settings": {"api": n1.api},
    }))
    .unwrap();
    let mut check = supervisor::health::Schedule::for_service(&service)
        .unwrap()
        .expect("the mesh kind has its own check");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seen = rt.block_on(check.run());
    assert!(seen.healthy, "{seen:?}");
    assert!(
        matches!(
            seen.metrics,
            supervisor::health::KindMetrics::Mesh { peers, routing_table, .. } if peers >= 2 && routing_table >= 2
        ),
        "{seen:?}"
    );

    // Bad input to the API is refused with the reason; the node goes on.
    let (ok, out) = mesh_cli(
        &n1.api,
        &["publish", "Bad Name", "--endpoint", "/ip4/10.77.0.1/tcp/1"],
    );
    assert!(!ok && out.contains("service name"), "{out}");
    let (ok, out) = mesh_cli(&n1.api, &["status"]);
    assert!(ok, "{out}");
}
