//! The ABCI socket server as CometBFT talks to it: length-prefixed
//! protobuf over TCP on loopback, through tendermint-abci's client; and a
//! restart that resumes from the committed state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{faucet, genesis, CHAIN, FEE};
use tendermint_abci::{Client, ClientBuilder, ServerBuilder};
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{
    RequestCheckTx, RequestFinalizeBlock, RequestInfo, RequestQuery,
};
use xnode_chain::abci::AbciApp;
use xnode_chain::driver::{init_request, Wallet};
use xnode_chain::store::Store;
use xnode_chain::Msg;

fn serve(dir: &std::path::Path) -> Client {
    let app = AbciApp::open(Store::open(dir).unwrap()).unwrap();
    let server = ServerBuilder::default().bind("127.0.0.1:0", app).unwrap();
    let addr = server.local_addr();
    // The server runs until the test process ends.
    std::thread::spawn(move || {
        let _ = server.listen();
    });
    ClientBuilder::default().connect(addr).unwrap()
}

#[test]
fn cometbft_s_requests_over_the_socket_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = serve(dir.path());
    // Before genesis CometBFT sees height 0 and sends InitChain.
    let info = c.info(RequestInfo::default()).unwrap();
    assert_eq!(info.last_block_height, 0);
    let init = c
        .init_chain(init_request(CHAIN, &genesis(&[], 2), 1_800_000_000))
        .unwrap();
    assert_eq!(init.app_hash.len(), 32);
    // CometBFT restarted before its first block sends InitChain again: the
    // application, restarted too, starts the chain anew, to the same hash.
    let mut c = serve(dir.path());
    assert_eq!(c.info(RequestInfo::default()).unwrap().last_block_height, 0);
    let again = c
        .init_chain(init_request(CHAIN, &genesis(&[], 2), 1_800_000_000))
        .unwrap();
    assert_eq!(again.app_hash, init.app_hash);

    let mut f = faucet();
    let bob = Wallet::from_seed(9);
    let tx = f.sign(
        CHAIN,
        FEE,
        Msg::Transfer {
            to: bob.address(),
            amount: 42,
        },
    );
    let check = c
        .check_tx(RequestCheckTx {
            tx: tx.clone().into(),
            r#type: 0,
        })
        .unwrap();
    assert_eq!(check.code, 0, "{}", check.log);
    let bad = c
        .check_tx(RequestCheckTx {
            tx: b"junk".to_vec().into(),
            r#type: 0,
        })
        .unwrap();
    assert_eq!(bad.code, xnode_chain::codes::MALFORMED);
    assert!(!bad.log.is_empty());

    let fin = c
        .finalize_block(RequestFinalizeBlock {
            txs: vec![tx.into()],
            hash: vec![1u8; 32].into(),
            height: 1,
            time: Some(Timestamp {
                seconds: 1_800_000_001,
                nanos: 0,
            }),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(fin.tx_results.len(), 1);
    assert_eq!(fin.tx_results[0].code, 0, "{}", fin.tx_results[0].log);
    c.commit().unwrap();
    let q = c
        .query(RequestQuery {
            path: format!("/account/{}", bob.address()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(q.code, 0, "{}", q.log);
    let acct: serde_json::Value = serde_json::from_slice(&q.value).unwrap();
    assert_eq!(acct["balance"], 42);

    // A restarted application resumes at the committed height and hash.
    let mut again = serve(dir.path());
    let info = again.info(RequestInfo::default()).unwrap();
    assert_eq!(info.last_block_height, 1);
    assert_eq!(info.last_block_app_hash, fin.app_hash);
    let q = again
        .query(RequestQuery {
            path: "/app".into(),
            ..Default::default()
        })
        .unwrap();
    let app: serde_json::Value = serde_json::from_slice(&q.value).unwrap();
    assert_eq!(app["height"], 1);
}

#[test]
fn a_state_file_that_is_not_ours_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(xnode_chain::store::STATE_FILE);
    std::fs::write(&path, b"{\"not\": \"a state\"}").unwrap();
    let e = AbciApp::open(Store::open(dir.path()).unwrap()).unwrap_err();
    assert!(e.to_string().contains("not a state"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"not\": \"a state\"}");
}
