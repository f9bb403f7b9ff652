//! The NixOS modules' renderer, checked against the agent's own parser.
//!
//! `modules/lib/render.nix` is builtins-only: a bare `nix-instantiate`
//! renders tests/nix/render-example.nix, which must reproduce the golden
//! manifest byte for byte (as JSON) and pass `xnode-agent manifest check`.
//! With `NIXPKGS_LIB` pointing at a nixpkgs `lib`, the modules themselves
//! are evaluated with `lib.evalModules` against tests/nix/stubs.nix and
//! compared with tests/fixtures/nix/modules/*.json; set
//! `XNODE_UPDATE_GOLDEN=1` to rewrite those files after a deliberate change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent, have, json, missing, run_ok};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn nix_available() -> bool {
    if have("nix-instantiate") {
        return true;
    }
    missing("nix-instantiate (Debian nix-bin) to evaluate the NixOS modules' renderer");
    false
}

/// `nix-instantiate --eval --strict --json FILE ARGS…` as JSON.
fn nix_eval(file: &str, args: &[&str]) -> Value {
    let out = run_ok(
        Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json"])
            .arg(repo().join(file))
            .args(args),
    );
    serde_json::from_slice(&out.stdout).expect("nix-instantiate printed JSON")
}

fn nix_eval_expr(expr: &str) -> Value {
    let out = run_ok(
        Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json", "-E", expr])
            .current_dir(repo()),
    );
    serde_json::from_slice(&out.stdout).expect("nix-instantiate printed JSON")
}

/// The agent's parser and validator on a rendered manifest.
fn manifest_check(manifest: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("manifest.json");
    std::fs::write(&f, serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
    let out = agent()
        .args(["manifest", "check", "--json"])
        .arg(&f)
        .output()
        .unwrap();
    let r = json(&out);
    assert_eq!(
        r["ok"], true,
        "the agent rejects the rendered manifest: {r}"
    );
    r
}

/// Compare with a golden file, or write it under XNODE_UPDATE_GOLDEN=1.
fn golden(path: &str, actual: &Value) {
    let path = repo().join(path);
    if std::env::var_os("XNODE_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = serde_json::to_string_pretty(actual).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let expected: Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    assert_eq!(
        actual,
        &expected,
        "{} differs from the rendering; rerun with XNODE_UPDATE_GOLDEN=1 if the change is intended",
        path.display()
    );
}

#[test]
fn the_renderer_reproduces_the_golden_manifest_and_the_agent_accepts_it() {
    if !nix_available() {
        return;
    }
    let r = nix_eval("tests/nix/render-example.nix", &[]);
    let golden_manifest: Value = serde_json::from_slice(
        &std::fs::read(repo().join("tests/fixtures/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(r["manifest"], golden_manifest);
    let check = manifest_check(&r["manifest"]);
    assert_eq!(
        check["services"],
        serde_json::json!(["ipfs", "cometbft", "mesh", "metrics-exporter"]),
        "the start order"
    );
    golden("tests/fixtures/nix/render-units.json", &r["units"]);
}

#[test]
fn rendered_units_start_hardened_and_leave_restarts_to_the_agent() {
    if !nix_available() {
        return;
    }
    let units = nix_eval("tests/nix/render-example.nix", &[])["units"].clone();
    let mesh = &units["xnode-mesh"];
    assert_eq!(mesh["after"], serde_json::json!(["cometbft.service"]));
    assert_eq!(
        mesh["wantedBy"],
        serde_json::json!([]),
        "the agent starts units"
    );
    let sc = &mesh["serviceConfig"];
    assert_eq!(sc["Restart"], "no");
    assert_eq!(sc["CapabilityBoundingSet"], "");
    assert_eq!(sc["ProtectSystem"], "strict");
    assert_eq!(sc["DynamicUser"], true);
    // A unit that asks for its own Restart= keeps it (systemd restarts it;
    // the agent only steps in if systemd does not).
    let exporter = &units["node-exporter"]["serviceConfig"];
    assert_eq!(exporter["Restart"], "always");
    assert!(
        exporter.get("ProtectSystem").is_none(),
        "hardening = false: {exporter}"
    );
}

#[test]
fn a_dependency_on_an_undeclared_service_fails_with_its_name() {
    if !nix_available() {
        return;
    }
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "-E"])
        .arg(
            r#"(import ./modules/lib/render.nix).systemdUnits [
                 { name = "a"; unit = "a.service"; kind = "generic"; dependsOn = [ "ghost" ]; } ]"#,
        )
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("service 'a' depends on 'ghost', which is not declared"),
        "{err}"
    );
}

