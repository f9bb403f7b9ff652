//! A plain-HTTP GET for health checks, on one fresh connection: hyper's
//! connection-level client without a pool, a resolver task or redirects.
//! Checks run every second for every service, and this is about a quarter
//! of what a full client costs per check (docs/benchmarks.md). HTTPS
//! checks go through reqwest.

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// GET `url` (http://) and return the response status.
pub async fn status(url: &hyper::Uri) -> Result<u16, String> {
    let host = url.host().ok_or("the URL has no host")?;
    let port = url.port_u16().unwrap_or(80);
    // An IPv6 literal comes bracketed in URIs, not in socket addresses.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((bare, port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let authority = url.authority().map_or(host, |a| a.as_str());
    let resp = get(stream, authority, path).await?;
    Ok(resp.status().as_u16())
}

/// GET `path` from the HTTP server on the Unix socket `socket`; the status
/// and the body (at most `limit` bytes).
pub async fn get_unix(
    socket: &std::path::Path,
    path: &str,
    limit: usize,
) -> Result<(u16, Bytes), String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let resp = get(stream, "localhost", path).await?;
    let code = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| format!("reading the answer to {path}: {e}"))?
        .to_bytes();
    Ok((code, body))
}

async fn get<S>(
    stream: S,
    authority: &str,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "xnode-agent")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("no HTTP answer: {}", crate::health::error_chain(&e)))
}
