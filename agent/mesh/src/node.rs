//! The mesh node: one libp2p swarm and the event loop that owns it. Callers
//! hold a [`Mesh`] handle and talk to the loop over a channel, so nothing
//! outside the loop touches the swarm.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::kad::{
    self, store::MemoryStore, store::RecordStore, GetProvidersOk, GetRecordOk, QueryId,
    QueryResult, Quorum, RecordKey,
};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{behaviour::toggle::Toggle, NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, mdns, noise, ping, yamux, Multiaddr,
    PeerId, StreamProtocol, Swarm, Transport as _,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::delegate::{
    self, Assignment, AssignmentOutcome, Delegated, Executor, Request, Response, Task,
};
use crate::error::{MeshError, Rejected};
use crate::observe::{
    AttestationAnnounce, AttestationCheck, Gate, MetricReport, NodeView, Observations, RateLimit,
    ServiceMetric, ServiceView, Verdict, ATTESTATION_TOPIC, MAX_AGE_SECS, METRICS_TOPIC,
};
use crate::record::{self, now_unix, AttestationRef, Offer, ServiceRecord};
use crate::resources::Resources;
use crate::score::{PeerScore, Scores};
use crate::signed;
use crate::trim::Watermarks;

pub const KAD_PROTOCOL: &str = "/xnode/kad/1.0.0";
pub const IDENTIFY_PROTOCOL: &str = "/xnode/id/1.0.0";

/// How the node reaches others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP and QUIC, with Noise and Yamux on TCP.
    Network,
    /// libp2p's in-process memory transport, for many nodes in one process.
    Memory,
}

#[derive(Clone)]
pub struct Config {
    pub transport: Transport,
    /// Peers to join through; each address ends in `/p2p/<PeerId>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN. Off on servers: it announces the node to
    /// its whole segment.
    pub mdns: bool,
    /// The hard limit: connections above it are refused.
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    /// Idle connections are closed down to `low` when more than `high` are open.
    pub watermarks: Watermarks,
    /// Gossip accepted per signer and topic.
    pub gossip_rate: RateLimit,
    /// Tasks one peer may have running here at once.
    pub max_tasks_per_peer: u32,
    pub executor: Arc<dyn Executor>,
    /// Verifies attestation envelopes; without one no node counts as attested.
    pub attestation_check: Option<Arc<dyn AttestationCheck>>,
    /// This node's own attested resources, checked against a task's needs.
    pub own_resources: Option<Resources>,
    pub kad_query_timeout: Duration,
    /// How often Kademlia refreshes the routing table (libp2p's bootstrap).
    pub kad_refresh_interval: Duration,
    pub gossip_heartbeat: Duration,
    pub idle_connection_timeout: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("transport", &self.transport)
            .field("bootstrap", &self.bootstrap)
            .field("mdns", &self.mdns)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            transport: Transport::Network,
            bootstrap: Vec::new(),
            mdns: false,
            max_connections: 256,
            max_connections_per_peer: 2,
            watermarks: Watermarks::default(),
            gossip_rate: RateLimit::default(),
            max_tasks_per_peer: 4,
            executor: Arc::new(delegate::Builtin),
            attestation_check: None,
            own_resources: None,
            kad_query_timeout: Duration::from_secs(30),
            kad_refresh_interval: Duration::from_secs(300),
            gossip_heartbeat: Duration::from_millis(700),
            idle_connection_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    tasks: request_response::json::Behaviour<Request, Response>,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

type Reply<T> = oneshot::Sender<T>;

enum Command {
    Listen(Multiaddr, Reply<Result<Multiaddr, MeshError>>),
    Dial(Multiaddr, Reply<Result<(), MeshError>>),
    Status(Reply<Status>),
    Publish(Offer, Reply<Result<ServiceRecord, MeshError>>),
    Unpublish(String, Reply<bool>),
    Find(String, Reply<Result<Vec<ServiceRecord>, MeshError>>),
    Describe(
        PeerId,
        String,
        Reply<Result<Option<ServiceRecord>, MeshError>>,
    ),
    Metrics(f32, Vec<ServiceMetric>, Reply<Result<(), MeshError>>),
    Attestation(Vec<u8>, Reply<Result<(), MeshError>>),
    Services(Reply<Vec<ServiceView>>),
    Nodes(Reply<Vec<(PeerId, NodeView)>>),
    Delegate(Task, usize, Reply<Result<Delegated, MeshError>>),
    InjectGossip(&'static str, Vec<u8>, Reply<Result<(), MeshError>>),
    InjectRecord(RecordKey, Vec<u8>, Reply<Result<(), MeshError>>),
    RoutingTable(Reply<Vec<PeerId>>),
    GetRecordRaw(RecordKey, Reply<Result<LookupStats, MeshError>>),
}

/// A snapshot of the node, for `mesh status` and health checks.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub peer_id: PeerId,
    pub listen: Vec<Multiaddr>,
    pub connected: Vec<PeerId>,
    /// Peers in this node's gossipsub mesh (any topic): never trimmed.
    pub gossip_mesh: Vec<PeerId>,
    pub routing_table: usize,
    /// Kademlia queries in flight, including routing-table refreshes.
    pub kad_queries: usize,
    /// Connections opened since start, and closed by trimming: their rate
    /// is the node's connection churn.
    pub connections_opened: u64,
    pub connections_trimmed: u64,
    /// Own public records being put into the DHT now.
    pub placing: Vec<String>,
    /// Own public records the DHT has not taken yet (retried every 30 s).
    pub unplaced: Vec<String>,
    pub published: Vec<ServiceRecord>,
    pub scores: BTreeMap<String, PeerScore>,
}

/// What a plain DHT record lookup saw; the simulation's measure.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LookupStats {
    pub found: bool,
    pub requests: u32,
    pub millis: u64,
}

/// The handle every caller uses. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mesh {
    peer_id: PeerId,
    tx: mpsc::Sender<Command>,
}

