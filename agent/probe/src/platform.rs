//! Platform: DMI identity of system, board, chassis and BIOS; firmware
//! type; and virtualization detected from first-hand signals (CPUID's
//! hypervisor leaf, DMI strings, /sys/hypervisor, container markers).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::root::Readout;
use crate::{ProbeError, Root};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// None when the firmware exposes no DMI (many ARM boards, some containers).
    pub dmi: Option<Dmi>,
    /// "uefi" or "bios".
    pub firmware: String,
    /// UEFI Secure Boot state, when the firmware says.
    pub secure_boot: Option<bool>,
    pub virtualization: Virtualization,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dmi {
    pub sys_vendor: Option<String>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    pub product_serial: Option<String>,
    pub product_uuid: Option<String>,
    pub product_sku: Option<String>,
    pub product_family: Option<String>,
    pub board_vendor: Option<String>,
    pub board_name: Option<String>,
    pub board_version: Option<String>,
    pub board_serial: Option<String>,
    pub chassis_vendor: Option<String>,
    pub chassis_type: Option<String>,
    pub chassis_serial: Option<String>,
    pub bios_vendor: Option<String>,
    pub bios_version: Option<String>,
    pub bios_date: Option<String>,
    /// Fields that exist but only root may read (serials, UUID).
    pub needs_root: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Virtualization {
    /// Hypervisor: kvm, qemu, vmware, microsoft, xen, oracle, bhyve, amazon, google, vm-other.
    pub vm: Option<String>,
    /// Container runtime: docker, podman, lxc, kubernetes, systemd-nspawn, container-other.
    pub container: Option<String>,
    /// The evidence, e.g. "cpuid:KVMKVMKVM", "dmi:sys_vendor=QEMU", "file:/.dockerenv".
    pub signals: Vec<String>,
}

const DMI_DIR: &str = "/sys/class/dmi/id";
const EFI_SECURE_BOOT: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

pub fn probe(root: &Root) -> Result<Platform, ProbeError> {
    let dmi = read_dmi(root);
    let firmware = if root.exists("/sys/firmware/efi") {
        "uefi"
    } else {
        "bios"
    };
    // efivars: 4 bytes of attributes, then the one-byte value.
    let secure_boot = std::fs::read(root.path(EFI_SECURE_BOOT))
        .ok()
        .and_then(|b| b.get(4).map(|v| *v == 1));
    let cpuid = if root.is_host() {
        cpuid_hypervisor()
    } else {
        None
    };
    Ok(Platform {
        virtualization: detect_virtualization(root, dmi.as_ref(), cpuid.as_deref()),
        dmi,
        firmware: firmware.to_string(),
        secure_boot,
    })
}

fn read_dmi(root: &Root) -> Option<Dmi> {
    if !root.exists(DMI_DIR) {
        return None;
    }
    let mut dmi = Dmi::default();
    let mut field = |name: &str| match root.readout(format!("{DMI_DIR}/{name}")) {
        Readout::Value(v) => Some(v),
        Readout::NeedsRoot => {
            dmi.needs_root.push(name.to_string());
            None
        }
        Readout::Missing => None,
    };
    let d = Dmi {
        sys_vendor: field("sys_vendor"),
        product_name: field("product_name"),
        product_version: field("product_version"),
        product_serial: field("product_serial"),
        product_uuid: field("product_uuid"),
        product_sku: field("product_sku"),
        product_family: field("product_family"),
        board_vendor: field("board_vendor"),
        board_name: field("board_name"),
        board_version: field("board_version"),
        board_serial: field("board_serial"),
        chassis_vendor: field("chassis_vendor"),
        chassis_type: field("chassis_type"),
        chassis_serial: field("chassis_serial"),
        bios_vendor: field("bios_vendor"),
        bios_version: field("bios_version"),
        bios_date: field("bios_date"),
        needs_root: Vec::new(),
    };
    Some(Dmi {
        needs_root: dmi.needs_root,
        ..d
    })
}

/// The hypervisor vendor signature of CPUID leaf 0x4000_0000, when the
/// CPU says it runs under one.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn cpuid_hypervisor() -> Option<String> {
    let cpuid = raw_cpuid::CpuId::new();
    let hv = cpuid.get_hypervisor_info()?;
    let sig = match hv.identify() {
        raw_cpuid::Hypervisor::KVM => "KVMKVMKVM",
        raw_cpuid::Hypervisor::QEMU => "TCGTCGTCGTCG",
        raw_cpuid::Hypervisor::VMware => "VMwareVMware",
        raw_cpuid::Hypervisor::HyperV => "Microsoft Hv",
        raw_cpuid::Hypervisor::Xen => "XenVMMXenVMM",
        raw_cpuid::Hypervisor::Bhyve => "bhyve bhyve ",
        raw_cpuid::Hypervisor::QNX => "QNXQVMBSQG",
        raw_cpuid::Hypervisor::ACRN => "ACRNACRNACRN",
        raw_cpuid::Hypervisor::Unknown(b, c, d) => {
            let bytes: Vec<u8> = [b, c, d].iter().flat_map(|r| r.to_le_bytes()).collect();
            return Some(
                String::from_utf8_lossy(&bytes)
                    .trim_end_matches('\0')
                    .to_string(),
            );
        }
    };
    Some(sig.to_string())
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn cpuid_hypervisor() -> Option<String> {
    None
}

fn vm_from_cpuid(sig: &str) -> &'static str {
    match sig {
        "KVMKVMKVM" => "kvm",
        "TCGTCGTCGTCG" => "qemu",
        "VMwareVMware" => "vmware",
        "Microsoft Hv" => "microsoft",
        "XenVMMXenVMM" => "xen",
        "bhyve bhyve " | "bhyve bhyve" => "bhyve",
        "VBoxVBoxVBox" => "oracle",
        _ => "vm-other",
    }
}

