#![allow(clippy::unwrap_used, clippy::expect_used)]
//! CometBFT, without CometBFT: the health check against a loopback server
//! that answers JSON-RPC over HTTP/1.1 with the bodies CometBFT v0.38
//! documents (tests/fixtures/cometbft/), and init_home in a temporary home.
//! These are contract tests; the real binary runs only in the flake's VM tests.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use supervisor::cometbft::{self, Action, Health, InitError, Settings};
use supervisor::health::KindMetrics;
use tokio::net::{TcpListener, TcpStream};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/cometbft")
        .join(name)
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

fn settings(v: Value) -> Settings {
    Settings::parse(v.as_object().unwrap()).unwrap()
}

// ---------------------------------------------------------------------------
// A loopback CometBFT RPC

/// What the fake node reports.
#[derive(Debug, Clone)]
struct Node {
    height: u64,
    catching_up: bool,
    peers: u64,
}

#[derive(Debug, Clone)]
enum Behaviour {
    /// Answer /status and /net_info from the fixtures and this state.
    Serve(Arc<Mutex<Node>>),
    /// 200 OK with a body that is not JSON-RPC.
    Garbage,
    /// HTTP 500 for everything.
    Status500,
    /// A JSON-RPC error object, as CometBFT sends for a failed method.
    RpcError,
    /// Read the request, then never answer.
    Silent,
}

/// Serve `behaviour` on 127.0.0.1; the port is the OS's choice.
async fn serve(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(answer(conn, behaviour.clone()));
        }
    });
    addr
}

/// One HTTP/1.1 request: headers, then Content-Length bytes of body.
async fn read_request(conn: &TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(buf[end + 4..end + 4 + len].to_vec());
            }
        }
        conn.readable().await.ok()?;
        let mut chunk = [0u8; 4096];
        match conn.try_read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

async fn write_all(conn: &TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        if conn.writable().await.is_err() {
            return;
        }
        match conn.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
    }
}

async fn answer(conn: TcpStream, behaviour: Behaviour) {
    let Some(body) = read_request(&conn).await else {
        return;
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = request["id"].clone();
    let method = request["method"].as_str().unwrap_or_default().to_string();
    let (status, body) = match &behaviour {
        Behaviour::Silent => {
            // Hold the connection open, answering nothing.
            std::future::pending::<()>().await;
            return;
        }
        Behaviour::Status500 => ("500 Internal Server Error", "internal error".to_string()),
        Behaviour::Garbage => ("200 OK", "<html>502 Bad Gateway</html>".to_string()),
        Behaviour::RpcError => (
            "200 OK",
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "Internal error", "data": "node is shutting down"}})
                .to_string(),
        ),
        Behaviour::Serve(node) => {
            let node = node.lock().unwrap().clone();
            ("200 OK", rpc_body(&method, id, &node).to_string())
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    write_all(&conn, head.as_bytes()).await;
    write_all(&conn, body.as_bytes()).await;
}

/// The documented body for `method`, with the scenario's fields set.
fn rpc_body(method: &str, id: Value, node: &Node) -> Value {
    let mut v = match method {
        "status" => {
            let mut v = fixture_json("status.json");
            v["result"]["sync_info"]["latest_block_height"] = node.height.to_string().into();
            v["result"]["sync_info"]["catching_up"] = node.catching_up.into();
            v
        }
        "net_info" => {
            let mut v = fixture_json("net_info.json");
            let peer = v["result"]["peers"][0].clone();
            let peers: Vec<Value> = (0..node.peers)
                .map(|i| {
                    let mut p = peer.clone();
                    p["node_info"]["id"] = format!("{:040x}", i + 1).into();
                    p
                })
                .collect();
            v["result"]["n_peers"] = node.peers.to_string().into();
            v["result"]["peers"] = peers.into();
            v
        }
        _ => {
            json!({"jsonrpc": "2.0", "id": -1, "error": {"code": -32601, "message": "Method not found"}})
        }
    };
    v["id"] = id;
    v
}

