#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Contract tests for the kubo kind: the health check against a loopback
//! server that answers as kubo's RPC does (the bodies in
//! tests/fixtures/kubo, chunked with the `X-Stream-Error` trailer, 405 for
//! anything but POST), and `configure` on a copy of the config that
//! `ipfs init --profile server` writes. The real kubo runs only in the
//! flake's VM tests.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use supervisor::health::{KindMetrics, KindReport};
use supervisor::kubo::{configure, ConfigureError, Health, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixture(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/kubo");
    std::fs::read(dir.join(name)).unwrap()
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

// ---------------------------------------------------------------------------
// A kubo RPC on loopback

#[derive(Clone)]
enum Reply {
    /// 200 with this fixture's body.
    Ok(&'static str),
    /// This status with this fixture's body (kubo's error JSON).
    Status(u16, &'static str),
    /// 200 with these bytes.
    Raw(&'static [u8]),
    /// Read the request, never answer.
    Hang,
}

/// kubo's answers for the calls the check makes.
fn kubo(target: &str) -> Reply {
    match target {
        "/api/v0/id" => Reply::Ok("id.json"),
        "/api/v0/swarm/peers" => Reply::Ok("swarm_peers.json"),
        "/api/v0/repo/stat?size-only=true" => Reply::Ok("repo_stat_size_only.json"),
        // `ipfs stats repo` is the same command (core/commands/stat.go).
        "/api/v0/repo/stat" | "/api/v0/stats/repo" => Reply::Ok("repo_stat.json"),
        _ => Reply::Status(404, "404 page not found\n"),
    }
}

struct FakeKubo {
    addr: SocketAddr,
    /// (method, target) of every request.
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

async fn fake_kubo(route: impl Fn(&str) -> Reply + Send + Sync + 'static) -> FakeKubo {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let route = Arc::new(route);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let route = route.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Some((method, target)) = read_request(&mut conn).await else {
                    return;
                };
                log.lock().unwrap().push((method.clone(), target.clone()));
                let reply = if method == "POST" {
                    // An empty query (`/api/v0/id?`) is no query.
                    route(target.strip_suffix('?').unwrap_or(&target))
                } else {
                    // go-ipfs-cmds http/handler.go: POST only (OPTIONS aside).
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 405 Method Not Allowed\r\nAllow: OPTIONS, POST\r\n\
                              Content-Type: text/plain; charset=utf-8\r\n\
                              X-Content-Type-Options: nosniff\r\nContent-Length: 25\r\n\
                              Connection: close\r\n\r\n405 - Method Not Allowed\n",
                        )
                        .await;
                    return;
                };
                let (status, body) = match reply {
                    Reply::Ok(name) => (200, fixture(name)),
                    Reply::Status(status, name) if name.ends_with(".json") => {
                        (status, fixture(name))
                    }
                    Reply::Status(status, text) => (status, text.as_bytes().to_vec()),
                    Reply::Raw(bytes) => (200, bytes.to_vec()),
                    Reply::Hang => return std::future::pending().await,
                };
                let _ = conn.write_all(&kubo_answer(status, &body)).await;
            });
        }
    });
    FakeKubo { addr, seen }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut first = text.lines().next()?.split(' ');
    Some((first.next()?.to_string(), first.next()?.to_string()))
}

/// An answer as kubo's go-ipfs-cmds writes it: the Trailer header makes Go
/// send the body chunked.
fn kubo_answer(status: u16, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\n\
         Access-Control-Allow-Headers: X-Stream-Output, X-Chunked-Output, X-Content-Length\r\n\
         Access-Control-Expose-Headers: X-Stream-Output, X-Chunked-Output, X-Content-Length\r\n\
         Connection: close\r\nContent-Type: application/json\r\nServer: kubo/0.42.0\r\n\
         Trailer: X-Stream-Error\r\nVary: Origin\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

fn settings_for(addr: SocketAddr, min_peers: u64) -> Settings {
    Settings {
        api: format!("/ip4/127.0.0.1/tcp/{}", addr.port()),
        min_peers,
        ..Settings::default()
    }
}

async fn check(addr: SocketAddr, min_peers: u64, timeout: Duration) -> KindReport {
    let mut health = Health::new(&settings_for(addr, min_peers), timeout);
    // A guard so that a hang fails the test instead of stalling it.
    tokio::time::timeout(Duration::from_secs(60), health.check())
        .await
        .expect("the check outlived its own timeout")
}

const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Health

#[tokio::test]
async fn contract_healthy_node_posts_every_call() {
    let k = fake_kubo(kubo).await;
    let r = check(k.addr, 2, TIMEOUT).await;
    assert!(r.healthy, "{r:?}");

    let id = fixture_json("id.json");
    let sizes = fixture_json("repo_stat_size_only.json");
    let full = fixture_json("repo_stat.json");
    let peers = fixture_json("swarm_peers.json")["Peers"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert_eq!(
        r.metrics,
        KindMetrics::Kubo {
            peers,
            repo_size_bytes: sizes["RepoSize"].as_u64().unwrap(),
            storage_max_bytes: sizes["StorageMax"].as_u64().unwrap(),
            objects: full["NumObjects"].as_u64().unwrap(),
        }
    );
    assert!(
        r.detail.starts_with(id["ID"].as_str().unwrap()),
        "{}",
        r.detail
    );
    assert!(r.detail.contains(&format!("{peers} peers")), "{}", r.detail);

    // The fake answers 405 to anything but POST, so a healthy verdict
    // already shows the methods; the log shows the calls.
    let seen = k.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(m, _)| m == "POST"), "{seen:?}");
    let targets: BTreeSet<&str> = seen.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        targets,
        BTreeSet::from([
            "/api/v0/id",
            "/api/v0/swarm/peers",
            "/api/v0/repo/stat?size-only=true",
            "/api/v0/repo/stat",
        ])
    );
}

