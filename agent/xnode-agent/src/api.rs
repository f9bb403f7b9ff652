//! The agent's local API: a Unix socket by default (file permissions are
//! the access control), optionally TCP, where every request must be signed
//! (see `api_auth`).
//!
//! - `GET /v1/status`: the agent, its services and their health, the last attestation
//! - `GET /v1/inventory`: a fresh probe (xnode.inventory/v1)
//! - `GET /v1/attestation`: the last envelope `xnode-agent attest` wrote
//! - `GET /v1/challenge`: the latest proof-of-resource report that checked out
//! - `POST /v1/challenge?seed=HEX` (or `?for_attestation=HEX`): prove the
//!   node's claim against a verifier's seed now
//! - `GET /v1/challenge/events?after=N`: progress events (waits up to 5 s
//!   for one)
//! - `GET /metrics`: OpenMetrics text

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::Query;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use supervisor::status::Status;
use tokio::sync::watch;

use crate::api_auth::Authorizer;
use crate::challenger::{Challenger, ProofStatus, Refusal, Source};

/// The file the API serves as the node's latest attestation.
pub const ATTESTATION_FILE: &str = "attestation.json";

#[derive(Debug, Clone)]
pub struct ApiState {
    pub status: watch::Receiver<Arc<Status>>,
    pub state_dir: PathBuf,
    pub tpm: probe::TpmSource,
    pub started_at: f64,
    /// The node's proof-of-resource claim, when it has one.
    pub challenger: Option<Arc<Challenger>>,
    /// Why the claim given could not be used, when it could not.
    pub challenges_error: Option<String>,
}

/// `/v1/status`: the supervisor's status with the agent and the last
/// attestation beside it (summarised from the file, not verified).
#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub agent: AgentInfo,
    pub attestation: Option<AttestationInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof_of_resource: Option<ProofStatus>,
    #[serde(flatten)]
    pub supervisor: Status,
}

#[derive(Debug, Serialize)]
pub struct AgentInfo {
    pub version: &'static str,
    pub pid: u32,
    pub started_at: f64,
    pub hostname: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AttestationInfo {
    pub path: PathBuf,
    /// Unix seconds of the report inside.
    pub time_unix: Option<u64>,
    pub sequence: Option<u64>,
    pub node_id: Option<String>,
    pub software_tpm: Option<bool>,
    /// Why the file could not be read as an envelope, if it could not.
    pub error: Option<String>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/inventory", get(inventory))
        .route("/v1/attestation", get(attestation))
        .route("/v1/challenge", get(challenge_report).post(challenge_start))
        .route("/v1/challenge/events", get(challenge_events))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint: try /v1/status, /v1/inventory, /v1/attestation, /v1/challenge or /metrics",
            )
        })
        .with_state(state)
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn status(State(st): State<ApiState>) -> Json<NodeStatus> {
    let supervisor = (**st.status.borrow()).clone();
    let attestation = attestation_info(&st.state_dir.join(ATTESTATION_FILE));
    Json(NodeStatus {
        agent: AgentInfo {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            started_at: st.started_at,
            hostname: rustix::system::uname()
                .nodename()
                .to_str()
                .ok()
                .map(str::to_string),
        },
        attestation,
        proof_of_resource: match (&st.challenger, &st.challenges_error) {
            (Some(c), _) => Some(c.status()),
            (None, Some(e)) => Some(ProofStatus {
                error: Some(e.clone()),
                ..ProofStatus::default()
            }),
            (None, None) => None,
        },
        supervisor,
    })
}

fn attestation_info(path: &Path) -> Option<AttestationInfo> {
    let bytes = std::fs::read(path).ok()?;
    let mut info = AttestationInfo {
        path: path.to_path_buf(),
        time_unix: None,
        sequence: None,
        node_id: None,
        software_tpm: None,
        error: None,
    };
    match read_report(&bytes) {
        Ok(r) => {
            info.time_unix = Some(r.time_unix);
            info.sequence = Some(r.sequence);
            info.node_id = Some(r.node_id);
            info.software_tpm = Some(r.software_tpm);
        }
        Err(e) => info.error = Some(e),
    }
    Some(info)
}

/// The report inside an envelope, unverified: a summary for the status
/// page. Verification is `xnode-agent verify`'s job.
fn read_report(bytes: &[u8]) -> Result<xnode_verify::format::Report, String> {
    use xnode_verify::format::{unb64, Envelope, Report};
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| format!("not an envelope: {e}"))?;
    let payload = unb64("payload", &env.payload).map_err(|e| e.to_string())?;
    serde_json::from_slice::<Report>(&payload).map_err(|e| format!("not a report: {e}"))
}