impl Mesh {
    /// Start a node on the current tokio runtime.
    pub fn spawn(
        key: Keypair,
        config: Config,
    ) -> Result<(Mesh, tokio::task::JoinHandle<()>), MeshError> {
        let peer_id = key.public().to_peer_id();
        config
            .watermarks
            .validate(config.max_connections)
            .map_err(MeshError::Invalid)?;
        let swarm = build_swarm(&key, &config)?;
        let (tx, rx) = mpsc::channel(256);
        let (done_tx, done_rx) = mpsc::channel(64);
        let mut node = Node {
            key,
            swarm,
            config,
            gate: Gate::default(),
            obs: Observations::default(),
            scores: Scores::default(),
            local: BTreeMap::new(),
            own_attestation: None,
            listeners: HashMap::new(),
            lookups: HashMap::new(),
            queries: HashMap::new(),
            raw_queries: HashMap::new(),
            describes: HashMap::new(),
            delegations: HashMap::new(),
            requests: HashMap::new(),
            in_flight: BTreeMap::new(),
            serving: HashMap::new(),
            connected_since: HashMap::new(),
            unplaced: BTreeSet::new(),
            connections_opened: 0,
            connections_trimmed: 0,
            unreachable: HashMap::new(),
            next_id: 0,
            // Peers drop a seq at or below the last they saw; starting from
            // the clock (ms) keeps a restarted node above its old count.
            metrics_seq: now_unix().saturating_mul(1000),
            attestation_seq: now_unix().saturating_mul(1000),
            done_tx,
        };
        node.gate = Gate::new(node.config.gossip_rate);
        node.join_bootstrap();
        let handle = tokio::spawn(node.run(rx, done_rx));
        Ok((Mesh { peer_id, tx }, handle))
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, MeshError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| MeshError::Stopped)?;
        rx.await.map_err(|_| MeshError::Stopped)
    }

    /// Listen on `addr`; returns the address actually bound (port 0 resolved).
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr, MeshError> {
        self.ask(|r| Command::Listen(addr, r)).await?
    }

    /// Connect to a peer (and, when the address names it, add it to the DHT).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), MeshError> {
        self.ask(|r| Command::Dial(addr, r)).await?
    }

    pub async fn status(&self) -> Result<Status, MeshError> {
        self.ask(Command::Status).await
    }

    /// Sign and publish a service record: in the DHT if public, only held
    /// here (answered to its allowlist) if private.
    pub async fn publish(&self, offer: Offer) -> Result<ServiceRecord, MeshError> {
        self.ask(|r| Command::Publish(offer, r)).await?
    }

    pub async fn unpublish(&self, service: &str) -> Result<bool, MeshError> {
        self.ask(|r| Command::Unpublish(service.to_string(), r))
            .await
    }

    /// Every live, correctly signed record of `service` in the DHT.
    pub async fn find(&self, service: &str) -> Result<Vec<ServiceRecord>, MeshError> {
        record::check_service_name(service).map_err(MeshError::Invalid)?;
        self.ask(|r| Command::Find(service.to_string(), r)).await?
    }

    /// Ask `provider` directly for its record of `service` (the way to a
    /// private worker, for peers on its allowlist).
    pub async fn describe(
        &self,
        provider: PeerId,
        service: &str,
    ) -> Result<Option<ServiceRecord>, MeshError> {
        record::check_service_name(service).map_err(MeshError::Invalid)?;
        self.ask(|r| Command::Describe(provider, service.to_string(), r))
            .await?
    }

    /// Gossip this node's metrics.
    pub async fn publish_metrics(
        &self,
        load: f32,
        services: Vec<ServiceMetric>,
    ) -> Result<(), MeshError> {
        self.ask(|r| Command::Metrics(load, services, r)).await?
    }

    /// Gossip this node's latest attestation envelope.
    pub async fn announce_attestation(&self, envelope: Vec<u8>) -> Result<(), MeshError> {
        self.ask(|r| Command::Attestation(envelope, r)).await?
    }

    /// The per-service view built from gossip.
    pub async fn services(&self) -> Result<Vec<ServiceView>, MeshError> {
        self.ask(Command::Services).await
    }

    pub async fn nodes(&self) -> Result<Vec<(PeerId, NodeView)>, MeshError> {
        self.ask(Command::Nodes).await
    }

    /// Run `task` on `replicas` nodes whose attested resources fit, and
    /// accept the answer more than half of them give.
    pub async fn delegate(&self, task: Task, replicas: usize) -> Result<Delegated, MeshError> {
        if replicas == 0 || replicas > delegate::MAX_REPLICAS {
            return Err(MeshError::Invalid(format!(
                "replicas {replicas} is not in 1..={}",
                delegate::MAX_REPLICAS
            )));
        }
        self.ask(|r| Command::Delegate(task, replicas, r)).await?
    }

    /// Publish bytes on a gossip topic exactly as given, skipping signing
    /// and validation: how tests play a hostile peer.
    #[doc(hidden)]
    pub async fn inject_gossip(
        &self,
        topic: &'static str,
        bytes: Vec<u8>,
    ) -> Result<(), MeshError> {
        self.ask(|r| Command::InjectGossip(topic, bytes, r)).await?
    }

    /// Put a DHT record exactly as given: how tests play a hostile peer.
    #[doc(hidden)]
    pub async fn inject_record(&self, key: RecordKey, value: Vec<u8>) -> Result<(), MeshError> {
        self.ask(|r| Command::InjectRecord(key, value, r)).await?
    }

    /// The peers in this node's routing table.
    pub async fn routing_table(&self) -> Result<Vec<PeerId>, MeshError> {
        self.ask(Command::RoutingTable).await
    }

    /// A plain DHT lookup of `key`, with what it cost.
    pub async fn get_record(&self, key: RecordKey) -> Result<LookupStats, MeshError> {
        self.ask(|r| Command::GetRecordRaw(key, r)).await?
    }
}

