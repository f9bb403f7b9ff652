//! `xnode-agent`: the command line of the Xnode agent.

mod summary;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use probe::{ProbeOptions, Root, SectionName, TpmSource};

#[derive(Debug, Parser)]
#[command(
    name = "xnode-agent",
    version,
    about = "The Xnode node agent: probe, attest and supervise this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inventory this machine's hardware first-hand (CPU, memory, disks, NICs, GPUs, TPM, platform, system).
    Probe(ProbeArgs),
    /// Print the JSON Schema of a document this agent writes.
    Schema {
        /// Which document: "inventory".
        #[arg(value_parser = ["inventory"])]
        document: String,
    },
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xnode-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        || e.chain()
            .filter_map(|c| c.downcast_ref::<serde_json::Error>())
            .any(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Probe(args) => probe_cmd(args),
        Command::Schema { .. } => {
            let schema = probe::Inventory::json_schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn probe_cmd(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let opts = ProbeOptions {
        root: Root::at(args.root),
        tpm: args.tcti,
        sections: args.only,
    };
    let inv = probe::probe(&opts);
    if let Some(tpm) = inv.tpm.as_ref().and_then(|s| s.ok()) {
        if tpm.software {
            eprintln!(
                "WARNING: the TPM at {} is a SOFTWARE TPM ({}): it is no hardware root of trust",
                tpm.source.as_deref().unwrap_or("?"),
                tpm.vendor_string.as_deref().unwrap_or("")
            );
        }
    }
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
