//! The mesh's own health check: its local API answers `GET /v1/status` on
//! its Unix socket (`settings.api`, else `/run/xnode-mesh/api.sock`), and
//! the answer gives the peers it is connected to and its routing table.
//!
//! A node with no peers is reported, not restarted: the first node of a new
//! network has none, and a restart would not find any sooner.

use std::path::PathBuf;

use crate::health::{KindMetrics, KindReport};

/// Where `xnode-agent mesh run` serves its API unless told otherwise.
pub const DEFAULT_API: &str = "/run/xnode-mesh/api.sock";

/// The largest status answer read: a few hundred peers' IDs.
const MAX_STATUS_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub struct Health {
    socket: PathBuf,
}

#[derive(serde::Deserialize)]
struct MeshStatus {
    connected: Vec<serde_json::Value>,
    #[serde(default)]
    gossip_mesh: Vec<serde_json::Value>,
    routing_table: u64,
}

impl Health {
    /// The socket from the service's settings (`api`), or the default.
    pub fn new(settings: &serde_json::Map<String, serde_json::Value>) -> Result<Health, String> {
        let socket = match settings.get("api") {
            None | Some(serde_json::Value::Null) => PathBuf::from(DEFAULT_API),
            Some(serde_json::Value::String(p)) if p.starts_with('/') => PathBuf::from(p),
            Some(other) => {
                return Err(format!(
                    "settings.api: {other} is not an absolute socket path"
                ))
            }
        };
        Ok(Health { socket })
    }

    pub async fn check(&self) -> KindReport {
        let (code, body) =
            match crate::http_probe::get_unix(&self.socket, "/v1/status", MAX_STATUS_BYTES).await {
                Ok(answer) => answer,
                Err(e) => return KindReport::unhealthy(format!("the mesh API: {e}")),
            };
        if code != 200 {
            return KindReport::unhealthy(format!(
                "the mesh API answered HTTP {code} to /v1/status: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        let status: MeshStatus = match serde_json::from_slice(&body) {
            Ok(s) => s,
            Err(e) => {
                return KindReport::unhealthy(format!(
                    "the mesh API's /v1/status is not a mesh status: {e}"
                ))
            }
        };
        let peers = status.connected.len() as u64;
        let gossip_mesh = status.gossip_mesh.len() as u64;
        let mut detail = format!(
            "{peers} peer(s), {gossip_mesh} in the gossip mesh; routing table {}",
            status.routing_table
        );
        if peers == 0 {
            detail.push_str(" (no peers: alone, or its bootstrap peers are unreachable)");
        }
        KindReport {
            healthy: true,
            detail,
            metrics: KindMetrics::Mesh {
                peers,
                gossip_mesh,
                routing_table: status.routing_table,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-answer HTTP server on a Unix socket.
    async fn serve_once(dir: &std::path::Path, status: u16, body: &'static str) -> PathBuf {
        let path = dir.join(format!("api-{status}.sock"));
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /v1/status HTTP/1.1"));
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        path
    }

    fn health(socket: &std::path::Path) -> Health {
        let settings = serde_json::json!({"api": socket.to_str().unwrap()});
        Health::new(settings.as_object().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_status_gives_the_peer_counts() {
        let dir = tempfile::tempdir().unwrap();
        let sock = serve_once(
            dir.path(),
            200,
            r#"{"peer_id":"12D3KooWx","listen":[],"connected":["a","b","c"],"gossip_mesh":["a"],"routing_table":7,"published":[],"scores":{}}"#,
        )
        .await;
        let r = health(&sock).check().await;
        assert!(r.healthy, "{r:?}");
        assert_eq!(
            r.metrics,
            KindMetrics::Mesh {
                peers: 3,
                gossip_mesh: 1,
                routing_table: 7
            }
        );
        assert_eq!(r.detail, "3 peer(s), 1 in the gossip mesh; routing table 7");
    }

    #[tokio::test]
    async fn no_peers_is_reported_but_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let sock = serve_once(
            dir.path(),
            200,
            r#"{"connected":[],"gossip_mesh":[],"routing_table":0}"#,
        )
        .await;
        let r = health(&sock).check().await;
        assert!(r.healthy && r.detail.contains("no peers"), "{r:?}");
    }

    #[tokio::test]
    async fn a_wrong_answer_or_no_api_is_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        let sock = serve_once(dir.path(), 503, "starting").await;
        let r = health(&sock).check().await;
        assert!(!r.healthy && r.detail.contains("HTTP 503"), "{r:?}");

        let sock = serve_once(dir.path(), 200, r#"{"hello":1}"#).await;
        let r = health(&sock).check().await;
        assert!(
            !r.healthy && r.detail.contains("not a mesh status"),
            "{r:?}"
        );

        let r = health(&dir.path().join("absent.sock")).check().await;
        assert!(
            !r.healthy && r.detail.starts_with("the mesh API: connect"),
            "{r:?}"
        );
    }

    #[test]
    fn the_socket_comes_from_the_settings() {
        let none = serde_json::json!({});
        let h = Health::new(none.as_object().unwrap()).unwrap();
        assert_eq!(h.socket, PathBuf::from(DEFAULT_API));
        let bad = serde_json::json!({"api": "relative.sock"});
        let e = Health::new(bad.as_object().unwrap()).unwrap_err();
        assert!(e.contains("settings.api"), "{e}");
    }
}
