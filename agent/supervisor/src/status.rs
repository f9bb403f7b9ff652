//! What the supervisor knows, as served by the local API (`/v1/status`),
//! printed by `xnode-agent status`, and exported as OpenMetrics (`/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::health::{KindMetrics, Observation};
use crate::manifest::Kind;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Where the manifest came from.
    pub manifest: String,
    /// Unix seconds when the manifest in force was loaded.
    pub manifest_loaded_at: f64,
    /// Why the last manifest offered was rejected, while the previous one
    /// stays in force.
    pub manifest_rejected: Option<String>,
    /// In dependency order.
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub unit: String,
    pub kind: Kind,
    /// systemd's ActiveState and SubState, as last signalled.
    pub active_state: String,
    pub sub_state: String,
    /// supervised, waiting-for-dependencies, starting, restarting or gave-up.
    pub phase: String,
    /// Active and passing its check (or active, when it has none); null
    /// before the first check.
    pub healthy: Option<bool>,
    /// The last check's result.
    pub health: Option<Observation>,
    pub consecutive_failures: u32,
    /// Restarts (and starts after a failure) the agent made.
    pub agent_restarts: u64,
    /// Times the unit came back by systemd's own Restart=, without the agent.
    pub systemd_recoveries: u64,
    pub last_recovery: Option<Recovery>,
    /// Why the agent stopped restarting it.
    pub gave_up: Option<String>,
    /// The last error talking to systemd or building its check.
    pub error: Option<String>,
}

/// One down-to-active episode, timed by the agent's own observations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// "agent" (it started the unit) or "systemd" (the unit's Restart=).
    pub by: &'static str,
    /// Unix seconds when the agent received the signal that the unit left
    /// the active state.
    pub detected_at: f64,
    /// Unix seconds when it received the signal that it was active again.
    pub active_at: f64,
    pub seconds: f64,
}

impl Status {
    /// One line for systemd's STATUS=: "4 services: 3 healthy, 1 restarting".
    pub fn summary(&self) -> String {
        let total = self.services.len();
        let healthy = self
            .services
            .iter()
            .filter(|s| s.healthy == Some(true))
            .count();
        let gave_up = self.services.iter().filter(|s| s.gave_up.is_some()).count();
        let restarting = self
            .services
            .iter()
            .filter(|s| s.phase == "restarting")
            .count();
        let mut line = format!("{total} service(s): {healthy} healthy");
        if restarting > 0 {
            line.push_str(&format!(", {restarting} restarting"));
        }
        if gave_up > 0 {
            line.push_str(&format!(", {gave_up} GAVE UP"));
        }
        line
    }

