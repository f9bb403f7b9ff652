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

/// When a real part this test needs is missing: fail under
/// `XNODE_REQUIRE_REAL=1` (set by scripts/test, which installs them),
/// otherwise say loudly that the test was skipped and why.
pub fn missing(what: &str) -> bool {
    if std::env::var_os("XNODE_REQUIRE_REAL").is_some_and(|v| v == "1") {
        panic!("required for this test but unavailable: {what}");
    }
    eprintln!("SKIPPED (not run): {what}");
    true
}

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Two consecutive free TCP ports on loopback (swtpm's server and control).
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair on loopback");
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}
