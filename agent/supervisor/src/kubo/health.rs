//! The kind's own health check (`Health`): `id` answers, `repo stat` says
//! RepoSize is below StorageMax, `swarm peers` lists at least `min_peers`,
//! and the object count refreshed in the background; and the thin typed
//! client for kubo's RPC (`Rpc`, over reqwest) that it calls.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::settings::{loopback_listener, Settings};
use crate::health::{KindMetrics, KindReport};

/// `repo stat` without `size-only` counts every block (kubo walks the whole
/// blockstore), so the object count is refreshed at most this often.
const OBJECTS_EVERY: Duration = Duration::from_secs(600);

/// The kind's own health check: `id` answers, `repo stat` says RepoSize is
/// below StorageMax, and `swarm peers` lists at least `min_peers`.
#[derive(Debug)]
pub struct Health {
    /// kubo's RPC, or why there is none.
    rpc: Result<Rpc, String>,
    min_peers: u64,
    timeout: Duration,
    objects: Objects,
}

impl Health {
    pub fn new(settings: &Settings, timeout: Duration) -> Health {
        Health {
            rpc: loopback_listener(&settings.api, "the RPC API grants admin access")
                .map_err(|m| format!("settings.api: {m}"))
                .and_then(Rpc::new),
            min_peers: settings.min_peers,
            timeout,
            objects: Objects::default(),
        }
    }

    /// One check, bounded by the timeout given to `new`.
    pub async fn check(&mut self) -> KindReport {
        let timeout = self.timeout;
        crate::health::bounded(timeout, self.run(timeout)).await
    }

    async fn run(&mut self, timeout: Duration) -> KindReport {
        // The first object count may use this much of the check.
        let count_until = tokio::time::Instant::now() + timeout * 3 / 4;
        let rpc = match &self.rpc {
            Ok(rpc) => rpc.clone(),
            Err(e) => return KindReport::unhealthy(e.clone()),
        };
        let id = match rpc.call::<IdAnswer>("id", "").await {
            Ok(id) if id.id.is_empty() => {
                return KindReport::unhealthy("id answered without a peer ID")
            }
            Ok(id) => id.id,
            Err(e) => return KindReport::unhealthy(e.to_string()),
        };
        self.objects.start_if_due(&rpc);
        let verdict = async {
            tokio::join!(
                async {
                    let wire = rpc
                        .call::<RepoStatAnswer>("repo/stat", "size-only=true")
                        .await?;
                    wire.sizes().map_err(|why| CallError::Garbage {
                        endpoint: "repo/stat",
                        why,
                    })
                },
                async {
                    rpc.call::<PeersAnswer>("swarm/peers", "")
                        .await
                        .map(|p| p.peers.map_or(0, |l| l.len() as u64))
                },
            )
        };
        let (stat, peers) = self.objects.drive_while(verdict, count_until).await;

        let mut problems = Vec::new();
        let stat = stat.map_err(|e| problems.push(e.to_string())).ok();
        let peers = peers.map_err(|e| problems.push(e.to_string())).ok();
        if let Some((size, max)) = stat {
            if size >= max {
                problems.push(format!(
                    "repo {} of {}: at its StorageMax",
                    si(size),
                    si(max)
                ));
            }
        }
        if let Some(n) = peers {
            if n < self.min_peers {
                problems.push(format!(
                    "{}, fewer than the {} required",
                    count(n, "peer"),
                    self.min_peers
                ));
            }
        }
        let metrics = match (stat, peers) {
            (Some((size, max)), Some(n)) => KindMetrics::Kubo {
                peers: n,
                repo_size_bytes: size,
                storage_max_bytes: max,
                objects: self.objects.last.unwrap_or(0),
            },
            _ => KindMetrics::None,
        };
        let detail = match (problems.is_empty(), stat, peers) {
            (true, Some((size, max)), Some(n)) => {
                let repo = if max == u64::MAX {
                    format!("repo {} (no StorageMax)", si(size))
                } else {
                    format!("repo {} of {}", si(size), si(max))
                };
                let objects = self
                    .objects
                    .last
                    .map(|o| format!(", {}", count(o, "object")))
                    .unwrap_or_default();
                format!("{id}: {}, {repo}{objects}", count(n, "peer"))
            }
            _ => problems.join("; "),
        };
        KindReport {
            healthy: problems.is_empty(),
            detail,
            metrics,
        }
    }
}

fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A byte count the way a person reads it: SI units, one decimal at most,
/// truncated (so a full repo never reads as less than its limit).
fn si(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut unit = 0;
    let mut scale: u128 = 1;
    while unit + 1 < UNITS.len() && u128::from(bytes) >= scale * 1000 {
        scale *= 1000;
        unit += 1;
    }
    let tenths = u128::from(bytes) * 10 / scale;
    match (unit, tenths % 10) {
        (0, _) | (_, 0) => format!("{} {}", tenths / 10, UNITS[unit]),
        (_, d) => format!("{}.{d} {}", tenths / 10, UNITS[unit]),
    }
}

