//! CometBFT: the typed `settings` of a `cometbft` service, the node home
//! (config.toml rendered from the settings, genesis installed, keys made once)
//! and the kind's health check through tendermint-rpc (/status, /net_info).
//!
//! Formats follow CometBFT v0.38 (see docs/cometbft.md): `p2p/key.go`,
//! `privval/file.go`, `crypto/ed25519` and `config/toml.go`.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tendermint_rpc::client::CompatMode;
use tendermint_rpc::Client as _;

use crate::health::{KindMetrics, KindReport};

// ---------------------------------------------------------------------------
// Settings

/// The `settings` of a `cometbft` service. Defaults are CometBFT's own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The node home (`--home`): `config/` and `data/` live under it. Absolute.
    pub home: PathBuf,
    /// The node's human-readable name (printable ASCII).
    pub moniker: String,
    /// The chain this node joins; must match the genesis' `chain_id`.
    pub chain_id: String,
    /// A genesis.json to install as `config/genesis.json`; may be left out
    /// when the home already has one. Absolute.
    #[serde(default)]
    pub genesis: Option<PathBuf>,
    /// The ABCI application: `tcp://host:port`, `unix:///path`, or a
    /// built-in (`kvstore`, `persistent_kvstore`, `noop`, `e2e`, and their
    /// `_connsync` variants).
    #[serde(default = "default_proxy_app")]
    pub proxy_app: String,
    /// `[rpc] laddr`; the health check talks to it over HTTP.
    #[serde(default = "default_rpc_laddr")]
    pub rpc_laddr: String,
    /// `[p2p] laddr`.
    #[serde(default = "default_p2p_laddr")]
    pub p2p_laddr: String,
    /// `[p2p] persistent_peers`, each `NODEID@host:port`.
    #[serde(default)]
    pub persistent_peers: Vec<String>,
    /// `[p2p] seeds`, each `NODEID@host:port`.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Where CometBFT listens for a remote signer (Horcrux, TMKMS):
    /// `tcp://host:port` or `unix:///path`. When set, the signer holds the
    /// validator key and the local `priv_validator_key.json` is not used.
    #[serde(default)]
    pub priv_validator_laddr: Option<String>,
    /// Fewer connected peers than this is unhealthy.
    #[serde(default)]
    pub min_peers: u64,
    /// The latest height may stay unchanged this long before unhealthy.
    #[serde(default = "default_stall_secs")]
    pub stall_secs: f64,
    /// Extra config.toml keys merged over the rendered ones, e.g.
    /// `{"consensus": {"timeout_commit": "1s"}}`.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
}

fn default_proxy_app() -> String {
    "tcp://127.0.0.1:26658".into()
}
fn default_rpc_laddr() -> String {
    "tcp://127.0.0.1:26657".into()
}
fn default_p2p_laddr() -> String {
    "tcp://0.0.0.0:26656".into()
}
fn default_stall_secs() -> f64 {
    30.0
}

/// CometBFT's own limit on a chain id (types/genesis.go MaxChainIDLen).
const MAX_CHAIN_ID_LEN: usize = 50;
/// Built-in ABCI applications `proxy_app` may name (proxy/client.go).
const BUILTIN_APPS: &[&str] = &[
    "kvstore",
    "kvstore_connsync",
    "persistent_kvstore",
    "persistent_kvstore_connsync",
    "e2e",
    "e2e_connsync",
    "noop",
];
/// Base (top-level, non-table) config.toml keys `config` may set; the others
/// are owned by typed settings or by the home layout that init_home writes.
const OVERRIDABLE_BASE_KEYS: &[&str] = &[
    "db_backend",
    "db_dir",
    "log_level",
    "log_format",
    "abci",
    "filter_peers",
    "event_bus_buffer_capacity",
];
/// The config.toml sections of CometBFT v0.38 (config/toml.go).
const SECTIONS: &[&str] = &[
    "rpc",
    "p2p",
    "mempool",
    "statesync",
    "blocksync",
    "consensus",
    "storage",
    "tx_index",
    "instrumentation",
];
/// config.toml keys that typed settings (or the home layout) own:
/// (section or "", key, what to do instead).
const OWNED_KEYS: &[(&str, &str, &str)] = &[
    ("", "moniker", "set settings.moniker"),
    ("", "proxy_app", "set settings.proxy_app"),
    (
        "",
        "priv_validator_laddr",
        "set settings.priv_validator_laddr",
    ),
    (
        "",
        "genesis_file",
        "set settings.genesis (installed as config/genesis.json)",
    ),
    (
        "",
        "node_key_file",
        "the node key lives at config/node_key.json, where init_home makes it",
    ),
    (
        "",
        "priv_validator_key_file",
        "the validator key lives at config/priv_validator_key.json, where init_home makes it",
    ),
    (
        "",
        "priv_validator_state_file",
        "the sign state lives at data/priv_validator_state.json, where init_home makes it",
    ),
    ("", "version", "CometBFT writes it; leave it out"),
    ("rpc", "laddr", "set settings.rpc_laddr"),
    ("p2p", "laddr", "set settings.p2p_laddr"),
    ("p2p", "persistent_peers", "set settings.persistent_peers"),
    ("p2p", "seeds", "set settings.seeds"),
];

impl Settings {
    /// Parse a service's `settings`; problems are (field, message), the
    /// field relative to `settings`.
    pub fn parse(
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Settings, Vec<(String, String)>> {
        let s: Settings = crate::manifest::settings_from_map(map)?;
        let problems = s.validate();
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(problems)
        }
    }

    /// What types cannot say: path, name, address and peer syntax, and the
    /// `config` overrides. Empty when the settings are usable.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |field: &str, msg: String| out.push((field.to_string(), msg));