    /// The status as OpenMetrics text.
    pub fn openmetrics(&self) -> String {
        #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct ServiceLabels {
            service: String,
            unit: String,
        }
        let mut registry = Registry::with_prefix("xnode");
        let up = Family::<ServiceLabels, Gauge>::default();
        let healthy = Family::<ServiceLabels, Gauge>::default();
        let gave_up = Family::<ServiceLabels, Gauge>::default();
        let restarts = Family::<ServiceLabels, Counter>::default();
        let systemd_recoveries = Family::<ServiceLabels, Counter>::default();
        let latency = Family::<ServiceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let recovery = Family::<ServiceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let height = Family::<ServiceLabels, Gauge>::default();
        let comet_peers = Family::<ServiceLabels, Gauge>::default();
        let kubo_peers = Family::<ServiceLabels, Gauge>::default();
        let repo_size = Family::<ServiceLabels, Gauge>::default();
        let repo_max = Family::<ServiceLabels, Gauge>::default();
        let mesh_peers = Family::<ServiceLabels, Gauge>::default();
        let mesh_gossip = Family::<ServiceLabels, Gauge>::default();
        let mesh_table = Family::<ServiceLabels, Gauge>::default();
        for s in &self.services {
            let l = ServiceLabels {
                service: s.name.clone(),
                unit: s.unit.clone(),
            };
            let active = s.active_state == "active";
            up.get_or_create(&l).set(i64::from(active));
            healthy
                .get_or_create(&l)
                .set(i64::from(s.healthy == Some(true)));
            gave_up
                .get_or_create(&l)
                .set(i64::from(s.gave_up.is_some()));
            restarts.get_or_create(&l).inc_by(s.agent_restarts);
            systemd_recoveries
                .get_or_create(&l)
                .inc_by(s.systemd_recoveries);
            if let Some(r) = &s.last_recovery {
                recovery.get_or_create(&l).set(r.seconds);
            }
            let Some(h) = &s.health else { continue };
            latency.get_or_create(&l).set(h.latency.as_secs_f64());
            match &h.metrics {
                KindMetrics::Cometbft {
                    height: hh, peers, ..
                } => {
                    height.get_or_create(&l).set(gauge_value(*hh));
                    comet_peers.get_or_create(&l).set(gauge_value(*peers));
                }
                KindMetrics::Kubo {
                    peers,
                    repo_size_bytes,
                    storage_max_bytes,
                    ..
                } => {
                    kubo_peers.get_or_create(&l).set(gauge_value(*peers));
                    repo_size
                        .get_or_create(&l)
                        .set(gauge_value(*repo_size_bytes));
                    repo_max
                        .get_or_create(&l)
                        .set(gauge_value(*storage_max_bytes));
                }
                KindMetrics::Mesh {
                    peers,
                    gossip_mesh,
                    routing_table,
                } => {
                    mesh_peers.get_or_create(&l).set(gauge_value(*peers));
                    mesh_gossip.get_or_create(&l).set(gauge_value(*gossip_mesh));
                    mesh_table
                        .get_or_create(&l)
                        .set(gauge_value(*routing_table));
                }
                KindMetrics::None => {}
            }
        }
        registry.register("service_up", "1 when the unit is active", up);
        registry.register(
            "service_healthy",
            "1 when the unit is active and its last health check passed",
            healthy,
        );
        registry.register(
            "service_gave_up",
            "1 when the agent stopped restarting the service",
            gave_up,
        );
        registry.register(
            "service_restarts",
            "Restarts the agent made since it started",
            restarts,
        );
        registry.register(
            "service_other_recoveries",
            "Times the unit came back without the agent restarting it (systemd's Restart=)",
            systemd_recoveries,
        );
        registry.register(
            "service_health_latency_seconds",
            "Duration of the last health check",
            latency,
        );
        registry.register(
            "service_last_recovery_seconds",
            "From the unit leaving the active state to active again, last time",
            recovery,
        );
        registry.register("cometbft_height", "Latest block height", height);
        registry.register("cometbft_peers", "Connected CometBFT peers", comet_peers);
        registry.register("kubo_peers", "Connected IPFS swarm peers", kubo_peers);
        registry.register("kubo_repo_size_bytes", "IPFS repository size", repo_size);
        registry.register(
            "kubo_repo_storage_max_bytes",
            "IPFS repository storage limit",
            repo_max,
        );
        registry.register("mesh_peers", "Connected mesh peers", mesh_peers);
        registry.register(
            "mesh_gossip_peers",
            "Mesh peers in the gossipsub mesh",
            mesh_gossip,
        );
        registry.register(
            "mesh_routing_table_peers",
            "Peers in the mesh's Kademlia routing table",
            mesh_table,
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, healthy: Option<bool>, metrics: KindMetrics) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            unit: format!("{name}.service"),
            kind: Kind::Generic,
            active_state: "active".into(),
            sub_state: "running".into(),
            phase: "supervised".into(),
            healthy,
            health: Some(Observation {
                healthy: healthy == Some(true),
                detail: "x".into(),
                latency: std::time::Duration::from_millis(12),
                at: 1.0,
                metrics,
            }),
            consecutive_failures: 0,
            agent_restarts: 2,
            systemd_recoveries: 1,
            last_recovery: Some(Recovery {
                by: "agent",
                detected_at: 1.0,
                active_at: 1.05,
                seconds: 0.05,
            }),
            gave_up: None,
            error: None,
        }
    }

    #[test]
    fn openmetrics_carries_every_family() {
        let status = Status {
            services: vec![
                service(
                    "cometbft",
                    Some(true),
                    KindMetrics::Cometbft {
                        height: 1042,
                        peers: 3,
                        catching_up: false,
                    },
                ),
                service(
                    "ipfs",
                    Some(false),
                    KindMetrics::Kubo {
                        peers: 7,
                        repo_size_bytes: 1000,
                        storage_max_bytes: 5000,
                        objects: 9,
                    },
                ),
                service(
                    "mesh",
                    Some(true),
                    KindMetrics::Mesh {
                        peers: 5,
                        gossip_mesh: 4,
                        routing_table: 12,
                    },
                ),
            ],
            ..Status::default()
        };
        let text = status.openmetrics();
        for line in [
            r#"xnode_service_up{service="cometbft",unit="cometbft.service"} 1"#,
            r#"xnode_service_healthy{service="ipfs",unit="ipfs.service"} 0"#,
            r#"xnode_service_restarts_total{service="ipfs",unit="ipfs.service"} 2"#,
            r#"xnode_service_other_recoveries_total{service="ipfs",unit="ipfs.service"} 1"#,
            r#"xnode_service_health_latency_seconds{service="cometbft",unit="cometbft.service"} 0.012"#,
            r#"xnode_cometbft_height{service="cometbft",unit="cometbft.service"} 1042"#,
            r#"xnode_cometbft_peers{service="cometbft",unit="cometbft.service"} 3"#,
            r#"xnode_kubo_peers{service="ipfs",unit="ipfs.service"} 7"#,
            r#"xnode_kubo_repo_size_bytes{service="ipfs",unit="ipfs.service"} 1000"#,
            r#"xnode_mesh_peers{service="mesh",unit="mesh.service"} 5"#,
            r#"xnode_mesh_gossip_peers{service="mesh",unit="mesh.service"} 4"#,
            r#"xnode_mesh_routing_table_peers{service="mesh",unit="mesh.service"} 12"#,
            "# TYPE xnode_service_restarts counter",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert_eq!(status.summary(), "3 service(s): 2 healthy");
    }
}
