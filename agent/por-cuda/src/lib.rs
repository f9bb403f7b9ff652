//! The GPU challenge's prover on NVIDIA cards (`por::gpu` holds the
//! protocol and its check). CUDA is loaded at run time: the driver
//! (`libcuda.so`, from the NVIDIA driver) and NVRTC (`libnvrtc.so`, from
//! the CUDA toolkit), so a machine without them builds and runs the agent
//! and gets [`GpuError::NoCuda`] here.
//!
//! On each claimed card at once, one thread:
//! 1. makes A and B on the card from the seed and the card's UUID;
//! 2. computes `C = A·B` (32-bit integers, wrapping) with a tiled kernel;
//! 3. copies C to the host in bands of rows and hashes its chunks there,
//!    with `por::gpu::chunk_leaves`, so the leaves are the reference's
//!    own code; C stays on the card.
//!
//! Then the nonce is derived from every card's root and the sampled chunks
//! are read back from each card.
//!
//! Launching a kernel is `unsafe` in cudarc (the arguments cannot be
//! checked against the kernel's); this crate is the one place the agent
//! allows it, at the three launches below, each with its reasoning.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaSlice, LaunchConfig, PushKernelArg};
use por::gpu::{self, CardCommitment, GpuParams, GpuProof, CHUNK};
use por::{PorError, Seed};

/// The kernels, compiled by NVRTC for the card at run time.
const KERNELS: &str = r#"
// por::gpu's element(): SplitMix64's finalizer over key ^ index * phi.
extern "C" __global__ void fill(unsigned int* out, unsigned long long key,
                                unsigned long long count) {
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < count; i += stride) {
        unsigned long long z = key ^ (i * 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        out[i] = (unsigned int)(z ^ (z >> 31));
    }
}

// C = A * B, n a multiple of 32; unsigned arithmetic wraps modulo 2^32.
#define TILE 32
extern "C" __global__ void matmul(const unsigned int* A, const unsigned int* B,
                                  unsigned int* C, unsigned int n) {
    __shared__ unsigned int As[TILE][TILE];
    __shared__ unsigned int Bs[TILE][TILE + 1];
    unsigned int row = blockIdx.y * TILE + threadIdx.y;
    unsigned int col = blockIdx.x * TILE + threadIdx.x;
    unsigned int acc = 0;
    for (unsigned int t = 0; t < n; t += TILE) {
        As[threadIdx.y][threadIdx.x] = A[(unsigned long long)row * n + t + threadIdx.x];
        Bs[threadIdx.y][threadIdx.x] = B[(unsigned long long)(t + threadIdx.y) * n + col];
        __syncthreads();
#pragma unroll
        for (int k = 0; k < TILE; ++k) {
            acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
        }
        __syncthreads();
    }
    C[(unsigned long long)row * n + col] = acc;
}
"#;

/// Host bytes per band of C copied back for hashing.
const BAND_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no CUDA here: {0}")]
    NoCuda(String),
    #[error("card {uuid} is not on this machine (CUDA sees: {found})")]
    UnknownCard { uuid: String, found: String },
    #[error("CUDA, card {card}: {what}: {detail}")]
    Cuda {
        card: String,
        what: &'static str,
        detail: String,
    },
    #[error("compiling the kernels with NVRTC: {0}")]
    Compile(String),
    #[error(transparent)]
    Por(#[from] PorError),
}

/// A card CUDA sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub ordinal: usize,
    /// As NVML and nvidia-smi write it: `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub uuid: String,
    pub name: String,
    pub memory_bytes: u64,
}

/// Whether the CUDA driver and NVRTC can be loaded, and if not, why.
pub fn available() -> Result<(), GpuError> {
    // SAFETY: only looks the libraries up (dlopen); nothing is called.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    let nvrtc = unsafe { cudarc::nvrtc::sys::is_culib_present() };
    match (driver, nvrtc) {
        (true, true) => Ok(()),
        (false, _) => Err(GpuError::NoCuda(
            "the NVIDIA driver's libcuda.so was not found (no NVIDIA driver, or not on the library path)"
                .into(),
        )),
        (true, false) => Err(GpuError::NoCuda(
            "NVRTC (libnvrtc.so, from the CUDA toolkit) was not found on the library path".into(),
        )),
    }
}

fn uuid_string(u: &cudarc::driver::sys::CUuuid) -> String {
    let b: Vec<u8> = u.bytes.iter().map(|&c| c as u8).collect();
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

fn cuda<'a>(
    card: &'a str,
    what: &'static str,
) -> impl Fn(cudarc::driver::DriverError) -> GpuError + 'a {
    move |e| GpuError::Cuda {
        card: card.to_string(),
        what,
        detail: e.to_string(),
    }
}

