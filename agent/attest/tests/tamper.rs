//! The tamper matrix on real swtpm evidence: change each field of a valid
//! envelope in turn and the verifier rejects it, naming the check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Node;
use serde_json::Value;
use testkit::{missing, Swtpm};
use xnode_verify::format::{b64, unb64};
use xnode_verify::{verify, Policy};

fn failed(envelope: &[u8], policy: &Policy) -> Vec<&'static str> {
    verify(envelope, policy).failed().map(|c| c.name).collect()
}

/// Edit the envelope's JSON and serialize it again.
fn edit(envelope: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(envelope).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

/// Flip one bit of a base64 field's bytes at `at` (from the end when negative).
fn flip(v: &mut Value, ptr: &str, at: isize) {
    let field = v.pointer_mut(ptr).unwrap();
    let mut bytes = unb64("", field.as_str().unwrap()).unwrap();
    let i = if at < 0 {
        (bytes.len() as isize + at) as usize
    } else {
        at as usize
    };
    bytes[i] ^= 0x01;
    *field = Value::String(b64(&bytes));
}

#[test]
fn every_tampered_field_is_rejected_by_its_check() {
    if !Swtpm::available() {
        missing(Swtpm::NEEDS);
        return;
    }
    let node = Node::new();
    let nonce = [0x11u8; 16];
    let good = node.attest(&nonce);
    let policy = node.policy(&good, &nonce);
    assert!(
        failed(&good, &policy).is_empty(),
        "the untouched envelope verifies"
    );

    // Report: one byte of the signed payload (inside the inventory).
    let t = edit(&good, |v| {
        let mut report = unb64("", v["payload"].as_str().unwrap()).unwrap();
        let i = report.windows(6).position(|w| w == b"\"cpu\":").unwrap() + 2;
        report[i] = b'C';
        v["payload"] = Value::String(b64(&report));
    });
    let f = failed(&t, &policy);
    assert!(
        f.contains(&"node_signature") && f.contains(&"binding"),
        "{f:?}"
    );

    // Node signature.
    let t = edit(&good, |v| flip(v, "/signatures/0/sig", 5));
    assert_eq!(failed(&t, &policy), ["node_signature"]);

    // Quote: the TPM's clock field, inside the signed TPMS_ATTEST.
    let t = edit(&good, |v| flip(v, "/tpm/quote", -60));
    assert!(failed(&t, &policy).contains(&"quote_signature"));

    // Quote signature.
    let t = edit(&good, |v| flip(v, "/tpm/signature", -3));
    assert_eq!(failed(&t, &policy), ["quote_signature"]);

    // A PCR value.
    let t = edit(&good, |v| {
        v["tpm"]["pcrs"]["7"] = Value::String("ab".repeat(32));
    });
    assert_eq!(failed(&t, &policy), ["pcr_digest"]);

    // A PCR left out of the list.
    let t = edit(&good, |v| {
        v["tpm"]["pcrs"].as_object_mut().unwrap().remove("14");
    });
    assert_eq!(failed(&t, &policy), ["pcr_digest"]);

    // EK certificate: one bit of its signature.
    let t = edit(&good, |v| flip(v, "/tpm/ek_certificate", -10));
    assert_eq!(failed(&t, &policy), ["ek_certificate"]);

    // EK certificate removed.
    let t = edit(&good, |v| v["tpm"]["ek_certificate"] = Value::Null);
    assert_eq!(failed(&t, &policy), ["ek_certificate"]);

    // Nonce: the verifier expected another one (a replay of an old envelope).
    let other = Policy {
        nonce: Some(vec![0x22; 16]),
        ..policy.clone()
    };
    assert_eq!(failed(&good, &other), ["freshness"]);

    // Sequence: a verifier that has seen sequence 2 rejects sequence 1.
    let seen = Policy {
        min_sequence: Some(2),
        ..policy.clone()
    };
    assert_eq!(failed(&good, &seen), ["sequence"]);
    let t = edit(&good, |v| {
        let report = String::from_utf8(unb64("", v["payload"].as_str().unwrap()).unwrap()).unwrap();
        v["payload"] = Value::String(b64(report
            .replacen("\"sequence\":1,", "\"sequence\":9,", 1)
            .as_bytes()));
    });
    let f = failed(&t, &policy);
    assert!(
        f.contains(&"node_signature") && f.contains(&"binding"),
        "{f:?}"
    );

    // No CA, no registry: the checks that need them fail, and say why.
    let bare = Policy {
        ek_cas: vec![],
        activations: None,
        ..policy.clone()
    };
    let out = verify(&good, &bare);
    let f: Vec<_> = out.failed().map(|c| (c.name, c.detail.clone())).collect();
    assert_eq!(
        f.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        ["ek_certificate", "ak_activation"]
    );
    assert!(f[0].1.contains("--ek-ca") && f[1].1.contains("--activations"));
}

#[test]
fn evidence_from_a_second_tpm_is_rejected() {
    if !Swtpm::available() {
        missing(Swtpm::NEEDS);
        return;
    }
    let a = Node::new();
    let b = Node::new();
    let nonce = [0x33u8; 16];
    let env_a = a.attest(&nonce);
    let env_b = b.attest(&nonce);
    let policy_a = a.policy(&env_a, &nonce);

    // B's TPM quotes A's exact report (same qualifying data), and the quote,
    // signature, PCRs and AK are swapped into A's envelope.
    let va: Value = serde_json::from_slice(&env_a).unwrap();
    let report_a = unb64("", va["payload"].as_str().unwrap()).unwrap();
    let qualifying = xnode_verify::format::binding(&nonce, &report_a);
    let mut tpm_b = attest::tpm::Tpm::open(&b.tcti, &b.state).unwrap();
    let pcrs = attest::attest::DEFAULT_PCRS;
    let (quote, sig) = tpm_b.quote(pcrs, &qualifying).unwrap();
    let values = tpm_b.read_pcrs(pcrs).unwrap();
    let ak_b = tpm_b.ak_public.clone();
    drop(tpm_b);
    let forged = edit(&env_a, |v| {
        v["tpm"]["quote"] = Value::String(b64(&quote));
        v["tpm"]["signature"] = Value::String(b64(&sig));
        v["tpm"]["ak_public"] = Value::String(b64(&ak_b));
        for (i, val) in &values {
            v["tpm"]["pcrs"][i.to_string()] = Value::String(hex::encode(val));
        }
    });
    // The quote is genuine and bound to the report, but B's AK was never
    // activated for A's EK.
    assert_eq!(failed(&forged, &policy_a), ["ak_activation"]);

    // B's whole TPM evidence under A's report: the binding names the mismatch.
    let vb: Value = serde_json::from_slice(&env_b).unwrap();
    let swapped = edit(&env_a, |v| v["tpm"] = vb["tpm"].clone());
    let f = failed(&swapped, &policy_a);
    assert!(
        f.contains(&"binding") && f.contains(&"ek_certificate"),
        "{f:?}"
    );

    // A's AK public key swapped for B's: A's quote does not verify with it.
    let t = edit(&env_a, |v| {
        v["tpm"]["ak_public"] = vb["tpm"]["ak_public"].clone()
    });
    let f = failed(&t, &policy_a);
    assert!(
        f.contains(&"quote_signature") && f.contains(&"ak_activation"),
        "{f:?}"
    );

    // B's EK certificate in A's envelope: it certifies another EK, and its CA is not A's.
    let t = edit(&env_a, |v| {
        v["tpm"]["ek_certificate"] = vb["tpm"]["ek_certificate"].clone()
    });
    assert_eq!(failed(&t, &policy_a), ["ek_certificate"]);

    // B's challenge cannot be answered by A's TPM.
    let ek_b = unb64("", vb["tpm"]["ek_public"].as_str().unwrap()).unwrap();
    let ak_b = unb64("", vb["tpm"]["ak_public"].as_str().unwrap()).unwrap();
    let (challenge_b, _) =
        xnode_verify::credential::issue(&ek_b, &ak_b, common::now(), &mut rand_core::OsRng)
            .unwrap();
    let err = attest::activate(&a.state, &a.tcti, &challenge_b)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not this TPM's EK"), "{err}");
}

#[test]
fn malformed_envelopes_get_one_clear_reason() {
    let policy = Policy::default();
    for (input, expect) in [
        (&b""[..], "not an xnode envelope"),
        (b"{\"version\":\"xnode.envelope/v1\"", "not an xnode envelope"),
        (br#"{"version":"xnode.envelope/v9","payload_type":"x","payload":"","signatures":[],"tpm":{"quote":"","signature":"","pcr_bank":"sha256","pcrs":{},"ak_public":"","ek_public":"","ek_certificate":null,"event_log":null}}"#, "unknown envelope version"),
    ] {
        let out = verify(input, &policy);
        assert!(!out.ok);
        assert_eq!(out.checks.len(), 1);
        assert!(out.checks[0].detail.contains(expect), "{}", out.checks[0].detail);
    }
}
