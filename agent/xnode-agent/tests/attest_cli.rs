//! The attestation commands end to end, as an operator and a verifier run
//! them: attest on a manufactured swtpm, the credential exchange through
//! files, and `verify` with its exit codes and output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{agent, json, run_ok};
use testkit::{missing, Swtpm};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn attest_exchange_verify_through_the_cli() {
    if !Swtpm::available() {
        missing(Swtpm::NEEDS);
        return;
    }
    let tpm = Swtpm::manufactured();
    let d = tpm.path();
    let state = tpm.state_dir("node");
    let env = d.join("envelope.json");
    let node = |cmd: &mut std::process::Command| {
        cmd.env("XNODE_TCTI", tpm.tcti())
            .env("XNODE_STATE_DIR", &state);
    };

    let mut c = agent();
    node(&mut c);
    let id = json(&run_ok(c.args(["identity", "--json"])));
    let peer = id["peer_id"].as_str().unwrap().to_string();
    assert!(peer.starts_with("12D3KooW"));

    let mut c = agent();
    node(&mut c);
    let out = run_ok(c.args([
        "attest",
        "--nonce",
        "00112233445566778899aabbccddeeff",
        "--out",
        p(&env),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SOFTWARE TPM"), "{stderr}");
    assert!(
        stderr.contains(&format!("node {peer} sequence 1")),
        "{stderr}"
    );

    // The verifier's side of the exchange, then the node's.
    let registry = d.join("v/activations.json");
    let pending = common::credential_exchange(&env, d, &registry, |c| node(c));
    assert!(!pending.exists(), "a spent challenge is removed");

    let ca = tpm.ca_bundle.as_ref().unwrap();
    let verify = |nonce: &str, extra: &[&str]| {
        agent()
            .args([
                "verify",
                p(&env),
                "--ek-ca",
                p(ca),
                "--activations",
                p(&registry),
                "--nonce",
                nonce,
                "--max-age",
                "600",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = verify("00112233445566778899aabbccddeeff", &[]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{text}");
    assert!(
        text.contains("VERIFIED") && !text.contains("FAIL"),
        "{text}"
    );

    let v = json(&verify("00112233445566778899aabbccddeeff", &["--json"]));
    assert_eq!(v["ok"], true);
    assert_eq!(v["node_id"], peer.as_str());
    assert_eq!(v["software_tpm"], true);

    // A replay against another nonce is rejected, naming the check.
    let bad = verify("ffeeddccbbaa99887766554433221100", &[]);
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        text.contains("FAIL  freshness") && text.contains("REJECTED: 1 check(s) failed: freshness"),
        "{text}"
    );

    // A truncated envelope is rejected with its reason, not a panic.
    let bytes = std::fs::read(&env).unwrap();
    let cut = d.join("cut.json");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = agent()
        .args(["verify", p(&cut), "--nonce", "00"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  envelope"));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = agent().args(["attest", "--nonce", "zz"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not hex"));
    let out = agent().args(["attest"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a nonce or beacon is required");
    let out = agent()
        .args(["verify", "/nonexistent/envelope.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent/envelope.json"));
}

#[test]
fn no_tpm_device_is_one_line_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent()
        .args([
            "attest",
            "--nonce",
            "01",
            "--tcti",
            "device:/nonexistent/tpmrm0",
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no TPM at device:/nonexistent/tpmrm0") && err.contains("--tcti swtpm"),
        "{err}"
    );
}

#[test]
fn proofs_of_resource_ride_in_the_attestation_and_verify_with_it() {
    if !Swtpm::available() {
        missing(Swtpm::NEEDS);
        return;
    }
    let tpm = Swtpm::manufactured();
    let d = tpm.path();
    let state = tpm.state_dir("node");
    let nonce = "5eed00112233445566778899aabbccdd";
    let node = |args: &[&str]| {
        agent()
            .env("XNODE_TCTI", tpm.tcti())
            .env("XNODE_STATE_DIR", &state)
            .args(args)
            .output()
            .unwrap()
    };
    let (cap, env) = (d.join("capacity.json"), d.join("envelope.json"));
    run_ok(agent().args([
        "challenge",
        "run",
        "--for-attestation",
        nonce,
        "--resources",
        "cpu",
        "--cores",
        "1",
        "--out",
        p(&cap),
    ]));
    let out = node(&[
        "attest",
        "--nonce",
        nonce,
        "--capacity",
        p(&cap),
        "--out",
        p(&env),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let verify = |nonce: &str| {
        json(
            &agent()
                .args(["verify", p(&env), "--nonce", nonce, "--json"])
                .output()
                .unwrap(),
        )
    };
    let check = |v: &serde_json::Value, name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {v}"))
            .clone()
    };
    let v = verify(nonce);
    let c = check(&v, "capacity");
    assert_eq!(c["status"], "pass", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .starts_with("cpu: 1 core(s), 16777216 steps a lane in"),
        "{c}"
    );
    assert_eq!(check(&v, "freshness")["status"], "pass", "{v}");

    // Proofs made for another attestation's nonce are refused before the
    // TPM is used, saying which seed they must answer.
    let out = node(&[
        "attest",
        "--nonce",
        "00ff",
        "--capacity",
        p(&cap),
        "--out",
        p(&d.join("other.json")),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--capacity: the proofs answer seed")
            && stderr.contains("--for-attestation 00ff"),
        "{stderr}"
    );
    assert!(!d.join("other.json").exists());

    // An envelope without proofs says so, and still verifies.
    let plain = node(&["attest", "--nonce", nonce, "--out", p(&env)]);
    assert!(plain.status.success());
    let v = verify(nonce);
    assert_eq!(check(&v, "capacity")["status"], "skip", "{v}");
}
