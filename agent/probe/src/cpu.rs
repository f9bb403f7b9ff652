//! CPU: vendor, model, topology, frequencies, workload-relevant flags, caches.
//!
//! Identity and flags come from `/proc/cpuinfo`; topology, frequencies and
//! caches from `/sys/devices/system/cpu`, which the kernel fills from CPUID
//! and ACPI tables.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::root::{key_values, parse_cpu_list};
use crate::{ProbeError, Root};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    pub architecture: String,
    pub vendor: Option<String>,
    pub model: Option<String>,
    /// CPUID family/model/stepping as the kernel reports them (x86).
    pub family: Option<u32>,
    pub model_id: Option<u32>,
    pub stepping: Option<u32>,
    pub microcode: Option<String>,
    pub sockets: u32,
    pub physical_cores: u32,
    /// Logical CPUs online.
    pub threads: u32,
    pub base_mhz: Option<u32>,
    pub max_mhz: Option<u32>,
    /// Flags that decide what workloads the CPU can take (SIMD, crypto, virtualization).
    pub features: Vec<String>,
    /// Every flag the kernel reports.
    pub flags: Vec<String>,
    pub caches: Vec<Cache>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    pub level: u8,
    /// "Data", "Instruction" or "Unified".
    pub kind: String,
    pub size_bytes: u64,
    /// How many of this cache the package set has (threads / sharing threads).
    pub instances: u32,
}

/// Flags reported in `features`: exact names, or prefixes ending in `*`.
const WORKLOAD_FLAGS: &[&str] = &[
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "bmi2",
    "avx512*",
    "avx_vnni",
    "amx*",
    "aes",
    "vaes",
    "pclmulqdq",
    "vpclmulqdq",
    "sha_ni",
    "rdrand",
    "rdseed",
    "vmx",
    "svm",
    "sev",
    "sev_es",
    "sev_snp",
    "tdx_guest",
    "sme",
    "hypervisor",
    "asimd",
    "sha2",
    "sha3",
    "sve",
    "sve2",
];

fn is_workload_flag(flag: &str) -> bool {
    WORKLOAD_FLAGS.iter().any(|w| match w.strip_suffix('*') {
        Some(prefix) => flag.starts_with(prefix),
        None => flag == *w,
    })
}

/// One `processor` block of /proc/cpuinfo.
#[derive(Debug, Default)]
struct CpuinfoEntry {
    vendor: Option<String>,
    model: Option<String>,
    family: Option<u32>,
    model_id: Option<u32>,
    stepping: Option<u32>,
    microcode: Option<String>,
    physical_id: Option<u32>,
    core_id: Option<u32>,
    mhz: Option<f64>,
    flags: Vec<String>,
}

fn parse_cpuinfo(text: &str) -> Result<Vec<CpuinfoEntry>, String> {
    let mut entries = Vec::new();
    for block in text.split("\n\n").filter(|b| b.contains("processor")) {
        let mut e = CpuinfoEntry::default();
        for (k, v) in key_values(block, ':') {
            match k {
                "vendor_id" | "CPU implementer" => e.vendor = Some(v.to_string()),
                "model name" | "Processor" => e.model = Some(v.to_string()),
                "cpu family" => e.family = v.parse().ok(),
                "model" => e.model_id = v.parse().ok(),
                "stepping" => e.stepping = v.parse().ok(),
                "microcode" => e.microcode = Some(v.to_string()),
                "physical id" => e.physical_id = v.parse().ok(),
                "core id" => e.core_id = v.parse().ok(),
                "cpu MHz" => e.mhz = v.parse().ok(),
                "flags" | "Features" => {
                    e.flags = v.split_whitespace().map(str::to_string).collect()
                }
                _ => {}
            }
        }
        entries.push(e);
    }
    if entries.is_empty() {
        return Err("no 'processor' entries".into());
    }
    Ok(entries)
}

