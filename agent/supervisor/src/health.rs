//! Health checks: the manifest's http, tcp and exec checks, and the
//! result type that every check (the kinds' own included) reports.

use std::time::Duration;

use serde::Serialize;

use crate::manifest::{Check, Kind, Service};

/// What one run of a check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub healthy: bool,
    /// Why, in a few words: "HTTP 200", "connection refused", "height 1042 (+3)".
    pub detail: String,
    /// How long the check took.
    #[serde(serialize_with = "secs")]
    pub latency: Duration,
    /// Unix seconds when it finished.
    pub at: f64,
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
    Mesh {
        /// Connected peers.
        peers: u64,
        /// Peers in its gossipsub mesh.
        gossip_mesh: u64,
        /// Peers in its Kademlia routing table.
        routing_table: u64,
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

/// A service's health check, ready to run: built once per manifest, kept
/// across runs (the CometBFT check remembers the last height it saw).
#[derive(Debug)]
pub enum Checker {
    Http {
        url: String,
        /// Set for http:// URLs (the light path); https:// uses `client`.
        plain: Option<hyper::Uri>,
        client: Option<reqwest::Client>,
        expect_status: u16,
    },
    Tcp {
        address: String,
    },
    Exec {
        command: Vec<String>,
    },
    Cometbft(Box<crate::cometbft::Health>),
    Kubo(Box<crate::kubo::Health>),
    Mesh(Box<crate::mesh::Health>),
}

/// The check a service declares, with its timing.
#[derive(Debug)]
pub struct Schedule {
    pub checker: Checker,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Schedule {
    /// The service's check: the declared one, or its kind's own when
    /// `health` is absent. `None` for a generic service without a check
    /// (its health is its unit state).
    pub fn for_service(s: &Service) -> Result<Option<Schedule>, String> {
        let (check, interval, timeout) = match &s.health {
            Some(h) => (h.check.clone(), h.interval_secs, h.timeout_secs),
            None if s.kind == Kind::Generic => return Ok(None),
            None => (Check::Kind, 5.0, 2.0),
        };
        let timeout = Duration::from_secs_f64(timeout);
        let checker = match check {
            Check::Http { url, expect_status } => {
                let plain = url
                    .starts_with("http://")
                    .then(|| url.parse::<hyper::Uri>())
                    .transpose()
                    .map_err(|e| format!("{}: {url}: {e}", s.name))?;
                let client = match plain {
                    Some(_) => None,
                    None => Some(
                        reqwest::Client::builder()
                            .timeout(timeout)
                            .redirect(reqwest::redirect::Policy::none())
                            .no_proxy()
                            .build()
                            .map_err(|e| format!("{}: cannot build an HTTP client: {e}", s.name))?,
                    ),
                };
                Checker::Http {
                    url,
                    plain,
                    client,
                    expect_status,
                }
            }
            Check::Tcp { address } => Checker::Tcp { address },
            Check::Exec { command } => Checker::Exec { command },
            Check::Kind => match s.kind {
                Kind::Cometbft => {
                    let settings = crate::cometbft::Settings::parse(&s.settings)
                        .map_err(|p| settings_error(&s.name, p))?;
                    Checker::Cometbft(Box::new(crate::cometbft::Health::new(&settings, timeout)))
                }
                Kind::Kubo => {
                    let settings = crate::kubo::Settings::parse(&s.settings)
                        .map_err(|p| settings_error(&s.name, p))?;
                    Checker::Kubo(Box::new(crate::kubo::Health::new(&settings, timeout)))
                }
                Kind::Mesh => Checker::Mesh(Box::new(
                    crate::mesh::Health::new(&s.settings)
                        .map_err(|e| format!("{}: {e}", s.name))?,
                )),
                Kind::Generic => return Ok(None),
            },
        };
        Ok(Some(Schedule {
            checker,
            interval: Duration::from_secs_f64(interval),
            timeout,
        }))
    }

    /// Run the check once, bounded by its timeout.
    pub async fn run(&mut self) -> Observation {
        let started = std::time::Instant::now();
        let report = bounded(self.timeout, self.checker.run()).await;
        Observation {
            healthy: report.healthy,
            detail: report.detail,
            latency: started.elapsed(),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            metrics: report.metrics,
        }
    }
}

fn settings_error(name: &str, problems: Vec<(String, String)>) -> String {
    let list: Vec<String> = problems
        .into_iter()
        .map(|(f, m)| format!("settings.{f}: {m}"))
        .collect();
    format!("{name}: {}", list.join("; "))
}

impl Checker {
    async fn run(&mut self) -> KindReport {
        match self {
            Checker::Http {
                url,
                plain,
                client,
                expect_status,
            } => {
                let status = match (plain, client) {
                    (Some(uri), _) => crate::http_probe::status(uri).await,
                    (None, Some(c)) => c
                        .get(url.as_str())
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| error_chain(&e)),
                    (None, None) => Err("no HTTP client".into()),
                };
                match status {
                    Ok(code) if code == *expect_status => healthy(format!("HTTP {code}")),
                    Ok(code) => KindReport::unhealthy(format!(
                        "HTTP {code} from {url}, expected {expect_status}"
                    )),
                    Err(e) => KindReport::unhealthy(format!("{url}: {e}")),
                }
            }
            Checker::Tcp { address } => {
                match tokio::net::TcpStream::connect(address.as_str()).await {
                    Ok(_) => healthy(format!("{address} accepts connections")),
                    Err(e) => KindReport::unhealthy(format!("{address}: {e}")),
                }
            }
            Checker::Exec { command } => run_exec(command).await,
            Checker::Cometbft(h) => h.check().await,
            Checker::Kubo(h) => h.check().await,
            Checker::Mesh(h) => h.check().await,
        }
    }
}

fn healthy(detail: String) -> KindReport {
    KindReport {
        healthy: true,
        detail,
        metrics: KindMetrics::None,
    }
}

/// The error and its causes on one line ("error sending request: ...:
/// Connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

async fn run_exec(command: &[String]) -> KindReport {
    let Some((program, args)) = command.split_first() else {
        return KindReport::unhealthy("empty command");
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // A check that outlives its timeout is killed, not leaked.
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return KindReport::unhealthy(format!("cannot run {program}: {e}")),
    };
    // The caller's timeout bounds this; dropping the future kills the child.
    let out = match child.wait_with_output().await {
        Ok(out) => out,
        Err(e) => return KindReport::unhealthy(format!("{program}: {e}")),
    };
    let said = last_line(&out.stderr)
        .or_else(|| last_line(&out.stdout))
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    if out.status.success() {
        healthy(format!("{program} exited 0{said}"))
    } else {
        KindReport::unhealthy(format!("{program} {}{said}", out.status))
    }
}

fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(health: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "name": "x", "unit": "x.service", "kind": "generic", "health": health
        }))
        .unwrap()
    }

    async fn observe(health: serde_json::Value) -> Observation {
        let mut s = Schedule::for_service(&service(health)).unwrap().unwrap();
        s.run().await
    }

    /// An HTTP/1.1 server on loopback answering every request with `status`
    /// (or never answering when `None`).
    async fn http_server(status: Option<u16>) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut c, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf).await;
                    match status {
                        Some(code) => {
                            let reply = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                            let _ = c.write_all(reply.as_bytes()).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_checks_status() {
        let ok = http_server(Some(200)).await;
        let o = observe(
            serde_json::json!({"check": {"type": "http", "url": format!("http://{ok}/health")}}),
        )
        .await;
        assert!(o.healthy, "{o:?}");
        assert_eq!(o.detail, "HTTP 200");

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let o = observe(
            serde_json::json!({"check": {"type": "http", "url": format!("http://{closed}/")}}),
        )
        .await;
        assert!(!o.healthy && o.detail.contains("refused"), "{}", o.detail);

        // https goes through the full client; a plain server is no TLS peer.
        let o = observe(
            serde_json::json!({"check": {"type": "http", "url": format!("https://{ok}/")}}),
        )
        .await;
        assert!(
            !o.healthy && o.detail.starts_with(&format!("https://{ok}/: ")),
            "{}",
            o.detail
        );

        let bad = http_server(Some(503)).await;
        let o = observe(
            serde_json::json!({"check": {"type": "http", "url": format!("http://{bad}/")}}),
        )
        .await;
        assert!(!o.healthy);
        assert!(o.detail.starts_with("HTTP 503 from"), "{}", o.detail);
    }

    #[tokio::test]
    async fn a_hanging_http_server_fails_within_the_timeout() {
        let hang = http_server(None).await;
        let o = observe(serde_json::json!({
            "check": {"type": "http", "url": format!("http://{hang}/")},
            "interval_secs": 1, "timeout_secs": 0.3
        }))
        .await;
        assert!(!o.healthy);
        assert!(
            o.detail.contains("timed out") || o.detail.contains("no answer"),
            "{}",
            o.detail
        );
    }

    #[tokio::test]
    async fn tcp_checks_connect() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let o = observe(serde_json::json!({"check": {"type": "tcp", "address": addr.to_string()}}))
            .await;
        assert!(o.healthy, "{o:?}");
        drop(l);
        let o = observe(serde_json::json!({"check": {"type": "tcp", "address": addr.to_string()}}))
            .await;
        assert!(!o.healthy);
        assert!(o.detail.contains("refused"), "{}", o.detail);
    }

    #[tokio::test]
    async fn exec_checks_exit_status_and_time() {
        let o = observe(serde_json::json!({"check": {"type": "exec", "command": ["/bin/sh", "-c", "echo fine"]}})).await;
        assert!(o.healthy && o.detail.ends_with(": fine"), "{o:?}");
        let o = observe(serde_json::json!({"check": {"type": "exec", "command": ["/bin/sh", "-c", "echo disk full >&2; exit 3"]}})).await;
        assert!(!o.healthy);
        assert!(
            o.detail.contains("exit status: 3") && o.detail.ends_with("disk full"),
            "{}",
            o.detail
        );
        let o = observe(serde_json::json!({
            "check": {"type": "exec", "command": ["/bin/sleep", "30"]},
            "interval_secs": 1, "timeout_secs": 0.2
        }))
        .await;
        assert!(!o.healthy && o.detail == "no answer within 0.2 s", "{o:?}");
        let o = observe(
            serde_json::json!({"check": {"type": "exec", "command": ["/nonexistent/probe"]}}),
        )
        .await;
        assert!(
            !o.healthy && o.detail.starts_with("cannot run /nonexistent/probe"),
            "{o:?}"
        );
    }

    #[test]
    fn generic_without_health_has_no_check() {
        let s: Service = serde_json::from_value(
            serde_json::json!({"name": "x", "unit": "x.service", "kind": "generic"}),
        )
        .unwrap();
        assert!(Schedule::for_service(&s).unwrap().is_none());
    }
}
