//! Storage: every block device with identity, size and media, its
//! partitions, and the filesystems mounted from it with their free space.
//!
//! Identity comes from sysfs, with udev's database (which udev filled by
//! asking the device) as the fallback for serials and WWNs on SCSI/SATA.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ProbeError, Root};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub disks: Vec<Disk>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub name: String,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub firmware_revision: Option<String>,
    pub size_bytes: u64,
    /// "nvme", "ssd", "hdd" or "virtual" (no backing device: zram, dm, md).
    pub media: String,
    /// How the disk is attached: nvme, virtio, ata, scsi, usb, mmc, or none.
    pub transport: Option<String>,
    pub rotational: bool,
    pub removable: bool,
    pub read_only: bool,
    pub logical_block_bytes: Option<u32>,
    pub physical_block_bytes: Option<u32>,
    pub partitions: Vec<Partition>,
    /// Filesystems mounted from the whole disk (without a partition table).
    pub filesystems: Vec<Filesystem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub name: String,
    pub number: Option<u32>,
    pub start_bytes: Option<u64>,
    pub size_bytes: u64,
    pub filesystems: Vec<Filesystem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    pub mount_point: String,
    pub fs_type: String,
    pub total_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    /// Free space an unprivileged user can use.
    pub available_bytes: Option<u64>,
}

/// One line of /proc/self/mountinfo that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    dev: String,
    mount_point: String,
    fs_type: String,
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let fs_type = post.split_whitespace().next()?;
            Some(Mount {
                dev: pre.get(2)?.to_string(),
                mount_point: unescape(pre.get(4)?),
                fs_type: fs_type.to_string(),
            })
        })
        .collect()
}

fn filesystems_of(root: &Root, mounts: &[Mount], dev: Option<&str>) -> Vec<Filesystem> {
    let Some(dev) = dev else { return Vec::new() };
    mounts
        .iter()
        .filter(|m| m.dev == dev)
        .map(|m| {
            let st = rustix::fs::statvfs(root.path(&m.mount_point)).ok();
            let frsize = st.as_ref().map(|s| s.f_frsize);
            let mul = |n: Option<u64>| n.zip(frsize).and_then(|(n, f)| n.checked_mul(f));
            Filesystem {
                mount_point: m.mount_point.clone(),
                fs_type: m.fs_type.clone(),
                total_bytes: mul(st.as_ref().map(|s| s.f_blocks)),
                free_bytes: mul(st.as_ref().map(|s| s.f_bfree)),
                available_bytes: mul(st.as_ref().map(|s| s.f_bavail)),
            }
        })
        .collect()
}

