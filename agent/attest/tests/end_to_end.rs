//! Attest on a manufactured swtpm, then verify offline: first without the
//! AK's activation (that check fails), then after the credential exchange.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::{AttestOptions, Freshness};
use testkit::{missing, Swtpm};
use xnode_verify::credential::{self, Registry, REGISTRY_VERSION};
use xnode_verify::{ekcert, Policy, Status};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn attest_activate_verify() {
    if !Swtpm::available() {
        missing(Swtpm::NEEDS);
        return;
    }
    let tpm = Swtpm::manufactured();
    let state = tpm.state_dir("node");
    let tcti: probe::TpmSource = tpm.tcti().parse().unwrap();
    let opts = AttestOptions {
        state_dir: state.clone(),
        tcti: tcti.clone(),
        freshness: Freshness::Nonce(vec![0xAB; 16]),
        pcrs: attest::attest::DEFAULT_PCRS.to_vec(),
        event_log: tpm.path().join("no-event-log"),
    };
    let out = attest::attest(&opts).expect("attest");
    assert!(out.software_tpm && out.created_identity && out.created_ak && out.has_ek_certificate);

    let cas = ekcert::parse_pem_bundle(
        &std::fs::read_to_string(tpm.ca_bundle.as_ref().unwrap()).unwrap(),
    )
    .unwrap();
    let mut policy = Policy {
        ek_cas: cas,
        nonce: Some(vec![0xAB; 16]),
        now_unix: now(),
        ..Default::default()
    };
    let outcome = xnode_verify::verify(&out.envelope, &policy);
    for c in &outcome.checks {
        eprintln!("{:<16} {:?} {}", c.name, c.status, c.detail);
    }
    let failed: Vec<_> = outcome.failed().map(|c| c.name).collect();
    assert_eq!(failed, ["ak_activation"]);

    // The credential exchange: verifier issues, node activates, verifier accepts.
    let env: xnode_verify::Envelope = serde_json::from_slice(&out.envelope).unwrap();
    let ek_pub = xnode_verify::format::unb64("", &env.tpm.ek_public).unwrap();
    let ak_pub = xnode_verify::format::unb64("", &env.tpm.ak_public).unwrap();
    let (challenge, pending) =
        credential::issue(&ek_pub, &ak_pub, now(), &mut rand_core::OsRng).unwrap();
    let response = attest::activate(&state, &tcti, &challenge).expect("activate");
    let activation = credential::accept(&pending, &response, now()).expect("accept");
    policy.activations = Some(Registry {
        version: REGISTRY_VERSION.into(),
        activations: vec![activation],
    });

    let outcome = xnode_verify::verify(&out.envelope, &policy);
    let failed: Vec<_> = outcome
        .failed()
        .map(|c| (c.name, c.detail.clone()))
        .collect();
    assert!(outcome.ok, "{failed:?}");
    assert!(outcome
        .checks
        .iter()
        .any(|c| c.name == "ek_certificate" && c.status == Status::Pass));

    // A wrong secret is refused.
    let mut wrong = response.clone();
    wrong.secret = hex::encode([0u8; 32]);
    assert!(credential::accept(&pending, &wrong, now()).is_err());
}
