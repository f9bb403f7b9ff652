#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Helpers shared by the agent's integration tests.
#![allow(dead_code)]

use std::process::{Command, Output};

/// The agent binary built for this test run.
pub fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xnode-agent"))
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[allow(unused_imports)]
pub use testkit::{have, missing};

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The credential exchange through the CLI, with its files in `dir`: the
/// verifier's challenge for `envelope`, the node's answer (`node` points
/// the command at its TPM and state), the verifier's acceptance into
/// `registry`. Returns where the (spent) pending record was.
pub fn credential_exchange(
    envelope: &std::path::Path,
    dir: &std::path::Path,
    registry: &std::path::Path,
    node: impl Fn(&mut Command),
) -> std::path::PathBuf {
    let (challenge, pending, response) = (
        dir.join("challenge.json"),
        dir.join("v/pending.json"),
        dir.join("response.json"),
    );
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    run_ok(agent().args([
        "credential".into(),
        "challenge".into(),
        s(envelope),
        "--out".into(),
        s(&challenge),
        "--pending".into(),
        s(&pending),
    ]));
    let mut c = agent();
    node(&mut c);
    run_ok(c.args([
        "credential".into(),
        "activate".into(),
        s(&challenge),
        "--out".into(),
        s(&response),
    ]));
    run_ok(agent().args([
        "credential".into(),
        "accept".into(),
        s(&pending),
        s(&response),
        "--registry".into(),
        s(registry),
    ]));
    pending
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Run a tests/vm scenario script with the agent binary; returns its
/// XNODE-VMTEST lines after checking the run began, ended, had no FAIL
/// line, and passed every check in `checks`. `None` when the VM parts are
/// missing (skipped, said loudly).
pub fn vm_scenario(script: &str, checks: &[&str]) -> Option<Vec<String>> {
    if !is_root() || !have("mmdebstrap") || !have("qemu-system-x86_64") || !have("mke2fs") {
        missing("root, mmdebstrap, qemu-system-x86 and e2fsprogs to boot a systemd VM");
        return None;
    }
    let path = format!("{}/../../tests/vm/{script}", env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(&path)
        .arg(env!("CARGO_BIN_EXE_xnode-agent"))
        .arg(work.path())
        .output()
        .unwrap_or_else(|e| panic!("run {path}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    print_vm_output(script, &lines, &stderr);
    assert!(
        out.status.success(),
        "the VM harness failed:\n{}",
        tail(&stderr.lines().collect::<Vec<_>>(), 40).join("\n")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("XNODE-VMTEST BEGIN systemd")),
        "the guest never ran the checks"
    );
    assert!(
        lines.iter().any(|l| l == "XNODE-VMTEST END"),
        "the guest did not finish the checks"
    );
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("XNODE-VMTEST FAIL"))
        .collect();
    assert!(failed.is_empty(), "failed in the VM: {failed:#?}");
    for name in checks {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("XNODE-VMTEST PASS {name} "))),
            "check {name} did not pass"
        );
    }
    Some(lines)
}

/// A VM run prints hundreds of lines (boot, the agent's journal); a log
/// excerpt must still show what failed. So the whole output goes to a file
/// and what is printed is short: the failures first, every check's line,
/// the journal's tail, the harness's tail.
fn print_vm_output(script: &str, lines: &[String], stderr: &str) {
    let log = format!("{}/vm-{script}.log", env!("CARGO_TARGET_TMPDIR"));
    let saved = std::fs::write(
        &log,
        format!("{}\n--- stderr ---\n{stderr}", lines.join("\n")),
    );
    let (journal, checks): (Vec<&String>, Vec<&String>) = lines
        .iter()
        .filter(|l| l.starts_with("XNODE-VMTEST"))
        .partition(|l| l.starts_with("XNODE-VMTEST JOURNAL"));
    for l in checks.iter().filter(|l| l.starts_with("XNODE-VMTEST FAIL")) {
        println!("{l}");
    }
    for l in &checks {
        println!("{l}");
    }
    if !journal.is_empty() {
        println!("the agent's journal in the guest, last lines:");
        for l in tail(&journal, 40) {
            println!("{l}");
        }
    }
    println!("the harness, last lines:");
    for l in tail(&stderr.lines().collect::<Vec<_>>(), 30) {
        println!("{l}");
    }
    match saved {
        Ok(()) => println!("whole output: {log}"),
        Err(e) => println!("whole output not saved to {log}: {e}"),
    }
}

fn tail<T: Copy>(items: &[T], n: usize) -> Vec<T> {
    items[items.len().saturating_sub(n)..].to_vec()
}

/// A network namespace made by a test, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    /// `ip netns add NAME`; None when this process may not.
    pub fn add(name: String) -> Option<Netns> {
        Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success())
            .then_some(Netns(name))
    }

    pub fn ip(&self, args: &str) {
        let mut cmd = Command::new("ip");
        cmd.arg("-n").arg(&self.0).args(args.split_whitespace());
        run_ok(&mut cmd);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
