//! kubo (IPFS): the `settings` of a `kubo` service, the patch the agent
//! applies to the repository's `config` after `ipfs init`, and the kind's
//! health check over kubo's RPC (`id`, `swarm/peers`, `repo/stat`).
//!
//! The RPC calls go through the thin typed client below (`Rpc`, over
//! reqwest), not through ipfs-api-backend-hyper 0.6: that crate's `id` and
//! `swarm peers` responses no longer deserialize from current kubo and its
//! repo stat (`stats_repo`) drops `StorageMax` (docs/kubo.md, and the
//! `contract_` test that shows it).

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::health::{KindMetrics, KindReport};

/// The `settings` of a `kubo` service (docs/kubo.md has the table).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The repository (`IPFS_PATH`) that `ipfs init` made.
    #[serde(default = "default_repo")]
    pub repo: PathBuf,
    /// `Addresses.API`: where the RPC API listens; loopback only.
    #[serde(default = "default_api")]
    pub api: String,
    /// `Addresses.Gateway`: where the HTTP gateway listens; loopback only.
    #[serde(default = "default_gateway")]
    pub gateway: String,
    /// `Addresses.Swarm`: the libp2p listeners.
    #[serde(default = "default_swarm")]
    pub swarm: Vec<String>,
    /// `Bootstrap`: peers to dial first, each ending in `/p2p/<peer ID>`.
    /// Empty by default: no public bootstrap unless listed.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// `Datastore.StorageMax`, in kubo's size syntax ("100GB", "1.5TiB").
    #[serde(default = "default_storage_max")]
    pub storage_max: String,
    /// Fewer connected swarm peers than this is unhealthy.
    #[serde(default)]
    pub min_peers: u64,
    /// Anything else, deep-merged into kubo's config after the fields above.
    #[serde(default)]
    pub config: Map<String, Value>,
}

fn default_repo() -> PathBuf {
    PathBuf::from("/var/lib/ipfs")
}
fn default_api() -> String {
    "/ip4/127.0.0.1/tcp/5001".into()
}
fn default_gateway() -> String {
    "/ip4/127.0.0.1/tcp/8080".into()
}
fn default_swarm() -> Vec<String> {
    vec![
        "/ip4/0.0.0.0/tcp/4001".into(),
        "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
    ]
}
/// kubo's own default (config/init.go), so a fresh repo is left as is.
fn default_storage_max() -> String {
    "10GB".into()
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            repo: default_repo(),
            api: default_api(),
            gateway: default_gateway(),
            swarm: default_swarm(),
            bootstrap: Vec::new(),
            storage_max: default_storage_max(),
            min_peers: 0,
            config: Map::new(),
        }
    }
}

/// The config fields the typed settings own, and the setting that owns each:
/// `config` may not set them (it would bypass their checks).
const OWNED: &[(&str, &str, &str)] = &[
    ("Addresses", "API", "api"),
    ("Addresses", "Gateway", "gateway"),
    ("Addresses", "Swarm", "swarm"),
    ("Datastore", "StorageMax", "storage_max"),
];

impl Settings {
    /// Parse a service's `settings`; problems are (field, message), the
    /// field relative to `settings`.
    pub fn parse(map: &Map<String, Value>) -> Result<Settings, Vec<(String, String)>> {
        let s: Settings = crate::manifest::settings_from_map(map)?;
        s.validate()?;
        Ok(s)
    }

    /// Every problem with these settings, as (field, message).
    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut p: Vec<(String, String)> = Vec::new();
        if !self.repo.is_absolute() {
            p.push(("repo".into(), "must be an absolute path".into()));
        }
        let api = loopback_listener(
            &self.api,
            "the RPC API grants admin access to the node (keys and config)",
        )
        .map_err(|m| p.push(("api".into(), m)))
        .ok();
        let gateway = loopback_listener(
            &self.gateway,
            "the gateway fetches any CID it is asked for; publish it through a reverse proxy",
        )
        .map_err(|m| p.push(("gateway".into(), m)))
        .ok();
        if api.is_some() && api == gateway {
            p.push(("gateway".into(), "is the same address as api".into()));
        }
        check_list(&self.swarm, "swarm", swarm_listener, &mut p);
        check_list(&self.bootstrap, "bootstrap", bootstrap_peer, &mut p);
        match parse_size(&self.storage_max) {
            Ok(0) => p.push((
                "storage_max".into(),
                "is 0 bytes: the repo would always be full".into(),
            )),
            Ok(_) => {}
            Err(m) => p.push(("storage_max".into(), m)),
        }
        check_overrides(&self.config, &mut p);
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    }
}

