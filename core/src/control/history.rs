//! What happened to a bundle's rollout, newest last: rollbacks, steps, promotions,
//! publishes and operator actions, with who did it and why. Bounded.

use serde::{Deserialize, Serialize};

use crate::config::{Version, Weight};
use crate::health::counts::ChannelCounts;

/// Most entries kept.
pub const MAX_HISTORY: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Increases by one per entry, never reused: the storage key.
    pub seq: u64,
    pub at_ms: f64,
    /// `rollback`, `step_advance`, `rollout_started`, `rollout_done`, `rollout_paused`,
    /// `rollout_resumed`, `rollout_superseded`, `set_weight`, `promote`, `publish`,
    /// `kv_adopted`.
    pub kind: String,
    /// The canary the entry is about.
    pub canary: Option<Version>,
    /// The weight after the change, when it changed one.
    pub weight: Option<Weight>,
    /// `auto` (the health rule), `rollout` (the progressive rollout), `operator` (admin
    /// API) or `kv` (a write to KV by someone else).
    pub by: String,
    pub reason: String,
    /// Recent counts when the entry was made (rollbacks).
    pub counts: Option<ChannelCounts>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub entries: Vec<Entry>,
    pub next_seq: u64,
}

/// The parts of an entry its author fills in.
pub struct NewEntry<'a> {
    pub kind: &'a str,
    pub canary: Option<&'a Version>,
    pub weight: Option<Weight>,
    pub by: &'a str,
    pub reason: String,
    pub counts: Option<ChannelCounts>,
}

impl History {
    pub fn push(&mut self, e: NewEntry<'_>, now_ms: f64) {
        self.entries.push(Entry {
            seq: self.next_seq,
            at_ms: now_ms,
            kind: e.kind.to_owned(),
            canary: e.canary.cloned(),
            weight: e.weight,
            by: e.by.to_owned(),
            reason: e.reason,
            counts: e.counts,
        });
        self.next_seq += 1;
        if self.entries.len() > MAX_HISTORY {
            let excess = self.entries.len() - MAX_HISTORY;
            self.entries.drain(..excess);
        }
    }

    /// Entries of one kind, oldest first.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_numbered() {
        let mut h = History::default();
        for i in 0..(MAX_HISTORY + 10) {
            h.push(
                NewEntry {
                    kind: if i % 2 == 0 { "rollback" } else { "set_weight" },
                    canary: None,
                    weight: None,
                    by: "operator",
                    reason: format!("r{i}"),
                    counts: None,
                },
                i as f64,
            );
        }
        assert_eq!(h.entries.len(), MAX_HISTORY);
        assert_eq!(h.entries[0].reason, "r10");
        assert_eq!(h.entries[0].seq, 10);
        assert_eq!(h.next_seq, (MAX_HISTORY + 10) as u64);
        assert_eq!(h.of_kind("rollback").count(), MAX_HISTORY / 2);
    }
}