type Pending = Pin<Box<dyn Future<Output = Result<Option<u64>, CallError>> + Send>>;

/// The object count: the last one read and the count under way.
#[derive(Default)]
struct Objects {
    last: Option<u64>,
    started: Option<tokio::time::Instant>,
    running: Option<Pending>,
}

impl fmt::Debug for Objects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Objects")
            .field("last", &self.last)
            .field("started", &self.started)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl Objects {
    fn start_if_due(&mut self, rpc: &Rpc) {
        let due = self.started.is_none_or(|t| t.elapsed() >= OBJECTS_EVERY);
        if self.running.is_none() && due {
            self.started = Some(tokio::time::Instant::now());
            let rpc = rpc.clone();
            self.running = Some(Box::pin(async move {
                // A count kubo never finishes is given up by the next one.
                match tokio::time::timeout(
                    OBJECTS_EVERY,
                    rpc.call::<RepoStatAnswer>("repo/stat", ""),
                )
                .await
                {
                    Ok(answer) => Ok(answer?.num_objects),
                    Err(_) => Err(CallError::Broken {
                        api: rpc.api,
                        endpoint: "repo/stat",
                        why: "no object count within 10 minutes".into(),
                    }),
                }
            }));
        }
    }

    /// Run `work` while the count under way makes progress. A count that
    /// outlasts `work` goes on at the next check, except the first one,
    /// which may run on until `first_until` so that metrics start complete.
    async fn drive_while<T>(
        &mut self,
        work: impl Future<Output = T>,
        first_until: tokio::time::Instant,
    ) -> T {
        let Some(running) = self.running.as_mut() else {
            return work.await;
        };
        let mut work = std::pin::pin!(work);
        let first_done = tokio::select! {
            out = &mut work => Ok(out),
            counted = running => Err(counted),
        };
        match first_done {
            Err(counted) => {
                self.finish(counted);
                work.await
            }
            Ok(out) => {
                if let (None, Some(running)) = (self.last, self.running.as_mut()) {
                    if let Ok(counted) = tokio::time::timeout_at(first_until, running).await {
                        self.finish(counted);
                    }
                }
                out
            }
        }
    }

    fn finish(&mut self, counted: Result<Option<u64>, CallError>) {
        self.running = None;
        // A failed count keeps the last one; the verdict does not depend
        // on it.
        if let Ok(Some(n)) = counted {
            self.last = Some(n);
        }
    }
}

// ---------------------------------------------------------------------------
// kubo's RPC: the answers read and a thin client

/// `id` (core/commands/id.go IdOutput). Only the ID is read: kubo dropped
/// `ProtocolVersion` in 0.22, which ipfs-api-backend-hyper 0.6 requires.
#[derive(Debug, Deserialize)]
struct IdAnswer {
    #[serde(rename = "ID")]
    id: String,
}

/// `swarm/peers` (core/commands/swarm.go connInfos). `Peers` is null when
/// there are none; entries carry `Latency`, `Muxer`, `Streams` only when
/// asked (ipfs-api-backend-hyper 0.6 requires `Latency` and `Muxer`).
#[derive(Debug, Deserialize)]
struct PeersAnswer {
    // Present but possibly null: a body without `Peers` is not kubo's.
    #[serde(rename = "Peers", deserialize_with = "Option::deserialize")]
    peers: Option<Vec<PeerEntry>>,
}

#[derive(Debug, Deserialize)]
struct PeerEntry {
    #[serde(rename = "Peer")]
    _peer: String,
}

/// `repo/stat` (core/corerepo/stat.go Stat). kubo's JSON is flat (Go
/// flattens the embedded SizeStat); the RPC reference renders it nested
/// under `SizeStat`, so both are read. With `size-only`, NumObjects is 0.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RepoStatAnswer {
    repo_size: Option<u64>,
    storage_max: Option<u64>,
    num_objects: Option<u64>,
    size_stat: Option<SizeStat>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SizeStat {
    repo_size: Option<u64>,
    storage_max: Option<u64>,
}

impl RepoStatAnswer {
    /// (RepoSize, StorageMax).
    fn sizes(&self) -> Result<(u64, u64), String> {
        let nested = self.size_stat.as_ref();
        let size = self.repo_size.or(nested.and_then(|s| s.repo_size));
        let max = self.storage_max.or(nested.and_then(|s| s.storage_max));
        match (size, max) {
            (Some(size), Some(max)) => Ok((size, max)),
            (None, _) => Err("no RepoSize in the answer".into()),
            (_, None) => Err("no StorageMax in the answer".into()),
        }
    }
}

/// kubo's error body (go-ipfs-cmds Error): `{"Message", "Code", "Type"}`.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    #[serde(rename = "Message")]
    message: String,
}