/// The cards CUDA sees, in its ordinal order.
pub fn cards() -> Result<Vec<Card>, GpuError> {
    available()?;
    let count = CudaContext::device_count().map_err(cuda("-", "counting devices"))?;
    (0..count as usize)
        .map(|ordinal| {
            let ctx = CudaContext::new(ordinal).map_err(cuda("-", "opening a device"))?;
            let uuid = uuid_string(&ctx.uuid().map_err(cuda("-", "reading its UUID"))?);
            let name = ctx.name().map_err(cuda(&uuid, "reading its name"))?;
            let memory_bytes = ctx.total_mem().map_err(cuda(&uuid, "reading its memory"))? as u64;
            Ok(Card {
                ordinal,
                uuid,
                name,
                memory_bytes,
            })
        })
        .collect()
}

/// How long each card took.
#[derive(Debug, Clone)]
pub struct CardTiming {
    pub uuid: String,
    /// Making A and B on the card.
    pub fill: Duration,
    /// The product, kernel start to finish.
    pub product: Duration,
    /// Copying C back and hashing it into leaves and the tree.
    pub commit: Duration,
}

struct Committed {
    commitment: CardCommitment,
    c: CudaSlice<u32>,
    timing: CardTiming,
}

/// Prove `params` on the claimed cards (their UUIDs), all at once.
/// `progress` counts rows of C committed, across cards; `threads` hash
/// the leaves on the host for each card.
pub fn prove(
    params: &GpuParams,
    seed: &Seed,
    uuids: &[String],
    threads: u32,
    progress: &AtomicU64,
) -> Result<(GpuProof, Vec<CardTiming>), GpuError> {
    params.validate()?;
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = uuids.iter().find(|u| !seen.insert(u.to_ascii_lowercase())) {
        return Err(PorError::Params(format!("card {twice} is claimed twice")).into());
    }
    let present = cards()?;
    let mut claimed = Vec::new();
    for uuid in uuids {
        let card = present
            .iter()
            .find(|c| c.uuid.eq_ignore_ascii_case(uuid))
            .ok_or_else(|| GpuError::UnknownCard {
                uuid: uuid.clone(),
                found: present
                    .iter()
                    .map(|c| c.uuid.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let needed = 12 * u64::from(params.n) * u64::from(params.n);
        if needed > card.memory_bytes {
            return Err(PorError::Params(format!(
                "n = {} needs {needed} bytes on card {uuid}, which has {}",
                params.n, card.memory_bytes
            ))
            .into());
        }
        claimed.push((card.ordinal, uuid.clone()));
    }
    let ptx =
        cudarc::nvrtc::compile_ptx(KERNELS).map_err(|e| GpuError::Compile(format!("{e:?}")))?;

    let committed: Vec<Result<Committed, GpuError>> = std::thread::scope(|s| {
        let handles: Vec<_> = claimed
            .iter()
            .map(|(ordinal, uuid)| {
                let ptx = ptx.clone();
                s.spawn(move || commit_card(params, seed, *ordinal, uuid, ptx, threads, progress))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(GpuError::Cuda {
                        card: "-".into(),
                        what: "a card's thread",
                        detail: "panicked".into(),
                    })
                })
            })
            .collect()
    });
    let (done, failed): (Vec<_>, Vec<_>) = committed.into_iter().partition(Result::is_ok);
    let done: Vec<Committed> = done.into_iter().filter_map(Result::ok).collect();
    if let Some(Err(e)) = failed.into_iter().next() {
        done.into_iter().for_each(release);
        return Err(e);
    }
    let nonce = {
        let roots: Vec<(&str, por::merkle::Hash)> = done
            .iter()
            .map(|c| (c.commitment.uuid(), c.commitment.root()))
            .collect();
        gpu::self_nonce(params, seed, &roots)
    };
    let mut proofs = Vec::new();
    let mut timings = Vec::new();
    let mut cards = done.into_iter();
    while let Some(card) = cards.next() {
        let uuid = card.commitment.uuid().to_string();
        let stream = card.c.stream().clone();
        let opened = card.commitment.open(params, &nonce, |i| {
            let start = (i * u64::from(CHUNK)) as usize;
            stream
                .clone_dtoh(&card.c.slice(start..start + CHUNK as usize))
                .map_err(|e| PorError::Io(format!("card {uuid}: reading chunk {i} back: {e}")))
        });
        timings.push(card.timing.clone());
        release(card);
        match opened {
            Ok(p) => proofs.push(p),
            Err(e) => {
                cards.for_each(release);
                return Err(e.into());
            }
        }
    }
    Ok((
        GpuProof {
            params: *params,
            seed: *seed,
            nonce,
            cards: proofs,
        },
        timings,
    ))
}

/// Free a card's product under its own context: the thread that drops it
/// (here, not the card's) has none bound, and a free under none fails.
fn release(card: Committed) {
    let _ = card.c.stream().context().bind_to_thread();
    drop(card);
}

fn commit_card(
    params: &GpuParams,
    seed: &Seed,
    ordinal: usize,
    uuid: &str,
    ptx: cudarc::nvrtc::Ptx,
    threads: u32,
    progress: &AtomicU64,
) -> Result<Committed, GpuError> {
    let ctx: Arc<CudaContext> =
        CudaContext::new(ordinal).map_err(cuda(uuid, "opening the card"))?;
    let stream = ctx.default_stream();
    let module = ctx
        .load_module(ptx)
        .map_err(cuda(uuid, "loading the kernels"))?;
    let fill = module
        .load_function("fill")
        .map_err(cuda(uuid, "finding fill"))?;
    let matmul = module
        .load_function("matmul")
        .map_err(cuda(uuid, "finding matmul"))?;
    let n = params.n;
    let entries = u64::from(n) * u64::from(n);
    let alloc = |what| {
        stream
            .alloc_zeros::<u32>(entries as usize)
            .map_err(cuda(uuid, what))
    };
    let (a, b, mut c) = (
        alloc("allocating A")?,
        alloc("allocating B")?,
        alloc("allocating C")?,
    );
    let (a_key, b_key) = gpu::Matrices::for_card(params, seed, uuid).keys();

    let started = Instant::now();
    let spread = LaunchConfig {
        grid_dim: (4096, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    for (m, key) in [(&a, a_key), (&b, b_key)] {
        let mut launch = stream.launch_builder(&fill);
        launch.arg(m).arg(&key).arg(&entries);
        // SAFETY: the arguments match the kernel's (u32*, u64, u64), and
        // the kernel writes only below `entries` in a buffer that long.
        unsafe { launch.launch(spread) }.map_err(cuda(uuid, "making A and B"))?;
    }
    stream.synchronize().map_err(cuda(uuid, "making A and B"))?;
    let fill_time = started.elapsed();

    let started = Instant::now();
    let tiles = LaunchConfig {
        grid_dim: (n / 32, n / 32, 1),
        block_dim: (32, 32, 1),
        shared_mem_bytes: 0,
    };
    let mut launch = stream.launch_builder(&matmul);
    launch.arg(&a).arg(&b).arg(&mut c).arg(&n);
    // SAFETY: (u32*, u32*, u32*, u32) as the kernel takes; every block
    // reads and writes inside n×n buffers, n a multiple of 32 (validated).
    unsafe { launch.launch(tiles) }.map_err(cuda(uuid, "the product"))?;
    stream.synchronize().map_err(cuda(uuid, "the product"))?;
    let product = started.elapsed();
    drop((a, b));

    // Whole rows per band: a row is n/64 whole chunks.
    let started = Instant::now();
    let rows_per_band = (BAND_BYTES / (u64::from(n) * 4)).max(1);
    let mut leaves = Vec::with_capacity((entries / u64::from(CHUNK)) as usize);
    let mut row = 0u64;
    while row < u64::from(n) {
        let rows = rows_per_band.min(u64::from(n) - row);
        let (start, end) = (row * u64::from(n), (row + rows) * u64::from(n));
        let band = stream
            .clone_dtoh(&c.slice(start as usize..end as usize))
            .map_err(cuda(uuid, "copying C back"))?;
        leaves.extend(gpu::chunk_leaves(start / u64::from(CHUNK), &band, threads));
        progress.fetch_add(rows, Ordering::Relaxed);
        row += rows;
    }
    let commitment = CardCommitment::from_leaves(params, uuid, leaves)?;
    Ok(Committed {
        commitment,
        c,
        timing: CardTiming {
            uuid: uuid.to_string(),
            fill: fill_time,
            product,
            commit: started.elapsed(),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn uuids_are_written_as_nvml_writes_them() {
        let mut u = cudarc::driver::sys::CUuuid { bytes: [0; 16] };
        for (i, b) in u.bytes.iter_mut().enumerate() {
            *b = (i as u8 * 17) as _;
        }
        assert_eq!(uuid_string(&u), "GPU-00112233-4455-6677-8899-aabbccddeeff");
    }

    /// The prover on this machine's cards, checked by the reference check.
    /// Where CUDA is absent (CI) it says so and proves nothing.
    #[test]
    fn the_cards_here_prove_and_the_reference_check_passes() {
        if let Err(e) = available() {
            eprintln!("SKIPPED (not run): {e}");
            return;
        }
        let cards = cards().unwrap();
        if cards.is_empty() {
            eprintln!("SKIPPED (not run): CUDA sees no card");
            return;
        }
        let uuids: Vec<String> = cards.iter().map(|c| c.uuid.clone()).collect();
        let params = GpuParams::with_n(1024);
        let seed = Seed([5; 32]);
        let (proof, timings) = prove(&params, &seed, &uuids, 4, &AtomicU64::new(0)).unwrap();
        gpu::check(&proof, &params, &seed, &uuids).unwrap();
        // The reference prover gives the same roots: the same C, bit for bit.
        let reference =
            gpu::prove_reference(&params, &seed, &uuids, 4, &AtomicU64::new(0)).unwrap();
        for (g, r) in proof.cards.iter().zip(&reference.cards) {
            assert_eq!(g.root, r.root, "card {}", g.uuid);
        }
        eprintln!("{timings:?}");
    }
}
