//! Mutation fuzzing of the verifier and its parsers, seeded from a real
//! swtpm envelope. Asserts no panic on any input, and that no mutation of
//! signed or quoted bytes ever verifies. Bounded by XNODE_FUZZ_ITERS
//! (default 2000) and XNODE_FUZZ_SECS (default 10); `scripts/fuzz-verify`
//! runs it longer in release mode. Not coverage-guided: cargo-fuzz needs a
//! nightly toolchain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use testkit::XorShift;

use serde_json::Value;
use xnode_verify::format::{b64, unb64};
use xnode_verify::{ekcert, eventlog, tpm, verify};

fn mutate(rng: &mut XorShift, data: &mut Vec<u8>) {
    match rng.below(5) {
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] = rng.next_u64() as u8;
        }
        2 => {
            let n = rng.below(data.len() + 1);
            data.truncate(n);
        }
        3 => {
            let i = rng.below(data.len() + 1);
            data.insert(i, rng.next_u64() as u8);
        }
        _ if data.len() > 2 => {
            let i = rng.below(data.len() - 1);
            data.swap(i, i + 1);
        }
        _ => data.push(0),
    }
}

fn budget() -> (u64, Duration) {
    let n = std::env::var("XNODE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let s = std::env::var("XNODE_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    (n, Duration::from_secs(s))
}

fn seed() -> u64 {
    std::env::var("XNODE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

#[test]
fn mutated_evidence_never_panics_and_never_verifies() {
    let (iters, limit) = budget();
    let seed = seed();
    let mut rng = XorShift(seed);
    let good = common::envelope();
    let policy = common::policy();
    let base: Value = serde_json::from_slice(&good).unwrap();
    // Fields whose every bit is covered by a signature, a quote or a digest.
    let signed = [
        "/payload",
        "/signatures/0/sig",
        "/tpm/quote",
        "/tpm/signature",
        "/tpm/ak_public",
    ];
    let start = Instant::now();
    let mut done = 0u64;
    while done < iters && start.elapsed() < limit {
        // Whole envelope bytes.
        let mut raw = good.clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut raw);
        }
        let _ = verify(&raw, &policy);

        // One signed field, decoded, mutated, re-encoded.
        let ptr = signed[rng.below(signed.len())];
        let mut v = base.clone();
        let field = v.pointer_mut(ptr).unwrap();
        let original = unb64("", field.as_str().unwrap()).unwrap();
        let mut bytes = original.clone();
        mutate(&mut rng, &mut bytes);
        if bytes != original {
            *field = Value::String(b64(&bytes));
            let out = verify(&serde_json::to_vec(&v).unwrap(), &policy);
            assert!(!out.ok, "seed {seed}: a mutation of {ptr} verified");
        }

        // A quoted PCR value.
        let mut v = base.clone();
        let idx = ["0", "7", "11", "14"][rng.below(4)];
        let mut pcr = hex::decode(v["tpm"]["pcrs"][idx].as_str().unwrap()).unwrap();
        let before = pcr.clone();
        mutate(&mut rng, &mut pcr);
        if pcr != before {
            v["tpm"]["pcrs"][idx] = Value::String(hex::encode(&pcr));
            assert!(
                !verify(&serde_json::to_vec(&v).unwrap(), &policy).ok,
                "seed {seed}: PCR {idx} mutation verified"
            );
        }
        done += 1;
    }
    eprintln!(
        "fuzz: {done} rounds in {:.1} s (seed {seed})",
        start.elapsed().as_secs_f64()
    );
    assert!(done > 0);
}

#[test]
fn parsers_survive_arbitrary_bytes() {
    let (iters, limit) = budget();
    let seed = seed();
    let mut rng = XorShift(seed);
    let env: xnode_verify::Envelope = serde_json::from_slice(&common::envelope()).unwrap();
    let seeds = [
        unb64("", &env.tpm.quote).unwrap(),
        unb64("", &env.tpm.signature).unwrap(),
        unb64("", &env.tpm.ak_public).unwrap(),
        unb64("", &env.tpm.ek_public).unwrap(),
        unb64("", env.tpm.ek_certificate.as_deref().unwrap()).unwrap(),
        eventlog::build_sha256_log(&[(0, 8, b"a".to_vec()), (14, 13, b"b".to_vec())]),
    ];
    let start = Instant::now();
    let mut done = 0u64;
    while done < iters * 4 && start.elapsed() < limit {
        let mut data = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(8) {
            mutate(&mut rng, &mut data);
        }
        let _ = tpm::parse_quote(&data);
        let _ = tpm::parse_signature(&data);
        let _ = tpm::parse_public(&data);
        let _ = tpm::name(&data);
        let _ = ekcert::parse_der(&data);
        if let Ok(events) = eventlog::parse(&data) {
            let _ = eventlog::replay(&events, tpm::TPM_ALG_SHA256);
        }
        let _ = xnode_verify::credential::make_credential(
            &data,
            b"\x00\x0bname",
            &[1; 32],
            &mut rand_core::OsRng,
        );
        done += 1;
    }
    eprintln!(
        "parsers: {done} inputs in {:.1} s (seed {seed})",
        start.elapsed().as_secs_f64()
    );
}