fn check_list(
    list: &[String],
    field: &str,
    check: fn(&str) -> Result<(), String>,
    p: &mut Vec<(String, String)>,
) {
    for (i, a) in list.iter().enumerate() {
        if let Err(m) = check(a) {
            p.push((format!("{field}[{i}]"), m));
        } else if list[..i].contains(a) {
            p.push((format!("{field}[{i}]"), format!("`{a}` is listed twice")));
        }
    }
}

fn check_overrides(config: &Map<String, Value>, p: &mut Vec<(String, String)>) {
    if config.contains_key("Identity") {
        p.push((
            "config.Identity".into(),
            "the node's identity is made once by `ipfs init` and never patched \
             (rotate it with `ipfs key rotate`)"
                .into(),
        ));
    }
    if config.contains_key("Bootstrap") {
        p.push((
            "config.Bootstrap".into(),
            "is set by `bootstrap`; list the peers there".into(),
        ));
    }
    for (parent, field, setting) in OWNED {
        match config.get(*parent) {
            Some(Value::Object(o)) if o.contains_key(*field) => p.push((
                format!("config.{parent}.{field}"),
                format!("is set by `{setting}`, where it is checked; set it there"),
            )),
            Some(Value::Object(_)) | None => {}
            Some(_) => p.push((
                format!("config.{parent}"),
                format!("must be an object: it holds {parent}.{field}, which `{setting}` sets"),
            )),
        }
    }
}

/// `/ip4/127.x.y.z/tcp/P` or `/ip6/::1/tcp/P`, port not 0.
fn loopback_listener(s: &str, why: &str) -> Result<SocketAddr, String> {
    use multiaddr::Part;
    let parts = multiaddr::parse(s)?;
    let (ip, port) = match parts.as_slice() {
        [Part::Ip4(ip), Part::Tcp(port)] => (IpAddr::V4(*ip), *port),
        [Part::Ip6(ip), Part::Tcp(port)] => (IpAddr::V6(*ip), *port),
        [Part::Unix(_)] => {
            return Err(format!(
                "`{s}`: a unix socket is not supported here; the agent checks kubo over TCP"
            ))
        }
        _ => {
            return Err(format!(
                "`{s}` is not /ip4/127.0.0.1/tcp/PORT or /ip6/::1/tcp/PORT"
            ))
        }
    };
    if !ip.is_loopback() {
        return Err(format!(
            "`{s}` is not loopback: {why}; use 127.0.0.1 or ::1"
        ));
    }
    if port == 0 {
        return Err(format!(
            "`{s}`: port 0 picks a port at random; the agent must know where to connect"
        ));
    }
    Ok(SocketAddr::new(ip, port))
}

/// A swarm listener: an address, then tcp or udp with a transport on top.
fn swarm_listener(s: &str) -> Result<(), String> {
    use multiaddr::Part;
    let parts = multiaddr::parse(s)?;
    if !matches!(
        parts.first(),
        Some(Part::Ip4(_) | Part::Ip6(_) | Part::Dns("dns" | "dns4" | "dns6", _))
    ) {
        return Err(format!(
            "`{s}` must start with /ip4, /ip6, /dns, /dns4 or /dns6"
        ));
    }
    if parts.iter().any(|p| matches!(p, Part::P2p(_))) {
        return Err(format!("`{s}`: a listen address carries no /p2p/ peer ID"));
    }
    if parts.contains(&Part::Bare("quic")) {
        return Err(format!(
            "`{s}`: /quic (draft-29) was removed in go-libp2p 0.30; use /quic-v1"
        ));
    }
    match parts.get(1) {
        Some(Part::Tcp(_)) => Ok(()),
        Some(Part::Udp(_))
            if matches!(parts.get(2), Some(Part::Bare("quic-v1" | "webrtc-direct"))) =>
        {
            Ok(())
        }
        Some(Part::Udp(_)) => Err(format!(
            "`{s}`: a UDP listener needs a transport after the port: /quic-v1 or /webrtc-direct"
        )),
        _ => Err(format!(
            "`{s}` needs /tcp/PORT or /udp/PORT after the address"
        )),
    }
}

