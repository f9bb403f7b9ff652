//! `xnode-agent chain` against CometBFT's RPC. Contract test: CometBFT
//! cannot run here, so a loopback shim answers the three JSON-RPC methods
//! the CLI uses (abci_query, broadcast_tx_sync, broadcast_tx_commit) in
//! CometBFT v0.38's wire format, over the real application, making a
//! block per commit as the in-process driver does. The flake's VM test
//! runs the CLI against the real CometBFT.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine;
use common::{agent, run_ok};
use serde_json::{json, Value};
use xnode_chain::driver::{Driver, Wallet};
use xnode_chain::params::{development_params, Genesis, GenesisAccount, Source, GENESIS_SCHEMA};

const CHAIN: &str = "xnode-cli-test";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Shim {
    url: String,
    driver: Arc<Mutex<Driver>>,
}

fn tx_result(code: u32, log: &str) -> Value {
    json!({"code": code, "data": null, "log": log, "info": "", "gas_wanted": "0",
           "gas_used": "0", "events": [], "codespace": if code == 0 { "" } else { "xnode" }})
}

fn answer(driver: &Mutex<Driver>, req: &Value) -> Value {
    let mut d = driver.lock().unwrap();
    let p = &req["params"];
    let tx = || {
        B64.decode(p["tx"].as_str().unwrap_or(""))
            .unwrap_or_default()
    };
    let hash = |t: &[u8]| {
        use sha2::Digest;
        hex::encode_upper(sha2::Sha256::digest(t))
    };
    match req["method"].as_str().unwrap_or("") {
        "abci_query" => {
            let height: i64 = p["height"]
                .as_str()
                .and_then(|h| h.parse().ok())
                .unwrap_or(0);
            let r = d.app.query(p["path"].as_str().unwrap_or(""), height);
            json!({"response": {"code": r.code, "log": r.log, "info": "", "index": "0",
                "key": null, "value": B64.encode(&r.value), "proofOps": null,
                "height": r.height.to_string(), "codespace": r.codespace}})
        }
        "broadcast_tx_sync" => {
            let t = tx();
            let out = d.app.check_tx(&t);
            json!({"code": out.code, "data": "", "log": out.log, "codespace": "", "hash": hash(&t)})
        }
        "broadcast_tx_commit" => {
            let t = tx();
            let check = d.app.check_tx(&t);
            let (result, height) = if check.code == 0 {
                let b = d.block(vec![t.clone()]).unwrap();
                (tx_result(b.results[0].code, &b.results[0].log), b.height)
            } else {
                (tx_result(0, ""), 0)
            };
            json!({"check_tx": tx_result(check.code, &check.log), "tx_result": result,
                   "hash": hash(&t), "height": height.to_string()})
        }
        m => json!({"unsupported": m}),
    }
}

/// One HTTP/1.1 request from `conn`: its request line and body.
fn read_request(conn: &std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut request_line = String::new();
    r.read_line(&mut request_line).ok()?;
    let mut len = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((request_line.trim().to_string(), body))
}

/// A loopback HTTP/1.1 server, one request a connection: `handler` gets
/// the request line and body and returns the status and body.
fn serve_http(
    handler: impl Fn(&str, Vec<u8>) -> (u16, Vec<u8>) + Send + 'static,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Some((request_line, body)) = read_request(&conn) else {
                continue;
            };
            let (status, out) = handler(&request_line, body);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                out.len()
            );
            let _ = conn.write_all(&out);
        }
    });
    addr
}

impl Shim {
    fn start(driver: Driver) -> Shim {
        let driver = Arc::new(Mutex::new(driver));
        let d = driver.clone();
        let addr = serve_http(move |_, body| {
            let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let resp = json!({"jsonrpc": "2.0", "id": req["id"], "result": answer(&d, &req)});
            (200, serde_json::to_vec(&resp).unwrap())
        });
        Shim {
            url: format!("http://{addr}"),
            driver,
        }
    }
}