        if !self.home.is_absolute() {
            bad(
                "home",
                format!("'{}' is not an absolute path", self.home.display()),
            );
        }
        if let Some(g) = &self.genesis {
            if !g.is_absolute() {
                bad(
                    "genesis",
                    format!("'{}' is not an absolute path", g.display()),
                );
            }
        }
        // CometBFT's rule (p2p/node_info.go): printable ASCII, not only spaces.
        if !self.moniker.bytes().all(|b| (32..=126).contains(&b)) || self.moniker.trim().is_empty()
        {
            bad(
                "moniker",
                format!(
                    "{:?} must be non-empty printable ASCII (CometBFT refuses anything else)",
                    self.moniker
                ),
            );
        }
        if self.chain_id.is_empty()
            || self.chain_id.len() > MAX_CHAIN_ID_LEN
            || !self.chain_id.bytes().all(|b| b.is_ascii_graphic())
        {
            bad(
                "chain_id",
                format!(
                    "{:?} must be 1 to {MAX_CHAIN_ID_LEN} printable ASCII characters without spaces",
                    self.chain_id
                ),
            );
        }
        if !BUILTIN_APPS.contains(&self.proxy_app.as_str()) {
            if let Err(e) = check_laddr(&self.proxy_app) {
                bad(
                    "proxy_app",
                    format!("{e}, or a built-in app ({})", BUILTIN_APPS.join(", ")),
                );
            }
        }
        match check_laddr(&self.rpc_laddr) {
            Err(e) => bad("rpc_laddr", e),
            Ok(Laddr::Unix) => bad(
                "rpc_laddr",
                format!(
                    "'{}': the health check speaks HTTP over TCP; use tcp://127.0.0.1:26657",
                    self.rpc_laddr
                ),
            ),
            Ok(Laddr::Tcp { .. }) => {}
        }
        if let Err(e) = check_laddr(&self.p2p_laddr) {
            bad("p2p_laddr", e);
        }
        if let Some(l) = &self.priv_validator_laddr {
            if let Err(e) = check_laddr(l) {
                bad("priv_validator_laddr", e);
            }
        }
        for (name, list) in [
            ("persistent_peers", &self.persistent_peers),
            ("seeds", &self.seeds),
        ] {
            for (i, p) in list.iter().enumerate() {
                if let Err(e) = check_peer(p) {
                    bad(&format!("{name}[{i}]"), e);
                }
            }
        }
        if !self.stall_secs.is_finite() || self.stall_secs <= 0.0 {
            bad(
                "stall_secs",
                format!("{} must be a positive number of seconds", self.stall_secs),
            );
        }
        out.extend(config_problems(&self.config));
        out
    }
}

/// A listen address that passed `check_laddr`.
#[derive(Debug, PartialEq)]
enum Laddr {
    Tcp { host: String, port: u16 },
    Unix,
}

/// `tcp://host:port` (IPv6 in brackets) or `unix:///absolute/path`.
fn check_laddr(s: &str) -> Result<Laddr, String> {
    if let Some(path) = s.strip_prefix("unix://") {
        return if path.starts_with('/') {
            Ok(Laddr::Unix)
        } else {
            Err(format!(
                "'{s}': a unix socket address needs an absolute path (unix:///run/x.sock)"
            ))
        };
    }
    let Some(rest) = s.strip_prefix("tcp://") else {
        return Err(format!("'{s}' is not tcp://host:port or unix:///path"));
    };
    let (host, port) = split_host_port(rest).map_err(|e| format!("'{s}': {e}"))?;
    Ok(Laddr::Tcp { host, port })
}

/// `host:port` with a non-empty host and a u16 port; `[v6]:port` for IPv6.
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or("an IPv6 host needs a closing ']'")?;
        let port = rest
            .strip_prefix(':')
            .ok_or("missing ':port' after the IPv6 host")?;
        h.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("'{h}' is not an IPv6 address"))?;
        (format!("[{h}]"), port)
    } else {
        let (h, port) = s.rsplit_once(':').ok_or("missing ':port'")?;
        if h.contains(':') {
            return Err("write an IPv6 host in brackets: [::1]:26657".into());
        }
        (h.to_string(), port)
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    if !host_ok {
        return Err(format!("'{host}' is not a host name or IP address"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("'{port}' is not a port (0-65535)"))?;
    Ok((host, port))
}

/// `NODEID@host:port`: NODEID is 40 lowercase hex characters (the node key's
/// id, which CometBFT compares as text), the port non-zero.
fn check_peer(s: &str) -> Result<(), String> {
    let Some((id, addr)) = s.split_once('@') else {
        return Err(format!("'{s}' is not NODEID@host:port"));
    };
    if id.len() != 40
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "'{s}': the node id '{id}' must be 40 lowercase hex characters (`cometbft show-node-id` on that node)"
        ));
    }
    match split_host_port(addr) {
        Err(e) => Err(format!("'{s}': {e}")),
        Ok((_, 0)) => Err(format!("'{s}': port 0 cannot be dialled")),
        Ok(_) => Ok(()),
    }
}

