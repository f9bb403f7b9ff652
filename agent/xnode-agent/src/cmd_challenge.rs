//! `xnode-agent challenge run|check`: answer a verifier's seed with proof
//! of the resources this node claims, and check such an answer offline.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use por::cpu::{self, CpuParams};
use por::report::{ChallengeReport, CpuResult, SCHEMA};
use por::Seed;

#[derive(Debug, clap::Subcommand)]
pub enum ChallengeCommand {
    /// Do the work the seed asks for and write the proof (a JSON report).
    Run(RunArgs),
    /// Check a report against the seed and the claim; exit 1 if it fails.
    Check(CheckArgs),
}

/// The resources a challenge covers in this version.
const RESOURCES: &[&str] = &["cpu"];

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The verifier's seed: 64 hex digits, fresh for each challenge.
    #[arg(long)]
    seed: Seed,
    /// Resources to prove, comma-separated. Available: cpu.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    resources: Vec<String>,
    /// Cores claimed: one lane each (default: every online CPU).
    #[arg(long)]
    cores: Option<u32>,
    /// Sequential steps per lane (default 2^24, about a second a core with SHA extensions).
    #[arg(long)]
    steps: Option<u64>,
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
    /// Fail when the work took longer than this by the prover's own clock.
    #[arg(long)]
    max_seconds: Option<f64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: ChallengeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ChallengeCommand::Run(a) => run_challenge(a),
        ChallengeCommand::Check(a) => check(a),
    }
}

fn params(cores: u32, steps: Option<u64>) -> anyhow::Result<CpuParams> {
    let mut p = CpuParams::for_cores(cores);
    if let Some(steps) = steps {
        p.steps_per_lane = steps;
    }
    p.validate()?;
    Ok(p)
}

fn run_challenge(a: RunArgs) -> anyhow::Result<ExitCode> {
    for r in &a.resources {
        if !RESOURCES.contains(&r.as_str()) {
            bail!(
                "--resources: {r:?} has no challenge in this version (available: {})",
                RESOURCES.join(", ")
            );
        }
    }
    let cores = match a.cores {
        Some(c) => c,
        None => std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .context("counting the online CPUs; give --cores")?,
    };
    let p = params(cores, a.steps)?;
    let progress = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let work = std::thread::scope(|s| {
        s.spawn(|| show_progress("cpu", &progress, p.prover_steps(), &done, start));
        let work = cpu::commit(&p, &a.seed, &progress);
        done.store(true, Ordering::Relaxed);
        work
    })?;
    let elapsed = start.elapsed();
    let nonce = cpu::self_nonce(&a.seed, &work.root());
    let report = ChallengeReport {
        schema: SCHEMA.into(),
        seed: a.seed,
        cpu: Some(CpuResult {
            elapsed_ms: elapsed.as_millis() as u64,
            proof: work.open(&nonce),
        }),
    };
    eprintln!(
        "cpu: {cores} lane(s) × {} steps in {:.2} s ({:.1} M steps/s in all)",
        p.steps_per_lane,
        elapsed.as_secs_f64(),
        p.prover_steps() as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
    );
    crate::write_out(&a.out, &serde_json::to_vec_pretty(&report)?)?;
    Ok(ExitCode::SUCCESS)
}

/// A bar on a terminal; a line every 10 s otherwise (a log).
fn show_progress(what: &str, done: &AtomicU64, total: u64, finished: &AtomicBool, start: Instant) {
    let tty = std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let n = done.load(Ordering::Relaxed);
        let pct = n as f64 * 100.0 / total.max(1) as f64;
        if tty {
            let filled = (pct / 5.0) as usize;
            eprint!(
                "\r{what}: [{}{}] {pct:5.1}% {:.0} s",
                "#".repeat(filled),
                " ".repeat(20 - filled.min(20)),
                start.elapsed().as_secs_f64()
            );
        } else if last_line.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "{what}: {pct:.1}% after {:.0} s",
                start.elapsed().as_secs_f64()
            );
            last_line = Instant::now();
        }
    }
    if tty {
        eprintln!();
    }
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let report = ChallengeReport::parse(&bytes).with_context(|| a.file.display().to_string())?;
    let Some(result) = &report.cpu else {
        bail!("{}: the report has no CPU proof", a.file.display());
    };
    let cores = a.cores.unwrap_or(result.proof.params.lanes);
    let p = params(cores, a.steps)?;
    let elapsed = result.elapsed_ms as f64 / 1000.0;
    let started = Instant::now();
    let verdict = report.check_cpu(&a.seed, &p);
    let check_secs = started.elapsed().as_secs_f64();
    let late = a.max_seconds.filter(|max| elapsed > *max);
    let ok = verdict.is_ok() && late.is_none();
    let why = match (&verdict, late) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(_), Some(max)) => Some(format!("took {elapsed:.2} s, over the bound of {max} s")),
        _ => None,
    };
    if a.json {
        let v = serde_json::json!({
            "ok": ok,
            "cpu": {
                "cores": cores,
                "steps_per_lane": p.steps_per_lane,
                "prover_steps": p.prover_steps(),
                "verifier_steps": p.verifier_steps(),
                "elapsed_seconds": elapsed,
                "check_seconds": check_secs,
                "error": why,
            }
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &why {
            None => println!(
                "cpu: ok: {cores} core(s), {} steps done in {elapsed:.2} s; {} re-computed here in {check_secs:.3} s ({:.2}% of the work)",
                p.prover_steps(),
                p.verifier_steps(),
                p.verifier_steps() as f64 * 100.0 / p.prover_steps() as f64
            ),
            Some(e) => println!("cpu: FAILED: {e}"),
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