#[tokio::test]
async fn contract_objects_are_counted_once_per_interval() {
    // The full repo/stat walks the whole blockstore; checks in between
    // use size-only and keep the last count.
    let k = fake_kubo(kubo).await;
    let mut health = Health::new(&settings_for(k.addr, 0), TIMEOUT);
    let first = health.check().await;
    let second = health.check().await;
    assert!(first.healthy && second.healthy, "{first:?} {second:?}");
    assert_eq!(first.metrics, second.metrics);
    let full = k
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, t)| t == "/api/v0/repo/stat")
        .count();
    assert_eq!(full, 1);
}

#[tokio::test]
async fn contract_a_failed_object_count_leaves_the_verdict_alone() {
    let k = fake_kubo(|t| match t {
        "/api/v0/repo/stat" => Reply::Status(500, "error_offline.json"),
        t => kubo(t),
    })
    .await;
    let r = check(k.addr, 0, TIMEOUT).await;
    assert!(r.healthy, "{r:?}");
    assert!(!r.detail.contains("object"), "{}", r.detail);
    assert!(
        matches!(r.metrics, KindMetrics::Kubo { objects: 0, .. }),
        "{r:?}"
    );
}

#[tokio::test]
async fn contract_the_fake_rejects_get_as_kubo_does() {
    let k = fake_kubo(kubo).await;
    let mut conn = tokio::net::TcpStream::connect(k.addr).await.unwrap();
    conn.write_all(b"GET /api/v0/id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 405 Method Not Allowed"),
        "{answer}"
    );
}

#[tokio::test]
async fn contract_no_peers_is_null_and_counts_as_zero() {
    let k = fake_kubo(|t| match t {
        "/api/v0/swarm/peers" => Reply::Ok("swarm_peers_none.json"),
        t => kubo(t),
    })
    .await;
    let r = check(k.addr, 0, TIMEOUT).await;
    assert!(r.healthy, "{r:?}");
    assert!(
        matches!(r.metrics, KindMetrics::Kubo { peers: 0, .. }),
        "{r:?}"
    );

    let r = check(k.addr, 1, TIMEOUT).await;
    assert!(!r.healthy);
    assert_eq!(r.detail, "0 peers, fewer than the 1 required");
    // The figures were read; only the verdict differs.
    assert!(
        matches!(r.metrics, KindMetrics::Kubo { peers: 0, .. }),
        "{r:?}"
    );
}

#[tokio::test]
async fn contract_too_few_peers() {
    let k = fake_kubo(kubo).await;
    let r = check(k.addr, 4, TIMEOUT).await;
    assert!(!r.healthy);
    assert_eq!(r.detail, "3 peers, fewer than the 4 required");
}

#[tokio::test]
async fn contract_full_repo_is_unhealthy() {
    let k = fake_kubo(|t| match t {
        "/api/v0/repo/stat?size-only=true" => Reply::Ok("repo_stat_size_only_full.json"),
        t => kubo(t),
    })
    .await;
    let r = check(k.addr, 0, TIMEOUT).await;
    assert!(!r.healthy);
    // 100200000000 of 100000000000 bytes in the fixture.
    assert_eq!(r.detail, "repo 100.2 GB of 100 GB: at its StorageMax");
}

#[tokio::test]
async fn contract_garbage_body_is_named() {
    let k = fake_kubo(|t| match t {
        "/api/v0/repo/stat?size-only=true" => Reply::Raw(b"<html>502 Bad Gateway</html>\n"),
        t => kubo(t),
    })
    .await;
    let r = check(k.addr, 0, TIMEOUT).await;
    assert!(!r.healthy);
    assert!(
        r.detail.starts_with("garbage from repo/stat: "),
        "{}",
        r.detail
    );
    assert!(r.detail.contains("<html>502"), "{}", r.detail);
    assert_eq!(r.metrics, KindMetrics::None);
}

