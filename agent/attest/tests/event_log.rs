//! Measured boot: PCR 14 of a real swtpm is extended with known events, the
//! matching event log travels in the envelope, and the verifier replays it
//! against the quoted PCRs. A log that does not match is rejected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::Node;
use sha2::{Digest, Sha256};
use testkit::{have, missing, Swtpm};
use xnode_verify::eventlog::build_sha256_log;
use xnode_verify::Status;

const EV_IPL: u32 = 0x0000_000D;

#[test]
fn event_log_replays_to_the_quoted_pcrs() {
    if !Swtpm::available() || !have("tpm2_pcrextend") {
        missing("swtpm, swtpm_setup and tpm2-tools");
        return;
    }
    let node = Node::new();
    let events: Vec<(u32, u32, Vec<u8>)> = [
        &b"shim 15.8"[..],
        b"kernel 6.6 /nix/store/abc-linux",
        b"initrd /nix/store/def-initrd",
    ]
    .iter()
    .map(|d| (14, EV_IPL, d.to_vec()))
    .collect();
    for (pcr, _, data) in &events {
        let digest = hex::encode(Sha256::digest(data));
        let st = Command::new("tpm2_pcrextend")
            .args(["-T", &node.tpm.tcti(), &format!("{pcr}:sha256={digest}")])
            .status()
            .unwrap();
        assert!(st.success(), "tpm2_pcrextend failed");
    }
    let log_path = node.tpm.path().join("binary_bios_measurements");
    std::fs::write(&log_path, build_sha256_log(&events)).unwrap();

    let nonce = [0x44u8; 16];
    let mut opts = node.options(&nonce);
    opts.event_log = log_path.clone();
    let env = attest::attest(&opts).unwrap().envelope;
    let policy = node.policy(&env, &nonce);
    let out = xnode_verify::verify(&env, &policy);
    let log = out.checks.iter().find(|c| c.name == "event_log").unwrap();
    assert_eq!(log.status, Status::Pass, "{}", log.detail);
    assert!(out.ok);

    // A log claiming another kernel than the one measured.
    let mut forged = events.clone();
    forged[1].2 = b"kernel 6.6 /nix/store/evil-linux".to_vec();
    std::fs::write(&log_path, build_sha256_log(&forged)).unwrap();
    let env = attest::attest(&opts).unwrap().envelope;
    let out = xnode_verify::verify(&env, &policy);
    let failed: Vec<_> = out.failed().map(|c| (c.name, c.detail.clone())).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "event_log");
    assert!(failed[0].1.contains("PCR 14"), "{}", failed[0].1);
}
