//! A client of the agent's local API: over the Unix socket, or over TCP
//! with each request signed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// How long the API may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct ApiTarget {
    /// The agent's API socket.
    #[arg(
        long,
        env = "XNODE_API_SOCKET",
        default_value = "/run/xnode/agent.sock"
    )]
    pub socket: PathBuf,
    /// Use the TCP API at HOST:PORT instead (needs --key).
    #[arg(long, requires = "key")]
    pub tcp: Option<String>,
    /// A 32-byte Ed25519 seed file (e.g. a node.key) whose public key the agent authorizes.
    #[arg(long)]
    pub key: Option<PathBuf>,
}

impl ApiTarget {
    /// GET `path`; the status code and body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        self.call("GET", path).await
    }

    /// POST `path` (no body: what it asks is in the path, which is signed);
    /// the status code and body.
    pub async fn post(&self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        self.call("POST", path).await
    }

    async fn call(&self, method: &str, path: &str) -> anyhow::Result<(u16, Bytes)> {
        tokio::time::timeout(TIMEOUT, self.call_unbounded(method, path))
            .await
            .with_context(|| {
                format!(
                    "the agent did not answer {method} {path} within {} s",
                    TIMEOUT.as_secs()
                )
            })?
    }

    async fn call_unbounded(&self, method: &str, path: &str) -> anyhow::Result<(u16, Bytes)> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "xnode-agent");
        match (&self.tcp, &self.key) {
            (Some(addr), Some(key)) => {
                let key = crate::api_auth::load_signing_key(key)?;
                req = req.header(
                    hyper::header::AUTHORIZATION,
                    crate::api_auth::sign(&key, method, path, crate::now_unix()),
                );
                let stream = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .with_context(|| format!("connecting to the agent's API at {addr}"))?;
                send(stream, req.body(Full::new(Bytes::new()))?).await
            }
            _ => {
                let stream = tokio::net::UnixStream::connect(&self.socket)
                    .await
                    .with_context(|| {
                        format!(
                            "connecting to the agent's API at {} (is `xnode-agent run` running, and may this user open its socket?)",
                            self.socket.display()
                        )
                    })?;
                send(stream, req.body(Full::new(Bytes::new()))?).await
            }
        }
    }
}

/// One request over an open stream (a JSON body when given); the status
/// code and body.
pub async fn exchange<S>(
    stream: S,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(u16, Bytes)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "xnode-agent");
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    send(
        stream,
        req.body(Full::new(Bytes::from(body.unwrap_or_default())))?,
    )
    .await
}

async fn send<S>(stream: S, req: hyper::Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the agent")?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .context("sending the request")?;
    let code = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the answer")?
        .to_bytes();
    Ok((code, body))
}
