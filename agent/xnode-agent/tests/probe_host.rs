//! The whole probe against this machine, its JSON validated against the
//! published schema, and the command line's behaviour on bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent, json, run_ok};

const SCHEMA_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/inventory.schema.json"
);

fn published_schema() -> serde_json::Value {
    let text = std::fs::read_to_string(SCHEMA_PATH).expect("docs/inventory.schema.json");
    serde_json::from_str(&text).expect("schema is JSON")
}

#[test]
fn published_schema_matches_the_code() {
    let generated = json(&run_ok(agent().args(["schema", "inventory"])));
    assert!(
        generated == published_schema(),
        "docs/inventory.schema.json is stale: regenerate it with `xnode-agent schema inventory > docs/inventory.schema.json`"
    );
}

#[test]
fn whole_probe_of_this_machine_validates_against_the_schema() {
    let out = run_ok(agent().args(["probe", "--json"]));
    let doc = json(&out);
    let validator = jsonschema::validator_for(&published_schema()).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "inventory does not match its schema:\n{}",
        errors.join("\n")
    );

    // The schema has teeth: a wrong type or an unknown field is rejected.
    let mut bad = doc.clone();
    bad["cpu"]["ok"]["threads"] = serde_json::json!("many");
    assert!(!validator.is_valid(&bad));
    let mut extra = doc.clone();
    extra["memory"]["ok"]["made_up"] = serde_json::json!(1);
    assert!(!validator.is_valid(&extra));

    // Every section is present; the ones this machine always has are readable.
    for s in [
        "cpu", "memory", "storage", "network", "gpus", "tpm", "platform", "system",
    ] {
        assert!(doc.get(s).is_some(), "section {s} missing");
    }
    let cpu = &doc["cpu"]["ok"];
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    assert!(cpu["threads"].as_u64().expect("threads") >= threads);
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let total_kb: u64 = meminfo
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("MemTotal");
    assert_eq!(
        doc["memory"]["ok"]["total_bytes"].as_u64(),
        Some(total_kb * 1024)
    );
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot_id");
    assert_eq!(
        doc["system"]["ok"]["boot_id"].as_str(),
        Some(boot_id.trim())
    );
}

#[test]
fn no_gpu_path_is_an_empty_list_with_a_reason() {
    let out = run_ok(
        agent()
            .args(["probe", "--json", "--only", "gpus"])
            .env("XNODE_NVML_LIB", "/nonexistent/libnvidia-ml.so.1"),
    );
    let g = &json(&out)["gpus"]["ok"];
    assert_eq!(g["devices"], serde_json::json!([]));
    assert!(g["unavailable"]
        .as_str()
        .expect("reason")
        .contains("/nonexistent/libnvidia-ml.so.1"));
}

#[test]
fn human_summary_names_every_section() {
    let out = run_ok(agent().args(["probe", "--tcti", "none"]));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for heading in [
        "CPU", "Memory", "Storage", "Network", "GPUs", "TPM", "Platform", "System",
    ] {
        assert!(
            text.lines().any(|l| l == heading),
            "no {heading} heading in:\n{text}"
        );
    }
}

#[test]
fn unknown_section_is_a_usage_error() {
    let out = agent()
        .args(["probe", "--only", "cpu,floppy"])
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown section 'floppy'") && err.contains("expected one of"),
        "{err}"
    );
}

#[test]
fn bad_tcti_is_a_usage_error() {
    let out = agent()
        .args(["probe", "--tcti", "tabrmd:bus=x"])
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown TCTI"));
}

#[test]
fn nothing_readable_exits_non_zero_with_every_reason() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = agent()
        .args([
            "probe",
            "--json",
            "--tcti",
            "none",
            "--only",
            "cpu,memory,storage,system",
            "--root",
        ])
        .arg(empty.path())
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no section of the inventory could be read")
    );
    let doc = json(&out);
    for s in ["cpu", "memory", "storage", "system"] {
        assert!(
            doc[s]["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{s}: {doc:#}"
        );
    }
}

#[test]
fn one_failed_section_leaves_the_others() {
    let fx = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(fx.path().join("proc/sys/kernel")).expect("mkdir");
    std::fs::write(fx.path().join("proc/meminfo"), "MemTotal: 1024 kB\n").expect("write");
    let out = run_ok(
        agent()
            .args(["probe", "--json", "--only", "cpu,memory", "--root"])
            .arg(fx.path()),
    );
    let doc = json(&out);
    assert!(doc["cpu"]["error"]
        .as_str()
        .expect("cpu error")
        .contains("cpuinfo"));
    assert_eq!(doc["memory"]["ok"]["total_bytes"], 1024 * 1024);
}
