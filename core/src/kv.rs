//! KV reads as both sides see them.

use crate::config::Rollout;

/// What a KV read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvRead {
    Value(String),
    Missing,
    Failed(String),
}

/// Why a served config is not the one just read (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    /// KV held an invalid value; this is the last good one.
    InvalidInKv(String),
    /// KV failed; this is the last good one.
    KvFailed(String),
}

/// How many of the canary cohorts (in percent) a config sends to its canary: its weight,
/// 0 without a canary. The order's tie-break for an ambiguous raw value (the module's
/// table): the lower exposure is taken.
pub fn exposure(rollout: &Rollout) -> u8 {
    if rollout.canary.is_some() {
        rollout.weight.percent()
    } else {
        0
    }
}
