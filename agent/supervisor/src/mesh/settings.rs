//! The `settings` of a `mesh` service (modules/mesh.nix writes them):
//! parsed and checked as a whole, every problem named with its field.

use std::path::PathBuf;

use multiaddr::{Multiaddr, Protocol};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TCP listen multiaddr; QUIC takes the same port on UDP.
    #[serde(default)]
    pub listen: Option<String>,
    /// Peers to join through, each ending in `/p2p/<PeerId>`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    #[serde(default)]
    pub mdns: bool,
    /// PEM bundle of the EK CAs whose TPMs count as attested.
    #[serde(default)]
    pub ek_ca_bundle: Option<PathBuf>,
    /// The verifier's activation registry (`xnode-agent credential accept`).
    #[serde(default)]
    pub activations: Option<PathBuf>,
    /// This node's latest attestation envelope, announced on the mesh.
    #[serde(default)]
    pub attestation: Option<PathBuf>,
    /// Attestations older than this do not count.
    #[serde(default = "default_max_age")]
    pub attestation_max_age_secs: u64,
    /// How often to gossip metrics (and re-announce the attestation).
    #[serde(default = "default_interval")]
    pub metrics_interval_secs: u64,
    /// The agent's API, read for the metrics of the node's services.
    #[serde(default)]
    pub agent_socket: Option<PathBuf>,
    /// The mesh's own API socket; the agent's health check reads it too.
    #[serde(default)]
    pub api: Option<PathBuf>,
    /// The group given the API socket (the agent's health check is in it).
    #[serde(default)]
    pub api_group: Option<String>,
}

fn default_max_age() -> u64 {
    2 * 3600
}

fn default_interval() -> u64 {
    30
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: None,
            bootstrap: Vec::new(),
            mdns: false,
            ek_ca_bundle: None,
            activations: None,
            attestation: None,
            attestation_max_age_secs: default_max_age(),
            metrics_interval_secs: default_interval(),
            agent_socket: None,
            api: None,
            api_group: None,
        }
    }
}

impl Settings {
    /// Deserialize and validate; every problem as (field, message).
    pub fn parse(map: &Map<String, Value>) -> Result<Settings, Vec<(String, String)>> {
        let s: Settings = crate::manifest::settings_from_map(map)?;
        s.validate()?;
        Ok(s)
    }

    /// The TCP listen address, parsed (checked by `validate`).
    pub fn listen_addr(&self) -> Option<Result<Multiaddr, String>> {
        self.listen.as_deref().map(parse_tcp_listen)
    }

    /// The bootstrap peers, parsed (checked by `validate`).
    pub fn bootstrap_addrs(&self) -> Result<Vec<Multiaddr>, String> {
        self.bootstrap.iter().map(|a| parse_peer_addr(a)).collect()
    }

    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut p: Vec<(String, String)> = Vec::new();
        if let Some(Err(e)) = self.listen_addr() {
            p.push(("listen".into(), e));
        }
        for (i, a) in self.bootstrap.iter().enumerate() {
            if let Err(e) = parse_peer_addr(a) {
                p.push((format!("bootstrap[{i}]"), e));
            }
        }
        for (field, path) in [
            ("ek_ca_bundle", &self.ek_ca_bundle),
            ("activations", &self.activations),
            ("attestation", &self.attestation),
            ("agent_socket", &self.agent_socket),
            ("api", &self.api),
        ] {
            if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                p.push((field.into(), "must be an absolute path".into()));
            }
        }
        if self.activations.is_some() && self.ek_ca_bundle.is_none() {
            p.push((
                "activations".into(),
                "counts only with ek_ca_bundle, which is not set".into(),
            ));
        }
        if self.metrics_interval_secs == 0 {
            p.push(("metrics_interval_secs".into(), "must be at least 1".into()));
        }
        if self.attestation_max_age_secs == 0 {
            p.push((
                "attestation_max_age_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if self
            .api_group
            .as_deref()
            .is_some_and(|g| g.trim().is_empty())
        {
            p.push(("api_group".into(), "is empty".into()));
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    }
}

fn parse_tcp_listen(text: &str) -> Result<Multiaddr, String> {
    let addr: Multiaddr = text
        .parse()
        .map_err(|e| format!("'{text}' is not a multiaddr: {e}"))?;
    let mut parts = addr.iter();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Protocol::Ip4(_) | Protocol::Ip6(_)), Some(Protocol::Tcp(_)), None) => Ok(addr),
        _ => Err(format!(
            "'{text}' is not an IP and TCP port like /ip4/0.0.0.0/tcp/4100 (QUIC takes the same port on UDP)"
        )),
    }
}

fn parse_peer_addr(text: &str) -> Result<Multiaddr, String> {
    let addr: Multiaddr = text
        .parse()
        .map_err(|e| format!("'{text}' is not a multiaddr: {e}"))?;
    match addr.iter().last() {
        Some(Protocol::P2p(_)) => Ok(addr),
        _ => Err(format!("'{text}' does not end in /p2p/<PeerId>")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const PEER: &str = "12D3KooWHfe18eQBpPzk9zx8EHGq7v4VdUtSYQsBpfraJ5wp344U";

    fn parse(v: Value) -> Result<Settings, Vec<(String, String)>> {
        Settings::parse(v.as_object().unwrap())
    }

    #[test]
    fn the_module_s_settings_parse() {
        let s = parse(serde_json::json!({
            "listen": "/ip4/0.0.0.0/tcp/4100",
            "bootstrap": [
                format!("/ip4/192.0.2.1/tcp/4100/p2p/{PEER}"),
                format!("/ip4/192.0.2.1/udp/4100/quic-v1/p2p/{PEER}"),
            ],
            "mdns": false,
            "ek_ca_bundle": "/etc/xnode/ek-ca.pem",
            "activations": "/etc/xnode/activations.json",
            "attestation_max_age_secs": 10800,
            "metrics_interval_secs": 30,
            "agent_socket": "/run/xnode/agent.sock",
            "api_group": "xnode-api",
        }))
        .unwrap();
        assert_eq!(s.bootstrap_addrs().unwrap().len(), 2);
        assert_eq!(s.attestation_max_age_secs, 10800);
        let d = parse(serde_json::json!({})).unwrap();
        assert_eq!(d, Settings::default());
    }

    #[test]
    fn every_problem_is_named_with_its_field() {
        let e = parse(serde_json::json!({
            "listen": "/ip4/0.0.0.0/udp/4100/quic-v1",
            "bootstrap": ["/ip4/192.0.2.1/tcp/4100", "not an address"],
            "activations": "activations.json",
            "metrics_interval_secs": 0,
            "api_group": " ",
        }))
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "listen",
                "bootstrap[0]",
                "bootstrap[1]",
                "activations",
                "activations",
                "metrics_interval_secs",
                "api_group"
            ],
            "{e:?}"
        );
        assert!(e[1].1.contains("/p2p/<PeerId>"), "{e:?}");
        assert!(e[3].1.contains("absolute"), "{e:?}");
        assert!(e[4].1.contains("ek_ca_bundle"), "{e:?}");
    }

    #[test]
    fn unknown_settings_are_named() {
        let e = parse(serde_json::json!({"listen": "/ip4/0.0.0.0/tcp/1", "lisen": 1})).unwrap_err();
        assert!(e[0].1.contains("lisen"), "{e:?}");
    }
}
