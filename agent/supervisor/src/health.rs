//! Health checks: the manifest's http, tcp and exec checks, and the
//! result type that every check (the kinds' own included) reports.

use std::time::Duration;

use serde::Serialize;

/// What one run of a check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub healthy: bool,
    /// Why, in a few words: "HTTP 200", "connection refused", "height 1042 (+3)".
    pub detail: String,
    /// How long the check took.
    #[serde(serialize_with = "secs")]
    pub latency: Duration,
    /// What a kind's own check measured along the way (exported in /metrics).
    pub metrics: KindMetrics,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Figures a kind's own check reads from the service.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum KindMetrics {
    #[default]
    None,
    Cometbft {
        /// Latest block height.
        height: u64,
        /// Connected peers (/net_info n_peers).
        peers: u64,
        catching_up: bool,
    },
    Kubo {
        /// Connected swarm peers.
        peers: u64,
        /// Repository size in bytes (repo stat RepoSize).
        repo_size_bytes: u64,
        /// The repository's storage limit in bytes (repo stat StorageMax).
        storage_max_bytes: u64,
        /// Objects in the repository (repo stat NumObjects).
        objects: u64,
    },
}

/// The verdict of a kind's own check, before its latency is measured.
#[derive(Debug, Clone, PartialEq)]
pub struct KindReport {
    pub healthy: bool,
    pub detail: String,
    pub metrics: KindMetrics,
}

impl KindReport {
    pub fn unhealthy(detail: impl Into<String>) -> KindReport {
        KindReport {
            healthy: false,
            detail: detail.into(),
            metrics: KindMetrics::None,
        }
    }
}

/// Bound `fut` by `timeout`; a check that takes longer has failed.
pub async fn bounded<F>(timeout: Duration, fut: F) -> KindReport
where
    F: std::future::Future<Output = KindReport>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => KindReport::unhealthy(format!("no answer within {:.1} s", timeout.as_secs_f64())),
    }
}
