//! The agent in a QEMU VM of a known shape (tests/vm/attest-shape): what it
//! probes must be exactly the machine QEMU was told to build, and its
//! attestation, made against the VM's vTPM (an swtpm this test
//! manufactured with EK certificates from its own CA), must verify on the
//! host with that CA and the test's nonce, and fail with another nonce or
//! another CA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent, have, is_root, json, missing};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `xnode-agent verify ENVELOPE ARGS… --json`: (exit code, result).
fn verify(envelope: &Path, args: &[&str]) -> (i32, Value) {
    let out = agent()
        .arg("verify")
        .arg(envelope)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    (out.status.code().unwrap(), json(&out))
}

/// The names of the checks that did not pass.
fn failed_checks(result: &Value) -> Vec<String> {
    result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn ok<'a>(inventory: &'a Value, section: &str) -> &'a Value {
    let s = &inventory[section]["ok"];
    assert!(
        s.is_object(),
        "the {section} section failed: {}",
        inventory[section]
    );
    s
}

#[test]
fn the_agent_in_a_vm_reports_the_shape_qemu_built_and_its_attestation_verifies() {
    let needs = [
        "mmdebstrap",
        "qemu-system-x86_64",
        "mke2fs",
        "swtpm",
        "swtpm_setup",
    ];
    if !is_root() || needs.iter().any(|p| !have(p)) {
        missing(
            "root, mmdebstrap, qemu-system-x86, e2fsprogs, swtpm and swtpm-tools for the VM attestation harness",
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // The vTPM: manufactured like a vendor would, then served to QEMU.
    let ca = testkit::manufacture(&w.join("tpm"));
    let socket = w.join("swtpm.sock");
    let mut swtpm = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", w.join("tpm/state").display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", socket.display()))
        .arg("--log")
        .arg(format!("file={}", w.join("swtpm.log").display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("start swtpm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "swtpm made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }

    let nonce = hex_nonce();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vm/attest-shape");
    let vm = w.join("vm");
    let out = Command::new(script)
        .arg(env!("CARGO_BIN_EXE_xnode-agent"))
        .arg(&vm)
        .arg(&socket)
        .arg(&nonce)
        .output()
        .expect("run the harness");
    let _ = swtpm.kill();
    let _ = swtpm.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    println!("{stdout}");
    assert!(out.status.success(), "the VM harness failed:\n{stderr}");
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("XNODE-VMTEST FAIL"))
        .collect();
    assert!(failed.is_empty(), "failed in the VM: {failed:#?}");
    for step in ["probe", "attest", "activate"] {
        assert!(
            stdout.contains(&format!("XNODE-VMTEST PASS {step}")),
            "the guest did not {step}:\n{stdout}"
        );
    }

    let shape = read_json(&vm.join("shape.json"));
    let inventory = read_json(&vm.join("share/inventory.json"));
    let envelope = vm.join("share/envelope.json");
    let registry = vm.join("registry.json");
    // `verify` with an EK CA, the activation registry and a nonce.
    let check = |ca: &Path, nonce: &str| {
        verify(
            &envelope,
            &[
                "--ek-ca",
                ca.to_str().unwrap(),
                "--activations",
                registry.to_str().unwrap(),
                "--nonce",
                nonce,
            ],
        )
    };

    // The envelope verifies with the CA and the nonce, every check.
    let (code, result) = check(&ca, &nonce);
    assert_eq!(
        code,
        0,
        "verification failed: {:?}\n{result}",
        failed_checks(&result)
    );
    assert_eq!(result["ok"], true);
    assert_eq!(
        result["software_tpm"], true,
        "swtpm must be flagged as software"
    );

    // Replayed against another verifier's nonce: rejected for freshness.
    let (code, result) = check(&ca, &hex_nonce());
    assert_eq!(code, 1);
    assert_eq!(failed_checks(&result), ["freshness"], "{result}");

    // Verified against a CA that did not make this TPM: the EK chain fails.
    let other = tempfile::tempdir().unwrap();
    let (code, result) = check(&testkit::manufacture(other.path()), &nonce);
    assert_eq!(code, 1);
    assert!(
        failed_checks(&result).contains(&"ek_certificate".to_string()),
        "{result}"
    );

    assert_inventory_matches_shape(&inventory, &shape);

    let timing = read_json(&vm.join("timing.json"));
    let accel = if stderr.contains("booting under kvm") {
        "KVM"
    } else {
        "TCG"
    };
    let line = format!(
        "boot-to-attested under {accel}: booted (multi-user, before the agent) {} ms, attested {} ms after QEMU started",
        timing["up_ms"], timing["attested_ms"]
    );
    println!("{line}");
    // scripts/test prints it after the run (cargo test hides a passing
    // test's output).
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-to-attested.txt");
    std::fs::write(report, format!("{line}\n")).unwrap();
}

fn assert_inventory_matches_shape(inv: &Value, shape: &Value) {
    let cpu = ok(inv, "cpu");
    assert_eq!(cpu["sockets"], shape["sockets"], "sockets: {cpu}");
    assert_eq!(
        cpu["physical_cores"].as_u64().unwrap(),
        shape["sockets"].as_u64().unwrap() * shape["cores_per_socket"].as_u64().unwrap(),
        "physical cores"
    );
    assert_eq!(cpu["threads"], shape["cpus"], "logical CPUs");

    // MemTotal is what QEMU gave less what firmware and the kernel keep;
    // the DIMMs SMBIOS lists add up to exactly what QEMU was told.
    let mem = ok(inv, "memory");
    let given = shape["memory_mb"].as_u64().unwrap() * 1024 * 1024;
    let total = mem["total_bytes"].as_u64().unwrap();
    assert!(total <= given, "MemTotal {total} exceeds the {given} given");
    assert!(
        total >= given - 192 * 1024 * 1024,
        "MemTotal {total} is more than 192 MiB short of the {given} given"
    );
    let dimms: u64 = mem["dimms"]["read"]
        .as_array()
        .unwrap_or_else(|| panic!("no DIMMs read: {}", mem["dimms"]))
        .iter()
        .map(|d| d["size_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(dimms, given, "SMBIOS type 17 sizes");

    let disks = ok(inv, "storage")["disks"].as_array().unwrap();
    for want in shape["disks"].as_array().unwrap() {
        let name = want["name"].as_str().unwrap();
        let got = disks
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no disk {name} in {disks:?}"));
        assert_eq!(got["serial"], want["serial"], "{name} serial");
        assert_eq!(got["size_bytes"], want["size_bytes"], "{name} size");
    }

    let links = ok(inv, "network")["links"].as_array().unwrap();
    assert!(
        links.iter().any(|l| l["mac"] == shape["mac"]),
        "no NIC with MAC {} in {links:?}",
        shape["mac"]
    );

    let platform = ok(inv, "platform");
    let dmi = &platform["dmi"];
    let smbios = &shape["smbios"];
    assert_eq!(dmi["sys_vendor"], smbios["manufacturer"], "{dmi}");
    assert_eq!(dmi["product_name"], smbios["product"], "{dmi}");
    assert_eq!(dmi["product_serial"], smbios["serial"], "{dmi}");
    assert_eq!(dmi["product_uuid"], smbios["uuid"], "{dmi}");
    let vm = platform["virtualization"]["vm"]
        .as_str()
        .unwrap_or_default();
    assert!(
        vm == "kvm" || vm == "qemu",
        "virtualization: {}",
        platform["virtualization"]
    );

    let tpm = ok(inv, "tpm");
    assert_eq!(tpm["present"], true, "{tpm}");
    assert_eq!(tpm["version"], "2.0", "{tpm}");
    assert_eq!(tpm["software"], true, "swtpm is a software TPM: {tpm}");
}

fn hex_nonce() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}
