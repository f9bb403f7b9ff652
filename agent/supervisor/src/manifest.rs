//! The service manifest (`xnode.manifest/v1`): which services the node runs,
//! how their health is checked, what they depend on and how failures are
//! handled. The schema is owned here; the NixOS modules render to it.
//!
//! Parsing reports the exact field at fault ("services[1].restart.backoff_max_secs:
//! ..."), and a manifest that parses is also checked as a whole (unique
//! names and units, known dependencies, no cycles, sane timings).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "xnode.manifest/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always "xnode.manifest/v1".
    pub schema: String,
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Short name, unique in the manifest: [a-z0-9-]+.
    pub name: String,
    /// The systemd unit that runs it, e.g. "cometbft.service".
    pub unit: String,
    pub kind: Kind,
    /// How health is checked; absent means the kind's own check.
    #[serde(default)]
    pub health: Option<Health>,
    /// Services that must be up (started, healthy) before this one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Settings of the kind (CometBFT home and ports, kubo storage, ...).
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Cometbft,
    Kubo,
    Mesh,
    Generic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub check: Check,
    /// Seconds between checks.
    #[serde(default = "default_interval")]
    pub interval_secs: f64,
    /// A check that takes longer has failed.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

fn default_interval() -> f64 {
    5.0
}

fn default_timeout() -> f64 {
    2.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Check {
    /// GET the URL; healthy on the expected status.
    Http {
        url: String,
        #[serde(default = "default_status")]
        expect_status: u16,
    },
    /// Healthy when a TCP connection opens.
    Tcp { address: String },
    /// Healthy when the command exits 0.
    Exec { command: Vec<String> },
    /// The kind's own check: CometBFT /status height advancing and not
    /// catching up; kubo `id` and `repo stat`; mesh peer count.
    Kind,
}

fn default_status() -> u16 {
    200
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// Restart an active unit after this many failed checks in a row.
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
    /// First wait before a restart; doubles each time up to the maximum.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial_secs: f64,
    #[serde(default = "default_backoff_max")]
    pub backoff_max_secs: f64,
    /// Stop restarting (and say so loudly) after this many restarts without
    /// a healthy period in between.
    #[serde(default = "default_give_up")]
    pub give_up_after: u32,
}

fn default_unhealthy_after() -> u32 {
    3
}
fn default_backoff_initial() -> f64 {
    1.0
}
fn default_backoff_max() -> f64 {
    60.0
}
fn default_give_up() -> u32 {
    5
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            unhealthy_after: default_unhealthy_after(),
            backoff_initial_secs: default_backoff_initial(),
            backoff_max_secs: default_backoff_max(),
            give_up_after: default_give_up(),
        }
    }
}

/// What is wrong with a manifest, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ManifestError {
    /// Where in the document, e.g. "services[1].restart.backoff_max_secs".
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError {
        path: path.into(),
        message: message.into(),
    }
}

