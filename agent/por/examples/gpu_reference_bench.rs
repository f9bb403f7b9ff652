//! The GPU challenge's CPU reference prover on this machine: the product's
//! time, the verifier's time, and the verifier's share.
//!
//! Usage: gpu_reference_bench [N] [CARDS] [THREADS]

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
    let params = GpuParams { n, samples: 64 };
    let uuids: Vec<String> = (0..cards).map(|i| format!("GPU-reference-{i}")).collect();
    let seed = Seed([0x42; 32]);
    let t = Instant::now();
    let proof = gpu::prove_reference(&params, &seed, &uuids, threads, &AtomicU64::new(0))?;
    let prove_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    gpu::check(&proof, &params, &seed, &uuids)?;
    let check_s = t.elapsed().as_secs_f64();
    let macs = params.prover_macs() as f64 * cards as f64;
    println!(
        "por-gpu-reference n={n} cards={cards} threads={threads} prove_s={prove_s:.3} GMAC/s={:.2} check_s={check_s:.4} check/prove={:.5} proof_bytes={}",
        macs / prove_s / 1e9,
        check_s / prove_s,
        serde_json::to_vec(&proof).map_or(0, |v| v.len())
    );
    Ok(())
}
