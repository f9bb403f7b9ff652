//! The node registry with real attestations (one manufactured swtpm per
//! node), staking and the validator set, slashing, per-block source
//! assignment and CID submission, driven block by block in process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{codes, comparable, genesis, nodes, Node, CHAIN, FEE};
use ed25519_dalek::SigningKey;
use tendermint_proto::v0_38::abci::{Misbehavior, MisbehaviorType, Validator};
use xnode_chain::app::validator_address;
use xnode_chain::codes as c;
use xnode_chain::driver::{Driver, Wallet};
use xnode_chain::Msg;

fn validator_key(seed: u8) -> String {
    hex::encode(
        SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .as_bytes(),
    )
}

/// `w` sends `envelope` bound to block `beacon_height`, as a transaction
/// meant to be refused (its nonce not counted as used).
fn attest_unused(
    w: &Wallet,
    envelope: &[u8],
    beacon_height: u64,
    validator_key: Option<String>,
) -> Vec<u8> {
    w.sign_unused(
        CHAIN,
        FEE,
        Msg::Attest {
            envelope: xnode_chain::tx::encode_envelope(envelope),
            beacon_height,
            validator_key,
        },
    )
}

fn node_json(d: &Driver, n: &Node) -> serde_json::Value {
    d.query(&format!("/node/{}", n.address())).unwrap()
}

fn power_of(block: &xnode_chain::driver::Block, key: &str) -> Option<i64> {
    use tendermint_proto::v0_38::crypto::public_key::Sum;
    block
        .validator_updates
        .iter()
        .find_map(|u| match &u.pub_key {
            Some(pk) => match &pk.sum {
                Some(Sum::Ed25519(k)) if hex::encode(k) == key => Some(u.power),
                _ => None,
            },
            None => None,
        })
}

/// A chain whose genesis funds `nodes` and trusts the EK CAs of the
/// first `trusted` of them.
fn chain(nodes: &[Node], trusted: usize, sources: usize) -> Driver {
    let mut g = genesis(
        &nodes.iter().map(Node::address).collect::<Vec<_>>(),
        sources,
    );
    g.params.ek_cas = nodes[..trusted].iter().map(Node::ca_pem).collect();
    let mut d = Driver::new(CHAIN, &g).unwrap();
    d.block(vec![]).unwrap();
    // The authority ran the credential exchange with every node's TPM.
    let mut f = common::faucet();
    let activations = nodes
        .iter()
        .map(|n| {
            f.sign(
                CHAIN,
                FEE,
                n.activation(&n.envelope(&d.hash_at(1).unwrap())),
            )
        })
        .collect();
    let b = d.block(activations).unwrap();
    assert!(codes(&b).iter().all(|c| *c == 0), "{:?}", b.results);
    d
}