#[test]
fn ports_are_read_from_laddrs_and_multiaddrs_and_conflicts_are_named() {
    if !nix_available() {
        return;
    }
    let parsed = nix_eval_expr(
        r#"map (import ./modules/lib/ports.nix).parse [
             "tcp://0.0.0.0:26656" "/ip4/0.0.0.0/udp/4001/quic-v1" "/ip6/::1/tcp/5001"
             "127.0.0.1:7300" "unix:///run/cometbft.sock" "kvstore" ]"#,
    );
    assert_eq!(
        parsed,
        serde_json::json!([
            {"proto": "tcp", "port": 26656},
            {"proto": "udp", "port": 4001},
            {"proto": "tcp", "port": 5001},
            {"proto": "tcp", "port": 7300},
            null,
            null
        ])
    );
    let conflicts = nix_eval_expr(
        r#"(import ./modules/lib/ports.nix).conflicts [
             { option = "a"; address = "tcp://127.0.0.1:5001"; }
             { option = "b"; address = "/ip4/127.0.0.1/tcp/5001"; }
             { option = "c"; address = "/ip4/0.0.0.0/udp/5001/quic-v1"; }
             { option = "d"; address = "/ip4/0.0.0.0/tcp/0"; }
             { option = "e"; address = "/ip4/0.0.0.0/tcp/0"; } ]"#,
    );
    assert_eq!(
        conflicts,
        serde_json::json!([
            "port tcp/5001 is claimed by a = \"tcp://127.0.0.1:5001\" and by b = \"/ip4/127.0.0.1/tcp/5001\": give each a port of its own"
        ])
    );
}

/// Scenarios whose evaluation must fail, and a phrase of the fix each
/// assertion must give.
const BAD: &[(&str, &str)] = &[
    ("gpu-proof-without-profile", "import the NVIDIA profile"),
    ("port-conflict", "give each a port of its own"),
    ("chain-proxy-mismatch", "leave proxyApp unset"),
    ("validator-without-key", "set validator.keyFile"),
    ("validator-key-in-store", "put the key outside the store"),
    (
        "cometbft-without-agent",
        "set services.xnode.agent.enable = true",
    ),
    (
        "gpu-service-without-profile",
        "import nixosModules.hardware-nvidia",
    ),
    (
        "nvidia-profile-without-nvidia-gpu",
        "remove the NVIDIA profile",
    ),
];

