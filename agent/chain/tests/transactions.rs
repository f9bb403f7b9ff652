//! Accounts, signatures, nonces, fees, the authority, upgrades and
//! determinism, driven block by block in process (no TPM needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{codes, comparable, faucet, genesis, CHAIN, FEE};
use xnode_chain::codes as c;
use xnode_chain::driver::{Driver, Wallet};
use xnode_chain::store::Store;
use xnode_chain::tx::{Body, Tx};
use xnode_chain::{Msg, State};

fn transfer(to: &Wallet, amount: u64) -> Msg {
    Msg::Transfer {
        to: to.address(),
        amount,
    }
}

fn balance(d: &Driver, w: &Wallet) -> u64 {
    d.query(&format!("/account/{}", w.address()))
        .map(|a| a["balance"].as_u64().unwrap())
        .unwrap_or(0)
}

#[test]
fn transfers_move_funds_pay_the_fee_and_bump_the_nonce() {
    let mut d = Driver::new(CHAIN, &genesis(&[], 0)).unwrap();
    let mut f = faucet();
    let bob = Wallet::from_seed(1);
    let b = d
        .block(vec![f.sign(CHAIN, FEE, transfer(&bob, 500))])
        .unwrap();
    assert_eq!(codes(&b), [0], "{:?}", b.results);
    assert_eq!(balance(&d, &bob), 500);
    assert_eq!(balance(&d, &f), 1_000_000 - 500 - FEE);
    let acct = d.query(&format!("/account/{}", f.address())).unwrap();
    assert_eq!(acct["nonce"], 1);
    assert_eq!(d.query("/app").unwrap()["burned"], FEE);
    // The event names what happened.
    let ev = &b.results[0].events;
    assert!(ev.iter().any(|e| e.r#type == "xnode.transfer"));
}

#[test]
fn bad_transactions_get_a_code_and_a_log_and_change_nothing() {
    let mut d = Driver::new(CHAIN, &genesis(&[], 0)).unwrap();
    let mut f = faucet();
    let bob = Wallet::from_seed(1);
    let first = f.sign(CHAIN, FEE, transfer(&bob, 100));
    d.block(vec![first.clone()]).unwrap();
    let before = comparable(d.app.committed());

    // A forged signature: bob signs a body that names the faucet.
    let forged = Tx::sign(
        Body {
            chain_id: CHAIN.into(),
            sender: f.address(),
            nonce: f.nonce,
            fee: FEE,
            msg: transfer(&bob, 1_000),
        },
        &bob.key,
    )
    .to_bytes();
    // Another chain's transaction, a fee below the chain's, a nonce ahead.
    let other_chain = f.sign_unused("other-chain", FEE, transfer(&bob, 1));
    let cheap = f.sign_unused(CHAIN, FEE - 1, transfer(&bob, 1));
    let mut skip = Wallet::new(f.key.clone());
    skip.nonce = f.nonce + 5;
    let ahead = skip.sign_unused(CHAIN, FEE, transfer(&bob, 1));
    // Bob cannot spend more than he has after the fee.
    let overdraft = bob.sign_unused(CHAIN, FEE, transfer(&f, 91));
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("replay of an included transaction", first, c::BAD_NONCE),
        ("forged signature", forged, c::BAD_SIGNATURE),
        ("another chain", other_chain, c::WRONG_CHAIN),
        ("fee too low", cheap, c::FEE),
        ("overdraft", overdraft, c::FUNDS),
        ("nonce ahead", ahead, c::BAD_NONCE),
        ("junk", b"\x00\x01not json".to_vec(), c::MALFORMED),
        ("empty", Vec::new(), c::MALFORMED),
        (
            "bad address",
            f.sign_unused(
                CHAIN,
                FEE,
                Msg::Transfer {
                    to: "not-an-address".into(),
                    amount: 1,
                },
            ),
            c::INVALID,
        ),
        (
            "not the authority's source",
            bob.sign_unused(
                CHAIN,
                FEE,
                Msg::AddSource {
                    id: "x".into(),
                    url: "http://127.0.0.1:9/".into(),
                },
            ),
            c::UNAUTHORIZED,
        ),
        (
            "stake without a node",
            bob.sign_unused(CHAIN, FEE, Msg::Stake { amount: 1 }),
            c::NOT_A_NODE,
        ),
    ];
    // CheckTx turns each away too, each with its code and a log.
    for (what, tx, code) in &cases {
        let out = d.app.check_tx(tx);
        assert_eq!(out.code, *code, "CheckTx {what}: {}", out.log);
        assert!(!out.log.is_empty(), "{what}");
    }
    let b = d
        .block(cases.iter().map(|(_, tx, _)| tx.clone()).collect())
        .unwrap();
    for ((what, _, code), r) in cases.iter().zip(&b.results) {
        assert_eq!(r.code, *code, "{what}: {}", r.log);
        assert!(!r.log.is_empty(), "{what}");
        assert_eq!(r.codespace, "xnode");
    }
    assert_eq!(comparable(d.app.committed()), before);
}

#[test]
fn a_double_spend_in_one_block_pays_once() {
    let mut d = Driver::new(CHAIN, &genesis(&[], 0)).unwrap();
    let mut f = faucet();
    let mut bob = Wallet::from_seed(1);
    let carol = Wallet::from_seed(2);
    d.block(vec![f.sign(CHAIN, FEE, transfer(&bob, 110))])
        .unwrap();
    // Two spends of the same 100: the second has the next nonce but no funds.
    let a = bob.sign(CHAIN, FEE, transfer(&carol, 100));
    let b = bob.sign(CHAIN, FEE, transfer(&carol, 100));
    // The same transaction twice: the copy is a replay.
    let block = d.block(vec![a.clone(), a, b]).unwrap();
    assert_eq!(codes(&block), [0, c::BAD_NONCE, c::FUNDS]);
    assert_eq!(balance(&d, &carol), 100);
    assert_eq!(balance(&d, &bob), 0);
}

#[test]
fn check_tx_follows_the_mempool_and_starts_over_at_commit() {
    let mut d = Driver::new(CHAIN, &genesis(&[], 0)).unwrap();
    let mut f = faucet();
    let bob = Wallet::from_seed(1);
    let t0 = f.sign(CHAIN, FEE, transfer(&bob, 1));
    let t1 = f.sign(CHAIN, FEE, transfer(&bob, 1));
    // Nonce 1 is only good after nonce 0.
    assert_eq!(d.app.check_tx(&t1).code, c::BAD_NONCE);
    assert_eq!(d.app.check_tx(&t0).code, 0);
    assert_eq!(d.app.check_tx(&t1).code, 0);
    // A replay in the mempool.
    assert_eq!(d.app.check_tx(&t0).code, c::BAD_NONCE);
    // The block carried only t0: after commit t1 is good again, t0 not.
    d.block(vec![t0.clone()]).unwrap();
    assert_eq!(d.app.check_tx(&t0).code, c::BAD_NONCE);
    assert_eq!(d.app.check_tx(&t1).code, 0);
}

#[test]
fn the_authority_adds_sources_and_schedules_upgrades() {
    let mut d = Driver::new(CHAIN, &genesis(&[], 1)).unwrap();
    let mut f = faucet();
    let b = d
        .block(vec![
            f.sign(
                CHAIN,
                FEE,
                Msg::AddSource {
                    id: "weather".into(),
                    url: "https://127.0.0.1:9/weather.json".into(),
                },
            ),
            f.sign_unused(
                CHAIN,
                FEE,
                Msg::AddSource {
                    id: "weather".into(),
                    url: "https://127.0.0.1:9/other".into(),
                },
            ),
            f.sign_unused(
                CHAIN,
                FEE,
                Msg::AddSource {
                    id: "Bad Id".into(),
                    url: "https://127.0.0.1:9/".into(),
                },
            ),
            f.sign_unused(
                CHAIN,
                FEE,
                Msg::AddSource {
                    id: "ftp".into(),
                    url: "ftp://127.0.0.1/".into(),
                },
            ),
            f.sign_unused(
                CHAIN,
                FEE,
                Msg::ScheduleUpgrade {
                    name: "fee-per-kib".into(),
                    height: 1,
                },
            ),
        ])
        .unwrap();
    assert_eq!(
        codes(&b),
        [0, c::DUPLICATE, c::INVALID, c::INVALID, c::INVALID],
        "{:?}",
        b.results
    );
    let sources = d.query("/sources").unwrap();
    assert_eq!(sources.as_array().unwrap().len(), 2);
}

/// The `fee-per-kib` upgrade scheduled at height 4.
fn upgrade_chain(upgrades: &'static [xnode_chain::upgrade::Upgrade]) -> Driver {
    let mut g = genesis(&[], 0);
    g.upgrades.insert("fee-per-kib".into(), 4);
    Driver::with_upgrades(CHAIN, &g, upgrades).unwrap()
}

#[test]
fn upgrades_switch_rules_at_their_height_and_an_old_binary_halts_there() {
    let bob = Wallet::from_seed(1);
    let mut f = faucet();
    let mut txs = Vec::new();
    for _ in 0..5 {
        txs.push(f.sign(CHAIN, FEE, transfer(&bob, 1)));
    }
    let mut new = upgrade_chain(xnode_chain::upgrade::KNOWN);
    let mut old = upgrade_chain(&[]);
    for tx in &txs[..3] {
        assert_eq!(codes(&new.block(vec![tx.clone()]).unwrap()), [0]);
        assert_eq!(codes(&old.block(vec![tx.clone()]).unwrap()), [0]);
    }
    assert_eq!(new.app_hashes, old.app_hashes);
    assert_eq!(new.app.info().app_version, 1);

    // Height 4: the old binary stops before the block and commits nothing.
    let err = old.block(vec![txs[3].clone()]).unwrap_err();
    assert!(err.to_string().contains("fee-per-kib"), "{err}");
    assert_eq!(old.height(), 3);
    // The new binary applies it: a fee of 10 no longer pays for a
    // transaction of more than 0 KiB.
    let b = new.block(vec![txs[3].clone()]).unwrap();
    assert_eq!(codes(&b), [c::FEE], "{:?}", b.results);
    assert_eq!(new.app.info().app_version, 2);
    let app = new.query("/app").unwrap();
    assert_eq!(app["applied_upgrades"]["4"], "fee-per-kib");

    // The operator swaps the binary: the new release resumes from the old
    // one's last commit and reaches the same state as one that ran through.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save(old.app.committed()).unwrap();
    let resumed_state: State = store.load().unwrap().unwrap();
    let mut resumed = old
        .resume(xnode_chain::App::from_state(resumed_state, xnode_chain::upgrade::KNOWN).unwrap());
    resumed.block(vec![txs[3].clone()]).unwrap();
    assert_eq!(resumed.app_hashes, new.app_hashes);
}

/// A pseudo-random mix of good and bad transactions from several wallets.
fn workload(blocks: usize) -> Vec<Vec<Vec<u8>>> {
    let mut rng = testkit::XorShift(0x5eed);
    let mut f = faucet();
    let mut wallets: Vec<Wallet> = (1..=5).map(Wallet::from_seed).collect();
    let mut out = Vec::new();
    for b in 0..blocks {
        let mut txs = Vec::new();
        if b == 0 {
            for w in &wallets {
                txs.push(f.sign(CHAIN, FEE, transfer(w, 1_000)));
            }
        }
        for _ in 0..rng.below(6) {
            let from = rng.below(wallets.len());
            let to = wallets[rng.below(wallets.len())].address();
            let amount = rng.below(400) as u64;
            let tx = wallets[from].sign(CHAIN, FEE, Msg::Transfer { to, amount });
            txs.push(tx.clone());
            if rng.below(4) == 0 {
                txs.push(tx); // a replay
            }
        }
        out.push(txs);
    }
    out
}

#[test]
fn replaying_the_same_blocks_gives_the_same_app_hash_at_every_height() {
    let blocks = workload(30);
    let run = |restart_at: Option<usize>| {
        let mut d = Driver::at_time(
            CHAIN,
            &genesis(&[], 3),
            xnode_chain::upgrade::KNOWN,
            1_800_000_000,
        )
        .unwrap();
        for (i, txs) in blocks.iter().enumerate() {
            if restart_at == Some(i) {
                // Through the store, as a restarted validator.
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path()).unwrap();
                store.save(d.app.committed()).unwrap();
                d.app = xnode_chain::App::from_state(
                    store.load().unwrap().unwrap(),
                    xnode_chain::upgrade::KNOWN,
                )
                .unwrap();
            }
            d.block(txs.clone()).unwrap();
        }
        d.app_hashes
    };
    let a = run(None);
    let b = run(None);
    let c = run(Some(17));
    assert_eq!(a.len(), 30);
    assert_eq!(a, b);
    assert_eq!(a, c);
    // Every block moved the hash.
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert_eq!(distinct.len(), 30);
    // Another workload gives another history.
    let mut other = Driver::new(CHAIN, &genesis(&[], 3)).unwrap();
    other.block(workload(2)[1].clone()).unwrap();
    assert_ne!(other.app_hashes[0], a[0]);
}

