//! `xnode-agent challenge run|check`: answer a verifier's seed with proof
//! of the resources this node claims, and check such an answer offline.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use por::cpu::{self, CpuParams};
use por::memory::{self, MemParams};
use por::report::{mem_self_nonce, ChallengeReport, CpuResult, DiskResult, MemResult, SCHEMA};
use por::storage::{DiskParams, Plot};
use por::Seed;

#[derive(Debug, clap::Subcommand)]
pub enum ChallengeCommand {
    /// Do the work the seed asks for and write the proof (a JSON report).
    Run(RunArgs),
    /// Check a report against the seed and the claim; exit 1 if it fails.
    Check(CheckArgs),
}

/// The resources a challenge covers in this version.
const RESOURCES: &[&str] = &["cpu", "mem", "disk"];

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The verifier's seed: 64 hex digits, fresh for each challenge.
    #[arg(long, required_unless_present = "for_attestation")]
    seed: Option<Seed>,
    /// Derive the seed from the nonce or beacon (hex) of the attestation
    /// that will carry the report (`attest --capacity`).
    #[arg(long, conflicts_with = "seed")]
    for_attestation: Option<crate::Hex>,
    /// Resources to prove, comma-separated. Available: cpu, mem, disk.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    resources: Vec<String>,
    /// Cores claimed: one lane each (default: every online CPU).
    #[arg(long)]
    cores: Option<u32>,
    /// Sequential steps per lane (default 2^24, about a second a core with SHA extensions).
    #[arg(long)]
    steps: Option<u64>,
    /// Memory claimed, in bytes or with a K, M, G or T suffix (needed with mem).
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// Reads in the memory walk (default 2^22).
    #[arg(long)]
    walk_steps: Option<u64>,
    /// Storage claimed, in bytes or with a K, M, G or T suffix (needed with disk).
    #[arg(long, value_parser = parse_size)]
    disk: Option<u64>,
    /// The plot file (needed with disk): made on the first run, walked by later ones.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The seed to make a new plot from (default: --seed); an existing plot must have it.
    #[arg(long)]
    plot_seed: Option<Seed>,
    #[command(flatten)]
    disk_shape: DiskShape,
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
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// Reads in the memory walk the challenge asked for (default 2^22).
    #[arg(long)]
    walk_steps: Option<u64>,
    /// Fail when the memory walk took longer than this by the prover's own clock.
    #[arg(long)]
    max_walk_seconds: Option<f64>,
    /// Storage claimed (bytes, or with a K, M, G or T suffix); checks the storage proof.
    #[arg(long, value_parser = parse_size)]
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
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The storage challenge's parameters, where the defaults do not serve.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DiskShape {
    /// Bytes per plot label (default 256K; a multiple of 4096).
    #[arg(long, value_parser = parse_size)]
    label_bytes: Option<u64>,
    /// Mixing passes over each label (default 10).
    #[arg(long)]
    passes: Option<u32>,
    /// Label reads in the storage walk (default 2^18).
    #[arg(long)]
    disk_walk_steps: Option<u64>,
    /// Hashes between the walk's commitment and its samples (default 2^20).
    #[arg(long)]
    sampling_work: Option<u64>,
}

