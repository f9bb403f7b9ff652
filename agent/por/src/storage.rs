//! Storage: the node writes a seed-derived plot of the claimed size to
//! disk once, commits to it, and then, for each challenge, walks it from
//! the verifier's nonce: a chain of dependent reads of whole labels, under
//! a time bound that recomputing a missing label cannot meet.
//!
//! The plot is `bytes / label_bytes` labels. Label `i` is costly to make
//! and cannot be made in parts: a sequential SHA-256 chain of its words
//! from `seed.derive("xnode-por/disk/label", i)`, then `passes` passes in
//! which each word hashes the pass's previous word with a word of the
//! previous pass that the previous word picks at random. The last pass is
//! the label. Making it takes `(1 + passes) × label_bytes / 32` hashes in
//! a row; keeping part of it saves nothing, since the last pass needs the
//! whole of the one before. The commitment is a Merkle root over
//! `(i, SHA-256(label))`.
//!
//! A challenge's nonce starts a walk of `walk_steps` steps: each reads the
//! whole label its state points at and hashes it after the state. An
//! honest node makes one disk read and one hash of a label a step. A node
//! that kept part of the plot remakes each missing label it meets, at the
//! full cost, one after another (the next label is known only once this
//! one is read). The time bound (`DiskParams::walk_bound`) allows a step a
//! quarter of what remaking a label takes on the fastest core we know of.
//!
//! The prover commits to every state of the walk; the verifier samples
//! `walk_samples` steps, remakes their labels from the plot's seed, and
//! checks each step and the label's place in the plot's commitment. The
//! plot is made once and walked by every later challenge, so continuous
//! proof costs a walk, not a plot.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::iobuf::IoBuf;
use crate::merkle::{self, hex_hash, Hash, Proof, Tree};
use crate::{walk, PorError, Seed};

const LABEL_LABEL: &str = "xnode-por/disk/label";
const WALK_LABEL: &str = "xnode-por/disk/walk";
const WALK_SAMPLE_LABEL: &str = "xnode-por/disk/walk-sample";

/// The schema of a plot's header file.
pub const PLOT_SCHEMA: &str = "xnode.plot/v1";

/// Reads and writes are whole labels at label-aligned offsets; labels are
/// a multiple of this, so the disk can be read past the page cache.
pub const ALIGN: u64 = 4096;

/// Nanoseconds the fastest core we know of takes for one label hash
/// (SHA-256 of 64 bytes, with SHA extensions): the time bound is set so
/// that a node remaking labels on such a core still misses it. This
/// machine's figure and how it was chosen are in
/// `docs/proof-of-resource.md`.
pub const FASTEST_HASH_NS: u64 = 40;

/// Memory for labels made and not yet written: a pool of buffers shared
/// by the plotting threads. Each makes a burst of labels and hands it to
/// the writer, which writes it in a few large calls at once. A disk answers a lone
/// small write more slowly than a full queue, and labels take far longer
/// to make than to write, so writing each as it is made would show the
/// disk's cold latency, not its rate.
const WRITE_BEHIND_BYTES: u64 = 128 << 20;

/// Labels in a burst when `threads` threads plot: a share of
/// `WRITE_BEHIND_BYTES` (each thread fills one burst while one waits and
/// one is written), at most 64 MiB and at least one label. At least one
/// large page too: a buffer takes a whole one, so past 62 threads the
/// pool is `threads + 2` large pages rather than 128 MiB.
pub fn burst_labels(params: &PlotParams, threads: u32) -> usize {
    let share = (WRITE_BEHIND_BYTES / (u64::from(threads.max(1)) + 2))
        .clamp(crate::iobuf::HUGE_PAGE as u64, 64 << 20);
    (share / params.label_bytes).max(1) as usize
}

/// Calls a burst is written with at once. A burst's labels are neighbours
/// in the file, so a few large calls write it; more than one in flight
/// keeps the disk's queue full, where one call leaves it idle between the
/// call's end and the next one's start.
pub const WRITE_STREAMS: usize = 4;

/// The nice value of the threads that make labels (this thread only:
/// Linux keeps one per thread).
const PLOT_NICE: i32 = 10;

/// A run of labels made, waiting for the writer.
struct Burst {
    first: u64,
    count: usize,
    buf: IoBuf,
}

/// Labels in each call that writes a burst of `burst` labels.
pub fn write_call_labels(burst: usize) -> usize {
    burst.div_ceil(WRITE_STREAMS)
}

/// Write a burst's labels to their place in `file`, in up to
/// `WRITE_STREAMS` calls at once, each a run of whole labels.
fn write_burst(file: &File, burst: &Burst, label_bytes: usize) -> std::io::Result<()> {
    let per_call = write_call_labels(burst.count) * label_bytes;
    let at = burst.first * label_bytes as u64;
    let bytes = &burst.buf.as_slice()[..burst.count * label_bytes];
    std::thread::scope(|s| {
        let calls: Vec<_> = bytes
            .chunks(per_call)
            .enumerate()
            .map(|(k, part)| s.spawn(move || file.write_all_at(part, at + (k * per_call) as u64)))
            .collect();
        calls.into_iter().try_for_each(|c| {
            c.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a writing thread panicked")))
        })
    })
}

