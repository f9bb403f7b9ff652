//! Memory: host totals from /proc/meminfo (not cgroup-limited figures),
//! hugepages, and DIMMs from the SMBIOS table when it is readable.

use std::io::ErrorKind;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::root::key_values;
use crate::smbios::{self, Dimm};
use crate::{ProbeError, Root};

pub const SMBIOS_TABLE: &str = "/sys/firmware/dmi/tables/DMI";

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: Option<u64>,
    pub swap_total_bytes: Option<u64>,
    pub hugepages: Vec<HugePages>,
    /// Installed modules, or why they could not be read.
    pub dimms: Dimms,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HugePages {
    pub page_size_bytes: u64,
    pub total: u64,
    pub free: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Dimms {
    Read(Vec<Dimm>),
    /// Why the SMBIOS table could not be read (e.g. "needs root").
    Unreadable(String),
}

/// Values of /proc/meminfo in bytes (the file states kB).
fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    key_values(text, ':')
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| {
            let mut parts = v.split_whitespace();
            let n: u64 = parts.next()?.parse().ok()?;
            match parts.next() {
                Some("kB") => n.checked_mul(1024),
                None => Some(n),
                Some(_) => None,
            }
        })
}

pub fn probe(root: &Root) -> Result<Memory, ProbeError> {
    let path = "/proc/meminfo";
    let text = root.read(path)?;
    let total_bytes = meminfo_bytes(&text, "MemTotal")
        .ok_or_else(|| ProbeError::malformed(root.path(path), "no readable MemTotal line"))?;
    Ok(Memory {
        total_bytes,
        available_bytes: meminfo_bytes(&text, "MemAvailable"),
        swap_total_bytes: meminfo_bytes(&text, "SwapTotal"),
        hugepages: hugepages(root, &text),
        dimms: read_dimms(root),
    })
}

/// Every hugepage size the kernel offers, from sysfs; /proc/meminfo's
/// default size as a fallback.
fn hugepages(root: &Root, meminfo: &str) -> Vec<HugePages> {
    let dir = "/sys/kernel/mm/hugepages";
    let mut out: Vec<HugePages> = root
        .list(dir)
        .into_iter()
        .filter_map(|name| {
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(HugePages {
                page_size_bytes: kb * 1024,
                total: root.parse(format!("{dir}/{name}/nr_hugepages"))?,
                free: root.parse(format!("{dir}/{name}/free_hugepages")),
            })
        })
        .collect();
    if out.is_empty() {
        if let (Some(size), Some(total)) = (
            meminfo_bytes(meminfo, "Hugepagesize"),
            meminfo_bytes(meminfo, "HugePages_Total"),
        ) {
            out.push(HugePages {
                page_size_bytes: size,
                total,
                free: meminfo_bytes(meminfo, "HugePages_Free"),
            });
        }
    }
    out.sort_by_key(|h| h.page_size_bytes);
    out
}

fn read_dimms(root: &Root) -> Dimms {
    match std::fs::read(root.path(SMBIOS_TABLE)) {
        Ok(table) => match smbios::dimms(&table) {
            Ok(d) if d.is_empty() => {
                Dimms::Unreadable("the SMBIOS table lists no installed memory device".into())
            }
            Ok(d) => Dimms::Read(d),
            Err(e) => Dimms::Unreadable(format!("malformed SMBIOS table {SMBIOS_TABLE}: {e}")),
        },
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            Dimms::Unreadable(format!("needs root ({SMBIOS_TABLE} is root-only)"))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Dimms::Unreadable(format!(
            "the firmware exposes no SMBIOS table ({SMBIOS_TABLE} is absent)"
        )),
        Err(e) => Dimms::Unreadable(format!("cannot read {SMBIOS_TABLE}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;
    use crate::smbios::tests::{end_of_table, type17};

    const MEMINFO: &str = "MemTotal:       16318412 kB\nMemFree:         1000000 kB\n\
MemAvailable:   12000000 kB\nSwapTotal:             0 kB\nHugePages_Total:       4\n\
HugePages_Free:        3\nHugepagesize:       2048 kB\n";

    #[test]
    fn meminfo_and_hugepage_fallback() {
        let fx = Fixture::new();
        fx.file("/proc/meminfo", MEMINFO);
        let m = probe(&fx.root()).unwrap();
        assert_eq!(m.total_bytes, 16318412 * 1024);
        assert_eq!(m.available_bytes, Some(12000000 * 1024));
        assert_eq!(m.swap_total_bytes, Some(0));
        assert_eq!(
            m.hugepages,
            vec![HugePages {
                page_size_bytes: 2 << 20,
                total: 4,
                free: Some(3)
            }]
        );
        match m.dimms {
            Dimms::Unreadable(r) => assert!(r.contains("absent"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sysfs_hugepages_and_dimms() {
        let fx = Fixture::new();
        let mut table = type17(
            0x7FFF,
            32 * 1024,
            &["DIMM A1", "P0", "Micron", "1234", "MTA36"],
        );
        table.extend(end_of_table());
        fx.file("/proc/meminfo", MEMINFO)
            .file(
                "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
                "2\n",
            )
            .file(
                "/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages",
                "2\n",
            )
            .file(
                "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
                "0\n",
            )
            .file(SMBIOS_TABLE, table);
        let m = probe(&fx.root()).unwrap();
        assert_eq!(m.hugepages.len(), 2);
        assert_eq!(
            m.hugepages[1],
            HugePages {
                page_size_bytes: 1 << 30,
                total: 2,
                free: Some(2)
            }
        );
        let Dimms::Read(d) = m.dimms else {
            panic!("dimms not read")
        };
        assert_eq!(d[0].size_bytes, 32 << 30);
        assert_eq!(d[0].part_number.as_deref(), Some("MTA36"));
    }

    #[test]
    fn bad_inputs() {
        let fx = Fixture::new();
        assert!(probe(&fx.root())
            .unwrap_err()
            .to_string()
            .contains("meminfo"));
        fx.file("/proc/meminfo", "MemTotal: lots kB\n");
        assert!(probe(&fx.root())
            .unwrap_err()
            .to_string()
            .contains("MemTotal"));
        fx.file("/proc/meminfo", MEMINFO)
            .file(SMBIOS_TABLE, [17u8, 0x40, 0]);
        match probe(&fx.root()).unwrap().dimms {
            Dimms::Unreadable(r) => assert!(r.contains("malformed"), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}
