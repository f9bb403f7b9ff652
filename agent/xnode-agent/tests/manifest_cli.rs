//! `xnode-agent manifest check` on the golden manifest and broken copies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent, json, run_ok};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/manifest.json"
);

#[test]
fn golden_manifest_is_valid() {
    let out = run_ok(agent().args(["manifest", "check", GOLDEN]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "valid, 4 service(s); start order: ipfs → cometbft → mesh → metrics-exporter"
        ),
        "{text}"
    );
    let v = json(&run_ok(
        agent().args(["manifest", "check", "--json", GOLDEN]),
    ));
    assert_eq!(v["ok"], true);
}

#[test]
fn broken_manifest_names_each_field_and_exits_1() {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(GOLDEN).unwrap()).unwrap();
    v["services"][0]["depends_on"] = serde_json::json!(["ipfs", "ghost"]);
    v["services"][3]["unit"] = "node-exporter".into();
    v["services"][2]["settings"]["bootstrap"] = serde_json::json!(["/ip4/192.0.2.1/tcp/4100"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.json");
    std::fs::write(&f, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = agent()
        .args(["manifest", "check", "--json"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    let paths: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "services[2].settings.bootstrap[0]",
            "services[3].unit",
            "services[0].depends_on[1]"
        ]
    );
}

#[test]
fn the_daemon_refuses_a_broken_manifest_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.json");
    std::fs::write(
        &f,
        br#"{"schema":"xnode.manifest/v1","services":[{"name":"a","unit":"a","kind":"generic"}]}"#,
    )
    .unwrap();
    let sock = dir.path().join("agent.sock");
    // The bus address is never used: the manifest is checked first.
    let out = agent()
        .args(["run", "--bus", "unix:path=/nonexistent/bus", "--manifest"])
        .arg(&f)
        .arg("--socket")
        .arg(&sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services[0].unit: 'a' is not a systemd service unit name"),
        "{err}"
    );
    assert!(!err.contains("D-Bus"), "{err}");
    assert!(!sock.exists());
}
