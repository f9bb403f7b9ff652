//! The `settings` of a `cometbft` service: the typed fields and their
//! defaults (CometBFT's own), and their validation: paths, moniker, chain id,
//! listen addresses (`tcp://host:port`, `unix:///path`), `NODEID@host:port`
//! peers, and the `config` overrides (CometBFT v0.38 keys only, none that a
//! typed field owns, each with a TOML form).

use std::path::PathBuf;

use serde::Deserialize;

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
pub(super) enum Laddr {
    Tcp { host: String, port: u16 },
    Unix,
}

/// `tcp://host:port` (IPv6 in brackets) or `unix:///absolute/path`.
pub(super) fn check_laddr(s: &str) -> Result<Laddr, String> {
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
pub(super) fn json_to_toml(
    v: &serde_json::Value,
    field: &str,
) -> Result<toml::Value, (String, String)> {
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

/// Minimal valid settings for a home at `home`, for tests.
#[cfg(test)]
pub(super) fn test_settings(home: &std::path::Path) -> Settings {
    let mut map = serde_json::Map::new();
    map.insert("home".into(), home.to_string_lossy().into_owned().into());
    map.insert("moniker".into(), "xnode-1".into());
    map.insert("chain_id".into(), "xnode-testnet-1".into());
    #[allow(clippy::unwrap_used)]
    Settings::parse(&map).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn settings(home: &Path) -> Settings {
        test_settings(home)
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
}
