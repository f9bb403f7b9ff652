//! The node home: `init_home` plans every file (config.toml rendered from
//! the settings, the genesis installed once, keys made once, the validator
//! sign state), checks everything, then writes atomically; `render_config`,
//! what init_home reports (`InitReport`) and why it stops (`InitError`).

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;

use super::keys::{
    new_signing_key, node_id_of, node_key_json, parse_node_key, parse_pv_key, pv_key_json,
    validator_address_of, PUB_KEY_TYPE,
};
use super::settings::{json_to_toml, Settings};

// The home layout init_home writes, relative to the home (CometBFT's
// defaults; render_config spells them out in config.toml).
const GENESIS: &str = "config/genesis.json";
const CONFIG: &str = "config/config.toml";
pub(super) const NODE_KEY: &str = "config/node_key.json";
const PV_KEY: &str = "config/priv_validator_key.json";
const PV_STATE: &str = "data/priv_validator_state.json";

/// data/priv_validator_state.json (privval/file.go FilePVLastSignState);
/// the height is an int64, which CometBFT's JSON writes as a string.
#[derive(Debug, Serialize)]
struct PvStateFile {
    height: String,
    round: i32,
    step: i8,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(home: &Path) -> Settings {
        super::super::settings::test_settings(home)
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
