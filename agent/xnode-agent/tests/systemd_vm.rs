//! The systemd backend against a real systemd as PID 1: a Debian VM built
//! by tests/vm/systemd-backend (mmdebstrap, QEMU) runs the agent's `unit`
//! commands inside and reports each check on its serial console.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[test]
fn unit_control_against_real_systemd_in_a_vm() {
    common::vm_scenario(
        "systemd-backend",
        &[
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
        ],
    );
}