/// A bootstrap peer: an address ending in `/p2p/<peer ID>`.
fn bootstrap_peer(s: &str) -> Result<(), String> {
    use multiaddr::Part;
    if s == "auto" {
        return Err(
            "`auto` pulls the public IPFS bootstrappers through kubo's AutoConf; \
             list the peers to bootstrap from instead"
                .into(),
        );
    }
    let parts = multiaddr::parse(s)?;
    let Some((Part::P2p(_), head)) = parts.split_last() else {
        return Err(format!("`{s}` must end with /p2p/<peer ID>"));
    };
    if head.iter().any(|p| matches!(p, Part::P2p(_))) {
        return Err(format!("`{s}` names more than one peer"));
    }
    match head {
        [Part::Dns("dnsaddr", _)] => Ok(()),
        [Part::Ip4(_) | Part::Ip6(_) | Part::Dns(..), _, ..] => Ok(()),
        [] | [_] => Err(format!(
            "`{s}` needs an address and a transport (e.g. /ip4/A/tcp/4001) before /p2p/"
        )),
        _ => Err(format!(
            "`{s}` must start with /ip4, /ip6, /dns* or /dnsaddr"
        )),
    }
}

/// kubo's size syntax, as go-humanize's `ParseBytes` reads it: a decimal
/// number (`,` separators allowed) then an optional SI or IEC unit.
fn parse_size(s: &str) -> Result<u64, String> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(s.len());
    let number: String = s[..end].chars().filter(|c| *c != ',').collect();
    let bad = || format!("`{s}` is not a size like \"100GB\" or \"1.5TiB\"");
    let n: f64 = number.parse().map_err(|_| bad())?;
    let unit: u64 = match s[end..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        "p" | "pb" => 1_000_000_000_000_000,
        "pi" | "pib" => 1 << 50,
        "e" | "eb" => 1_000_000_000_000_000_000,
        "ei" | "eib" => 1 << 60,
        _ => return Err(bad()),
    };
    let bytes = n * unit as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("`{s}` is too large"));
    }
    // Truncation, as go-humanize does.
    Ok(bytes as u64)
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

// ---------------------------------------------------------------------------
// configure: patch <repo>/config

/// One field that `configure` changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Dotted path in kubo's config, e.g. `Addresses.API`.
    pub field: String,
    /// `None`: the field was absent.
    pub old: Option<Value>,
    pub new: Value,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.old {
            Some(old) => write!(f, "{}: {old} → {}", self.field, self.new),
            None => write!(f, "{}: (absent) → {}", self.field, self.new),
        }
    }
}

/// What `configure` did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigureReport {
    /// `<repo>/config`.
    pub path: PathBuf,
    /// Empty when the config already matched: nothing was written.
    pub changes: Vec<Change>,
}

impl fmt::Display for ConfigureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return write!(f, "{}: unchanged", self.path.display());
        }
        write!(f, "{}: ", self.path.display())?;
        for (i, c) in self.changes.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{c}")?;
        }
        Ok(())
    }
}

/// Why `configure` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("invalid kubo settings: {}", list(.0))]
    Settings(Vec<(String, String)>),
    #[error(
        "no kubo repository at {}: {} is missing; run `IPFS_PATH={} ipfs init --profile server` \
         first (the ipfs service's ExecStartPre does this)",
        .repo.display(), .repo.join("config").display(), .repo.display()
    )]
    NoRepo { repo: PathBuf },
    #[error("reading {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not JSON ({source}); left untouched", .path.display())]
    NotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {field} is not a JSON object; left untouched", .path.display())]
    NotObject { path: PathBuf, field: String },
    #[error("writing {}: {source}; the old config is still in place", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn list(problems: &[(String, String)]) -> String {
    let items: Vec<String> = problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    items.join("; ")
}

