//! `xnode-agent challenge run|check`: answer a verifier's seed with proof
//! of the resources this node claims, and check such an answer offline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use por::report::{ChallengeReport, CpuResult, DiskResult, MemResult};
use por::Seed;

use crate::api_client::ApiTarget;
use crate::challenger::{Event, EventKind};
use crate::prove::{self, ClaimSpec, DiskShape, Progress};

#[derive(Debug, clap::Subcommand)]
pub enum ChallengeCommand {
    /// Do the work the seed asks for and write the proof (a JSON report).
    Run(RunArgs),
    /// Check a report against the seed and the claim; exit 1 if it fails.
    Check(CheckArgs),
    /// Ask the running agent (`run --challenges`) to prove its claim
    /// against a seed now, and follow its progress.
    Request(RequestArgs),
    /// Check a challenges file (`run --challenges`) and say what it claims.
    Config(ConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// The `xnode.challenges/v1` file.
    file: PathBuf,
    /// Print the claim as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    /// The verifier's seed: 64 hex digits, fresh for each challenge.
    #[arg(long, required_unless_present = "for_attestation")]
    seed: Option<Seed>,
    /// Derive the seed from the nonce or beacon (hex) of an attestation.
    #[arg(long, conflicts_with = "seed")]
    for_attestation: Option<crate::Hex>,
    #[command(flatten)]
    api: ApiTarget,
    /// Also fetch the report once proven, to this file ("-": standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start the challenge and return at once.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The verifier's seed: 64 hex digits, fresh for each challenge.
    #[arg(long, required_unless_present = "for_attestation")]
    seed: Option<Seed>,
    /// Derive the seed from the nonce or beacon (hex) of the attestation
    /// that will carry the report (`attest --capacity`).
    #[arg(long, conflicts_with = "seed")]
    for_attestation: Option<crate::Hex>,
    #[command(flatten)]
    claim: ClaimSpec,
    /// Where to write the report ("-": standard output).
    #[arg(long, default_value = "-")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The report `challenge run` wrote.
    file: PathBuf,
    /// The seed the verifier gave.
    #[arg(long)]
    seed: Seed,
    /// Cores the node claims (default: as many lanes as the report ran).
    #[arg(long)]
    cores: Option<u32>,
    /// Steps per lane the challenge asked for (default 2^24).
    #[arg(long)]
    steps: Option<u64>,
    /// Fail when the CPU work took longer than this by the prover's own clock.
    #[arg(long)]
    max_seconds: Option<f64>,
    /// Memory claimed (bytes, or with a K, M, G or T suffix); checks the memory proof.
    #[arg(long, value_parser = prove::parse_size)]
    memory: Option<u64>,
    /// Reads in the memory walk the challenge asked for (default 2^22).
    #[arg(long)]
    walk_steps: Option<u64>,
    /// Fail when the memory walk took longer than this by the prover's own clock.
    #[arg(long)]
    max_walk_seconds: Option<f64>,
    /// Fail when the memory sweep streamed slower than this, in MiB/s, by
    /// the prover's own clock (e.g. 0.9 × the claimed DIMMs' rated rate).
    #[arg(long)]
    min_memory_mib_s: Option<f64>,
    /// Storage claimed (bytes, or with a K, M, G or T suffix); checks the storage proof.
    #[arg(long, value_parser = prove::parse_size)]
    disk: Option<u64>,
    /// The seed the node's plot was made from (default: --seed).
    #[arg(long)]
    plot_seed: Option<Seed>,
    #[command(flatten)]
    disk_shape: DiskShape,
    /// Fail when the storage walk took longer than this by the prover's own
    /// clock (default: the protocol's bound for the parameters).
    #[arg(long)]
    max_disk_walk_seconds: Option<f64>,
    /// GPUs claimed: UUIDs, comma-separated (as the node's inventory lists
    /// them); checks the GPU proof.
    #[arg(long, value_delimiter = ',')]
    gpus: Vec<String>,
    /// The GPU product's size n the challenge asked for (needed with --gpus).
    #[arg(long, requires = "gpus")]
    gpu_n: Option<u32>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: ChallengeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ChallengeCommand::Run(a) => run_challenge(a),
        ChallengeCommand::Check(a) => check(a),
        ChallengeCommand::Request(a) => request(a),
        ChallengeCommand::Config(a) => config(a),
    }
}

