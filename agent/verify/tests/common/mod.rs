//! The committed swtpm attestation (tests/fixtures/attestation): a real
//! envelope, its EK CA and activation registry, verified without any TPM.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use xnode_verify::credential::Registry;
use xnode_verify::{ekcert, Policy, Report};

pub fn fixture(name: &str) -> Vec<u8> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/attestation/"
    );
    std::fs::read(format!("{p}{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn envelope() -> Vec<u8> {
    fixture("envelope.json")
}

/// The policy the fixture passes, with the clock just after it was made.
pub fn policy() -> Policy {
    let env: xnode_verify::Envelope = serde_json::from_slice(&envelope()).unwrap();
    let report: Report =
        serde_json::from_slice(&xnode_verify::format::unb64("", &env.payload).unwrap()).unwrap();
    Policy {
        ek_cas: ekcert::parse_pem_bundle(&String::from_utf8(fixture("ek-ca.pem")).unwrap())
            .unwrap(),
        activations: Some(
            serde_json::from_slice::<Registry>(&fixture("activations.json")).unwrap(),
        ),
        nonce: Some(hex::decode(String::from_utf8(fixture("nonce.hex")).unwrap().trim()).unwrap()),
        max_age_secs: Some(600),
        now_unix: report.time_unix + 60,
        ..Default::default()
    }
}