#[test]
fn the_modules_evaluate_to_the_golden_manifest_and_units() {
    if !nix_available() {
        return;
    }
    let Some(lib) = std::env::var_os("NIXPKGS_LIB") else {
        eprintln!(
            "SKIPPED (not run): NIXPKGS_LIB is not set. The NixOS modules need nixpkgs' lib for \
             lib.evalModules, and nixpkgs cannot be downloaded here; point NIXPKGS_LIB at a \
             nixpkgs checkout's lib/ (e.g. nix-community/nixpkgs.lib) to run it"
        );
        return;
    };
    let lib = Path::new(&lib).canonicalize().expect("NIXPKGS_LIB exists");
    let all = nix_eval(
        "tests/nix/eval-modules.nix",
        &["--arg", "nixpkgsLib", lib.to_str().unwrap()],
    );
    let scenarios = all.as_object().unwrap();
    for (name, result) in scenarios {
        golden(&format!("tests/fixtures/nix/modules/{name}.json"), result);
        let failed = result["failedAssertions"].as_array().unwrap();
        match BAD.iter().find(|(n, _)| n == name) {
            Some((_, fix)) => {
                assert!(
                    failed.iter().any(|m| m.as_str().unwrap().contains(fix)),
                    "{name}: expected an assertion saying '{fix}', got {failed:?}"
                );
            }
            None => {
                assert!(failed.is_empty(), "{name}: {failed:?}");
                manifest_check(&result["manifest"]);
            }
        }
    }
    for (name, _) in BAD {
        assert!(scenarios.contains_key(*name), "scenario {name} is missing");
    }

    // Continuous proof of resource: the rendered challenges file is one
    // the agent takes, the daemon is given it, and may write the plot.
    let por = &scenarios["proof-of-resource"];
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("challenges.json");
    std::fs::write(&f, serde_json::to_vec(&por["challenges"]).unwrap()).unwrap();
    let claim = json(&run_ok(
        agent().args(["challenge", "config", "--json"]).arg(&f),
    ));
    assert_eq!(claim["every_seconds"], 43200);
    assert_eq!(claim["cpu"]["lanes"], 8);
    assert_eq!(claim["memory"]["bytes"], 16u64 << 30);
    assert_eq!(claim["disk"]["bytes"], 1u64 << 40);
    let unit = &por["units"]["xnode-agent"]["serviceConfig"];
    assert!(
        unit["ExecStart"]
            .as_str()
            .unwrap()
            .contains("--challenges /nix/store/"),
        "{unit}"
    );
    assert_eq!(unit["ReadWritePaths"], serde_json::json!(["/srv/xnode"]));

    // The GPU challenge: NVRTC beside the driver's libraries, and the
    // unified-memory device CUDA opens.
    let gpu = &scenarios["gpu-proof"]["units"]["xnode-agent"];
    let path = gpu["environment"]["LD_LIBRARY_PATH"].as_str().unwrap();
    assert!(
        path.starts_with("/run/opengl-driver/lib:") && path.contains("cuda_nvrtc"),
        "{path}"
    );
    let devices = gpu["serviceConfig"]["DeviceAllow"].as_array().unwrap();
    assert!(
        devices.iter().any(|d| d == "char-nvidia-uvm rw"),
        "{devices:?}"
    );

    // The chain node: the application before CometBFT, checked on its
    // ABCI port; CometBFT pointed at it; the node's timer and seeder.
    let c = &scenarios["chain-node"];
    let check = manifest_check(&c["manifest"]);
    let order = check["services"].as_array().unwrap();
    let pos = |n: &str| order.iter().position(|s| s == n).unwrap();
    assert!(pos("xnode-chain") < pos("cometbft"), "{order:?}");
    let unit = &c["units"]["xnode-chain"]["serviceConfig"];
    assert!(
        unit["ExecStart"].as_str().unwrap().ends_with(
            "bin/xnode-chain serve --listen 127.0.0.1:26658 --state-dir /var/lib/xnode-chain"
        ),
        "{unit}"
    );
    let seed = c["units"]["xnode-chain-seed"]["serviceConfig"]["ExecStart"]
        .as_str()
        .unwrap();
    assert!(
        seed.contains("chain seed --ipfs-api 127.0.0.1:5001 --rpc http://127.0.0.1:26657"),
        "{seed}"
    );

    let alone = manifest_check(&scenarios["chain-app-alone"]["manifest"]);
    assert_eq!(alone["services"], serde_json::json!(["xnode-chain"]));

    // The validator: every part declared, in dependency order, its
    // listeners on the firewall, and the agent under its watchdog.
    let v = &scenarios["validator"];
    let check = manifest_check(&v["manifest"]);
    assert_eq!(
        check["services"],
        serde_json::json!(["ipfs", "cometbft", "mesh"])
    );
    assert_eq!(v["firewall"]["tcp"], serde_json::json!([4001, 4100, 26656]));
    let agent_unit = &v["units"]["xnode-agent"]["serviceConfig"];
    assert_eq!(agent_unit["Type"], "notify");
    assert_eq!(agent_unit["CapabilityBoundingSet"], "");
    assert!(
        agent_unit["ExecStart"]
            .as_str()
            .unwrap()
            .contains("run --manifest /etc/xnode/manifest.json"),
        "{agent_unit}"
    );
}

#[test]
fn the_flake_wires_every_output_and_finds_every_check() {
    if !nix_available() {
        return;
    }
    let Some(lib) = std::env::var_os("NIXPKGS_LIB") else {
        eprintln!(
            "SKIPPED (not run): NIXPKGS_LIB is not set; the flake's wiring is evaluated with \
             nixpkgs' lib and stand-ins for nixpkgs and disko"
        );
        return;
    };
    let lib = Path::new(&lib).canonicalize().expect("NIXPKGS_LIB exists");
    let r = nix_eval(
        "tests/nix/flake-outputs.nix",
        &["--arg", "nixpkgsLib", lib.to_str().unwrap()],
    );
    golden("tests/fixtures/nix/flake-outputs.json", &r);

    // Every tests/<scenario>.nix is a check on x86_64-linux: found, not listed.
    let checks: Vec<&str> = r["checks"]["x86_64-linux"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for entry in std::fs::read_dir(repo().join("tests")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(scenario) = name.strip_suffix(".nix") {
            let check = format!("vm-{scenario}");
            assert!(
                checks.contains(&check.as_str()),
                "{check} not in {checks:?}"
            );
        }
    }
    // The modules default to the flake's own packages.
    let exec = r["defaultModule"]["cometbftExecStart"].as_str().unwrap();
    assert!(
        exec.contains("-flake-cometbft/bin/cometbft start"),
        "{exec}"
    );
    let exec = r["agentModuleAlone"]["agentExecStart"].as_str().unwrap();
    assert!(
        exec.contains("-flake-xnode-agent/bin/xnode-agent run"),
        "{exec}"
    );
}