/// Problems in `config`: unknown or owned keys, sections that are not
/// tables, values TOML cannot hold.
fn config_problems(config: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, value) in config {
        let field = format!("config.{key}");
        if let Some((_, _, instead)) = OWNED_KEYS
            .iter()
            .find(|(sec, k, _)| sec.is_empty() && k == key)
        {
            out.push((field, format!("not settable through config: {instead}")));
            continue;
        }
        if SECTIONS.contains(&key.as_str()) {
            let Some(table) = value.as_object() else {
                out.push((
                    field,
                    format!("[{key}] is a table: write an object of its keys"),
                ));
                continue;
            };
            for sub in table.keys() {
                if let Some((_, _, instead)) =
                    OWNED_KEYS.iter().find(|(sec, k, _)| sec == key && k == sub)
                {
                    out.push((
                        format!("{field}.{sub}"),
                        format!("not settable through config: {instead}"),
                    ));
                }
            }
        } else if !OVERRIDABLE_BASE_KEYS.contains(&key.as_str()) {
            out.push((
                field,
                format!(
                    "'{key}' is not a CometBFT v0.38 config.toml key that may be set here; \
                     top-level keys: {}; sections: {}",
                    OVERRIDABLE_BASE_KEYS.join(", "),
                    SECTIONS.join(", ")
                ),
            ));
            continue;
        }
        if let Err(p) = json_to_toml(value, &field) {
            out.push(p);
        }
    }
    out
}

/// A JSON value as TOML; `null` and integers beyond i64 have no TOML form.
fn json_to_toml(v: &serde_json::Value, field: &str) -> Result<toml::Value, (String, String)> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => {
            return Err((
                field.to_string(),
                "null has no TOML form; leave the key out to keep CometBFT's default".into(),
            ))
        }
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if !n.is_u64() => toml::Value::Float(f),
            _ => {
                return Err((
                    field.to_string(),
                    format!("{n} does not fit a TOML integer (i64)"),
                ))
            }
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(items) => toml::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| json_to_toml(x, &format!("{field}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, x)| {
                    Ok::<_, (String, String)>((
                        k.clone(),
                        json_to_toml(x, &format!("{field}.{k}"))?,
                    ))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Merge `over` into `base`: tables merge key by key, anything else replaces.
fn deep_merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => deep_merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// config.toml as rendered from valid settings.
pub fn render_config(s: &Settings) -> Result<String, InitError> {
    let str_ = |v: &str| toml::Value::String(v.to_string());
    let mut root = toml::Table::new();
    root.insert("proxy_app".into(), str_(&s.proxy_app));
    root.insert("moniker".into(), str_(&s.moniker));
    // The layout init_home writes, spelled out (these are CometBFT's defaults).
    root.insert("genesis_file".into(), str_(GENESIS));
    root.insert("node_key_file".into(), str_(NODE_KEY));
    root.insert("priv_validator_key_file".into(), str_(PV_KEY));
    root.insert("priv_validator_state_file".into(), str_(PV_STATE));
    // Empty means "sign with the local key file" to CometBFT.
    root.insert(
        "priv_validator_laddr".into(),
        str_(s.priv_validator_laddr.as_deref().unwrap_or("")),
    );
    let mut rpc = toml::Table::new();
    rpc.insert("laddr".into(), str_(&s.rpc_laddr));
    root.insert("rpc".into(), toml::Value::Table(rpc));
    let mut p2p = toml::Table::new();
    p2p.insert("laddr".into(), str_(&s.p2p_laddr));
    // CometBFT reads both lists as one comma-separated string.
    p2p.insert(
        "persistent_peers".into(),
        str_(&s.persistent_peers.join(",")),
    );
    p2p.insert("seeds".into(), str_(&s.seeds.join(",")));
    root.insert("p2p".into(), toml::Value::Table(p2p));

    let over = match json_to_toml(&serde_json::Value::Object(s.config.clone()), "config") {
        Ok(toml::Value::Table(t)) => t,
        Ok(_) => toml::Table::new(),
        Err((field, msg)) => return Err(InitError::Invalid(vec![(field, msg)])),
    };
    deep_merge(&mut root, over);
    let body = toml::to_string(&root).map_err(|e| InitError::Render {
        reason: e.to_string(),
    })?;
    Ok(format!(
        "# Rendered by xnode-agent from the service manifest (services[].settings of the\n\
         # cometbft service). Edits here are replaced: set settings.config instead.\n\
         # Keys not written here keep CometBFT's defaults.\n\n{body}"
    ))
}

// ---------------------------------------------------------------------------
// Keys (CometBFT's JSON formats)

const GENESIS: &str = "config/genesis.json";
const CONFIG: &str = "config/config.toml";
const NODE_KEY: &str = "config/node_key.json";
const PV_KEY: &str = "config/priv_validator_key.json";
const PV_STATE: &str = "data/priv_validator_state.json";

const PRIV_KEY_TYPE: &str = "tendermint/PrivKeyEd25519";
const PUB_KEY_TYPE: &str = "tendermint/PubKeyEd25519";

/// `{"type": ..., "value": base64}`, CometBFT's amino-style JSON for keys.
// No Debug: it holds a private key.
#[derive(Serialize, Deserialize)]
struct TypedKey {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// config/node_key.json (p2p/key.go NodeKey).
// No Debug: it holds a private key.
#[derive(Serialize, Deserialize)]
struct NodeKeyFile {
    priv_key: TypedKey,
}

/// config/priv_validator_key.json (privval/file.go FilePVKey).
// No Debug: it holds a private key.
#[derive(Serialize, Deserialize)]
struct PvKeyFile {
    address: String,
    pub_key: TypedKey,
    priv_key: TypedKey,
}

/// data/priv_validator_state.json (privval/file.go FilePVLastSignState);
/// the height is an int64, which CometBFT's JSON writes as a string.
#[derive(Debug, Serialize)]
struct PvStateFile {
    height: String,
    round: i32,
    step: i8,
}

/// CometBFT's address of an Ed25519 public key: the first 20 bytes of its
/// SHA-256 (crypto/ed25519 PubKey.Address).
pub fn pubkey_address(pubkey: &[u8; 32]) -> [u8; 20] {
    let digest = sha2::Sha256::digest(pubkey);
    let mut out = [0u8; 20];
    out.copy_from_slice(&digest[..20]);
    out
}

/// A node id as peers write it before `@`: lowercase hex of the address.
pub fn node_id_of(pubkey: &[u8; 32]) -> String {
    hex::encode(pubkey_address(pubkey))
}

/// A validator address as CometBFT writes it: uppercase hex.
pub fn validator_address_of(pubkey: &[u8; 32]) -> String {
    hex::encode_upper(pubkey_address(pubkey))
}

/// Decode a `tendermint/PrivKeyEd25519` value (seed ‖ pubkey) and check that
/// the seed yields that public key; returns the public key.
fn decode_priv_key(k: &TypedKey) -> Result<[u8; 32], String> {
    if k.kind != PRIV_KEY_TYPE {
        return Err(format!(
            "priv_key.type is '{}', not '{PRIV_KEY_TYPE}'",
            k.kind
        ));
    }
    let bytes = B64
        .decode(&k.value)
        .map_err(|e| format!("priv_key.value is not base64: {e}"))?;
    let pair: [u8; 64] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "priv_key.value holds {} bytes, not 64 (seed ‖ public key)",
            bytes.len()
        )
    })?;
    let signing = ed25519_dalek::SigningKey::from_keypair_bytes(&pair)
        .map_err(|_| "priv_key.value: the public half does not belong to the seed".to_string())?;
    Ok(signing.verifying_key().to_bytes())
}

