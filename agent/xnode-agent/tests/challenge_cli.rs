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
        &run(&["--resources", "cpu,fpga"]),
        "\"fpga\" has no challenge in this version",
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

    let check_with = |memory: &str, extra: &[&str]| {
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
            .args(extra)
            .arg(&out)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        assert_eq!(o.status.success(), v["ok"] == true, "{v}");
        v
    };
    let check = |memory: &str| check_with(memory, &[]);
    let v = check("4M");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["memory"]["bytes"], 4 << 20);
    assert!(v.get("cpu").is_none(), "{v}");
    // The sweep read 4 GiB in all: 64 passes of 4 MiB (the most passes).
    assert_eq!(v["memory"]["sweep_passes"], 64, "{v}");
    let rate = v["memory"]["sweep_mib_s"].as_f64().unwrap();
    assert!(rate > 0.0, "{v}");
    assert!(stderr.contains("swept 64 time(s)"), "{stderr}");

    // A bandwidth bound above what was shown fails the proof, with the
    // figure; one below it passes. (10^12 MiB/s is beyond any memory.)
    let v = check_with("4M", &["--min-memory-mib-s", "1e12"]);
    assert_eq!(v["ok"], false, "{v}");
    let why = v["memory"]["error"].as_str().unwrap();
    assert!(
        why.contains("under the bound of 1000000000000 MiB/s"),
        "{why}"
    );
    let v = check_with("4M", &["--min-memory-mib-s", &format!("{}", rate / 2.0)]);
    assert_eq!(v["ok"], true, "{v}");

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

/// A storage claim small enough for a test: 4 MiB in 16 KiB labels.
const DISK_SHAPE: [&str; 8] = [
    "--label-bytes",
    "16K",
    "--passes",
    "2",
    "--disk-walk-steps",
    "1024",
    "--sampling-work",
    "16",
];

fn run_disk(
    plot: &std::path::Path,
    s: &str,
    claim: &str,
    out: &std::path::Path,
) -> std::process::Output {
    agent()
        .args([
            "challenge",
            "run",
            "--seed",
            s,
            "--resources",
            "disk",
            "--cores",
            "2",
        ])
        .args(["--disk", claim])
        .args(DISK_SHAPE)
        .arg("--plot")
        .arg(plot)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn check_disk(file: &std::path::Path, s: &str, extra: &[&str]) -> serde_json::Value {
    let o = agent()
        .args(["challenge", "check", "--json", "--seed", s])
        .args(DISK_SHAPE)
        .args(extra)
        .arg(file)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(o.status.success(), v["ok"] == true, "{v}");
    v
}

#[test]
fn a_plot_is_made_once_walked_by_later_challenges_and_checked_against_its_claim() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("plot");
    let (first, later) = (seed("a1"), seed("b2"));
    // Debug builds hash slowly: the tests set a bound of their own; the
    // protocol's default bound is checked in the library's tests.
    let slack = ["--max-disk-walk-seconds", "600"];

    let out1 = dir.path().join("first.json");
    let o = run_disk(&plot, &first, "4M", &out1);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("disk: 4194304 bytes plotted"), "{stderr}");
    let v = check_disk(&out1, &first, &[&["--disk", "4M"][..], &slack].concat());
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["disk"]["walk_steps"], 1024);
    assert!(v["disk"]["plot_seconds"].is_number(), "{v}");

    // A later challenge walks the same plot from its own seed.
    let out2 = dir.path().join("later.json");
    let o = run_disk(&plot, &later, "4M", &out2);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("walking the plot"), "{stderr}");
    let plot_seed = ["--plot-seed", first.as_str()];
    let v = check_disk(
        &out2,
        &later,
        &[&["--disk", "4M"][..], &slack, &plot_seed].concat(),
    );
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["disk"]["plot_seconds"].is_null(), "{v}");

    // Checked as a plot made from the later seed, or against twice the
    // claim, or against a bound it did not meet: it fails, saying why.
    let v = check_disk(&out2, &later, &[&["--disk", "4M"][..], &slack].concat());
    let why = v["disk"]["error"].as_str().unwrap().to_string();
    assert!(why.contains("a plot made from seed a1a1"), "{v}");
    let v = check_disk(
        &out2,
        &later,
        &[&["--disk", "8M"][..], &slack, &plot_seed].concat(),
    );
    assert!(
        v["disk"]["error"].as_str().unwrap().contains("parameters"),
        "{v}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out2).unwrap()).unwrap();
    if report["disk"]["walk_ms"].as_u64().unwrap() > 0 {
        let v = check_disk(
            &out2,
            &later,
            &[
                "--disk",
                "4M",
                "--max-disk-walk-seconds",
                "0.0001",
                plot_seed[0],
                plot_seed[1],
            ],
        );
        assert!(
            v["disk"]["error"]
                .as_str()
                .unwrap()
                .contains("over the bound"),
            "{v}"
        );
    }

    // A larger claim does not replace the plot; the plot still proves.
    let before = std::fs::read(&plot).unwrap();
    let o = run_disk(&plot, &later, "8M", &dir.path().join("none.json"));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("holds a plot of 4194304 bytes"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(&plot).unwrap(), before);
    assert!(!dir.path().join("none.json").exists());

    let disk_run = |extra: &[&str]| -> Vec<String> {
        ["challenge", "run", "--seed", &first, "--resources", "disk"]
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect()
    };
    refused(&disk_run(&["--disk", "4M"]), "needs --plot PATH");
    refused(&disk_run(&["--plot", "p"]), "needs --disk SIZE");
    refused(
        &disk_run(&["--disk", "4M", "--plot", "p", "--label-bytes", "1000"]),
        "multiple of 4096",
    );
    let o = agent()
        .args(["challenge", "check", "--seed", &later])
        .arg(&out2)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("give --disk SIZE"));
}