fn chain(dir: &std::path::Path) -> (Shim, std::path::PathBuf, Wallet) {
    let authority = Wallet::from_seed(7);
    let key = dir.join("authority.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let mut params = development_params();
    params.authority = Some(authority.address());
    let g = Genesis {
        schema: GENESIS_SCHEMA.into(),
        params,
        accounts: vec![GenesisAccount {
            address: authority.address(),
            balance: 1_000,
        }],
        sources: vec![Source {
            id: "genesis-source".into(),
            url: "http://127.0.0.1:9/".into(),
        }],
        upgrades: Default::default(),
    };
    let mut d = Driver::new(CHAIN, &g).unwrap();
    d.block(vec![]).unwrap();
    (Shim::start(d), key, authority)
}

fn chain_cmd(shim: &Shim, args: &[&str]) -> std::process::Command {
    let mut c = agent();
    c.arg("chain").args(args).args(["--rpc", &shim.url]);
    c
}

#[test]
fn status_query_and_beacon_over_the_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let (shim, _, _) = chain(dir.path());
    let out = run_ok(&mut chain_cmd(&shim, &["status", "--json"]));
    let app = common::json(&out);
    assert_eq!(app["chain_id"], CHAIN);
    assert_eq!(app["height"], 1);
    let out = run_ok(&mut chain_cmd(&shim, &["status"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("chain       {CHAIN}")));
    let out = run_ok(&mut chain_cmd(&shim, &["beacon", "--json"]));
    let beacon = common::json(&out);
    let expected = hex::encode(shim.driver.lock().unwrap().hash_at(1).unwrap());
    assert_eq!(beacon["hash"], expected);
    let out = run_ok(&mut chain_cmd(&shim, &["query", "/sources"]));
    assert_eq!(common::json(&out)[0]["id"], "genesis-source");
    // An unknown path: exit 1, and the paths named.
    let out = chain_cmd(&shim, &["query", "/nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/accoun"),
        "{out:?}"
    );
}

#[test]
fn signed_transactions_with_nonce_and_fee_from_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (shim, key, authority) = chain(dir.path());
    let bob = Wallet::from_seed(8);
    let key_s = key.to_str().unwrap();
    // Two transfers: the second takes the next nonce from the chain.
    for n in 0..2 {
        let out = run_ok(&mut chain_cmd(
            &shim,
            &[
                "transfer",
                "--to",
                &bob.address(),
                "--amount",
                "100",
                "--key",
                key_s,
                "--wait",
                "--json",
            ],
        ));
        let r = common::json(&out);
        assert_eq!(r["nonce"], n);
        assert_eq!(r["fee"], 10);
    }
    let acct = shim
        .driver
        .lock()
        .unwrap()
        .query(&format!("/account/{}", bob.address()))
        .unwrap();
    assert_eq!(acct["balance"], 200);
    // The authority adds a source; without --wait it lands in the mempool.
    let out = run_ok(&mut chain_cmd(
        &shim,
        &[
            "add-source",
            "weather",
            "http://127.0.0.1:9/w",
            "--key",
            key_s,
        ],
    ));
    assert!(String::from_utf8_lossy(&out.stdout).contains("in the mempool"));

    // Refusals exit 1 with the application's code and reason.
    let out = chain_cmd(
        &shim,
        &[
            "transfer",
            "--to",
            &bob.address(),
            "--amount",
            "999999",
            "--key",
            key_s,
            "--wait",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("code 6") && err.contains("exceeds"), "{err}");
    let short = dir.path().join("short.key");
    std::fs::write(&short, [1u8; 5]).unwrap();
    let out = chain_cmd(&shim, &["stake", "5", "--key", short.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("32-byte"));
    let out = run_ok(agent().args(["chain", "address", "--key", key_s]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        authority.address()
    );
}

const STALL_AFTER: usize = 1000;

/// A data source serving `data`; while `stall` is set it sends the first
/// STALL_AFTER bytes, then nothing for 20 s, then closes.
fn source_server(data: Vec<u8>, stall: Arc<std::sync::atomic::AtomicBool>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            if read_request(&conn).is_none() {
                continue;
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                data.len()
            );
            if stall.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = conn.write_all(&data[..STALL_AFTER]);
                let _ = conn.flush();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs(20));
                    drop(conn);
                });
            } else {
                let _ = conn.write_all(&data);
            }
        }
    });
    addr
}

