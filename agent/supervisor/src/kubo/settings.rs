//! The `settings` of a `kubo` service: the typed fields and their defaults,
//! and their validation (loopback API and gateway, swarm listeners, bootstrap
//! peers, `config` overrides kept off the fields the settings own), with
//! kubo's size syntax for `storage_max`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::multiaddr;

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
pub(super) fn loopback_listener(s: &str, why: &str) -> Result<SocketAddr, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
}