fn health_for(addr: SocketAddr, extra: Value, timeout: Duration) -> Health {
    let mut v = json!({
        "home": "/var/lib/cometbft",
        "moniker": "xnode-test",
        "chain_id": "cosmoshub-4",
        "rpc_laddr": format!("tcp://{addr}"),
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    Health::new(&settings(v), timeout)
}

fn node(height: u64, catching_up: bool, peers: u64) -> Arc<Mutex<Node>> {
    Arc::new(Mutex::new(Node {
        height,
        catching_up,
        peers,
    }))
}

const TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Health contract

#[tokio::test]
async fn contract_healthy_node() {
    let state = node(5622165, false, 3);
    let addr = serve(Behaviour::Serve(state.clone())).await;
    let mut h = health_for(addr, json!({"min_peers": 3}), TIMEOUT);

    let r = h.check().await;
    assert!(r.healthy, "{r:?}");
    assert_eq!(
        r.metrics,
        KindMetrics::Cometbft {
            height: 5622165,
            peers: 3,
            catching_up: false
        }
    );
    assert!(
        r.detail.contains("height 5622165") && r.detail.contains("3 peers"),
        "{}",
        r.detail
    );

    state.lock().unwrap().height += 2;
    let r = h.check().await;
    assert!(r.healthy, "{r:?}");
    assert!(r.detail.contains("height 5622167 (+2)"), "{}", r.detail);
}

#[tokio::test]
async fn contract_catching_up() {
    let addr = serve(Behaviour::Serve(node(812, true, 5))).await;
    let mut h = health_for(addr, json!({}), TIMEOUT);
    let r = h.check().await;
    assert!(!r.healthy);
    assert_eq!(r.detail, "catching up at height 812");
    assert_eq!(
        r.metrics,
        KindMetrics::Cometbft {
            height: 812,
            peers: 5,
            catching_up: true
        }
    );
}

#[tokio::test]
async fn contract_height_stalled() {
    let state = node(1042, false, 1);
    let addr = serve(Behaviour::Serve(state.clone())).await;
    let mut h = health_for(addr, json!({"stall_secs": 0.2}), TIMEOUT);

    // The first sight of a height cannot be a stall.
    let r = h.check().await;
    assert!(r.healthy, "{r:?}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = h.check().await;
    assert!(!r.healthy);
    assert!(
        r.detail.starts_with("height 1042 unchanged for"),
        "{}",
        r.detail
    );
    assert!(
        r.detail.ends_with("(at most 0.2 s allowed)"),
        "{}",
        r.detail
    );

    // Progress clears it.
    state.lock().unwrap().height += 1;
    let r = h.check().await;
    assert!(r.healthy, "{r:?}");
}

#[tokio::test]
async fn contract_too_few_peers() {
    let addr = serve(Behaviour::Serve(node(100, false, 2))).await;
    let mut h = health_for(addr, json!({"min_peers": 3}), TIMEOUT);
    let r = h.check().await;
    assert!(!r.healthy);
    assert_eq!(r.detail, "2 peers, fewer than the 3 required");
    assert_eq!(
        r.metrics,
        KindMetrics::Cometbft {
            height: 100,
            peers: 2,
            catching_up: false
        }
    );
}

#[tokio::test]
async fn contract_every_reason_is_reported() {
    let addr = serve(Behaviour::Serve(node(9, true, 0))).await;
    let mut h = health_for(addr, json!({"min_peers": 1}), TIMEOUT);
    let r = h.check().await;
    assert_eq!(
        r.detail,
        "catching up at height 9; 0 peers, fewer than the 1 required"
    );
}

#[tokio::test]
async fn contract_garbage_body() {
    let addr = serve(Behaviour::Garbage).await;
    let mut h = health_for(addr, json!({}), TIMEOUT);
    let r = h.check().await;
    assert!(!r.healthy);
    assert!(
        r.detail.starts_with("RPC returned garbage for /status: "),
        "{}",
        r.detail
    );
    // One line for an operator, whatever RUST_BACKTRACE says.
    assert!(!r.detail.contains('\n'), "{}", r.detail);
    assert_eq!(r.metrics, KindMetrics::None);
}

#[tokio::test]
async fn contract_http_500() {
    let addr = serve(Behaviour::Status500).await;
    let mut h = health_for(addr, json!({}), TIMEOUT);
    let r = h.check().await;
    assert!(!r.healthy);
    assert!(
        r.detail
            .starts_with(&format!("RPC at http://{addr}: /status answered HTTP 500")),
        "{}",
        r.detail
    );
    // The same failure of /net_info is not said twice.
    assert!(!r.detail.contains("/net_info"), "{}", r.detail);
    assert_eq!(r.metrics, KindMetrics::None);
}

#[tokio::test]
async fn contract_json_rpc_error() {
    let addr = serve(Behaviour::RpcError).await;
    let mut h = health_for(addr, json!({}), TIMEOUT);
    let r = h.check().await;
    assert!(!r.healthy);
    assert!(
        r.detail.starts_with("RPC error from /status: "),
        "{}",
        r.detail
    );
    assert!(r.detail.contains("node is shutting down"), "{}", r.detail);
}

#[tokio::test]
async fn contract_silent_server_is_bounded_by_the_timeout() {
    let addr = serve(Behaviour::Silent).await;
    let mut h = health_for(addr, json!({}), Duration::from_millis(300));
    // The outer bound only turns a hang into a failure; it asserts no timing.
    let r = tokio::time::timeout(Duration::from_secs(30), h.check())
        .await
        .expect("the check hung past its own timeout");
    assert!(!r.healthy);
    assert!(
        r.detail.contains(&format!("RPC at http://{addr}")),
        "{}",
        r.detail
    );
    assert!(r.detail.contains("no answer within 0.3 s"), "{}", r.detail);
}

#[tokio::test]
async fn contract_connection_refused() {
    // A port that was just free: bound, read, released.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut h = health_for(addr, json!({}), TIMEOUT);
    let r = h.check().await;
    assert!(!r.healthy);
    assert_eq!(
        r.detail,
        format!("RPC at http://{addr}: connection refused")
    );
    assert_eq!(r.metrics, KindMetrics::None);
}

// ---------------------------------------------------------------------------
// init_home

struct Home {
    _dir: tempfile::TempDir,
    home: PathBuf,
    genesis: PathBuf,
}

/// An empty temporary directory with the fixture genesis beside the home.
fn temp_home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let genesis = dir.path().join("genesis.json");
    std::fs::copy(fixture("genesis.json"), &genesis).unwrap();
    Home {
        home: dir.path().join("cometbft"),
        genesis,
        _dir: dir,
    }
}

fn init_settings(h: &Home, extra: Value) -> Settings {
    let mut v = json!({
        "home": h.home,
        "moniker": "xnode-1",
        "chain_id": "test-chain-ROp9KF",
        "genesis": h.genesis,
        "persistent_peers": ["5576458aef205977e18fd50b274e9b5d9014525a@10.0.0.2:26656"],
        "seeds": ["b93270b358a72a2db30089f3856475bb1f918d6d@seed.example.org:26656"],
        "config": {"consensus": {"timeout_commit": "1s"}, "log_level": "info"}
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    settings(v)
}

const FILES: [&str; 5] = [
    "config/config.toml",
    "config/genesis.json",
    "config/node_key.json",
    "config/priv_validator_key.json",
    "data/priv_validator_state.json",
];

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file under the home with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn init_creates_the_home_with_cometbft_files_and_modes() {
    let h = temp_home();
    let report = cometbft::init_home(&init_settings(&h, json!({}))).unwrap();
    for f in FILES {
        assert_eq!(report.action(f), Some(Action::Created), "{f}");
        assert!(h.home.join(f).is_file(), "{f}");
    }
    for secret in [
        "config/node_key.json",
        "config/priv_validator_key.json",
        "data/priv_validator_state.json",
    ] {
        assert_eq!(mode(&h.home.join(secret)), 0o600, "{secret}");
    }
    for dir in ["config", "data"] {
        assert_eq!(mode(&h.home.join(dir)), 0o700, "{dir}");
    }
    assert_eq!(
        std::fs::read(h.home.join("config/genesis.json")).unwrap(),
        std::fs::read(&h.genesis).unwrap()
    );
    // No temporary files left behind.
    assert_eq!(snapshot(&h.home).len(), FILES.len());

    // CometBFT's formats.
    let node: Value =
        serde_json::from_slice(&std::fs::read(h.home.join("config/node_key.json")).unwrap())
            .unwrap();
    assert_eq!(node["priv_key"]["type"], "tendermint/PrivKeyEd25519");
    let pv: Value = serde_json::from_slice(
        &std::fs::read(h.home.join("config/priv_validator_key.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(pv["pub_key"]["type"], "tendermint/PubKeyEd25519");
    assert_eq!(pv["priv_key"]["type"], "tendermint/PrivKeyEd25519");
    assert_eq!(pv["address"], report.validator_address.as_str());
    assert_eq!(pv["pub_key"]["value"], report.validator_pub_key.as_str());
    let state: Value = serde_json::from_slice(
        &std::fs::read(h.home.join("data/priv_validator_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state, json!({"height": "0", "round": 0, "step": 0}));

    // The node id is derivable from the home, and the report says it.
    let id = cometbft::node_id(&h.home).unwrap();
    assert_eq!(id, report.node_id);
    assert_eq!(id.len(), 40);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let shown = report.to_string();
    assert!(
        shown.contains(&id) && shown.contains("created") && shown.contains("config/node_key.json"),
        "{shown}"
    );
}

#[test]
fn init_second_run_keeps_every_byte() {
    let h = temp_home();
    let s = init_settings(&h, json!({}));
    let first = cometbft::init_home(&s).unwrap();
    let before = snapshot(&h.home);
    let second = cometbft::init_home(&s).unwrap();
    for f in FILES {
        assert_eq!(second.action(f), Some(Action::Kept), "{f}");
    }
    assert_eq!(snapshot(&h.home), before);
    assert_eq!(first.node_id, second.node_id);
    assert_eq!(first.validator_address, second.validator_address);
}

#[test]
fn init_changed_setting_updates_config_but_not_keys() {
    let h = temp_home();
    cometbft::init_home(&init_settings(&h, json!({}))).unwrap();
    let keys = |h: &Home| {
        [
            "config/node_key.json",
            "config/priv_validator_key.json",
            "data/priv_validator_state.json",
        ]
        .map(|f| std::fs::read(h.home.join(f)).unwrap())
    };
    let before = keys(&h);
    let r = cometbft::init_home(&init_settings(&h, json!({"moniker": "xnode-renamed"}))).unwrap();
    assert_eq!(r.action("config/config.toml"), Some(Action::Updated));
    for f in &FILES[1..] {
        assert_eq!(r.action(f), Some(Action::Kept), "{f}");
    }
    assert_eq!(keys(&h), before);
    let t: toml::Table =
        toml::from_str(&std::fs::read_to_string(h.home.join("config/config.toml")).unwrap())
            .unwrap();
    assert_eq!(t["moniker"].as_str(), Some("xnode-renamed"));
}

#[test]
fn init_config_toml_parses_back_with_the_settings() {
    let h = temp_home();
    let s = init_settings(
        &h,
        json!({"priv_validator_laddr": "tcp://127.0.0.1:1234", "rpc_laddr": "tcp://127.0.0.1:36657"}),
    );
    let report = cometbft::init_home(&s).unwrap();
    let t: toml::Table =
        toml::from_str(&std::fs::read_to_string(h.home.join("config/config.toml")).unwrap())
            .unwrap();
    assert_eq!(t["moniker"].as_str(), Some("xnode-1"));
    assert_eq!(t["proxy_app"].as_str(), Some("tcp://127.0.0.1:26658"));
    assert_eq!(
        t["priv_validator_laddr"].as_str(),
        Some("tcp://127.0.0.1:1234")
    );
    assert_eq!(t["genesis_file"].as_str(), Some("config/genesis.json"));
    assert_eq!(t["log_level"].as_str(), Some("info"));
    assert_eq!(t["rpc"]["laddr"].as_str(), Some("tcp://127.0.0.1:36657"));
    assert_eq!(t["p2p"]["laddr"].as_str(), Some("tcp://0.0.0.0:26656"));
    assert_eq!(
        t["p2p"]["persistent_peers"].as_str(),
        Some(s.persistent_peers.join(",").as_str())
    );
    assert_eq!(t["p2p"]["seeds"].as_str(), Some(s.seeds.join(",").as_str()));
    assert_eq!(t["consensus"]["timeout_commit"].as_str(), Some("1s"));
    // With a remote signer the local key is still made (CometBFT loads it at
    // start either way), and the report says it does not sign.
    assert_eq!(
        report.remote_signer.as_deref(),
        Some("tcp://127.0.0.1:1234")
    );
    assert!(
        report
            .to_string()
            .contains("remote signer on tcp://127.0.0.1:1234"),
        "{report}"
    );

    // Without one, CometBFT's "sign locally" is the empty string.
    let r = cometbft::init_home(&init_settings(&h, json!({}))).unwrap();
    assert_eq!(r.action("config/config.toml"), Some(Action::Updated));
    let t: toml::Table =
        toml::from_str(&std::fs::read_to_string(h.home.join("config/config.toml")).unwrap())
            .unwrap();
    assert_eq!(t["priv_validator_laddr"].as_str(), Some(""));
}

#[test]
fn init_invalid_settings_write_nothing() {
    let h = temp_home();
    let mut s = init_settings(&h, json!({}));
    s.persistent_peers.push("not-a-peer".into());
    s.stall_secs = -1.0;
    let e = cometbft::init_home(&s).unwrap_err();
    let InitError::Invalid(problems) = &e else {
        panic!("{e}")
    };
    let fields: Vec<_> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["persistent_peers[1]", "stall_secs"]);
    assert!(
        e.to_string().contains("settings.persistent_peers[1]"),
        "{e}"
    );
    assert!(!h.home.exists());
}

#[test]
fn init_refuses_a_different_genesis_and_changes_nothing() {
    let h = temp_home();
    cometbft::init_home(&init_settings(&h, json!({}))).unwrap();
    let before = snapshot(&h.home);

    let other = h.genesis.with_file_name("other-genesis.json");
    let mut g = fixture_json("genesis.json");
    g["genesis_time"] = "2024-01-01T00:00:00Z".into();
    std::fs::write(&other, serde_json::to_vec(&g).unwrap()).unwrap();
    // A changed moniker too: config.toml must not be touched either.
    let e = cometbft::init_home(&init_settings(
        &h,
        json!({"genesis": other, "moniker": "changed"}),
    ))
    .unwrap_err();
    assert!(matches!(e, InitError::GenesisConflict { .. }), "{e}");
    assert!(e.to_string().contains("refusing to replace"), "{e}");
    assert_eq!(snapshot(&h.home), before);

    // The same genesis given again is fine, and said to be identical.
    let r = cometbft::init_home(&init_settings(&h, json!({}))).unwrap();
    assert_eq!(r.action("config/genesis.json"), Some(Action::Kept));
}

#[test]
fn init_without_genesis_names_the_fix() {
    let h = temp_home();
    let mut s = init_settings(&h, json!({}));
    s.genesis = None;
    let e = cometbft::init_home(&s).unwrap_err();
    assert!(matches!(e, InitError::GenesisMissing { .. }), "{e}");
    assert!(e.to_string().contains("set settings.genesis"), "{e}");
    assert!(!h.home.exists());

    // Once installed, the setting may go.
    cometbft::init_home(&init_settings(&h, json!({}))).unwrap();
    let r = cometbft::init_home(&s).unwrap();
    assert_eq!(r.action("config/genesis.json"), Some(Action::Kept));
}

#[test]
fn init_rejects_a_genesis_for_another_chain() {
    let h = temp_home();
    let e = cometbft::init_home(&init_settings(&h, json!({"chain_id": "xnode-mainnet-1"})))
        .unwrap_err();
    assert!(matches!(e, InitError::ChainIdMismatch { .. }), "{e}");
    assert!(e.to_string().contains("'test-chain-ROp9KF'"), "{e}");
    assert!(!h.home.exists());
}

#[test]
fn init_unparseable_key_is_an_error_and_left_untouched() {
    let h = temp_home();
    std::fs::create_dir_all(h.home.join("config")).unwrap();
    let garbage =
        b"{\"priv_key\": {\"type\": \"tendermint/PrivKeyEd25519\", \"value\": \"c2hvcnQ=\"}}";
    let key = h.home.join("config/node_key.json");
    std::fs::write(&key, garbage).unwrap();
    let e = cometbft::init_home(&init_settings(&h, json!({}))).unwrap_err();
    assert!(matches!(e, InitError::KeyUnparseable { .. }), "{e}");
    assert!(e.to_string().contains("left untouched"), "{e}");
    assert_eq!(std::fs::read(&key).unwrap(), garbage);
    // Nothing else was written either.
    assert_eq!(snapshot(&h.home), vec![(key, garbage.to_vec())]);
}

#[test]
fn init_tightens_a_loose_key_mode_and_keeps_the_key() {
    let h = temp_home();
    let s = init_settings(&h, json!({}));
    cometbft::init_home(&s).unwrap();
    let key = h.home.join("config/priv_validator_key.json");
    let bytes = std::fs::read(&key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = cometbft::init_home(&s).unwrap();
    assert_eq!(
        r.action("config/priv_validator_key.json"),
        Some(Action::Kept)
    );
    assert_eq!(mode(&key), 0o600);
    assert_eq!(std::fs::read(&key).unwrap(), bytes);
}
