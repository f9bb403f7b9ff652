//! First-hand hardware inventory of an Xnode.
//!
//! Every identity field is read from the kernel, the firmware tables, NVML or
//! the TPM itself, never from operator input. Each section is probed on its
//! own: a section that fails carries its error and the others still come out.

pub mod cpu;
pub mod error;
#[cfg(test)]
mod fixture;
pub mod gpu;
pub mod memory;
pub mod network;
pub mod platform;
pub mod root;
pub mod section;
pub mod smbios;
pub mod storage;
pub mod system;
pub mod tpm;

use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use error::ProbeError;
pub use root::Root;
pub use section::Section;
pub use tpm::TpmSource;

/// Version tag of the JSON document; bumped on any incompatible change.
pub const SCHEMA_VERSION: &str = "xnode.inventory/v1";

/// The whole inventory: one section per subsystem. A section left out of
/// the request is absent from the document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Always [`SCHEMA_VERSION`].
    pub schema: String,
    /// When the probe ran, in seconds since the Unix epoch.
    pub probed_at_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Section<cpu::Cpu>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Section<memory::Memory>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Section<storage::Storage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Section<network::Network>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Section<gpu::Gpus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<Section<tpm::Tpm>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Section<platform::Platform>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Section<system::System>>,
}

/// The sections a probe can be asked for, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SectionName {
    Cpu,
    Memory,
    Storage,
    Network,
    Gpus,
    Tpm,
    Platform,
    System,
}

impl SectionName {
    pub const ALL: [SectionName; 8] = [
        SectionName::Cpu,
        SectionName::Memory,
        SectionName::Storage,
        SectionName::Network,
        SectionName::Gpus,
        SectionName::Tpm,
        SectionName::Platform,
        SectionName::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SectionName::Cpu => "cpu",
            SectionName::Memory => "memory",
            SectionName::Storage => "storage",
            SectionName::Network => "network",
            SectionName::Gpus => "gpus",
            SectionName::Tpm => "tpm",
            SectionName::Platform => "platform",
            SectionName::System => "system",
        }
    }
}

impl std::str::FromStr for SectionName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SectionName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = SectionName::ALL.iter().map(|n| n.as_str()).collect();
                format!(
                    "unknown section '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// What to probe and where to read it from.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Filesystem root for /proc, /sys, /run and /etc (fixtures use a temp dir).
    pub root: Root,
    /// Where to talk to the TPM for its own properties.
    pub tpm: TpmSource,
    /// Sections to probe; empty means all.
    pub sections: Vec<SectionName>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            root: Root::host(),
            tpm: TpmSource::default(),
            sections: Vec::new(),
        }
    }
}

impl ProbeOptions {
    fn wants(&self, name: SectionName) -> bool {
        self.sections.is_empty() || self.sections.contains(&name)
    }
}

/// Probe the machine. Never fails as a whole: errors live in their sections.
///
/// Sections are independent, so each runs on its own thread: the probe
/// takes as long as its slowest section rather than their sum.
pub fn probe(opts: &ProbeOptions) -> Inventory {
    let root = &opts.root;
    std::thread::scope(|s| {
        // Start a section on its own thread when it was asked for.
        macro_rules! spawn {
            ($name:expr, $f:expr) => {
                opts.wants($name)
                    .then(|| s.spawn(move || Section::from($f)))
            };
        }
        let cpu = spawn!(SectionName::Cpu, cpu::probe(root));
        let memory = spawn!(SectionName::Memory, memory::probe(root));
        let storage = spawn!(SectionName::Storage, storage::probe(root));
        let network = spawn!(SectionName::Network, network::probe(root));
        let gpus = spawn!(SectionName::Gpus, gpu::probe(root));
        let tpm = spawn!(SectionName::Tpm, tpm::probe(root, &opts.tpm));
        let platform = spawn!(SectionName::Platform, platform::probe(root));
        let system = spawn!(SectionName::System, system::probe(root));
        Inventory {
            schema: SCHEMA_VERSION.to_string(),
            probed_at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            cpu: cpu.map(join),
            memory: memory.map(join),
            storage: storage.map(join),
            network: network.map(join),
            gpus: gpus.map(join),
            tpm: tpm.map(join),
            platform: platform.map(join),
            system: system.map(join),
        }
    })
}

/// A section whose thread panicked becomes that section's error, so one
/// bad parser cannot take the whole inventory down.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, Section<T>>) -> Section<T> {
    h.join().unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Section::Error(format!("internal error while probing: {msg}"))
    })
}

impl Inventory {
    /// True when at least one section was read successfully.
    pub fn anything_read(&self) -> bool {
        [
            self.cpu.as_ref().map(Section::is_ok),
            self.memory.as_ref().map(Section::is_ok),
            self.storage.as_ref().map(Section::is_ok),
            self.network.as_ref().map(Section::is_ok),
            self.gpus.as_ref().map(Section::is_ok),
            self.tpm.as_ref().map(Section::is_ok),
            self.platform.as_ref().map(Section::is_ok),
            self.system.as_ref().map(Section::is_ok),
        ]
        .into_iter()
        .flatten()
        .any(|ok| ok)
    }

    /// The JSON Schema of this document, as published in `docs/`.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Inventory)).unwrap_or_default()
    }
}
