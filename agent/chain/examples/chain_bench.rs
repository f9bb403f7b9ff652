//! Transactions a second through `FinalizeBlock` (with `Commit`) on one
//! thread: attestation registrations and CID submissions, beside the
//! standalone verifier's rate on the same envelopes.
//!
//! Needs swtpm (one manufactured TPM per node). `scripts/bench-chain` runs
//! it pinned to one core; docs/benchmarks.md records the figures.
//!
//!     cargo run --release -p xnode-chain --example chain_bench -- [NODES] [ROUNDS]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use attest::{AttestOptions, Freshness};
use ed25519_dalek::SigningKey;
use testkit::Swtpm;
use xnode_chain::driver::{block_hash, Driver, Wallet};
use xnode_chain::params::{development_params, Genesis, GenesisAccount, Source, GENESIS_SCHEMA};
use xnode_chain::{tx, Msg};
use xnode_verify::credential::{self, Registry, REGISTRY_VERSION};

const CHAIN: &str = "xnode-bench";
const FEE: u64 = 10;

struct Node {
    tpm: Swtpm,
    state: std::path::PathBuf,
    tcti: probe::TpmSource,
    seed: u8,
}

fn rate(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes_n = args.first().copied().unwrap_or(8);
    let rounds = args.get(1).copied().unwrap_or(250);
    if !Swtpm::available() {
        eprintln!("chain_bench: SKIPPED: swtpm and swtpm_setup are needed for real envelopes");
        std::process::exit(2);
    }
    eprintln!("chain_bench: manufacturing {nodes_n} swtpm TPMs…");
    let nodes: Vec<Node> = (0..nodes_n)
        .map(|i| {
            let tpm = Swtpm::manufactured();
            let state = tpm.state_dir("node");
            std::fs::create_dir_all(&state).unwrap();
            let seed = 100 + i as u8;
            attest::files::write_private(&state.join(attest::identity::KEY_FILE), &[seed; 32])
                .unwrap();
            let tcti = tpm.tcti().parse().unwrap();
            Node {
                tpm,
                state,
                tcti,
                seed,
            }
        })
        .collect();
    let faucet_key = SigningKey::from_bytes(&[200; 32]);
    let faucet = Wallet::new(faucet_key.clone());
    let mut params = development_params();
    params.authority = Some(faucet.address());
    params.ek_cas = nodes
        .iter()
        .map(|n| std::fs::read_to_string(n.tpm.ca_bundle.as_ref().unwrap()).unwrap())
        .collect();
    params.submit_window = 3;
    let genesis = Genesis {
        schema: GENESIS_SCHEMA.into(),
        params,
        accounts: std::iter::once(faucet.address())
            .chain(nodes.iter().map(|n| Wallet::from_seed(n.seed).address()))
            .map(|address| GenesisAccount {
                address,
                balance: 1_000_000_000,
            })
            .collect(),
        sources: (0..nodes_n)
            .map(|i| Source {
                id: format!("source-{i}"),
                url: format!("http://127.0.0.1:9/{i}"),
            })
            .collect(),
        upgrades: Default::default(),
    };
    let genesis_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    // Block 1 is empty, so its hash is known before the chain runs: every
    // envelope is bound to it.
    let beacon = block_hash(&[0; 32], 1, &[]);
    eprintln!("chain_bench: attesting and activating each node…");
    let mut envelopes = Vec::new();
    let mut activations = Vec::new();
    let mut registry = Registry {
        version: REGISTRY_VERSION.into(),
        activations: Vec::new(),
    };
    let mut f = Wallet::new(faucet_key.clone());
    for n in &nodes {
        let env = attest::attest(&AttestOptions {
            state_dir: n.state.clone(),
            tcti: n.tcti.clone(),
            freshness: Freshness::Beacon(beacon.to_vec()),
            pcrs: attest::attest::DEFAULT_PCRS.to_vec(),
            event_log: n.tpm.path().join("no-event-log"),
            capacity: None,
        })
        .unwrap()
        .envelope;
        let e: xnode_verify::Envelope = serde_json::from_slice(&env).unwrap();
        let ek = xnode_verify::format::unb64("", &e.tpm.ek_public).unwrap();
        let ak = xnode_verify::format::unb64("", &e.tpm.ak_public).unwrap();
        let (challenge, pending) = credential::issue(&ek, &ak, 0, &mut rand_core::OsRng).unwrap();
        let response = attest::activate(&n.state, &n.tcti, &challenge).unwrap();
        let a = credential::accept(&pending, &response, 0).unwrap();
        activations.push(f.sign(
            CHAIN,
            FEE,
            Msg::Activate {
                ek_public_sha256: a.ek_public_sha256.clone(),
                ak_name: a.ak_name.clone(),
            },
        ));
        registry.activations.push(a);
        envelopes.push(env);
    }
    let registrations: Vec<Vec<u8>> = nodes
        .iter()
        .zip(&envelopes)
        .map(|(n, env)| {
            Wallet::from_seed(n.seed).sign(
                CHAIN,
                FEE,
                Msg::Attest {
                    envelope: tx::encode_envelope(env),
                    beacon_height: 1,
                    validator_key: None,
                },
            )
        })
        .collect();
    let env_bytes = envelopes.iter().map(Vec::len).sum::<usize>() / envelopes.len();

    // The standalone verifier on the same envelopes: a fresh policy each
    // time (every EK chain checked, as for a first registration), then one
    // policy throughout (EK chains cached, as for re-attestations).
    let policy = |cache_from: Option<&xnode_verify::Policy>| xnode_verify::Policy {
        ek_cas: genesis.params.ek_authorities().unwrap(),
        activations: Some(registry.clone()),
        beacon: Some(beacon.to_vec()),
        max_age_secs: Some(3_600),
        now_unix: genesis_time as u64 + 3,
        chain_cache: cache_from
            .map(|p| p.chain_cache.clone())
            .unwrap_or_default(),
        ..Default::default()
    };
    let total = nodes_n * rounds;
    let mut cold = Duration::ZERO;
    for _ in 0..rounds {
        for env in &envelopes {
            let p = policy(None);
            let t = Instant::now();
            let out = xnode_verify::verify(env, &p);
            cold += t.elapsed();
            assert!(out.ok, "{:?}", out.failed().collect::<Vec<_>>());
        }
    }
    let warm_policy = policy(None);
    let t = Instant::now();
    for _ in 0..rounds {
        for env in &envelopes {
            assert!(xnode_verify::verify(env, &warm_policy).ok);
        }
    }
    let warm = t.elapsed();

    // Registrations through FinalizeBlock: a fresh chain each round, so
    // each is a first registration (EK chain checked).
    let mut in_blocks = Duration::ZERO;
    let mut d = None;
    for _ in 0..rounds {
        let mut chain =
            Driver::at_time(CHAIN, &genesis, xnode_chain::upgrade::KNOWN, genesis_time).unwrap();
        chain.block(vec![]).unwrap();
        let b = chain.block(activations.clone()).unwrap();
        assert!(b.results.iter().all(|r| r.code == 0), "{:?}", b.results);
        let t = Instant::now();
        let b = chain.block(registrations.clone()).unwrap();
        in_blocks += t.elapsed();
        assert!(b.results.iter().all(|r| r.code == 0), "{:?}", b.results);
        d = Some(chain);
    }
    let mut d = d.unwrap();

    // CID submissions: every node submits for its assignment of the block
    // before, block after block.
    let mut wallets: Vec<Wallet> = nodes.iter().map(|n| Wallet::from_seed(n.seed)).collect();
    for w in &mut wallets {
        w.nonce = 1;
    }
    let cid_blocks = rounds.max(50);
    let mut cid_time = Duration::ZERO;
    let mut cids = 0;
    for i in 0..cid_blocks {
        let h = d.height();
        let a = d.query(&format!("/assignment/{h}")).unwrap()["assignment"].clone();
        let txs: Vec<Vec<u8>> = wallets
            .iter_mut()
            .filter_map(|w| {
                let source = a[w.address()].as_str()?.to_string();
                let cid = xnode_chain::cid::ipfs_add_cid(format!("{source}@{h}#{i}").as_bytes())
                    .to_string();
                Some(w.sign(
                    CHAIN,
                    FEE,
                    Msg::SubmitCid {
                        height: h,
                        source,
                        cid,
                    },
                ))
            })
            .collect();
        let t = Instant::now();
        let b = d.block(txs).unwrap();
        cid_time += t.elapsed();
        assert!(b.results.iter().all(|r| r.code == 0), "{:?}", b.results);
        cids += b.results.len();
    }

    println!("chain benchmark: {nodes_n} nodes (one swtpm each), {rounds} rounds, one thread");
    println!("  envelope size (mean): {env_bytes} bytes");
    println!(
        "  standalone verifier, EK chain checked every time: {:>8.0} verifications/s ({total} in {:.2} s)",
        rate(total, cold),
        cold.as_secs_f64()
    );
    println!(
        "  standalone verifier, EK chain cached:             {:>8.0} verifications/s ({total} in {:.2} s)",
        rate(total, warm),
        warm.as_secs_f64()
    );
    println!(
        "  registrations in FinalizeBlock+Commit:            {:>8.0} tx/s ({total} in {:.2} s)",
        rate(total, in_blocks),
        in_blocks.as_secs_f64()
    );
    println!(
        "  CID submissions in FinalizeBlock+Commit:          {:>8.0} tx/s ({cids} in {:.2} s)",
        rate(cids, cid_time),
        cid_time.as_secs_f64()
    );
}