/// The plot's shape: fixed when it is made, the same for every walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlotParams {
    /// The storage claimed, in bytes.
    pub bytes: u64,
    /// Bytes per label.
    pub label_bytes: u64,
    /// Mixing passes over each label after its first, sequential one.
    pub passes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskParams {
    pub plot: PlotParams,
    /// Dependent label reads in the timed walk.
    pub walk_steps: u64,
    /// Walk steps the verifier re-walks, remaking their labels.
    pub walk_samples: u32,
    /// Hashes in a row between the walk's commitment and the steps it
    /// samples: what each try costs a prover that tries walk commitments
    /// until the samples miss its made-up steps.
    pub sampling_work: u64,
}

impl std::fmt::Display for PlotParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes in labels of {} bytes, {} passes",
            self.bytes, self.label_bytes, self.passes
        )
    }
}

impl PlotParams {
    /// Defaults for a claim of `bytes`: 256 KiB labels, 10 mixing passes
    /// (3.6 ms a label at 40 ns a hash, so the bound allows 0.9 ms a step,
    /// room for a SATA SSD; a plot is written at 27 to 70 MB/s a core).
    pub fn for_claim(bytes: u64) -> PlotParams {
        PlotParams {
            bytes,
            label_bytes: 256 << 10,
            passes: 10,
        }
    }

    pub fn validate(&self) -> Result<(), PorError> {
        let bad = |why: String| Err(PorError::Params(why));
        if self.label_bytes == 0 || self.label_bytes % ALIGN != 0 || self.label_bytes > 16 << 20 {
            return bad(format!(
                "label_bytes ({}) must be a multiple of {ALIGN}, at most 16 MiB",
                self.label_bytes
            ));
        }
        if self.bytes == 0 || self.bytes % self.label_bytes != 0 {
            return bad(format!(
                "bytes ({}) must be a positive multiple of label_bytes ({})",
                self.bytes, self.label_bytes
            ));
        }
        if self.bytes > 1 << 50 {
            return bad(format!("bytes ({}) is over the limit of 1 PiB", self.bytes));
        }
        if self.labels() > 1 << 28 {
            return bad(format!(
                "{} labels: more than 2^28 (use larger labels)",
                self.labels()
            ));
        }
        if !(1..=64).contains(&self.passes) {
            return bad(format!("passes must be 1 to 64, not {}", self.passes));
        }
        Ok(())
    }

    pub fn labels(&self) -> u64 {
        self.bytes / self.label_bytes.max(1)
    }

    fn words(&self) -> usize {
        (self.label_bytes / 32) as usize
    }

    /// Hashes in a row that making one label takes.
    pub fn label_hashes(&self) -> u64 {
        (1 + u64::from(self.passes)) * self.label_bytes / 32
    }
}

impl DiskParams {
    /// Defaults for a claim of `bytes`: a walk of 2^18 label reads (a
    /// minute or two on an SSD), every step committed, 32 re-walked.
    pub fn for_claim(bytes: u64) -> DiskParams {
        DiskParams {
            plot: PlotParams::for_claim(bytes),
            walk_steps: 1 << 18,
            walk_samples: 32,
            sampling_work: 1 << 20,
        }
    }

    pub fn validate(&self) -> Result<(), PorError> {
        self.plot.validate()?;
        if !(1..=1 << 24).contains(&self.walk_steps) {
            return Err(PorError::Params(format!(
                "walk_steps must be 1 to 2^24, not {}",
                self.walk_steps
            )));
        }
        if !(1..=4096).contains(&self.walk_samples) {
            return Err(PorError::Params(format!(
                "walk_samples must be 1 to 4096, not {}",
                self.walk_samples
            )));
        }
        if self.sampling_work > 1 << 28 {
            return Err(PorError::Params(format!(
                "sampling_work must be at most 2^28, not {}",
                self.sampling_work
            )));
        }
        Ok(())
    }

    /// The longest an honest walk may take: a quarter of a label's remaking
    /// on the fastest core, a step. A node holding half the plot meets a
    /// missing label at half the steps, and either remakes it (twice the
    /// bound in all) or skips it, which the sampled steps catch.
    pub fn walk_bound(&self) -> Duration {
        let ns = u128::from(self.walk_steps)
            * u128::from(self.plot.label_hashes())
            * u128::from(FASTEST_HASH_NS)
            / 4;
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Hash blocks (64 bytes) the honest prover hashes in a walk.
    pub fn prover_blocks(&self) -> u64 {
        self.walk_steps * (self.plot.label_bytes / 64)
    }

    /// Hash blocks the verifier hashes: the sampled labels it remakes (two
    /// blocks a label hash), the steps it re-walks and the proofs.
    pub fn verifier_blocks(&self) -> u64 {
        let depth = 64 - u64::from(self.plot.labels().leading_zeros()) + 64
            - u64::from(self.walk_steps.leading_zeros());
        u64::from(self.walk_samples)
            * (2 * self.plot.label_hashes() + self.plot.label_bytes / 64 + 2 * depth)
            + self.sampling_work
    }
}

/// Makes labels, keeping its two passes' worth of words between labels.
#[derive(Debug)]
pub struct LabelMaker {
    prev: Vec<Hash>,
    cur: Vec<Hash>,
}

impl LabelMaker {
    pub fn new(p: &PlotParams) -> LabelMaker {
        LabelMaker {
            prev: vec![[0; 32]; p.words()],
            cur: vec![[0; 32]; p.words()],
        }
    }

