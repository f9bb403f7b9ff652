//! The TCG PC Client crypto-agile event log (TCG PC Client Platform
//! Firmware Profile, 10.2): parsing and replay into PCR values.
//!
//! The log is little-endian. Its first event is a SHA-1-format
//! TCG_PCR_EVENT carrying the Spec ID event (the digest sizes of every
//! bank); the rest are TCG_PCR_EVENT2 with one digest per bank.

use std::collections::BTreeMap;

use crate::tpm::{hash, TPM_ALG_SHA256};
use crate::wire::Reader;
use crate::VerifyError;

const EV_NO_ACTION: u32 = 0x0000_0003;
const SPEC_ID_SIGNATURE: &[u8] = b"Spec ID Event03\0";
const STARTUP_LOCALITY: &[u8] = b"StartupLocality\0";
const MAX_EVENTS: usize = 100_000;

/// One measured event: the PCR it extended and its digest per bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub pcr: u32,
    pub event_type: u32,
    pub digests: BTreeMap<u16, Vec<u8>>,
    pub data: Vec<u8>,
}

/// Parse a crypto-agile log into its events (the Spec ID header excluded).
pub fn parse(log: &[u8]) -> Result<Vec<Event>, VerifyError> {
    let mut r = Reader::new(log, "event log");
    // TCG_PCR_EVENT header: pcrIndex, eventType, SHA-1 digest, eventSize, event.
    let _pcr = r.u32_le()?;
    let ty = r.u32_le()?;
    r.bytes(20)?;
    let size = r.u32_le()? as usize;
    let spec = r.bytes(size)?;
    if ty != EV_NO_ACTION || !spec.starts_with(SPEC_ID_SIGNATURE) {
        return Err(VerifyError::Malformed(
            "event log: not a crypto-agile log (no Spec ID Event03 header)".into(),
        ));
    }
    let mut s = Reader::new(spec, "Spec ID event");
    s.bytes(SPEC_ID_SIGNATURE.len())?;
    s.bytes(4 + 4)?; // platformClass, spec version, errata, uintnSize
    let n_algs = s.u32_le()? as usize;
    if n_algs > 16 {
        return Err(VerifyError::Malformed(format!(
            "event log: {n_algs} banks in Spec ID event"
        )));
    }
    let mut sizes = BTreeMap::new();
    for _ in 0..n_algs {
        let alg = s.u16_le()?;
        let size = s.u16_le()? as usize;
        sizes.insert(alg, size);
    }

    let mut events = Vec::new();
    while !r.is_empty() {
        if events.len() >= MAX_EVENTS {
            return Err(VerifyError::Malformed(format!(
                "event log: more than {MAX_EVENTS} events"
            )));
        }
        let pcr = r.u32_le()?;
        let event_type = r.u32_le()?;
        let count = r.u32_le()? as usize;
        if count > 16 {
            return Err(VerifyError::Malformed(format!(
                "event log: event with {count} digests"
            )));
        }
        let mut digests = BTreeMap::new();
        for _ in 0..count {
            let alg = r.u16_le()?;
            let size = *sizes.get(&alg).ok_or_else(|| {
                VerifyError::Malformed(format!("event log: digest of undeclared bank 0x{alg:04x}"))
            })?;
            digests.insert(alg, r.bytes(size)?.to_vec());
        }
        let size = r.u32_le()? as usize;
        let data = r.bytes(size)?.to_vec();
        events.push(Event {
            pcr,
            event_type,
            digests,
            data,
        });
    }
    Ok(events)
}

/// Replay the events of one bank: the PCR values the log implies.
pub fn replay(events: &[Event], bank: u16) -> Result<BTreeMap<u32, Vec<u8>>, VerifyError> {
    let size = hash(bank, b"")?.len();
    let mut pcrs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for e in events {
        if e.event_type == EV_NO_ACTION {
            // The StartupLocality event sets PCR 0's initial value.
            if e.pcr == 0 && e.data.starts_with(STARTUP_LOCALITY) {
                let locality = *e.data.get(STARTUP_LOCALITY.len()).unwrap_or(&0);
                let mut init = vec![0u8; size];
                if let Some(last) = init.last_mut() {
                    *last = locality;
                }
                pcrs.insert(0, init);
            }
            continue;
        }
        let Some(d) = e.digests.get(&bank) else {
            continue;
        };
        let cur = pcrs.entry(e.pcr).or_insert_with(|| vec![0u8; size]);
        let mut buf = cur.clone();
        buf.extend_from_slice(d);
        *cur = hash(bank, &buf)?;
    }
    Ok(pcrs)
}

/// Build a crypto-agile log with SHA-256 digests (tests and tooling).
pub fn build_sha256_log(events: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
    let mut spec = SPEC_ID_SIGNATURE.to_vec();
    spec.extend(0u32.to_le_bytes()); // platform class
    spec.extend([0, 2, 0, 2]); // spec version 2.0, errata 0, uintnSize 2 (64-bit)
    spec.extend(1u32.to_le_bytes());
    spec.extend(TPM_ALG_SHA256.to_le_bytes());
    spec.extend(32u16.to_le_bytes());
    spec.push(0); // vendor info size
    let mut log = Vec::new();
    log.extend(0u32.to_le_bytes());
    log.extend(EV_NO_ACTION.to_le_bytes());
    log.extend([0u8; 20]);
    log.extend((spec.len() as u32).to_le_bytes());
    log.extend(spec);
    for (pcr, ty, data) in events {
        log.extend(pcr.to_le_bytes());
        log.extend(ty.to_le_bytes());
        log.extend(1u32.to_le_bytes());
        log.extend(TPM_ALG_SHA256.to_le_bytes());
        log.extend(hash(TPM_ALG_SHA256, data).unwrap_or_default());
        log.extend((data.len() as u32).to_le_bytes());
        log.extend(data);
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_parse_replay() {
        let log = build_sha256_log(&[
            (0, 8, b"firmware".to_vec()),
            (14, 13, b"kernel".to_vec()),
            (0, 8, b"more".to_vec()),
        ]);
        let events = parse(&log).unwrap();
        assert_eq!(events.len(), 3);
        let pcrs = replay(&events, TPM_ALG_SHA256).unwrap();
        let ext = |prev: Vec<u8>, data: &[u8]| {
            let mut b = prev;
            b.extend(hash(TPM_ALG_SHA256, data).unwrap());
            hash(TPM_ALG_SHA256, &b).unwrap()
        };
        let p0 = ext(ext(vec![0; 32], b"firmware"), b"more");
        assert_eq!(pcrs[&0], p0);
        assert_eq!(pcrs[&14], ext(vec![0; 32], b"kernel"));
    }

    #[test]
    fn truncations_are_errors() {
        let log = build_sha256_log(&[(0, 8, b"x".to_vec())]);
        for cut in 1..log.len() {
            let _ = parse(&log[..cut]); // must not panic
        }
        assert!(parse(&log[..log.len() - 1]).is_err());
        assert!(parse(b"garbage garbage garbage garbage garbage").is_err());
    }
}
