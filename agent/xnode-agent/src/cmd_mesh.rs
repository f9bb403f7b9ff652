//! `xnode-agent mesh`: run the node's libp2p mesh, and talk to it.
//!
//! `mesh run` joins the mesh under the node key and serves a small API on a
//! Unix socket; `publish`, `find`, `services`, `nodes`, `status` and
//! `delegate` are its clients.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use mesh::delegate::Task;
use mesh::node::{Config, Mesh, Transport};
use mesh::observe::ServiceMetric;
use mesh::{MeshError, Offer, Resources, Visibility};
use serde::{Deserialize, Serialize};
use supervisor::manifest::Kind;

use crate::cmd_run::{load_manifest, ManifestArg};

const DEFAULT_API: &str = supervisor::mesh::DEFAULT_API;

#[derive(Debug, clap::Subcommand)]
pub enum MeshCommand {
    /// Join the mesh under the node key and serve the mesh API (a systemd service).
    Run(RunArgs),
    /// Sign and publish a service record (a Service Mesh Worker).
    Publish(PublishArgs),
    /// Look a service up in the DHT; prints every live, correctly signed record.
    Find(FindArgs),
    /// The per-service view gossiped metrics give this node.
    Services(ApiArgs),
    /// Nodes heard from: attested resources, load, services.
    Nodes(ApiArgs),
    /// This node: PeerId, listen addresses, peers, published records, peer scores.
    Status(ApiArgs),
    /// Run a task on nodes whose attested resources fit; prints the accepted result.
    Delegate(DelegateArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The mesh API socket of `xnode-agent mesh run`.
    #[arg(long, env = "XNODE_MESH_API", default_value = DEFAULT_API)]
    api: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    manifest: ManifestArg,
    /// The node key: a 32-byte Ed25519 seed (node.key). The mesh PeerId is its key's.
    #[arg(long)]
    key: PathBuf,
    /// Listen here instead of the manifest's address (repeatable; TCP or QUIC multiaddrs).
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// Join through these peers too (`…/p2p/<PeerId>`, repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Run without a manifest: the mesh settings come from the flags alone.
    #[arg(long)]
    no_manifest: bool,
    /// The mesh API socket to serve [default: settings.api, else /run/xnode-mesh/api.sock].
    #[arg(long, env = "XNODE_MESH_API")]
    api: Option<PathBuf>,
    /// Gossip metrics this often instead of the manifest's interval.
    #[arg(long)]
    metrics_interval: Option<u64>,
    /// The installed first-boot configuration: its mesh bootstrap peers are
    /// joined too. Ignored when absent.
    #[arg(
        long,
        env = "XNODE_NODE_CONFIG",
        default_value = "/var/lib/xnode/firstboot.json"
    )]
    node_config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Service name: 1-64 of a-z, 0-9, '.', '_', '-'.
    service: String,
    /// Where the service answers (multiaddr, repeatable), e.g. /ip4/192.0.2.1/tcp/8080.
    #[arg(long = "endpoint", required = true)]
    endpoints: Vec<Multiaddr>,
    #[arg(long, default_value = "")]
    version: String,
    /// Keep it off the DHT and answer only these peers (PeerIds, repeatable).
    #[arg(long = "private-to")]
    private_to: Vec<libp2p::PeerId>,
    /// Record lifetime in seconds; the node re-signs it before it lapses.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    #[command(flatten)]
    needs: NeedsArgs,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, clap::Args)]
pub struct NeedsArgs {
    /// CPUs the service or task needs.
    #[arg(long, default_value_t = 0)]
    cpus: u32,
    #[arg(long, default_value_t = 0)]
    memory_mb: u64,
    #[arg(long, default_value_t = 0)]
    gpus: u32,
    #[arg(long, default_value_t = 0)]
    disk_gb: u64,
}

