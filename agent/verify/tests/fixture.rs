//! The committed swtpm envelope verifies with no TPM present, and stops
//! verifying when the verifier's expectations change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use xnode_verify::{verify, Policy, Status};

#[test]
fn committed_envelope_verifies_offline() {
    let out = verify(&common::envelope(), &common::policy());
    let failed: Vec<_> = out.failed().map(|c| (c.name, c.detail.clone())).collect();
    assert!(out.ok, "{failed:?}");
    let passed: Vec<_> = out
        .checks
        .iter()
        .filter(|c| c.status == Status::Pass)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        passed,
        [
            "envelope",
            "report",
            "node_identity",
            "node_signature",
            "quote_structure",
            "ak_attributes",
            "quote_signature",
            "binding",
            "pcr_digest",
            "ek_certificate",
            "ak_activation",
            "freshness"
        ]
    );
}

#[test]
fn expectations_that_do_not_hold_fail() {
    let env = common::envelope();
    let p = common::policy();
    let late = Policy {
        now_unix: p.now_unix + 3600,
        ..p.clone()
    };
    let f: Vec<_> = verify(&env, &late).failed().map(|c| c.name).collect();
    assert_eq!(f, ["freshness"]);
    let mut pcrs = std::collections::BTreeMap::new();
    pcrs.insert(11u32, vec![0xAA; 32]);
    let measured = Policy {
        expected_pcrs: Some(pcrs),
        ..p.clone()
    };
    let f: Vec<_> = verify(&env, &measured).failed().map(|c| c.name).collect();
    assert_eq!(f, ["expected_pcrs"]);
    let beacon = Policy {
        nonce: None,
        beacon: Some(vec![1; 32]),
        ..p
    };
    let f: Vec<_> = verify(&env, &beacon).failed().map(|c| c.name).collect();
    assert_eq!(f, ["freshness"]);
}
