//! Proving a claim: the work behind `challenge run` and behind the
//! daemon's scheduled and requested challenges. The claim is checked whole
//! before any work starts; progress goes to an observer (a bar on a
//! terminal, events in the API).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use por::cpu::{self, CpuParams};
use por::gpu::GpuParams;
use por::memory::{self, MemParams};
use por::report::{
    mem_self_nonce, ChallengeReport, CpuResult, DiskResult, GpuCardTime, GpuClaim, GpuResult,
    MemResult, ProofParams, SCHEMA,
};
use por::storage::{DiskParams, Plot};
use por::Seed;
use serde::{Deserialize, Serialize};

/// The resources a challenge covers in this version.
pub const RESOURCES: &[&str] = &["cpu", "mem", "disk", "gpu"];

/// What a node claims, as a command line or the daemon's configuration
/// gives it; [`ClaimSpec::claim`] checks it.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    /// Resources to prove, comma-separated. Available: cpu, mem, disk, gpu.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    #[serde(default = "default_resources")]
    pub resources: Vec<String>,
    /// Cores claimed: one lane each (default: every online CPU).
    #[arg(long)]
    #[serde(default)]
    pub cores: Option<u32>,
    /// Sequential steps per lane (default 2^24, about a second a core with SHA extensions).
    #[arg(long)]
    #[serde(default)]
    pub steps: Option<u64>,
    /// Memory claimed, in bytes or with a K, M, G or T suffix (needed with mem).
    #[arg(long, value_parser = parse_size)]
    #[serde(default, with = "size")]
    pub memory: Option<u64>,
    /// Reads in the memory walk (default 2^22).
    #[arg(long)]
    #[serde(default)]
    pub walk_steps: Option<u64>,
    /// Storage claimed, in bytes or with a K, M, G or T suffix (needed with disk).
    #[arg(long, value_parser = parse_size)]
    #[serde(default, with = "size")]
    pub disk: Option<u64>,
    /// The plot file (needed with disk): made on the first run, walked by later ones.
    #[arg(long)]
    #[serde(default)]
    pub plot: Option<PathBuf>,
    /// The seed to make a new plot from (default: the challenge's seed); an
    /// existing plot must have it.
    #[arg(long)]
    #[serde(default)]
    pub plot_seed: Option<Seed>,
    #[command(flatten)]
    #[serde(default)]
    pub disk_shape: DiskShape,
    /// GPUs claimed (with gpu): UUIDs, comma-separated (default: every card CUDA sees).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub gpus: Vec<String>,
    /// The GPU product's size n (default: sized to the smallest card's memory).
    #[arg(long)]
    #[serde(default)]
    pub gpu_n: Option<u32>,
    /// Compute the GPU products on the CPU instead (the reference prover,
    /// for trials and tests; needs --gpus and --gpu-n).
    #[arg(long)]
    #[serde(default)]
    pub gpu_reference: bool,
}

fn default_resources() -> Vec<String> {
    vec!["cpu".into()]
}

/// The storage challenge's parameters, where the defaults do not serve.
#[derive(Debug, Clone, Copy, Default, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskShape {
    /// Bytes per plot label (default 256K; a multiple of 4096).
    #[arg(long, value_parser = parse_size)]
    #[serde(default, with = "size")]
    pub label_bytes: Option<u64>,
    /// Mixing passes over each label (default 10).
    #[arg(long)]
    #[serde(default)]
    pub passes: Option<u32>,
    /// Label reads in the storage walk (default 2^18).
    #[arg(long)]
    #[serde(default)]
    pub disk_walk_steps: Option<u64>,
    /// Hashes between the walk's commitment and its samples (default 2^20).
    #[arg(long)]
    #[serde(default)]
    pub sampling_work: Option<u64>,
}

