//! Height-based upgrades (docs/chain.md#upgrades).
//!
//! An upgrade is a name scheduled at a height, in genesis or by the
//! authority's `schedule_upgrade`. At that height, before the block's
//! transactions, a binary that knows the name applies its migration and
//! raises the app version; a binary that does not know it stops without
//! committing, so every validator switches rules at the same block, and
//! an operator restarts with the new release, which resumes from the last
//! commit.

use crate::state::Core;

#[derive(Debug)]
pub struct Upgrade {
    pub name: &'static str,
    /// The app version from this upgrade on (reported in `Info`).
    pub app_version: u64,
    /// The migration: deterministic, from the state alone.
    pub apply: fn(&mut Core),
}

/// The upgrades this release knows, oldest first.
pub static KNOWN: &[Upgrade] = &[Upgrade {
    name: "fee-per-kib",
    app_version: 2,
    apply: fee_per_kib,
}];

/// `fee-per-kib`: transactions also pay per started KiB, so large
/// attestation envelopes (event logs run to tens of KiB) pay for the
/// block space they take.
fn fee_per_kib(core: &mut Core) {
    if core.params.fee_per_kib == 0 {
        core.params.fee_per_kib = 1;
    }
}

pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "upgrade name '{name}' must be 1-64 bytes of [a-z0-9.-]"
        ))
    }
}