/// udev's stored properties for a block device ("E:KEY=VALUE" lines).
fn udev_props(root: &Root, dev: Option<&str>) -> BTreeMap<String, String> {
    let Some(text) = dev.and_then(|d| root.value(format!("/run/udev/data/b{d}"))) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn transport(device_path: &str, name: &str) -> Option<String> {
    let t = if name.starts_with("nvme") || device_path.contains("/nvme") {
        "nvme"
    } else if device_path.contains("/virtio") {
        "virtio"
    } else if device_path.contains("/usb") {
        "usb"
    } else if device_path.contains("/ata") {
        "ata"
    } else if device_path.contains("/mmc") {
        "mmc"
    } else if device_path.contains("/host") || device_path.contains("/target") {
        "scsi"
    } else {
        return None;
    };
    Some(t.to_string())
}

fn is_pseudo(name: &str) -> bool {
    name.starts_with("loop") || name.starts_with("ram")
}

pub fn probe(root: &Root) -> Result<Storage, ProbeError> {
    let block = "/sys/block";
    if !root.exists(block) {
        return Err(ProbeError::Read {
            path: root.path(block),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "sysfs is not mounted"),
        });
    }
    let mounts = root
        .value("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default();

    let mut disks = Vec::new();
    for name in root.list(block).into_iter().filter(|n| !is_pseudo(n)) {
        let d = format!("{block}/{name}");
        let dev = root.value(format!("{d}/dev"));
        let udev = udev_props(root, dev.as_deref());
        let has_device = root.exists(format!("{d}/device"));
        // /sys/block/<name> links into the device tree: its target names the bus path.
        let device_path = root.link_target(&d).unwrap_or_default();
        let first = |paths: &[String], key: &str| {
            paths
                .iter()
                .find_map(|p| root.value(p))
                .or_else(|| udev.get(key).cloned())
        };
        let rotational = root.value(format!("{d}/queue/rotational")).as_deref() == Some("1");
        let transport = has_device.then(|| transport(&device_path, &name)).flatten();
        let media = if !has_device {
            "virtual"
        } else if transport.as_deref() == Some("nvme") {
            "nvme"
        } else if rotational {
            "hdd"
        } else {
            "ssd"
        };
        let partitions = root
            .list(&d)
            .into_iter()
            .filter(|p| root.exists(format!("{d}/{p}/partition")))
            .map(|p| {
                let pd = format!("{d}/{p}");
                Partition {
                    number: root.parse(format!("{pd}/partition")),
                    start_bytes: root.parse::<u64>(format!("{pd}/start")).map(|s| s * 512),
                    size_bytes: root.parse::<u64>(format!("{pd}/size")).unwrap_or(0) * 512,
                    filesystems: filesystems_of(
                        root,
                        &mounts,
                        root.value(format!("{pd}/dev")).as_deref(),
                    ),
                    name: p,
                }
            })
            .collect();
        disks.push(Disk {
            model: first(&[format!("{d}/device/model")], "ID_MODEL"),
            vendor: root.value(format!("{d}/device/vendor")),
            serial: first(
                &[format!("{d}/serial"), format!("{d}/device/serial")],
                "ID_SERIAL_SHORT",
            ),
            wwn: first(&[format!("{d}/wwid"), format!("{d}/device/wwid")], "ID_WWN"),
            firmware_revision: first(
                &[
                    format!("{d}/device/firmware_rev"),
                    format!("{d}/device/rev"),
                ],
                "ID_REVISION",
            ),
            size_bytes: root.parse::<u64>(format!("{d}/size")).unwrap_or(0) * 512,
            media: media.to_string(),
            transport,
            rotational,
            removable: root.value(format!("{d}/removable")).as_deref() == Some("1"),
            read_only: root.value(format!("{d}/ro")).as_deref() == Some("1"),
            logical_block_bytes: root.parse(format!("{d}/queue/logical_block_size")),
            physical_block_bytes: root.parse(format!("{d}/queue/physical_block_size")),
            partitions,
            filesystems: filesystems_of(root, &mounts, dev.as_deref()),
            name,
        });
    }
    Ok(Storage { disks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    fn nvme_fixture(fx: &Fixture) {
        let dev = "/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0";
        fx.dir(dev)
            .file(&format!("{dev}/model"), "Samsung SSD 980 PRO 1TB  \n")
            .file(&format!("{dev}/serial"), "S5GXNF0R123456\n")
            .file(&format!("{dev}/firmware_rev"), "5B2QGXA7\n")
            .symlink(
                "/sys/block/nvme0n1/device",
                fx.dir.path().join(dev.trim_start_matches('/')),
            )
            .file("/sys/block/nvme0n1/dev", "259:0\n")
            .file("/sys/block/nvme0n1/size", "1953525168\n")
            .file("/sys/block/nvme0n1/wwid", "eui.002538b111b22222\n")
            .file("/sys/block/nvme0n1/queue/rotational", "0\n")
            .file("/sys/block/nvme0n1/queue/logical_block_size", "512\n")
            .file("/sys/block/nvme0n1/removable", "0\n")
            .file("/sys/block/nvme0n1/nvme0n1p1/partition", "1\n")
            .file("/sys/block/nvme0n1/nvme0n1p1/start", "2048\n")
            .file("/sys/block/nvme0n1/nvme0n1p1/size", "1048576\n")
            .file("/sys/block/nvme0n1/nvme0n1p1/dev", "259:1\n")
            .file("/sys/block/loop0/size", "0\n")
            .file("/sys/block/zram0/size", "0\n")
            .file("/sys/block/zram0/dev", "253:0\n")
            .dir("/mnt/data")
            .file(
                "/proc/self/mountinfo",
                "22 1 259:1 / /mnt/data rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw\n\
                 23 1 0:21 / /proc rw - proc proc rw\n",
            );
    }

    #[test]
    fn nvme_disk_with_partition_and_mount() {
        let fx = Fixture::new();
        nvme_fixture(&fx);
        let s = probe(&fx.root()).unwrap();
        let names: Vec<_> = s.disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["nvme0n1", "zram0"]);
        let d = &s.disks[0];
        assert_eq!(d.model.as_deref(), Some("Samsung SSD 980 PRO 1TB"));
        assert_eq!(d.serial.as_deref(), Some("S5GXNF0R123456"));
        assert_eq!(d.wwn.as_deref(), Some("eui.002538b111b22222"));
        assert_eq!(d.firmware_revision.as_deref(), Some("5B2QGXA7"));
        assert_eq!(d.size_bytes, 1953525168 * 512);
        assert_eq!(
            (d.media.as_str(), d.transport.as_deref()),
            ("nvme", Some("nvme"))
        );
        assert!(!d.rotational && !d.removable);
        assert_eq!(d.partitions.len(), 1);
        let p = &d.partitions[0];
        assert_eq!(
            (p.number, p.start_bytes, p.size_bytes),
            (Some(1), Some(2048 * 512), 512 << 20)
        );
        assert_eq!(p.filesystems.len(), 1);
        assert_eq!(p.filesystems[0].mount_point, "/mnt/data");
        assert_eq!(p.filesystems[0].fs_type, "ext4");
        assert!(p.filesystems[0].total_bytes.unwrap() > 0);
        assert_eq!(s.disks[1].media, "virtual");
    }

    #[test]
    fn sata_identity_from_udev_database() {
        let fx = Fixture::new();
        let dev = "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0";
        fx.file(&format!("{dev}/model"), "ST4000NM0035-1V4\n")
            .file(&format!("{dev}/vendor"), "ATA     \n")
            .symlink("/sys/block/sda", format!("../..{dev}/block/sda"))
            .symlink(&format!("{dev}/block/sda/device"), "../..")
            .file("/sys/block/sda/dev", "8:0\n")
            .file("/sys/block/sda/size", "7814037168\n")
            .file("/sys/block/sda/queue/rotational", "1\n")
            .file(
                "/run/udev/data/b8:0",
                "S:disk/by-id/x\nE:ID_SERIAL_SHORT=ZC1ABCDE\nE:ID_WWN=0x5000c500a1b2c3d4\n",
            );
        let d = &probe(&fx.root()).unwrap().disks[0];
        assert_eq!(d.serial.as_deref(), Some("ZC1ABCDE"));
        assert_eq!(d.wwn.as_deref(), Some("0x5000c500a1b2c3d4"));
        assert_eq!(d.vendor.as_deref(), Some("ATA"));
        assert_eq!(
            (d.media.as_str(), d.transport.as_deref()),
            ("hdd", Some("ata"))
        );
    }

    #[test]
    fn malformed_inputs_degrade() {
        let fx = Fixture::new();
        assert!(probe(&fx.root())
            .unwrap_err()
            .to_string()
            .contains("sysfs is not mounted"));
        fx.file("/sys/block/vda/size", "not a number\n")
            .file("/proc/self/mountinfo", "garbage\n1 2 3\n - \n");
        let s = probe(&fx.root()).unwrap();
        assert_eq!(s.disks[0].size_bytes, 0);
        assert!(s.disks[0].filesystems.is_empty());
    }

    #[test]
    fn mountinfo_escapes() {
        let m = parse_mountinfo("30 1 8:1 / /mnt/my\\040disk rw - vfat /dev/sda1 rw\n");
        assert_eq!(m[0].mount_point, "/mnt/my disk");
        assert_eq!(m[0].dev, "8:1");
        assert_eq!(unescape("\\04"), "\\04");
        assert_eq!(unescape("a\\"), "a\\");
    }
}