impl DiskShape {
    pub fn params(self, bytes: u64) -> anyhow::Result<DiskParams> {
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

/// A checked claim: the parameters of each proof.
#[derive(Debug, Clone)]
pub struct Claim {
    pub cpu: Option<CpuParams>,
    pub memory: Option<MemParams>,
    pub disk: Option<DiskClaim>,
    pub gpu: Option<GpuRun>,
    /// Threads that fill memory, make the plot and hash GPU products.
    pub threads: u32,
}

#[derive(Debug, Clone)]
pub struct GpuRun {
    pub claim: GpuClaim,
    /// On the CPU (the reference prover), not through CUDA.
    pub reference: bool,
}

#[derive(Debug, Clone)]
pub struct DiskClaim {
    pub params: DiskParams,
    pub plot: PathBuf,
    /// The seed an existing plot must have (and a new one is made from).
    pub plot_seed: Option<Seed>,
}

impl ClaimSpec {
    /// Check every parameter; nothing is done yet.
    pub fn claim(&self) -> anyhow::Result<Claim> {
        for r in &self.resources {
            if !RESOURCES.contains(&r.as_str()) {
                bail!(
                    "resources: {r:?} has no challenge in this version (available: {})",
                    RESOURCES.join(", ")
                );
            }
        }
        if self.resources.is_empty() {
            bail!("resources: name at least one of {}", RESOURCES.join(", "));
        }
        let wants = |r: &str| self.resources.iter().any(|x| x == r);
        let cores = match self.cores {
            Some(c) => c,
            None => std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .context("counting the online CPUs; give the cores claimed")?,
        };
        let cpu = wants("cpu")
            .then(|| cpu_params(cores, self.steps))
            .transpose()?;
        let memory = match (wants("mem"), self.memory) {
            (false, _) => None,
            (true, None) => bail!(
                "mem needs --memory SIZE (the memory claimed; \"memory\" in a challenges file)"
            ),
            (true, Some(bytes)) => Some(mem_params(bytes, cores, self.walk_steps)?),
        };
        let disk = match (wants("disk"), self.disk, &self.plot) {
            (false, _, _) => None,
            (true, None, _) => {
                bail!("disk needs --disk SIZE (the storage claimed; \"disk\" in a challenges file)")
            }
            (true, _, None) => bail!(
                "disk needs --plot PATH (where the plot is kept; \"plot\" in a challenges file)"
            ),
            (true, Some(bytes), Some(path)) => Some(DiskClaim {
                params: self.disk_shape.params(bytes)?,
                plot: path.clone(),
                plot_seed: self.plot_seed,
            }),
        };
        let gpu = wants("gpu").then(|| self.gpu_run()).transpose()?;
        Ok(Claim {
            cpu,
            memory,
            disk,
            gpu,
            threads: cores,
        })
    }

    /// The cards and the product's size: given, or as a verifier will size
    /// them, from the cards the node's inventory (NVML) lists.
    fn gpu_run(&self) -> anyhow::Result<GpuRun> {
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = self
            .gpus
            .iter()
            .find(|u| !seen.insert(u.to_ascii_lowercase()))
        {
            bail!("--gpus: {twice} is named twice");
        }
        let params = |n: u32| {
            let p = GpuParams::with_n(n);
            p.validate().map(|()| p)
        };
        if self.gpu_reference {
            let n = self
                .gpu_n
                .context("--gpu-reference needs --gpu-n N (the product's size)")?;
            if self.gpus.is_empty() {
                bail!("--gpu-reference needs --gpus UUID,... (the cards the products stand for)");
            }
            return Ok(GpuRun {
                claim: GpuClaim {
                    params: params(n)?,
                    uuids: self.gpus.clone(),
                },
                reference: true,
            });
        }
        let present = por_cuda::cards().context("gpu")?;
        // NVML's memory sizes first: the verifier sizes n from the
        // inventory, and CUDA reports a little less than NVML does.
        let nvml: Vec<(String, u64)> = probe::gpu::probe(&probe::Root::host())
            .map(|g| {
                g.devices
                    .into_iter()
                    .filter_map(|d| Some((d.uuid?, d.memory_total_bytes?)))
                    .collect()
            })
            .unwrap_or_default();
        let uuids: Vec<String> = match (self.gpus.is_empty(), nvml.is_empty()) {
            (false, _) => self.gpus.clone(),
            (true, false) => nvml.iter().map(|c| c.0.clone()).collect(),
            (true, true) => present.iter().map(|c| c.uuid.clone()).collect(),
        };
        let mut cards = Vec::new();
        for u in &uuids {
            let same = |x: &str| x.eq_ignore_ascii_case(u);
            let cuda = present.iter().find(|c| same(&c.uuid)).with_context(|| {
                format!(
                    "gpu: card {u} is not one CUDA sees ({})",
                    present
                        .iter()
                        .map(|c| c.uuid.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let memory = nvml
                .iter()
                .find(|c| same(&c.0))
                .map_or(cuda.memory_bytes, |c| c.1);
            cards.push((u.clone(), memory));
        }
        let sized = GpuClaim::for_cards(&cards).context("gpu: CUDA sees no card")?;
        Ok(GpuRun {
            claim: GpuClaim {
                params: match self.gpu_n {
                    Some(n) => params(n)?,
                    None => sized.params,
                },
                uuids: sized.uuids,
            },
            reference: false,
        })
    }
}

pub fn cpu_params(cores: u32, steps: Option<u64>) -> anyhow::Result<CpuParams> {
    let mut p = CpuParams::for_cores(cores);
    if let Some(steps) = steps {
        p.steps_per_lane = steps;
    }
    p.validate()?;
    Ok(p)
}

pub fn mem_params(bytes: u64, lanes: u32, walk_steps: Option<u64>) -> anyhow::Result<MemParams> {
    let mut p = MemParams::for_claim(bytes, lanes);
    if let Some(w) = walk_steps {
        p.walk_steps = w;
    }
    p.validate()?;
    Ok(p)
}

/// Where a run's progress goes.
pub trait Progress: Sync {
    /// `done` of `total` units of `phase` after `elapsed`: called about
    /// five times a second while the phase runs, and once with
    /// `finished` when it ends.
    fn update(&self, phase: &str, done: u64, total: u64, elapsed: Duration, finished: bool);
    /// A phase's one-line result.
    fn line(&self, line: &str);
}

/// Progress on standard error: a bar on a terminal, a line every 10 s
/// otherwise (a log).
pub struct Terminal {
    tty: bool,
    last_line: Mutex<Instant>,
}

impl Terminal {
    pub fn new() -> Terminal {
        Terminal {
            tty: std::io::stderr().is_terminal(),
            last_line: Mutex::new(Instant::now()),
        }
    }
}

impl Progress for Terminal {
    fn update(&self, phase: &str, done: u64, total: u64, elapsed: Duration, finished: bool) {
        let pct = done as f64 * 100.0 / total.max(1) as f64;
        if self.tty {
            let filled = ((pct / 5.0) as usize).min(20);
            eprint!(
                "\r{phase}: [{}{}] {pct:5.1}% {:.0} s",
                "#".repeat(filled),
                " ".repeat(20 - filled),
                elapsed.as_secs_f64()
            );
            if finished {
                eprintln!();
            }
            return;
        }
        let Ok(mut last) = self.last_line.lock() else {
            return;
        };
        if !finished && last.elapsed() >= Duration::from_secs(10) {
            eprintln!("{phase}: {pct:.1}% after {:.0} s", elapsed.as_secs_f64());
            *last = Instant::now();
        }
    }

    fn line(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Run `work` while `progress` follows its counter up to `total`.
fn with_progress<T>(
    progress: &dyn Progress,
    phase: &str,
    total: u64,
    work: impl FnOnce(&AtomicU64) -> T,
) -> (T, Duration) {
    let counter = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let n = counter.load(Ordering::Relaxed);
                progress.update(phase, n, total, start.elapsed(), false);
            }
        });
        let out = work(&counter);
        done.store(true, Ordering::Relaxed);
        out
    });
    let elapsed = start.elapsed();
    progress.update(phase, counter.load(Ordering::Relaxed), total, elapsed, true);
    (out, elapsed)
}

/// Do the work `claim` asks for, answering `seed`.
pub fn prove(
    claim: &Claim,
    seed: &Seed,
    progress: &dyn Progress,
) -> anyhow::Result<ChallengeReport> {
    if let Some(p) = &claim.memory {
        ensure_memory_available(p.bytes, progress)?;
    }
    let mut report = ChallengeReport {
        schema: SCHEMA.into(),
        seed: *seed,
        cpu: None,
        memory: None,
        disk: None,
        gpu: None,
    };
    if let Some(p) = &claim.cpu {
        report.cpu = Some(run_cpu(p, seed, progress)?);
    }
    if let Some(p) = &claim.memory {
        report.memory = Some(run_memory(p, seed, progress)?);
    }
    if let Some(d) = &claim.disk {
        let new_seed = d.plot_seed.unwrap_or(*seed);
        report.disk = Some(run_disk(d, &new_seed, claim.threads, seed, progress)?);
    }
    if let Some(g) = &claim.gpu {
        report.gpu = Some(run_gpu(g, seed, claim.threads, progress)?);
    }
    Ok(report)
}

/// A claim over what the kernel can give now is refused before the fill:
/// filling it would end in swap or the OOM killer, not in a proof.
fn ensure_memory_available(bytes: u64, progress: &dyn Progress) -> anyhow::Result<()> {
    match probe::memory::probe(&probe::Root::host()).map(|m| m.available_bytes) {
        Ok(Some(available)) if bytes > available => bail!(
            "memory {bytes}: only {available} bytes are available now (/proc/meminfo MemAvailable); \
             free memory or claim less"
        ),
        Ok(Some(_)) => Ok(()),
        Ok(None) | Err(_) => {
            progress.line("mem: MemAvailable is unreadable; not checking the claim against it");
            Ok(())
        }
    }
}

/// "512M", "4G", "1073741824": bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
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

/// Sizes in a configuration file: a number of bytes, or a string such as "16G".
mod size {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Size>::deserialize(d)? {
            None => Ok(None),
            Some(Size::Bytes(n)) => Ok(Some(n)),
            Some(Size::Text(s)) => super::parse_size(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_none(),
        }
    }
}

fn run_cpu(p: &CpuParams, seed: &Seed, progress: &dyn Progress) -> anyhow::Result<CpuResult> {
    let (work, elapsed) = with_progress(progress, "cpu", p.prover_steps(), |counter| {
        cpu::commit(p, seed, counter)
    });
    let work = work?;
    progress.line(&format!(
        "cpu: {} lane(s) × {} steps in {:.2} s ({:.1} M steps/s in all)",
        p.lanes,
        p.steps_per_lane,
        elapsed.as_secs_f64(),
        p.prover_steps() as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
    ));
    let nonce = cpu::self_nonce(seed, &work.root());
    Ok(CpuResult {
        elapsed_ms: elapsed.as_millis() as u64,
        proof: work.open(&nonce),
    })
}

fn run_memory(p: &MemParams, seed: &Seed, progress: &dyn Progress) -> anyhow::Result<MemResult> {
    let (work, fill) = with_progress(progress, "mem fill", p.entries(), |counter| {
        memory::commit(p, seed, counter)
    });
    let work = work?;
    let nonce = mem_self_nonce(seed, &work.root());
    let start = Instant::now();
    let states = work.walk(&nonce);
    let walk = start.elapsed();
    let chunks = p.entries() / memory::CHUNK;
    let (sweep, swept) = with_progress(
        progress,
        "mem sweep",
        u64::from(p.sweep_passes) * chunks,
        |counter| work.sweep(&nonce, &states[states.len() - 1], counter),
    );
    progress.line(&format!(
        "mem: {} bytes filled in {:.2} s; {} dependent reads in {:.2} s ({:.0} ns a read); swept {} time(s) in {:.3} s ({:.0} MiB/s)",
        p.bytes,
        fill.as_secs_f64(),
        p.walk_steps,
        walk.as_secs_f64(),
        walk.as_secs_f64() * 1e9 / p.walk_steps as f64,
        p.sweep_passes,
        swept.as_secs_f64(),
        p.sweep_bytes() as f64 / 1_048_576.0 / swept.as_secs_f64().max(1e-9)
    ));
    Ok(MemResult {
        fill_ms: fill.as_millis() as u64,
        walk_ms: walk.as_millis() as u64,
        sweep_us: swept.as_micros() as u64,
        proof: work.open_walked(&nonce, &states, &sweep),
    })
}

fn run_gpu(
    g: &GpuRun,
    seed: &Seed,
    threads: u32,
    progress: &dyn Progress,
) -> anyhow::Result<GpuResult> {
    let p = &g.claim.params;
    let rows = u64::from(p.n) * g.claim.uuids.len() as u64;
    let ms = |d: Duration| d.as_millis() as u64;
    let (result, took) = with_progress(progress, "gpu", rows, |counter| {
        if !g.reference {
            let (proof, timings) = por_cuda::prove(p, seed, &g.claim.uuids, threads, counter)?;
            return anyhow::Ok(GpuResult {
                prover: "cuda".into(),
                cards: timings
                    .iter()
                    .map(|t| GpuCardTime {
                        uuid: t.uuid.clone(),
                        product_ms: ms(t.product),
                        commit_ms: ms(t.commit),
                    })
                    .collect(),
                proof,
            });
        }
        let mut products = Vec::new();
        let mut cards = Vec::new();
        for uuid in &g.claim.uuids {
            let started = Instant::now();
            products.push((
                uuid.clone(),
                por::gpu::Matrices::for_card(p, seed, uuid).product(threads, counter),
            ));
            cards.push(GpuCardTime {
                uuid: uuid.clone(),
                product_ms: ms(started.elapsed()),
                commit_ms: 0,
            });
        }
        let started = Instant::now();
        let proof = por::gpu::prove(p, seed, products, threads)?;
        let commit_ms = ms(started.elapsed()) / cards.len().max(1) as u64;
        for c in &mut cards {
            c.commit_ms = commit_ms;
        }
        Ok(GpuResult {
            prover: "cpu-reference".into(),
            cards,
            proof,
        })
    });
    let result = result?;
    progress.line(&format!(
        "gpu: {} card(s), {}×{} products in {:.2} s ({}; slowest product {:.2} s)",
        g.claim.uuids.len(),
        p.n,
        p.n,
        took.as_secs_f64(),
        result.prover,
        result.cards.iter().map(|c| c.product_ms).max().unwrap_or(0) as f64 / 1000.0
    ));
    Ok(result)
}

/// An existing plot must have the claim's shape and, when the claim names
/// one, its seed; it is never replaced.
fn open_plot(d: &DiskClaim, progress: &dyn Progress) -> anyhow::Result<Plot> {
    let path = &d.plot;
    let plot = Plot::open(path)?;
    let h = plot.header();
    if h.params != d.params.plot {
        bail!(
            "{} holds a plot of {}; this claim is {}: remove the plot (and its .json and .leaves) to plot again",
            path.display(),
            h.params,
            d.params.plot
        );
    }
    if let Some(s) = d.plot_seed.filter(|s| *s != h.seed) {
        bail!(
            "{} holds a plot made from seed {}, not the plot seed {s} claimed",
            path.display(),
            h.seed
        );
    }
    progress.line(&format!(
        "disk: walking the plot at {} (made from seed {})",
        path.display(),
        h.seed
    ));
    Ok(plot)
}

/// Walk the claim's plot, making it first when it is not there.
fn run_disk(
    d: &DiskClaim,
    new_seed: &Seed,
    threads: u32,
    nonce: &Seed,
    progress: &dyn Progress,
) -> anyhow::Result<DiskResult> {
    let p = &d.params;
    let (plot, plot_ms) = if Plot::header_path(&d.plot).exists() {
        (open_plot(d, progress)?, None)
    } else {
        let (plot, took) = with_progress(progress, "disk plot", p.plot.labels(), |counter| {
            Plot::create(&d.plot, new_seed, &p.plot, threads, counter)
        });
        let plot = plot?;
        progress.line(&format!(
            "disk: {} bytes plotted at {} in {:.2} s ({:.1} MB/s)",
            p.plot.bytes,
            d.plot.display(),
            took.as_secs_f64(),
            p.plot.bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6
        ));
        (plot, Some(took.as_millis() as u64))
    };
    let (walked, took) = with_progress(progress, "disk walk", p.walk_steps, |counter| {
        plot.walk(nonce, p.walk_steps, counter)
    });
    let walked = walked?;
    progress.line(&format!(
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
    ));
    Ok(DiskResult {
        plot_ms,
        walk_ms: took.as_millis() as u64,
        read_ms: walked.reading.as_millis() as u64,
        direct_io: walked.direct,
        proof: plot.open_walked(p, nonce, &walked.states),
    })
}

/// Check a report this node made for `claim` as a verifier would, with
/// the claim's own parameters and the storage walk held to its bound: one
/// line per resource, or why it fails.
pub fn self_check(
    claim: &Claim,
    seed: &Seed,
    report: &ChallengeReport,
) -> Result<Vec<String>, por::PorError> {
    report.check_all(
        seed,
        &ProofParams {
            cpu: claim.cpu,
            memory: claim.memory,
            disk: claim.disk.as_ref().map(|d| d.params),
            gpu: claim.gpu.as_ref().map(|g| g.claim.clone()),
        },
    )
}

/// Whether a plot (its header) is at `path`.
pub fn plot_exists(path: &std::path::Path) -> bool {
    Plot::header_path(path).exists()
}
