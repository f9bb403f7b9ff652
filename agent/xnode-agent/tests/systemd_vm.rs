//! The systemd backend against a real systemd as PID 1: a Debian VM built
//! by tests/vm/systemd-backend (mmdebstrap, QEMU) runs the agent's `unit`
//! commands inside and reports each check on its serial console.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{have, is_root, missing};

const CHECKS: &[&str] = &[
    "status-inactive",
    "start",
    "main-pid",
    "restarted-by-systemd",
    "new-main-pid",
    "restart",
    "stop",
    "failed-start-is-reported",
    "failed-state",
    "unknown-unit",
];

#[test]
fn unit_control_against_real_systemd_in_a_vm() {
    if !is_root() || !have("mmdebstrap") || !have("qemu-system-x86_64") || !have("mke2fs") {
        missing("root, mmdebstrap, qemu-system-x86 and e2fsprogs to boot a systemd VM");
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vm/systemd-backend"
    );
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(script)
        .arg(env!("CARGO_BIN_EXE_xnode-agent"))
        .arg(work.path())
        .output()
        .expect("run tests/vm/systemd-backend");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    println!("{stdout}");
    assert!(out.status.success(), "the VM harness failed:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("XNODE-VMTEST BEGIN systemd")),
        "the guest never ran the checks"
    );
    assert!(
        lines.contains(&"XNODE-VMTEST END"),
        "the guest did not finish the checks"
    );
    let failed: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("XNODE-VMTEST FAIL"))
        .collect();
    assert!(failed.is_empty(), "failed in the VM: {failed:#?}");
    for name in CHECKS {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("XNODE-VMTEST PASS {name} "))),
            "check {name} did not pass"
        );
    }
}