fn vm_from_dmi(vendor: &str, product: &str) -> Option<&'static str> {
    let pairs: &[(&str, &str)] = &[
        ("KVM", "kvm"),
        ("QEMU", "qemu"),
        ("VMware", "vmware"),
        ("innotek GmbH", "oracle"),
        ("VirtualBox", "oracle"),
        ("Xen", "xen"),
        ("Bochs", "bochs"),
        ("Parallels", "parallels"),
        ("BHYVE", "bhyve"),
        ("Amazon EC2", "amazon"),
        ("Google", "google"),
    ];
    if vendor == "Microsoft Corporation" && product.contains("Virtual Machine") {
        return Some("microsoft");
    }
    pairs
        .iter()
        .find(|(needle, _)| vendor.starts_with(needle) || product.starts_with(needle))
        .map(|(_, name)| *name)
}

/// Decide from the signals; CPUID wins over DMI (a KVM guest may carry
/// "QEMU" DMI strings), DMI over the bare hypervisor flag.
pub fn detect_virtualization(
    root: &Root,
    dmi: Option<&Dmi>,
    cpuid: Option<&str>,
) -> Virtualization {
    let mut v = Virtualization::default();
    if let Some(sig) = cpuid {
        v.signals.push(format!("cpuid:{sig}"));
        v.vm = Some(vm_from_cpuid(sig).to_string());
    }
    if let Some(d) = dmi {
        let vendor = d.sys_vendor.as_deref().unwrap_or("");
        let product = d.product_name.as_deref().unwrap_or("");
        if let Some(name) = vm_from_dmi(vendor, product) {
            v.signals
                .push(format!("dmi:sys_vendor={vendor},product_name={product}"));
            if v.vm.as_deref().is_none_or(|vm| vm == "vm-other") {
                v.vm = Some(name.to_string());
            }
        }
    }
    if let Some(t) = root.value("/sys/hypervisor/type") {
        v.signals.push(format!("sysfs:/sys/hypervisor/type={t}"));
        v.vm.get_or_insert(if t == "xen" {
            "xen".into()
        } else {
            "vm-other".into()
        });
    }
    if v.vm.is_none()
        && root.value("/proc/cpuinfo").is_some_and(|c| {
            c.lines()
                .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
        })
    {
        v.signals.push("cpuinfo:hypervisor-flag".into());
        v.vm = Some("vm-other".into());
    }
    detect_container(root, &mut v);
    v
}

