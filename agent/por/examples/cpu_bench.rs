//! The CPU challenge's figures on this machine: steps per second on one
//! lane and on N lanes, their ratio (how it scales with cores), and the
//! verifier's time beside the prover's. `scripts/bench-por` prints these
//! beside `sysbench cpu` run in the same go.
//!
//! Usage: cpu_bench [LANES] [STEPS_PER_LANE]

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use por::cpu::{self, CpuParams};
use por::Seed;

fn rate(lanes: u32, steps: u64) -> Result<(f64, f64, f64), por::PorError> {
    let params = CpuParams {
        steps_per_lane: steps,
        ..CpuParams::for_cores(lanes)
    };
    let seed = Seed([0x42; 32]);
    let t = Instant::now();
    let work = cpu::commit(&params, &seed, &AtomicU64::new(0))?;
    let prove = t.elapsed().as_secs_f64();
    let nonce = cpu::self_nonce(&seed, &work.root());
    let proof = work.open(&nonce);
    let t = Instant::now();
    cpu::check(&proof, &params, &seed, &nonce)?;
    let check = t.elapsed().as_secs_f64();
    Ok((params.prover_steps() as f64 / prove, prove, check))
}

fn main() -> Result<(), por::PorError> {
    let mut args = std::env::args().skip(1);
    let lanes: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let steps: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1 << 24);
    let (one, one_prove, one_check) = rate(1, steps)?;
    println!(
        "por-cpu lanes=1 steps/s={one:.0} prove_s={one_prove:.3} check_s={one_check:.4} check/prove={:.4}",
        one_check / one_prove
    );
    let (all, all_prove, all_check) = rate(lanes, steps)?;
    println!(
        "por-cpu lanes={lanes} steps/s={all:.0} prove_s={all_prove:.3} check_s={all_check:.4} check/prove={:.4}",
        all_check / all_prove
    );
    println!("por-cpu scaling={:.3} (lanes={lanes} / lanes=1)", all / one);
    Ok(())
}
