//! `xnode-agent`: the command line of the Xnode agent.

mod api;
mod api_auth;
mod api_client;
mod challenger;
#[cfg(feature = "attest")]
mod cmd_attest;
mod cmd_chain;
mod cmd_challenge;
mod cmd_firstboot;
mod cmd_manifest;
mod cmd_mesh;
mod cmd_probe;
mod cmd_run;
mod cmd_service;
mod cmd_status;
mod cmd_unit;
mod cmd_verify;
mod node_config;
mod prove;
mod summary;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Probe(cmd_probe::ProbeArgs),
    /// Show this node's identity: its PeerId and public key (never the secret).
    #[cfg(feature = "attest")]
    Identity(cmd_attest::IdentityArgs),
    /// Probe and write a signed, TPM-quoted attestation envelope.
    #[cfg(feature = "attest")]
    Attest(cmd_attest::AttestArgs),
    /// Verify an attestation envelope offline; prints every check. Exit 1 on any failure.
    Verify(cmd_verify::VerifyArgs),
    /// The credential-activation exchange that proves a node's AK shares a TPM with its EK.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Run the agent: supervise the manifest's services and serve the local API (a systemd Type=notify service).
    Run(cmd_run::RunArgs),
    /// One screen on the node from the running agent: services, health, restarts, last attestation.
    Status(cmd_status::StatusArgs),
    /// Prepare a service's home from the manifest (CometBFT config and keys, kubo config).
    #[command(subcommand)]
    Service(cmd_service::ServiceCommand),
    /// The first-boot configuration (owner keys, role, bootstrap peers): check or install it.
    #[command(subcommand)]
    Firstboot(cmd_firstboot::FirstbootCommand),
    /// The libp2p mesh: run it, publish and find services, see gossiped metrics, delegate tasks.
    #[command(subcommand)]
    Mesh(cmd_mesh::MeshCommand),
    /// Proof of resource: answer a verifier's seed with proof of the claimed capacity, or check such an answer.
    #[command(subcommand)]
    Challenge(cmd_challenge::ChallengeCommand),
    /// The Xnode chain: its state, and signed transactions (register, stake, submit CIDs).
    #[command(subcommand)]
    Chain(cmd_chain::ChainCommand),
    /// Start, stop, restart and inspect systemd units over D-Bus.
    Unit(cmd_unit::UnitArgs),
    /// Work with the service manifest the NixOS modules render.
    #[command(subcommand)]
    Manifest(cmd_manifest::ManifestCommand),
    /// Print the JSON Schema of a document this agent writes.
    Schema {
        /// Which document: "inventory".
        #[arg(value_parser = ["inventory"])]
        document: String,
    },
}

#[derive(Debug, Subcommand)]
enum CredentialCommand {
    /// Verifier: make a challenge for the EK and AK in an envelope.
    Challenge(cmd_verify::ChallengeArgs),
    /// Node: answer a challenge with the TPM (ActivateCredential).
    #[cfg(feature = "attest")]
    Activate(cmd_attest::ActivateArgs),
    /// Verifier: check a node's answer and record the (EK, AK) pair as activated.
    Accept(cmd_verify::AcceptArgs),
}

fn main() -> ExitCode {
    // libtss2 logs expected probes (e.g. "no persistent EK here") as errors;
    // the agent reports what matters itself. TSS2_LOG still overrides.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Probe(a) => cmd_probe::run(a),
        #[cfg(feature = "attest")]
        Command::Identity(a) => cmd_attest::identity(a),
        #[cfg(feature = "attest")]
        Command::Attest(a) => cmd_attest::attest(a),
        Command::Verify(a) => cmd_verify::verify(a),
        Command::Credential(CredentialCommand::Challenge(a)) => cmd_verify::challenge(a),
        #[cfg(feature = "attest")]
        Command::Credential(CredentialCommand::Activate(a)) => cmd_attest::activate(a),
        Command::Credential(CredentialCommand::Accept(a)) => cmd_verify::accept(a),
        Command::Manifest(c) => cmd_manifest::run(c),
        Command::Unit(a) => cmd_unit::run(a),
        Command::Run(a) => cmd_run::run(a),
        Command::Status(a) => cmd_status::run(a),
        Command::Service(c) => cmd_service::run(c),
        Command::Firstboot(c) => cmd_firstboot::run(c),
        Command::Mesh(c) => cmd_mesh::run(c),
        Command::Challenge(c) => cmd_challenge::run(c),
        Command::Chain(c) => cmd_chain::run(c),
        Command::Schema { .. } => {
            let schema = probe::Inventory::json_schema();
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
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
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// Write `bytes` to `path`, or to stdout for "-".
pub fn write_out(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.write_all(b"\n")?;
        Ok(())
    } else {
        xnode_verify::files::write_private(path, bytes)
            .with_context(|| format!("writing {}", path.display()))
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A hex argument of 1 to 64 bytes (nonces, beacons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl std::str::FromStr for Hex {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = hex::decode(s.trim()).map_err(|e| format!("not hex: {e}"))?;
        if b.is_empty() || b.len() > 64 {
            return Err(format!("{} bytes: give 1 to 64 bytes of hex", b.len()));
        }
        Ok(Hex(b))
    }
}