pub fn probe(root: &Root) -> Result<Cpu, ProbeError> {
    let path = "/proc/cpuinfo";
    let entries =
        parse_cpuinfo(&root.read(path)?).map_err(|r| ProbeError::malformed(root.path(path), r))?;
    let first = &entries[0];

    let online = root
        .value("/sys/devices/system/cpu/online")
        .and_then(|s| parse_cpu_list(&s))
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| (0..entries.len() as u32).collect());

    // Topology: sysfs per CPU, falling back to cpuinfo's physical/core ids.
    let mut packages = BTreeSet::new();
    let mut cores = BTreeSet::new();
    for (i, cpu) in online.iter().enumerate() {
        let topo = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let pkg = root
            .parse::<i64>(format!("{topo}/physical_package_id"))
            .or_else(|| entries.get(i).and_then(|e| e.physical_id).map(i64::from))
            .unwrap_or(0);
        let core = root
            .parse::<i64>(format!("{topo}/core_id"))
            .or_else(|| entries.get(i).and_then(|e| e.core_id).map(i64::from))
            .unwrap_or(i64::from(*cpu));
        packages.insert(pkg);
        cores.insert((pkg, core));
    }

    let freq = |name: &str| {
        root.parse::<u64>(format!("/sys/devices/system/cpu/cpu0/cpufreq/{name}"))
            .map(|khz| (khz / 1000) as u32)
    };
    let base_mhz = freq("base_frequency").or_else(|| first.mhz.map(|m| m.round() as u32));
    let max_mhz = freq("cpuinfo_max_freq");

    let mut flags = first.flags.clone();
    flags.sort();
    flags.dedup();
    let features = flags
        .iter()
        .filter(|f| is_workload_flag(f))
        .cloned()
        .collect();

    Ok(Cpu {
        architecture: std::env::consts::ARCH.to_string(),
        vendor: first.vendor.clone(),
        model: first.model.clone(),
        family: first.family,
        model_id: first.model_id,
        stepping: first.stepping,
        microcode: first.microcode.clone(),
        sockets: packages.len().max(1) as u32,
        physical_cores: cores.len().max(1) as u32,
        threads: online.len() as u32,
        base_mhz,
        max_mhz,
        features,
        flags,
        caches: caches(root, online.len() as u32),
    })
}

/// Caches seen from CPU 0, with how many instances the machine has.
fn caches(root: &Root, threads: u32) -> Vec<Cache> {
    let dir = "/sys/devices/system/cpu/cpu0/cache";
    let mut out = Vec::new();
    for index in root
        .list(dir)
        .into_iter()
        .filter(|n| n.starts_with("index"))
    {
        let d = format!("{dir}/{index}");
        let (Some(level), Some(kind), Some(size)) = (
            root.parse::<u8>(format!("{d}/level")),
            root.value(format!("{d}/type")),
            root.value(format!("{d}/size")).and_then(|s| parse_size(&s)),
        ) else {
            continue;
        };
        let sharing = root
            .value(format!("{d}/shared_cpu_list"))
            .and_then(|s| parse_cpu_list(&s))
            .map(|l| l.len() as u32)
            .filter(|n| *n > 0)
            .unwrap_or(1);
        out.push(Cache {
            level,
            kind,
            size_bytes: size,
            instances: threads.div_ceil(sharing).max(1),
        });
    }
    out
}

