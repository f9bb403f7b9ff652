//! Attest on a manufactured swtpm, then verify offline: first without the
//! AK's activation (that check fails), then after the credential exchange.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{now, Node};
use testkit::{missing, Swtpm};
use xnode_verify::credential;
use xnode_verify::{Policy, Status};

#[test]
fn attest_activate_verify() {
    if !Swtpm::available() {
        missing(Swtpm::NEEDS);
        return;
    }
    let node = Node::new();
    let nonce = [0xAB; 16];
    let out = attest::attest(&node.options(&nonce)).expect("attest");
    assert!(out.software_tpm && out.created_identity && out.created_ak && out.has_ek_certificate);

    let unactivated = Policy {
        ek_cas: node.cas(),
        nonce: Some(nonce.to_vec()),
        now_unix: now(),
        ..Default::default()
    };
    let failed: Vec<_> = xnode_verify::verify(&out.envelope, &unactivated)
        .failed()
        .map(|c| c.name)
        .collect();
    assert_eq!(failed, ["ak_activation"]);

    let policy = node.policy(&out.envelope, &nonce);
    let outcome = xnode_verify::verify(&out.envelope, &policy);
    let failed: Vec<_> = outcome
        .failed()
        .map(|c| (c.name, c.detail.clone()))
        .collect();
    assert!(outcome.ok, "{failed:?}");
    for name in [
        "node_signature",
        "quote_signature",
        "binding",
        "pcr_digest",
        "ek_certificate",
        "ak_activation",
        "freshness",
    ] {
        assert!(
            outcome
                .checks
                .iter()
                .any(|c| c.name == name && c.status == Status::Pass),
            "{name} did not pass"
        );
    }
    assert!(outcome.report.unwrap().software_tpm);

    // The AK and identity persist: a second attestation reuses them, with the next sequence.
    let again = attest::attest(&node.options(&nonce)).expect("attest again");
    assert!(!again.created_ak && !again.created_identity);
    assert_eq!(again.sequence, 2);
    assert!(xnode_verify::verify(&again.envelope, &policy).ok);
}

#[test]
fn wrong_secret_is_refused() {
    if !Swtpm::available() {
        missing(Swtpm::NEEDS);
        return;
    }
    let node = Node::new();
    let env = node.attest(&[1; 8]);
    let v: xnode_verify::Envelope = serde_json::from_slice(&env).unwrap();
    let ek = xnode_verify::format::unb64("", &v.tpm.ek_public).unwrap();
    let ak = xnode_verify::format::unb64("", &v.tpm.ak_public).unwrap();
    let (challenge, pending) = credential::issue(&ek, &ak, now(), &mut rand_core::OsRng).unwrap();
    let mut response = attest::activate(&node.state, &node.tcti, &challenge).unwrap();
    assert!(credential::accept(&pending, &response, now()).is_ok());
    response.secret = hex::encode([0u8; 32]);
    let err = credential::accept(&pending, &response, now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrong secret"), "{err}");
}

#[test]
fn a_blank_tpm_without_ek_certificate_attests_but_cannot_be_traced() {
    if !Swtpm::available() {
        missing(Swtpm::NEEDS);
        return;
    }
    // No swtpm_setup: no persisted EK, no certificate in NV; the EK comes
    // from the standard template.
    let tpm = Swtpm::blank();
    let opts = attest::AttestOptions {
        state_dir: tpm.state_dir("node"),
        tcti: tpm.tcti().parse().unwrap(),
        freshness: attest::Freshness::Beacon(vec![0xBE; 32]),
        pcrs: vec![0, 7],
        event_log: tpm.path().join("none"),
        capacity: None,
    };
    let out = attest::attest(&opts).expect("attest");
    assert!(!out.has_ek_certificate);
    let policy = Policy {
        beacon: Some(vec![0xBE; 32]),
        now_unix: now(),
        ..Default::default()
    };
    let outcome = xnode_verify::verify(&out.envelope, &policy);
    let ek = outcome
        .checks
        .iter()
        .find(|c| c.name == "ek_certificate")
        .unwrap();
    assert_eq!(ek.status, Status::Fail);
    assert!(ek.detail.contains("no EK certificate"), "{}", ek.detail);
    let fresh = outcome
        .checks
        .iter()
        .find(|c| c.name == "freshness")
        .unwrap();
    assert_eq!(fresh.status, Status::Pass, "{}", fresh.detail);
}

#[test]
fn no_tpm_is_one_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = attest::AttestOptions {
        state_dir: dir.path().join("node"),
        tcti: probe::TpmSource::Device("/nonexistent/tpmrm0".into()),
        freshness: attest::Freshness::Nonce(vec![1]),
        pcrs: vec![0],
        event_log: dir.path().join("none"),
        capacity: None,
    };
    let err = attest::attest(&opts).unwrap_err().to_string();
    assert!(
        err.contains("no TPM at device:/nonexistent/tpmrm0") && err.contains("--tcti"),
        "{err}"
    );
    assert!(
        !dir.path().join("node").exists(),
        "nothing is written when there is no TPM"
    );
}
