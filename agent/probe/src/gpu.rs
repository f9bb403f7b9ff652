//! GPUs through NVML, loaded at run time: a node without the NVIDIA driver
//! gets an empty list and the reason, never an error. NVIDIA PCI functions
//! seen in sysfs are listed too, so "GPU present, driver missing" is visible.

use std::ffi::OsStr;

use nvml_wrapper::Nvml;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ProbeError, Root};

/// The library NVML ships as; overridable for tests and unusual installs.
pub const DEFAULT_NVML_LIB: &str = "libnvidia-ml.so.1";
const NVIDIA_PCI_VENDOR: &str = "0x10de";

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gpus {
    pub devices: Vec<Gpu>,
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports, "major.minor".
    pub cuda_version: Option<String>,
    /// Why `devices` is empty when NVML could not be used.
    pub unavailable: Option<String>,
    /// PCI addresses of NVIDIA display/3D controllers seen in sysfs.
    pub nvidia_pci_devices: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub index: u32,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub serial: Option<String>,
    pub board_id: Option<u32>,
    pub vbios_version: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub pci_bus_id: Option<String>,
    pub power_limit_mw: Option<u32>,
    pub power_limit_default_mw: Option<u32>,
    /// CUDA compute capability, "major.minor".
    pub compute_capability: Option<String>,
    /// MIG mode: Some(true) enabled, Some(false) disabled, None unsupported.
    pub mig_enabled: Option<bool>,
    /// Fields NVML refused, with its reason ("serial: Not supported").
    pub unreadable: Vec<String>,
}

pub fn probe(root: &Root) -> Result<Gpus, ProbeError> {
    let lib = std::env::var_os("XNODE_NVML_LIB").unwrap_or_else(|| DEFAULT_NVML_LIB.into());
    Ok(probe_with(root, &lib))
}

pub fn probe_with(root: &Root, nvml_lib: &OsStr) -> Gpus {
    let nvidia_pci_devices = nvidia_pci(root);
    let mut out = Gpus {
        devices: Vec::new(),
        driver_version: None,
        cuda_version: None,
        unavailable: None,
        nvidia_pci_devices,
    };
    let nvml = match Nvml::builder().lib_path(nvml_lib).init() {
        Ok(n) => n,
        Err(e) => {
            let seen = match out.nvidia_pci_devices.len() {
                0 => "no NVIDIA PCI device seen".to_string(),
                n => format!("{n} NVIDIA PCI device(s) seen: is the driver loaded?"),
            };
            out.unavailable = Some(format!(
                "NVML unavailable ({}: {e}); {seen}",
                nvml_lib.to_string_lossy()
            ));
            return out;
        }
    };
    out.driver_version = nvml.sys_driver_version().ok();
    out.cuda_version = nvml
        .sys_cuda_driver_version()
        .ok()
        .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10));
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => {
            out.unavailable = Some(format!("NVML loaded but cannot count devices: {e}"));
            return out;
        }
    };
    for index in 0..count {
        match nvml.device_by_index(index) {
            Ok(dev) => out.devices.push(read_device(index, &dev)),
            Err(e) => out.devices.push(Gpu {
                unreadable: vec![format!("device: {e}")],
                ..empty_gpu(index)
            }),
        }
    }
    out
}

fn empty_gpu(index: u32) -> Gpu {
    Gpu {
        index,
        name: None,
        uuid: None,
        serial: None,
        board_id: None,
        vbios_version: None,
        memory_total_bytes: None,
        pci_bus_id: None,
        power_limit_mw: None,
        power_limit_default_mw: None,
        compute_capability: None,
        mig_enabled: None,
        unreadable: Vec::new(),
    }
}

/// Keep a field's value, or record why NVML refused it.
fn take<T>(
    unreadable: &mut Vec<String>,
    field: &str,
    r: Result<T, nvml_wrapper::error::NvmlError>,
) -> Option<T> {
    r.map_err(|e| unreadable.push(format!("{field}: {e}"))).ok()
}

fn read_device(index: u32, dev: &nvml_wrapper::Device<'_>) -> Gpu {
    let mut u = Vec::new();
    Gpu {
        index,
        name: take(&mut u, "name", dev.name()),
        uuid: take(&mut u, "uuid", dev.uuid()),
        serial: take(&mut u, "serial", dev.serial()),
        board_id: take(&mut u, "board_id", dev.board_id()),
        vbios_version: take(&mut u, "vbios_version", dev.vbios_version()),
        memory_total_bytes: take(&mut u, "memory", dev.memory_info()).map(|m| m.total),
        pci_bus_id: take(&mut u, "pci", dev.pci_info()).map(|p| p.bus_id),
        power_limit_mw: take(&mut u, "power_limit", dev.enforced_power_limit()),
        power_limit_default_mw: take(
            &mut u,
            "power_limit_default",
            dev.power_management_limit_default(),
        ),
        compute_capability: take(&mut u, "compute_capability", dev.cuda_compute_capability())
            .map(|c| format!("{}.{}", c.major, c.minor)),
        // MIG is absent on most GPUs: "not supported" is an answer, not a failure.
        mig_enabled: dev.mig_mode().ok().map(|m| m.current == 1),
        unreadable: u,
    }
}

/// NVIDIA display (0x03xxxx) functions on the PCI bus, from sysfs.
fn nvidia_pci(root: &Root) -> Vec<String> {
    let dir = "/sys/bus/pci/devices";
    root.list(dir)
        .into_iter()
        .filter(|addr| {
            root.value(format!("{dir}/{addr}/vendor")).as_deref() == Some(NVIDIA_PCI_VENDOR)
                && root
                    .value(format!("{dir}/{addr}/class"))
                    .is_some_and(|c| c.starts_with("0x03"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    #[test]
    fn no_driver_is_an_empty_list_with_the_reason() {
        let fx = Fixture::new();
        fx.file("/sys/bus/pci/devices/0000:17:00.0/vendor", "0x10de\n")
            .file("/sys/bus/pci/devices/0000:17:00.0/class", "0x030200\n")
            .file("/sys/bus/pci/devices/0000:00:02.0/vendor", "0x8086\n")
            .file("/sys/bus/pci/devices/0000:00:02.0/class", "0x030000\n")
            .file("/sys/bus/pci/devices/0000:18:00.1/vendor", "0x10de\n")
            .file("/sys/bus/pci/devices/0000:18:00.1/class", "0x040300\n");
        let g = probe_with(&fx.root(), OsStr::new("/nonexistent/libnvidia-ml.so.1"));
        assert!(g.devices.is_empty());
        assert_eq!(g.nvidia_pci_devices, ["0000:17:00.0"]);
        let why = g.unavailable.unwrap();
        assert!(why.contains("/nonexistent/libnvidia-ml.so.1"), "{why}");
        assert!(why.contains("1 NVIDIA PCI device(s) seen"), "{why}");
    }

    #[test]
    fn no_gpu_at_all() {
        let fx = Fixture::new();
        let g = probe_with(&fx.root(), OsStr::new("/nonexistent/libnvidia-ml.so.1"));
        assert!(g.devices.is_empty() && g.nvidia_pci_devices.is_empty());
        assert!(g.unavailable.unwrap().contains("no NVIDIA PCI device seen"));
    }
}