impl DiskShape {
    fn params(self, bytes: u64) -> anyhow::Result<DiskParams> {
        let mut p = DiskParams::for_claim(bytes);
        if let Some(l) = self.label_bytes {
            p.plot.label_bytes = l;
        }
        if let Some(n) = self.passes {
            p.plot.passes = n;
        }
        if let Some(w) = self.disk_walk_steps {
            p.walk_steps = w;
        }
        if let Some(w) = self.sampling_work {
            p.sampling_work = w;
        }
        p.validate()?;
        Ok(p)
    }
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

fn mem_params(bytes: u64, lanes: u32, walk_steps: Option<u64>) -> anyhow::Result<MemParams> {
    let mut p = MemParams::for_claim(bytes, lanes);
    if let Some(w) = walk_steps {
        p.walk_steps = w;
    }
    p.validate()?;
    Ok(p)
}

/// A claim over what the kernel can give now is refused before the fill:
/// filling it would end in swap or the OOM killer, not in a proof.
fn ensure_memory_available(bytes: u64) -> anyhow::Result<()> {
    match probe::memory::probe(&probe::Root::host()).map(|m| m.available_bytes) {
        Ok(Some(available)) if bytes > available => bail!(
            "--memory {bytes}: only {available} bytes are available now (/proc/meminfo MemAvailable); \
             free memory or claim less"
        ),
        Ok(Some(_)) => Ok(()),
        Ok(None) | Err(_) => {
            eprintln!("mem: MemAvailable is unreadable; not checking the claim against it");
            Ok(())
        }
    }
}

/// "512M", "4G", "1073741824": bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        Some((i, 'T' | 't')) => (&s[..i], 40),
        _ => (s, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: give bytes, or a number with K, M, G or T"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn run_challenge(a: RunArgs) -> anyhow::Result<ExitCode> {
    let seed = match (&a.seed, &a.for_attestation) {
        (Some(s), _) => *s,
        (None, Some(fresh)) => por::report::attestation_seed(&fresh.0),
        (None, None) => bail!("give --seed HEX or --for-attestation HEX"),
    };
    for r in &a.resources {
        if !RESOURCES.contains(&r.as_str()) {
            bail!(
                "--resources: {r:?} has no challenge in this version (available: {})",
                RESOURCES.join(", ")
            );
        }
    }
    let wants = |r: &str| a.resources.iter().any(|x| x == r);
    let cores = match a.cores {
        Some(c) => c,
        None => std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .context("counting the online CPUs; give --cores")?,
    };
    // Every parameter is checked before any work starts.
    let cpu_params = wants("cpu").then(|| params(cores, a.steps)).transpose()?;
    let mem_params = match (wants("mem"), a.memory) {
        (false, _) => None,
        (true, None) => bail!("--resources mem needs --memory SIZE (the memory claimed)"),
        (true, Some(bytes)) => {
            let p = mem_params(bytes, cores, a.walk_steps)?;
            ensure_memory_available(bytes)?;
            Some(p)
        }
    };
    let disk = match (wants("disk"), a.disk, &a.plot) {
        (false, _, _) => None,
        (true, None, _) => bail!("--resources disk needs --disk SIZE (the storage claimed)"),
        (true, _, None) => bail!("--resources disk needs --plot PATH (where the plot is kept)"),
        (true, Some(bytes), Some(path)) => Some((a.disk_shape.params(bytes)?, path.clone())),
    };
    let mut report = ChallengeReport {
        schema: SCHEMA.into(),
        seed,
        cpu: None,
        memory: None,
        disk: None,
    };
    if let Some(p) = cpu_params {
        report.cpu = Some(run_cpu(&p, &seed)?);
    }
    if let Some(p) = mem_params {
        report.memory = Some(run_memory(&p, &seed)?);
    }
    if let Some((p, path)) = disk {
        let plot_seed = a.plot_seed.unwrap_or(seed);
        report.disk = Some(run_disk(&p, &path, a.plot_seed, &plot_seed, cores, &seed)?);
    }
    crate::write_out(&a.out, &serde_json::to_vec_pretty(&report)?)?;
    Ok(ExitCode::SUCCESS)
}

/// Run `work` while a progress display follows `progress` up to `total`.
fn with_progress<T>(what: &str, total: u64, work: impl FnOnce(&AtomicU64) -> T) -> (T, Duration) {
    let progress = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let out = std::thread::scope(|s| {
        s.spawn(|| show_progress(what, &progress, total, &done, start));
        let out = work(&progress);
        done.store(true, Ordering::Relaxed);
        out
    });
    (out, start.elapsed())
}

fn run_cpu(p: &CpuParams, seed: &Seed) -> anyhow::Result<CpuResult> {
    let (work, elapsed) = with_progress("cpu", p.prover_steps(), |progress| {
        cpu::commit(p, seed, progress)
    });
    let work = work?;
    eprintln!(
        "cpu: {} lane(s) × {} steps in {:.2} s ({:.1} M steps/s in all)",
        p.lanes,
        p.steps_per_lane,
        elapsed.as_secs_f64(),
        p.prover_steps() as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
    );
    let nonce = cpu::self_nonce(seed, &work.root());
    Ok(CpuResult {
        elapsed_ms: elapsed.as_millis() as u64,
        proof: work.open(&nonce),
    })
}

fn run_memory(p: &MemParams, seed: &Seed) -> anyhow::Result<MemResult> {
    let (work, fill) = with_progress("mem fill", p.entries(), |progress| {
        memory::commit(p, seed, progress)
    });
    let work = work?;
    let nonce = mem_self_nonce(seed, &work.root());
    let start = Instant::now();
    let states = work.walk(&nonce);
    let walk = start.elapsed();
    eprintln!(
        "mem: {} bytes filled in {:.2} s; {} dependent reads in {:.2} s ({:.0} ns a read)",
        p.bytes,
        fill.as_secs_f64(),
        p.walk_steps,
        walk.as_secs_f64(),
        walk.as_secs_f64() * 1e9 / p.walk_steps as f64
    );
    Ok(MemResult {
        fill_ms: fill.as_millis() as u64,
        walk_ms: walk.as_millis() as u64,
        proof: work.open_walked(&nonce, &states),
    })
}

/// Walk the plot at `path`, making it first when it is not there. An
/// existing plot must have the claim's shape and, when `wanted_seed` is
/// given, that seed; it is never replaced.
fn run_disk(
    p: &DiskParams,
    path: &std::path::Path,
    wanted_seed: Option<Seed>,
    new_seed: &Seed,
    threads: u32,
    nonce: &Seed,
) -> anyhow::Result<DiskResult> {
    let (plot, plot_ms) = if Plot::header_path(path).exists() {
        let plot = Plot::open(path)?;
        let h = plot.header();
        if h.params != p.plot {
            bail!(
                "{} holds a plot of {}; this claim is {}: remove the plot (and its .json and .leaves) to plot again",
                path.display(),
                h.params,
                p.plot
            );
        }
        if let Some(s) = wanted_seed.filter(|s| *s != h.seed) {
            bail!(
                "{} holds a plot made from seed {}, not --plot-seed {s}",
                path.display(),
                h.seed
            );
        }
        eprintln!(
            "disk: walking the plot at {} (made from seed {})",
            path.display(),
            h.seed
        );
        (plot, None)
    } else {
        let (plot, took) = with_progress("disk plot", p.plot.labels(), |progress| {
            Plot::create(path, new_seed, &p.plot, threads, progress)
        });
        let plot = plot?;
        eprintln!(
            "disk: {} bytes plotted at {} in {:.2} s ({:.1} MB/s)",
            p.plot.bytes,
            path.display(),
            took.as_secs_f64(),
            p.plot.bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6
        );
        (plot, Some(took.as_millis() as u64))
    };
    let (walked, took) = with_progress("disk walk", p.walk_steps, |progress| {
        plot.walk(nonce, p.walk_steps, progress)
    });
    let walked = walked?;
    eprintln!(
        "disk: {} label reads in {:.2} s ({:.0} µs a step, {:.0} µs reading; bound {:.0} µs){}",
        p.walk_steps,
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / p.walk_steps as f64,
        walked.reading.as_secs_f64() * 1e6 / p.walk_steps as f64,
        p.walk_bound().as_secs_f64() * 1e6 / p.walk_steps as f64,
        if walked.direct {
            ""
        } else {
            "; through the page cache: this file system refuses O_DIRECT"
        }
    );
    Ok(DiskResult {
        plot_ms,
        walk_ms: took.as_millis() as u64,
        read_ms: walked.reading.as_millis() as u64,
        direct_io: walked.direct,
        proof: plot.open_walked(p, nonce, &walked.states),
    })
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

/// One resource's verdict: what was checked and, on failure, why.
struct Verdict {
    ok: bool,
    json: serde_json::Value,
    line: String,
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let report = ChallengeReport::parse(&bytes).with_context(|| a.file.display().to_string())?;
    if report.cpu.is_none() && report.memory.is_none() && report.disk.is_none() {
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
    let p = params(cores, a.steps)?;
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
    let p = mem_params(claim, result.proof.params.lanes, a.walk_steps)?;
    let walk = result.walk_ms as f64 / 1000.0;
    let started = Instant::now();
    let verdict = report
        .check_memory(&a.seed, &p)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let check_secs = started.elapsed().as_secs_f64();
    let why = failure(verdict, walk, a.max_walk_seconds);
    let line = match &why {
        None => format!(
            "memory: ok: {claim} bytes; walk of {} reads in {walk:.2} s; checked here in {check_secs:.3} s",
            p.walk_steps
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
            "prover_hashes": p.prover_hashes(),
            "verifier_hashes": p.verifier_hashes(),
            "check_seconds": check_secs,
            "error": why,
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