#[tokio::test]
async fn contract_kubo_error_json_is_shown() {
    // A daemon started with --offline: id works, swarm/peers is an error.
    let k = fake_kubo(|t| match t {
        "/api/v0/swarm/peers" => Reply::Status(500, "error_offline.json"),
        t => kubo(t),
    })
    .await;
    let r = check(k.addr, 0, TIMEOUT).await;
    assert!(!r.healthy);
    let message = fixture_json("error_offline.json")["Message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        r.detail,
        format!("swarm/peers answered HTTP 500: {message}")
    );
}

#[tokio::test]
async fn contract_silent_server_fails_within_the_timeout() {
    let k = fake_kubo(|_| Reply::Hang).await;
    let r = check(k.addr, 0, Duration::from_millis(300)).await;
    assert!(!r.healthy);
    assert!(r.detail.contains("no answer within 0.3 s"), "{}", r.detail);
}

#[tokio::test]
async fn contract_connection_refused() {
    // A port that was just free: bound, then released.
    let addr = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let r = check(addr, 0, TIMEOUT).await;
    assert!(!r.healthy);
    assert_eq!(r.detail, format!("API at {addr}: connection refused"));
}

#[tokio::test]
async fn contract_ipfs_api_backend_hyper_0_6_cannot_read_current_kubo() {
    // Why the check has its own client (docs/kubo.md). The crate POSTs (its
    // repo_stat gets an answer from the fake, which refuses anything else),
    // but its response types are older than kubo's.
    use ipfs_api_backend_hyper::{IpfsApi, IpfsClient, TryFromUri};
    let k = fake_kubo(kubo).await;
    let client =
        IpfsClient::from_multiaddr_str(&format!("/ip4/127.0.0.1/tcp/{}", k.addr.port())).unwrap();

    let id = client.id(None).await.unwrap_err().to_string();
    assert!(id.contains("missing field `ProtocolVersion`"), "{id}");

    let peers = client.swarm_peers().await.unwrap_err().to_string();
    assert!(peers.contains("missing field `Latency`"), "{peers}");

    // Its only repo stat is `stats repo`, the same command: it reads, but
    // has no StorageMax field to give.
    let stat = client.stats_repo().await.unwrap();
    assert_eq!(
        stat.repo_size,
        fixture_json("repo_stat.json")["RepoSize"].as_u64().unwrap()
    );
    assert!(k.seen.lock().unwrap().iter().all(|(m, _)| m == "POST"));
}

// ---------------------------------------------------------------------------
// configure

const BOOT: &str =
    "/ip4/198.51.100.20/tcp/4001/p2p/12D3KooW9yhjWbyY7SmjHdDJdGFBJ6qfZ7jxvhr2hjb2MBA2jED3";

/// A repo holding `config` (bytes) with `mode`.
fn repo_with(config: &[u8], mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, config).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn settings_in(repo: &Path) -> Settings {
    Settings {
        repo: repo.to_path_buf(),
        api: "/ip4/127.0.0.1/tcp/15001".into(),
        bootstrap: vec![BOOT.into()],
        storage_max: "100GB".into(),
        config: json!({"Datastore": {"GCPeriod": "2h"}, "Swarm": {"ConnMgr": {"HighWater": 200}}})
            .as_object()
            .unwrap()
            .clone(),
        ..Settings::default()
    }
}

#[test]
fn contract_configure_sets_its_fields_and_keeps_every_other() {
    // ipfs init's config, plus fields this agent does not know.
    let mut before = fixture_json("config");
    before["XnodeFuture"] = json!({"kept": [1, 2.5, "x", null, {"deep": true}]});
    before["Addresses"]["FutureField"] = json!("kept");
    let repo = repo_with(&serde_json::to_vec_pretty(&before).unwrap(), 0o640);
    let s = settings_in(repo.path());

    let report = configure(&s).unwrap();
    let fields: BTreeSet<&str> = report.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "Addresses.API",
            "Addresses.Swarm",
            "Bootstrap",
            "Datastore.GCPeriod",
            "Datastore.StorageMax",
            "Swarm.ConnMgr.HighWater",
        ])
    );
    let storage = report
        .changes
        .iter()
        .find(|c| c.field == "Datastore.StorageMax")
        .unwrap();
    assert_eq!(
        storage.to_string(),
        r#"Datastore.StorageMax: "10GB" → "100GB""#
    );
    let high = report
        .changes
        .iter()
        .find(|c| c.field == "Swarm.ConnMgr.HighWater")
        .unwrap();
    assert_eq!(high.old, None);

    // The file is the old config with exactly those fields set.
    let path = repo.path().join("config");
    let after: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut expected = before.clone();
    expected["Addresses"]["API"] = json!(s.api);
    expected["Addresses"]["Swarm"] = json!(s.swarm);
    expected["Bootstrap"] = json!([BOOT]);
    expected["Datastore"]["StorageMax"] = json!("100GB");
    expected["Datastore"]["GCPeriod"] = json!("2h");
    expected["Swarm"]["ConnMgr"] = json!({"HighWater": 200});
    assert_eq!(after, expected);
    assert_eq!(after["Identity"], before["Identity"]);

    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(entries(repo.path()), BTreeSet::from(["config".to_string()]));
}

