//! The tracker as its store keeps it: rows, the journal of what changed since the last
//! save, and the tracker rebuilt from its rows after a restart. Pure: the Durable Object
//! turns these rows into SQL (`src/edge/monitor/storage/tracker.rs`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Refused, Resolution, Tracked, Tracker, Waiting};

/// The ids whose rows changed since the store last took the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The tracker was emptied (a new step): every stored row goes before these are written.
    pub reset: bool,
    pub clients: BTreeSet<u64>,
    pub networks: BTreeSet<u64>,
    /// Waiting signals added, changed or gone (aged out, or taken by their load).
    pub waiting: BTreeSet<u64>,
}

impl Changes {
    pub(super) fn reset() -> Self {
        Changes {
            reset: true,
            ..Changes::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.reset
            && self.clients.is_empty()
            && self.networks.is_empty()
            && self.waiting.is_empty()
    }
}

/// A tracked client's row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientRow {
    pub client: u64,
    pub tracked: Tracked,
}

/// A waiting signal's row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitingRow {
    pub client: u64,
    pub waiting: Waiting,
}

/// What a save writes: the rows that changed, as they are now, and the ids whose waiting
/// row is gone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredChanges {
    pub reset: bool,
    pub clients: Vec<ClientRow>,
    pub networks: Vec<(u64, u32)>,
    pub waiting: Vec<WaitingRow>,
    pub waiting_gone: Vec<u64>,
}

impl StoredChanges {
    pub fn is_empty(&self) -> bool {
        !self.reset
            && self.clients.is_empty()
            && self.networks.is_empty()
            && self.waiting.is_empty()
            && self.waiting_gone.is_empty()
    }
}

/// The step's counters, one row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub boots: [u64; 2],
    pub no_boot: [u64; 2],
    pub left_out: u64,
    pub refused: Refused,
}

impl Resolution {
    /// The state's code in the store.
    pub fn code(self) -> u8 {
        match self {
            Resolution::Pending => 0,
            Resolution::Counted { failed: false } => 1,
            Resolution::Counted { failed: true } => 2,
            Resolution::Silent => 3,
            Resolution::LeftOut => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Resolution::Pending,
            1 => Resolution::Counted { failed: false },
            2 => Resolution::Counted { failed: true },
            3 => Resolution::Silent,
            4 => Resolution::LeftOut,
            _ => return None,
        })
    }
}

impl Tracker {
    /// The step's counters.
    pub fn totals(&self) -> Totals {
        Totals {
            boots: self.boots,
            no_boot: self.no_boot,
            left_out: self.left_out,
            refused: self.refused,
        }
    }

    /// The rows changed since the last call, as they are now; the journal starts afresh.
    pub fn take_changes(&mut self) -> StoredChanges {
        let changes = std::mem::take(&mut self.changes);
        let mut out = StoredChanges {
            reset: changes.reset,
            ..StoredChanges::default()
        };
        out.clients = changes
            .clients
            .iter()
            .filter_map(|id| {
                self.clients.get(id).map(|t| ClientRow {
                    client: *id,
                    tracked: *t,
                })
            })
            .collect();
        out.networks = changes
            .networks
            .iter()
            .filter_map(|n| self.networks.get(n).map(|c| (*n, *c)))
            .collect();
        for id in changes.waiting {
            match self.waiting.get(&id) {
                Some(w) => out.waiting.push(WaitingRow {
                    client: id,
                    waiting: *w,
                }),
                // Gone since: its row goes (unless the step was reset, which drops them all).
                None if !changes.reset => out.waiting_gone.push(id),
                None => {}
            }
        }
        out
    }

    /// The tracker of a step as its rows hold it (after a restart). Its journal is empty:
    /// what it holds is what the store holds.
    pub fn restore(
        clients: impl IntoIterator<Item = ClientRow>,
        networks: impl IntoIterator<Item = (u64, u32)>,
        waiting: impl IntoIterator<Item = WaitingRow>,
        totals: Totals,
    ) -> Tracker {
        let mut t = Tracker {
            boots: totals.boots,
            no_boot: totals.no_boot,
            left_out: totals.left_out,
            refused: totals.refused,
            ..Tracker::default()
        };
        t.clients = clients.into_iter().map(|r| (r.client, r.tracked)).collect();
        t.networks = networks.into_iter().collect();
        t.waiting = waiting.into_iter().map(|r| (r.client, r.waiting)).collect();
        for w in t.waiting.values().filter(|w| w.network != 0) {
            *t.waiting_networks.entry(w.network).or_insert(0) += 1;
        }
        let mut due: Vec<(f64, u64)> = t
            .clients
            .iter()
            .filter(|(_, c)| c.state == Resolution::Pending)
            .map(|(id, c)| (c.loaded_ms, *id))
            .collect();
        due.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        // The survival sample: the step's first stable clients, as they were taken.
        let mut stable: Vec<(f64, u64)> = t
            .clients
            .iter()
            .filter(|(_, c)| !c.canary)
            .map(|(id, c)| (c.loaded_ms, *id))
            .collect();
        stable.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        t.stable_sample = stable
            .into_iter()
            .take(super::SURVIVAL_SAMPLE)
            .map(|(_, id)| id)
            .collect();
        // The boot times, in load order (the order they came is not stored; either is a
        // sample of the step's clients).
        let mut booted: Vec<(f64, u64, bool, u32)> = t
            .clients
            .iter()
            .filter_map(|(id, c)| Some((c.loaded_ms, *id, c.canary, c.boot_ms?)))
            .collect();
        booted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let (canary, stable): (Vec<_>, Vec<_>) = booted.into_iter().partition(|b| b.2);
        t.boot_times = super::BootTimes::new(
            stable.into_iter().map(|b| b.3).collect(),
            canary.into_iter().map(|b| b.3).collect(),
        );
        t.pending = due.len() as u64;
        t.due = due.into();
        t
    }
}
