//! The TPM section against a real software TPM (swtpm), checked against
//! what tpm2-tools reads from the same TPM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{agent, have, json, missing, run_ok};
use testkit::Swtpm;

/// `raw:` value of one property in `tpm2_getcap properties-fixed` output.
fn getcap_raw(text: &str, prop: &str) -> u32 {
    let mut lines = text.lines().skip_while(|l| l.trim_end_matches(':') != prop);
    lines.next();
    let raw = lines
        .next()
        .and_then(|l| l.trim().strip_prefix("raw: "))
        .unwrap_or_else(|| panic!("{prop} not in getcap output"));
    u32::from_str_radix(raw.trim_start_matches("0x"), 16).expect("hex")
}

fn fourcc(v: u32) -> String {
    v.to_be_bytes()
        .iter()
        .filter(|b| b.is_ascii_graphic())
        .map(|b| *b as char)
        .collect()
}

#[test]
fn tpm_identity_matches_tpm2_tools_on_the_same_swtpm() {
    if !have("swtpm") || !have("tpm2_getcap") {
        missing("swtpm and tpm2-tools (Debian: swtpm tpm2-tools)");
        return;
    }
    let tpm = Swtpm::blank();
    let reference =
        run_ok(Command::new("tpm2_getcap").args(["-T", &tpm.tcti(), "properties-fixed"]));
    let reference = String::from_utf8_lossy(&reference.stdout).into_owned();

    let out = run_ok(agent().args(["probe", "--json", "--only", "tpm", "--tcti", &tpm.tcti()]));
    let t = &json(&out)["tpm"]["ok"];
    assert_eq!(t["present"], true);
    assert_eq!(t["version"], "2.0");
    assert_eq!(t["source"], tpm.tcti());
    assert_eq!(
        t["manufacturer"],
        fourcc(getcap_raw(&reference, "TPM2_PT_MANUFACTURER"))
    );
    let vendor = [1, 2, 3, 4]
        .map(|i| {
            fourcc(getcap_raw(
                &reference,
                &format!("TPM2_PT_VENDOR_STRING_{i}"),
            ))
        })
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(t["vendor_string"], vendor);
    let (fw1, fw2) = (
        getcap_raw(&reference, "TPM2_PT_FIRMWARE_VERSION_1"),
        getcap_raw(&reference, "TPM2_PT_FIRMWARE_VERSION_2"),
    );
    assert_eq!(
        t["firmware_version"],
        format!(
            "{}.{}.{}.{}",
            fw1 >> 16,
            fw1 & 0xFFFF,
            fw2 >> 16,
            fw2 & 0xFFFF
        )
    );
    let rev = getcap_raw(&reference, "TPM2_PT_REVISION");
    assert_eq!(
        t["spec_revision"],
        format!("{}.{:02}", rev / 100, rev % 100)
    );
    assert_eq!(
        t["software"], true,
        "swtpm must be reported as a software TPM"
    );
    assert_eq!(t["unreachable"], serde_json::Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SOFTWARE TPM"),
        "software TPM not flagged on stderr: {stderr}"
    );
}

#[test]
fn a_tpm_that_goes_away_is_reported_in_the_section() {
    if !have("swtpm") {
        missing("swtpm (Debian: swtpm)");
        return;
    }
    let tpm = Swtpm::blank();
    let tcti = tpm.tcti();
    drop(tpm);
    let out = run_ok(agent().args(["probe", "--json", "--only", "tpm", "--tcti", &tcti]));
    let t = &json(&out)["tpm"]["ok"];
    assert!(
        t["unreachable"].as_str().expect("reason").contains(&tcti),
        "{t:#}"
    );
}