impl NeedsArgs {
    fn resources(&self) -> Resources {
        Resources {
            cpus: self.cpus,
            memory_mb: self.memory_mb,
            gpus: self.gpus,
            disk_gb: self.disk_gb,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct FindArgs {
    service: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, clap::Args)]
pub struct DelegateArgs {
    /// The task kind: sha256-chain or echo.
    kind: String,
    /// The task's input, as JSON.
    #[arg(long, default_value = "{}")]
    input: String,
    /// Run on this many nodes and accept the majority's answer.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    #[arg(long, default_value_t = 30_000)]
    deadline_ms: u64,
    #[command(flatten)]
    needs: NeedsArgs,
    #[command(flatten)]
    api: ApiArgs,
}

/// The mesh entry's `settings` in the manifest (modules/mesh.nix).
pub type MeshSettings = supervisor::mesh::Settings;

pub fn run(command: MeshCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match command {
            MeshCommand::Run(a) => serve(a).await,
            MeshCommand::Publish(a) => publish(a).await,
            MeshCommand::Find(a) => {
                let body =
                    request(&a.api.api, "GET", &format!("/v1/find/{}", a.service), None).await?;
                let records: Vec<mesh::ServiceRecord> = serde_json::from_slice(&body)?;
                print_records(&records, a.api.json)?;
                Ok(if records.is_empty() {
                    eprintln!("no live record of {} in the mesh", a.service);
                    ExitCode::from(3)
                } else {
                    ExitCode::SUCCESS
                })
            }
            MeshCommand::Services(a) => show(&a, "/v1/services", print_services).await,
            MeshCommand::Nodes(a) => show(&a, "/v1/nodes", print_json).await,
            MeshCommand::Status(a) => show(&a, "/v1/status", print_status).await,
            MeshCommand::Delegate(a) => delegate(a).await,
        }
    })
}

async fn show(
    a: &ApiArgs,
    path: &str,
    human: fn(&serde_json::Value) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let body = request(&a.api, "GET", path, None).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    if a.json {
        print_json(&v)?;
    } else {
        human(&v)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_records(records: &[mesh::ServiceRecord], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(records)?);
        return Ok(());
    }
    for r in records {
        let endpoints: Vec<String> = r.endpoints.iter().map(ToString::to_string).collect();
        println!(
            "{} {} provider {} endpoints {} expires {}",
            r.service,
            if r.version.is_empty() {
                "-"
            } else {
                &r.version
            },
            r.provider,
            endpoints.join(","),
            r.expires_unix
        );
    }
    Ok(())
}

fn print_services(v: &serde_json::Value) -> anyhow::Result<()> {
    let views: Vec<mesh::observe::ServiceView> = serde_json::from_value(v.clone())?;
    if views.is_empty() {
        println!("no service metrics heard yet");
    }
    for s in views {
        let rt = s
            .mean_response_ms
            .map_or("-".to_string(), |m| format!("{m:.1} ms"));
        println!(
            "{:<20} nodes {:<4} response {:<10} min uptime {} s  subscriptions {}  faults {}",
            s.service,
            s.nodes.len(),
            rt,
            s.min_uptime_secs,
            s.subscriptions,
            s.faults
        );
    }
    Ok(())
}

