//! The memory challenge's figures on this machine: fill time, the walk's
//! time per dependent read, the sweep's bandwidth, and the verifier's
//! time.
//!
//! Usage: mem_bench [BYTES] [LANES] [WALK_STEPS]

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use por::memory::{self, MemParams};
use por::Seed;

fn main() -> Result<(), por::PorError> {
    let mut args = std::env::args().skip(1);
    let bytes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1 << 30);
    let lanes: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let mut params = MemParams::for_claim(bytes, lanes);
    if let Some(w) = args.next().and_then(|a| a.parse().ok()) {
        params.walk_steps = w;
    }
    let seed = Seed([0x42; 32]);
    let t = Instant::now();
    let work = memory::commit(&params, &seed, &AtomicU64::new(0))?;
    let fill = t.elapsed().as_secs_f64();
    let nonce = Seed([0x17; 32]);
    let t = Instant::now();
    let states = work.walk(&nonce);
    let walk = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sweep = work.sweep(&nonce, &states[states.len() - 1], &AtomicU64::new(0));
    let swept = t.elapsed().as_secs_f64();
    let proof = work.open_walked(&nonce, &states, &sweep);
    let t = Instant::now();
    memory::check(&proof, &params, &seed, &nonce)?;
    let check = t.elapsed().as_secs_f64();
    let proof_bytes = serde_json::to_vec(&proof).map_or(0, |j| j.len());
    println!(
        "por-mem bytes={bytes} lanes={lanes} fill_s={fill:.3} fill_MBps={:.0} walk_steps={} walk_s={walk:.3} walk_ns_per_read={:.1} sweep_passes={} sweep_s={swept:.4} sweep_MiBps={:.0} check_s={check:.4} check/(fill+walk+sweep)={:.5} proof_json_bytes={proof_bytes}",
        bytes as f64 / fill / 1e6,
        params.walk_steps,
        walk * 1e9 / params.walk_steps as f64,
        params.sweep_passes,
        params.sweep_bytes() as f64 / 1_048_576.0 / swept,
        check / (fill + walk + swept)
    );
    Ok(())
}
