//! `xnode-agent challenge run|check` end to end: an honest run checks out;
//! a report for another seed, another claim, or edited by hand does not;
//! malformed seeds and unknown resources are refused before any work.

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

#[test]
fn malformed_seeds_and_unknown_resources_are_refused_before_any_work() {
    let o = agent()
        .args(["challenge", "run", "--seed", "abc"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("expected 64 hex digits"), "{e}");

    let o = agent()
        .args(["challenge", "run", "--seed", &seed("zz")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("not hex"));

    let o = agent()
        .args([
            "challenge",
            "run",
            "--seed",
            &seed("00"),
            "--resources",
            "cpu,mem",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("\"mem\" has no challenge in this version"),
        "{e}"
    );

    let o = agent()
        .args(["challenge", "run", "--seed", &seed("00"), "--steps", "1000"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("multiple of segment"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let o = agent()
        .args(["challenge", "check", "--seed", &seed("00")])
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("not a challenge report"), "{e}");
}
