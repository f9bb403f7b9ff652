//! The GPU challenge's CPU reference prover on this machine: the product's
//! time, the verifier's time, and the verifier's share.
//!
//! Usage: gpu_reference_bench [N] [CARDS] [THREADS] [SAMPLING_WORK]
//!
//! SAMPLING_WORK defaults to 0 here, so the verifier's time is its share
//! of the product alone; both sides pay the default 2^20 hashes once on
//! top (timed separately below).

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use por::gpu::{self, GpuParams};
use por::Seed;

fn main() -> Result<(), por::PorError> {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let cards: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let threads: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let params = GpuParams {
        sampling_work: args.next().and_then(|a| a.parse().ok()).unwrap_or(0),
        ..GpuParams::with_n(n)
    };
    let uuids: Vec<String> = (0..cards).map(|i| format!("GPU-reference-{i}")).collect();
    let seed = Seed([0x42; 32]);
    let t = Instant::now();
    let proof = gpu::prove_reference(&params, &seed, &uuids, threads, &AtomicU64::new(0))?;
    let prove_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    gpu::check(&proof, &params, &seed, &uuids)?;
    let check_s = t.elapsed().as_secs_f64();
    let macs = params.prover_macs() as f64 * cards as f64;
    // What the default sampling work adds, on each side, once.
    let t = Instant::now();
    gpu::self_nonce(&GpuParams::with_n(n), &seed, &[]);
    let sampling_s = t.elapsed().as_secs_f64();
    println!(
        "por-gpu-reference n={n} cards={cards} threads={threads} prove_s={prove_s:.3} GMAC/s={:.2} check_s={check_s:.4} check/prove={:.5} proof_bytes={} default_sampling_work_s={sampling_s:.3}",
        macs / prove_s / 1e9,
        check_s / prove_s,
        serde_json::to_vec(&proof).map_or(0, |v| v.len())
    );
    Ok(())
}