/// Patch `<repo>/config` (made by `ipfs init`) to these settings: the
/// addresses, `Bootstrap`, `Datastore.StorageMax`, then `config` deep-merged.
/// Every other field (`Identity` above all) keeps its value. The file is
/// replaced atomically, with its mode and owner, and only when a value
/// changed. kubo reads its config at start: restart it to apply.
pub fn configure(s: &Settings) -> Result<ConfigureReport, ConfigureError> {
    s.validate().map_err(ConfigureError::Settings)?;
    let path = s.repo.join("config");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigureError::NoRepo {
                repo: s.repo.clone(),
            })
        }
        Err(source) => return Err(ConfigureError::Read { path, source }),
    };
    let old: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(source) => return Err(ConfigureError::NotJson { path, source }),
    };
    let mut new = old.clone();
    if let Err(field) = patch(&mut new, s) {
        return Err(ConfigureError::NotObject { path, field });
    }
    let mut changes = Vec::new();
    diff(&old, &new, "", &mut changes);
    if !changes.is_empty() {
        // Two-space indent, as kubo writes it (json.MarshalIndent).
        let text = match serde_json::to_vec_pretty(&new) {
            Ok(t) => t,
            Err(e) => {
                return Err(ConfigureError::Write {
                    path,
                    source: std::io::Error::other(e),
                })
            }
        };
        if let Err(source) = replace_file(&path, &text) {
            return Err(ConfigureError::Write { path, source });
        }
    }
    Ok(ConfigureReport { path, changes })
}

/// Apply the settings to a parsed config; `Err(field)` when a field that
/// must be an object is not.
fn patch(config: &mut Value, s: &Settings) -> Result<(), String> {
    let root = config
        .as_object_mut()
        .ok_or_else(|| "the top level".to_string())?;
    let addresses = object_at(root, "Addresses")?;
    addresses.insert("API".into(), Value::String(s.api.clone()));
    addresses.insert("Gateway".into(), Value::String(s.gateway.clone()));
    addresses.insert("Swarm".into(), strings(&s.swarm));
    root.insert("Bootstrap".into(), strings(&s.bootstrap));
    let datastore = object_at(root, "Datastore")?;
    datastore.insert("StorageMax".into(), Value::String(s.storage_max.clone()));
    merge(config, &Value::Object(s.config.clone()));
    Ok(())
}

fn strings(list: &[String]) -> Value {
    Value::Array(list.iter().cloned().map(Value::String).collect())
}

fn object_at<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, String> {
    m.entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| key.to_string())
}

/// Deep merge: objects merge key by key; anything else (arrays, null
/// included) replaces what was there.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The leaves of `new` that differ from `old` (objects are walked, arrays
/// compared whole). Patching never removes a field, so `new`'s keys suffice.
fn diff(old: &Value, new: &Value, path: &str, out: &mut Vec<Change>) {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => diff(ov, nv, &at(k), out),
                    None => out.push(Change {
                        field: at(k),
                        old: None,
                        new: nv.clone(),
                    }),
                }
            }
        }
        _ if old != new => out.push(Change {
            field: path.to_string(),
            old: Some(old.clone()),
            new: new.clone(),
        }),
        _ => {}
    }
}

/// Replace `path` with `bytes` atomically: a temporary file beside it with
/// the same mode and owner (kubo, running as its own user, must still read
/// it), synced, renamed over it, and the directory synced.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let meta = std::fs::metadata(path)?;
    let mode = meta.mode() & 0o7777;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".config.xnode-{}.tmp", std::process::id()));
    // A leftover from a crash is removed; create_new then refuses to follow
    // anything planted in its place.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        let mine = f.metadata()?;
        if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
        }
        // After the chown (which may clear bits) and past the umask.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

