//! TPM: presence and version from sysfs, and identity (manufacturer, vendor
//! string, firmware version) from the TPM itself through one raw
//! TPM2_GetCapability command, which needs no TSS library.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::root::key_values;
use crate::{ProbeError, Root};

/// Where to send TPM commands. Written like tpm2-tools' TCTI strings:
/// `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmSource {
    Device(PathBuf),
    Swtpm { host: String, port: u16 },
    None,
}

impl Default for TpmSource {
    fn default() -> Self {
        TpmSource::Device(PathBuf::from("/dev/tpmrm0"))
    }
}

impl std::fmt::Display for TpmSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TpmSource::Device(p) => write!(f, "device:{}", p.display()),
            TpmSource::Swtpm { host, port } => write!(f, "swtpm:host={host},port={port}"),
            TpmSource::None => write!(f, "none"),
        }
    }
}

impl std::str::FromStr for TpmSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, conf) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "device" if conf.is_empty() => Ok(TpmSource::default()),
            "device" => Ok(TpmSource::Device(PathBuf::from(conf))),
            "swtpm" | "mssim" => {
                let (mut host, mut port) = ("127.0.0.1".to_string(), 2321u16);
                for (k, v) in conf
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .filter_map(|p| p.split_once('='))
                {
                    match k {
                        "host" => host = v.to_string(),
                        "port" => port = v.parse().map_err(|_| format!("bad TCTI port '{v}'"))?,
                        other => return Err(format!("unknown TCTI option '{other}' in '{s}'")),
                    }
                }
                Ok(TpmSource::Swtpm { host, port })
            }
            "none" => Ok(TpmSource::None),
            _ => Err(format!(
                "unknown TCTI '{s}': use device:/dev/tpmrm0, swtpm:host=H,port=P or none"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tpm {
    pub present: bool,
    /// "2.0" or "1.2".
    pub version: Option<String>,
    /// Where the identity fields came from: a TCTI string, or "sysfs".
    pub source: Option<String>,
    /// Four-character TCG vendor id, e.g. "IFX", "INTC", "NTC", "IBM".
    pub manufacturer: Option<String>,
    pub vendor_string: Option<String>,
    pub firmware_version: Option<String>,
    /// TPM 2.0 library specification revision, e.g. "1.64".
    pub spec_revision: Option<String>,
    /// A software TPM (swtpm/libtpms, the IBM/Microsoft simulators): no
    /// hardware root of trust.
    pub software: bool,
    /// Device nodes present: /dev/tpm0, /dev/tpmrm0.
    pub device_nodes: Vec<String>,
    /// Why the TPM itself could not be asked, when it could not.
    pub unreachable: Option<String>,
}

pub fn probe(root: &Root, source: &TpmSource) -> Result<Tpm, ProbeError> {
    let sys = "/sys/class/tpm/tpm0";
    let sysfs_present = root.exists(sys);
    let device_nodes: Vec<String> = ["/dev/tpm0", "/dev/tpmrm0"]
        .into_iter()
        .filter(|d| root.exists(d))
        .map(str::to_string)
        .collect();
    let mut tpm = Tpm {
        present: sysfs_present || !device_nodes.is_empty(),
        version: root.value(format!("{sys}/tpm_version_major")).map(|v| {
            if v == "2" {
                "2.0".into()
            } else {
                format!("{v}.x")
            }
        }),
        source: None,
        manufacturer: None,
        vendor_string: None,
        firmware_version: None,
        spec_revision: None,
        software: false,
        device_nodes,
        unreachable: None,
    };

    // TPM 1.2 states its identity in sysfs.
    if let Some(caps) = root.value(format!("{sys}/device/caps")) {
        for (k, v) in key_values(&caps, ':') {
            match k {
                "Manufacturer" => {
                    tpm.manufacturer = u32::from_str_radix(v.trim_start_matches("0x"), 16)
                        .ok()
                        .map(fourcc)
                }
                "TCG version" => tpm.version = Some(v.to_string()),
                "Firmware version" => tpm.firmware_version = Some(v.to_string()),
                _ => {}
            }
        }
        tpm.source = Some("sysfs".into());
    }

    let ask = match source {
        TpmSource::None => None,
        // A device that is not there is "no TPM", not an error to report.
        TpmSource::Device(p) if !root.path(p).exists() => None,
        TpmSource::Device(p) if tpm.version.as_deref().is_some_and(|v| v != "2.0") => {
            tpm.unreachable = Some(format!("{} is not a TPM 2.0", p.display()));
            None
        }
        src => Some(src),
    };
    if let Some(src) = ask {
        match fixed_properties(root, src) {
            Ok(props) => {
                tpm.present = true;
                tpm.version = Some(props.family.clone());
                tpm.source = Some(src.to_string());
                tpm.software =
                    props.vendor_string.contains("SW") && props.vendor_string.contains("TPM");
                tpm.manufacturer = Some(props.manufacturer);
                tpm.vendor_string = Some(props.vendor_string);
                tpm.firmware_version = Some(props.firmware_version);
                tpm.spec_revision = Some(props.revision);
            }
            Err(e) => tpm.unreachable = Some(e.to_string()),
        }
    }
    Ok(tpm)
}

/// The TPM 2.0 fixed properties the inventory reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedProperties {
    pub family: String,
    pub revision: String,
    pub manufacturer: String,
    pub vendor_string: String,
    pub firmware_version: String,
    pub firmware_raw: (u32, u32),
}

const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_CC_GET_CAPABILITY: u32 = 0x0000_017A;
const TPM_CAP_TPM_PROPERTIES: u32 = 0x0000_0006;
const TPM_PT_FIXED: u32 = 0x100;
const PT_FAMILY_INDICATOR: u32 = 0x100;
const PT_REVISION: u32 = 0x102;
const PT_MANUFACTURER: u32 = 0x105;
const PT_VENDOR_STRING_1: u32 = 0x106;
const PT_FIRMWARE_VERSION_1: u32 = 0x10B;
const PT_FIRMWARE_VERSION_2: u32 = 0x10C;
const MAX_RESPONSE: usize = 4096;

/// TPM2_GetCapability(TPM_PROPERTIES, PT_FIXED, 13): the first 13 fixed properties.
pub fn get_capability_command() -> Vec<u8> {
    let mut c = Vec::with_capacity(22);
    c.extend_from_slice(&TPM_ST_NO_SESSIONS.to_be_bytes());
    c.extend_from_slice(&22u32.to_be_bytes());
    c.extend_from_slice(&TPM_CC_GET_CAPABILITY.to_be_bytes());
    c.extend_from_slice(&TPM_CAP_TPM_PROPERTIES.to_be_bytes());
    c.extend_from_slice(&TPM_PT_FIXED.to_be_bytes());
    c.extend_from_slice(&13u32.to_be_bytes());
    c
}

fn fourcc(v: u32) -> String {
    v.to_be_bytes()
        .iter()
        .filter(|b| b.is_ascii_graphic() || **b == b' ')
        .map(|b| *b as char)
        .collect::<String>()
        .trim()
        .to_string()
}

fn be32(b: &[u8], off: usize) -> Result<u32, String> {
    b.get(off..off + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("response truncated at byte {off}"))
}

/// Parse a GetCapability response into the properties the inventory needs.
pub fn parse_get_capability(resp: &[u8]) -> Result<FixedProperties, String> {
    let size = be32(resp, 2)? as usize;
    let rc = be32(resp, 6)?;
    if rc != 0 {
        return Err(format!("TPM returned error 0x{rc:08x} to GetCapability"));
    }
    if size != resp.len() {
        return Err(format!(
            "response says {size} bytes but {} arrived",
            resp.len()
        ));
    }
    // moreData (1 byte) at 10, capability at 11, count at 15, pairs from 19.
    if be32(resp, 11)? != TPM_CAP_TPM_PROPERTIES {
        return Err("response is not a TPM_PROPERTIES capability".into());
    }
    let count = be32(resp, 15)? as usize;
    let mut props = std::collections::BTreeMap::new();
    for i in 0..count.min(256) {
        let off = 19 + i * 8;
        props.insert(be32(resp, off)?, be32(resp, off + 4)?);
    }
    let get = |p: u32| {
        props
            .get(&p)
            .copied()
            .ok_or_else(|| format!("property 0x{p:x} missing"))
    };
    let vendor: Vec<String> = (0..4)
        .filter_map(|i| props.get(&(PT_VENDOR_STRING_1 + i)).map(|v| fourcc(*v)))
        .filter(|s| !s.is_empty())
        .collect();
    let (fw1, fw2) = (get(PT_FIRMWARE_VERSION_1)?, get(PT_FIRMWARE_VERSION_2)?);
    let rev = get(PT_REVISION)?;
    Ok(FixedProperties {
        family: fourcc(get(PT_FAMILY_INDICATOR)?),
        revision: format!("{}.{:02}", rev / 100, rev % 100),
        manufacturer: fourcc(get(PT_MANUFACTURER)?),
        vendor_string: vendor.join(" "),
        firmware_version: format!(
            "{}.{}.{}.{}",
            fw1 >> 16,
            fw1 & 0xFFFF,
            fw2 >> 16,
            fw2 & 0xFFFF
        ),
        firmware_raw: (fw1, fw2),
    })
}

/// Ask the TPM at `src` for its fixed properties.
pub fn fixed_properties(root: &Root, src: &TpmSource) -> Result<FixedProperties, ProbeError> {
    let err = |reason: String| ProbeError::Tpm {
        source_desc: src.to_string(),
        reason,
    };
    let resp = transact(root, src, &get_capability_command()).map_err(|e| err(e.to_string()))?;
    parse_get_capability(&resp).map_err(err)
}

fn transact(root: &Root, src: &TpmSource, cmd: &[u8]) -> std::io::Result<Vec<u8>> {
    match src {
        TpmSource::Device(p) => {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(root.path(p))?;
            f.write_all(cmd)?;
            let mut buf = vec![0u8; MAX_RESPONSE];
            let n = f.read(&mut buf)?;
            buf.truncate(n);
            Ok(buf)
        }
        TpmSource::Swtpm { host, port } => {
            let addr = (host.as_str(), *port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other("host resolves to no address"))?;
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(cmd)?;
            let mut header = [0u8; 10];
            s.read_exact(&mut header)?;
            let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
            if !(10..=MAX_RESPONSE).contains(&size) {
                return Err(std::io::Error::other(format!(
                    "implausible response size {size}"
                )));
            }
            let mut resp = header.to_vec();
            resp.resize(size, 0);
            s.read_exact(&mut resp[10..])?;
            Ok(resp)
        }
        TpmSource::None => Err(std::io::Error::other("no TPM source configured")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    /// A response as swtpm 0.7 sends it (values from `tpm2_getcap properties-fixed`).
    pub fn swtpm_response() -> Vec<u8> {
        let props: [(u32, u32); 13] = [
            (0x100, 0x322E_3000),
            (0x101, 0),
            (0x102, 0xA4),
            (0x103, 0x4B),
            (0x104, 0x7E5),
            (0x105, 0x4942_4D00),
            (0x106, 0x5357_2020),
            (0x107, 0x2054_504D),
            (0x108, 0),
            (0x109, 0),
            (0x10A, 1),
            (0x10B, 0x2019_1023),
            (0x10C, 0x0016_3636),
        ];
        let mut r = Vec::new();
        r.extend_from_slice(&0x8001u16.to_be_bytes());
        r.extend_from_slice(&0u32.to_be_bytes());
        r.extend_from_slice(&0u32.to_be_bytes());
        r.push(1);
        r.extend_from_slice(&6u32.to_be_bytes());
        r.extend_from_slice(&13u32.to_be_bytes());
        for (p, v) in props {
            r.extend_from_slice(&p.to_be_bytes());
            r.extend_from_slice(&v.to_be_bytes());
        }
        let len = r.len() as u32;
        r[2..6].copy_from_slice(&len.to_be_bytes());
        r
    }

    #[test]
    fn parses_swtpm_properties() {
        let p = parse_get_capability(&swtpm_response()).unwrap();
        assert_eq!(p.family, "2.0");
        assert_eq!(p.revision, "1.64");
        assert_eq!(p.manufacturer, "IBM");
        assert_eq!(p.vendor_string, "SW TPM");
        assert_eq!(p.firmware_raw, (0x2019_1023, 0x0016_3636));
    }

    #[test]
    fn truncated_and_error_responses() {
        let good = swtpm_response();
        for cut in 0..good.len() {
            assert!(parse_get_capability(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut rc = good.clone();
        rc[6..10].copy_from_slice(&0x0000_0101u32.to_be_bytes());
        assert!(parse_get_capability(&rc)
            .unwrap_err()
            .contains("0x00000101"));
        let mut huge = good.clone();
        huge[15..19].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_get_capability(&huge).is_err());
    }

    #[test]
    fn tcti_strings() {
        assert_eq!("device".parse::<TpmSource>(), Ok(TpmSource::default()));
        assert_eq!(
            "swtpm:host=localhost,port=2400".parse::<TpmSource>(),
            Ok(TpmSource::Swtpm {
                host: "localhost".into(),
                port: 2400
            })
        );
        assert!("swtpm:port=abc"
            .parse::<TpmSource>()
            .unwrap_err()
            .contains("port"));
        assert!("tabrmd"
            .parse::<TpmSource>()
            .unwrap_err()
            .contains("unknown TCTI"));
        let s = TpmSource::Swtpm {
            host: "127.0.0.1".into(),
            port: 1,
        };
        assert_eq!(s.to_string().parse::<TpmSource>(), Ok(s));
    }

    #[test]
    fn no_tpm_and_tpm12_from_sysfs() {
        let fx = Fixture::new();
        let t = probe(&fx.root(), &TpmSource::default()).unwrap();
        assert!(!t.present && t.unreachable.is_none());
        fx.file("/sys/class/tpm/tpm0/tpm_version_major", "1\n")
            .file(
                "/sys/class/tpm/tpm0/device/caps",
                "Manufacturer: 0x49465800\nTCG version: 1.2\nFirmware version: 4.40\n",
            );
        let t = probe(&fx.root(), &TpmSource::default()).unwrap();
        assert!(t.present);
        assert_eq!(t.manufacturer.as_deref(), Some("IFX"));
        assert_eq!(t.version.as_deref(), Some("1.2"));
        assert_eq!(t.firmware_version.as_deref(), Some("4.40"));
        assert_eq!(t.source.as_deref(), Some("sysfs"));
    }

    #[test]
    fn unreachable_swtpm_is_reported_not_fatal() {
        let fx = Fixture::new();
        // Port 1 on loopback: nothing listens there.
        let src = TpmSource::Swtpm {
            host: "127.0.0.1".into(),
            port: 1,
        };
        let t = probe(&fx.root(), &src).unwrap();
        assert!(t
            .unreachable
            .unwrap()
            .contains("swtpm:host=127.0.0.1,port=1"));
    }
}