fn run_challenge(a: RunArgs) -> anyhow::Result<ExitCode> {
    let seed = match (&a.seed, &a.for_attestation) {
        (Some(s), _) => *s,
        (None, Some(fresh)) => por::report::attestation_seed(&fresh.0),
        (None, None) => bail!("give --seed HEX or --for-attestation HEX"),
    };
    // Every parameter is checked before any work starts.
    let claim = a.claim.claim().context("the claim")?;
    let report = prove::prove(&claim, &seed, &prove::Terminal::new())?;
    crate::write_out(&a.out, &serde_json::to_vec_pretty(&report)?)?;
    Ok(ExitCode::SUCCESS)
}

fn config(a: ConfigArgs) -> anyhow::Result<ExitCode> {
    let c = crate::challenger::Config::load(&a.file)?;
    let claim = &c.claim;
    let v = serde_json::json!({
        "every_seconds": c.every.map(|d| d.as_secs()),
        "min_request_gap_seconds": c.min_request_gap.as_secs(),
        "nice": c.nice,
        "cpu": claim.cpu.map(|p| serde_json::json!({"lanes": p.lanes, "steps_per_lane": p.steps_per_lane})),
        "memory": claim.memory.map(|p| serde_json::json!({"bytes": p.bytes, "walk_steps": p.walk_steps})),
        "disk": claim.disk.as_ref().map(|d| serde_json::json!({
            "bytes": d.params.plot.bytes,
            "plot": d.plot,
            "label_bytes": d.params.plot.label_bytes,
            "passes": d.params.plot.passes,
            "walk_steps": d.params.walk_steps,
            "walk_bound_seconds": d.params.walk_bound().as_secs_f64(),
        })),
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    match c.every {
        Some(every) => println!(
            "every {} s (nice {}); requested proofs at least {} s apart",
            every.as_secs(),
            c.nice,
            c.min_request_gap.as_secs()
        ),
        None => println!(
            "on request only, at least {} s apart",
            c.min_request_gap.as_secs()
        ),
    }
    if let Some(p) = claim.cpu {
        println!(
            "cpu: {} core(s), {} steps a lane",
            p.lanes, p.steps_per_lane
        );
    }
    if let Some(p) = claim.memory {
        println!(
            "memory: {} bytes, a walk of {} reads, a sweep of {} pass(es)",
            p.bytes, p.walk_steps, p.sweep_passes
        );
    }
    if let Some(d) = &claim.disk {
        println!(
            "storage: {} at {} ({} reads a walk, bound {:.0} s{})",
            d.params.plot,
            d.plot.display(),
            d.params.walk_steps,
            d.params.walk_bound().as_secs_f64(),
            if prove::plot_exists(&d.plot) {
                "; the plot is there"
            } else {
                "; the first proof makes the plot"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn request(a: RequestArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(request_and_follow(a))
}

/// The `error` of an API answer, or the body as text.
fn api_error(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

async fn request_and_follow(a: RequestArgs) -> anyhow::Result<ExitCode> {
    let query = match (&a.seed, &a.for_attestation) {
        (Some(s), _) => format!("seed={s}"),
        (None, Some(f)) => format!("for_attestation={}", hex::encode(&f.0)),
        (None, None) => bail!("give --seed HEX or --for-attestation HEX"),
    };
    let (code, body) = a.api.post(&format!("/v1/challenge?{query}")).await?;
    if code != 202 {
        bail!(
            "the agent refused the challenge ({code}): {}",
            api_error(&body)
        );
    }
    let started: serde_json::Value = serde_json::from_slice(&body)?;
    let seed = started["seed"].as_str().unwrap_or_default().to_string();
    if a.no_wait {
        println!(
            "challenge started (seed {seed}); follow it at {}",
            started["events"].as_str().unwrap_or("/v1/challenge/events")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut after = started["after"].as_u64();
    let term = prove::Terminal::new();
    let begun = Instant::now();
    let outcome = loop {
        let path = match after {
            Some(n) => format!("/v1/challenge/events?after={n}"),
            None => "/v1/challenge/events".to_string(),
        };
        let (code, body) = a.api.get(&path).await?;
        if code != 200 {
            bail!("following the challenge ({code}): {}", api_error(&body));
        }
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        let events: Vec<Event> = serde_json::from_value(page["events"].clone())?;
        let mut end = None;
        for e in events {
            after = Some(e.seq);
            let text = e.text.clone().unwrap_or_default();
            match e.kind {
                EventKind::Progress | EventKind::PhaseDone => term.update(
                    e.phase.as_deref().unwrap_or("challenge"),
                    e.done.unwrap_or(0),
                    e.total.unwrap_or(0),
                    begun.elapsed(),
                    e.kind == EventKind::PhaseDone,
                ),
                EventKind::Line => term.line(&text),
                EventKind::Started => {}
                EventKind::Finished => end = Some(Ok(text)),
                EventKind::Failed => end = Some(Err(text)),
            }
        }
        if let Some(end) = end {
            break end;
        }
        if page["running"] == false {
            // Its end fell out of the kept events: the status has it.
            let (_, body) = a.api.get("/v1/status").await?;
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            let last = &v["proof_of_resource"]["last"];
            break match last["ok"].as_bool() {
                Some(true) => Ok(last["proven"].to_string()),
                _ => Err(last["error"].as_str().unwrap_or("unknown").to_string()),
            };
        }
    };
    match outcome {
        Ok(proven) => {
            println!("proven (seed {seed}): {proven}");
            if let Some(out) = &a.out {
                let (code, body) = a.api.get("/v1/challenge").await?;
                if code != 200 {
                    bail!("fetching the report ({code}): {}", api_error(&body));
                }
                crate::write_out(out, &body)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("the challenge failed: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

/// One resource's verdict: what was checked and, on failure, why.
struct Verdict {
    ok: bool,
    json: serde_json::Value,
    line: String,
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let report = ChallengeReport::parse(&bytes).with_context(|| a.file.display().to_string())?;
    if report.cpu.is_none()
        && report.memory.is_none()
        && report.disk.is_none()
        && report.gpu.is_none()
    {
        bail!("{}: the report has no proof in it", a.file.display());
    }
    let mut verdicts = serde_json::Map::new();
    let mut all_ok = true;
    let mut lines = Vec::new();
    if let Some(result) = &report.cpu {
        let v = check_cpu(&a, &report, result)?;
        all_ok &= v.ok;
        lines.push(v.line);
        verdicts.insert("cpu".into(), v.json);
    }
    match (&report.memory, a.memory) {
        (Some(result), Some(claim)) => {
            let v = check_memory(&a, &report, result, claim)?;
            all_ok &= v.ok;
            lines.push(v.line);
            verdicts.insert("memory".into(), v.json);
        }
        (Some(_), None) => bail!(
            "the report has a memory proof: give --memory SIZE (the claim to check it against)"
        ),
        (None, Some(_)) => bail!("--memory: the report has no memory proof"),
        (None, None) => {}
    }
    match (&report.disk, a.disk) {
        (Some(result), Some(claim)) => {
            let v = check_disk(&a, &report, result, claim)?;
            all_ok &= v.ok;
            lines.push(v.line);
            verdicts.insert("disk".into(), v.json);
        }
        (Some(_), None) => bail!(
            "the report has a storage proof: give --disk SIZE (the claim to check it against)"
        ),
        (None, Some(_)) => bail!("--disk: the report has no storage proof"),
        (None, None) => {}
    }
    match (&report.gpu, a.gpus.is_empty()) {
        (Some(result), false) => {
            let v = check_gpu(&a, &report, result)?;
            all_ok &= v.ok;
            lines.push(v.line);
            verdicts.insert("gpu".into(), v.json);
        }
        (Some(_), true) => bail!(
            "the report has a GPU proof: give --gpus UUID,... (the cards claimed, as the inventory lists them)"
        ),
        (None, false) => bail!("--gpus: the report has no GPU proof"),
        (None, true) => {}
    }
    if a.json {
        verdicts.insert("ok".into(), all_ok.into());
        println!("{}", serde_json::to_string_pretty(&verdicts)?);
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn failure(verdict: Result<(), String>, elapsed: f64, bound: Option<f64>) -> Option<String> {
    match (verdict, bound.filter(|max| elapsed > *max)) {
        (Err(e), _) => Some(e),
        (Ok(()), Some(max)) => Some(format!("took {elapsed:.2} s, over the bound of {max} s")),
        (Ok(()), None) => None,
    }
}

fn check_cpu(
    a: &CheckArgs,
    report: &ChallengeReport,
    result: &CpuResult,
) -> anyhow::Result<Verdict> {
    let cores = a.cores.unwrap_or(result.proof.params.lanes);
    let p = prove::cpu_params(cores, a.steps)?;
    let elapsed = result.elapsed_ms as f64 / 1000.0;
    let started = Instant::now();
    let verdict = report
        .check_cpu(&a.seed, &p)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let check_secs = started.elapsed().as_secs_f64();
    let why = failure(verdict, elapsed, a.max_seconds);
    let line = match &why {
        None => format!(
            "cpu: ok: {cores} core(s), {} steps done in {elapsed:.2} s; {} re-computed here in {check_secs:.3} s ({:.2}% of the work)",
            p.prover_steps(),
            p.verifier_steps(),
            p.verifier_steps() as f64 * 100.0 / p.prover_steps() as f64
        ),
        Some(e) => format!("cpu: FAILED: {e}"),
    };
    Ok(Verdict {
        ok: why.is_none(),
        json: serde_json::json!({
            "cores": cores,
            "steps_per_lane": p.steps_per_lane,
            "prover_steps": p.prover_steps(),
            "verifier_steps": p.verifier_steps(),
            "elapsed_seconds": elapsed,
            "check_seconds": check_secs,
            "error": why,
        }),
        line,
    })
}

fn check_memory(
    a: &CheckArgs,
    report: &ChallengeReport,
    result: &MemResult,
    claim: u64,
) -> anyhow::Result<Verdict> {
    let p = prove::mem_params(claim, result.proof.params.lanes, a.walk_steps)?;
    let walk = result.walk_ms as f64 / 1000.0;
    let started = Instant::now();
    let verdict = report
        .check_memory(&a.seed, &p)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let check_secs = started.elapsed().as_secs_f64();
    let rate = result.sweep_mib_s();
    let why = failure(verdict, walk, a.max_walk_seconds).or_else(|| {
        a.min_memory_mib_s.filter(|min| rate < *min).map(|min| {
            format!("the sweep streamed {rate:.0} MiB/s, under the bound of {min} MiB/s")
        })
    });
    let line = match &why {
        None => format!(
            "memory: ok: {claim} bytes; walk of {} reads in {walk:.2} s; swept {} time(s) at {rate:.0} MiB/s; checked here in {check_secs:.3} s",
            p.walk_steps, p.sweep_passes
        ),
        Some(e) => format!("memory: FAILED: {e}"),
    };
    Ok(Verdict {
        ok: why.is_none(),
        json: serde_json::json!({
            "bytes": claim,
            "walk_steps": p.walk_steps,
            "fill_seconds": result.fill_ms as f64 / 1000.0,
            "walk_seconds": walk,
            "sweep_passes": p.sweep_passes,
            "sweep_seconds": result.sweep_us as f64 / 1e6,
            "sweep_mib_s": rate,
            "prover_hashes": p.prover_hashes(),
            "verifier_hashes": p.verifier_hashes(),
            "check_seconds": check_secs,
            "error": why,
        }),
        line,
    })
}

fn check_gpu(
    a: &CheckArgs,
    report: &ChallengeReport,
    result: &por::report::GpuResult,
) -> anyhow::Result<Verdict> {
    // The size is the challenge's, never the proof's own.
    let n = a.gpu_n.context(
        "the report has a GPU proof: give --gpu-n N (the product size the challenge asked for)",
    )?;
    let params = por::gpu::GpuParams::with_n(n);
    params.validate()?;
    let claim = por::report::GpuClaim {
        params,
        uuids: a.gpus.clone(),
    };
    let started = Instant::now();
    let verdict = report.check_gpu(&a.seed, &claim).map_err(|e| e.to_string());
    let check_secs = started.elapsed().as_secs_f64();
    let slowest = result.cards.iter().map(|c| c.product_ms).max().unwrap_or(0) as f64 / 1000.0;
    let line = match &verdict {
        Ok(v) => format!(
            "gpu: ok: {} card(s), {}×{} products, the slowest in {slowest:.2} s ({}); {} entries re-computed here in {check_secs:.3} s",
            v.cards, params.n, params.n, result.prover, v.entries_checked
        ),
        Err(e) => format!("gpu: FAILED: {e}"),
    };
    Ok(Verdict {
        ok: verdict.is_ok(),
        json: serde_json::json!({
            "cards": claim.uuids,
            "n": params.n,
            "prover": result.prover,
            "product_seconds": result.cards.iter().map(|c| (c.uuid.clone(), c.product_ms as f64 / 1000.0)).collect::<std::collections::BTreeMap<_, _>>(),
            "prover_macs_per_card": params.prover_macs(),
            "verifier_macs_per_card": params.verifier_macs(),
            "check_seconds": check_secs,
            "error": verdict.err(),
        }),
        line,
    })
}

fn check_disk(
    a: &CheckArgs,
    report: &ChallengeReport,
    result: &DiskResult,
    claim: u64,
) -> anyhow::Result<Verdict> {
    let p = a.disk_shape.params(claim)?;
    let plot_seed = a.plot_seed.unwrap_or(a.seed);
    let walk = result.walk_ms as f64 / 1000.0;
    let bound = a
        .max_disk_walk_seconds
        .unwrap_or_else(|| p.walk_bound().as_secs_f64());
    let started = Instant::now();
    let verdict = report
        .check_disk(&a.seed, &p, &plot_seed)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let check_secs = started.elapsed().as_secs_f64();
    let why = failure(verdict, walk, Some(bound));
    let line = match &why {
        None => format!(
            "disk: ok: {claim} bytes plotted from seed {plot_seed}; walk of {} label reads in {walk:.2} s (bound {bound:.2} s); {} labels remade here in {check_secs:.3} s",
            p.walk_steps, p.walk_samples
        ),
        Some(e) => format!("disk: FAILED: {e}"),
    };
    Ok(Verdict {
        ok: why.is_none(),
        json: serde_json::json!({
            "bytes": claim,
            "plot_seed": plot_seed.to_string(),
            "plot_root": hex::encode(result.proof.plot_root),
            "walk_steps": p.walk_steps,
            "plot_seconds": result.plot_ms.map(|ms| ms as f64 / 1000.0),
            "walk_seconds": walk,
            "read_seconds": result.read_ms as f64 / 1000.0,
            "direct_io": result.direct_io,
            "bound_seconds": bound,
            "prover_blocks": p.prover_blocks(),
            "verifier_blocks": p.verifier_blocks(),
            "check_seconds": check_secs,
            "error": why,
        }),
        line,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::challenger::Challenger;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_requested_challenge_is_followed_to_its_report() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let (status_tx, status) =
            tokio::sync::watch::channel(std::sync::Arc::new(supervisor::status::Status::default()));
        let challenger = Challenger::new(crate::challenger::tests::small_config(None), dir.path());
        let st = crate::api::ApiState {
            status,
            state_dir: dir.path().to_path_buf(),
            tpm: probe::TpmSource::None,
            started_at: 0.0,
            challenger: Some(challenger.clone()),
            challenges_error: None,
        };
        crate::api::serve_unix(&sock, crate::api::router(st), None)
            .await
            .unwrap();
        let args = |out: Option<PathBuf>| RequestArgs {
            seed: None,
            for_attestation: Some("a1b2c3".parse().unwrap()),
            api: ApiTarget {
                socket: sock.clone(),
                tcp: None,
                key: None,
            },
            out,
            no_wait: false,
        };
        let out = dir.path().join("proofs.json");
        let code = request_and_follow(args(Some(out.clone()))).await.unwrap();
        assert_eq!(code, ExitCode::SUCCESS);

        // The report fetched is the one for this attestation's nonce, and
        // an attestation would carry it (at these light parameters only
        // the claim's own check passes, not the defaults').
        let seed = por::report::attestation_seed(&[0xa1, 0xb2, 0xc3]);
        let report = ChallengeReport::parse(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(report.seed, seed);
        let claim = crate::challenger::tests::small_config(None).claim;
        let lines = prove::self_check(&claim, &seed, &report).unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(challenger.status().last.unwrap().proven, lines);

        // A second request inside the gap is refused, with why.
        let e = request_and_follow(args(None))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("(429)") && e.contains("again in"), "{e}");
        drop(status_tx);
    }
}
