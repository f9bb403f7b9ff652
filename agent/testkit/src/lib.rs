//! Real parts for tests: a swtpm on loopback, optionally manufactured by
//! `swtpm_setup` with an EK, its certificate and a CA made for the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// When a real part a test needs is missing: fail under
/// `XNODE_REQUIRE_REAL=1` (scripts/test sets it after installing them),
/// otherwise say loudly that the test did not run.
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

/// A running swtpm; killed and its state removed on drop.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// PEM bundle of the local CA's root and issuer certificates, when manufactured.
    pub ca_bundle: Option<PathBuf>,
}

impl Swtpm {
    /// The programs `manufactured` needs, for the skip message.
    pub const NEEDS: &'static str = "swtpm and swtpm_setup (Debian: swtpm swtpm-tools)";

    pub fn available() -> bool {
        have("swtpm") && have("swtpm_setup") && have("swtpm_localca")
    }

    /// A blank TPM (no EK provisioned).
    pub fn blank() -> Swtpm {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("state")).expect("mkdir");
        Swtpm::start(dir, None)
    }

    /// A TPM manufactured like a vendor would: RSA and ECC EKs persisted,
    /// EK and platform certificates in NV, signed by a CA made for this test.
    pub fn manufactured() -> Swtpm {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_bundle = manufacture(dir.path());
        Swtpm::start(dir, Some(ca_bundle))
    }

    fn start(dir: tempfile::TempDir, ca_bundle: Option<PathBuf>) -> Swtpm {
        let port = free_port_pair();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.path().join("state").display()))
            .args([
                "--server",
                &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
            ])
            .args([
                "--ctrl",
                &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start swtpm");
        let deadline = Instant::now() + Duration::from_secs(10);
        // swtpm opens its control socket before the TPM socket: wait for
        // both (a probe connection is closed at once, freeing the slot).
        while std::net::TcpStream::connect(("127.0.0.1", port + 1)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        {
            assert!(Instant::now() < deadline, "swtpm did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Swtpm {
            child,
            port,
            dir,
            ca_bundle,
        }
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// A fresh directory for a node's state (keys, AK blobs).
    pub fn state_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Manufacture a TPM state in `dir/state` with `swtpm_setup`: RSA and ECC
/// EKs persisted, EK and platform certificates in NV, signed by a local CA
/// made in `dir/ca`. Returns the PEM bundle (root and issuer) that
/// verifies the EK certificates. The state can back a TCP swtpm or a
/// QEMU vTPM alike.
pub fn manufacture(d: &Path) -> PathBuf {
    let ca = d.join("ca");
    std::fs::create_dir_all(&ca).expect("mkdir");
    std::fs::create_dir_all(d.join("state")).expect("mkdir");
    std::fs::write(
        d.join("localca.conf"),
        format!(
            "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
            ca = ca.display()
        ),
    )
    .expect("write");
    std::fs::write(
        d.join("localca.options"),
        "--platform-manufacturer Xnode\n--platform-version 2.1\n--platform-model QEMU\n",
    )
    .expect("write");
    std::fs::write(
        d.join("swtpm_setup.conf"),
        format!(
            "create_certs_tool = {}\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
            which("swtpm_localca"),
            d.join("localca.conf").display(),
            d.join("localca.options").display()
        ),
    )
    .expect("write");
    let out = Command::new("swtpm_setup")
        .args([
            "--tpm2",
            "--createek",
            "--create-ek-cert",
            "--create-platform-cert",
            "--overwrite",
        ])
        .arg("--tpmstate")
        .arg(d.join("state"))
        .arg("--config")
        .arg(d.join("swtpm_setup.conf"))
        .output()
        .expect("run swtpm_setup");
    assert!(
        out.status.success(),
        "swtpm_setup failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bundle = String::new();
    for f in ["swtpm-localca-rootca-cert.pem", "issuercert.pem"] {
        bundle.push_str(&std::fs::read_to_string(ca.join(f)).expect("CA certificate"));
    }
    let ca_bundle = d.join("ek-ca.pem");
    std::fs::write(&ca_bundle, bundle).expect("write");
    ca_bundle
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .expect("sh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// xorshift64*: a small reproducible generator for fuzz rounds and
/// simulations, seeded by the caller so a run can be replayed.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}