async fn inventory(State(st): State<ApiState>) -> Response {
    let tpm = st.tpm.clone();
    let probed = tokio::task::spawn_blocking(move || {
        probe::probe(&probe::ProbeOptions {
            tpm,
            ..probe::ProbeOptions::default()
        })
    })
    .await;
    match probed {
        Ok(inv) => Json(inv).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the probe failed: {e}"),
        ),
    }
}

async fn attestation(State(st): State<ApiState>) -> Response {
    let path = st.state_dir.join(ATTESTATION_FILE);
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => error(
            StatusCode::NOT_FOUND,
            format!(
                "no attestation yet: `xnode-agent attest --beacon HEX --out {}` writes one",
                path.display()
            ),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading {}: {e}", path.display()),
        ),
    }
}

/// How long `/v1/challenge/events` waits for an event.
const EVENTS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn no_claim(st: &ApiState) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        match &st.challenges_error {
            Some(e) => {
                format!("this agent proves nothing: its challenges file could not be used: {e}")
            }
            None => {
                "this agent has no proof-of-resource claim: start it with --challenges FILE".into()
            }
        },
    )
}

async fn challenge_report(State(st): State<ApiState>) -> Response {
    let Some(c) = &st.challenger else {
        return no_claim(&st);
    };
    let path = c.report_path();
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => error(
            StatusCode::NOT_FOUND,
            "no proof of resource yet: POST /v1/challenge?seed=HEX (xnode-agent challenge request) makes one",
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading {}: {e}", path.display()),
        ),
    }
}

#[derive(Debug, serde::Deserialize)]
struct StartQuery {
    seed: Option<String>,
    for_attestation: Option<String>,
}

async fn challenge_start(
    State(st): State<ApiState>,
    query: Result<Query<StartQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(c) = &st.challenger else {
        return no_claim(&st);
    };
    let seed = match query.map(|q| q.0) {
        Err(e) => Err(e.body_text()),
        Ok(StartQuery {
            seed: Some(s),
            for_attestation: None,
        }) => s.parse::<por::Seed>().map_err(|e| format!("seed: {e}")),
        Ok(StartQuery {
            seed: None,
            for_attestation: Some(f),
        }) => f
            .parse::<crate::Hex>()
            .map(|h| por::report::attestation_seed(&h.0))
            .map_err(|e| format!("for_attestation: {e}")),
        Ok(_) => Err("give one of ?seed=HEX (64 hex digits) or ?for_attestation=HEX".into()),
    };
    let seed = match seed {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // The events from here on belong to this run.
    let after = c.last_event_seq();
    match c.start(seed, Source::Request) {
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "seed": seed,
                "after": after,
                "events": match after {
                    Some(n) => format!("/v1/challenge/events?after={n}"),
                    None => "/v1/challenge/events".to_string(),
                },
            })),
        )
            .into_response(),
        Err(r @ Refusal::Busy(_)) => error(StatusCode::CONFLICT, r.to_string()),
        Err(r @ Refusal::TooSoon { .. }) => error(StatusCode::TOO_MANY_REQUESTS, r.to_string()),
        Err(r @ Refusal::Failed(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, r.to_string()),
    }
}

#[derive(Debug, serde::Deserialize)]
struct EventsQuery {
    after: Option<u64>,
}

async fn challenge_events(
    State(st): State<ApiState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(c) = &st.challenger else {
        return no_claim(&st);
    };
    let after = match query {
        Ok(q) => q.0.after,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let events = c.events_after(after, EVENTS_WAIT).await;
    Json(serde_json::json!({
        "events": events,
        "running": c.status().running.is_some(),
    }))
    .into_response()
}

async fn metrics(State(st): State<ApiState>) -> Response {
    let text = st.status.borrow().openmetrics();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// A group named in /etc/group, or a number: the group given access to a
/// socket.
pub fn resolve_group(group: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let table = std::fs::read_to_string("/etc/group").context("reading /etc/group")?;
    table
        .lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(name, _)| *name == group)
        .and_then(|(_, gid)| gid.parse().ok())
        .with_context(|| format!("no group named '{group}' in /etc/group"))
}

/// Serve on a Unix socket at `path` (mode 0660, owned by `group` when one
/// is given; a stale socket from an earlier run is replaced, a live one is
/// an error).
pub async fn serve_unix(
    path: &Path,
    app: Router,
    group: Option<u32>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "{} exists and is not a socket: refusing to replace it",
                path.display()
            );
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "another agent is serving on {}: is xnode-agent already running?",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("listening on {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("giving group {gid} {}", path.display()))?;
    }
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("xnode-agent: the API socket stopped: {e}");
        }
    }))
}