#[test]
fn contract_configure_twice_writes_once() {
    let repo = repo_with(&fixture("config"), 0o600);
    let s = settings_in(repo.path());
    assert!(!configure(&s).unwrap().changes.is_empty());
    let path = repo.path().join("config");
    let first = std::fs::metadata(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let again = configure(&s).unwrap();
    assert!(again.changes.is_empty(), "{again}");
    assert!(again.to_string().ends_with(": unchanged"), "{again}");
    let second = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (second.ino(), second.mtime(), second.mtime_nsec()),
        (first.ino(), first.mtime(), first.mtime_nsec())
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn contract_configure_keeps_the_owner() {
    let repo = repo_with(&fixture("config"), 0o600);
    let path = repo.path().join("config");
    // kubo's user (nobody here); only root may give a file away.
    if let Err(e) = std::os::unix::fs::chown(&path, Some(65534), Some(65534)) {
        eprintln!("not root ({e}): owner preservation not exercised");
        return;
    }
    configure(&settings_in(repo.path())).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (65534, 65534, 0o600)
    );
}

/// `configure` fails and the repo is byte for byte as it was.
fn fails_untouched(repo: &Path, s: &Settings) -> ConfigureError {
    let path = repo.join("config");
    let before = std::fs::read(&path).ok();
    let listing = entries(repo);
    let e = configure(s).unwrap_err();
    assert_eq!(std::fs::read(&path).ok(), before);
    assert_eq!(entries(repo), listing);
    e
}

#[test]
fn contract_configure_rejects_invalid_settings_and_changes_nothing() {
    let repo = repo_with(&fixture("config"), 0o600);
    let mut s = settings_in(repo.path());
    s.api = "/ip4/0.0.0.0/tcp/5001".into();
    s.config.insert("Identity".into(), json!({"PrivKey": "x"}));
    let e = fails_untouched(repo.path(), &s);
    let ConfigureError::Settings(problems) = &e else {
        panic!("{e}")
    };
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["api", "config.Identity"], "{e}");
    assert!(e.to_string().contains("not loopback"), "{e}");
}

#[test]
fn contract_non_loopback_api_is_rejected_at_parse() {
    let map = json!({"api": "/ip4/192.0.2.10/tcp/5001"});
    let problems = Settings::parse(map.as_object().unwrap()).unwrap_err();
    assert_eq!(problems[0].0, "api");
    assert!(problems[0].1.contains("not loopback"), "{problems:?}");
}

#[test]
fn contract_configure_leaves_a_non_json_config_alone() {
    let repo = repo_with(br#"{"Identity": {"PeerID": "12D3KooW"#, 0o600);
    let e = fails_untouched(repo.path(), &settings_in(repo.path()));
    assert!(matches!(e, ConfigureError::NotJson { .. }), "{e}");
    assert!(e.to_string().contains("left untouched"), "{e}");

    let repo = repo_with(br#"{"Addresses": "/ip4/127.0.0.1/tcp/5001"}"#, 0o600);
    let e = fails_untouched(repo.path(), &settings_in(repo.path()));
    assert!(
        matches!(e, ConfigureError::NotObject { ref field, .. } if field == "Addresses"),
        "{e}"
    );
}

#[test]
fn contract_configure_without_a_repo_says_to_init() {
    let empty = tempfile::tempdir().unwrap();
    for repo in [empty.path().to_path_buf(), empty.path().join("absent")] {
        let e = configure(&settings_in(&repo)).unwrap_err();
        assert!(matches!(e, ConfigureError::NoRepo { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("ipfs init --profile server"), "{text}");
        assert!(text.contains(&repo.display().to_string()), "{text}");
    }
    assert!(entries(empty.path()).is_empty());
}

#[test]
fn contract_golden_manifest_kubo_settings_parse() {
    let golden: Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let ipfs = golden["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "kubo")
        .unwrap();
    let s = Settings::parse(ipfs["settings"].as_object().unwrap()).unwrap();
    assert_eq!(s.repo, PathBuf::from("/var/lib/ipfs"));
    assert!(!s.bootstrap.is_empty());
}
