//! Resources a node offers (read from its attested inventory) and a task
//! or service needs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// Logical CPUs.
    pub cpus: u32,
    pub memory_mb: u64,
    pub gpus: u32,
    pub disk_gb: u64,
}

impl Resources {
    /// Whether `self` (what a node has) covers `need`.
    pub fn fits(&self, need: &Resources) -> bool {
        self.cpus >= need.cpus
            && self.memory_mb >= need.memory_mb
            && self.gpus >= need.gpus
            && self.disk_gb >= need.disk_gb
    }

    /// The resources an `xnode.inventory/v1` document shows. A section the
    /// probe could not read counts as none of that resource: a node is never
    /// credited with what it did not prove.
    pub fn from_inventory(inventory: &serde_json::Value) -> Resources {
        let u = |p: &str| inventory.pointer(p).and_then(|v| v.as_u64());
        let disk_bytes: u64 = inventory
            .pointer("/storage/ok/disks")
            .and_then(|d| d.as_array())
            .map(|disks| {
                disks
                    .iter()
                    .filter_map(|d| d.get("size_bytes").and_then(|s| s.as_u64()))
                    .sum()
            })
            .unwrap_or(0);
        let gpus = inventory
            .pointer("/gpus/ok/devices")
            .and_then(|d| d.as_array())
            .map_or(0, |d| d.len());
        Resources {
            cpus: u("/cpu/ok/threads").map_or(0, |t| u32::try_from(t).unwrap_or(u32::MAX)),
            memory_mb: u("/memory/ok/total_bytes").unwrap_or(0) / (1024 * 1024),
            gpus: u32::try_from(gpus).unwrap_or(u32::MAX),
            disk_gb: disk_bytes / 1_000_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fits_needs_every_dimension() {
        let have = Resources {
            cpus: 8,
            memory_mb: 16384,
            gpus: 1,
            disk_gb: 500,
        };
        assert!(have.fits(&Resources {
            cpus: 8,
            memory_mb: 1,
            gpus: 1,
            disk_gb: 0
        }));
        assert!(!have.fits(&Resources {
            gpus: 2,
            ..Resources::default()
        }));
        assert!(!have.fits(&Resources {
            cpus: 9,
            ..Resources::default()
        }));
    }

    #[test]
    fn read_from_an_inventory_and_unreadable_sections_count_as_none() {
        let inv = json!({
            "cpu": {"ok": {"threads": 16}},
            "memory": {"ok": {"total_bytes": 34359738368u64}},
            "storage": {"ok": {"disks": [{"size_bytes": 512110190592u64}, {"size_bytes": 1000204886016u64}]}},
            "gpus": {"error": "NVML not loaded"}
        });
        assert_eq!(
            Resources::from_inventory(&inv),
            Resources {
                cpus: 16,
                memory_mb: 32768,
                gpus: 0,
                disk_gb: 1512
            }
        );
    }
}
