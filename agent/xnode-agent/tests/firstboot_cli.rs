//! `xnode-agent firstboot check|install` and `service init` picking up the
//! first-boot bootstrap peers, on real files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent, json, run_ok};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const IPFS_PEER: &str =
    "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW9yhjWbyY7SmjHdDJdGFBJ6qfZ7jxvhr2hjb2MBA2jED3";

fn firstboot(dir: &Path, role: &str) -> std::path::PathBuf {
    let f = dir.join(format!("xnode-{role}.json"));
    let doc = serde_json::json!({
        "schema": "xnode.firstboot/v1",
        "role": role,
        "owner_keys": [KEY],
        "bootstrap": { "ipfs": [IPFS_PEER] }
    });
    std::fs::write(&f, doc.to_string()).unwrap();
    f
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn check_names_each_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = firstboot(dir.path(), "validator");
    let out = run_ok(agent().args(["firstboot", "check"]).arg(&good));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "valid (role validator, 1 owner key(s), bootstrap: 0 cometbft, 1 ipfs, 0 mesh peer(s))"
        ),
        "{out:?}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"schema":"xnode.firstboot/v1","role":"full","owner_keys":["zz"],"bootstrap":{"ipfs":["/ip4/1.2.3.4/tcp/1"]}}"#,
    )
    .unwrap();
    let out = agent()
        .args(["firstboot", "check", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    assert_eq!(r["ok"], false);
    let problems: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("owner_keys[0]:"));
    assert!(problems[1].starts_with("bootstrap.ipfs[0]:"));
}

#[test]
fn install_writes_once_and_refuses_a_different_file_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = firstboot(dir.path(), "validator");
    run_ok(
        agent()
            .args(["firstboot", "install", "--state-dir"])
            .arg(&state)
            .arg(&first),
    );
    let installed = state.join("firstboot.json");
    let keys = state.join("authorized_keys");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), format!("{KEY}\n"));
    assert_eq!(mode(&installed), 0o644);
    assert_eq!(mode(&keys), 0o644);
    let before = std::fs::read(&installed).unwrap();

    // The same file again: nothing to do.
    let out = run_ok(
        agent()
            .args(["firstboot", "install", "--state-dir"])
            .arg(&state)
            .arg(&first),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("already installed"));

    // A different one is refused and changes nothing; --force replaces it.
    let second = firstboot(dir.path(), "storage");
    let out = agent()
        .args(["firstboot", "install", "--state-dir"])
        .arg(&state)
        .arg(&second)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --force to replace it"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&installed).unwrap(), before);
    run_ok(
        agent()
            .args(["firstboot", "install", "--force", "--state-dir"])
            .arg(&state)
            .arg(&second),
    );
    assert!(std::fs::read_to_string(&installed)
        .unwrap()
        .contains("\"storage\""));

    // An invalid file writes nothing at all.
    let fresh = dir.path().join("fresh");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"schema":"xnode.firstboot/v1"}"#).unwrap();
    let out = agent()
        .args(["firstboot", "install", "--state-dir"])
        .arg(&fresh)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing field `role`"));
    assert!(!fresh.exists());
}

#[test]
fn service_init_adds_the_first_boot_bootstrap_peers_to_kubo() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("ipfs");
    std::fs::create_dir(&repo).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/kubo/config"
    );
    std::fs::copy(fixture, repo.join("config")).unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({
            "schema": "xnode.manifest/v1",
            "services": [{
                "name": "ipfs", "unit": "ipfs.service", "kind": "kubo",
                "settings": { "repo": repo, "bootstrap": [] }
            }]
        })
        .to_string(),
    )
    .unwrap();
    let node_config = firstboot(dir.path(), "storage");
    let out = run_ok(
        agent()
            .args(["service", "init", "ipfs", "--manifest"])
            .arg(&manifest)
            .arg("--node-config")
            .arg(&node_config),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ipfs: 1 bootstrap peer(s) from"),
        "{out:?}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap();
    assert_eq!(config["Bootstrap"], serde_json::json!([IPFS_PEER]));

    // Without a first-boot file the manifest's (empty) list stands.
    run_ok(
        agent()
            .args(["service", "init", "ipfs", "--manifest"])
            .arg(&manifest)
            .arg("--node-config")
            .arg(dir.path().join("absent.json")),
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap();
    assert_eq!(config["Bootstrap"], serde_json::json!([]));
}

#[test]
fn the_operator_guide_example_is_a_valid_first_boot_file() {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/operator.md"
    ))
    .unwrap();
    let example = guide
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/operator.md has a JSON example");
    assert!(example.contains("xnode.firstboot/v1"), "{example}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("xnode.json");
    std::fs::write(&f, example).unwrap();
    let r = json(&run_ok(
        agent().args(["firstboot", "check", "--json"]).arg(&f),
    ));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["config"]["role"], "validator");
}
