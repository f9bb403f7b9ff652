//! The storage challenge's figures on this machine: the cost of a label
//! hash (against the bound's `FASTEST_HASH_NS`), plotting, the walk's
//! disk read rate and time per step against the bound, and the
//! verifier's time.
//!
//! Usage: disk_bench DIR [BYTES] [THREADS] [WALK_STEPS]
//! Leaves the plot at DIR/plot for a reference tool to read (remove it).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use por::storage::{self, DiskParams, LabelMaker, Plot};
use por::Seed;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: disk_bench DIR [BYTES] [THREADS] [WALK_STEPS]")?,
    );
    let bytes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(4 << 30);
    let threads: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let mut params = DiskParams::for_claim(bytes);
    if let Some(w) = args.next().and_then(|a| a.parse().ok()) {
        params.walk_steps = w;
    }
    let p = params.plot;
    let seed = Seed([0x42; 32]);

    let mut maker = LabelMaker::new(&p);
    let mut out = vec![0u8; p.label_bytes as usize];
    let t = Instant::now();
    let n = 64;
    for i in 0..n {
        maker.make(&seed, i, p.passes, &mut out);
    }
    let label_s = t.elapsed().as_secs_f64() / n as f64;
    let hash_ns = label_s * 1e9 / p.label_hashes() as f64;

    let path = dir.join("plot");
    let t = Instant::now();
    let plot = Plot::create(&path, &seed, &p, threads, &AtomicU64::new(0))?;
    let plot_s = t.elapsed().as_secs_f64();
    let write_s = plot.writing().map_or(f64::NAN, |d| d.as_secs_f64());

    let nonce = Seed([0x17; 32]);
    let t = Instant::now();
    let w = plot.walk(&nonce, params.walk_steps, &AtomicU64::new(0))?;
    let walk_s = t.elapsed().as_secs_f64();
    let proof = plot.open_walked(&params, &nonce, &w.states);
    let t = Instant::now();
    storage::check(&proof, &params, &seed, &nonce)?;
    let check_s = t.elapsed().as_secs_f64();
    let read_s = w.reading.as_secs_f64();
    let steps = params.walk_steps as f64;
    println!(
        "por-disk bytes={bytes} label_bytes={} passes={} label_ms={:.3} hash_ns={hash_ns:.1} fastest_hash_ns={} plot_threads={threads} burst_labels={} write_streams={} write_call_bytes={} plot_s={plot_s:.2} plot_MBps={:.1} write_MBps={:.1} direct={} walk_steps={} walk_s={walk_s:.2} step_us={:.1} bound_step_us={:.1} read_MBps={:.1} read_us={:.1} check_s={:.3} check/walk={:.5}",
        p.label_bytes,
        p.passes,
        label_s * 1e3,
        storage::FASTEST_HASH_NS,
        storage::burst_labels(&p, threads),
        storage::WRITE_STREAMS,
        storage::write_call_labels(storage::burst_labels(&p, threads)) as u64 * p.label_bytes,
        bytes as f64 / plot_s / 1e6,
        bytes as f64 / write_s / 1e6,
        w.direct,
        params.walk_steps,
        walk_s * 1e6 / steps,
        params.walk_bound().as_secs_f64() * 1e6 / steps,
        p.label_bytes as f64 * steps / read_s / 1e6,
        read_s * 1e6 / steps,
        check_s,
        check_s / walk_s
    );
    Ok(())
}