/// Why one RPC call failed, worded for a health detail.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("API at {api}: {reason}")]
    Connect { api: SocketAddr, reason: String },
    #[error("API at {api}: {endpoint}: {why}")]
    Broken {
        api: SocketAddr,
        endpoint: &'static str,
        why: String,
    },
    #[error("{endpoint} answered HTTP {status}: {message}")]
    Http {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    #[error("garbage from {endpoint}: {why}")]
    Garbage { endpoint: &'static str, why: String },
}

/// The largest answer read (`swarm/peers` on a busy node is the biggest).
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// kubo's RPC at one address, over reqwest: every call a POST to
/// `/api/v0/<endpoint>` (kubo answers any other method with 405).
#[derive(Debug, Clone)]
pub(crate) struct Rpc {
    api: SocketAddr,
    http: reqwest::Client,
}

impl Rpc {
    pub(crate) fn new(api: SocketAddr) -> Result<Rpc, String> {
        let http = reqwest::Client::builder()
            // Loopback: never through a proxy from the environment.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            // Checks are seconds apart; hold no idle connection in kubo.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("xnode-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Rpc { api, http })
    }

    /// POST and decode a 200 answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        query: &str,
    ) -> Result<T, CallError> {
        self.call_with(endpoint, query, None).await
    }

    /// POST with a body (content type, bytes) and decode a 200 answer.
    pub(crate) async fn call_with<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        query: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> Result<T, CallError> {
        let sep = if query.is_empty() { "" } else { "?" };
        let url = format!("http://{}/api/v0/{endpoint}{sep}{query}", self.api);
        let mut req = self.http.post(url);
        if let Some((content_type, bytes)) = body {
            req = req.header("Content-Type", content_type).body(bytes);
        }
        let mut answer = req.send().await.map_err(|e| self.failed(endpoint, &e))?;
        let status = answer.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|e| self.failed(endpoint, &e))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(CallError::Broken {
                    api: self.api,
                    endpoint,
                    why: "the answer is over 8 MiB".into(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status != 200 {
            let message = match serde_json::from_slice::<ErrorAnswer>(&body) {
                Ok(e) => e.message,
                Err(_) => {
                    let text = String::from_utf8_lossy(&body);
                    text.lines()
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take(120)
                        .collect()
                }
            };
            return Err(CallError::Http {
                endpoint,
                status,
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| CallError::Garbage {
            endpoint,
            why: format!("{e} in {}", snippet(&body)),
        })
    }

    /// A transport failure in words: the innermost cause, which for a
    /// refused connection is the io::Error ("connection refused").
    fn failed(&self, endpoint: &'static str, e: &reqwest::Error) -> CallError {
        let mut reason = e.to_string();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(c) = cause {
            reason = match c.downcast_ref::<std::io::Error>() {
                Some(io) => io_reason(io),
                None => c.to_string(),
            };
            cause = c.source();
        }
        if e.is_connect() {
            CallError::Connect {
                api: self.api,
                reason,
            }
        } else {
            CallError::Broken {
                api: self.api,
                endpoint,
                why: reason,
            }
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        _ => e.to_string(),
    }
}

/// The start of a body, quoted, for a detail line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let cut: String = text.chars().take(80).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_truncates_to_one_decimal() {
        assert_eq!(si(0), "0 B");
        assert_eq!(si(999), "999 B");
        assert_eq!(si(1_000), "1 kB");
        assert_eq!(si(98_100_000_000), "98.1 GB");
        assert_eq!(si(99_999_999_999), "99.9 GB");
        assert_eq!(si(100_000_000_000), "100 GB");
        assert_eq!(si(u64::MAX), "18.4 EB");
    }

    #[test]
    fn repo_stat_reads_flat_and_nested_sizes() {
        let flat: RepoStatAnswer =
            serde_json::from_str(r#"{"RepoSize":5,"StorageMax":10,"NumObjects":2,"RepoPath":"/r","Version":"fs-repo@18"}"#)
                .unwrap();
        assert_eq!((flat.sizes(), flat.num_objects), (Ok((5, 10)), Some(2)));
        let nested: RepoStatAnswer =
            serde_json::from_str(r#"{"NumObjects":2,"SizeStat":{"RepoSize":5,"StorageMax":10}}"#)
                .unwrap();
        assert_eq!(nested.sizes(), Ok((5, 10)));
        let none: RepoStatAnswer = serde_json::from_str(r#"{"NumObjects":2}"#).unwrap();
        assert!(none.sizes().is_err());
    }

    #[test]
    fn health_can_move_between_tasks() {
        fn send<T: Send>() {}
        send::<Health>();
    }

    #[test]
    fn swarm_peers_need_the_peers_field() {
        let null: PeersAnswer = serde_json::from_str(r#"{"Peers":null}"#).unwrap();
        assert!(null.peers.is_none());
        assert!(serde_json::from_str::<PeersAnswer>("{}").is_err());
    }
}
