//! KV as a projection of the control plane's state. The Durable Object holds the
//! authoritative config; KV is where the edge reads it. This module holds the rules that
//! make that projection behave under KV's real limits:
//!
//! - **One write per second per key.** Writes are paced (`next_write_at`); several changes
//!   within a second go out as one write of the latest config.
//! - **Stale reads.** A KV read can return a value up to ~60 s old. Every config the
//!   control plane writes carries a `revision`, and the digests of the values it recently
//!   held are kept (its writes, and what it adopted): a read that returns one of them,
//!   *superseded* within `STALE_HORIZON_MS`, is propagation lag and is ignored, never
//!   adopted. What it adopted counts too: a location's cache may still hold a value the
//!   object read before its own write (seen with a lagging KV: a publish undone by the
//!   config read just before it). The one ambiguity: an operator who writes back, byte for
//!   byte, a config the object held and superseded less than `STALE_HORIZON_MS` ago is
//!   adopted only once the horizon has passed (any other change, or the admin API, at once).
//! - **Operators win.** Anything else in KV that differs from the authoritative config was
//!   written by someone else (`wrangler kv key put`, the CLI without the admin API): it is
//!   adopted, and a running rollout pauses (or ends, if the canary changed).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Shortest gap between two writes of the same key (Workers KV's limit).
pub const MIN_WRITE_GAP_MS: f64 = 1_000.0;
/// How long after a write is superseded a read of it still counts as propagation lag.
/// KV caches reads for up to 60 s at a location; twice that is a safe margin.
pub const STALE_HORIZON_MS: f64 = 120_000.0;
/// Own writes remembered for telling stale reads from operator writes.
pub const MAX_OWN_WRITES: usize = 16;
/// Longest wait between retries of a failed automatic write.
pub const MAX_RETRY_MS: f64 = 30_000.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnWrite {
    pub revision: u64,
    pub digest: String,
    pub written_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Revision of the authoritative config (the last written or adopted one).
    pub revision: u64,
    /// Values recently held (written, or adopted from KV), oldest first.
    pub own_writes: Vec<OwnWrite>,
    pub last_write_ms: Option<f64>,
    /// When a failed automatic write is retried.
    pub retry_at_ms: Option<f64>,
    /// Consecutive failed automatic writes (for the backoff).
    pub failures: u32,
}

/// What a KV read is, relative to what the control plane wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// The latest own write.
    Current,
    /// An older own write, read within the stale horizon: KV has not caught up yet.
    Stale,
    /// Written by someone else (or an own write restored long after it was superseded).
    Foreign,
}

/// A short digest of a KV value, exactly as stored.
pub fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

impl Projection {
    /// The earliest time the next write may go out.
    pub fn next_write_at(&self, now_ms: f64) -> f64 {
        match self.last_write_ms {
            Some(last) => now_ms.max(last + MIN_WRITE_GAP_MS),
            None => now_ms,
        }
    }

    /// Records a successful write of `text` at `revision`.
    pub fn record_write(&mut self, revision: u64, text: &str, now_ms: f64) {
        self.revision = revision;
        self.last_write_ms = Some(now_ms);
        self.retry_at_ms = None;
        self.failures = 0;
        self.own_writes.push(OwnWrite {
            revision,
            digest: digest(text),
            written_ms: now_ms,
        });
        if self.own_writes.len() > MAX_OWN_WRITES {
            let excess = self.own_writes.len() - MAX_OWN_WRITES;
            self.own_writes.drain(..excess);
        }
    }

    /// Records a value adopted from KV (someone else's write): held like an own write, so
    /// that a lagging read of it after a newer write is known as stale. It gets a revision
    /// above every earlier one (the value's own `revision` is whatever its writer copied,
    /// possibly one of ours): the list's entries stay unique and ordered by revision, as
    /// the object's storage keys them, and the next own write goes above it.
    pub fn record_adopted(&mut self, value_revision: Option<u64>, text: &str, now_ms: f64) {
        self.revision = self.revision.max(value_revision.unwrap_or(0)) + 1;
        self.own_writes.push(OwnWrite {
            revision: self.revision,
            digest: digest(text),
            written_ms: now_ms,
        });
        if self.own_writes.len() > MAX_OWN_WRITES {
            let excess = self.own_writes.len() - MAX_OWN_WRITES;
            self.own_writes.drain(..excess);
        }
    }

