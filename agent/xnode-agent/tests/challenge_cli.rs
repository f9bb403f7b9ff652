//! `xnode-agent challenge run|check` end to end: an honest run checks out;
//! a report for another seed, another claim, or edited by hand does not;
//! malformed seeds, sizes and unknown resources are refused before any
//! work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent, run_ok};

const STEPS: &str = "65536";

fn seed(byte: &str) -> String {
    byte.repeat(32)
}

fn run(dir: &std::path::Path, s: &str) -> std::path::PathBuf {
    let out = dir.join("report.json");
    let o = run_ok(
        agent()
            .args([
                "challenge",
                "run",
                "--seed",
                s,
                "--cores",
                "2",
                "--steps",
                STEPS,
                "--out",
            ])
            .arg(&out),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("cpu: 2 lane(s) × 65536 steps"), "{stderr}");
    out
}

fn check(file: &std::path::Path, s: &str, extra: &[&str]) -> (bool, serde_json::Value) {
    let o = agent()
        .args([
            "challenge",
            "check",
            "--json",
            "--seed",
            s,
            "--steps",
            STEPS,
        ])
        .args(extra)
        .arg(file)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&o.stderr));
    });
    assert_eq!(o.status.success(), v["ok"] == true, "{v}");
    (o.status.success(), v)
}

#[test]
fn an_honest_run_checks_out_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let s = seed("5e");
    let file = run(dir.path(), &s);

    let (ok, v) = check(&file, &s, &[]);
    assert!(ok, "{v}");
    assert_eq!(v["cpu"]["cores"], 2);
    // The verifier re-computed 64 segments of 2048 steps out of 2 × 65536.
    assert_eq!(v["cpu"]["verifier_steps"], 64 * 2048);
    assert_eq!(v["cpu"]["prover_steps"], 2 * 65536);

    // Another seed: the work proves nothing about it.
    let (ok, v) = check(&file, &seed("77"), &[]);
    assert!(!ok);
    assert!(
        v["cpu"]["error"].as_str().unwrap().contains("answers seed"),
        "{v}"
    );

    // A claim of more cores than were run.
    let (ok, v) = check(&file, &s, &["--cores", "4"]);
    assert!(!ok);
    assert!(
        v["cpu"]["error"].as_str().unwrap().contains("parameters"),
        "{v}"
    );

    // A checkpoint edited by hand.
    let mut report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let end = report["cpu"]["proof"]["openings"][0]["end"]
        .as_str()
        .unwrap();
    let flipped = format!(
        "{}{}",
        if end.starts_with('0') { "1" } else { "0" },
        &end[1..]
    );
    report["cpu"]["proof"]["openings"][0]["end"] = flipped.into();
    let edited = dir.path().join("edited.json");
    std::fs::write(&edited, serde_json::to_vec(&report).unwrap()).unwrap();
    let (ok, v) = check(&edited, &s, &[]);
    assert!(!ok);
    assert!(
        v["cpu"]["error"]
            .as_str()
            .unwrap()
            .contains("not in the commitment"),
        "{v}"
    );

    // Over the time bound the verifier set (the run took some time: the
    // bound is just below it).
    let (_, v) = check(&file, &s, &[]);
    let took = v["cpu"]["elapsed_seconds"].as_f64().unwrap();
    assert!(took > 0.0, "{v}");
    let bound = format!("{}", took / 2.0);
    let (ok, v) = check(&file, &s, &["--max-seconds", &bound]);
    assert!(!ok);
    assert!(
        v["cpu"]["error"]
            .as_str()
            .unwrap()
            .contains("over the bound"),
        "{v}"
    );
}

/// Run the agent with `args`; it must fail, saying `why` on stderr.
fn refused<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S], why: &str) {
    let o = agent().args(args).output().unwrap();
    assert!(!o.status.success(), "{args:?} succeeded");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains(why), "{args:?}: {e}");
}

#[test]
fn malformed_seeds_and_unknown_resources_are_refused_before_any_work() {
    let zero = seed("00");
    let run = |extra: &[&'static str]| -> Vec<String> {
        ["challenge", "run", "--seed", zero.as_str()]
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect()
    };
    refused(
        &["challenge", "run", "--seed", "abc"],
        "expected 64 hex digits",
    );
    refused(&["challenge", "run", "--seed", &seed("zz")], "not hex");
    refused(
        &run(&["--resources", "cpu,gpu"]),
        "\"gpu\" has no challenge in this version",
    );
    refused(&run(&["--resources", "mem"]), "needs --memory SIZE");
    refused(
        &run(&["--resources", "mem", "--memory", "12Q"]),
        "with K, M, G or T",
    );
    refused(&run(&["--steps", "1000"]), "multiple of segment");
    // More than this machine has: refused before the fill, not OOM-killed.
    refused(
        &run(&["--resources", "mem", "--memory", "2T"]),
        "bytes are available now",
    );

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    refused(
        &[
            "challenge",
            "check",
            "--seed",
            &zero,
            junk.to_str().unwrap(),
        ],
        "not a challenge report",
    );
}

#[test]
fn a_memory_proof_checks_out_against_its_claim_and_no_larger_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = seed("3c");
    let out = dir.path().join("mem.json");
    let o = run_ok(
        agent()
            .args([
                "challenge",
                "run",
                "--seed",
                &s,
                "--resources",
                "mem",
                "--memory",
                "4M",
                "--cores",
                "2",
                "--walk-steps",
                "65536",
                "--out",
            ])
            .arg(&out),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("mem: 4194304 bytes filled"), "{stderr}");

    let check = |memory: &str| {
        let o = agent()
            .args([
                "challenge",
                "check",
                "--json",
                "--seed",
                &s,
                "--walk-steps",
                "65536",
            ])
            .args(["--memory", memory])
            .arg(&out)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        assert_eq!(o.status.success(), v["ok"] == true, "{v}");
        v
    };
    let v = check("4M");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["memory"]["bytes"], 4 << 20);
    assert!(v.get("cpu").is_none(), "{v}");

    // The same proof does not show twice the memory.
    let v = check("8M");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["memory"]["error"]
            .as_str()
            .unwrap()
            .contains("parameters"),
        "{v}"
    );

    // A memory proof is only checked against a stated claim.
    let o = agent()
        .args(["challenge", "check", "--seed", &s])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("give --memory SIZE"));
}
