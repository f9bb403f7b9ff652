//! Attested resources: a gossiped envelope counts only once the offline
//! verifier passes it in full (node signature, TPM quote, EK chain to a
//! trusted CA, AK activation, freshness) and it is the sender's own.

use std::sync::Mutex;

use libp2p::PeerId;
use xnode_verify::Policy;

use crate::observe::AttestationCheck;
use crate::resources::Resources;

#[derive(Debug)]
pub struct VerifiedAttestations {
    policy: Mutex<Policy>,
}

impl VerifiedAttestations {
    /// `policy` names the trusted EK CAs, the activation registry and the
    /// maximum age; its clock is set on every check.
    pub fn new(policy: Policy) -> VerifiedAttestations {
        VerifiedAttestations {
            policy: Mutex::new(policy),
        }
    }
}

impl AttestationCheck for VerifiedAttestations {
    fn check(&self, peer: &PeerId, envelope: &[u8], now_unix: u64) -> Result<Resources, String> {
        let outcome = {
            let mut policy = self
                .policy
                .lock()
                .map_err(|_| "verifier state poisoned".to_string())?;
            policy.now_unix = now_unix;
            xnode_verify::verify(envelope, &policy)
        };
        if !outcome.ok {
            let failed: Vec<String> = outcome
                .failed()
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            return Err(failed.join("; "));
        }
        let report = outcome.report.ok_or("the verifier returned no report")?;
        if report.node_id != peer.to_string() {
            return Err(format!(
                "the envelope is node {}'s, announced by {peer}",
                report.node_id
            ));
        }
        let inventory: serde_json::Value =
            serde_json::from_str(report.inventory.get()).map_err(|e| format!("inventory: {e}"))?;
        Ok(Resources::from_inventory(&inventory))
    }
}
