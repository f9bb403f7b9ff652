//! The first-boot configuration (`xnode.firstboot/v1`): what an operator
//! hands a new node on its boot medium or in cloud user data — the owner's
//! API keys, the node's role and its bootstrap peers. Parsed and checked
//! here, installed by `xnode-agent firstboot install`, and read again by
//! `service init`, which adds the bootstrap peers to the service's own, and
//! by `mesh run`, which joins through the mesh peers.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const SCHEMA: &str = "xnode.firstboot/v1";
/// Where `firstboot install` puts the document (readable by the services'
/// users: it holds public keys and addresses only).
pub const FILE: &str = "firstboot.json";
/// The owner keys, one hex Ed25519 key per line (`run --api-authorized-keys`).
pub const AUTHORIZED_KEYS: &str = "authorized_keys";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub schema: String,
    /// Hex Ed25519 public keys allowed to use the node's TCP API.
    #[serde(default)]
    pub owner_keys: Vec<String>,
    /// What the node is for; reported by the agent.
    pub role: Role,
    #[serde(default)]
    pub bootstrap: Bootstrap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Validator,
    Full,
    Storage,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// CometBFT peers, `NODEID@host:port`: added to `persistent_peers`.
    #[serde(default)]
    pub cometbft: Vec<String>,
    /// kubo peers (multiaddrs ending in `/p2p/<id>`): added to `bootstrap`.
    #[serde(default)]
    pub ipfs: Vec<String>,
    /// Mesh peers (multiaddrs): added to the mesh's `bootstrap`.
    #[serde(default)]
    pub mesh: Vec<String>,
}

/// Parse and check a document; every problem at once, each with its field.
pub fn parse(bytes: &[u8]) -> Result<NodeConfig, Vec<String>> {
    let c: NodeConfig = serde_json::from_slice(bytes).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    if c.schema != SCHEMA {
        problems.push(format!("schema: '{}' is not {SCHEMA}", c.schema));
    }
    for (i, k) in c.owner_keys.iter().enumerate() {
        match hex::decode(k)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            None => problems.push(format!(
                "owner_keys[{i}]: not a hex Ed25519 public key (64 hex digits)"
            )),
            Some(bytes) if ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_err() => {
                problems.push(format!("owner_keys[{i}]: not a point on Ed25519"));
            }
            Some(_) => {}
        }
    }
    for (i, p) in c.bootstrap.cometbft.iter().enumerate() {
        let ok = p.split_once('@').is_some_and(|(id, addr)| {
            id.len() == 40
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && addr
                    .rsplit_once(':')
                    .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok())
        });
        if !ok {
            problems.push(format!(
                "bootstrap.cometbft[{i}]: '{p}' is not NODEID@host:port (NODEID: 40 hex digits)"
            ));
        }
    }
    for (field, list) in [("ipfs", &c.bootstrap.ipfs), ("mesh", &c.bootstrap.mesh)] {
        for (i, a) in list.iter().enumerate() {
            if !a.starts_with('/') || !a.contains("/p2p/") {
                problems.push(format!(
                    "bootstrap.{field}[{i}]: '{a}' is not a multiaddr ending in /p2p/<peer ID>"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(c)
    } else {
        Err(problems)
    }
}

/// The installed document, if this node has one.
pub fn load(path: &Path) -> anyhow::Result<Option<NodeConfig>> {
    match std::fs::read(path) {
        Ok(bytes) => parse(&bytes)
            .map(Some)
            .map_err(|p| anyhow::anyhow!("{}: {}", path.display(), p.join("; "))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// Append `extra` to the string list `settings[key]`, skipping entries it
/// already has (the manifest's own peers come first).
pub fn extend_list(settings: &mut serde_json::Map<String, Value>, key: &str, extra: &[String]) {
    if extra.is_empty() {
        return;
    }
    let list = settings
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = list {
        for e in extra {
            if !items.iter().any(|v| v.as_str() == Some(e)) {
                items.push(Value::String(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn doc(extra: &str) -> String {
        format!(r#"{{"schema":"xnode.firstboot/v1","role":"validator"{extra}}}"#)
    }

    #[test]
    fn a_complete_document_parses() {
        let c = parse(
            doc(&format!(
                r#","owner_keys":["{KEY}"],"bootstrap":{{"cometbft":["5576458aef205977e18fd50b274e9b5d9014525a@10.0.0.1:26656"],"ipfs":["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW9yhjWbyY7SmjHdDJdGFBJ6qfZ7jxvhr2hjb2MBA2jED3"]}}"#
            ))
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.role, Role::Validator);
        assert_eq!(c.owner_keys, [KEY]);
        assert_eq!(c.bootstrap.cometbft.len(), 1);
        assert!(c.bootstrap.mesh.is_empty());
    }

    #[test]
    fn every_problem_is_named_with_its_field() {
        let bad = r#"{"schema":"xnode.firstboot/v2","role":"full","owner_keys":["abc"],
            "bootstrap":{"cometbft":["nope@host"],"mesh":["/ip4/1.2.3.4/tcp/1"]}}"#;
        let p = parse(bad.as_bytes()).unwrap_err();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].starts_with("schema:"));
        assert!(p[1].starts_with("owner_keys[0]:"));
        assert!(p[2].starts_with("bootstrap.cometbft[0]:"));
        assert!(p[3].starts_with("bootstrap.mesh[0]:"));
    }

    #[test]
    fn unknown_fields_and_roles_are_refused() {
        let p = parse(doc(r#","colour":"red""#).as_bytes()).unwrap_err();
        assert!(p[0].contains("unknown field `colour`"), "{p:?}");
        let p = parse(br#"{"schema":"xnode.firstboot/v1","role":"miner"}"#).unwrap_err();
        assert!(p[0].contains("unknown variant `miner`"), "{p:?}");
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn lists_are_extended_without_duplicates() {
        let mut m = serde_json::Map::new();
        m.insert("peers".into(), serde_json::json!(["a"]));
        extend_list(&mut m, "peers", &["a".into(), "b".into()]);
        extend_list(&mut m, "fresh", &["c".into()]);
        assert_eq!(m["peers"], serde_json::json!(["a", "b"]));
        assert_eq!(m["fresh"], serde_json::json!(["c"]));
    }
}