impl Manifest {
    /// Parse and check a manifest; every problem found, each with its field.
    pub fn parse(json: &[u8]) -> Result<Manifest, Vec<ManifestError>> {
        let de = &mut serde_json::Deserializer::from_slice(json);
        let manifest: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = match e.path().to_string() {
                p if p == "." || p.is_empty() => "(document)".to_string(),
                p => p,
            };
            vec![err(path, e.inner().to_string())]
        })?;
        let problems = manifest.problems();
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(problems)
        }
    }

    /// Whole-document checks that types alone cannot express.
    pub fn problems(&self) -> Vec<ManifestError> {
        let mut out = Vec::new();
        if self.schema != SCHEMA {
            out.push(err("schema", format!("'{}' is not {SCHEMA}", self.schema)));
        }
        let mut names = BTreeMap::new();
        let mut units = BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = |f: &str| format!("services[{i}].{f}");
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                out.push(err(
                    at("name"),
                    format!("'{}' must be lowercase letters, digits and '-'", s.name),
                ));
            }
            if names.insert(s.name.as_str(), i).is_some() {
                out.push(err(at("name"), format!("'{}' is declared twice", s.name)));
            }
            if !s.unit.ends_with(".service")
                || s.unit.contains('/')
                || s.unit.len() <= ".service".len()
            {
                out.push(err(
                    at("unit"),
                    format!(
                        "'{}' is not a systemd service unit name (NAME.service)",
                        s.unit
                    ),
                ));
            } else if !units.insert(s.unit.as_str()) {
                out.push(err(at("unit"), format!("'{}' is supervised twice", s.unit)));
            }
            if let Some(h) = &s.health {
                if !(h.interval_secs.is_finite() && h.interval_secs >= 0.1) {
                    out.push(err(at("health.interval_secs"), "must be at least 0.1"));
                }
                if !(h.timeout_secs.is_finite()
                    && h.timeout_secs > 0.0
                    && h.timeout_secs <= h.interval_secs.max(0.1) * 10.0)
                {
                    out.push(err(
                        at("health.timeout_secs"),
                        "must be positive and at most ten intervals",
                    ));
                }
                match &h.check {
                    Check::Http { url, .. }
                        if !(url.starts_with("http://") || url.starts_with("https://")) =>
                    {
                        out.push(err(
                            at("health.check.url"),
                            format!("'{url}' is not an http(s) URL"),
                        ))
                    }
                    Check::Tcp { address } if address.parse::<std::net::SocketAddr>().is_err() => {
                        out.push(err(
                            at("health.check.address"),
                            format!("'{address}' is not IP:PORT"),
                        ))
                    }
                    Check::Exec { command }
                        if command.first().is_none_or(|c| !c.starts_with('/')) =>
                    {
                        out.push(err(
                            at("health.check.command"),
                            "must start with an absolute program path",
                        ))
                    }
                    Check::Kind if s.kind == Kind::Generic => out.push(err(
                        at("health.check.type"),
                        "a generic service has no kind-specific check: use http, tcp or exec",
                    )),
                    _ => {}
                }
            }
            for (field, message) in kind_settings_problems(s) {
                out.push(err(at(&format!("settings.{field}")), message));
            }
            let r = &s.restart;
            if r.unhealthy_after == 0 {
                out.push(err(at("restart.unhealthy_after"), "must be at least 1"));
            }
            if !(r.backoff_initial_secs.is_finite() && r.backoff_initial_secs > 0.0) {
                out.push(err(at("restart.backoff_initial_secs"), "must be positive"));
            }
            if !(r.backoff_max_secs.is_finite() && r.backoff_max_secs >= r.backoff_initial_secs) {
                out.push(err(
                    at("restart.backoff_max_secs"),
                    "must be at least backoff_initial_secs",
                ));
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            for (j, d) in s.depends_on.iter().enumerate() {
                if !names.contains_key(d.as_str()) {
                    out.push(err(
                        format!("services[{i}].depends_on[{j}]"),
                        format!("no service named '{d}'"),
                    ));
                } else if d == &s.name {
                    out.push(err(
                        format!("services[{i}].depends_on[{j}]"),
                        "a service cannot depend on itself",
                    ));
                }
            }
        }
        if out.is_empty() {
            if let Err(cycle) = self.start_order() {
                out.push(err(
                    "services",
                    format!("dependency cycle: {}", cycle.join(" → ")),
                ));
            }
        }
        out
    }

    /// Services in an order where each comes after what it depends on
    /// (manifest order among equals). Err names a cycle.
    pub fn start_order(&self) -> Result<Vec<&Service>, Vec<String>> {
        let by_name: BTreeMap<&str, &Service> =
            self.services.iter().map(|s| (s.name.as_str(), s)).collect();
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
        let mut order = Vec::new();
        fn visit<'a>(
            s: &'a Service,
            by_name: &BTreeMap<&str, &'a Service>,
            marks: &mut BTreeMap<&'a str, Mark>,
            order: &mut Vec<&'a Service>,
            path: &mut Vec<String>,
        ) -> Result<(), Vec<String>> {
            match marks.get(s.name.as_str()) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|n| n == &s.name).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(s.name.clone());
                    return Err(cycle);
                }
                None => {}
            }
            marks.insert(&s.name, Mark::Visiting);
            path.push(s.name.clone());
            for d in &s.depends_on {
                if let Some(dep) = by_name.get(d.as_str()) {
                    visit(dep, by_name, marks, order, path)?;
                }
            }
            path.pop();
            marks.insert(&s.name, Mark::Done);
            order.push(s);
            Ok(())
        }
        for s in &self.services {
            visit(s, &by_name, &mut marks, &mut order, &mut Vec::new())?;
        }
        Ok(order)
    }
}