/// What the fake kubo does with an add: answer the CID `ipfs add
/// --cid-version=1 --raw-leaves` gives, or (a kubo set up otherwise) a
/// CIDv0.
#[derive(Clone, Copy, PartialEq)]
enum Kubo {
    CidV1RawLeaves,
    CidV0,
}

/// A loopback stand-in for kubo's `/api/v0/add` (contract: the query and
/// multipart body kubo documents); it keeps the files it was sent.
fn fake_kubo(mode: Kubo, got: Arc<Mutex<Vec<Vec<u8>>>>) -> std::net::SocketAddr {
    serve_http(move |line, body| {
        let expected = format!(
            "POST /api/v0/add?{} HTTP/1.1",
            supervisor::kubo::add::ADD_QUERY
        );
        if line != expected {
            return (
                400,
                format!("{{\"Message\":\"unexpected {line}\"}}").into_bytes(),
            );
        }
        // One part: headers, a blank line, the file, CRLF and the closing
        // boundary.
        let text = body.as_slice();
        let start = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let end = text.windows(4).rposition(|w| w == b"\r\n--").unwrap();
        let file = text[start..end].to_vec();
        let cid = match mode {
            Kubo::CidV1RawLeaves => xnode_chain::cid::ipfs_add_cid(&file).to_string(),
            Kubo::CidV0 => "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR".into(),
        };
        let size = file.len();
        got.lock().unwrap().push(file);
        (
            200,
            format!("{{\"Name\":\"data\",\"Hash\":\"{cid}\",\"Size\":\"{size}\"}}").into_bytes(),
        )
    })
}