/// Serve on TCP; every request must carry a signature by an authorized key.
pub async fn serve_tcp(
    addr: std::net::SocketAddr,
    app: Router,
    auth: Authorizer,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let auth = Arc::new(auth);
    let app = app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let auth = auth.clone();
            async move {
                let header = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok());
                let path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                match auth.check(header, req.method().as_str(), path, crate::now_unix()) {
                    Ok(()) => next.run(req).await,
                    Err(why) => error(StatusCode::UNAUTHORIZED, why),
                }
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("xnode-agent: the TCP API stopped: {e}");
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::api_client::ApiTarget;

    fn state(dir: &Path) -> (ApiState, watch::Sender<Arc<Status>>) {
        let (tx, rx) = watch::channel(Arc::new(Status {
            manifest: "/etc/xnode/manifest.json".into(),
            ..Status::default()
        }));
        let st = ApiState {
            status: rx,
            state_dir: dir.to_path_buf(),
            tpm: probe::TpmSource::None,
            started_at: 1.0,
            challenger: None,
            challenges_error: None,
        };
        (st, tx)
    }

    #[tokio::test]
    async fn serves_status_metrics_attestation_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("run/agent.sock");
        let (st, tx) = state(dir.path());
        serve_unix(&sock, router(st.clone()), None).await.unwrap();
        let client = ApiTarget {
            socket: sock.clone(),
            tcp: None,
            key: None,
        };
        let (code, body) = client.get("/v1/status").await.unwrap();
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["manifest"], "/etc/xnode/manifest.json");
        assert_eq!(v["agent"]["pid"], std::process::id());
        assert!(v["attestation"].is_null());

        // The status is live: a new one is served at once.
        tx.send_replace(Arc::new(Status {
            manifest: "changed".into(),
            ..Status::default()
        }));
        let (_, body) = client.get("/v1/status").await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("\"manifest\":\"changed\""));

        let (code, body) = client.get("/v1/attestation").await.unwrap();
        assert_eq!(code, 404);
        assert!(String::from_utf8_lossy(&body).contains("no attestation yet"));
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/attestation/envelope.json"
        );
        std::fs::copy(fixture, dir.path().join(ATTESTATION_FILE)).unwrap();
        let (code, body) = client.get("/v1/attestation").await.unwrap();
        assert_eq!(code, 200);
        assert_eq!(body.as_ref(), std::fs::read(fixture).unwrap().as_slice());
        let (_, body) = client.get("/v1/status").await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["attestation"]["sequence"].is_u64(), "{v}");
        assert!(v["attestation"]["error"].is_null(), "{v}");

        let (code, body) = client.get("/metrics").await.unwrap();
        assert_eq!(code, 200);
        assert!(String::from_utf8_lossy(&body).ends_with("# EOF\n"));
        let (code, _) = client.get("/v2/nothing").await.unwrap();
        assert_eq!(code, 404);

        // A second agent on the same socket is refused; the first still serves.
        let e = serve_unix(&sock, router(st), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("already running"), "{e}");
        assert_eq!(client.get("/v1/status").await.unwrap().0, 200);
    }

    #[tokio::test]
    async fn a_challenge_is_asked_for_with_a_seed_and_refused_without_a_claim() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let (mut st, _tx) = state(dir.path());
        serve_unix(&sock, router(st.clone()), None).await.unwrap();
        let client = ApiTarget {
            socket: sock,
            tcp: None,
            key: None,
        };
        // No claim configured: every challenge endpoint says how to give one.
        for (code, body) in [
            client.post("/v1/challenge?seed=00").await.unwrap(),
            client.get("/v1/challenge").await.unwrap(),
            client.get("/v1/challenge/events").await.unwrap(),
        ] {
            assert_eq!(code, 503);
            assert!(String::from_utf8_lossy(&body).contains("--challenges FILE"));
        }

        // A claim that could not be used at start: the status and the
        // endpoints say why, and the rest of the agent serves on.
        let sock = dir.path().join("agent1.sock");
        st.challenges_error = Some("gpu: no CUDA here: libcuda.so was not found".into());
        serve_unix(&sock, router(st.clone()), None).await.unwrap();
        let broken = ApiTarget {
            socket: sock,
            tcp: None,
            key: None,
        };
        let (code, body) = broken.post("/v1/challenge?seed=00").await.unwrap();
        assert_eq!(code, 503);
        assert!(String::from_utf8_lossy(&body).contains("could not be used: gpu: no CUDA here"));
        let (_, body) = broken.get("/v1/status").await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            v["proof_of_resource"]["error"]
                .as_str()
                .unwrap()
                .contains("no CUDA here"),
            "{v}"
        );
        st.challenges_error = None;

        let sock = dir.path().join("agent2.sock");
        st.challenger = Some(Challenger::new(
            crate::challenger::tests::small_config(None),
            dir.path(),
        ));
        serve_unix(&sock, router(st), None).await.unwrap();
        let client = ApiTarget {
            socket: sock,
            tcp: None,
            key: None,
        };
        for (path, why) in [
            ("/v1/challenge", "give one of ?seed=HEX"),
            ("/v1/challenge?seed=zz", "seed: "),
            (
                "/v1/challenge?for_attestation=xyz",
                "for_attestation: not hex",
            ),
            ("/v1/challenge?seed=00&for_attestation=00", "give one of"),
        ] {
            let (code, body) = client.post(path).await.unwrap();
            assert_eq!(code, 400, "{path}");
            assert!(
                String::from_utf8_lossy(&body).contains(why),
                "{path}: {body:?}"
            );
        }
        let (code, body) = client.get("/v1/challenge/events?after=x").await.unwrap();
        assert_eq!(code, 400, "{body:?}");
        let (code, body) = client.get("/v1/challenge").await.unwrap();
        assert_eq!(code, 404);
        assert!(String::from_utf8_lossy(&body).contains("no proof of resource yet"));
        // Refused requests started nothing.
        let (_, body) = client.get("/v1/status").await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["proof_of_resource"]["running"].is_null(), "{v}");
        assert!(v["proof_of_resource"]["last"].is_null(), "{v}");
    }

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert_eq!(resolve_group("4242").unwrap(), 4242);
        let e = resolve_group("no-such-group-here").unwrap_err().to_string();
        assert!(e.contains("no group named 'no-such-group-here'"), "{e}");
    }

    #[tokio::test]
    async fn the_socket_group_can_use_the_socket() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        // Root may give the socket any group; others only their own.
        let gid = if rustix::process::geteuid().is_root() {
            65534
        } else {
            std::fs::metadata(dir.path()).unwrap().gid()
        };
        let (st, _tx) = state(dir.path());
        serve_unix(&sock, router(st), Some(gid)).await.unwrap();
        let meta = std::fs::metadata(&sock).unwrap();
        assert_eq!(meta.gid(), gid);
        assert_eq!(meta.mode() & 0o777, 0o660);
    }

    #[tokio::test]
    async fn tcp_needs_a_signature_by_an_authorized_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        std::fs::write(&key, [9u8; 32]).unwrap();
        let public = crate::api_auth::load_signing_key(&key)
            .unwrap()
            .verifying_key()
            .to_bytes();
        let keys = dir.path().join("authorized");
        std::fs::write(&keys, hex::encode(public)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (st, _tx) = state(dir.path());
        serve_tcp(addr, router(st), Authorizer::from_file(&keys).unwrap())
            .await
            .unwrap();

        let signed = ApiTarget {
            socket: PathBuf::new(),
            tcp: Some(addr.to_string()),
            key: Some(key),
        };
        assert_eq!(signed.get("/v1/status").await.unwrap().0, 200);

        // No signature: refused, with the reason.
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut tx, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let resp = tx
            .send_request(
                hyper::Request::get("/v1/status")
                    .header("host", "x")
                    .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("no Authorization header"));

        // A key that is not authorized.
        let other = dir.path().join("other.key");
        std::fs::write(&other, [3u8; 32]).unwrap();
        let stranger = ApiTarget {
            key: Some(other),
            ..signed.clone()
        };
        let (code, body) = stranger.get("/v1/status").await.unwrap();
        assert_eq!(code, 401);
        assert!(String::from_utf8_lossy(&body).contains("key not authorized"));
    }
}
