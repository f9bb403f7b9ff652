//! The node's commands: `identity`, `attest`, `credential activate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use attest::{AttestOptions, Freshness, NodeIdentity};
use probe::TpmSource;

/// Where the node keeps its key, AK blobs and sequence counter.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// The node's state directory (node key, AK blobs, sequence counter).
    #[arg(long, env = "XNODE_STATE_DIR", default_value = "/var/lib/xnode")]
    state_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct IdentityArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AttestArgs {
    #[command(flatten)]
    state: StateArgs,
    /// A verifier's nonce (hex), for interactive freshness.
    #[arg(long, conflicts_with = "beacon", required_unless_present = "beacon")]
    nonce: Option<crate::Hex>,
    /// A public beacon (hex, e.g. a recent block hash) the report is bound to.
    #[arg(long)]
    beacon: Option<crate::Hex>,
    /// The TPM: device:/dev/tpmrm0 or swtpm:host=H,port=P.
    #[arg(long, default_value = "device:/dev/tpmrm0", env = "XNODE_TCTI")]
    tcti: TpmSource,
    /// sha256 PCRs to quote.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7,11,14")]
    pcrs: Vec<u8>,
    /// The measured-boot event log to include when readable.
    #[arg(
        long,
        default_value = "/sys/kernel/security/tpm0/binary_bios_measurements"
    )]
    event_log: PathBuf,
    /// A proof-of-resource report to carry in the attestation, made with
    /// `challenge run --for-attestation` and this nonce or beacon.
    #[arg(long)]
    capacity: Option<PathBuf>,
    /// Where to write the envelope ("-" for stdout).
    #[arg(long, short, default_value = "-")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ActivateArgs {
    /// The verifier's challenge file.
    challenge: PathBuf,
    #[command(flatten)]
    state: StateArgs,
    #[arg(long, default_value = "device:/dev/tpmrm0", env = "XNODE_TCTI")]
    tcti: TpmSource,
    /// Where to write the response ("-" for stdout).
    #[arg(long, short, default_value = "-")]
    out: PathBuf,
}

pub fn identity(args: IdentityArgs) -> anyhow::Result<ExitCode> {
    let (id, created) = NodeIdentity::load_or_create(&args.state.state_dir)?;
    if args.json {
        let v = serde_json::json!({
            "peer_id": id.peer_id(),
            "public_key": hex::encode(id.public_key()),
            "key_file": id.path(),
            "created": created,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if created {
            eprintln!("created a new node key at {}", id.path().display());
        }
        println!("peer id:    {}", id.peer_id());
        println!("public key: {}", hex::encode(id.public_key()));
        println!("key file:   {}", id.path().display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn attest(args: AttestArgs) -> anyhow::Result<ExitCode> {
    let freshness = match (args.nonce, args.beacon) {
        (Some(n), _) => Freshness::Nonce(n.0),
        (None, Some(b)) => Freshness::Beacon(b.0),
        (None, None) => anyhow::bail!("give --nonce HEX or --beacon HEX"),
    };
    let opts = AttestOptions {
        state_dir: args.state.state_dir,
        tcti: args.tcti,
        freshness,
        pcrs: args.pcrs,
        event_log: args.event_log,
        capacity: args
            .capacity
            .as_ref()
            .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
            .transpose()?,
    };
    let out = attest::attest(&opts)?;
    if out.software_tpm {
        eprintln!(
            "WARNING: attested with a SOFTWARE TPM ({}): verifiers must not trust this as hardware",
            opts.tcti
        );
    }
    if out.created_identity {
        eprintln!("created the node key in {}", opts.state_dir.display());
    }
    if out.created_ak {
        eprintln!("created an attestation key: activate it with the verifier (xnode-agent credential ...)");
    }
    if !out.has_ek_certificate {
        eprintln!("note: the TPM holds no EK certificate; verifiers cannot trace its EK to a manufacturer");
    }
    crate::write_out(&args.out, &out.envelope).context("writing the envelope")?;
    eprintln!("attested: node {} sequence {}", out.peer_id, out.sequence);
    Ok(ExitCode::SUCCESS)
}

pub fn activate(args: ActivateArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read(&args.challenge)
        .with_context(|| format!("reading {}", args.challenge.display()))?;
    let challenge = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a credential challenge", args.challenge.display()))?;
    let response = attest::activate(&args.state.state_dir, &args.tcti, &challenge)?;
    crate::write_out(&args.out, &serde_json::to_vec_pretty(&response)?)?;
    Ok(ExitCode::SUCCESS)
}
