//! The kind's own health check (`Health`) through tendermint-rpc: /status
//! answers, not catching up, the height advancing within `stall_secs`, and
//! /net_info shows at least `min_peers`; the RPC URL of the listen address
//! (`rpc_url`) and the dialect spoken (`COMPAT_MODE`).

use std::time::{Duration, Instant};

use tendermint_rpc::client::CompatMode;
use tendermint_rpc::Client as _;

use super::settings::{check_laddr, Laddr, Settings};
use crate::health::{KindMetrics, KindReport};

/// The RPC dialect spoken to CometBFT: v0.38. nixpkgs packages no CometBFT
/// (only the archived `tendermint` 0.35.9, pkgs/by-name/te/tendermint; the
/// `cometbft: init at 0.38.7` pull request NixOS/nixpkgs#306876 was not
/// merged), so the flake pins CometBFT itself, on the v0.38 line (v0.38.25
/// when this was written): the newest that tendermint-rpc 0.41 speaks
/// (`CompatMode::latest()` is `V0_38`; it knows V0_34, V0_37 and V0_38).
pub const COMPAT_MODE: CompatMode = CompatMode::V0_38;

/// The kind's own health check: /status answers, not catching up, the
/// latest height advancing within `stall_secs`, and /net_info shows at
/// least `min_peers` peers.
#[derive(Debug)]
pub struct Health {
    url: String,
    client: Result<tendermint_rpc::HttpClient, String>,
    timeout: Duration,
    min_peers: u64,
    stall: Duration,
    /// The last height seen and when it last changed.
    last: Option<(u64, Instant)>,
}

/// A tendermint-rpc client for `url` (http://host:port) speaking
/// `COMPAT_MODE`, each request bounded by `timeout`.
pub fn rpc_client(url: &str, timeout: Duration) -> Result<tendermint_rpc::HttpClient, String> {
    let parsed: tendermint_rpc::HttpClientUrl = url
        .parse()
        .map_err(|e| format!("'{url}' is not an RPC URL: {e}"))?;
    // The RPC is the node's own: never through an HTTP_PROXY/ALL_PROXY
    // from the agent's environment, which reqwest would otherwise honour
    // even for loopback.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot make an HTTP client for {url}: {e}"))?;
    tendermint_rpc::HttpClient::builder(parsed)
        .compat_mode(COMPAT_MODE)
        .client(http)
        .build()
        .map_err(|e| format!("cannot make an RPC client for {url}: {e}"))
}

/// The HTTP URL of a `tcp://host:port` RPC listen address; a wildcard
/// listen host is reached on loopback.
pub fn rpc_url(laddr: &str) -> Result<String, String> {
    match check_laddr(laddr)? {
        Laddr::Unix => Err(format!(
            "'{laddr}' is a unix socket; the health check speaks HTTP over TCP"
        )),
        Laddr::Tcp { host, port } => {
            let host = match host.as_str() {
                "0.0.0.0" | "" => "127.0.0.1".to_string(),
                "[::]" => "[::1]".to_string(),
                _ => host,
            };
            Ok(format!("http://{host}:{port}"))
        }
    }
}

impl Health {
    /// A check of the node `settings` describes; each `check` is bounded by
    /// `timeout`. A bad RPC address makes every check fail, saying why.
    pub fn new(settings: &Settings, timeout: Duration) -> Health {
        let url = rpc_url(&settings.rpc_laddr);
        let shown = url.clone().unwrap_or_else(|_| settings.rpc_laddr.clone());
        let client = url.and_then(|u| rpc_client(&u, timeout));
        Health {
            url: shown,
            client,
            timeout,
            min_peers: settings.min_peers,
            stall: Duration::try_from_secs_f64(settings.stall_secs).unwrap_or(Duration::MAX),
            last: None,
        }
    }

    /// One check, bounded by the timeout given to `new`.
    pub async fn check(&mut self) -> KindReport {
        let timeout = self.timeout;
        let url = self.url.clone();
        let mut answered = false;
        let mut report = crate::health::bounded(timeout, async {
            let r = self.probe().await;
            answered = true;
            r
        })
        .await;
        if !answered {
            report.detail = format!("RPC at {url}: {}", report.detail);
        }
        report
    }

    async fn probe(&mut self) -> KindReport {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return KindReport::unhealthy(e.clone()),
        };
        let (status, net) = tokio::join!(client.status(), client.net_info());
        let now = Instant::now();
        let mut problems = Vec::new();
        let mut notes = Vec::new();