// ---------------------------------------------------------------------------
// Health

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
enum CallError {
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
struct Rpc {
    api: SocketAddr,
    http: reqwest::Client,
}

impl Rpc {
    fn new(api: SocketAddr) -> Result<Rpc, String> {
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
        let sep = if query.is_empty() { "" } else { "?" };
        let url = format!("http://{}/api/v0/{endpoint}{sep}{query}", self.api);
        let mut answer = self
            .http
            .post(url)
            .send()
            .await
            .map_err(|e| self.failed(endpoint, &e))?;
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

// ---------------------------------------------------------------------------

/// Multiaddrs (github.com/multiformats/multiaddr), the text form, for the
/// protocols kubo's addresses use. Parsed here rather than with the
/// `multiaddr` crate, which is not a direct dependency.
mod multiaddr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Part {
        Ip4(Ipv4Addr),
        Ip6(Ipv6Addr),
        /// dns, dns4, dns6 or dnsaddr, and the name.
        Dns(&'static str, String),
        Tcp(u16),
        Udp(u16),
        P2p(String),
        Unix(String),
        /// A protocol without a value: quic-v1, ws, tls, ...
        Bare(&'static str),
        /// Any other protocol with a value (ipcidr, certhash, sni, ...).
        Valued(&'static str, String),
    }

    const BARE: &[&str] = &[
        "quic",
        "quic-v1",
        "webtransport",
        "webrtc",
        "webrtc-direct",
        "ws",
        "wss",
        "tls",
        "noise",
        "http",
        "https",
        "p2p-circuit",
        "utp",
        "udt",
    ];
    const DNS: &[&str] = &["dns", "dns4", "dns6", "dnsaddr"];
    const VALUED: &[&str] = &[
        "ipcidr",
        "ip6zone",
        "certhash",
        "sni",
        "http-path",
        "dccp",
        "sctp",
    ];

    pub(super) fn parse(s: &str) -> Result<Vec<Part>, String> {
        let Some(rest) = s.strip_prefix('/') else {
            return Err(format!("`{s}` is not a multiaddr: it must start with /"));
        };
        let mut segments = rest.split('/');
        let mut parts = Vec::new();
        while let Some(name) = segments.next() {
            if name.is_empty() {
                return Err(format!("`{s}` has an empty component"));
            }
            if name == "unix" {
                // The path is the rest of the address.
                let path: Vec<&str> = segments.by_ref().collect();
                if path.is_empty() || path.iter().all(|p| p.is_empty()) {
                    return Err(format!("`{s}`: /unix needs a path"));
                }
                parts.push(Part::Unix(format!("/{}", path.join("/"))));
                break;
            }
            if let Some(b) = BARE.iter().find(|b| **b == name) {
                parts.push(Part::Bare(b));
                continue;
            }
            let Some(value) = segments.next().filter(|v| !v.is_empty()) else {
                return Err(if known(name) {
                    format!("`{s}`: /{name} needs a value")
                } else {
                    format!("`{s}`: unknown protocol /{name}")
                });
            };
            let bad = |what: &str| format!("`{s}`: `{value}` is not {what}");
            parts.push(match name {
                "ip4" => Part::Ip4(value.parse().map_err(|_| bad("an IPv4 address"))?),
                "ip6" => Part::Ip6(value.parse().map_err(|_| bad("an IPv6 address"))?),
                "tcp" => Part::Tcp(value.parse().map_err(|_| bad("a port"))?),
                "udp" => Part::Udp(value.parse().map_err(|_| bad("a port"))?),
                "p2p" | "ipfs" => {
                    super::peer_id::check(value).map_err(|m| format!("`{s}`: {m}"))?;
                    Part::P2p(value.to_string())
                }
                _ => {
                    if let Some(d) = DNS.iter().find(|d| **d == name) {
                        if !hostname(value) {
                            return Err(bad("a DNS name"));
                        }
                        Part::Dns(d, value.to_string())
                    } else if let Some(v) = VALUED.iter().find(|v| **v == name) {
                        Part::Valued(v, value.to_string())
                    } else {
                        return Err(format!("`{s}`: unknown protocol /{name}"));
                    }
                }
            });
        }
        if parts.is_empty() {
            return Err(format!("`{s}` is empty"));
        }
        Ok(parts)
    }

    fn known(name: &str) -> bool {
        ["ip4", "ip6", "tcp", "udp", "p2p", "ipfs"].contains(&name)
            || DNS.contains(&name)
            || VALUED.contains(&name)
    }

    fn hostname(s: &str) -> bool {
        s.len() <= 253
            && s.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }
}

/// libp2p peer IDs (libp2p specs, peer-ids): a base58btc multihash
/// (`Qm…`, `12D3Koo…`) or a CIDv1 with the libp2p-key codec in multibase
/// (`bafz…` base32, `k51…` base36, `z…` base58btc).
mod peer_id {
    const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    const LIBP2P_KEY: u64 = 0x72;

    pub(super) fn check(s: &str) -> Result<(), String> {
        multihash(s).map(drop)
    }

    /// The peer ID's multihash bytes.
    pub(super) fn multihash(s: &str) -> Result<Vec<u8>, String> {
        let bad = |why: &str| format!("`{s}` is not a peer ID: {why}");
        if s.starts_with("Qm") || s.starts_with('1') {
            let mh = base_n(s, BASE58).ok_or_else(|| bad("not base58"))?;
            check_multihash(&mh).map_err(|m| bad(&m))?;
            return Ok(mh);
        }
        let (prefix, rest) = s.split_at(s.chars().next().map_or(0, char::len_utf8));
        let cid = match prefix {
            "b" => base32(rest),
            "k" => base_n(rest, BASE36),
            "z" => base_n(rest, BASE58),
            _ => return Err(bad("neither a base58 multihash nor a CID")),
        }
        .ok_or_else(|| bad("bad multibase text"))?;
        let (version, rest) = varint(&cid).ok_or_else(|| bad("truncated CID"))?;
        let (codec, mh) = varint(rest).ok_or_else(|| bad("truncated CID"))?;
        if version != 1 || codec != LIBP2P_KEY {
            return Err(bad("not a CIDv1 with the libp2p-key codec"));
        }
        check_multihash(mh).map_err(|m| bad(&m))?;
        Ok(mh.to_vec())
    }

    /// sha2-256 (RSA and large keys) or identity (keys of 42 bytes or less).
    fn check_multihash(mh: &[u8]) -> Result<(), String> {
        let (code, rest) = varint(mh).ok_or("truncated multihash")?;
        let (len, digest) = varint(rest).ok_or("truncated multihash")?;
        if len != digest.len() as u64 {
            return Err("the multihash length does not match".into());
        }
        match (code, len) {
            (0x12, 32) => Ok(()),
            (0x00, 1..=42) => Ok(()),
            (0x12 | 0x00, _) => Err(format!("a digest of {len} bytes")),
            _ => Err(format!(
                "multihash code {code:#x} is not sha2-256 or identity"
            )),
        }
    }

    /// An unsigned LEB128 varint and what follows it.
    fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
        let mut v: u64 = 0;
        for (i, byte) in b.iter().enumerate().take(9) {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((v, &b[i + 1..]));
            }
        }
        None
    }

    /// Big-number base conversion (base58btc, base36): leading zero digits
    /// are leading zero bytes.
    fn base_n(s: &str, alphabet: &[u8]) -> Option<Vec<u8>> {
        if s.is_empty() {
            return None;
        }
        let base = alphabet.len() as u32;
        let mut bytes: Vec<u8> = Vec::new(); // little-endian
        for c in s.bytes() {
            let mut carry = alphabet.iter().position(|a| *a == c)? as u32;
            for b in bytes.iter_mut() {
                carry += u32::from(*b) * base;
                *b = (carry & 0xff) as u8;
                carry >>= 8;
            }
            while carry > 0 {
                bytes.push((carry & 0xff) as u8);
                carry >>= 8;
            }
        }
        let zeros = s.bytes().take_while(|c| *c == alphabet[0]).count();
        bytes.extend(std::iter::repeat_n(0, zeros));
        bytes.reverse();
        Some(bytes)
    }

    /// RFC 4648 base32, lower case, no padding.
    fn base32(s: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in s.bytes() {
            acc = (acc << 5) | BASE32.iter().position(|a| *a == c)? as u32;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<Settings, Vec<(String, String)>> {
        Settings::parse(v.as_object().unwrap())
    }

    fn problems(v: serde_json::Value) -> Vec<(String, String)> {
        parse(v).unwrap_err()
    }

    fn field_says(v: serde_json::Value, field: &str, says: &str) {
        let p = problems(v);
        assert!(
            p.iter().any(|(f, m)| f == field && m.contains(says)),
            "wanted {field}: …{says}…, got {p:?}"
        );
    }

    #[test]
    fn defaults_are_documented_and_valid() {
        let s = parse(serde_json::json!({})).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.repo, Path::new("/var/lib/ipfs"));
        assert_eq!(s.api, "/ip4/127.0.0.1/tcp/5001");
        assert_eq!(s.gateway, "/ip4/127.0.0.1/tcp/8080");
        assert_eq!(
            s.swarm,
            ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
        );
        assert!(s.bootstrap.is_empty());
        assert_eq!(s.storage_max, "10GB");
        assert_eq!(s.min_peers, 0);
        assert!(s.config.is_empty());
    }

    #[test]
    fn unknown_fields_and_wrong_types_point_at_the_field() {
        let p =
            problems(serde_json::json!({"api": "/ip4/127.0.0.1/tcp/5001", "storagemax": "1GB"}));
        assert!(p[0].1.contains("unknown field `storagemax`"), "{p:?}");
        let p = problems(serde_json::json!({"swarm": ["/ip4/0.0.0.0/tcp/4001", 7]}));
        assert_eq!(p[0].0, "swarm[1]", "{p:?}");
    }

    #[test]
    fn api_and_gateway_must_be_loopback_tcp() {
        field_says(
            serde_json::json!({"api": "/ip4/0.0.0.0/tcp/5001"}),
            "api",
            "not loopback",
        );
        field_says(
            serde_json::json!({"api": "/ip4/10.0.0.5/tcp/5001"}),
            "api",
            "admin access",
        );
        field_says(
            serde_json::json!({"gateway": "/ip6/::/tcp/8080"}),
            "gateway",
            "not loopback",
        );
        field_says(
            serde_json::json!({"api": "/dns/localhost/tcp/5001"}),
            "api",
            "/ip4/127.0.0.1/tcp/PORT",
        );
        field_says(
            serde_json::json!({"api": "/ip4/127.0.0.1/tcp/0"}),
            "api",
            "port 0",
        );
        field_says(
            serde_json::json!({"api": "/unix/run/ipfs.sock"}),
            "api",
            "unix socket",
        );
        field_says(
            serde_json::json!({"api": "/ip4/127.0.0.1/tcp/5001/http"}),
            "api",
            "is not /ip4",
        );
        field_says(
            serde_json::json!({"gateway": "/ip4/127.0.0.1/tcp/5001"}),
            "gateway",
            "same address as api",
        );
        let s = parse(
            serde_json::json!({"api": "/ip6/::1/tcp/5001", "gateway": "/ip4/127.0.0.2/tcp/8081"}),
        )
        .unwrap();
        assert_eq!(
            loopback_listener(&s.api, "").unwrap(),
            "[::1]:5001".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn swarm_listeners_are_parsed() {
        for ok in [
            "/ip4/0.0.0.0/tcp/4001",
            "/ip6/::/tcp/4001",
            "/ip4/0.0.0.0/udp/4001/quic-v1",
            "/ip4/0.0.0.0/udp/4001/quic-v1/webtransport",
            "/ip6/::/udp/4001/webrtc-direct",
            "/ip4/0.0.0.0/tcp/4002/ws",
            "/dns4/node.example.org/tcp/4001",
        ] {
            assert_eq!(swarm_listener(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("/ip4/0.0.0.0/udp/4001/quic", "quic-v1"),
            ("/ip4/0.0.0.0/udp/4001", "needs a transport"),
            ("/ip4/0.0.0.0/tcp/70000", "not a port"),
            ("/ip4/0.0.0.256/tcp/4001", "not an IPv4"),
            ("/ip4/0.0.0.0/tcp/4001/", "empty component"),
            ("ip4/0.0.0.0/tcp/4001", "must start with /"),
            ("/ip4/0.0.0.0/tcp", "needs a value"),
            ("/ip4/0.0.0.0/sctp4/1", "unknown protocol /sctp4"),
            ("/tcp/4001", "must start with /ip4"),
            ("/ip4/0.0.0.0", "needs /tcp/PORT"),
            (
                "/ip4/0.0.0.0/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
                "no /p2p/",
            ),
        ] {
            let e = swarm_listener(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        field_says(
            serde_json::json!({"swarm": ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/tcp/4001"]}),
            "swarm[1]",
            "listed twice",
        );
    }

    #[test]
    fn bootstrap_peers_end_in_a_peer_id() {
        for ok in [
            "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
            "/ip4/104.131.131.82/udp/4001/quic-v1/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
            "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
            "/dns4/boot.example.org/tcp/4001/ipfs/12D3KooWGU72UzYkzVAiTyNLugX72zoDPTGkRegoKcTfB8oWxSuu",
            "/ip6/2001:db8::1/tcp/4001/p2p/bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe",
            "/ip4/198.51.100.1/tcp/4001/p2p/k51qzi5uqu5din94tiyotk2qhc88xs2ktjswebuvodsqiaw8zfts6slhtk3m94",
        ] {
            assert_eq!(bootstrap_peer(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("auto", "AutoConf"),
            ("/ip4/104.131.131.82/tcp/4001", "must end with /p2p/"),
            ("/ip4/104.131.131.82/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ", "a transport"),
            ("/ip4/1.2.3.4/tcp/1/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvu0", "not base58"),
            ("/ip4/1.2.3.4/tcp/1/p2p/1GsNUph9ahg8CkBFgQXhHNFBaU2VfNUco8eyUkB2KnXCTaGJx7", "length"),
            ("/ip4/1.2.3.4/tcp/1/p2p/1F3EvRRJogryT6K4Vh2PXnjvk1Yaj4MbX17KZJLttJPSFsUtxfACCEi5ksWeN", "43 bytes"),
            ("/ip4/1.2.3.4/tcp/1/p2p/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "libp2p-key"),
            ("/ip4/1.2.3.4/tcp/1/p2p/xyz", "not a peer ID"),
        ] {
            let e = bootstrap_peer(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn peer_id_forms_decode_to_the_same_multihash() {
        // The libp2p peer-ids spec's example, base58 and CIDv1 base32.
        assert_eq!(
            peer_id::multihash("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N").unwrap(),
            peer_id::multihash("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe")
                .unwrap()
        );
        let ed =
            peer_id::multihash("12D3KooWGU72UzYkzVAiTyNLugX72zoDPTGkRegoKcTfB8oWxSuu").unwrap();
        // identity multihash of a 36-byte protobuf ed25519 public key
        assert_eq!(&ed[..6], &[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
        assert_eq!(
            ed,
            peer_id::multihash("k51qzi5uqu5din94tiyotk2qhc88xs2ktjswebuvodsqiaw8zfts6slhtk3m94")
                .unwrap()
        );
        assert_eq!(
            ed,
            peer_id::multihash("bafzaajaiaejcaywrcimx2tzmhl4r4zfxgsm2wk5yevnzsbsg4yb35gvqe5ugoc3i")
                .unwrap()
        );
    }

    #[test]
    fn sizes_read_as_go_humanize_does() {
        assert_eq!(parse_size("100GB"), Ok(100_000_000_000));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("1.5TiB"), Ok(1_649_267_441_664));
        assert_eq!(parse_size("42 mib"), Ok(44_040_192));
        assert_eq!(parse_size("1,000MB"), Ok(1_000_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("2k"), Ok(2_000));
        for bad in [
            "",
            "GB",
            "100GiBs",
            "1.2.3GB",
            "-1GB",
            "100 gigabytes",
            "20EiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        field_says(
            serde_json::json!({"storage_max": "0GB"}),
            "storage_max",
            "0 bytes",
        );
        field_says(
            serde_json::json!({"storage_max": "lots"}),
            "storage_max",
            "not a size",
        );
    }

    #[test]
    fn config_overrides_may_not_touch_owned_fields() {
        field_says(
            serde_json::json!({"config": {"Identity": {"PeerID": "x"}}}),
            "config.Identity",
            "ipfs init",
        );
        field_says(
            serde_json::json!({"config": {"Addresses": {"API": "/ip4/0.0.0.0/tcp/5001"}}}),
            "config.Addresses.API",
            "set by `api`",
        );
        field_says(
            serde_json::json!({"config": {"Addresses": []}}),
            "config.Addresses",
            "must be an object",
        );
        field_says(
            serde_json::json!({"config": {"Bootstrap": ["auto"]}}),
            "config.Bootstrap",
            "bootstrap",
        );
        field_says(
            serde_json::json!({"config": {"Datastore": {"StorageMax": "1TB"}}}),
            "config.Datastore.StorageMax",
            "storage_max",
        );
        let s = parse(serde_json::json!({"config": {
            "Datastore": {"GCPeriod": "2h"},
            "Addresses": {"NoAnnounce": ["/ip4/10.0.0.0/ipcidr/8"]},
            "Swarm": {"ConnMgr": {"HighWater": 200}}
        }}))
        .unwrap();
        assert_eq!(s.config.len(), 3);
    }

    #[test]
    fn merge_is_deep_for_objects_and_replaces_the_rest() {
        let mut base = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        merge(
            &mut base,
            &serde_json::json!({"a": {"c": [3], "e": null}, "d": {"f": true}}),
        );
        assert_eq!(
            base,
            serde_json::json!({"a": {"b": 1, "c": [3], "e": null}, "d": {"f": true}})
        );
    }

    #[test]
    fn diff_lists_changed_leaves() {
        let old = serde_json::json!({"A": {"B": "x", "C": [1]}, "D": 1});
        let new = serde_json::json!({"A": {"B": "y", "C": [1], "E": {"F": 2}}, "D": 1});
        let mut out = Vec::new();
        diff(&old, &new, "", &mut out);
        let shown: Vec<String> = out.iter().map(|c| c.to_string()).collect();
        assert_eq!(shown, [r#"A.B: "x" → "y""#, r#"A.E: (absent) → {"F":2}"#]);
    }

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
