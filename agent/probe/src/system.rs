//! System: kernel, boot id, uptime, hostname, OS; on NixOS the current and
//! booted system store paths and the NixOS version.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::root::parse_env;
use crate::{ProbeError, Root};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct System {
    pub kernel_release: String,
    pub kernel_version: Option<String>,
    pub boot_id: Option<String>,
    pub machine_id: Option<String>,
    pub uptime_seconds: Option<u64>,
    pub hostname: Option<String>,
    /// os-release PRETTY_NAME.
    pub os: Option<String>,
    /// os-release ID (nixos, debian, ...).
    pub os_id: Option<String>,
    pub nixos: Option<NixosSystem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NixosSystem {
    /// e.g. "24.11.20241123.abcdef0 (Vicuna)".
    pub version: Option<String>,
    /// Store path of /run/current-system.
    pub current_system: Option<String>,
    /// Store path of /run/booted-system (differs from current after a switch).
    pub booted_system: Option<String>,
}

pub fn probe(root: &Root) -> Result<System, ProbeError> {
    let kernel_release = root.read("/proc/sys/kernel/osrelease")?.trim().to_string();
    let os_release = root
        .value("/etc/os-release")
        .or_else(|| root.value("/usr/lib/os-release"))
        .map(|t| parse_env(&t))
        .unwrap_or_default();
    let os_id = os_release.get("ID").cloned();
    let nixos =
        (os_id.as_deref() == Some("nixos") || root.exists("/run/current-system")).then(|| {
            NixosSystem {
                version: root.value("/run/current-system/nixos-version").or_else(|| {
                    let build = os_release
                        .get("BUILD_ID")
                        .or(os_release.get("VERSION_ID"))?;
                    Some(match os_release.get("VERSION_CODENAME") {
                        Some(c) => format!("{build} ({})", capitalize(c)),
                        None => build.clone(),
                    })
                }),
                current_system: root.link_target("/run/current-system"),
                booted_system: root.link_target("/run/booted-system"),
            }
        });
    Ok(System {
        kernel_release,
        kernel_version: root.value("/proc/sys/kernel/version"),
        boot_id: root.value("/proc/sys/kernel/random/boot_id"),
        machine_id: root.value("/etc/machine-id"),
        uptime_seconds: root
            .value("/proc/uptime")
            .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
            .map(|s| s as u64),
        hostname: root.value("/proc/sys/kernel/hostname"),
        os: os_release.get("PRETTY_NAME").cloned(),
        os_id,
        nixos,
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    #[test]
    fn nixos_identity() {
        let fx = Fixture::new();
        fx.file("/proc/sys/kernel/osrelease", "6.6.63\n")
            .file(
                "/proc/sys/kernel/random/boot_id",
                "0f1e2d3c-aaaa-bbbb-cccc-0123456789ab\n",
            )
            .file("/proc/uptime", "1234.56 2000.00\n")
            .file("/proc/sys/kernel/hostname", "xnode-1\n")
            .file(
                "/etc/os-release",
                "ID=nixos\nPRETTY_NAME=\"NixOS 24.11 (Vicuna)\"\nVERSION_ID=\"24.11\"\n\
                 BUILD_ID=\"24.11.20241123.abcdef0\"\nVERSION_CODENAME=vicuna\n",
            )
            .symlink(
                "/run/current-system",
                "/nix/store/aaaa-nixos-system-xnode-24.11",
            )
            .symlink(
                "/run/booted-system",
                "/nix/store/bbbb-nixos-system-xnode-24.11",
            );
        let s = probe(&fx.root()).unwrap();
        assert_eq!(s.kernel_release, "6.6.63");
        assert_eq!(s.uptime_seconds, Some(1234));
        assert_eq!(s.os.as_deref(), Some("NixOS 24.11 (Vicuna)"));
        let n = s.nixos.unwrap();
        assert_eq!(
            n.version.as_deref(),
            Some("24.11.20241123.abcdef0 (Vicuna)")
        );
        assert_eq!(
            n.current_system.as_deref(),
            Some("/nix/store/aaaa-nixos-system-xnode-24.11")
        );
        assert_eq!(
            n.booted_system.as_deref(),
            Some("/nix/store/bbbb-nixos-system-xnode-24.11")
        );
    }

    #[test]
    fn non_nixos_and_bad_inputs() {
        let fx = Fixture::new();
        assert!(probe(&fx.root())
            .unwrap_err()
            .to_string()
            .contains("osrelease"));
        fx.file("/proc/sys/kernel/osrelease", "6.1.0-28-amd64\n")
            .file("/proc/uptime", "garbage\n")
            .file(
                "/etc/os-release",
                "ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
            );
        let s = probe(&fx.root()).unwrap();
        assert_eq!(s.uptime_seconds, None);
        assert_eq!(s.os_id.as_deref(), Some("debian"));
        assert!(s.nixos.is_none());
    }
}
