//! Mesh nodes for the tests: each with its own manufactured swtpm, a real
//! attestation envelope, and the verifier's policy that accepts them all.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use attest::{AttestOptions, Freshness};
use libp2p::identity::Keypair;
use mesh::attested::VerifiedAttestations;
use mesh::node::{Config, Mesh, Transport};
use testkit::Swtpm;
use xnode_verify::credential::{self, Registry, REGISTRY_VERSION};
use xnode_verify::{ekcert, Envelope, Policy};

pub fn now() -> u64 {
    mesh::record::now_unix()
}

/// A node identity with its attestation, made on its own TPM.
pub struct Attested {
    pub key: Keypair,
    pub envelope: Vec<u8>,
    pub _tpm: Swtpm,
}

/// `n` attested identities and the policy that verifies each of them: the
/// TPMs' CAs, and every AK activated through the credential exchange.
pub fn attested(n: usize) -> (Vec<Attested>, Policy) {
    let mut out = Vec::new();
    let mut policy = Policy {
        activations: Some(Registry {
            version: REGISTRY_VERSION.into(),
            activations: Vec::new(),
        }),
        max_age_secs: Some(3600),
        ..Default::default()
    };
    for i in 0..n {
        let tpm = Swtpm::manufactured();
        let state = tpm.state_dir(&format!("node{i}"));
        let tcti: probe::TpmSource = tpm.tcti().parse().unwrap();
        let opts = AttestOptions {
            state_dir: state.clone(),
            tcti: tcti.clone(),
            freshness: Freshness::Beacon(b"mesh test".to_vec()),
            pcrs: attest::attest::DEFAULT_PCRS.to_vec(),
            event_log: tpm.path().join("no-event-log"),
            capacity: None,
        };
        let envelope = attest::attest(&opts).expect("attest").envelope;
        let env: Envelope = serde_json::from_slice(&envelope).unwrap();
        let ek = xnode_verify::format::unb64("", &env.tpm.ek_public).unwrap();
        let ak = xnode_verify::format::unb64("", &env.tpm.ak_public).unwrap();
        let (challenge, pending) =
            credential::issue(&ek, &ak, now(), &mut rand_core::OsRng).unwrap();
        let response = attest::activate(&state, &tcti, &challenge).expect("activate");
        let activation = credential::accept(&pending, &response, now()).expect("accept");
        policy
            .activations
            .as_mut()
            .unwrap()
            .activations
            .push(activation);
        let pem = std::fs::read_to_string(tpm.ca_bundle.as_ref().unwrap()).unwrap();
        policy
            .ek_cas
            .extend(ekcert::parse_pem_bundle(&pem).unwrap());
        let key = mesh::key::load_seed_file(&state.join("node.key")).unwrap();
        out.push(Attested {
            key,
            envelope,
            _tpm: tpm,
        });
    }
    (out, policy)
}

/// A config for in-process nodes that verifies attestations with `policy`.
pub fn memory_config(policy: &Policy) -> Config {
    Config {
        transport: Transport::Memory,
        attestation_check: Some(Arc::new(VerifiedAttestations::new(policy.clone()))),
        gossip_heartbeat: Duration::from_millis(200),
        ..Config::default()
    }
}

pub async fn start(
    key: Keypair,
    config: Config,
) -> (Mesh, tokio::task::JoinHandle<()>, libp2p::Multiaddr) {
    let (mesh, handle) = Mesh::spawn(key, config).expect("spawn");
    let addr = mesh
        .listen("/memory/0".parse().unwrap())
        .await
        .expect("listen");
    let full = addr.with(libp2p::multiaddr::Protocol::P2p(mesh.peer_id()));
    (mesh, handle, full)
}

/// Poll `check` until it returns Some, for at most `secs` seconds; the
/// bound only keeps a broken build from hanging, it asserts no speed.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