    /// Label `index` of the plot seeded by `seed`, into `out`
    /// (`label_bytes` long).
    pub fn make(&mut self, seed: &Seed, index: u64, passes: u32, out: &mut [u8]) {
        let n = self.prev.len();
        self.prev[0] = seed.derive(LABEL_LABEL, index);
        for m in 1..n {
            self.prev[m] = Sha256::digest(self.prev[m - 1]).into();
        }
        for _ in 0..passes {
            let mut x = self.prev[n - 1];
            for m in 0..n {
                let j = walk::index(&x, n as u64) as usize;
                let mut h = Sha256::new();
                h.update(x);
                h.update(self.prev[j]);
                x = h.finalize().into();
                self.cur[m] = x;
            }
            std::mem::swap(&mut self.prev, &mut self.cur);
        }
        for (word, o) in self.prev.iter().zip(out.chunks_exact_mut(32)) {
            o.copy_from_slice(word);
        }
    }
}

fn leaf(index: u64, label: &[u8]) -> Hash {
    merkle::indexed_leaf(index, &Sha256::digest(label).into())
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> PorError {
    PorError::Io(format!("{what} {}: {e}", path.display()))
}

/// Open past the page cache (O_DIRECT) where the file system allows it,
/// so the walk reads the disk and not memory; else through the cache.
fn open_direct(path: &Path, options: &OpenOptions) -> Result<(File, bool), PorError> {
    let direct = rustix::fs::OFlags::DIRECT.bits() as i32;
    match options.clone().custom_flags(direct).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => options
            .open(path)
            .map(|f| (f, false))
            .map_err(|e| io_error("opening", path, e)),
        Err(e) => Err(io_error("opening", path, e)),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// What `<plot>.json` holds: the plot's seed, shape and commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlotHeader {
    pub schema: String,
    pub seed: Seed,
    pub params: PlotParams,
    #[serde(with = "hex_hash")]
    pub root: Hash,
}

/// A plot on disk: the labels in `<plot>`, their leaf hashes in
/// `<plot>.leaves` (1/8192 of the plot under the defaults), the header in
/// `<plot>.json`, written last.
#[derive(Debug)]
pub struct Plot {
    path: PathBuf,
    header: PlotHeader,
    tree: Tree,
    /// Time the plotting threads spent in disk writes, added up; none for
    /// a plot opened rather than made.
    writing: Option<Duration>,
}

/// Bytes free for an unprivileged writer in the file system holding `dir`.
fn free_bytes(dir: &Path) -> Result<u64, PorError> {
    let s =
        rustix::fs::statvfs(dir).map_err(|e| io_error("reading free space of", dir, e.into()))?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

impl Plot {
    pub fn header_path(path: &Path) -> PathBuf {
        with_suffix(path, ".json")
    }

    fn leaves_path(path: &Path) -> PathBuf {
        with_suffix(path, ".leaves")
    }

    /// Make a plot at `path` with `threads` threads; `progress` counts
    /// labels written. Refuses to replace anything there, and to start
    /// when the file system has not the room.
    pub fn create(
        path: &Path,
        seed: &Seed,
        params: &PlotParams,
        threads: u32,
        progress: &AtomicU64,
    ) -> Result<Plot, PorError> {
        params.validate()?;
        for p in [path.to_path_buf(), Plot::header_path(path)] {
            if p.exists() {
                return Err(PorError::Io(format!(
                    "{} is already there: walk the plot it belongs to, or remove it to plot again",
                    p.display()
                )));
            }
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let need = params.bytes + params.labels() * 32;
        let free = free_bytes(&dir)?;
        if need > free {
            return Err(PorError::Io(format!(
                "the plot needs {need} bytes and {} has {free} free",
                dir.display()
            )));
        }
        let partial = with_suffix(path, ".partial");
        let made = Self::write_labels(&partial, seed, params, threads.max(1), progress);
        let (leaves, writing) = match made {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        let leaf_bytes = leaves.concat();
        let tree = Tree::new(leaves).unwrap_or_else(|| unreachable!("validated: one label"));
        let header = PlotHeader {
            schema: PLOT_SCHEMA.into(),
            seed: *seed,
            params: *params,
            root: tree.root(),
        };
        let write = |to: &Path, bytes: &[u8]| {
            let tmp = with_suffix(to, ".tmp");
            std::fs::write(&tmp, bytes)
                .and_then(|()| std::fs::rename(&tmp, to))
                .map_err(|e| io_error("writing", to, e))
        };
        write(&Plot::leaves_path(path), &leaf_bytes)?;
        std::fs::rename(&partial, path).map_err(|e| io_error("renaming", &partial, e))?;
        let json = serde_json::to_vec_pretty(&header)
            .map_err(|e| PorError::Io(format!("encoding the plot header: {e}")))?;
        write(&Plot::header_path(path), &json)?;
        Ok(Plot {
            path: path.to_path_buf(),
            header,
            tree,
            writing: Some(writing),
        })
    }

    /// Every label, `threads` at a time, each thread a run of labels;
    /// returns their leaf hashes and the time spent writing them.
    fn write_labels(
        to: &Path,
        seed: &Seed,
        params: &PlotParams,
        threads: u32,
        progress: &AtomicU64,
    ) -> Result<(Vec<Hash>, Duration), PorError> {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        let (file, _) = open_direct(to, &opts)?;
        // Reserve the space first: the plot cannot fail half-way for want of
        // it, and the writes land in allocated blocks.
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, params.bytes)
            .map_err(|e| io_error("reserving space for", to, e.into()))?;
        let mut leaves = vec![[0u8; 32]; params.labels() as usize];
        let per_thread = leaves.len().div_ceil(threads as usize);
        let lb = params.label_bytes as usize;
        let batch = burst_labels(params, threads);
        // A pool of burst buffers, one a thread, one waiting and one being
        // written: made once, so their large pages are found and faulted
        // in once, not for every burst.
        let pool = threads as usize + 2;
        let (freed, free) = std::sync::mpsc::sync_channel::<IoBuf>(pool);
        for _ in 0..pool {
            let _ = freed.send(IoBuf::new(batch * lb)?);
        }
        let free = std::sync::Mutex::new(free);
        let writer_stopped = || PorError::Io("the plot's writer stopped".into());
        // Set by a writer that failed, so that no maker starts a burst
        // that cannot be written.
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let stopped = &stopped;
        // The makers make bursts of labels; one writer writes them, so the
        // disk sees one stream of calls, as fio's one job does.
        let writing = std::thread::scope(|s| {
            let (bursts, arrived) = std::sync::mpsc::sync_channel::<Burst>(1);
            let file = &file;
            let writer = s.spawn(move || -> Result<Duration, PorError> {
                let mut writing = Duration::ZERO;
                for burst in arrived {
                    let t = Instant::now();
                    if let Err(e) = write_burst(file, &burst, lb) {
                        stopped.store(true, Ordering::Relaxed);
                        return Err(io_error("writing", to, e));
                    }
                    writing += t.elapsed();
                    progress.fetch_add(burst.count as u64, Ordering::Relaxed);
                    // The makers may all be done; the buffer is then freed.
                    let _ = freed.send(burst.buf);
                }
                Ok(writing)
            });
            let free = &free;
            let makers: Vec<_> = leaves
                .chunks_mut(per_thread)
                .enumerate()
                .map(|(t, out)| {
                    let bursts = bursts.clone();
                    s.spawn(move || -> Result<(), PorError> {
                        // Making labels is background work: the writer,
                        // the kernel's I/O and the node's services go first.
                        // Best effort; a thread may always lower its own.
                        let _ = rustix::process::setpriority_process(None, PLOT_NICE);
                        let mut maker = LabelMaker::new(params);
                        for (b, run) in out.chunks_mut(batch).enumerate() {
                            if stopped.load(Ordering::Relaxed) {
                                return Err(writer_stopped());
                            }
                            let first = (t * per_thread + b * batch) as u64;
                            // Only the writer gives buffers back: a closed
                            // pool means it stopped.
                            let mut buf = free
                                .lock()
                                .map_err(|_| writer_stopped())?
                                .recv()
                                .map_err(|_| writer_stopped())?;
                            for (k, (l, slot)) in run
                                .iter_mut()
                                .zip(buf.as_mut_slice().chunks_exact_mut(lb))
                                .enumerate()
                            {
                                let i = first + k as u64;
                                maker.make(seed, i, params.passes, slot);
                                *l = leaf(i, slot);
                            }
                            let count = run.len();
                            bursts
                                .send(Burst { first, count, buf })
                                .map_err(|_| writer_stopped())?;
                        }
                        Ok(())
                    })
                })
                .collect();
            drop(bursts);
            let panicked = |what: &str| PorError::Io(format!("a plotting {what} thread panicked"));
            // Every thread is joined, so a second panic is an error too.
            let made: Vec<_> = makers
                .into_iter()
                .map(|m| m.join().unwrap_or_else(|_| Err(panicked("label"))))
                .collect();
            let made = made.into_iter().collect::<Result<Vec<()>, _>>();
            let written = writer.join().unwrap_or_else(|_| Err(panicked("writer")));
            // A writer that failed stops the makers: its error is the cause.
            let writing = written?;
            made.map(|_| writing)
        });
        let mut writing = writing?;
        let t = Instant::now();
        file.sync_all().map_err(|e| io_error("syncing", to, e))?;
        writing += t.elapsed();
        Ok((leaves, writing))
    }

    /// Open the plot at `path`, checking its files against its header.
    pub fn open(path: &Path) -> Result<Plot, PorError> {
        let hp = Plot::header_path(path);
        let json = std::fs::read(&hp).map_err(|e| io_error("reading", &hp, e))?;
        let header: PlotHeader = serde_json::from_slice(&json)
            .map_err(|e| PorError::Io(format!("{}: not a plot header: {e}", hp.display())))?;
        if header.schema != PLOT_SCHEMA {
            return Err(PorError::Io(format!(
                "{}: schema {:?}, expected {PLOT_SCHEMA:?}",
                hp.display(),
                header.schema
            )));
        }
        header.params.validate()?;
        let len = std::fs::metadata(path)
            .map_err(|e| io_error("reading", path, e))?
            .len();
        if len != header.params.bytes {
            return Err(PorError::Io(format!(
                "{} is {len} bytes, its header says {}: the plot is damaged; remove it to plot again",
                path.display(),
                header.params.bytes
            )));
        }
        let lp = Plot::leaves_path(path);
        let raw = std::fs::read(&lp).map_err(|e| io_error("reading", &lp, e))?;
        if raw.len() as u64 != header.params.labels() * 32 {
            return Err(PorError::Io(format!(
                "{} is {} bytes, not 32 for each of {} labels: the plot is damaged",
                lp.display(),
                raw.len(),
                header.params.labels()
            )));
        }
        let leaves = raw
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        let tree = Tree::new(leaves).unwrap_or_else(|| unreachable!("validated: one label"));
        if tree.root() != header.root {
            return Err(PorError::Io(format!(
                "{} does not hash to the root in {}: the plot is damaged",
                lp.display(),
                hp.display()
            )));
        }
        Ok(Plot {
            path: path.to_path_buf(),
            header,
            tree,
            writing: None,
        })
    }

    /// Time spent in disk writes while making this plot (see the field).
    pub fn writing(&self) -> Option<Duration> {
        self.writing
    }

    pub fn header(&self) -> &PlotHeader {
        &self.header
    }

    pub fn root(&self) -> Hash {
        self.header.root
    }

    /// Walk the plot from the nonce (the timed part); `progress` counts
    /// steps.
    pub fn walk(
        &self,
        nonce: &Seed,
        steps: u64,
        progress: &AtomicU64,
    ) -> Result<DiskWalk, PorError> {
        let p = &self.header.params;
        let mut opts = OpenOptions::new();
        opts.read(true);
        let (file, direct) = open_direct(&self.path, &opts)?;
        let mut buf = IoBuf::new(p.label_bytes as usize)?;
        let mut state = walk::start(WALK_LABEL, nonce, &self.root());
        let mut states = Vec::with_capacity(steps as usize + 1);
        states.push(state);
        let mut reading = Duration::ZERO;
        for _ in 0..steps {
            let i = walk::index(&state, p.labels());
            let t = Instant::now();
            file.read_exact_at(buf.as_mut_slice(), i * p.label_bytes)
                .map_err(|e| io_error("reading", &self.path, e))?;
            reading += t.elapsed();
            state = walk::step(&state, buf.as_slice());
            states.push(state);
            progress.fetch_add(1, Ordering::Relaxed);
        }
        Ok(DiskWalk {
            states,
            reading,
            direct,
        })
    }

    /// The openings for a walk whose states are `states`.
    pub fn open_walked(&self, params: &DiskParams, nonce: &Seed, states: &[Hash]) -> DiskProof {
        let tree = walk::tree(states);
        let walk_root = tree.root();
        let steps = sampled(params, nonce, &self.root(), &walk_root)
            .into_iter()
            .map(|j| {
                let label = walk::index(&states[j as usize], self.header.params.labels());
                StepOpening {
                    states: walk::Segment::open(&tree, states, j),
                    label_proof: self
                        .tree
                        .prove(label as usize)
                        .unwrap_or_else(|| unreachable!("a walk reads labels in the plot")),
                }
            })
            .collect();
        DiskProof {
            params: *params,
            plot_seed: self.header.seed,
            plot_root: self.root(),
            nonce: *nonce,
            walk_end: states[states.len() - 1],
            walk_root,
            steps,
        }
    }
}

/// A walk's committed states and the time its reads took.
#[derive(Debug)]
pub struct DiskWalk {
    pub states: Vec<Hash>,
    /// Time spent in the disk reads alone.
    pub reading: Duration,
    /// Whether the reads went past the page cache.
    pub direct: bool,
}

fn sampled(params: &DiskParams, nonce: &Seed, root: &Hash, walk_root: &Hash) -> Vec<u64> {
    walk::sampled(
        WALK_SAMPLE_LABEL,
        nonce,
        (root, walk_root),
        params.walk_samples,
        params.walk_steps,
        params.sampling_work,
    )
}

/// One re-walked step: its two states, and the proof that the label it
/// reads is in the plot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOpening {
    #[serde(flatten)]
    pub states: walk::Segment,
    pub label_proof: Proof,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskProof {
    pub params: DiskParams,
    pub plot_seed: Seed,
    #[serde(with = "hex_hash")]
    pub plot_root: Hash,
    pub nonce: Seed,
    #[serde(with = "hex_hash")]
    pub walk_end: Hash,
    #[serde(with = "hex_hash")]
    pub walk_root: Hash,
    pub steps: Vec<StepOpening>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskVerdict {
    pub labels_remade: u32,
}

/// Check a walk of the plot seeded by `plot_seed` against the verifier's
/// parameters and nonce. The time bound is the caller's (see
/// `DiskParams::walk_bound`).
pub fn check(
    proof: &DiskProof,
    params: &DiskParams,
    plot_seed: &Seed,
    nonce: &Seed,
) -> Result<DiskVerdict, PorError> {
    params.validate()?;
    if proof.plot_seed != *plot_seed {
        return Err(PorError::Rejected(format!(
            "the walk is of a plot made from seed {}, not {plot_seed}",
            proof.plot_seed
        )));
    }
    crate::same_challenge(
        (params, plot_seed, nonce),
        (&proof.params, &proof.plot_seed, &proof.nonce),
    )?;
    let reject = |why: String| Err(PorError::Rejected(why));
    let want = sampled(params, nonce, &proof.plot_root, &proof.walk_root);
    if proof.steps.len() != want.len() {
        return reject(format!(
            "{} walk steps opened, {} sampled",
            proof.steps.len(),
            want.len()
        ));
    }
    let p = &params.plot;
    let mut maker = LabelMaker::new(p);
    let mut label = vec![0u8; p.label_bytes as usize];
    let first = walk::start(WALK_LABEL, nonce, &proof.plot_root);
    for (s, j) in proof.steps.iter().zip(want) {
        s.states.check_place(
            j,
            params.walk_steps,
            &proof.walk_root,
            &first,
            &proof.walk_end,
        )?;
        let i = walk::index(&s.states.start, p.labels());
        maker.make(plot_seed, i, p.passes, &mut label);
        if !merkle::verify(
            &proof.plot_root,
            p.labels() as usize,
            i as usize,
            &leaf(i, &label),
            &s.label_proof,
        ) {
            return reject(format!(
                "walk step {j}: label {i} is not in the plot's commitment (the plot does not hold the seed's label there)"
            ));
        }
        if walk::step(&s.states.start, &label) != s.states.end {
            return reject(format!(
                "walk step {j}: reading label {i} does not lead to the committed state (the step was made up)"
            ));
        }
    }
    Ok(DiskVerdict {
        labels_remade: params.walk_samples,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A small plot for the protocol's mechanics: 256 labels of 4 KiB,
    /// 2 passes; a walk of 1,024 steps.
    fn small() -> DiskParams {
        DiskParams {
            plot: PlotParams {
                bytes: 256 * 4096,
                label_bytes: 4096,
                passes: 2,
            },
            walk_steps: 1024,
            walk_samples: 32,
            sampling_work: 16,
        }
    }

    fn nonce(i: u64) -> Seed {
        Seed(Seed([9; 32]).derive("test nonce", i))
    }

    fn plotted(dir: &tempfile::TempDir, seed: Seed) -> Plot {
        let progress = AtomicU64::new(0);
        let plot =
            Plot::create(&dir.path().join("plot"), &seed, &small().plot, 3, &progress).unwrap();
        assert_eq!(progress.load(Ordering::Relaxed), 256);
        plot
    }

    fn label(seed: &Seed, p: &PlotParams, i: u64) -> Vec<u8> {
        let mut out = vec![0; p.label_bytes as usize];
        LabelMaker::new(p).make(seed, i, p.passes, &mut out);
        out
    }

    /// Every label of the plot, made once for the simulated provers.
    fn all_labels(seed: &Seed, p: &PlotParams) -> Vec<Vec<u8>> {
        (0..p.labels()).map(|i| label(seed, p, i)).collect()
    }

    #[test]
    fn an_honest_prover_passes_every_nonce_and_the_plot_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed([1; 32]);
        let made = plotted(&dir, seed);
        // Later challenges open the plot made once.
        let plot = Plot::open(&dir.path().join("plot")).unwrap();
        assert_eq!(plot.root(), made.root());
        for i in 0..100 {
            let n = nonce(i);
            let w = plot
                .walk(&n, small().walk_steps, &AtomicU64::new(0))
                .unwrap();
            let proof = plot.open_walked(&small(), &n, &w.states);
            let v = check(&proof, &small(), &seed, &n).unwrap();
            assert_eq!(v.labels_remade, 32);
        }
    }

    #[test]
    fn the_file_holds_the_seeds_labels() {
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed([2; 32]);
        plotted(&dir, seed);
        let bytes = std::fs::read(dir.path().join("plot")).unwrap();
        let p = small().plot;
        // Every label: each thread's one burst is written in calls of 22
        // labels, the last one shorter.
        assert_eq!(write_call_labels(86), 22);
        for i in 0..p.labels() {
            let at = (i * p.label_bytes) as usize;
            assert_eq!(bytes[at..at + 4096], label(&seed, &p, i)[..], "label {i}");
        }
        assert_ne!(label(&seed, &p, 3), label(&seed, &p, 4));
        assert_ne!(label(&seed, &p, 3), label(&Seed([3; 32]), &p, 3));
    }

    #[test]
    fn bursts_are_a_share_of_the_pool_and_at_least_a_large_page() {
        let p = PlotParams::for_claim(1 << 30);
        assert_eq!(p.label_bytes, 256 << 10);
        // 128 MiB over threads + 2 buffers.
        assert_eq!(burst_labels(&p, 2), 128);
        assert_eq!(burst_labels(&p, 1), 170);
        assert_eq!(burst_labels(&p, 0), 170);
        // 128 MiB / 102 is under 2 MiB: a buffer takes a large page anyway.
        assert_eq!(burst_labels(&p, 100), 8);
        // At least one label, of the largest size a plot takes.
        let big = PlotParams {
            label_bytes: 16 << 20,
            ..p
        };
        assert_eq!(burst_labels(&big, 100), 1);
        assert_eq!(burst_labels(&big, 1), 2);
        assert_eq!(write_call_labels(128), 32);
        assert_eq!(write_call_labels(5), 2);
        assert_eq!(write_call_labels(1), 1);
    }

    #[test]
    fn labels_written_in_several_bursts_land_where_they_belong() {
        // 16 MiB labels: two threads get bursts of two labels, so thread
        // 0 writes labels 0-1 and then 2, thread 1 labels 3-4.
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed([5; 32]);
        let p = PlotParams {
            bytes: 5 * (16 << 20),
            label_bytes: 16 << 20,
            passes: 1,
        };
        assert_eq!(burst_labels(&p, 2), 2);
        let progress = AtomicU64::new(0);
        let plot = Plot::create(&dir.path().join("plot"), &seed, &p, 2, &progress).unwrap();
        assert_eq!(progress.load(Ordering::Relaxed), 5);
        let bytes = std::fs::read(dir.path().join("plot")).unwrap();
        assert_eq!(bytes.len() as u64, p.bytes);
        let mut leaves = Vec::new();
        for (i, got) in bytes.chunks_exact(p.label_bytes as usize).enumerate() {
            let want = label(&seed, &p, i as u64);
            assert!(got == &want[..], "label {i} is not where it belongs");
            leaves.push(leaf(i as u64, &want));
        }
        assert_eq!(plot.root(), Tree::new(leaves).unwrap().root());
        Plot::open(&dir.path().join("plot")).unwrap();
    }

    /// The states of a walk that reads label `i` as `label_of(i)`.
    fn walk_with(
        plot: &Plot,
        nonce: &Seed,
        steps: u64,
        label_of: &mut dyn FnMut(u64) -> Vec<u8>,
    ) -> Vec<Hash> {
        let mut state = walk::start(WALK_LABEL, nonce, &plot.root());
        let mut states = vec![state];
        for _ in 0..steps {
            state = walk::step(
                &state,
                &label_of(walk::index(&state, plot.header.params.labels())),
            );
            states.push(state);
        }
        states
    }

    /// Which labels a cheating node keeps.
    type Keeps = Box<dyn Fn(u64) -> bool>;

    fn half_keepers(seed: Seed, labels: u64) -> [(&'static str, Keeps); 3] {
        [
            ("every other label", Box::new(|i| i % 2 == 0)),
            ("the first half", Box::new(move |i| i < labels / 2)),
            (
                "a random half",
                Box::new(move |i| seed.derive("kept", i)[0] & 1 == 0),
            ),
        ]
    }

    #[test]
    fn a_prover_holding_half_the_plot_that_remakes_labels_misses_the_bound_every_time() {
        // The bound allows a step a quarter of a label's remaking on the
        // fastest core. A node holding half the plot remakes each missing
        // label it meets, so it misses the bound once it meets more than a
        // quarter of the steps' labels missing: count them in 100 walks of
        // 4,096 steps.
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed([3; 32]);
        let plot = plotted(&dir, seed);
        let p = small().plot;
        let labels = all_labels(&seed, &p);
        let steps = 4096;
        for (name, kept) in half_keepers(seed, p.labels()) {
            let mut fewest = u64::MAX;
            let mut over = 0;
            for t in 0..100 {
                let mut remade = 0;
                walk_with(&plot, &nonce(t), steps, &mut |i| {
                    if !kept(i) {
                        remade += 1;
                    }
                    labels[i as usize].clone()
                });
                fewest = fewest.min(remade);
                if remade > steps / 4 {
                    over += 1;
                }
            }
            let bound = DiskParams {
                walk_steps: steps,
                ..small()
            }
            .walk_bound();
            let least = Duration::from_nanos(fewest * p.label_hashes() * FASTEST_HASH_NS);
            eprintln!(
                "{name}: over the bound in {over} of 100 walks; fewest labels remade {fewest} of {steps} ({least:?} of remaking on the fastest core, bound {bound:?})"
            );
            assert!(over >= 99, "{name}: over the bound {over} times in 100");
            assert!(least > bound, "{name}");
        }
    }

    #[test]
    fn a_prover_holding_half_the_plot_that_makes_up_labels_is_caught() {
        // To stay within the bound, a node holding half the plot may remake
        // at most a quarter of the steps' labels; it makes up the rest of
        // the missing ones (cheap junk). The sampled steps catch it.
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed([4; 32]);
        let plot = plotted(&dir, seed);
        let params = small();
        let p = params.plot;
        let labels = all_labels(&seed, &p);
        for (name, kept) in half_keepers(seed, p.labels()) {
            let mut caught = 0;
            for t in 0..100 {
                let n = nonce(t);
                let mut remade = 0;
                let states = walk_with(&plot, &n, params.walk_steps, &mut |i| {
                    if kept(i) {
                        return labels[i as usize].clone();
                    }
                    remade += 1;
                    if remade <= params.walk_steps / 4 {
                        labels[i as usize].clone()
                    } else {
                        seed.derive("junk", i).repeat(128)
                    }
                });
                let err = check(&plot.open_walked(&params, &n, &states), &params, &seed, &n);
                if let Err(e) = err {
                    assert!(e.to_string().contains("the step was made up"), "{e}");
                    caught += 1;
                }
            }
            eprintln!("{name}: caught in {caught} of 100 challenges");
            assert!(caught >= 99, "{name}: caught {caught} times in 100");
        }
    }

    #[test]
    fn a_plot_of_cheap_junk_is_caught() {
        // Labels anyone can make in one hash, committed and walked honestly:
        // the verifier remakes the seed's label and it is not the leaf.
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed([5; 32]);
        let honest = plotted(&dir, seed);
        let p = small().plot;
        let junk = |i: u64| seed.derive("junk", i).repeat(128);
        let leaves = (0..p.labels()).map(|i| leaf(i, &junk(i))).collect();
        let tree = Tree::new(leaves).unwrap();
        let cheat = Plot {
            path: honest.path.clone(),
            header: PlotHeader {
                root: tree.root(),
                ..honest.header.clone()
            },
            tree,
            writing: None,
        };
        for t in 0..100 {
            let n = nonce(t);
            let states = walk_with(&cheat, &n, small().walk_steps, &mut |i| junk(i));
            let err = check(
                &cheat.open_walked(&small(), &n, &states),
                &small(),
                &seed,
                &n,
            )
            .unwrap_err();
            assert!(
                err.to_string().contains("not in the plot's commitment"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_tampered_proof_is_rejected_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed([6; 32]);
        let plot = plotted(&dir, seed);
        let params = small();
        let n = nonce(1);
        let w = plot
            .walk(&n, params.walk_steps, &AtomicU64::new(0))
            .unwrap();
        let good = plot.open_walked(&params, &n, &w.states);
        check(&good, &params, &seed, &n).unwrap();

        let mut p = good.clone();
        p.steps[4].states.end[0] ^= 1;
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(
            err.to_string().contains("not in the walk's commitment"),
            "{err}"
        );

        let mut p = good.clone();
        p.steps[4].label_proof.siblings[0][0] ^= 1;
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(
            err.to_string().contains("not in the plot's commitment"),
            "{err}"
        );

        let mut p = good.clone();
        p.steps.pop();
        let err = check(&p, &params, &seed, &n).unwrap_err();
        assert!(
            err.to_string().contains("31 walk steps opened, 32 sampled"),
            "{err}"
        );

        let mut p = good.clone();
        p.steps.swap(0, 1);
        assert!(check(&p, &params, &seed, &n).is_err());

        let err = check(&good, &params, &seed, &nonce(2)).unwrap_err();
        assert!(err.to_string().contains("another seed or nonce"), "{err}");
        let err = check(&good, &params, &Seed([7; 32]), &n).unwrap_err();
        assert!(
            err.to_string().contains("a plot made from seed 0606"),
            "{err}"
        );

        let bigger = DiskParams {
            plot: PlotParams {
                bytes: 512 * 4096,
                ..params.plot
            },
            ..params
        };
        let err = check(&good, &bigger, &seed, &n).unwrap_err();
        assert!(err.to_string().contains("parameters"), "{err}");
    }

    #[test]
    fn bad_parameters_are_refused_before_any_work() {
        let ok = small();
        let plot = |p: PlotParams| DiskParams { plot: p, ..ok };
        for (bad, why) in [
            (
                plot(PlotParams {
                    label_bytes: 1000,
                    ..ok.plot
                }),
                "multiple of 4096",
            ),
            (
                plot(PlotParams {
                    label_bytes: 0,
                    ..ok.plot
                }),
                "multiple of 4096",
            ),
            (
                plot(PlotParams {
                    bytes: 4096 * 3 + 1,
                    ..ok.plot
                }),
                "positive multiple",
            ),
            (
                plot(PlotParams {
                    bytes: 0,
                    ..ok.plot
                }),
                "positive multiple",
            ),
            (
                plot(PlotParams {
                    bytes: 1 << 51,
                    ..ok.plot
                }),
                "over the limit",
            ),
            (
                plot(PlotParams {
                    bytes: 1 << 41,
                    ..ok.plot
                }),
                "more than 2^28",
            ),
            (
                plot(PlotParams {
                    passes: 0,
                    ..ok.plot
                }),
                "passes must be 1 to 64",
            ),
            (
                DiskParams {
                    walk_steps: 0,
                    ..ok
                },
                "walk_steps must be",
            ),
            (
                DiskParams {
                    walk_samples: 0,
                    ..ok
                },
                "walk_samples must be",
            ),
        ] {
            let err = bad.validate().unwrap_err();
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("plot");
            let err = Plot::create(&path, &Seed([0; 32]), &bad.plot, 1, &AtomicU64::new(0));
            if bad.plot != ok.plot {
                assert!(err.unwrap_err().to_string().contains(why));
                assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
            }
        }
    }

    #[test]
    fn a_plot_is_never_replaced_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed([8; 32]);
        plotted(&dir, seed);
        let path = dir.path().join("plot");
        let err = Plot::create(&path, &seed, &small().plot, 1, &AtomicU64::new(0)).unwrap_err();
        assert!(err.to_string().contains("already there"), "{err}");
        Plot::open(&path).unwrap();

        let leaves = with_suffix(&path, ".leaves");
        let mut raw = std::fs::read(&leaves).unwrap();
        raw[0] ^= 1;
        std::fs::write(&leaves, &raw).unwrap();
        let err = Plot::open(&path).unwrap_err();
        assert!(
            err.to_string().contains("does not hash to the root"),
            "{err}"
        );
        raw[0] ^= 1;
        std::fs::write(&leaves, &raw[..raw.len() - 32]).unwrap();
        let err = Plot::open(&path).unwrap_err();
        assert!(err.to_string().contains("the plot is damaged"), "{err}");
        std::fs::write(&leaves, &raw).unwrap();

        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(4096).unwrap();
        let err = Plot::open(&path).unwrap_err();
        assert!(err.to_string().contains("the plot is damaged"), "{err}");

        std::fs::write(Plot::header_path(&path), b"{").unwrap();
        let err = Plot::open(&path).unwrap_err();
        assert!(err.to_string().contains("not a plot header"), "{err}");

        let err = Plot::open(&dir.path().join("none")).unwrap_err();
        assert!(err.to_string().contains("none.json"), "{err}");
    }

    #[test]
    fn the_verifier_does_under_one_percent_of_the_work() {
        for bytes in [1u64 << 30, 64 << 30, 1 << 40, 64 << 40] {
            let p = DiskParams::for_claim(bytes);
            p.validate().unwrap();
            assert!(p.verifier_blocks() * 100 <= p.prover_blocks(), "{p:?}");
        }
    }

    #[test]
    fn proofs_round_trip_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let plot = plotted(&dir, Seed([9; 32]));
        let n = nonce(0);
        let w = plot
            .walk(&n, small().walk_steps, &AtomicU64::new(0))
            .unwrap();
        let proof = plot.open_walked(&small(), &n, &w.states);
        let json = serde_json::to_string(&proof).unwrap();
        assert_eq!(serde_json::from_str::<DiskProof>(&json).unwrap(), proof);
    }
}
