//! A node with a manufactured swtpm, attested and activated, for the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use attest::{AttestOptions, Freshness};
use testkit::Swtpm;
use xnode_verify::credential::{self, Registry, REGISTRY_VERSION};
use xnode_verify::{ekcert, Envelope, Policy};

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub struct Node {
    pub tpm: Swtpm,
    pub state: PathBuf,
    pub tcti: probe::TpmSource,
}

impl Node {
    pub fn new() -> Node {
        let tpm = Swtpm::manufactured();
        let state = tpm.state_dir("node");
        let tcti = tpm.tcti().parse().unwrap();
        Node { tpm, state, tcti }
    }

    pub fn options(&self, nonce: &[u8]) -> AttestOptions {
        AttestOptions {
            state_dir: self.state.clone(),
            tcti: self.tcti.clone(),
            freshness: Freshness::Nonce(nonce.to_vec()),
            pcrs: attest::attest::DEFAULT_PCRS.to_vec(),
            event_log: self.tpm.path().join("no-event-log"),
            capacity: None,
        }
    }

    pub fn attest(&self, nonce: &[u8]) -> Vec<u8> {
        attest::attest(&self.options(nonce))
            .expect("attest")
            .envelope
    }

    /// The verifier's policy for this node: its CA, and its AK activated
    /// through the real credential exchange.
    pub fn policy(&self, envelope: &[u8], nonce: &[u8]) -> Policy {
        let env: Envelope = serde_json::from_slice(envelope).unwrap();
        let ek = xnode_verify::format::unb64("", &env.tpm.ek_public).unwrap();
        let ak = xnode_verify::format::unb64("", &env.tpm.ak_public).unwrap();
        let (challenge, pending) =
            credential::issue(&ek, &ak, now(), &mut rand_core::OsRng).unwrap();
        let response = attest::activate(&self.state, &self.tcti, &challenge).expect("activate");
        let activation = credential::accept(&pending, &response, now()).expect("accept");
        Policy {
            ek_cas: self.cas(),
            activations: Some(Registry {
                version: REGISTRY_VERSION.into(),
                activations: vec![activation],
            }),
            nonce: Some(nonce.to_vec()),
            now_unix: now(),
            ..Default::default()
        }
    }

    pub fn cas(&self) -> Vec<x509_cert::Certificate> {
        ekcert::parse_pem_bundle(
            &std::fs::read_to_string(self.tpm.ca_bundle.as_ref().unwrap()).unwrap(),
        )
        .unwrap()
    }
}