/// Problems in a service's `settings`, checked by its kind's module.
fn kind_settings_problems(s: &Service) -> Vec<(String, String)> {
    let result = match s.kind {
        Kind::Cometbft => crate::cometbft::Settings::parse(&s.settings).map(drop),
        Kind::Kubo => crate::kubo::Settings::parse(&s.settings).map(drop),
        Kind::Mesh => crate::mesh::Settings::parse(&s.settings).map(drop),
        Kind::Generic => Ok(()),
    };
    result.err().unwrap_or_default()
}

/// Deserialize a kind's settings from the manifest's map, the error
/// pointing at the field (relative to `settings`).
pub fn settings_from_map<T: serde::de::DeserializeOwned>(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, Vec<(String, String)>> {
    let value = serde_json::Value::Object(map.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = match e.path().to_string() {
            p if p == "." || p.is_empty() => "(settings)".to_string(),
            p => p,
        };
        vec![(path, e.inner().to_string())]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/manifest.json"
        ))
        .unwrap()
    }

    fn with(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(&golden()).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    fn problems(json: &[u8]) -> Vec<String> {
        Manifest::parse(json)
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn golden_manifest_parses_in_dependency_order() {
        let m = Manifest::parse(&golden()).unwrap();
        let order: Vec<&str> = m
            .start_order()
            .unwrap()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(order, ["ipfs", "cometbft", "mesh", "metrics-exporter"]);
        let c = &m.services[0];
        assert_eq!(c.kind, Kind::Cometbft);
        assert_eq!(c.restart.unhealthy_after, 3);
        assert_eq!(c.health.as_ref().unwrap().check, Check::Kind);
    }

    #[test]
    fn type_errors_point_at_the_field() {
        let json = with(|v| v["services"][1]["restart"]["backoff_max_secs"] = "a minute".into());
        let p = problems(&json);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("services[1].restart.backoff_max_secs: invalid type"),
            "{p:?}"
        );
        let json = with(|v| v["services"][0]["kind"] = "postgres".into());
        assert!(problems(&json)[0].starts_with("services[0].kind: unknown variant `postgres`"));
        let json = with(|v| v["services"][2]["helth"] = serde_json::json!({}));
        assert!(problems(&json)[0].contains("unknown field `helth`"));
        let p = problems(b"{");
        assert!(p[0].contains("EOF while parsing"), "{p:?}");
    }

    #[test]
    fn whole_document_checks() {
        let json = with(|v| {
            v["schema"] = "xnode.manifest/v0".into();
            v["services"][1]["name"] = "cometbft".into();
            v["services"][2]["unit"] = "mesh".into();
            v["services"][3]["depends_on"] = serde_json::json!(["nosuch"]);
            v["services"][0]["restart"]["unhealthy_after"] = 0.into();
            v["services"][3]["health"]["check"] =
                serde_json::json!({"type": "tcp", "address": "localhost"});
        });
        let p = problems(&json);
        for want in [
            "schema: 'xnode.manifest/v0' is not xnode.manifest/v1",
            "services[1].name: 'cometbft' is declared twice",
            "services[2].unit: 'mesh' is not a systemd service unit name",
            "services[3].depends_on[0]: no service named 'nosuch'",
            "services[0].restart.unhealthy_after: must be at least 1",
            "services[3].health.check.address: 'localhost' is not IP:PORT",
        ] {
            assert!(
                p.iter().any(|x| x.starts_with(want)),
                "missing '{want}' in {p:#?}"
            );
        }
    }

    #[test]
    fn cycles_are_named() {
        let json = with(|v| v["services"][1]["depends_on"] = serde_json::json!(["cometbft"]));
        let p = problems(&json);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("dependency cycle") && p[0].contains("cometbft → ipfs → cometbft"),
            "{p:?}"
        );
    }

    #[test]
    fn defaults_fill_optional_fields() {
        let m = Manifest::parse(br#"{"schema":"xnode.manifest/v1","services":[{"name":"x","unit":"x.service","kind":"generic"}]}"#).unwrap();
        assert_eq!(m.services[0].restart, RestartPolicy::default());
        assert!(m.services[0].health.is_none() && m.services[0].depends_on.is_empty());
    }
}
