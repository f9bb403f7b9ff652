//! Supervision against a real systemd as PID 1: tests/vm/supervision boots
//! a Debian VM where `xnode-agent run` is a Type=notify service with a
//! watchdog, and checks ordering, health-driven restarts, backoff and
//! give-up, reloads, a chaos run, and the API. Its benchmark lines are
//! printed (detection-to-restart latency beside systemd's Restart=, idle
//! RSS and CPU); see docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[test]
fn supervision_against_real_systemd_in_a_vm() {
    let Some(lines) = common::vm_scenario(
        "supervision",
        &[
            "agent-ready",
            "all-healthy",
            "store-before-web",
            "status-screen",
            "metrics",
            "api-inventory-matches-the-vm-shape",
            "api-no-attestation-yet",
            "unhealthy-restarted",
            "restart-was-a-job-not-a-crash",
            "gave-up",
            "gave-up-restarts",
            "gave-up-is-loud",
            "gave-up-metric",
            "healthy-again-supervised",
            "chaos-all-recovered",
            "chaos-all-active",
            "chaos-no-lost-or-doubled-starts",
            "chaos-restarter-seen-right",
            "stopped-by-hand-agent-starts",
            "bad-manifest-rejected",
            "bad-manifest-stops-nothing",
            "no-reload-without-signal",
            "sighup-applied",
            "sighup-clears-rejection",
            "unknown-unit-reported",
            "watchdog-held",
            "sd-status",
            "agent-stop-leaves-services",
        ],
    ) else {
        return;
    };
    let bench: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("XNODE-VMTEST BENCH"))
        .collect();
    // The figures are reported, not asserted: a test machine's speed is
    // not a property of the code.
    assert!(
        bench.iter().any(|l| l.contains("chaos-agent-detect-ms"))
            && bench.iter().any(|l| l.contains("idle-rss-kib")),
        "the benchmark lines are missing: {bench:#?}"
    );
    eprintln!("benchmark (debug build, QEMU TCG guest):");
    for l in bench {
        eprintln!("  {l}");
    }
}
