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

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}
