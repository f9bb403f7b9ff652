//! `xnode-agent probe`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use probe::{ProbeOptions, Root, SectionName, TpmSource};

use crate::summary;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Print the versioned JSON document (schema: docs/inventory.md) instead of the summary.
    #[arg(long)]
    json: bool,
    /// Probe only these sections (comma-separated): cpu, memory, storage, network, gpus, tpm, platform, system.
    #[arg(long, value_delimiter = ',')]
    only: Vec<SectionName>,
    /// Where to ask the TPM for its identity: device:/dev/tpmrm0, swtpm:host=H,port=P, or none.
    #[arg(long, default_value = "device:/dev/tpmrm0", env = "XNODE_TCTI")]
    tcti: TpmSource,
    /// Read /proc, /sys, /run and /etc under this directory instead of / (for fixtures).
    #[arg(long, hide = true, default_value = "/")]
    root: PathBuf,
}

/// Say loudly when the TPM is a software TPM.
pub fn warn_software_tpm(inv: &probe::Inventory) {
    if let Some(tpm) = inv.tpm.as_ref().and_then(|s| s.ok()) {
        if tpm.software {
            eprintln!(
                "WARNING: the TPM at {} is a SOFTWARE TPM ({}): it is no hardware root of trust",
                tpm.source.as_deref().unwrap_or("?"),
                tpm.vendor_string.as_deref().unwrap_or("")
            );
        }
    }
}

pub fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let opts = ProbeOptions {
        root: Root::at(args.root),
        tpm: args.tcti,
        sections: args.only,
    };
    let inv = probe::probe(&opts);
    warn_software_tpm(&inv);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &inv).context("writing the inventory")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", summary::render(&inv))?;
    }
    if inv.anything_read() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xnode-agent: no section of the inventory could be read");
        Ok(ExitCode::from(1))
    }
}