#[test]
fn gpu_products_from_the_reference_prover_check_against_the_claimed_cards() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gpu.json");
    let s = seed("c3");
    let o = run_ok(
        agent()
            .args(["challenge", "run", "--seed", &s, "--resources", "gpu"])
            .args(["--gpu-reference", "--gpus", "GPU-a,GPU-b", "--gpu-n", "128"])
            .arg("--out")
            .arg(&out),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("gpu: 2 card(s), 128×128 products") && stderr.contains("cpu-reference"),
        "{stderr}"
    );
    let claimed = ["--gpus", "GPU-a,GPU-b", "--gpu-n", "128"];
    let (ok, v) = check(&out, &s, &claimed);
    assert!(ok, "{v}");
    assert_eq!(v["gpu"]["prover"], "cpu-reference");
    assert_eq!(v["gpu"]["verifier_macs_per_card"], 64 * 128);

    // A card the node does not prove, or one it proves without claiming.
    let (ok, v) = check(&out, &s, &["--gpus", "GPU-a,GPU-c", "--gpu-n", "128"]);
    assert!(!ok);
    assert!(
        v["gpu"]["error"]
            .as_str()
            .unwrap()
            .contains("missing or swapped"),
        "{v}"
    );
    let (ok, v) = check(&out, &s, &["--gpus", "GPU-a", "--gpu-n", "128"]);
    assert!(!ok, "{v}");
    // A larger product than the one made.
    let (ok, v) = check(&out, &s, &["--gpus", "GPU-a,GPU-b", "--gpu-n", "256"]);
    assert!(!ok);
    assert!(
        v["gpu"]["error"].as_str().unwrap().contains("parameters"),
        "{v}"
    );

    // Bad GPU arguments are refused before any work.
    let gpu = |extra: &[&str]| {
        let mut args = vec!["challenge", "run", "--seed", &s, "--resources", "gpu"];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    refused(
        &gpu(&["--gpu-reference", "--gpus", "GPU-a"]),
        "needs --gpu-n N",
    );
    refused(
        &gpu(&["--gpu-reference", "--gpu-n", "128"]),
        "needs --gpus UUID",
    );
    refused(
        &gpu(&["--gpu-reference", "--gpus", "GPU-a", "--gpu-n", "100"]),
        "n must be a multiple of 64",
    );
    refused(
        &gpu(&["--gpu-reference", "--gpus", "GPU-a,GPU-A", "--gpu-n", "128"]),
        "named twice",
    );
    // The size checked is the challenge's, never the proof's own.
    let o = agent()
        .args(["challenge", "check", "--seed", &s, "--gpus", "GPU-a,GPU-b"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("give --gpu-n N"));

    // Through CUDA: where the driver is absent, one line says so.
    let o = agent().args(gpu(&["--gpu-n", "128"])).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    if e.contains("no CUDA here") {
        assert!(!o.status.success());
        assert!(e.contains("libcuda.so") || e.contains("libnvrtc.so"), "{e}");
    } else {
        eprintln!("CUDA is present: `challenge run --resources gpu` said: {e}");
    }
}