    /// Records a failed automatic write and schedules its retry: 1 s, 2 s, 4 s ... 30 s.
    pub fn record_failure(&mut self, now_ms: f64, rate_limited: bool) {
        self.failures = self.failures.saturating_add(1);
        let backoff = (1_000.0 * 2f64.powi(self.failures.min(16) as i32 - 1)).min(MAX_RETRY_MS);
        self.retry_at_ms = Some(now_ms + backoff);
        if rate_limited {
            // Someone wrote the key just now: count it as a write for the pacing.
            self.last_write_ms = Some(now_ms);
        }
    }

    /// Where a KV value came from.
    pub fn provenance(&self, text: &str, now_ms: f64) -> Provenance {
        let d = digest(text);
        let Some(i) = self.own_writes.iter().rposition(|w| w.digest == d) else {
            return Provenance::Foreign;
        };
        match self.own_writes.get(i + 1) {
            None => Provenance::Current,
            Some(next) if now_ms - next.written_ms < STALE_HORIZON_MS => Provenance::Stale,
            Some(_) => Provenance::Foreign,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_paced_one_second_apart() {
        let mut p = Projection::default();
        assert_eq!(p.next_write_at(5_000.0), 5_000.0);
        p.record_write(1, "a", 5_000.0);
        for (now, expected) in [(5_000.0, 6_000.0), (5_999.0, 6_000.0), (7_500.0, 7_500.0)] {
            assert_eq!(p.next_write_at(now), expected, "at {now}");
        }
    }

    #[test]
    fn provenance_of_reads() {
        let mut p = Projection::default();
        p.record_write(1, "rev1", 0.0);
        p.record_write(2, "rev2", 10_000.0);
        for (text, now, expected) in [
            ("rev2", 11_000.0, Provenance::Current),
            ("rev1", 11_000.0, Provenance::Stale),
            ("rev1", 10_000.0 + STALE_HORIZON_MS - 1.0, Provenance::Stale),
            ("rev1", 10_000.0 + STALE_HORIZON_MS, Provenance::Foreign),
            ("someone else's", 11_000.0, Provenance::Foreign),
        ] {
            assert_eq!(p.provenance(text, now), expected, "{text} at {now}");
        }
    }

    #[test]
    fn adopted_values_get_unique_revisions_above_every_earlier_one() {
        // The object's storage keys these by revision: an operator's value that copied our
        // latest revision (or carries none) must not collide with it, and must stay in order.
        let mut p = Projection::default();
        p.record_write(1, "rev1", 0.0);
        p.record_write(2, "rev2", 1_000.0);
        p.record_adopted(Some(2), "operator copy of rev2", 2_000.0);
        p.record_adopted(None, "operator value without revision", 3_000.0);
        p.record_write(p.revision + 1, "rev5", 4_000.0);
        let revisions: Vec<u64> = p.own_writes.iter().map(|w| w.revision).collect();
        assert_eq!(revisions, [1, 2, 3, 4, 5]);
        assert_eq!(
            p.provenance("operator copy of rev2", 5_000.0),
            Provenance::Stale
        );
        assert_eq!(p.provenance("rev5", 5_000.0), Provenance::Current);
    }

    #[test]
    fn failures_back_off_and_a_write_clears_them() {
        let mut p = Projection::default();
        let mut waits = vec![];
        for _ in 0..7 {
            p.record_failure(0.0, false);
            waits.push(p.retry_at_ms.unwrap());
        }
        assert_eq!(
            waits,
            vec![1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0, 30_000.0, 30_000.0]
        );
        assert_eq!(p.last_write_ms, None);
        p.record_failure(50.0, true);
        assert_eq!(
            p.last_write_ms,
            Some(50.0),
            "a 429 counts as a recent write"
        );
        p.record_write(3, "x", 100.0);
        assert_eq!((p.failures, p.retry_at_ms, p.revision), (0, None, 3));
        let mut p = Projection::default();
        for i in 0..(MAX_OWN_WRITES as u64 + 5) {
            p.record_write(i, &format!("v{i}"), i as f64);
        }
        assert_eq!(p.own_writes.len(), MAX_OWN_WRITES);
    }
}