fn print_status(v: &serde_json::Value) -> anyhow::Result<()> {
    let field = |k: &str| v.get(k).cloned().unwrap_or_default();
    println!("peer id       {}", field("peer_id").as_str().unwrap_or("?"));
    for a in field("listen").as_array().into_iter().flatten() {
        println!("listening     {}", a.as_str().unwrap_or("?"));
    }
    println!(
        "connected     {} peers ({} in the gossip mesh)",
        field("connected").as_array().map_or(0, Vec::len),
        field("gossip_mesh").as_array().map_or(0, Vec::len)
    );
    println!("routing table {} peers", field("routing_table"));
    println!(
        "connections   {} opened, {} trimmed since start; {} DHT queries in flight",
        field("connections_opened"),
        field("connections_trimmed"),
        field("kad_queries")
    );
    for r in field("unplaced").as_array().into_iter().flatten() {
        println!(
            "not in the DHT yet {} (retried every 30 s)",
            r.as_str().unwrap_or("?")
        );
    }
    for r in field("published").as_array().into_iter().flatten() {
        println!("published     {}", r["service"].as_str().unwrap_or("?"));
    }
    for (peer, s) in field("scores").as_object().into_iter().flatten() {
        println!(
            "score         {peer} {} ({})",
            s["score"],
            s["last_reason"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

async fn publish(a: PublishArgs) -> anyhow::Result<ExitCode> {
    let offer = Offer {
        service: a.service,
        version: a.version,
        endpoints: a.endpoints,
        visibility: if a.private_to.is_empty() {
            Visibility::Public
        } else {
            Visibility::Private {
                allow: a.private_to,
            }
        },
        needs: a.needs.resources(),
        ttl_secs: a.ttl,
    };
    // Checked here too, so a typo never reaches the daemon.
    offer.check().map_err(|e| anyhow::anyhow!(e))?;
    let body = request(
        &a.api.api,
        "POST",
        "/v1/publish",
        Some(serde_json::to_vec(&offer)?),
    )
    .await?;
    let record: mesh::ServiceRecord = serde_json::from_slice(&body)?;
    print_records(std::slice::from_ref(&record), a.api.json)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize, Deserialize)]
struct DelegateBody {
    task: Task,
    replicas: usize,
}

async fn delegate(a: DelegateArgs) -> anyhow::Result<ExitCode> {
    let input: serde_json::Value = serde_json::from_str(&a.input).context("--input is not JSON")?;
    let body = DelegateBody {
        task: Task {
            id: format!("cli-{}-{}", std::process::id(), crate::now_unix()),
            kind: a.kind,
            input,
            needs: a.needs.resources(),
            deadline_ms: a.deadline_ms,
        },
        replicas: a.replicas,
    };
    let out = request(
        &a.api.api,
        "POST",
        "/v1/delegate",
        Some(serde_json::to_vec(&body)?),
    )
    .await?;
    let v: serde_json::Value = serde_json::from_slice(&out)?;
    if a.api.json {
        print_json(&v)?;
    } else {
        println!("output     {}", v["output"]);
        println!("agreeing   {}", v["agreeing"]);
        println!("dissenting {}", v["dissenting"]);
        println!("reassigned {}", v["reassigned"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// One request to the mesh API; a non-2xx answer becomes its error text.
async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| {
            format!(
                "connecting to the mesh API at {} (is `xnode-agent mesh run` running?)",
                socket.display()
            )
        })?;
    let (code, bytes) = tokio::time::timeout(
        Duration::from_secs(120),
        crate::api_client::exchange(stream, method, path, body),
    )
    .await
    .context("the mesh did not answer within 120 s")??;
    if !(200..300).contains(&code) {
        let text = String::from_utf8_lossy(&bytes);
        anyhow::bail!("{}", text.trim());
    }
    Ok(bytes.to_vec())
}

/// The mesh settings: the manifest's mesh entry, then the flags.
fn settings(args: &RunArgs) -> anyhow::Result<MeshSettings> {
    if args.no_manifest {
        return Ok(MeshSettings::default());
    }
    let (manifest, _) = load_manifest(&args.manifest.path).map_err(|e| anyhow::anyhow!(e))?;
    let entry = manifest
        .services
        .iter()
        .find(|s| s.kind == Kind::Mesh)
        .with_context(|| {
            format!(
                "{} declares no service of kind mesh",
                args.manifest.path.display()
            )
        })?;
    MeshSettings::parse(&entry.settings).map_err(|problems| {
        let list: Vec<String> = problems
            .iter()
            .map(|(p, e)| format!("settings.{p}: {e}"))
            .collect();
        anyhow::anyhow!(
            "{}: service {}: {}",
            args.manifest.path.display(),
            entry.name,
            list.join("; ")
        )
    })
}

/// The TCP listener and, on the same port, QUIC.
fn with_quic(tcp: &Multiaddr) -> Vec<Multiaddr> {
    let mut quic = Multiaddr::empty();
    let mut converted = false;
    for p in tcp.iter() {
        match p {
            Protocol::Tcp(port) => {
                quic.push(Protocol::Udp(port));
                quic.push(Protocol::QuicV1);
                converted = true;
            }
            other => quic.push(other),
        }
    }
    if converted {
        vec![tcp.clone(), quic]
    } else {
        vec![tcp.clone()]
    }
}

fn parse_addrs(what: &str, list: &[String]) -> anyhow::Result<Vec<Multiaddr>> {
    list.iter()
        .map(|s| {
            s.parse::<Multiaddr>()
                .with_context(|| format!("{what}: {s:?} is not a multiaddr"))
        })
        .collect()
}

fn attestation_policy(s: &MeshSettings) -> anyhow::Result<Option<xnode_verify::Policy>> {
    let Some(bundle) = &s.ek_ca_bundle else {
        return Ok(None);
    };
    let pem =
        std::fs::read_to_string(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let ek_cas = xnode_verify::ekcert::parse_pem_bundle(&pem)
        .with_context(|| format!("{}", bundle.display()))?;
    let activations = match &s.activations {
        Some(p) => Some(
            serde_json::from_slice(
                &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{}: not an activation registry", p.display()))?,
        ),
        None => None,
    };
    Ok(Some(xnode_verify::Policy {
        ek_cas,
        activations,
        max_age_secs: Some(s.attestation_max_age_secs),
        ..Default::default()
    }))
}

async fn serve(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut s = settings(&args)?;
    if let Some(secs) = args.metrics_interval {
        s.metrics_interval_secs = secs;
    }
    let key = mesh::key::load_seed_file(&args.key)?;
    let api = args
        .api
        .clone()
        .or_else(|| s.api.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_API));
    let api_group = s
        .api_group
        .as_deref()
        .map(crate::api::resolve_group)
        .transpose()
        .context("settings.api_group")?;
    let mut listen = args.listen.clone();
    if listen.is_empty() {
        let tcp = s.listen.as_deref().unwrap_or("/ip4/0.0.0.0/tcp/4100");
        let tcp: Multiaddr = tcp
            .parse()
            .with_context(|| format!("settings.listen: {tcp:?} is not a multiaddr"))?;
        listen = with_quic(&tcp);
    }
    let mut bootstrap = parse_addrs("settings.bootstrap", &s.bootstrap)?;
    bootstrap.extend(args.bootstrap.iter().cloned());
    if let Some(c) = crate::node_config::load(&args.node_config)? {
        let from_first_boot = parse_addrs("bootstrap.mesh", &c.bootstrap.mesh)?;
        if !from_first_boot.is_empty() {
            eprintln!(
                "xnode-mesh: {} bootstrap peer(s) from {}",
                from_first_boot.len(),
                args.node_config.display()
            );
        }
        for addr in from_first_boot {
            if !bootstrap.contains(&addr) {
                bootstrap.push(addr);
            }
        }
    }
    let policy = attestation_policy(&s)?;
    let config = Config {
        transport: Transport::Network,
        bootstrap,
        mdns: s.mdns,
        attestation_check: policy.map(|p| {
            Arc::new(mesh::attested::VerifiedAttestations::new(p))
                as Arc<dyn mesh::observe::AttestationCheck>
        }),
        ..Config::default()
    };
    if config.attestation_check.is_none() {
        eprintln!("xnode-mesh: no settings.ek_ca_bundle: no node counts as attested, so none is chosen for tasks");
    }
    let (mesh, _task) = Mesh::spawn(key, config)?;
    for addr in listen {
        let bound = mesh
            .listen(addr.clone())
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!("xnode-mesh: listening on {bound}/p2p/{}", mesh.peer_id());
    }
    let app = router(mesh.clone());
    let _api = crate::api::serve_unix(&api, app, api_group).await?;
    eprintln!(
        "xnode-mesh: API on {}; PeerId {}",
        api.display(),
        mesh.peer_id()
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let mut every = tokio::time::interval(Duration::from_secs(s.metrics_interval_secs.max(1)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = every.tick() => report(&mesh, &s).await,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("xnode-mesh: stopping");
    let _ = std::fs::remove_file(&api);
    Ok(ExitCode::SUCCESS)
}

/// Gossip this node's metrics (from the agent, when it answers) and its
/// latest attestation.
async fn report(mesh: &Mesh, s: &MeshSettings) {
    let metrics = match &s.agent_socket {
        Some(socket) => agent_metrics(socket).await.unwrap_or_else(|e| {
            eprintln!("xnode-mesh: metrics from the agent: {e:#}");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let load = node_load();
    if let Err(e) = mesh.publish_metrics(load, metrics).await {
        eprintln!("xnode-mesh: gossiping metrics: {e}");
    }
    if let Some(path) = &s.attestation {
        match std::fs::read(path) {
            Ok(envelope) => {
                if let Err(e) = mesh.announce_attestation(envelope).await {
                    eprintln!("xnode-mesh: announcing {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("xnode-mesh: reading {}: {e}", path.display()),
        }
    }
}

/// The one-minute load average over the CPU count, capped at 1.
fn node_load() -> f32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f32;
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            l.split_whitespace()
                .next()
                .and_then(|x| x.parse::<f32>().ok())
        })
        .map_or(0.0, |l| (l / cpus).clamp(0.0, 1.0))
}

/// The agent's `/v1/status`, as the metrics the mesh gossips.
async fn agent_metrics(socket: &Path) -> anyhow::Result<Vec<ServiceMetric>> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let (_, body) = crate::api_client::exchange(stream, "GET", "/v1/status", None).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(metrics_from_status(&v, crate::now_unix() as f64))
}

pub fn metrics_from_status(status: &serde_json::Value, now: f64) -> Vec<ServiceMetric> {
    let started = status
        .pointer("/agent/started_at")
        .and_then(|v| v.as_f64())
        .unwrap_or(now);
    status
        .get("services")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|svc| {
            let name = svc.get("name")?.as_str()?.to_string();
            let active = svc.get("active_state").and_then(|a| a.as_str()) == Some("active");
            let since = svc
                .pointer("/last_recovery/active_at")
                .and_then(|v| v.as_f64())
                .unwrap_or(started);
            let count = |k: &str| svc.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            Some(ServiceMetric {
                service: name,
                uptime_secs: if active {
                    (now - since).max(0.0) as u64
                } else {
                    0
                },
                response_ms: svc
                    .pointer("/health/latency")
                    .and_then(|v| v.as_f64())
                    .map(|s| (s * 1000.0).round() as u32),
                subscriptions: 0,
                faults: u32::try_from(count("agent_restarts") + count("systemd_recoveries"))
                    .unwrap_or(u32::MAX),
            })
        })
        .collect()
}

fn router(mesh: Mesh) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/services", get(services))
        .route("/v1/nodes", get(nodes))
        .route("/v1/find/{service}", get(find))
        .route("/v1/publish", post(publish_route))
        .route("/v1/delegate", post(delegate_route))
        .with_state(mesh)
}

struct ApiError(MeshError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.0 {
            MeshError::Invalid(_) => StatusCode::BAD_REQUEST,
            MeshError::Delegation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            MeshError::Stopped | MeshError::Network(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (code, self.0.to_string()).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

async fn status(State(m): State<Mesh>) -> ApiResult<mesh::node::Status> {
    m.status().await.map(Json).map_err(ApiError)
}

async fn services(State(m): State<Mesh>) -> ApiResult<Vec<mesh::observe::ServiceView>> {
    m.services().await.map(Json).map_err(ApiError)
}

#[derive(Serialize)]
struct NodeEntry {
    peer: libp2p::PeerId,
    #[serde(flatten)]
    view: mesh::observe::NodeView,
}

async fn nodes(State(m): State<Mesh>) -> ApiResult<Vec<NodeEntry>> {
    let nodes = m.nodes().await.map_err(ApiError)?;
    Ok(Json(
        nodes
            .into_iter()
            .map(|(peer, view)| NodeEntry { peer, view })
            .collect(),
    ))
}

async fn find(
    State(m): State<Mesh>,
    UrlPath(service): UrlPath<String>,
) -> ApiResult<Vec<mesh::ServiceRecord>> {
    m.find(&service).await.map(Json).map_err(ApiError)
}

async fn publish_route(
    State(m): State<Mesh>,
    Json(offer): Json<Offer>,
) -> ApiResult<mesh::ServiceRecord> {
    m.publish(offer).await.map(Json).map_err(ApiError)
}

async fn delegate_route(
    State(m): State<Mesh>,
    Json(b): Json<DelegateBody>,
) -> ApiResult<mesh::delegate::Delegated> {
    m.delegate(b.task, b.replicas)
        .await
        .map(Json)
        .map_err(ApiError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_listens_on_the_tcp_port() {
        let tcp: Multiaddr = "/ip4/0.0.0.0/tcp/4100".parse().unwrap();
        let got: Vec<String> = with_quic(&tcp).iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            ["/ip4/0.0.0.0/tcp/4100", "/ip4/0.0.0.0/udp/4100/quic-v1"]
        );
    }

    #[test]
    fn agent_status_becomes_service_metrics() {
        let status = serde_json::json!({
            "agent": {"started_at": 1000.0},
            "services": [
                {"name": "ipfs", "active_state": "active", "health": {"latency": 0.012},
                 "agent_restarts": 2, "systemd_recoveries": 1},
                {"name": "cometbft", "active_state": "failed", "agent_restarts": 0,
                 "last_recovery": {"active_at": 1500.0}}
            ]
        });
        let m = metrics_from_status(&status, 2000.0);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].uptime_secs, m[0].response_ms, m[0].faults),
            (1000, Some(12), 3)
        );
        assert_eq!((m[1].uptime_secs, m[1].response_ms), (0, None));
    }
}