fn parse_node_key(bytes: &[u8]) -> Result<[u8; 32], String> {
    let f: NodeKeyFile =
        serde_json::from_slice(bytes).map_err(|e| format!("not a node key: {e}"))?;
    decode_priv_key(&f.priv_key)
}

fn parse_pv_key(bytes: &[u8]) -> Result<[u8; 32], String> {
    let f: PvKeyFile =
        serde_json::from_slice(bytes).map_err(|e| format!("not a validator key: {e}"))?;
    let public = decode_priv_key(&f.priv_key)?;
    if f.pub_key.kind != PUB_KEY_TYPE {
        return Err(format!(
            "pub_key.type is '{}', not '{PUB_KEY_TYPE}'",
            f.pub_key.kind
        ));
    }
    if B64.decode(&f.pub_key.value).ok().as_deref() != Some(&public[..]) {
        return Err("pub_key does not match priv_key".into());
    }
    if !f
        .address
        .eq_ignore_ascii_case(&validator_address_of(&public))
    {
        return Err(format!(
            "address {} is not the address of pub_key ({})",
            f.address,
            validator_address_of(&public)
        ));
    }
    Ok(public)
}

fn new_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng)
}

fn node_key_json(k: &ed25519_dalek::SigningKey) -> Result<Vec<u8>, InitError> {
    let f = NodeKeyFile {
        priv_key: TypedKey {
            kind: PRIV_KEY_TYPE.into(),
            value: B64.encode(k.to_keypair_bytes()),
        },
    };
    // CometBFT writes this one compact (cmtjson.Marshal).
    serde_json::to_vec(&f).map_err(|e| InitError::Render {
        reason: e.to_string(),
    })
}

fn pv_key_json(k: &ed25519_dalek::SigningKey) -> Result<Vec<u8>, InitError> {
    let public = k.verifying_key().to_bytes();
    let f = PvKeyFile {
        address: validator_address_of(&public),
        pub_key: TypedKey {
            kind: PUB_KEY_TYPE.into(),
            value: B64.encode(public),
        },
        priv_key: TypedKey {
            kind: PRIV_KEY_TYPE.into(),
            value: B64.encode(k.to_keypair_bytes()),
        },
    };
    // CometBFT indents this one by two spaces (cmtjson.MarshalIndent).
    serde_json::to_vec_pretty(&f).map_err(|e| InitError::Render {
        reason: e.to_string(),
    })
}

/// The node id (what peers put before `@`) of the node key in `home`.
pub fn node_id(home: &Path) -> Result<String, InitError> {
    let path = home.join(NODE_KEY);
    let bytes = fs::read(&path).map_err(|e| InitError::Io {
        path: path.clone(),
        doing: "read",
        source: e,
    })?;
    let public = parse_node_key(&bytes).map_err(|reason| InitError::KeyUnparseable {
        path: path.clone(),
        reason,
    })?;
    Ok(node_id_of(&public))
}

// ---------------------------------------------------------------------------
// init_home

/// What init_home did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    Kept,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Kept => "kept",
        })
    }
}

/// One file under the home and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    /// Relative to the home, e.g. `config/node_key.json`.
    pub path: PathBuf,
    pub action: Action,
    /// Anything an operator should know ("mode tightened to 0600").
    pub note: Option<String>,
}

/// What init_home found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    pub home: PathBuf,
    pub files: Vec<FileOutcome>,
    /// The node id (lowercase hex), what peers write before `@`.
    pub node_id: String,
    /// The local validator key's address (uppercase hex).
    pub validator_address: String,
    /// The local validator public key, base64 (what a genesis lists).
    pub validator_pub_key: String,
    /// Set when a remote signer holds the validator key.
    pub remote_signer: Option<String>,
}

impl InitReport {
    /// The outcome for `rel` (e.g. "config/config.toml"), if reported.
    pub fn action(&self, rel: &str) -> Option<Action> {
        self.files
            .iter()
            .find(|f| f.path == Path::new(rel))
            .map(|f| f.action)
    }
}

impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CometBFT home {}", self.home.display())?;
        for file in &self.files {
            write!(
                f,
                "  {:<8} {}",
                file.action.to_string(),
                file.path.display()
            )?;
            match &file.note {
                Some(n) => writeln!(f, " ({n})")?,
                None => writeln!(f)?,
            }
        }
        writeln!(
            f,
            "node id: {} (peers dial {}@<this host>:<p2p port>)",
            self.node_id, self.node_id
        )?;
        match &self.remote_signer {
            Some(l) => write!(
                f,
                "validator: signed by the remote signer on {l}; the local key {} is not used",
                self.validator_address
            ),
            None => write!(
                f,
                "validator address: {}, pub_key {} ({PUB_KEY_TYPE})",
                self.validator_address, self.validator_pub_key
            ),
        }
    }
}

/// Why init_home stopped. Every error but `Io` is found before anything is
/// written; an `Io` error while writing leaves only whole, valid files, and a
/// rerun completes the home.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("invalid CometBFT settings, nothing written: {}", .0.iter().map(|(f, m)| format!("settings.{f}: {m}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(String, String)>),
    #[error(
        "cannot {doing} {path}: {source}; check that the path exists and the agent may write it"
    )]
    Io {
        path: PathBuf,
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no genesis: {installed} does not exist and settings.genesis is not set; set settings.genesis to the chain's genesis.json (or place it at {installed})")]
    GenesisMissing { installed: PathBuf },
    #[error("genesis {path} is not usable: {reason}; point settings.genesis at the chain's genesis.json")]
    GenesisUnusable { path: PathBuf, reason: String },
    #[error("refusing to replace {installed} with {given}: they differ, and a node's genesis never changes; if this node really moves to another chain, move the old home away (its data belongs to the old chain) and run again, otherwise point settings.genesis at the installed file or remove the setting")]
    GenesisConflict { installed: PathBuf, given: PathBuf },
    #[error("genesis {path} is for chain '{genesis}', but settings.chain_id is '{settings}'; fix settings.chain_id or settings.genesis")]
    ChainIdMismatch {
        path: PathBuf,
        genesis: String,
        settings: String,
    },
    #[error("{path} exists but cannot be read as a CometBFT key ({reason}); it was left untouched: restore it from a backup, or move it away to have a new key made (a validator's key and address change with it)")]
    KeyUnparseable { path: PathBuf, reason: String },
    #[error("{path} is not a regular file; move it away")]
    NotAFile { path: PathBuf },
    #[error("cannot render a CometBFT file: {reason}")]
    Render { reason: String },
}

/// One planned change; planning reads, applying writes.
// No Debug: it may hold a private key.
enum Step {
    /// Write `bytes` (mode `mode`); `exclusive` never replaces an existing file.
    Write {
        rel: &'static str,
        bytes: Vec<u8>,
        mode: u32,
        exclusive: bool,
        action: Action,
        note: Option<String>,
    },
    /// Leave the file; tighten its mode to `mode` when given.
    Keep {
        rel: &'static str,
        chmod: Option<u32>,
        note: Option<String>,
    },
}

/// Read `path` if it exists; a directory or other non-file is an error.
fn read_existing(path: &Path) -> Result<Option<Vec<u8>>, InitError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(InitError::Io {
                path: path.into(),
                doing: "inspect",
                source: e,
            })
        }
        Ok(m) if !m.is_file() => return Err(InitError::NotAFile { path: path.into() }),
        Ok(_) => {}
    }
    fs::read(path).map(Some).map_err(|e| InitError::Io {
        path: path.into(),
        doing: "read",
        source: e,
    })
}

/// The mode bits of an existing file.
fn mode_of(path: &Path) -> Result<u32, InitError> {
    fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .map_err(|e| InitError::Io {
            path: path.into(),
            doing: "inspect",
            source: e,
        })
}

