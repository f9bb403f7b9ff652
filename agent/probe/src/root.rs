//! The filesystem the probe reads: `/` on a node, a fixture tree in tests.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::ProbeError;

/// Base directory under which `/proc`, `/sys`, `/run` and `/etc` are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    base: PathBuf,
}

/// Outcome of reading a file that may legitimately be missing or root-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readout {
    Value(String),
    Missing,
    NeedsRoot,
}

impl Root {
    pub fn host() -> Self {
        Root {
            base: PathBuf::from("/"),
        }
    }

    pub fn at(base: impl Into<PathBuf>) -> Self {
        Root { base: base.into() }
    }

    pub fn is_host(&self) -> bool {
        self.base == Path::new("/")
    }

    /// Map an absolute host path into this root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.base.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    pub fn read(&self, abs: impl AsRef<Path>) -> Result<String, ProbeError> {
        let path = self.path(abs);
        std::fs::read_to_string(&path).map_err(|source| ProbeError::Read { path, source })
    }

    pub fn read_bytes(&self, abs: impl AsRef<Path>) -> Result<Vec<u8>, ProbeError> {
        let path = self.path(abs);
        std::fs::read(&path).map_err(|source| ProbeError::Read { path, source })
    }

    /// A sysfs-style one-line value, trimmed; `None` when absent, unreadable or empty.
    pub fn value(&self, abs: impl AsRef<Path>) -> Option<String> {
        match self.readout(abs) {
            Readout::Value(v) => Some(v),
            _ => None,
        }
    }

    /// A trimmed one-line value, telling "missing" apart from "needs root".
    pub fn readout(&self, abs: impl AsRef<Path>) -> Readout {
        match std::fs::read(self.path(abs)) {
            Ok(bytes) => {
                let s = String::from_utf8_lossy(&bytes).trim().to_string();
                if s.is_empty() {
                    Readout::Missing
                } else {
                    Readout::Value(s)
                }
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Readout::NeedsRoot,
            Err(_) => Readout::Missing,
        }
    }

    pub fn parse<T: std::str::FromStr>(&self, abs: impl AsRef<Path>) -> Option<T> {
        self.value(abs).and_then(|v| v.parse().ok())
    }

    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        self.path(abs).exists()
    }

    /// Sorted entry names of a directory; empty when it does not exist.
    pub fn list(&self, abs: impl AsRef<Path>) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(abs))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Last component of a symlink's target (e.g. a driver name).
    pub fn link_name(&self, abs: impl AsRef<Path>) -> Option<String> {
        std::fs::read_link(self.path(abs))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// A symlink's full target as written.
    pub fn link_target(&self, abs: impl AsRef<Path>) -> Option<String> {
        std::fs::read_link(self.path(abs))
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    }
}

/// Parse "key: value" or "key=value" style lines into pairs.
pub fn key_values(text: &str, sep: char) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(move |l| {
        let (k, v) = l.split_once(sep)?;
        Some((k.trim(), v.trim()))
    })
}

/// Parse an os-release style `KEY=value` file, unquoting values.
pub fn parse_env(text: &str) -> std::collections::BTreeMap<String, String> {
    key_values(text, '=')
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect()
}

/// Parse a kernel CPU list such as "0-3,8,10-11".
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5\n"), Some(vec![5]));
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a-b"), None);
        assert_eq!(parse_cpu_list("0-4294967295"), None);
    }

    #[test]
    fn root_maps_absolute_paths() {
        let r = Root::at("/tmp/fx");
        assert_eq!(
            r.path("/proc/meminfo"),
            PathBuf::from("/tmp/fx/proc/meminfo")
        );
        assert!(Root::host().is_host());
    }
}
