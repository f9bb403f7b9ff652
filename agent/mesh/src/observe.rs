//! Open observability: the signed metrics and attestation announcements
//! gossiped on the mesh, how each is validated before it is forwarded, and
//! the per-service view a node builds from what it heard.

use std::collections::{BTreeMap, HashMap};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::error::Rejected;
use crate::record::CLOCK_SKEW_SECS;
use crate::resources::Resources;
use crate::signed::{self, Opened};

pub const METRICS_TOPIC: &str = "xnode/metrics/1";
pub const ATTESTATION_TOPIC: &str = "xnode/attestations/1";
/// Older messages are not forwarded: they tell nothing current and would
/// let a peer replay a node's past.
pub const MAX_AGE_SECS: u64 = 300;

/// One node's report on the services it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricReport {
    pub node: PeerId,
    /// Strictly increasing per node; a repeated or lower one is a replay.
    pub seq: u64,
    pub time_unix: u64,
    /// Share of the node's capacity in use, 0.0 to 1.0.
    pub load: f32,
    pub services: Vec<ServiceMetric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceMetric {
    pub service: String,
    pub uptime_secs: u64,
    pub response_ms: Option<u32>,
    pub subscriptions: u32,
    pub faults: u32,
}

/// A node's attestation envelope, gossiped so that others learn its
/// attested resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationAnnounce {
    pub node: PeerId,
    pub seq: u64,
    pub time_unix: u64,
    /// Base64 of the envelope's exact bytes.
    pub envelope: String,
}

/// Verifies an attestation envelope for `peer` and returns the resources it
/// proves. The agent's implementation runs the offline verifier.
pub trait AttestationCheck: Send + Sync + 'static {
    fn check(&self, peer: &PeerId, envelope: &[u8], now_unix: u64) -> Result<Resources, String>;
}

/// Gossip accepted per signer and topic: a burst, then one per interval.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub burst: u32,
    pub per_secs: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            burst: 10,
            per_secs: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: f64,
}

