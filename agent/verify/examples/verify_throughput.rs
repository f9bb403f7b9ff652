//! Verification throughput on one core: the committed swtpm envelope,
//! verified in full (every check) N times on this thread.
//!   cargo run --release -p xnode-verify --example verify_throughput -- [N]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let env = common::envelope();
    let policy = common::policy();
    assert!(
        xnode_verify::verify(&env, &policy).ok,
        "the fixture must verify"
    );
    // Warm: the node's EK chain was verified before (the common case: a
    // verifier sees each EK in every attestation of its node).
    let start = Instant::now();
    let mut ok = 0u32;
    for _ in 0..n {
        ok += u32::from(xnode_verify::verify(std::hint::black_box(&env), &policy).ok);
    }
    let warm = start.elapsed().as_secs_f64();
    assert_eq!(ok, n);
    // Cold: every envelope from an EK not seen before (chain checked each time).
    let start = Instant::now();
    for _ in 0..n {
        let fresh = policy.clone();
        ok -= u32::from(xnode_verify::verify(std::hint::black_box(&env), &fresh).ok);
    }
    let cold = start.elapsed().as_secs_f64();
    assert_eq!(ok, 0);
    let rate = |secs: f64| f64::from(n) / secs;
    println!(
        "envelope: {} bytes, verified {n} times per case on one core",
        env.len()
    );
    println!(
        "warm (EK chain cached): {:>6.0} envelopes/s, {:>6.1} µs each",
        rate(warm),
        warm * 1e6 / f64::from(n)
    );
    println!(
        "cold (EK chain checked): {:>6.0} envelopes/s, {:>6.1} µs each",
        rate(cold),
        cold * 1e6 / f64::from(n)
    );
}