fn build_swarm(key: &Keypair, config: &Config) -> Result<Swarm<Behaviour>, MeshError> {
    let net = |e: &dyn std::fmt::Display| MeshError::Network(e.to_string());
    let behaviour = |key: &Keypair| {
        make_behaviour(key, config)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    };
    let idle = config.idle_connection_timeout;
    let swarm = match config.transport {
        Transport::Network => libp2p::SwarmBuilder::with_existing_identity(key.clone())
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| net(&e))?
            .with_quic()
            .with_behaviour(behaviour)
            .map_err(|e| net(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        Transport::Memory => libp2p::SwarmBuilder::with_existing_identity(key.clone())
            .with_tokio()
            .with_other_transport(
                |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                    Ok(MemoryTransport::default()
                        .upgrade(Version::V1)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default())
                        .boxed())
                },
            )
            .map_err(|e| net(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| net(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    };
    Ok(swarm)
}

fn make_behaviour(key: &Keypair, config: &Config) -> Result<Behaviour, MeshError> {
    let peer_id = key.public().to_peer_id();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        .with_max_pending_incoming(Some(config.max_connections / 4 + 1));

    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config
        .set_query_timeout(config.kad_query_timeout)
        .set_periodic_bootstrap_interval(Some(config.kad_refresh_interval))
        // Every record is checked before it is stored (see `inbound_kad`).
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_max_packet_size(32 * 1024);
    let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
    kad.set_mode(Some(kad::Mode::Server));

    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.gossip_heartbeat)
        // Messages wait for `validate` before they are forwarded.
        .validate_messages()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .max_transmit_size(signed::ATTESTATION.max_bytes + 1024)
        // Our envelopes carry the signature; the ID is the content's hash so
        // a re-sent copy is a duplicate.
        .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId::from(signed_digest(&m.data)))
        .build()
        .map_err(|e| MeshError::Invalid(format!("gossipsub: {e}")))?;
    let mut gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)
            .map_err(|e| MeshError::Invalid(format!("gossipsub: {e}")))?;
    for topic in [METRICS_TOPIC, ATTESTATION_TOPIC] {
        gossipsub
            .subscribe(&gossipsub::IdentTopic::new(topic))
            .map_err(|e| MeshError::Invalid(format!("subscribing to {topic}: {e}")))?;
    }

    let tasks = request_response::json::Behaviour::new(
        [(
            StreamProtocol::new(delegate::PROTOCOL),
            ProtocolSupport::Full,
        )],
        // Deadlines are the requester's own; this is only a backstop.
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(600))
            .with_max_concurrent_streams(64),
    );
    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| MeshError::Network(format!("mDNS: {e}")))?,
        )
    } else {
        None
    };
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        blocked: allow_block_list::Behaviour::default(),
        // A node dials its bootstrap peers as it spawns, possibly before
        // its listener is up: pushing the addresses once they are lets
        // those peers route to it without waiting for the next identify
        // round (5 min).
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                .with_push_listen_addr_updates(true),
        ),
        ping: ping::Behaviour::default(),
        kad,
        gossipsub,
        tasks,
        mdns: Toggle::from(mdns),
    })
}