#[test]
fn queries_answer_json_or_a_code() {
    let mut d = Driver::new(CHAIN, &genesis(&[], 2)).unwrap();
    d.block(vec![]).unwrap();
    let app = d.query("/app").unwrap();
    assert_eq!(app["chain_id"], CHAIN);
    assert_eq!(app["height"], 1);
    assert_eq!(d.query("/params").unwrap()["fee"], FEE);
    let beacon = d.query("/beacon").unwrap();
    assert_eq!(beacon["height"], 1);
    assert_eq!(beacon["hash"], hex::encode(d.hash_at(1).unwrap()));
    assert_eq!(d.query("/beacon/1").unwrap(), beacon);
    assert_eq!(d.query("/sources").unwrap().as_array().unwrap().len(), 2);
    assert_eq!(d.query("/assignment").unwrap()["height"], 1);
    assert_eq!(d.query("/records/1").unwrap(), serde_json::json!([]));
    for (path, code) in [
        ("/nope", c::NOT_FOUND),
        ("/account/00", c::NOT_FOUND),
        ("/node/12D3KooWnope", c::NOT_FOUND),
        ("/records/x", c::INVALID),
        ("/assignment/999", c::NOT_FOUND),
        ("/beacon/999", c::NOT_FOUND),
    ] {
        let (got, log) = d.query(path).unwrap_err();
        assert_eq!(got, code, "{path}: {log}");
        assert!(!log.is_empty());
    }
    let old = d.app.query("/app", 7);
    assert_eq!(old.code, c::INVALID, "{}", old.log);
}

