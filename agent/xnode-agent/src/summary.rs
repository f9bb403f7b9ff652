//! The readable one-screen summary of an inventory.

use std::fmt::Write;

use probe::memory::Dimms;
use probe::{Inventory, Section};

fn gib(bytes: u64) -> String {
    let g = bytes as f64 / (1u64 << 30) as f64;
    if g >= 10.0 {
        format!("{g:.0} GiB")
    } else {
        format!("{g:.1} GiB")
    }
}

fn or<'a>(v: &'a Option<String>, dflt: &'a str) -> &'a str {
    v.as_deref().unwrap_or(dflt)
}

/// Write a section heading, and the error in place of the body when it failed.
fn section<'a, T>(out: &mut String, name: &str, s: &'a Option<Section<T>>) -> Option<&'a T> {
    let s = s.as_ref()?;
    match s {
        Section::Ok(v) => {
            let _ = writeln!(out, "{name}");
            Some(v)
        }
        Section::Error(e) => {
            let _ = writeln!(out, "{name}\n  unavailable: {e}");
            None
        }
    }
}

pub fn render(inv: &Inventory) -> String {
    let mut o = String::new();
    if let Some(c) = section(&mut o, "CPU", &inv.cpu) {
        let _ = writeln!(
            o,
            "  {} ({}), {} socket(s), {} cores, {} threads",
            or(&c.model, "unknown model"),
            or(&c.vendor, "unknown vendor"),
            c.sockets,
            c.physical_cores,
            c.threads
        );
        let freq = match (c.base_mhz, c.max_mhz) {
            (Some(b), Some(m)) => format!("{b} MHz base, {m} MHz max"),
            (Some(b), None) => format!("{b} MHz"),
            (None, Some(m)) => format!("{m} MHz max"),
            (None, None) => "frequency unknown".into(),
        };
        let caches: Vec<String> = c
            .caches
            .iter()
            .map(|k| {
                format!(
                    "L{}{} {} KiB",
                    k.level,
                    &k.kind[..1.min(k.kind.len())],
                    k.size_bytes >> 10
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "  {freq}; caches: {}",
            if caches.is_empty() {
                "unknown".into()
            } else {
                caches.join(", ")
            }
        );
        let _ = writeln!(o, "  features: {}", c.features.join(" "));
    }
    if let Some(m) = section(&mut o, "Memory", &inv.memory) {
        let avail = m.available_bytes.map(gib).unwrap_or_else(|| "?".into());
        let _ = writeln!(o, "  {} total, {avail} available", gib(m.total_bytes));
        for h in m.hugepages.iter().filter(|h| h.total > 0) {
            let _ = writeln!(
                o,
                "  hugepages: {} x {} KiB",
                h.total,
                h.page_size_bytes >> 10
            );
        }
        match &m.dimms {
            Dimms::Read(d) => {
                for d in d {
                    let _ = writeln!(
                        o,
                        "  DIMM {}: {} {} {} MT/s {} {}",
                        or(&d.locator, "?"),
                        gib(d.size_bytes),
                        d.memory_type,
                        d.speed_mts
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "?".into()),
                        or(&d.manufacturer, ""),
                        or(&d.part_number, "")
                    );
                }
            }
            Dimms::Unreadable(why) => {
                let _ = writeln!(o, "  DIMMs: not readable: {why}");
            }
        }
    }
    if let Some(s) = section(&mut o, "Storage", &inv.storage) {
        for d in &s.disks {
            let _ = writeln!(
                o,
                "  {:<10} {:>9} {:<7} {} serial {}{}",
                d.name,
                gib(d.size_bytes),
                d.media,
                or(&d.model, "-"),
                or(&d.serial, "-"),
                if d.removable { " (removable)" } else { "" }
            );
            let mounted = d
                .filesystems
                .iter()
                .chain(d.partitions.iter().flat_map(|p| p.filesystems.iter()));
            for f in mounted {
                let free = f.available_bytes.map(gib).unwrap_or_else(|| "?".into());
                let _ = writeln!(o, "    {} ({}), {free} free", f.mount_point, f.fs_type);
            }
        }
    }
    if let Some(n) = section(&mut o, "Network", &inv.network) {
        for l in &n.links {
            let addrs: Vec<String> = l
                .addresses
                .iter()
                .map(|a| format!("{}/{}", a.address, a.prefix_len))
                .collect();
            let _ = writeln!(
                o,
                "  {:<10} {} mtu {} {}{}{} {}",
                l.name,
                or(&l.mac, "-"),
                l.mtu.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
                l.oper_state,
                l.driver
                    .as_ref()
                    .map(|d| format!(" driver {d}"))
                    .unwrap_or_default(),
                l.speed_mbps
                    .map(|s| format!(" {s} Mb/s"))
                    .unwrap_or_default(),
                addrs.join(" ")
            );
        }
        for r in &n.default_routes {
            let gw = r
                .gateway
                .map(|g| g.to_string())
                .unwrap_or_else(|| "direct".into());
            let _ = writeln!(o, "  default via {gw} dev {}", or(&r.dev, "?"));
        }
    }
    if let Some(g) = section(&mut o, "GPUs", &inv.gpus) {
        if g.devices.is_empty() {
            let _ = writeln!(o, "  none: {}", or(&g.unavailable, "no devices"));
        }
        for d in &g.devices {
            let _ = writeln!(
                o,
                "  [{}] {} {} {} cc {} uuid {} serial {}",
                d.index,
                or(&d.name, "?"),
                d.memory_total_bytes.map(gib).unwrap_or_default(),
                or(&d.pci_bus_id, ""),
                or(&d.compute_capability, "?"),
                or(&d.uuid, "?"),
                or(&d.serial, "?")
            );
        }
        if let (Some(drv), Some(cuda)) = (&g.driver_version, &g.cuda_version) {
            let _ = writeln!(o, "  driver {drv}, CUDA {cuda}");
        }
    }
    if let Some(t) = section(&mut o, "TPM", &inv.tpm) {
        if !t.present {
            let _ = writeln!(o, "  none found");
        } else {
            let _ = writeln!(
                o,
                "  TPM {} by {} ({}), firmware {}{}",
                or(&t.version, "?"),
                or(&t.manufacturer, "?"),
                or(&t.vendor_string, "-"),
                or(&t.firmware_version, "?"),
                if t.software { ", SOFTWARE TPM" } else { "" }
            );
        }
        if let Some(why) = &t.unreachable {
            let _ = writeln!(o, "  not queried: {why}");
        }
    }
    if let Some(p) = section(&mut o, "Platform", &inv.platform) {
        match &p.dmi {
            Some(d) => {
                let _ = writeln!(
                    o,
                    "  {} {} serial {} ({} firmware, BIOS {} {})",
                    or(&d.sys_vendor, "?"),
                    or(&d.product_name, "?"),
                    d.product_serial.as_deref().unwrap_or(
                        if d.needs_root.iter().any(|f| f == "product_serial") {
                            "needs root"
                        } else {
                            "-"
                        }
                    ),
                    p.firmware,
                    or(&d.bios_vendor, "?"),
                    or(&d.bios_version, "?")
                );
            }
            None => {
                let _ = writeln!(o, "  no DMI exposed ({} firmware)", p.firmware);
            }
        }
        let v = &p.virtualization;
        let what = match (&v.vm, &v.container) {
            (None, None) => "bare metal".to_string(),
            (Some(vm), None) => format!("virtual machine: {vm}"),
            (None, Some(c)) => format!("container: {c}"),
            (Some(vm), Some(c)) => format!("container {c} in virtual machine {vm}"),
        };
        let _ = writeln!(o, "  {what}");
    }
    if let Some(s) = section(&mut o, "System", &inv.system) {
        let _ = writeln!(
            o,
            "  {} on {}, kernel {}, up {} s, boot {}",
            or(&s.hostname, "?"),
            or(&s.os, "unknown OS"),
            s.kernel_release,
            s.uptime_seconds
                .map(|u| u.to_string())
                .unwrap_or_else(|| "?".into()),
            or(&s.boot_id, "?")
        );
        if let Some(n) = &s.nixos {
            let _ = writeln!(
                o,
                "  NixOS {}: current {}",
                or(&n.version, "?"),
                or(&n.current_system, "?")
            );
            if n.booted_system != n.current_system {
                let _ = writeln!(o, "  booted {}", or(&n.booted_system, "?"));
            }
        }
    }
    o
}
