//! The systemd client against a real dbus-daemon that has no systemd on it:
//! a clear error, quickly, instead of a hang.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent, have, missing};

#[test]
fn a_bus_without_systemd_is_a_clear_error() {
    if !have("dbus-daemon") {
        missing("dbus-daemon (Debian: dbus)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus");
    // A bus of our own: no service activation, so nothing can stand in for systemd.
    let config = dir.path().join("bus.conf");
    std::fs::write(
        &config,
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
             <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
            socket.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new("dbus-daemon")
        .args(["--nofork", "--nopidfile", "--print-address"])
        .arg(format!("--config-file={}", config.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut address = String::new();
    BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let address = address.trim().to_string();
    assert!(address.starts_with("unix:"), "{address}");

    let start = Instant::now();
    let out = agent()
        .args(["unit", "status", "cometbft.service", "--bus", &address])
        .output()
        .unwrap();
    let took = start.elapsed();

    // The daemon: the same clear error, exit 1, and no API socket left.
    let api = dir.path().join("agent.sock");
    let run = agent()
        .args(["run", "--bus", &address, "--manifest", GOLDEN, "--socket"])
        .arg(&api)
        .output()
        .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach systemd over D-Bus")
            && err.contains("org.freedesktop.systemd1 is not on this bus"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(6),
        "took {took:?}: the call must be bounded by its timeout"
    );
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("org.freedesktop.systemd1 is not on this bus"),
        "{err}"
    );
    assert!(!api.exists(), "the API socket was left behind");
}

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/manifest.json"
);

#[test]
fn no_bus_at_all_is_a_clear_error() {
    let out = agent()
        .args([
            "unit",
            "status",
            "x.service",
            "--bus",
            "unix:path=/nonexistent/bus",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach systemd over D-Bus (unix:path=/nonexistent/bus)"),
        "{err}"
    );
}