/// The `chain_id` of a genesis document.
fn genesis_chain_id(path: &Path, bytes: &[u8]) -> Result<String, InitError> {
    let unusable = |reason: String| InitError::GenesisUnusable {
        path: path.into(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| unusable(format!("not JSON: {e}")))?;
    v.get("chain_id")
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .ok_or_else(|| unusable("it has no \"chain_id\" string".into()))
}

/// Plan a key file: keep a valid one (tightening its mode), make a new one
/// when absent, refuse when present but unreadable as a key.
fn plan_key(
    home: &Path,
    rel: &'static str,
    parse: fn(&[u8]) -> Result<[u8; 32], String>,
    render: fn(&ed25519_dalek::SigningKey) -> Result<Vec<u8>, InitError>,
    note: Option<String>,
) -> Result<(Step, [u8; 32]), InitError> {
    let path = home.join(rel);
    match read_existing(&path)? {
        Some(bytes) => {
            let public = parse(&bytes).map_err(|reason| InitError::KeyUnparseable {
                path: path.clone(),
                reason,
            })?;
            let mode = mode_of(&path)?;
            let (chmod, tightened) = if mode & 0o077 != 0 {
                (
                    Some(0o600),
                    Some(format!("mode {mode:04o} tightened to 0600")),
                )
            } else {
                (None, None)
            };
            let note = match (tightened, note) {
                (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                (a, b) => a.or(b),
            };
            Ok((Step::Keep { rel, chmod, note }, public))
        }
        None => {
            let key = new_signing_key();
            let step = Step::Write {
                rel,
                bytes: render(&key)?,
                mode: 0o600,
                exclusive: true,
                action: Action::Created,
                note,
            };
            Ok((step, key.verifying_key().to_bytes()))
        }
    }
}

/// Prepare the CometBFT home for `s`: directories, config.toml, genesis,
/// keys (made once, 0600, never replaced) and the validator sign state.
/// Everything is checked before anything is written, so bad input changes
/// nothing; a second run with the same settings changes nothing.
pub fn init_home(s: &Settings) -> Result<InitReport, InitError> {
    let problems = s.validate();
    if !problems.is_empty() {
        return Err(InitError::Invalid(problems));
    }
    let home = &s.home;
    let mut steps = Vec::new();

    // config.toml: rendered, written only when its content changes.
    let config = render_config(s)?.into_bytes();
    match read_existing(&home.join(CONFIG))? {
        Some(old) if old == config => steps.push(Step::Keep {
            rel: CONFIG,
            chmod: None,
            note: None,
        }),
        old => steps.push(Step::Write {
            rel: CONFIG,
            bytes: config,
            mode: 0o644,
            exclusive: false,
            action: if old.is_some() {
                Action::Updated
            } else {
                Action::Created
            },
            note: None,
        }),
    }

    // Genesis: installed once; a different one is never swapped in.
    let installed = home.join(GENESIS);
    let existing = read_existing(&installed)?;
    let (genesis_path, genesis_bytes, step) = match (&s.genesis, existing) {
        (None, None) => return Err(InitError::GenesisMissing { installed }),
        (None, Some(old)) => (
            installed.clone(),
            old,
            Step::Keep {
                rel: GENESIS,
                chmod: None,
                note: None,
            },
        ),
        (Some(given), existing) => {
            let bytes = fs::read(given).map_err(|e| InitError::GenesisUnusable {
                path: given.clone(),
                reason: format!("cannot read it: {e}"),
            })?;
            match existing {
                Some(old) if old == bytes => (
                    given.clone(),
                    bytes,
                    Step::Keep {
                        rel: GENESIS,
                        chmod: None,
                        note: Some(format!("identical to {}", given.display())),
                    },
                ),
                Some(_) => {
                    return Err(InitError::GenesisConflict {
                        installed,
                        given: given.clone(),
                    })
                }
                None => (
                    given.clone(),
                    bytes.clone(),
                    Step::Write {
                        rel: GENESIS,
                        bytes,
                        mode: 0o644,
                        exclusive: true,
                        action: Action::Created,
                        note: Some(format!("copied from {}", given.display())),
                    },
                ),
            }
        }
    };
    let chain = genesis_chain_id(&genesis_path, &genesis_bytes)?;
    if chain != s.chain_id {
        return Err(InitError::ChainIdMismatch {
            path: genesis_path,
            genesis: chain,
            settings: s.chain_id.clone(),
        });
    }
    steps.push(step);

    // Keys: CometBFT loads the validator key file at start even with a
    // remote signer (node/setup.go LoadOrGenFilePV), so it is made either way.
    let (step, node_public) = plan_key(home, NODE_KEY, parse_node_key, node_key_json, None)?;
    steps.push(step);
    let unused = s
        .priv_validator_laddr
        .as_ref()
        .map(|l| format!("not used for signing: the remote signer on {l} holds the key"));
    let (step, pv_public) = plan_key(home, PV_KEY, parse_pv_key, pv_key_json, unused)?;
    steps.push(step);

    // The last-sign state guards against double signing: made once, never touched.
    match read_existing(&home.join(PV_STATE))? {
        Some(_) => steps.push(Step::Keep {
            rel: PV_STATE,
            chmod: None,
            note: None,
        }),
        None => {
            let state = PvStateFile {
                height: "0".into(),
                round: 0,
                step: 0,
            };
            let bytes = serde_json::to_vec_pretty(&state).map_err(|e| InitError::Render {
                reason: e.to_string(),
            })?;
            steps.push(Step::Write {
                rel: PV_STATE,
                bytes,
                mode: 0o600,
                exclusive: true,
                action: Action::Created,
                note: None,
            });
        }
    }

    // Everything checked: now write.
    for dir in [home.clone(), home.join("config"), home.join("data")] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| InitError::Io {
                path: dir.clone(),
                doing: "create directory",
                source: e,
            })?;
    }
    let mut files = Vec::new();
    for step in steps {
        match step {
            Step::Write {
                rel,
                bytes,
                mode,
                exclusive,
                action,
                note,
            } => {
                write_atomic(&home.join(rel), &bytes, mode, exclusive)?;
                files.push(FileOutcome {
                    path: rel.into(),
                    action,
                    note,
                });
            }
            Step::Keep { rel, chmod, note } => {
                if let Some(mode) = chmod {
                    let path = home.join(rel);
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(|e| {
                        InitError::Io {
                            path,
                            doing: "set the mode of",
                            source: e,
                        }
                    })?;
                }
                files.push(FileOutcome {
                    path: rel.into(),
                    action: Action::Kept,
                    note,
                });
            }
        }
    }
    Ok(InitReport {
        home: home.clone(),
        files,
        node_id: node_id_of(&node_public),
        validator_address: validator_address_of(&pv_public),
        validator_pub_key: B64.encode(pv_public),
        remote_signer: s.priv_validator_laddr.clone(),
    })
}

/// Write `bytes` to `path` through a temporary file in the same directory,
/// so a reader sees the old content or the new, never a part. `exclusive`
/// links instead of renaming, which fails rather than replace a file that
/// appeared meanwhile (keys are never overwritten).
fn write_atomic(path: &Path, bytes: &[u8], mode: u32, exclusive: bool) -> Result<(), InitError> {
    let io = |path: &Path, doing: &'static str| {
        let path = path.to_path_buf();
        move |source| InitError::Io {
            path,
            doing,
            source,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{:016x}.tmp",
        rand_core::RngCore::next_u64(&mut rand_core::OsRng)
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp, "create"))?;
        // The umask may have narrowed `mode` at creation; say it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io(&tmp, "set the mode of"))?;
        f.write_all(bytes).map_err(io(&tmp, "write"))?;
        f.sync_all().map_err(io(&tmp, "sync"))?;
        if exclusive {
            fs::hard_link(&tmp, path).map_err(io(path, "create"))?;
            fs::remove_file(&tmp).map_err(io(&tmp, "remove"))
        } else {
            fs::rename(&tmp, path).map_err(io(path, "replace"))
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "sync directory"))
}

