//! `configure`: patch `<repo>/config` (made by `ipfs init`) to the settings,
//! atomically and only when a value changed; what it reports and why it can
//! fail, and the deep merge and diff it rests on.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::Settings;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
