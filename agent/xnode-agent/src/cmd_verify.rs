//! The verifier's commands: `verify`, `credential challenge`, `credential accept`.
//! None of them needs a TPM or a TPM library.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use xnode_verify::credential::{self, Pending, Registry, Response, REGISTRY_VERSION};
use xnode_verify::{ekcert, Envelope, Policy, Status};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The envelope ("-" for stdin).
    file: PathBuf,
    /// PEM file of CA certificates trusted to issue EK certificates (repeatable).
    #[arg(long = "ek-ca")]
    ek_ca: Vec<PathBuf>,
    /// The registry of activated (EK, AK) pairs (written by `credential accept`).
    #[arg(long)]
    activations: Option<PathBuf>,
    /// The nonce (hex) this verifier gave the node.
    #[arg(long)]
    nonce: Option<crate::Hex>,
    /// The beacon (hex) the report must be bound to.
    #[arg(long)]
    beacon: Option<crate::Hex>,
    /// Reject reports older than this many seconds.
    #[arg(long)]
    max_age: Option<u64>,
    /// Reject reports with a lower sequence number (replays of older reports).
    #[arg(long)]
    min_sequence: Option<u64>,
    /// JSON object of expected sha256 PCR values: {"0": "hex", "7": "hex"}.
    #[arg(long)]
    expect_pcrs: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ChallengeArgs {
    /// The node's envelope (its EK and AK are challenged).
    envelope: PathBuf,
    /// Where to write the challenge for the node.
    #[arg(long, short)]
    out: PathBuf,
    /// Where to keep the verifier's pending record (holds the secret's hash).
    #[arg(long)]
    pending: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct AcceptArgs {
    /// The pending record written by `credential challenge`.
    pending: PathBuf,
    /// The node's response.
    response: PathBuf,
    /// The registry of activated pairs to add to (created if absent).
    #[arg(long)]
    registry: PathBuf,
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b)?;
        Ok(b)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    serde_json::from_slice(&read_input(path)?)
        .with_context(|| format!("{} is not {what}", path.display()))
}

fn policy(args: &VerifyArgs) -> anyhow::Result<Policy> {
    let mut ek_cas = Vec::new();
    for p in &args.ek_ca {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let certs = ekcert::parse_pem_bundle(&text).with_context(|| format!("{}", p.display()))?;
        if certs.is_empty() {
            bail!("{} holds no PEM certificate", p.display());
        }
        ek_cas.extend(certs);
    }
    let activations = args
        .activations
        .as_deref()
        .map(|p| read_json::<Registry>(p, "an activation registry"))
        .transpose()?;
    let expected_pcrs = match &args.expect_pcrs {
        Some(p) => {
            let raw: BTreeMap<String, String> =
                read_json(p, "a JSON object of PCR index to hex value")?;
            let mut m = BTreeMap::new();
            for (k, v) in raw {
                let idx: u32 = k
                    .parse()
                    .with_context(|| format!("{}: '{k}' is not a PCR index", p.display()))?;
                m.insert(
                    idx,
                    hex::decode(&v)
                        .with_context(|| format!("{}: PCR {k} is not hex", p.display()))?,
                );
            }
            Some(m)
        }
        None => None,
    };
    Ok(Policy {
        ek_cas,
        activations,
        nonce: args.nonce.clone().map(|h| h.0),
        beacon: args.beacon.clone().map(|h| h.0),
        max_age_secs: args.max_age,
        min_sequence: args.min_sequence,
        expected_pcrs,
        now_unix: crate::now_unix(),
        ..Default::default()
    })
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let policy = policy(&args)?;
    let bytes = read_input(&args.file)?;
    let outcome = xnode_verify::verify(&bytes, &policy);
    if args.json {
        let v = serde_json::json!({
            "ok": outcome.ok,
            "node_id": outcome.report.as_ref().map(|r| &r.node_id),
            "sequence": outcome.report.as_ref().map(|r| r.sequence),
            "software_tpm": outcome.report.as_ref().map(|r| r.software_tpm),
            "checks": outcome.checks,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for c in &outcome.checks {
            let tag = match c.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            println!("{tag}  {:<16} {}", c.name, c.detail);
        }
        if let Some(r) = outcome.report.as_ref().filter(|r| r.software_tpm) {
            println!("note  the node reports a SOFTWARE TPM (sequence {}): trust it only as far as you trust its EK CA", r.sequence);
        }
        let failed: Vec<&str> = outcome.failed().map(|c| c.name).collect();
        if outcome.ok {
            println!("VERIFIED");
        } else {
            println!(
                "REJECTED: {} check(s) failed: {}",
                failed.len(),
                failed.join(", ")
            );
        }
    }
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn challenge(args: ChallengeArgs) -> anyhow::Result<ExitCode> {
    let env: Envelope = read_json(&args.envelope, "an attestation envelope")?;
    let ek = xnode_verify::format::unb64("tpm.ek_public", &env.tpm.ek_public)?;
    let ak = xnode_verify::format::unb64("tpm.ak_public", &env.tpm.ak_public)?;
    let (challenge, pending) =
        credential::issue(&ek, &ak, crate::now_unix(), &mut rand_core::OsRng)?;
    xnode_verify::files::write_private(&args.pending, &serde_json::to_vec_pretty(&pending)?)
        .with_context(|| format!("writing {}", args.pending.display()))?;
    crate::write_out(&args.out, &serde_json::to_vec_pretty(&challenge)?)?;
    eprintln!(
        "challenge for AK {}… written; send {} to the node",
        &challenge.ak_name[..16],
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn accept(args: AcceptArgs) -> anyhow::Result<ExitCode> {
    let pending: Pending = read_json(&args.pending, "a pending challenge record")?;
    let response: Response = read_json(&args.response, "a credential response")?;
    let activation =
        credential::accept(&pending, &response, crate::now_unix()).context("activation refused")?;
    let mut registry = match xnode_verify::files::read_optional(&args.registry)? {
        Some(b) => serde_json::from_slice::<Registry>(&b).with_context(|| {
            format!(
                "{} is not an activation registry; it was left untouched",
                args.registry.display()
            )
        })?,
        None => Registry {
            version: REGISTRY_VERSION.into(),
            activations: Vec::new(),
        },
    };
    if !registry.contains(&activation.ek_public_sha256, &activation.ak_name) {
        registry.activations.push(activation.clone());
    }
    xnode_verify::files::write_private(&args.registry, &serde_json::to_vec_pretty(&registry)?)
        .with_context(|| format!("writing {}", args.registry.display()))?;
    // The challenge is spent: its secret must not be accepted twice.
    let _ = std::fs::remove_file(&args.pending);
    eprintln!(
        "activated: AK {}… shares a TPM with EK {}…",
        &activation.ak_name[..16],
        &activation.ek_public_sha256[..16]
    );
    Ok(ExitCode::SUCCESS)
}