// ---------------------------------------------------------------------------
// Health

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
        let client = url.and_then(|u| {
            let parsed: tendermint_rpc::HttpClientUrl = u
                .parse()
                .map_err(|e| format!("'{u}' is not an RPC URL: {e}"))?;
            // The RPC is the node's own: never through an HTTP_PROXY/ALL_PROXY
            // from the agent's environment, which reqwest would otherwise
            // honour even for loopback.
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(timeout)
                .build()
                .map_err(|e| format!("cannot make an HTTP client for {u}: {e}"))?;
            tendermint_rpc::HttpClient::builder(parsed)
                .compat_mode(COMPAT_MODE)
                .client(http)
                .build()
                .map_err(|e| format!("cannot make an RPC client for {u}: {e}"))
        });
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

    fn settings(home: &Path) -> Settings {
        let mut map = serde_json::Map::new();
        map.insert("home".into(), home.to_string_lossy().into_owned().into());
        map.insert("moniker".into(), "xnode-1".into());
        map.insert("chain_id".into(), "xnode-testnet-1".into());
        Settings::parse(&map).unwrap()
    }

    fn parse(v: serde_json::Value) -> Result<Settings, Vec<(String, String)>> {
        Settings::parse(v.as_object().unwrap())
    }

    fn fields(r: Result<Settings, Vec<(String, String)>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn defaults_are_cometbfts() {
        let s = settings(Path::new("/var/lib/cometbft"));
        assert_eq!(s.rpc_laddr, "tcp://127.0.0.1:26657");
        assert_eq!(s.p2p_laddr, "tcp://0.0.0.0:26656");
        assert_eq!(s.proxy_app, "tcp://127.0.0.1:26658");
        assert_eq!(s.min_peers, 0);
        assert_eq!(s.stall_secs, 30.0);
        assert!(s.genesis.is_none() && s.priv_validator_laddr.is_none());
    }

    #[test]
    fn unknown_fields_and_wrong_types_point_at_the_field() {
        let r = parse(
            serde_json::json!({"home": "/h", "moniker": "m", "chain_id": "c", "min_peer": 3}),
        );
        let p = r.unwrap_err();
        assert_eq!(p.len(), 1);
        assert!(p[0].1.contains("unknown field `min_peer`"), "{p:?}");
        let r = parse(
            serde_json::json!({"home": "/h", "moniker": "m", "chain_id": "c", "min_peers": "3"}),
        );
        assert_eq!(fields(r), ["min_peers"]);
    }

    #[test]
    fn every_bad_field_is_named() {
        let r = parse(serde_json::json!({
            "home": "relative/home",
            "moniker": "  ",
            "chain_id": "",
            "genesis": "genesis.json",
            "proxy_app": "kvstor",
            "rpc_laddr": "unix:///run/cometbft.sock",
            "p2p_laddr": "0.0.0.0:26656",
            "persistent_peers": [
                "f4c8e9b0a1d2c3b4a5f6e7d8c9b0a1d2c3b4a5f6@10.0.0.2:26656",
                "F4C8E9B0A1D2C3B4A5F6E7D8C9B0A1D2C3B4A5F6@10.0.0.3:26656",
                "f4c8e9b0a1d2c3b4a5f6e7d8c9b0a1d2c3b4a5f6@10.0.0.4",
                "f4c8e9b0a1d2c3b4a5f6e7d8c9b0a1d2c3b4a5f6@:26656",
                "f4c8e9b0a1d2c3b4a5f6e7d8c9b0a1d2c3b4a5f6@[::1]:0"
            ],
            "seeds": ["10.0.0.2:26656"],
            "priv_validator_laddr": "tcp://0.0.0.0:99999",
            "stall_secs": 0,
            "config": {
                "moniker": "x",
                "p2p": {"seeds": "a", "external_address": "tcp://1.2.3.4:26656"},
                "consensu": {},
                "consensus": {"timeout_commit": null},
                "mempool": 3
            }
        }));
        let mut f = fields(r);
        f.sort();
        assert_eq!(
            f,
            [
                "chain_id",
                "config.consensu",
                "config.consensus.timeout_commit",
                "config.mempool",
                "config.moniker",
                "config.p2p.seeds",
                "genesis",
                "home",
                "moniker",
                "p2p_laddr",
                "persistent_peers[1]",
                "persistent_peers[2]",
                "persistent_peers[3]",
                "persistent_peers[4]",
                "priv_validator_laddr",
                "proxy_app",
                "rpc_laddr",
                "seeds[0]",
                "stall_secs",
            ]
        );
    }

    #[test]
    fn laddr_and_peer_syntax() {
        assert_eq!(
            check_laddr("tcp://127.0.0.1:26657"),
            Ok(Laddr::Tcp {
                host: "127.0.0.1".into(),
                port: 26657
            })
        );
        assert_eq!(
            check_laddr("tcp://[::]:26656"),
            Ok(Laddr::Tcp {
                host: "[::]".into(),
                port: 26656
            })
        );
        assert_eq!(check_laddr("unix:///run/pv.sock"), Ok(Laddr::Unix));
        for bad in [
            "http://127.0.0.1:1",
            "tcp://::1:26657",
            "tcp://host",
            "tcp://h:x",
            "unix://rel.sock",
            "tcp://a b:1",
        ] {
            assert!(check_laddr(bad).is_err(), "{bad} accepted");
        }
        assert!(check_peer("5576458aef205977e18fd50b274e9b5d9014525a@95.179.155.35:26656").is_ok());
        assert!(
            check_peer("5576458aef205977e18fd50b274e9b5d9014525a@seed.example.org:26656").is_ok()
        );
        assert!(check_peer("5576458aef205977e18fd50b274e9b5d9014525@95.179.155.35:26656").is_err());
        assert!(
            check_peer("5576458aef205977e18fd50b274e9b5d9014525g@95.179.155.35:26656").is_err()
        );
    }

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

    // Published pairs, each a pub_key and the address CometBFT printed for it:
    // the v0.38 OpenAPI ValidatorInfo example (rpc/openapi/openapi.yaml), the
    // /status example of spec/rpc/README.md, and the sample genesis.json of
    // docs/core/using-cometbft.md.
    #[test]
    fn address_matches_published_pairs() {
        for (pubkey, address) in [
            (
                "A6DoBUypNtUAyEHWtQ9bFjfNg8Bo9CrnkUGl6k6OHN4=",
                "5D6A51A8E9899C44079C6AF90618BA0369070E6E",
            ),
            (
                "Z+8kntVegi1sQiWLYwFSVLNWqdAUGEy7lskL78gxLZI=",
                "38FB765D0092470989360ECA1C89CD06C2C1583C",
            ),
            (
                "P/V6GHuZrb8rs/k1oBorxc6vyXMlnzhJmv7LmjELDys=",
                "B547AB87E79F75A4A3198C57A8C2FDAF8628CB47",
            ),
        ] {
            let pk: [u8; 32] = B64.decode(pubkey).unwrap().try_into().unwrap();
            assert_eq!(validator_address_of(&pk), address);
            assert_eq!(node_id_of(&pk), address.to_lowercase());
        }
    }

    // The private key layout (seed ‖ public key) checked on a key published in
    // CometBFT's docs (docs/core/using-cometbft.md, `cometbft gen_validator`):
    // the seed must yield the public half and the documented pub_key.
    #[test]
    fn private_key_layout_matches_published_key() {
        let priv_key = TypedKey {
            kind: PRIV_KEY_TYPE.into(),
            value: "EDJY9W6zlAw+su6ITgTKg2nTZcHAH1NMTW5iwlgmNDuX1f35+OR4HMN88ZtQzsAwhETq4k3vzM3n6WTk5ii16Q==".into(),
        };
        let public = decode_priv_key(&priv_key).unwrap();
        assert_eq!(
            B64.encode(public),
            "l9X9+fjkeBzDfPGbUM7AMIRE6uJN78zN5+lk5OYotek="
        );
        let mut flipped = B64.decode(&priv_key.value).unwrap();
        flipped[40] ^= 1;
        let bad = TypedKey {
            kind: PRIV_KEY_TYPE.into(),
            value: B64.encode(flipped),
        };
        assert!(decode_priv_key(&bad)
            .unwrap_err()
            .contains("does not belong"));
    }

    #[test]
    fn generated_keys_round_trip_in_cometbft_format() {
        let key = new_signing_key();
        let public = key.verifying_key().to_bytes();
        let node = node_key_json(&key).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&node).unwrap();
        assert_eq!(v["priv_key"]["type"], PRIV_KEY_TYPE);
        assert_eq!(
            B64.decode(v["priv_key"]["value"].as_str().unwrap())
                .unwrap()
                .len(),
            64
        );
        assert_eq!(parse_node_key(&node).unwrap(), public);

        let pv = pv_key_json(&key).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&pv).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 3);
        let address = v["address"].as_str().unwrap();
        assert_eq!(address, address.to_uppercase());
        assert_eq!(address, validator_address_of(&public));
        assert_eq!(v["pub_key"]["type"], PUB_KEY_TYPE);
        assert_eq!(v["pub_key"]["value"], B64.encode(public));
        assert_eq!(parse_pv_key(&pv).unwrap(), public);

        // A tampered address is caught.
        let tampered = String::from_utf8(pv)
            .unwrap()
            .replace(address, &"0".repeat(40));
        assert!(parse_pv_key(tampered.as_bytes())
            .unwrap_err()
            .contains("not the address"));
    }

    #[test]
    fn config_renders_settings_and_merges_overrides() {
        let mut s = settings(Path::new("/var/lib/cometbft"));
        s.persistent_peers = vec![
            "5576458aef205977e18fd50b274e9b5d9014525a@10.0.0.2:26656".into(),
            "b93270b358a72a2db30089f3856475bb1f918d6d@10.0.0.3:26656".into(),
        ];
        s.priv_validator_laddr = Some("tcp://127.0.0.1:1234".into());
        s.config = serde_json::json!({
            "log_level": "info",
            "consensus": {"timeout_commit": "1s", "create_empty_blocks": false},
            "p2p": {"max_num_inbound_peers": 80},
        })
        .as_object()
        .unwrap()
        .clone();
        let text = render_config(&s).unwrap();
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["moniker"].as_str(), Some("xnode-1"));
        assert_eq!(
            t["priv_validator_laddr"].as_str(),
            Some("tcp://127.0.0.1:1234")
        );
        assert_eq!(t["log_level"].as_str(), Some("info"));
        assert_eq!(t["rpc"]["laddr"].as_str(), Some("tcp://127.0.0.1:26657"));
        assert_eq!(t["p2p"]["laddr"].as_str(), Some("tcp://0.0.0.0:26656"));
        assert_eq!(
            t["p2p"]["persistent_peers"].as_str(),
            Some(s.persistent_peers.join(",").as_str())
        );
        assert_eq!(t["p2p"]["seeds"].as_str(), Some(""));
        assert_eq!(t["p2p"]["max_num_inbound_peers"].as_integer(), Some(80));
        assert_eq!(t["consensus"]["timeout_commit"].as_str(), Some("1s"));
        assert_eq!(t["consensus"]["create_empty_blocks"].as_bool(), Some(false));
    }
}