fn signed_digest(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Split `…/p2p/<id>` into the peer and the address before it.
pub fn split_peer(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut a = addr.clone();
    match a.pop() {
        Some(Protocol::P2p(peer)) => Some((peer, a)),
        _ => None,
    }
}

/// A plain record lookup: started, found yet, who to tell.
type RawQuery = (Instant, bool, Reply<Result<LookupStats, MeshError>>);

struct Lookup {
    service: String,
    providers_done: bool,
    pending: usize,
    asked: HashSet<PeerId>,
    found: Vec<ServiceRecord>,
    reply: Reply<Result<Vec<ServiceRecord>, MeshError>>,
}

enum QueryFor {
    Providers(u64),
    Record(u64, PeerId),
    /// Placing this node's own record of a service (put or provide).
    Place(String),
    /// Finding the peers to put this node's own record of a service on.
    Closest(String),
}

struct Delegation {
    task: Task,
    replicas: usize,
    queue: VecDeque<PeerId>,
    pending: HashMap<OutboundRequestId, (PeerId, Instant)>,
    answers: Vec<(PeerId, String)>,
    outputs: HashMap<String, serde_json::Value>,
    assignments: Vec<Assignment>,
    reassigned: u32,
    reply: Option<Reply<Result<Delegated, MeshError>>>,
}

/// A `Describe` request waiting for its provider's answer.
struct Outbound(
    Reply<Result<Option<ServiceRecord>, MeshError>>,
    PeerId,
    String,
);

struct Node {
    key: Keypair,
    swarm: Swarm<Behaviour>,
    config: Config,
    gate: Gate,
    obs: Observations,
    scores: Scores,
    /// This node's own records (public and private) and their envelopes.
    local: BTreeMap<String, (ServiceRecord, Vec<u8>, u64)>,
    own_attestation: Option<AttestationRef>,
    listeners: HashMap<libp2p::core::transport::ListenerId, Reply<Result<Multiaddr, MeshError>>>,
    lookups: HashMap<u64, Lookup>,
    queries: HashMap<QueryId, QueryFor>,
    raw_queries: HashMap<QueryId, RawQuery>,
    describes: HashMap<OutboundRequestId, Outbound>,
    delegations: HashMap<u64, Delegation>,
    requests: HashMap<OutboundRequestId, u64>,
    in_flight: BTreeMap<PeerId, u32>,
    /// Tasks each peer has running here.
    serving: HashMap<PeerId, u32>,
    /// When each connected peer's oldest open connection was established.
    connected_since: HashMap<PeerId, Instant>,
    /// Own public records whose last put or provide failed.
    unplaced: BTreeSet<String>,
    connections_opened: u64,
    connections_trimmed: u64,
    /// When a task sent to each peer last failed in transport (down,
    /// unreachable or past its deadline).
    unreachable: HashMap<PeerId, Instant>,
    next_id: u64,
    metrics_seq: u64,
    attestation_seq: u64,
    done_tx: mpsc::Sender<(PeerId, ResponseChannel<Response>, Response)>,
}

impl Node {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut done: mpsc::Receiver<(PeerId, ResponseChannel<Response>, Response)>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut republish = tokio::time::interval(Duration::from_secs(30));
        let mut trim = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm(event),
                command = commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    // Every handle is gone: the node stops.
                    None => return,
                },
                Some((peer, channel, response)) = done.recv() => {
                    if let Some(n) = self.serving.get_mut(&peer) {
                        *n = n.saturating_sub(1);
                    }
                    let _ = self.swarm.behaviour_mut().tasks.send_response(channel, response);
                }
                _ = tick.tick() => self.expire_assignments(),
                _ = republish.tick() => self.republish(),
                _ = trim.tick() => self.trim_connections(),
            }
        }
    }

    fn me(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn join_bootstrap(&mut self) {
        for addr in self.config.bootstrap.clone() {
            if let Err(e) = self.dial_addr(addr.clone()) {
                eprintln!("xnode-mesh: bootstrap peer {addr}: {e}");
            }
        }
        // Fill the routing table from the bootstrap peers now rather than at
        // the first periodic bootstrap.
        if !self.config.bootstrap.is_empty() {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn dial_addr(&mut self, addr: Multiaddr) -> Result<(), MeshError> {
        if let Some((peer, bare)) = split_peer(&addr) {
            if peer == self.me() {
                return Err(MeshError::Invalid(format!("{addr} is this node")));
            }
            self.swarm.behaviour_mut().kad.add_address(&peer, bare);
        }
        self.swarm
            .dial(addr.clone())
            .map_err(|e| MeshError::Network(format!("dialing {addr}: {e}")))
    }

    /// Charge the peer that sent something invalid; drop it at the threshold.
    fn penalize(&mut self, peer: PeerId, why: &Rejected) {
        if peer == self.me() {
            return;
        }
        eprintln!("xnode-mesh: refused from {peer}: {why}");
        if self.scores.penalize(peer, why.penalty(), &why.to_string()) {
            eprintln!("xnode-mesh: {peer} banned after repeated invalid input");
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            self.swarm.behaviour_mut().kad.remove_peer(&peer);
            self.obs.forget(&peer);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Listen(addr, reply) => match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    self.listeners.insert(id, reply);
                }
                Err(e) => {
                    let _ =
                        reply.send(Err(MeshError::Network(format!("listening on {addr}: {e}"))));
                }
            },
            Command::Dial(addr, reply) => {
                let r = self.dial_addr(addr);
                if r.is_ok() {
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                let _ = reply.send(r);
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Publish(offer, reply) => {
                let _ = reply.send(self.publish(offer));
            }
            Command::Unpublish(service, reply) => {
                let had = self.local.remove(&service).is_some();
                self.unplaced.remove(&service);
                if had {
                    let me = self.me();
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    kad.stop_providing(&record::provider_key(&service));
                    kad.remove_record(&record::record_key(&service, &me));
                }
                let _ = reply.send(had);
            }
            Command::Find(service, reply) => self.find(service, reply),
            Command::Describe(peer, service, reply) => {
                let id = self.swarm.behaviour_mut().tasks.send_request(
                    &peer,
                    Request::Describe {
                        service: service.clone(),
                    },
                );
                self.describes.insert(id, Outbound(reply, peer, service));
            }
            Command::Metrics(load, services, reply) => {
                self.metrics_seq += 1;
                let m = MetricReport {
                    node: self.me(),
                    seq: self.metrics_seq,
                    time_unix: now_unix(),
                    load,
                    services,
                };
                self.obs.metrics(m.clone());
                let _ = reply.send(self.gossip(METRICS_TOPIC, signed::METRICS, &m));
            }
            Command::Attestation(envelope, reply) => {
                let _ = reply.send(self.announce(envelope));
            }
            Command::Services(reply) => {
                let _ = reply.send(self.obs.services(now_unix(), MAX_AGE_SECS));
            }
            Command::Nodes(reply) => {
                let _ = reply.send(
                    self.obs
                        .nodes
                        .iter()
                        .map(|(p, v)| (*p, v.clone()))
                        .collect(),
                );
            }
            Command::Delegate(task, replicas, reply) => self.delegate(task, replicas, reply),
            Command::InjectGossip(topic, bytes, reply) => {
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(gossipsub::IdentTopic::new(topic), bytes)
                    .map(|_| ())
                    .map_err(|e| MeshError::Network(format!("publish: {e}")));
                let _ = reply.send(r);
            }
            Command::InjectRecord(key, value, reply) => {
                let record = kad::Record::new(key, value);
                let r = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, Quorum::One)
                    .map(|_| ())
                    .map_err(|e| MeshError::Network(format!("put: {e:?}")));
                let _ = reply.send(r);
            }
            Command::RoutingTable(reply) => {
                let peers = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .kbuckets()
                    .flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
                    .collect();
                let _ = reply.send(peers);
            }
            Command::GetRecordRaw(key, reply) => {
                let q = self.swarm.behaviour_mut().kad.get_record(key);
                self.raw_queries.insert(q, (Instant::now(), false, reply));
            }
        }
    }

    fn status(&mut self) -> Status {
        let routing_table = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum();
        Status {
            peer_id: self.me(),
            listen: self.swarm.listeners().cloned().collect(),
            connected: self.swarm.connected_peers().copied().collect(),
            gossip_mesh: self
                .swarm
                .behaviour()
                .gossipsub
                .all_mesh_peers()
                .copied()
                .collect(),
            routing_table,
            kad_queries: self.swarm.behaviour_mut().kad.iter_queries().count(),
            connections_opened: self.connections_opened,
            connections_trimmed: self.connections_trimmed,
            placing: self
                .queries
                .values()
                .filter_map(|q| match q {
                    QueryFor::Place(s) | QueryFor::Closest(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            unplaced: self.unplaced.iter().cloned().collect(),
            published: self.local.values().map(|(r, _, _)| r.clone()).collect(),
            scores: self
                .scores
                .all()
                .map(|(p, s)| (p.to_string(), s.clone()))
                .collect(),
        }
    }

    fn gossip<T: Serialize>(
        &mut self,
        topic: &str,
        kind: signed::Kind,
        payload: &T,
    ) -> Result<(), MeshError> {
        let bytes = signed::seal(&self.key, kind, payload)
            .map_err(|e| MeshError::Invalid(e.to_string()))?;
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(gossipsub::IdentTopic::new(topic), bytes)
        {
            Ok(_) => Ok(()),
            // Alone for now: what was said still counts locally, and the next
            // report reaches the peers that join.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(()),
            Err(e) => Err(MeshError::Network(format!("publishing on {topic}: {e}"))),
        }
    }

    fn announce(&mut self, envelope: Vec<u8>) -> Result<(), MeshError> {
        let now = now_unix();
        if let Some(check) = &self.config.attestation_check {
            // The node's own envelope goes through the same verifier; what it
            // proves is what this node accepts tasks for.
            match check.check(&self.me(), &envelope, now) {
                Ok(r) => {
                    self.obs.attested(self.me(), r, now);
                    self.config.own_resources = Some(r);
                }
                Err(e) => {
                    return Err(MeshError::Invalid(format!(
                        "this node's attestation does not verify: {e}"
                    )))
                }
            }
        }
        self.own_attestation = Some(AttestationRef {
            sha256: hex::encode(signed_digest(&envelope)),
            time_unix: now,
        });
        self.attestation_seq += 1;
        let a = AttestationAnnounce {
            node: self.me(),
            seq: self.attestation_seq,
            time_unix: now,
            envelope: b64().encode(&envelope),
        };
        self.gossip(ATTESTATION_TOPIC, signed::ATTESTATION, &a)
    }

    fn publish(&mut self, offer: Offer) -> Result<ServiceRecord, MeshError> {
        offer.check().map_err(MeshError::Invalid)?;
        let ttl = offer.ttl_secs;
        let now = now_unix();
        let r = offer.into_record(self.me(), self.own_attestation.clone(), now);
        let bytes = r
            .seal(&self.key)
            .map_err(|e| MeshError::Invalid(e.to_string()))?;
        if !r.is_private() {
            self.put_own(&r, &bytes, ttl)?;
        } else if self
            .local
            .get(&r.service)
            .is_some_and(|(old, _, _)| !old.is_private())
        {
            // A record that turned private leaves the DHT.
            let me = self.me();
            let kad = &mut self.swarm.behaviour_mut().kad;
            kad.stop_providing(&record::provider_key(&r.service));
            kad.remove_record(&record::record_key(&r.service, &me));
        }
        self.local
            .insert(r.service.clone(), (r.clone(), bytes, ttl));
        Ok(r)
    }

    fn own_kad_record(&self, service: &str, bytes: &[u8], ttl: u64) -> kad::Record {
        let me = self.me();
        let mut record = kad::Record::new(record::record_key(service, &me), bytes.to_vec());
        record.publisher = Some(me);
        record.expires = Some(Instant::now() + Duration::from_secs(ttl));
        record
    }

    fn put_own(&mut self, r: &ServiceRecord, bytes: &[u8], ttl: u64) -> Result<(), MeshError> {
        let record = self.own_kad_record(&r.service, bytes, ttl);
        let kad = &mut self.swarm.behaviour_mut().kad;
        // Stored here first, so a lone node still answers for itself.
        kad.store_mut()
            .put(record.clone())
            .map_err(|e| MeshError::Network(format!("storing the record: {e:?}")))?;
        // The closest peers first, then the put (see `put_to_closest`):
        // libp2p's own put stores nothing when its search runs out of time.
        let closest = kad.get_closest_peers(record.key.to_vec());
        let provide = kad
            .start_providing(record::provider_key(&r.service))
            .map_err(|e| MeshError::Network(format!("providing: {e:?}")))?;
        // A new round: unplaced again only if its put or provide fails (a
        // success of one must not hide a failure of the other).
        self.unplaced.remove(&r.service);
        self.queries
            .insert(closest, QueryFor::Closest(r.service.clone()));
        self.queries
            .insert(provide, QueryFor::Place(r.service.clone()));
        Ok(())
    }

    /// Puts the own record of `service` on the closest peers a search
    /// found, even one that ran out of time: on a slow network those are
    /// the best holders known, where libp2p's `put_record` would store it
    /// nowhere. A majority of them must take it, so one reply does not end
    /// the put while the rest are still being dialed, and the record
    /// survives a share of its holders going down.
    fn put_to_closest(&mut self, service: &str, peers: Vec<PeerId>) {
        let Some((r, bytes, _)) = self.local.get(service).cloned() else {
            return; // unpublished meanwhile
        };
        if peers.is_empty() {
            self.unplaced.insert(service.to_string());
            eprintln!("xnode-mesh: {service}: no peer to put the record on yet; retrying");
            return;
        }
        let left = r.expires_unix.saturating_sub(now_unix());
        let record = self.own_kad_record(service, &bytes, left);
        let put = self.swarm.behaviour_mut().kad.put_record_to(
            record,
            peers.into_iter(),
            Quorum::Majority,
        );
        self.queries
            .insert(put, QueryFor::Place(service.to_string()));
    }

    /// Re-sign records past half their life, so they never lapse while
    /// their provider is up.
    fn republish(&mut self) {
        let now = now_unix();
        let stale: Vec<Offer> = self
            .local
            .values()
            .filter(|(r, _, ttl)| r.expires_unix.saturating_sub(now) < ttl / 2)
            .map(|(r, _, ttl)| Offer {
                service: r.service.clone(),
                version: r.version.clone(),
                endpoints: r.endpoints.clone(),
                visibility: r.visibility.clone(),
                needs: r.needs,
                ttl_secs: *ttl,
            })
            .collect();
        for offer in stale {
            let name = offer.service.clone();
            if let Err(e) = self.publish(offer) {
                eprintln!("xnode-mesh: republishing {name}: {e}");
            }
        }
        // Records the DHT has not taken yet: the same signed record again.
        for service in std::mem::take(&mut self.unplaced) {
            let Some((r, bytes, ttl)) = self.local.get(&service).cloned() else {
                continue;
            };
            if r.is_private() {
                continue;
            }
            let left = r.expires_unix.saturating_sub(now_unix()).min(ttl);
            if let Err(e) = self.put_own(&r, &bytes, left) {
                eprintln!("xnode-mesh: placing {service} again: {e}");
                self.unplaced.insert(service);
            }
        }
    }

    fn find(&mut self, service: String, reply: Reply<Result<Vec<ServiceRecord>, MeshError>>) {
        let id = self.id();
        let q = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(record::provider_key(&service));
        self.queries.insert(q, QueryFor::Providers(id));
        self.lookups.insert(
            id,
            Lookup {
                service,
                providers_done: false,
                pending: 0,
                asked: HashSet::new(),
                found: Vec::new(),
                reply,
            },
        );
    }

    fn on_providers(&mut self, lookup: u64, providers: impl IntoIterator<Item = PeerId>) {
        let me = self.me();
        let Some(l) = self.lookups.get_mut(&lookup) else {
            return;
        };
        for p in providers {
            if !l.asked.insert(p) || self.scores.is_banned(&p) {
                continue;
            }
            if p == me {
                if let Some((r, _, _)) = self
                    .local
                    .get(&l.service)
                    .filter(|(r, _, _)| !r.is_private())
                {
                    l.found.push(r.clone());
                }
                continue;
            }
            let q = self
                .swarm
                .behaviour_mut()
                .kad
                .get_record(record::record_key(&l.service, &p));
            l.pending += 1;
            self.queries.insert(q, QueryFor::Record(lookup, p));
        }
    }

    fn finish_lookup_if_done(&mut self, lookup: u64) {
        let done = self
            .lookups
            .get(&lookup)
            .is_some_and(|l| l.providers_done && l.pending == 0);
        if done {
            if let Some(mut l) = self.lookups.remove(&lookup) {
                l.found.sort_by_key(|r| r.provider);
                l.found.dedup_by_key(|r| r.provider);
                let _ = l.reply.send(Ok(l.found));
            }
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => self.inbound_kad(request),
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => {
                if let Some((started, found, _)) = self.raw_queries.get_mut(&id) {
                    if let QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(_))) = &result {
                        *found = true;
                        if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                            q.finish();
                        }
                    }
                    if step.last {
                        let elapsed = started.elapsed();
                        if let Some((_, found, reply)) = self.raw_queries.remove(&id) {
                            let _ = reply.send(Ok(LookupStats {
                                found,
                                requests: stats.num_requests(),
                                millis: elapsed.as_millis() as u64,
                            }));
                        }
                    }
                    return;
                }
                let Some(purpose) = self.queries.get(&id) else {
                    return;
                };
                match (purpose, result) {
                    (QueryFor::Providers(l), QueryResult::GetProviders(r)) => {
                        let l = *l;
                        if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = r {
                            self.on_providers(l, providers);
                        }
                        if step.last {
                            self.queries.remove(&id);
                            if let Some(x) = self.lookups.get_mut(&l) {
                                x.providers_done = true;
                            }
                            self.finish_lookup_if_done(l);
                        }
                    }
                    (QueryFor::Record(l, provider), QueryResult::GetRecord(r)) => {
                        let (l, provider) = (*l, *provider);
                        if let Ok(GetRecordOk::FoundRecord(found)) = r {
                            let checked = record::verify(
                                &found.record.value,
                                Some(&found.record.key),
                                now_unix(),
                            )
                            .and_then(|r| {
                                if r.provider == provider {
                                    Ok(r)
                                } else {
                                    Err(Rejected::Forged("record of another provider".into()))
                                }
                            });
                            match checked {
                                Ok(r) => {
                                    if let Some(x) = self.lookups.get_mut(&l) {
                                        x.found.push(r);
                                    }
                                    if let Some(mut q) =
                                        self.swarm.behaviour_mut().kad.query_mut(&id)
                                    {
                                        q.finish();
                                    }
                                }
                                Err(why) => {
                                    if let Some(from) = found.peer {
                                        self.penalize(from, &why);
                                    }
                                }
                            }
                        }
                        if step.last {
                            self.queries.remove(&id);
                            if let Some(x) = self.lookups.get_mut(&l) {
                                x.pending = x.pending.saturating_sub(1);
                            }
                            self.finish_lookup_if_done(l);
                        }
                    }
                    (QueryFor::Closest(service), QueryResult::GetClosestPeers(r)) => {
                        let service = service.clone();
                        if step.last {
                            self.queries.remove(&id);
                            let peers = match r {
                                Ok(ok) => ok.peers,
                                Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                            };
                            self.put_to_closest(
                                &service,
                                peers.into_iter().map(|p| p.peer_id).collect(),
                            );
                        }
                    }
                    (QueryFor::Place(service), result) => {
                        let failed = match &result {
                            QueryResult::PutRecord(Err(e)) => Some(format!("{e:?}")),
                            QueryResult::StartProviding(Err(e)) => Some(format!("{e:?}")),
                            _ => None,
                        };
                        let service = service.clone();
                        if let Some(why) = failed {
                            // Retried at the next republish tick.
                            if self.unplaced.insert(service.clone()) {
                                eprintln!(
                                    "xnode-mesh: {service}: the DHT did not take the record yet ({why}); retrying"
                                );
                            }
                        }
                        if step.last {
                            self.queries.remove(&id);
                        }
                    }
                    _ => {
                        if step.last {
                            self.queries.remove(&id);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Records and provider announcements from other peers are checked
    /// before they are stored.
    fn inbound_kad(&mut self, request: kad::InboundRequest) {
        match request {
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => match record::verify(&record.value, Some(&record.key), now_unix()) {
                Ok(_) => {
                    if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(record) {
                        eprintln!("xnode-mesh: record from {source} not stored: {e:?}");
                    }
                }
                Err(why) => self.penalize(source, &why),
            },
            kad::InboundRequest::AddProvider { record: Some(p) }
                if !self.scores.is_banned(&p.provider) =>
            {
                let _ = self.swarm.behaviour_mut().kad.store_mut().add_provider(p);
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let verdict: Result<bool, Rejected> = match message.topic.as_str() {
            METRICS_TOPIC => match self.gate.metrics(&message.data, now) {
                Verdict::Accept(m) => {
                    self.obs.metrics(m.payload);
                    Ok(true)
                }
                Verdict::Ignore(_) => Ok(false),
                Verdict::Reject(e) => Err(e),
            },
            ATTESTATION_TOPIC => match self.gate.attestation(&message.data, now) {
                Verdict::Accept(a) => self
                    .attestation_received(a.payload, now as u64)
                    .map(|_| true),
                Verdict::Ignore(_) => Ok(false),
                Verdict::Reject(e) => Err(e),
            },
            other => Err(Rejected::Malformed(format!("unknown topic {other}"))),
        };
        let acceptance = match &verdict {
            Ok(true) => gossipsub::MessageAcceptance::Accept,
            Ok(false) => gossipsub::MessageAcceptance::Ignore,
            Err(why) if why.objective() => gossipsub::MessageAcceptance::Reject,
            Err(_) => gossipsub::MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
        match verdict {
            Err(why) if why.objective() => self.penalize(source, &why),
            Err(why) => eprintln!("xnode-mesh: dropped gossip from {source}: {why}"),
            Ok(_) => {}
        }
    }

    fn attestation_received(&mut self, a: AttestationAnnounce, now: u64) -> Result<(), Rejected> {
        let envelope = b64()
            .decode(&a.envelope)
            .map_err(|e| Rejected::Malformed(format!("envelope base64: {e}")))?;
        let Some(check) = self.config.attestation_check.clone() else {
            // No verifier configured: forward it, credit nothing.
            return Ok(());
        };
        let resources = check
            .check(&a.node, &envelope, now)
            .map_err(Rejected::Attestation)?;
        self.obs.attested(a.node, resources, now);
        Ok(())
    }

    fn on_task_event(&mut self, event: request_response::Event<Request, Response>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.serve(peer, request, channel),
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(d) = self.requests.remove(&request_id) {
                    self.task_answered(d, request_id, peer, Ok(response));
                } else if let Some(Outbound(reply, provider, service)) =
                    self.describes.remove(&request_id)
                {
                    let _ = reply.send(Ok(self.described(provider, &service, response)));
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(d) = self.requests.remove(&request_id) {
                    self.task_answered(d, request_id, peer, Err(error.to_string()));
                } else if let Some(Outbound(reply, _, _)) = self.describes.remove(&request_id) {
                    let _ = reply.send(Err(MeshError::Network(format!("{peer}: {error}"))));
                }
            }
            _ => {}
        }
    }

    fn described(
        &mut self,
        provider: PeerId,
        service: &str,
        response: Response,
    ) -> Option<ServiceRecord> {
        let Response::Record { envelope: Some(e) } = response else {
            return None;
        };
        let checked = b64()
            .decode(&e)
            .map_err(|e| Rejected::Malformed(e.to_string()))
            .and_then(|bytes| signed::open::<ServiceRecord>(signed::SERVICE_RECORD, &bytes))
            .and_then(|o| {
                if o.signer != provider || o.payload.provider != provider {
                    Err(Rejected::Forged("a record of another provider".into()))
                } else if o.payload.service != service || o.payload.schema != record::SCHEMA {
                    Err(Rejected::Forged(format!(
                        "asked for {service:?}, got {:?}",
                        o.payload.service
                    )))
                } else if o.payload.expires_unix <= now_unix() {
                    Err(Rejected::Expired(
                        "the provider sent an expired record".into(),
                    ))
                } else {
                    Ok(o.payload)
                }
            });
        match checked {
            Ok(r) => Some(r),
            Err(why) => {
                self.penalize(provider, &why);
                None
            }
        }
    }

    fn serve(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        let response = match request {
            Request::Describe { service } => Response::Record {
                envelope: self
                    .local
                    .get(&service)
                    .filter(|(r, _, _)| r.allows(&peer))
                    .map(|(_, bytes, _)| b64().encode(bytes)),
            },
            Request::Run(task) => {
                let busy = self.serving.get(&peer).copied().unwrap_or(0);
                let refuse = if busy >= self.config.max_tasks_per_peer {
                    Some(format!("{busy} tasks of yours are already running here"))
                } else {
                    match self.config.own_resources {
                        Some(have) if !have.fits(&task.needs) => {
                            Some(format!("needs {:?}, this node has {have:?}", task.needs))
                        }
                        _ => None,
                    }
                };
                if let Some(reason) = refuse {
                    Response::Refused {
                        id: task.id,
                        reason,
                    }
                } else {
                    *self.serving.entry(peer).or_default() += 1;
                    let executor = self.config.executor.clone();
                    let done = self.done_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let response = match executor.run(&task.kind, &task.input) {
                            Ok(output) => Response::Done {
                                id: task.id,
                                output,
                            },
                            Err(reason) => Response::Refused {
                                id: task.id,
                                reason,
                            },
                        };
                        let _ = done.blocking_send((peer, channel, response));
                    });
                    return;
                }
            }
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .tasks
            .send_response(channel, response);
    }

    fn delegate(
        &mut self,
        task: Task,
        replicas: usize,
        reply: Reply<Result<Delegated, MeshError>>,
    ) {
        let mut exclude: Vec<PeerId> = vec![self.me()];
        exclude.extend(self.scores.all().filter(|(_, s)| s.banned).map(|(p, _)| *p));
        let fresh_since = now_unix().saturating_sub(delegate::MAX_SILENCE_SECS);
        let ranked = delegate::rank(
            self.obs
                .nodes
                .iter()
                .filter(|(_, v)| v.last_heard() >= fresh_since),
            &task.needs,
            &exclude,
            &self.in_flight,
        );
        if ranked.len() < replicas {
            let _ = reply.send(Err(MeshError::Delegation(format!(
                "{} node(s) with verified attestations fit {:?}; {replicas} needed",
                ranked.len(),
                task.needs
            ))));
            return;
        }
        // A node a task recently failed to reach goes last: its metrics may
        // outlive it by up to MAX_SILENCE_SECS, and every task would
        // otherwise wait on it first.
        self.unreachable
            .retain(|_, at| at.elapsed() < delegate::UNREACHABLE_FOR);
        let mut queue: Vec<PeerId> = ranked.into_iter().map(|c| c.peer).collect();
        queue.sort_by_key(|p| self.unreachable.contains_key(p));
        let id = self.id();
        let mut d = Delegation {
            task,
            replicas,
            queue: queue.into(),
            pending: HashMap::new(),
            answers: Vec::new(),
            outputs: HashMap::new(),
            assignments: Vec::new(),
            reassigned: 0,
            reply: Some(reply),
        };
        for _ in 0..replicas {
            self.assign_next(id, &mut d);
        }
        self.delegations.insert(id, d);
    }

    fn assign_next(&mut self, id: u64, d: &mut Delegation) -> bool {
        let Some(peer) = d.queue.pop_front() else {
            return false;
        };
        let rid = self
            .swarm
            .behaviour_mut()
            .tasks
            .send_request(&peer, Request::Run(d.task.clone()));
        let deadline = Instant::now() + Duration::from_millis(d.task.deadline_ms);
        d.pending.insert(rid, (peer, deadline));
        *self.in_flight.entry(peer).or_default() += 1;
        self.requests.insert(rid, id);
        true
    }

    fn task_answered(
        &mut self,
        id: u64,
        rid: OutboundRequestId,
        peer: PeerId,
        result: Result<Response, String>,
    ) {
        let Some(mut d) = self.delegations.remove(&id) else {
            return;
        };
        if d.pending.remove(&rid).is_none() {
            self.delegations.insert(id, d);
            return;
        }
        if let Some(n) = self.in_flight.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
        let outcome = match result {
            Ok(Response::Done { output, .. }) => {
                let digest = delegate::output_digest(&output);
                d.answers.push((peer, digest.clone()));
                d.outputs.insert(digest.clone(), output);
                AssignmentOutcome::Answered {
                    output_sha256: digest,
                }
            }
            Ok(Response::Refused { reason, .. }) => AssignmentOutcome::Refused { reason },
            Ok(Response::Record { .. }) => AssignmentOutcome::Failed {
                reason: "answered a task with a record".into(),
            },
            Err(reason) => {
                self.unreachable.insert(peer, Instant::now());
                AssignmentOutcome::Failed { reason }
            }
        };
        if matches!(outcome, AssignmentOutcome::Answered { .. }) {
            self.unreachable.remove(&peer);
        }
        let failed = !matches!(outcome, AssignmentOutcome::Answered { .. });
        d.assignments.push(Assignment { peer, outcome });
        if failed && self.assign_next(id, &mut d) {
            d.reassigned += 1;
        }
        self.settle(id, d);
    }

    /// Answer the requester once every replica answered or nobody is left
    /// to ask; otherwise keep waiting.
    fn settle(&mut self, id: u64, mut d: Delegation) {
        if d.answers.len() < d.replicas && !d.pending.is_empty() {
            self.delegations.insert(id, d);
            return;
        }
        for rid in d.pending.keys() {
            self.requests.remove(rid);
        }
        let result = match delegate::majority(&d.answers, d.replicas) {
            Ok(winner) => {
                let (agreeing, dissenting): (Vec<_>, Vec<_>) =
                    d.answers.iter().partition(|(_, a)| *a == winner);
                let dissenting: Vec<PeerId> = dissenting.into_iter().map(|(p, _)| *p).collect();
                for p in &dissenting {
                    self.penalize(
                        *p,
                        &Rejected::Forged(format!(
                            "task {}: an answer the majority refuted",
                            d.task.id
                        )),
                    );
                }
                Ok(Delegated {
                    task: d.task.id.clone(),
                    output: d.outputs.remove(&winner).unwrap_or_default(),
                    agreeing: agreeing.into_iter().map(|(p, _)| *p).collect(),
                    dissenting,
                    reassigned: d.reassigned,
                    assignments: std::mem::take(&mut d.assignments),
                })
            }
            Err(why) => Err(MeshError::Delegation(format!(
                "task {}: {why}; assignments: {}",
                d.task.id,
                serde_json::to_string(&d.assignments).unwrap_or_default()
            ))),
        };
        if let Some(reply) = d.reply.take() {
            let _ = reply.send(result);
        }
    }

    /// Assignments past their deadline fail and move to the next node.
    fn expire_assignments(&mut self) {
        let now = Instant::now();
        let late: Vec<(u64, OutboundRequestId, PeerId)> = self
            .delegations
            .iter()
            .flat_map(|(id, d)| {
                d.pending
                    .iter()
                    .filter(|(_, (_, deadline))| *deadline <= now)
                    .map(|(rid, (peer, _))| (*id, *rid, *peer))
            })
            .collect();
        for (id, rid, peer) in late {
            self.requests.remove(&rid);
            self.task_answered(id, rid, peer, Err("no answer before the deadline".into()));
        }
    }

    /// Close the oldest idle connections when above the high watermark
    /// (see `trim`). Kept: the gossipsub mesh and peers with work in flight.
    fn trim_connections(&mut self) {
        let mut busy: HashSet<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_mesh_peers()
            .copied()
            .collect();
        busy.extend(
            self.in_flight
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(p, _)| *p),
        );
        busy.extend(
            self.serving
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(p, _)| *p),
        );
        busy.extend(self.describes.values().map(|o| o.1));
        let close = self.config.watermarks.select(
            &self.connected_since,
            |p| busy.contains(p),
            Instant::now(),
        );
        for peer in close {
            if self.swarm.disconnect_peer_id(peer).is_ok() {
                self.connections_trimmed += 1;
            }
        }
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.connections_opened += 1;
                self.connected_since
                    .entry(peer_id)
                    .or_insert_with(Instant::now);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connected_since.remove(&peer_id);
            }
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                if let Some(reply) = self.listeners.remove(&listener_id) {
                    let _ = reply.send(Ok(address));
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some(reply) = self.listeners.remove(&listener_id) {
                    let _ = reply.send(Err(MeshError::Network(error.to_string())));
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(reply) = self.listeners.remove(&listener_id) {
                    let why = reason.err().map_or("closed".to_string(), |e| e.to_string());
                    let _ = reply.send(Err(MeshError::Network(why)));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Tasks(e)) => self.on_task_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    let _ = self.swarm.dial(addr);
                }
            }
            _ => {}
        }
    }
}

/// Kademlia's replication factor, for the docs and the simulation.
pub fn replication_factor() -> NonZeroUsize {
    kad::K_VALUE
}