fn p(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_node_onboards_and_seeds_through_the_cli() {
    use testkit::Swtpm;
    if !Swtpm::available() {
        common::missing(Swtpm::NEEDS);
        return;
    }
    let tpm = Swtpm::manufactured();
    let dir = tpm.path().to_path_buf();
    let state = tpm.state_dir("node");
    let node = |args: &[&str]| {
        let mut c = agent();
        c.env("XNODE_TCTI", tpm.tcti())
            .env("XNODE_STATE_DIR", &state)
            .args(args);
        c
    };
    run_ok(&mut node(&["identity"]));
    let node_key = state.join("node.key");
    let me =
        String::from_utf8(run_ok(agent().args(["chain", "address", "--key", p(&node_key)])).stdout)
            .unwrap()
            .trim()
            .to_string();

    // The source: 300 KiB (two chunks, so a dag-pb root) on loopback.
    let data: Vec<u8> = (0..300 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let stall = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let source = source_server(data.clone(), stall.clone());

    let authority = Wallet::from_seed(7);
    let auth_key = dir.join("authority.key");
    std::fs::write(&auth_key, [7u8; 32]).unwrap();
    let mut params = development_params();
    params.authority = Some(authority.address());
    params.ek_cas = vec![std::fs::read_to_string(tpm.ca_bundle.as_ref().unwrap()).unwrap()];
    let g = Genesis {
        schema: GENESIS_SCHEMA.into(),
        params,
        accounts: vec![
            GenesisAccount {
                address: authority.address(),
                balance: 10_000,
            },
            GenesisAccount {
                address: me.clone(),
                balance: 10_000,
            },
        ],
        sources: vec![Source {
            id: "blob".into(),
            url: format!("http://{source}/blob"),
        }],
        upgrades: Default::default(),
    };
    let mut d = Driver::new(CHAIN, &g).unwrap();
    d.block(vec![]).unwrap();
    let shim = Shim::start(d);
    let chain = |args: &[&str]| chain_cmd(&shim, args);

    // Attest to the chain's latest block hash.
    let beacon = common::json(&run_ok(&mut chain(&["beacon", "--json"])));
    let env = dir.join("envelope.json");
    run_ok(&mut node(&[
        "attest",
        "--beacon",
        beacon["hash"].as_str().unwrap(),
        "--out",
        p(&env),
    ]));
    // The activator's credential exchange with the node's TPM, recorded on chain.
    let registry = dir.join("activations.json");
    common::credential_exchange(&env, &dir, &registry, |c| {
        c.env("XNODE_TCTI", tpm.tcti())
            .env("XNODE_STATE_DIR", &state);
    });
    run_ok(&mut chain(&[
        "activate",
        "--registry",
        p(&registry),
        "--key",
        p(&auth_key),
        "--wait",
    ]));
    // Sent again, it is already there.
    let out = run_ok(&mut chain(&[
        "activate",
        "--registry",
        p(&registry),
        "--key",
        p(&auth_key),
        "--wait",
    ]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("already on chain"));
    let height = beacon["height"].to_string();
    let out = run_ok(&mut chain(&[
        "attest",
        "--envelope",
        p(&env),
        "--beacon-height",
        &height,
        "--key",
        p(&node_key),
        "--wait",
        "--json",
    ]));
    assert!(common::json(&out)["height"].as_u64().is_some());
    let registered = common::json(&run_ok(&mut chain(&["query", &format!("/node/{me}")])));
    assert_eq!(registered["status"], "active");

    // kubo set up otherwise: the CIDs differ and nothing is submitted.
    let got = Arc::new(Mutex::new(Vec::new()));
    let v0 = fake_kubo(Kubo::CidV0, got.clone());
    let out = chain(&[
        "seed",
        "--once",
        "--ipfs-api",
        &v0.to_string(),
        "--key",
        p(&node_key),
        "--wait",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kubo gave Qm") && err.contains("nothing submitted"),
        "{err}"
    );
    let h = shim.driver.lock().unwrap().height();
    assert_eq!(
        common::json(&run_ok(&mut chain(&["query", &format!("/records/{h}")]))),
        json!([])
    );

    // A kubo adding as documented: the node's CID goes on record.
    let ok = fake_kubo(Kubo::CidV1RawLeaves, got.clone());
    let out = run_ok(&mut chain(&[
        "seed",
        "--once",
        "--ipfs-api",
        &ok.to_string(),
        "--key",
        p(&node_key),
        "--wait",
    ]));
    let log = String::from_utf8_lossy(&out.stderr);
    let expected = xnode_chain::cid::ipfs_add_cid(&data).to_string();
    assert!(log.contains(&expected), "{log}");
    assert!(expected.starts_with("bafybei"), "two chunks: a dag-pb root");
    assert!(
        got.lock().unwrap().iter().all(|f| *f == data),
        "kubo got the source's bytes"
    );
    let rec = common::json(&run_ok(&mut chain(&[
        "query",
        &format!("/records/{h}/{me}"),
    ])));
    assert_eq!(rec["cid"], expected);

    // A source still sending when the next block comes: the round's data is
    // what arrived by then. (The source would break the connection after
    // 20 s, failing the fetch: success means the block ended it.)
    stall.store(true, std::sync::atomic::Ordering::SeqCst);
    let h2 = shim.driver.lock().unwrap().height();
    let d = shim.driver.clone();
    let next_block = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        d.lock().unwrap().block(vec![]).unwrap();
    });
    run_ok(&mut chain(&[
        "seed",
        "--once",
        "--fetch-secs",
        "60",
        "--ipfs-api",
        &ok.to_string(),
        "--key",
        p(&node_key),
        "--wait",
    ]));
    next_block.join().unwrap();
    let rec = common::json(&run_ok(&mut chain(&[
        "query",
        &format!("/records/{h2}/{me}"),
    ])));
    assert_eq!(
        rec["cid"],
        xnode_chain::cid::ipfs_add_cid(&data[..STALL_AFTER]).to_string()
    );
    assert_eq!(rec["source"], "blob");
}