fn detect_container(root: &Root, v: &mut Virtualization) {
    let mut found = |signal: String, name: &str| {
        v.signals.push(signal);
        v.container.get_or_insert_with(|| name.to_string());
    };
    if let Some(c) = root.value("/run/systemd/container") {
        found(format!("file:/run/systemd/container={c}"), &c);
    }
    if root.exists("/run/.containerenv") {
        found("file:/run/.containerenv".into(), "podman");
    }
    if root.exists("/.dockerenv") {
        found("file:/.dockerenv".into(), "docker");
    }
    if let Ok(env) = std::fs::read(root.path("/proc/1/environ")) {
        if let Some(c) = env
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(b"container="))
        {
            let c = String::from_utf8_lossy(c).into_owned();
            found(format!("environ:container={c}"), &c);
        }
    }
    if let Some(cg) = root.value("/proc/1/cgroup") {
        for (needle, name) in [
            ("kubepods", "kubernetes"),
            ("docker", "docker"),
            ("lxc", "lxc"),
        ] {
            if cg.contains(needle) {
                found(format!("cgroup:{needle}"), name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    fn qemu_dmi(fx: &Fixture) {
        fx.file("/sys/class/dmi/id/sys_vendor", "QEMU\n")
            .file(
                "/sys/class/dmi/id/product_name",
                "Standard PC (Q35 + ICH9, 2009)\n",
            )
            .file("/sys/class/dmi/id/product_serial", "XN-0001\n")
            .file("/sys/class/dmi/id/bios_vendor", "SeaBIOS\n")
            .file("/sys/class/dmi/id/board_name", "")
            .dir("/sys/firmware/efi");
    }

    #[test]
    fn dmi_fields_and_firmware() {
        let fx = Fixture::new();
        qemu_dmi(&fx);
        let p = probe(&fx.root()).unwrap();
        let d = p.dmi.unwrap();
        assert_eq!(d.sys_vendor.as_deref(), Some("QEMU"));
        assert_eq!(d.product_serial.as_deref(), Some("XN-0001"));
        assert_eq!(d.board_name, None);
        assert_eq!(p.firmware, "uefi");
        assert_eq!(p.virtualization.vm.as_deref(), Some("qemu"));
    }

    #[test]
    fn no_dmi_is_none() {
        let fx = Fixture::new();
        let p = probe(&fx.root()).unwrap();
        assert!(p.dmi.is_none());
        assert_eq!(p.firmware, "bios");
        assert_eq!(p.virtualization, Virtualization::default());
    }

    #[test]
    fn cpuid_outranks_dmi() {
        let fx = Fixture::new();
        qemu_dmi(&fx);
        let dmi = read_dmi(&fx.root());
        let v = detect_virtualization(&fx.root(), dmi.as_ref(), Some("KVMKVMKVM"));
        assert_eq!(v.vm.as_deref(), Some("kvm"));
        assert_eq!(v.signals.len(), 2);
        let v = detect_virtualization(&fx.root(), dmi.as_ref(), Some("TCGTCGTCGTCG"));
        assert_eq!(v.vm.as_deref(), Some("qemu"));
    }

    #[test]
    fn containers() {
        let fx = Fixture::new();
        fx.file("/.dockerenv", "")
            .file("/proc/1/cgroup", "0::/system.slice/docker-abc.scope\n")
            .file("/proc/cpuinfo", "processor : 0\nflags : fpu hypervisor\n");
        let v = detect_virtualization(&fx.root(), None, None);
        assert_eq!(v.container.as_deref(), Some("docker"));
        assert_eq!(v.vm.as_deref(), Some("vm-other"));
        fx.file("/proc/1/environ", b"PATH=/bin\0container=podman\0");
        let v = detect_virtualization(&fx.root(), None, None);
        assert_eq!(v.container.as_deref(), Some("docker"));
        assert!(v.signals.contains(&"environ:container=podman".to_string()));
    }

    #[test]
    fn hyperv_needs_product_match() {
        assert_eq!(
            vm_from_dmi("Microsoft Corporation", "Virtual Machine"),
            Some("microsoft")
        );
        assert_eq!(vm_from_dmi("Microsoft Corporation", "Surface Pro"), None);
        assert_eq!(vm_from_dmi("Dell Inc.", "PowerEdge R750"), None);
    }

    #[test]
    #[cfg(unix)]
    fn root_only_fields_are_listed() {
        use std::os::unix::fs::PermissionsExt;
        if rustix::process::geteuid().is_root() {
            eprintln!("skipped: running as root, which reads mode-0400 files anyway");
            return;
        }
        let fx = Fixture::new();
        qemu_dmi(&fx);
        let p = fx.dir.path().join("sys/class/dmi/id/product_serial");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        let d = read_dmi(&fx.root()).unwrap();
        assert_eq!(d.product_serial, None);
        assert_eq!(d.needs_root, ["product_serial"]);
    }
}