/// Parse sysfs cache sizes such as "32K", "1024K", "32M".
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K') => (&s[..i], 1u64 << 10),
        (i, 'M') => (&s[..i], 1 << 20),
        (i, 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    const CPUINFO: &str =
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n\
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz\nstepping\t: 7\nmicrocode\t: 0x5003604\n\
cpu MHz\t\t: 2100.000\nphysical id\t: 0\ncore id\t\t: 0\n\
flags\t\t: fpu sse4_2 avx avx2 avx512f avx512_vnni aes sha_ni vmx hypervisor\n\n\
processor\t: 1\nvendor_id\t: GenuineIntel\nphysical id\t: 0\ncore id\t\t: 0\nflags\t\t: fpu\n\n\
processor\t: 2\nvendor_id\t: GenuineIntel\nphysical id\t: 1\ncore id\t\t: 0\nflags\t\t: fpu\n\n\
processor\t: 3\nvendor_id\t: GenuineIntel\nphysical id\t: 1\ncore id\t\t: 1\nflags\t\t: fpu\n\n";

    #[test]
    fn cpuinfo_only_topology_and_features() {
        let fx = Fixture::new();
        fx.file("/proc/cpuinfo", CPUINFO);
        let cpu = probe(&fx.root()).unwrap();
        assert_eq!(cpu.vendor.as_deref(), Some("GenuineIntel"));
        assert_eq!(
            cpu.model.as_deref(),
            Some("Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz")
        );
        assert_eq!(
            (cpu.family, cpu.model_id, cpu.stepping),
            (Some(6), Some(85), Some(7))
        );
        assert_eq!((cpu.sockets, cpu.physical_cores, cpu.threads), (2, 3, 4));
        assert_eq!(cpu.base_mhz, Some(2100));
        assert_eq!(
            cpu.features,
            [
                "aes",
                "avx",
                "avx2",
                "avx512_vnni",
                "avx512f",
                "hypervisor",
                "sha_ni",
                "sse4_2",
                "vmx"
            ]
        );
        assert!(cpu.flags.contains(&"fpu".to_string()));
        assert!(cpu.caches.is_empty());
    }

    #[test]
    fn sysfs_topology_frequency_and_caches() {
        let fx = Fixture::new();
        fx.file("/proc/cpuinfo", CPUINFO)
            .file("/sys/devices/system/cpu/online", "0-3\n")
            .file(
                "/sys/devices/system/cpu/cpu0/cpufreq/base_frequency",
                "2100000\n",
            )
            .file(
                "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
                "3900000\n",
            );
        for cpu in 0..4 {
            let t = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
            fx.file(&format!("{t}/physical_package_id"), "0\n")
                .file(&format!("{t}/core_id"), format!("{}\n", cpu / 2));
        }
        let c = "/sys/devices/system/cpu/cpu0/cache";
        fx.file(&format!("{c}/index0/level"), "1")
            .file(&format!("{c}/index0/type"), "Data")
            .file(&format!("{c}/index0/size"), "48K")
            .file(&format!("{c}/index0/shared_cpu_list"), "0-1")
            .file(&format!("{c}/index3/level"), "3")
            .file(&format!("{c}/index3/type"), "Unified")
            .file(&format!("{c}/index3/size"), "30M")
            .file(&format!("{c}/index3/shared_cpu_list"), "0-3")
            // Truncated entry: skipped, not fatal.
            .file(&format!("{c}/index4/level"), "");
        let cpu = probe(&fx.root()).unwrap();
        assert_eq!((cpu.sockets, cpu.physical_cores, cpu.threads), (1, 2, 4));
        assert_eq!((cpu.base_mhz, cpu.max_mhz), (Some(2100), Some(3900)));
        assert_eq!(
            cpu.caches,
            vec![
                Cache {
                    level: 1,
                    kind: "Data".into(),
                    size_bytes: 48 << 10,
                    instances: 2
                },
                Cache {
                    level: 3,
                    kind: "Unified".into(),
                    size_bytes: 30 << 20,
                    instances: 1
                },
            ]
        );
    }

    #[test]
    fn malformed_and_missing_cpuinfo_are_errors() {
        let fx = Fixture::new();
        let err = probe(&fx.root()).unwrap_err().to_string();
        assert!(
            err.contains("cannot read") && err.contains("cpuinfo"),
            "{err}"
        );
        fx.file("/proc/cpuinfo", "garbage without entries\n\x00\x01");
        let err = probe(&fx.root()).unwrap_err().to_string();
        assert!(
            err.contains("malformed") && err.contains("no 'processor'"),
            "{err}"
        );
    }

    #[test]
    fn truncated_cpuinfo_still_yields_what_it_has() {
        let fx = Fixture::new();
        fx.file("/proc/cpuinfo", &CPUINFO[..60]);
        let cpu = probe(&fx.root()).unwrap();
        assert_eq!(cpu.threads, 1);
        assert_eq!(cpu.vendor.as_deref(), Some("GenuineIntel"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32K"), Some(32768));
        assert_eq!(parse_size("8M"), Some(8 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }
}