        let status = match status {
            Ok(s) => Ok(s),
            Err(e) => Err(describe(&self.url, "/status", e).await),
        };
        let net = match net {
            Ok(n) => Ok(n),
            Err(e) => Err(describe(&self.url, "/net_info", e).await),
        };

        let (height, catching_up) = match &status {
            Ok(st) => (
                st.sync_info.latest_block_height.value(),
                st.sync_info.catching_up,
            ),
            Err(e) => {
                problems.push(e.clone());
                (0, false)
            }
        };
        if status.is_ok() {
            if catching_up {
                problems.push(format!("catching up at height {height}"));
            }
            match self.last {
                Some((last, since)) if last == height => {
                    let still = now.saturating_duration_since(since);
                    if still >= self.stall {
                        problems.push(format!(
                            "height {height} unchanged for {} s (at most {} s allowed)",
                            secs(still),
                            secs(self.stall)
                        ));
                    } else {
                        notes.push(format!("height {height}"));
                    }
                }
                Some((last, _)) => {
                    notes.push(if height > last {
                        format!("height {height} (+{})", height - last)
                    } else {
                        format!("height {height} (was {last})")
                    });
                    self.last = Some((height, now));
                }
                None => {
                    notes.push(format!("height {height}"));
                    self.last = Some((height, now));
                }
            }
        }
        let peers = match &net {
            Ok(n) => {
                if n.n_peers < self.min_peers {
                    problems.push(format!(
                        "{}, fewer than the {} required",
                        peers_text(n.n_peers),
                        self.min_peers
                    ));
                } else {
                    notes.push(peers_text(n.n_peers));
                }
                n.n_peers
            }
            Err(e) => {
                // The same failure on both calls is said once.
                let same = status
                    .as_ref()
                    .err()
                    .is_some_and(|s| s.replace("/status", "/net_info") == *e);
                if !same {
                    problems.push(e.clone());
                }
                0
            }
        };
        let metrics = if status.is_ok() || net.is_ok() {
            KindMetrics::Cometbft {
                height,
                peers,
                catching_up,
            }
        } else {
            KindMetrics::None
        };
        problems.dedup();
        KindReport {
            healthy: problems.is_empty(),
            detail: if problems.is_empty() {
                notes.join(", ")
            } else {
                problems.join("; ")
            },
            metrics,
        }
    }
}

/// "1 peer", "3 peers".
fn peers_text(n: u64) -> String {
    if n == 1 {
        "1 peer".into()
    } else {
        format!("{n} peers")
    }
}

/// Seconds for a sentence: tenths below 10 s, whole seconds above.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1}")
    } else {
        format!("{s:.0}")
    }
}

/// An operator's sentence for a failed RPC call.
async fn describe(url: &str, endpoint: &str, e: tendermint_rpc::Error) -> String {
    use tendermint_rpc::error::ErrorDetail as D;
    match e.detail() {
        D::Http(_) => {
            // The HTTP client's message names the URL, not the cause (it keeps
            // only the outermost text); a plain connect says what is wrong.
            let addr = url.trim_start_matches("http://");
            match tokio::net::TcpStream::connect(addr).await {
                Err(io) => format!("RPC at {url}: {}", io_kind(&io)),
                Ok(_) => format!("RPC at {url}: {endpoint} failed: {}", message(&e)),
            }
        }
        D::HttpRequestFailed(f) => format!("RPC at {url}: {endpoint} answered HTTP {}", f.status),
        D::Serde(_) => format!(
            "RPC returned garbage for {endpoint}: {}",
            message(&e).trim_start_matches("serde parse error: ")
        ),
        D::Response(r) => format!("RPC error from {endpoint}: {}", r.source),
        _ => format!("RPC at {url}: {endpoint} failed: {}", message(&e)),
    }
}

/// The error's messages on one line. Not its Display: that is the tracer's
/// Debug form, with source locations and, under RUST_BACKTRACE, a backtrace.
fn message(e: &tendermint_rpc::Error) -> String {
    format!("{:#}", e.trace()).replace('\n', " ")
}

fn io_kind(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::TimedOut => "timed out".into(),
        K::UnexpectedEof => "connection closed before an answer".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_url_maps_wildcards_to_loopback() {
        assert_eq!(
            rpc_url("tcp://127.0.0.1:26657").unwrap(),
            "http://127.0.0.1:26657"
        );
        assert_eq!(
            rpc_url("tcp://0.0.0.0:26657").unwrap(),
            "http://127.0.0.1:26657"
        );
        assert_eq!(rpc_url("tcp://[::]:26657").unwrap(), "http://[::1]:26657");
        assert!(rpc_url("unix:///run/rpc.sock").is_err());
    }
}