#[test]
fn a_bad_genesis_is_refused_with_the_field_named() {
    let mut g = genesis(&[], 0);
    g.params.power_unit = 0;
    let e = Driver::new(CHAIN, &g).unwrap_err().to_string();
    assert!(e.contains("power_unit"), "{e}");
    let mut g = genesis(&[], 0);
    g.params.ek_cas = vec!["not a certificate".into()];
    let e = Driver::new(CHAIN, &g).unwrap_err().to_string();
    assert!(e.contains("ek_cas"), "{e}");
    let mut g = genesis(&[], 0);
    g.schema = "xnode.chain-genesis/v9".into();
    let e = Driver::new(CHAIN, &g).unwrap_err().to_string();
    assert!(e.contains("schema"), "{e}");
    let mut g = genesis(&[], 0);
    g.accounts[0].address = "ABC".into();
    assert!(Driver::new(CHAIN, &g).is_err());
}

#[test]
fn the_vm_test_genesis_is_one_this_application_starts_from() {
    // tests/cometbft-network.nix runs four validators from this genesis.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/nixos/cometbft/genesis.json"
    );
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let req = tendermint_proto::v0_38::abci::RequestInitChain {
        chain_id: g["chain_id"].as_str().unwrap().into(),
        app_state_bytes: serde_json::to_vec(&g["app_state"]).unwrap().into(),
        initial_height: 1,
        ..Default::default()
    };
    let (app, resp) = xnode_chain::App::init(&req).unwrap();
    assert_eq!(resp.app_hash.len(), 32);
    let st = app.committed();
    assert_eq!(st.core.accounts.len(), 1);
    assert_eq!(st.core.sources.len(), 1);
    // The faucet the VM test signs with: 32 bytes of 0x07.
    assert_eq!(
        st.core.params.authority.as_deref(),
        Some(Wallet::from_seed(7).address().as_str())
    );
}