#[test]
fn registration_verifies_the_envelope_and_stores_nothing_of_a_failure() {
    let Some(mut n) = nodes(3) else { return };
    // Node 2's TPM was made by a CA the chain does not trust.
    let mut d = chain(&n, 2, 4);
    let t0 = n[0].attest_tx(&d, 1, Some(validator_key(50)));
    let t1 = n[1].attest_tx(&d, 1, None);
    let t2 = n[2].attest_tx(&d, 1, None);
    let b = d.block(vec![t0.clone(), t1, t2]).unwrap();
    assert_eq!(codes(&b), [0, 0, c::ATTESTATION], "{:?}", b.results);
    assert!(
        b.results[2].log.contains("ek_certificate"),
        "{}",
        b.results[2].log
    );
    let node0 = node_json(&d, &n[0]);
    assert_eq!(node0["status"], "active");
    assert_eq!(node0["attested_height"], 3);
    assert_eq!(node0["validator_key"], validator_key(50));
    assert!(node0["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
    // The rejected node: no record, no fee taken, its nonce unused.
    assert_eq!(
        d.query(&format!("/node/{}", n[2].address())).unwrap_err().0,
        c::NOT_FOUND
    );
    let acct = d.query(&format!("/account/{}", n[2].address())).unwrap();
    assert_eq!(
        (acct["balance"].as_u64(), acct["nonce"].as_u64()),
        (Some(10_000), Some(0))
    );
    n[2].wallet.nonce = 0;

    let before = comparable(d.app.committed());
    let h = d.height();
    // 1. The same transaction again: a replay.
    let replay = t0;
    // 2. Node 0's envelope re-sent in a new transaction: its sequence is
    //    not above the one on record.
    let old_env = {
        let tx: xnode_chain::Tx = serde_json::from_slice(&replay).unwrap();
        match tx.body.msg {
            Msg::Attest { envelope, .. } => envelope,
            _ => unreachable!(),
        }
    };
    let resent = attest_unused(
        &n[0].wallet,
        &xnode_chain::tx::envelope_bytes(&old_env).unwrap(),
        1,
        None,
    );
    // 3. Node 1's envelope sent by node 2's account.
    let fresh1 = n[1].envelope(&d.hash_at(h).unwrap());
    let stolen = attest_unused(&n[2].wallet, &fresh1, h, None);
    // 4. An envelope for block h's hash claimed for block h-1.
    let wrong_beacon = attest_unused(&n[1].wallet, &fresh1, h - 1, None);
    // 5. A beacon the chain never had.
    let no_beacon = attest_unused(&n[1].wallet, &fresh1, 999, None);
    // 6. The envelope tampered with (the report's bytes changed).
    let mut env: serde_json::Value = serde_json::from_slice(&fresh1).unwrap();
    env["payload"] =
        serde_json::Value::String(format!("e30{}", &env["payload"].as_str().unwrap()[3..]));
    let tampered = attest_unused(&n[1].wallet, &serde_json::to_vec(&env).unwrap(), h, None);
    // 7. Not base64.
    let junk = n[1].wallet.sign_unused(
        CHAIN,
        FEE,
        Msg::Attest {
            envelope: "%%%".into(),
            beacon_height: h,
            validator_key: None,
        },
    );
    // 8. Node 1 claiming node 0's validator key.
    let fresh1b = n[1].envelope(&d.hash_at(h).unwrap());
    let taken_key = attest_unused(&n[1].wallet, &fresh1b, h, Some(validator_key(50)));
    let cases = [
        ("replay", replay, c::BAD_NONCE, "nonce"),
        ("old sequence", resent, c::ATTESTATION, "sequence"),
        (
            "another node's envelope",
            stolen,
            c::ATTESTATION,
            "the sender is",
        ),
        ("wrong beacon", wrong_beacon, c::ATTESTATION, "freshness"),
        (
            "unknown beacon",
            no_beacon,
            c::ATTESTATION,
            "beacon height 999",
        ),
        ("tampered", tampered, c::ATTESTATION, "rejected"),
        ("not base64", junk, c::INVALID, "base64"),
        (
            "validator key taken",
            taken_key,
            c::DUPLICATE,
            "validator key",
        ),
    ];
    let b = d
        .block(cases.iter().map(|(_, tx, _, _)| tx.clone()).collect())
        .unwrap();
    for ((what, _, code, says), r) in cases.iter().zip(&b.results) {
        assert_eq!(r.code, *code, "{what}: {}", r.log);
        assert!(r.log.contains(says), "{what}: {}", r.log);
    }
    assert_eq!(comparable(d.app.committed()), before);

    // A beacon that has left the window.
    for _ in 0..8 {
        d.block(vec![]).unwrap();
    }
    let late = attest_unused(&n[1].wallet, &fresh1b, h, None);
    let b = d.block(vec![late]).unwrap();
    assert_eq!(codes(&b), [c::ATTESTATION]);
    assert!(
        b.results[0].log.contains("not one of the last blocks"),
        "{}",
        b.results[0].log
    );

    // One TPM backs one node: node 1's TPM presented under a new key.
    let sybil_dir = common::key_dir(&n[1], "sybil", 77);
    let mut sybil = xnode_chain::driver::Wallet::from_seed(77);
    let mut f = common::faucet();
    f.nonce = d.query(&format!("/account/{}", f.address())).unwrap()["nonce"]
        .as_u64()
        .unwrap();
    let fund = f.sign(
        CHAIN,
        FEE,
        Msg::Transfer {
            to: sybil.address(),
            amount: 1_000,
        },
    );
    // Even with its new AK activated (the TPM is genuine), the TPM already
    // backs node 1.
    let beacon_height = d.height();
    let env = n[1].envelope_in(&sybil_dir, &d.hash_at(beacon_height).unwrap());
    let activation = {
        use xnode_verify::credential;
        let e: xnode_verify::Envelope = serde_json::from_slice(&env).unwrap();
        let ek = xnode_verify::format::unb64("", &e.tpm.ek_public).unwrap();
        let ak = xnode_verify::format::unb64("", &e.tpm.ak_public).unwrap();
        let (challenge, pending) = credential::issue(&ek, &ak, 0, &mut rand_core::OsRng).unwrap();
        let response = attest::activate(&sybil_dir, &n[1].tcti, &challenge).unwrap();
        let a = credential::accept(&pending, &response, 0).unwrap();
        f.sign(
            CHAIN,
            FEE,
            Msg::Activate {
                ek_public_sha256: a.ek_public_sha256,
                ak_name: a.ak_name,
            },
        )
    };
    assert_eq!(codes(&d.block(vec![fund, activation]).unwrap()), [0, 0]);
    let s = sybil.sign(
        CHAIN,
        FEE,
        Msg::Attest {
            envelope: xnode_chain::tx::encode_envelope(&env),
            beacon_height,
            validator_key: None,
        },
    );
    let b = d.block(vec![s]).unwrap();
    assert_eq!(codes(&b), [c::ATTESTATION], "{:?}", b.results);
    assert!(
        b.results[0].log.contains("already backs node"),
        "{}",
        b.results[0].log
    );
}

#[test]
fn stake_validators_assignment_cids_slashing_and_replay() {
    let Some(mut n) = nodes(2) else { return };
    let mut d = chain(&n, 2, 3);
    let (v0, v1) = (validator_key(60), validator_key(61));
    let t0 = n[0].attest_tx(&d, 1, Some(v0.clone()));
    let t1 = n[1].attest_tx(&d, 1, Some(v1.clone()));
    assert_eq!(codes(&d.block(vec![t0, t1]).unwrap()), [0, 0]);

    // Staking: node 0 above the minimum, node 1 below it.
    let s0 = n[0].wallet.sign(CHAIN, FEE, Msg::Stake { amount: 2_000 });
    let s1 = n[1].wallet.sign(CHAIN, FEE, Msg::Stake { amount: 500 });
    let too_much = n[1]
        .wallet
        .sign_unused(CHAIN, FEE, Msg::Stake { amount: 1_000_000 });
    let b = d.block(vec![s0, s1, too_much]).unwrap();
    assert_eq!(codes(&b), [0, 0, c::FUNDS]);
    assert_eq!(power_of(&b, &v0), Some(20));
    assert_eq!(power_of(&b, &v1), None);
    assert_eq!(d.query("/validators").unwrap()[&v0], 20);

    // Every active node has a different source at this height.
    let h = d.height();
    let a = d.query(&format!("/assignment/{h}")).unwrap()["assignment"].clone();
    let (src0, src1) = (
        a[n[0].address()].as_str().unwrap().to_string(),
        a[n[1].address()].as_str().unwrap().to_string(),
    );
    assert_ne!(src0, src1);
    // Anyone recomputes it from the block hash and the node set.
    let recomputed = xnode_chain::assign::assign(
        &d.hash_at(h).unwrap(),
        [n[0].address(), n[1].address()].iter().map(String::as_str),
        ["source-0", "source-1", "source-2"],
    );
    assert_eq!(serde_json::to_value(&recomputed).unwrap(), a);

    // CID submissions for height h.
    let cid0 = xnode_chain::cid::ipfs_add_cid(b"what source 0 served").to_string();
    let good = n[0].wallet.sign(
        CHAIN,
        FEE,
        Msg::SubmitCid {
            height: h,
            source: src0.clone(),
            cid: cid0.clone(),
        },
    );
    let again = n[0].wallet.sign_unused(
        CHAIN,
        FEE,
        Msg::SubmitCid {
            height: h,
            source: src0.clone(),
            cid: cid0.clone(),
        },
    );
    let wrong_source = n[1].wallet.sign_unused(
        CHAIN,
        FEE,
        Msg::SubmitCid {
            height: h,
            source: src0.clone(),
            cid: cid0.clone(),
        },
    );
    let future = n[1].wallet.sign_unused(
        CHAIN,
        FEE,
        Msg::SubmitCid {
            height: h + 1,
            source: src1.clone(),
            cid: cid0.clone(),
        },
    );
    let bad_cid = n[1].wallet.sign_unused(
        CHAIN,
        FEE,
        Msg::SubmitCid {
            height: h,
            source: src1.clone(),
            cid: "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR".into(),
        },
    );
    let b = d
        .block(vec![good, again, wrong_source, future, bad_cid])
        .unwrap();
    assert_eq!(
        codes(&b),
        [
            0,
            c::DUPLICATE,
            c::NOT_ASSIGNED,
            c::NOT_ASSIGNED,
            c::INVALID
        ],
        "{:?}",
        b.results
    );
    let rec = d
        .query(&format!("/records/{h}/{}", n[0].address()))
        .unwrap();
    assert_eq!(
        (rec["source"].as_str(), rec["cid"].as_str()),
        (Some(src0.as_str()), Some(cid0.as_str()))
    );
    assert_eq!(rec["submitted_height"], h + 1);
    // Past the window the assignment of h is closed.
    for _ in 0..3 {
        d.block(vec![]).unwrap();
    }
    let late = n[1].wallet.sign_unused(
        CHAIN,
        FEE,
        Msg::SubmitCid {
            height: h,
            source: src1.clone(),
            cid: cid0.clone(),
        },
    );
    assert_eq!(codes(&d.block(vec![late]).unwrap()), [c::NOT_ASSIGNED]);

    // Double signing: CometBFT's evidence names node 0's consensus address.
    let evidence = Misbehavior {
        r#type: MisbehaviorType::DuplicateVote as i32,
        validator: Some(Validator {
            address: validator_address(&hex::decode(&v0).unwrap())
                .to_vec()
                .into(),
            power: 20,
        }),
        height: d.height() as i64,
        ..Default::default()
    };
    let b = d.block_with(vec![], vec![evidence.clone()]).unwrap();
    let n0 = node_json(&d, &n[0]);
    assert_eq!(n0["status"], "jailed");
    assert_eq!(n0["bonded"], 1_900);
    assert_eq!(n0["slashed"], 100);
    assert_eq!(power_of(&b, &v0), Some(0));
    assert!(b.events.iter().any(|e| e.r#type == "xnode.slash"));
    // The same evidence again slashes nothing more.
    d.block_with(vec![], vec![evidence]).unwrap();
    assert_eq!(node_json(&d, &n[0])["slashed"], 100);
    let back = n[0].attest_tx(&d, d.height(), None);
    assert_eq!(codes(&d.block(vec![back]).unwrap()), [c::NOT_A_NODE]);
    n[0].wallet.nonce -= 1;

    // Unstaking: locked for unbonding_blocks, then back in the balance.
    let addr1 = n[1].address();
    let bal = |d: &Driver| {
        d.query(&format!("/account/{addr1}")).unwrap()["balance"]
            .as_u64()
            .unwrap()
    };
    let u = n[1].wallet.sign(CHAIN, FEE, Msg::Unstake { amount: 200 });
    d.block(vec![u]).unwrap();
    let locked = bal(&d);
    assert_eq!(node_json(&d, &n[1])["bonded"], 300);
    for _ in 0..5 {
        d.block(vec![]).unwrap();
    }
    assert_eq!(bal(&d), locked + 200);

    // Node 1 lets its attestation lapse (window 20): slashed 1%, and no
    // longer assigned a source.
    let attested = node_json(&d, &n[1])["attested_height"].as_u64().unwrap();
    while d.height() <= attested + 20 {
        d.block(vec![]).unwrap();
    }
    let n1 = node_json(&d, &n[1]);
    assert_eq!(n1["status"], "lapsed");
    assert_eq!(n1["bonded"], 297);
    assert_eq!(
        d.query("/assignment").unwrap()["assignment"],
        serde_json::json!({})
    );
    // A good attestation makes it active again.
    let t = n[1].attest_tx(&d, d.height(), None);
    assert_eq!(codes(&d.block(vec![t]).unwrap()), [0]);
    assert_eq!(node_json(&d, &n[1])["status"], "active");

    // Determinism: the same blocks on a fresh instance, hash for hash.
    let replayed = d.replay().unwrap();
    assert_eq!(replayed.app_hashes, d.app_hashes);
    assert_eq!(
        serde_json::to_value(replayed.app.committed()).unwrap(),
        serde_json::to_value(d.app.committed()).unwrap()
    );
}

#[test]
fn a_chain_that_trusts_no_ek_ca_registers_no_node() {
    let Some(mut n) = nodes(1) else { return };
    let mut d = chain(&n, 0, 1);
    let t = n[0].attest_tx(&d, 1, None);
    let b = d.block(vec![t]).unwrap();
    assert_eq!(codes(&b), [c::ATTESTATION]);
    assert!(
        b.results[0].log.contains("ek_certificate"),
        "{}",
        b.results[0].log
    );
    assert_eq!(
        d.query(&format!("/node/{}", n[0].address())).unwrap_err().0,
        c::NOT_FOUND
    );
}