/// The checks every gossiped message passes before it is delivered or
/// forwarded: size, signature, signer, freshness, order and rate.
#[derive(Debug, Default)]
pub struct Gate {
    rate: RateLimit,
    last_seq: HashMap<(PeerId, &'static str), u64>,
    buckets: HashMap<(PeerId, &'static str), Bucket>,
}

/// What validation made of a message.
#[derive(Debug)]
pub enum Verdict<T> {
    Accept(Box<Opened<T>>),
    /// Valid but already seen (or older than one seen): dropped without blame.
    Ignore(String),
    Reject(Rejected),
}

trait Stamped {
    fn node(&self) -> &PeerId;
    fn seq(&self) -> u64;
    fn time_unix(&self) -> u64;
}

impl Stamped for MetricReport {
    fn node(&self) -> &PeerId {
        &self.node
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn time_unix(&self) -> u64 {
        self.time_unix
    }
}

impl Stamped for AttestationAnnounce {
    fn node(&self) -> &PeerId {
        &self.node
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn time_unix(&self) -> u64 {
        self.time_unix
    }
}

impl Gate {
    pub fn new(rate: RateLimit) -> Gate {
        Gate {
            rate,
            ..Gate::default()
        }
    }

    pub fn metrics(&mut self, bytes: &[u8], now: f64) -> Verdict<MetricReport> {
        self.pass(signed::METRICS, bytes, now)
    }

    pub fn attestation(&mut self, bytes: &[u8], now: f64) -> Verdict<AttestationAnnounce> {
        self.pass(signed::ATTESTATION, bytes, now)
    }

    fn pass<T>(&mut self, kind: signed::Kind, bytes: &[u8], now: f64) -> Verdict<T>
    where
        T: Stamped + serde::de::DeserializeOwned,
    {
        let opened = match signed::open::<T>(kind, bytes) {
            Ok(o) => o,
            Err(e) => return Verdict::Reject(e),
        };
        let msg = &opened.payload;
        if *msg.node() != opened.signer {
            return Verdict::Reject(Rejected::Forged(format!(
                "message names node {} but is signed by {}",
                msg.node(),
                opened.signer
            )));
        }
        let now_secs = now as u64;
        if msg.time_unix() > now_secs + CLOCK_SKEW_SECS {
            return Verdict::Reject(Rejected::Stale(format!(
                "dated {} s ahead",
                msg.time_unix() - now_secs
            )));
        }
        if msg.time_unix() + MAX_AGE_SECS < now_secs {
            return Verdict::Reject(Rejected::Stale(format!(
                "{} s old",
                now_secs - msg.time_unix()
            )));
        }
        let id = (opened.signer, kind.payload_type);
        if let Some(&last) = self.last_seq.get(&id) {
            if msg.seq() <= last {
                return Verdict::Ignore(format!("seq {} after {last}", msg.seq()));
            }
        }
        let b = self.buckets.entry(id).or_insert(Bucket {
            tokens: f64::from(self.rate.burst),
            at: now,
        });
        b.tokens =
            (b.tokens + (now - b.at).max(0.0) / self.rate.per_secs).min(f64::from(self.rate.burst));
        b.at = now;
        if b.tokens < 1.0 {
            return Verdict::Reject(Rejected::RateLimited(format!(
                "{} sends more than {} per {} s",
                opened.signer, self.rate.burst, self.rate.per_secs
            )));
        }
        b.tokens -= 1.0;
        self.last_seq.insert(id, msg.seq());
        Verdict::Accept(Box::new(opened))
    }
}

/// What this node knows of another, from gossip.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeView {
    /// Resources proven by the node's latest attestation that verified.
    pub attested: Option<Resources>,
    pub attested_unix: Option<u64>,
    pub load: Option<f32>,
    pub metrics_unix: Option<u64>,
    pub services: Vec<ServiceMetric>,
}

/// One service across every node that reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub service: String,
    pub nodes: Vec<ServiceNode>,
    pub mean_response_ms: Option<f64>,
    pub min_uptime_secs: u64,
    pub subscriptions: u64,
    pub faults: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceNode {
    pub node: PeerId,
    pub uptime_secs: u64,
    pub response_ms: Option<u32>,
    pub subscriptions: u32,
    pub faults: u32,
    pub reported_unix: u64,
}

/// Every node this one has heard from.
#[derive(Debug, Default)]
pub struct Observations {
    pub nodes: BTreeMap<PeerId, NodeView>,
}

impl NodeView {
    /// Unix seconds of the latest metrics or attestation heard.
    pub fn last_heard(&self) -> u64 {
        self.metrics_unix
            .unwrap_or(0)
            .max(self.attested_unix.unwrap_or(0))
    }
}

impl Observations {
    pub fn metrics(&mut self, m: MetricReport) {
        let v = self.nodes.entry(m.node).or_default();
        v.load = Some(m.load.clamp(0.0, 1.0));
        v.metrics_unix = Some(m.time_unix);
        v.services = m.services;
    }

    pub fn attested(&mut self, node: PeerId, resources: Resources, at: u64) {
        let v = self.nodes.entry(node).or_default();
        v.attested = Some(resources);
        v.attested_unix = Some(at);
    }

    /// Forget a node (it was dropped for misbehaving).
    pub fn forget(&mut self, node: &PeerId) {
        self.nodes.remove(node);
    }

    /// The per-service view: reports older than `max_age` are left out.
    pub fn services(&self, now: u64, max_age: u64) -> Vec<ServiceView> {
        let mut by: BTreeMap<&str, Vec<ServiceNode>> = BTreeMap::new();
        for (peer, v) in &self.nodes {
            let Some(at) = v.metrics_unix.filter(|t| t + max_age >= now) else {
                continue;
            };
            for s in &v.services {
                by.entry(&s.service).or_default().push(ServiceNode {
                    node: *peer,
                    uptime_secs: s.uptime_secs,
                    response_ms: s.response_ms,
                    subscriptions: s.subscriptions,
                    faults: s.faults,
                    reported_unix: at,
                });
            }
        }
        by.into_iter()
            .map(|(service, nodes)| {
                let rts: Vec<f64> = nodes
                    .iter()
                    .filter_map(|n| n.response_ms)
                    .map(f64::from)
                    .collect();
                ServiceView {
                    service: service.to_string(),
                    mean_response_ms: (!rts.is_empty())
                        .then(|| rts.iter().sum::<f64>() / rts.len() as f64),
                    min_uptime_secs: nodes.iter().map(|n| n.uptime_secs).min().unwrap_or(0),
                    subscriptions: nodes.iter().map(|n| u64::from(n.subscriptions)).sum(),
                    faults: nodes.iter().map(|n| u64::from(n.faults)).sum(),
                    nodes,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn report(key: &Keypair, seq: u64, time: u64) -> Vec<u8> {
        let m = MetricReport {
            node: key.public().to_peer_id(),
            seq,
            time_unix: time,
            load: 0.5,
            services: vec![ServiceMetric {
                service: "ipfs".into(),
                uptime_secs: 10,
                response_ms: Some(4),
                subscriptions: 2,
                faults: 0,
            }],
        };
        signed::seal(key, signed::METRICS, &m).unwrap()
    }

    #[test]
    fn fresh_signed_reports_pass_and_replays_are_ignored() {
        let key = Keypair::generate_ed25519();
        let mut gate = Gate::default();
        assert!(matches!(
            gate.metrics(&report(&key, 1, 1000), 1000.0),
            Verdict::Accept(_)
        ));
        assert!(matches!(
            gate.metrics(&report(&key, 1, 1000), 1000.5),
            Verdict::Ignore(_)
        ));
        assert!(matches!(
            gate.metrics(&report(&key, 2, 1001), 1001.0),
            Verdict::Accept(_)
        ));
    }

    #[test]
    fn stale_future_and_impersonating_reports_are_rejected() {
        let key = Keypair::generate_ed25519();
        let mut gate = Gate::default();
        let old = gate.metrics(&report(&key, 1, 1000), 1000.0 + MAX_AGE_SECS as f64 + 1.0);
        assert!(
            matches!(old, Verdict::Reject(Rejected::Stale(_))),
            "{old:?}"
        );
        let ahead = gate.metrics(&report(&key, 2, 2000), 1000.0);
        assert!(
            matches!(ahead, Verdict::Reject(Rejected::Stale(_))),
            "{ahead:?}"
        );
        // Signed by one key, naming another node.
        let liar = Keypair::generate_ed25519();
        let m = MetricReport {
            node: key.public().to_peer_id(),
            seq: 9,
            time_unix: 1000,
            load: 0.0,
            services: vec![],
        };
        let bytes = signed::seal(&liar, signed::METRICS, &m).unwrap();
        assert!(matches!(
            gate.metrics(&bytes, 1000.0),
            Verdict::Reject(Rejected::Forged(_))
        ));
    }

    #[test]
    fn a_flood_is_cut_at_the_burst_and_refills_with_time() {
        let key = Keypair::generate_ed25519();
        let mut gate = Gate::new(RateLimit {
            burst: 3,
            per_secs: 1.0,
        });
        let verdicts: Vec<bool> = (1..=5)
            .map(|s| {
                matches!(
                    gate.metrics(&report(&key, s, 1000), 1000.0),
                    Verdict::Accept(_)
                )
            })
            .collect();
        assert_eq!(verdicts, [true, true, true, false, false]);
        assert!(matches!(
            gate.metrics(&report(&key, 6, 1002), 1002.0),
            Verdict::Accept(_)
        ));
    }

    #[test]
    fn the_service_view_aggregates_fresh_reports_only() {
        let mut obs = Observations::default();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let m = |node, rt, t| MetricReport {
            node,
            seq: 1,
            time_unix: t,
            load: 0.1,
            services: vec![ServiceMetric {
                service: "cometbft".into(),
                uptime_secs: 100,
                response_ms: Some(rt),
                subscriptions: 1,
                faults: 1,
            }],
        };
        obs.metrics(m(a, 10, 1000));
        obs.metrics(m(b, 30, 1000));
        obs.metrics(m(c, 500, 10)); // too old to count
        let views = obs.services(1000, MAX_AGE_SECS);
        assert_eq!(views.len(), 1);
        let v = &views[0];
        assert_eq!(v.nodes.len(), 2);
        assert_eq!(v.mean_response_ms, Some(20.0));
        assert_eq!((v.subscriptions, v.faults), (2, 2));
    }
}
