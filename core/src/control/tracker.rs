//! The clients of the current step, tracked one by one: the evidence the verdict counts.
//!
//! Sketches say how many clients there were; they cannot say whether *this* client, which
//! loaded the canary, ever booted it, and a difference of two sketches is noise (3% of
//! 10,000 is 300). So the step's clients are kept exactly, each with its channel, its
//! network and what it did, and each is resolved once:
//!
//! - it booted (the SDK's boot signal): a client, fine (a failure reported later still
//!   turns it into a client with a failure);
//! - it failed (an error report, or a canary file that was published and could not be
//!   served): a client with a failure, at once;
//! - it sent nothing within `boot_grace_secs` of its load: when the bundle's SDK is known to
//!   send boot signals, a client with a failure (`no_boot`) while stable serves too; at
//!   weight 100 (no stable to tell page closes from breakage) it is left out, never a pass;
//!   for a bundle whose SDK sends no boot signals, a client, fine, as before boot signals.
//!
//! What it takes to be counted, so that evidence scales with networks, not requests:
//! - a load of the floating URL in this step, seen by the edge (boot and failure signals of
//!   a client the step never saw load count nothing; they wait, bounded, for the load);
//! - at most [`CLIENTS_PER_NETWORK`] client per network per step, whichever channel it
//!   is on (the network is a keyed hash of the client's IPv4 address or IPv6 /48, or of a
//!   user key the merchant signed). Channel-blind, so the first client of a shared network
//!   is canary with the weight's probability and the exposure ratio stays the weight's;
//! - at most [`MAX_TRACKED`] clients per step: past it the step has a sample of its first
//!   clients, exact.
//!
//! The step's tracking outlives its object: every change is noted in a journal
//! ([`Changes`], `stored.rs`), which the Durable Object writes to its SQLite after each event
//! (the rows that changed, not the table) and [`Tracker::restore`] reads back on start. A
//! restart mid-step forgets no network, no pending client and no waiting signal, so a
//! network cannot count again by waiting for the object to be evicted.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::health::counts::{ChannelCounts, ClientEvent, Counts, Signal, MAX_TRACKED};

mod stored;

pub use stored::{Changes, ClientRow, StoredChanges, Totals, WaitingRow};

/// Clients a network counts for in one step, on either channel.
pub const CLIENTS_PER_NETWORK: u32 = 1;
/// Signals kept for clients whose load has not been seen yet (boots often arrive first:
/// they are not batched behind other loads).
pub const MAX_WAITING: usize = 20_000;
/// Of those, the most from one network (the address a report came from, keyed as loads'
/// networks are: an IPv4 address, an IPv6 /48). One network counts one client a step, yet
/// mints as many ids as it likes: without this it could fill the table and crowd out
/// everyone else's boots and errors (a stalled rollout, a broken canary not cut). Filling
/// the table now takes `MAX_WAITING / WAITING_PER_NETWORK` networks. An honest network
/// holds a slot from its boot until its load arrives (an isolate's flush, 10 s): more than
/// this many boots in that time from one address is a large NAT, whose one counted client
/// may then lose its boot.
pub const WAITING_PER_NETWORK: u32 = 16;
/// How long a signal waits for its client's load, at least (twice the boot grace if that is
/// longer). An isolate holds a load until its next flush (`HEALTH_FLUSH_MS`, 10 s by
/// default, checked on its next request), while a boot goes out within a second: with a
/// short grace, a boot that aged out before its load arrived made a client that booted
/// count as silent.
pub const WAITING_KEEP_MS: f64 = 60_000.0;

/// Where a tracked client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Loaded; neither booted nor failed yet.
    Pending,
    /// Counted: a client that ran the SDK, and whether it is counted with a failure.
    Counted { failed: bool },
    /// Counted as silent (`no_boot`): never booted nor reported within its grace.
    Silent,
    /// Left out: no boot signal at weight 100.
    LeftOut,
}

/// One client of the step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tracked {
    pub canary: bool,
    pub loaded_ms: f64,
    pub booted: bool,
    pub failed: bool,
    pub state: Resolution,
    /// Age at which its first boot signal reached the control plane (ms after its load; 0
    /// when the boot came first), negative while it has none: stable's give the
    /// time-to-boot distribution the early silence test compares with.
    pub boot_age_ms: f64,
    /// The `boot_ms` its first boot signal carried (the boot-time guard's value), if any.
    pub boot_ms: Option<u32>,
}

/// Boot times kept per channel and step for the boot-time guard: far more than it needs to
/// decide (stable's median is bounded to a few percent by 2,000; see `verdict::boot_time`).
pub const BOOT_TIMES_KEPT: usize = 20_000;

pub use super::verdict::boot_time::BootTimes;

/// Width of the early silence test's age bins.
pub const AGE_BIN_MS: f64 = 500.0;
/// Stable clients of a step (its first ones) whose boot ages estimate stable's time-to-boot.
pub const SURVIVAL_SAMPLE: usize = 2_000;

/// What the early silence test needs from the tracker (recomputed at every batch and sweep,
/// never stored: after a restart it is empty until the next, which is no evidence).
/// Bin `i` holds ages in `[i·AGE_BIN_MS, (i+1)·AGE_BIN_MS)`; the last bin is the grace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EarlySilence {
    /// Per bin: stable clients (of the sample) at least the bin's lower age old, and those of
    /// them not booted by that age (a failure without a boot counts as not booted:
    /// conservative).
    pub stable: Vec<(u64, u64)>,
    /// Per bin: canary clients still silent (pending, or counted silent in the last bin).
    pub canary_silent: Vec<u64>,
}

/// Signals that came before their client's load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waiting {
    /// The network the first signal came from (0: unknown, an older edge's batch).
    pub network: u64,
    pub canary: bool,
    pub booted: bool,
    pub failed: bool,
    pub at_ms: f64,
    /// The first boot signal's `boot_ms`, if it carried one.
    pub boot_ms: Option<u32>,
}

/// What a batch or a sweep newly counts, in two families tested apart (so that pages closed
/// early, silent on both channels alike, never dilute the error comparison):
/// - `errors`: clients that ran the SDK (booted or failed), and those with a failure;
/// - `silence`: every resolved client (while silence is judged), and the silent ones
///   (`no_boot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resolved {
    pub errors: ChannelCounts,
    pub silence: ChannelCounts,
}

impl Resolved {
    pub fn add(&mut self, other: Resolved) {
        self.errors.add(other.errors);
        self.silence.add(other.silence);
    }
}

/// How the step resolves clients that sent no boot signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootRule {
    /// Stable's version is known to send boot signals, so silence is data.
    pub expected: bool,
    /// Stable serves some cohorts (weight below 100): silence on both channels alike (pages
    /// closed early) is absorbed by the relative test.
    pub stable_present: bool,
    pub grace_ms: f64,
    /// Share of stable's clients tracked (1 at weights of 10% and more).
    pub stable_sample: f64,
}

/// What the step's tracking refused, for the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// Loads of clients from a network that already has its client in this step.
    pub network_cap: u64,
    /// Loads past `MAX_TRACKED`.
    pub over_capacity: u64,
    /// Boot or failure signals of a channel other than the client's load.
    pub other_channel: u64,
    /// Stable loads outside the step's sample.
    pub not_sampled: u64,
    /// Signals not kept to wait for their load: their network already had
    /// `WAITING_PER_NETWORK` waiting, or the table was full.
    #[serde(default)]
    pub waiting_full: u64,
}

/// The current step's clients.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    clients: HashMap<u64, Tracked>,
    networks: HashMap<u64, u32>,
    waiting: HashMap<u64, Waiting>,
    /// Waiting signals per network (derived from `waiting`: rebuilt on restore, never stored).
    waiting_networks: HashMap<u64, u32>,
    /// The pending clients' loads in time order (`loaded_ms`, client): the sweep takes the
    /// due ones from the front instead of scanning the step. An entry whose client was
    /// resolved since is skipped when it comes up.
    due: VecDeque<(f64, u64)>,
    /// The step's first `SURVIVAL_SAMPLE` stable clients (derived: rebuilt on restore).
    stable_sample: Vec<u64>,
    /// The tracked clients' first boot times, per channel, in the order they came, at most
    /// `BOOT_TIMES_KEPT` each (derived: rebuilt on restore).
    boot_times: BootTimes,
    /// Clients in `Resolution::Pending`.
    pending: u64,
    /// Boot signals of tracked clients, per channel (stable, canary).
    pub boots: [u64; 2],
    /// Clients counted with a failure because they sent no boot signal, per channel.
    pub no_boot: [u64; 2],
    /// Clients left out at weight 100 for want of a boot signal.
    pub left_out: u64,
    pub refused: Refused,
    /// What changed since the store last took it (never stored itself).
    changes: Changes,
}

/// Equal when they track the same: the journal and the order of equal load times in the
/// queue are bookkeeping.
impl PartialEq for Tracker {
    fn eq(&self, other: &Self) -> bool {
        self.clients == other.clients
            && self.networks == other.networks
            && self.waiting == other.waiting
            && self.waiting_networks == other.waiting_networks
            && self.pending == other.pending
            && self.totals() == other.totals()
    }
}

impl Tracker {
    /// Clients tracked in this step.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Moves the step's clients out, leaving the counters the status shows (`pending`,
    /// `totals`): the Durable Object's committed state keeps this shell while an event runs
    /// on the clients, instead of a copy of up to `MAX_TRACKED` of them per event.
    pub fn detach(&mut self) -> Tracker {
        let shell = Tracker {
            pending: self.pending,
            boots: self.boots,
            no_boot: self.no_boot,
            left_out: self.left_out,
            refused: self.refused,
            ..Tracker::default()
        };
        std::mem::replace(self, shell)
    }

    /// Empties the tracker for a new step (the store drops every row of the last one).
    pub fn reset(&mut self) {
        *self = Tracker {
            changes: Changes::reset(),
            ..Tracker::default()
        };
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Applies the edge's signals at `now_ms`; returns what they newly count.
    pub fn apply(&mut self, events: &[ClientEvent], rule: BootRule, now_ms: f64) -> Resolved {
        let mut new = Resolved::default();
        for e in events {
            match e.signal {
                Signal::Load => self.load(e, rule, now_ms, &mut new),
                Signal::Boot | Signal::Failure => self.signal(e, rule, now_ms, &mut new),
            }
        }
        new.add(self.sweep(rule, now_ms));
        self.trim_due();
        new
    }

    /// Resolves the clients whose grace is over; returns what that newly counts.
    pub fn sweep(&mut self, rule: BootRule, now_ms: f64) -> Resolved {
        let mut new = Resolved::default();
        let due = now_ms - rule.grace_ms;
        while let Some(&(loaded_ms, id)) = self.due.front() {
            if loaded_ms > due {
                break;
            }
            self.due.pop_front();
            let Some(t) = self.clients.get_mut(&id) else {
                continue;
            };
            if t.state != Resolution::Pending {
                continue;
            }
            self.pending -= 1;
            self.changes.clients.insert(id);
            if !rule.expected {
                // No boot signals to expect: a client that reported nothing is fine.
                t.state = Resolution::Counted { failed: false };
                channel_mut(&mut new.errors, t.canary).clients += 1;
            } else if rule.stable_present {
                t.state = Resolution::Silent;
                let silence = channel_mut(&mut new.silence, t.canary);
                silence.clients += 1;
                silence.errors += 1;
                self.no_boot[usize::from(t.canary)] += 1;
            } else {
                t.state = Resolution::LeftOut;
                self.left_out += 1;
            }
        }
        let keep_from = now_ms - (2.0 * rule.grace_ms).max(WAITING_KEEP_MS);
        let changes = &mut self.changes;
        let networks = &mut self.waiting_networks;
        self.waiting.retain(|id, w| {
            let keep = w.at_ms > keep_from;
            if !keep {
                changes.waiting.insert(*id);
                release(networks, w.network);
            }
            keep
        });
        new
    }

    /// The earliest time a pending client's grace ends.
    pub fn next_due_ms(&self, grace_ms: f64) -> Option<f64> {
        self.due
            .iter()
            .find(|(_, id)| {
                self.clients
                    .get(id)
                    .is_some_and(|t| t.state == Resolution::Pending)
            })
            .map(|(loaded_ms, _)| loaded_ms + grace_ms)
    }

    /// The early silence test's data at `now_ms` (see `verdict::early_silence`): stable's
    /// survival per age bin from its sample, the canary's silent clients per age bin. A late
    /// boot simply moves its client out of the silent ones: its silence is withdrawn.
    pub fn early_silence(&self, now_ms: f64, grace_ms: f64) -> EarlySilence {
        let bins = (grace_ms / AGE_BIN_MS).ceil().max(1.0) as usize;
        let mut out = EarlySilence {
            stable: vec![(0, 0); bins + 1],
            canary_silent: vec![0; bins + 1],
        };
        let bin_of = |age: f64| ((age.max(0.0) / AGE_BIN_MS).floor() as usize).min(bins);
        for id in &self.stable_sample {
            let Some(t) = self.clients.get(id) else {
                continue;
            };
            let age = now_ms - t.loaded_ms;
            // Bins whose lower age the client has reached (the last: the grace).
            let reached = if age >= grace_ms {
                bins + 1
            } else {
                bin_of(age).min(bins - 1) + 1
            };
            for (i, (n, k)) in out.stable.iter_mut().enumerate().take(reached) {
                let lower = if i == bins {
                    grace_ms
                } else {
                    i as f64 * AGE_BIN_MS
                };
                *n += 1;
                if !(t.booted && t.boot_age_ms <= lower) {
                    *k += 1;
                }
            }
        }
        for (_, id) in &self.due {
            if let Some(t) = self.clients.get(id) {
                if t.canary && t.state == Resolution::Pending {
                    out.canary_silent[bin_of(now_ms - t.loaded_ms).min(bins - 1)] += 1;
                }
            }
        }
        out.canary_silent[bins] = self.no_boot[1];
        out
    }

    /// The step's first boot times per channel (the boot-time guard's data).
    pub fn boot_times(&self) -> &BootTimes {
        &self.boot_times
    }

    /// Clients loaded and not yet resolved.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Drops resolved clients from the front of the queue, so that `next_due_ms` finds the
    /// earliest pending one at once.
    fn trim_due(&mut self) {
        while let Some((_, id)) = self.due.front() {
            if self
                .clients
                .get(id)
                .is_some_and(|t| t.state == Resolution::Pending)
            {
                break;
            }
            self.due.pop_front();
        }
    }

    fn load(&mut self, e: &ClientEvent, rule: BootRule, now_ms: f64, new: &mut Resolved) {
        if self.clients.contains_key(&e.client) {
            return;
        }
        // A refused load is refused for the whole step: its waiting signals can never be
        // matched, so they go now rather than hold a slot for a minute.
        if !e.canary && !sampled(e.client, rule.stable_sample) {
            self.refused.not_sampled += 1;
            self.unwait(e.client);
            return;
        }
        if self.clients.len() >= MAX_TRACKED {
            self.refused.over_capacity += 1;
            self.unwait(e.client);
            return;
        }
        let from_network = self.networks.entry(e.network).or_insert(0);
        if *from_network >= CLIENTS_PER_NETWORK {
            self.refused.network_cap += 1;
            self.unwait(e.client);
            return;
        }
        *from_network += 1;
        self.changes.networks.insert(e.network);
        let mut t = Tracked {
            canary: e.canary,
            loaded_ms: now_ms,
            booted: false,
            failed: false,
            state: Resolution::Pending,
            boot_age_ms: -1.0,
            boot_ms: None,
        };
        if !e.canary && self.stable_sample.len() < SURVIVAL_SAMPLE {
            self.stable_sample.push(e.client);
        }
        if let Some(w) = self.unwait(e.client) {
            if w.canary == e.canary {
                t.booted = w.booted;
                t.failed = w.failed;
                if w.booted {
                    self.boots[usize::from(e.canary)] += 1;
                    t.boot_age_ms = 0.0;
                    t.boot_ms = w.boot_ms;
                    self.boot_times.push(e.canary, w.boot_ms);
                }
            } else {
                self.refused.other_channel += 1;
            }
        }
        resolve_signalled(&mut t, new);
        if t.state == Resolution::Pending {
            self.pending += 1;
            // Loads come in time order but for a clock step back: keep the queue sorted.
            let at = self.due.partition_point(|&(ms, _)| ms <= now_ms);
            self.due.insert(at, (now_ms, e.client));
        }
        self.changes.clients.insert(e.client);
        self.clients.insert(e.client, t);
    }

    fn signal(&mut self, e: &ClientEvent, rule: BootRule, now_ms: f64, new: &mut Resolved) {
        let boot = e.signal == Signal::Boot;
        let Some(t) = self.clients.get_mut(&e.client) else {
            // A stable client outside the step's sample will be refused at its load: its
            // signals need not wait. (At 1% weight and high traffic, stable's boots, which
            // come up to an isolate's flush before their loads, otherwise fill the table and
            // crowd out the canary's: measured, healthy canaries cut for silence.)
            if e.canary || sampled(e.client, rule.stable_sample) {
                self.wait(e, now_ms);
            }
            return;
        };
        if t.canary != e.canary {
            self.refused.other_channel += 1;
            return;
        }
        let before = *t;
        if boot {
            if !t.booted {
                self.boots[usize::from(t.canary)] += 1;
                t.boot_age_ms = (now_ms - t.loaded_ms).max(0.0);
                // The first boot's time is the client's one value (later boots: reloads).
                t.boot_ms = e.boot_ms;
                self.boot_times.push(t.canary, e.boot_ms);
            }
            t.booted = true;
        } else {
            t.failed = true;
        }
        // A signal after the client was counted silent changes nothing (`Silent` is final).
        resolve_signalled(t, new);
        if before.state == Resolution::Pending && t.state != Resolution::Pending {
            self.pending -= 1;
        }
        if *t != before {
            self.changes.clients.insert(e.client);
        }
    }
}

impl Tracker {
    /// Keeps a signal of a client whose load has not come yet, within the table's bounds:
    /// [`MAX_WAITING`] in all, [`WAITING_PER_NETWORK`] per network (network 0, unknown, is
    /// bounded by the table only).
    fn wait(&mut self, e: &ClientEvent, now_ms: f64) {
        let boot = e.signal == Signal::Boot;
        if !self.waiting.contains_key(&e.client) {
            let from_network = self.waiting_networks.get(&e.network).copied().unwrap_or(0);
            let network_full = e.network != 0 && from_network >= WAITING_PER_NETWORK;
            if network_full || self.waiting.len() >= MAX_WAITING {
                self.refused.waiting_full += 1;
                return;
            }
            if e.network != 0 {
                self.waiting_networks.insert(e.network, from_network + 1);
            }
        }
        self.changes.waiting.insert(e.client);
        let w = self.waiting.entry(e.client).or_insert(Waiting {
            network: e.network,
            canary: e.canary,
            booted: false,
            failed: false,
            at_ms: now_ms,
            boot_ms: None,
        });
        if w.canary == e.canary {
            if boot && !w.booted {
                w.boot_ms = e.boot_ms;
            }
            w.booted |= boot;
            w.failed |= !boot;
        }
    }

    /// Takes a client's waiting signals out of the table, if it has any.
    fn unwait(&mut self, client: u64) -> Option<Waiting> {
        let w = self.waiting.remove(&client)?;
        self.changes.waiting.insert(client);
        release(&mut self.waiting_networks, w.network);
        Some(w)
    }
}

/// One waiting signal of `network` fewer.
fn release(networks: &mut HashMap<u64, u32>, network: u64) {
    if let Some(n) = networks.get_mut(&network) {
        *n -= 1;
        if *n == 0 {
            networks.remove(&network);
        }
    }
}

/// Counts a client that has booted or failed: a failure counts at once, and a client
/// counted fine that fails later adds a failure (not a client). A client that ran is also
/// one of the silence family's clients (not silent).
fn resolve_signalled(t: &mut Tracked, new: &mut Resolved) {
    let ran = t.failed || t.booted;
    let first = matches!(t.state, Resolution::Pending | Resolution::LeftOut) && ran;
    let errors = channel_mut(&mut new.errors, t.canary);
    match t.state {
        Resolution::Pending | Resolution::LeftOut if t.failed => {
            errors.clients += 1;
            errors.errors += 1;
            t.state = Resolution::Counted { failed: true };
        }
        Resolution::Pending | Resolution::LeftOut if t.booted => {
            errors.clients += 1;
            t.state = Resolution::Counted { failed: false };
        }
        Resolution::Counted { failed: false } if t.failed => {
            errors.errors += 1;
            t.state = Resolution::Counted { failed: true };
        }
        _ => {}
    }
    if first {
        channel_mut(&mut new.silence, t.canary).clients += 1;
    }
}

/// Whether a stable client is in the step's sample: a hash of its (edge-issued, random) id
/// below `rate`. Canary clients are all tracked; stable ones at the rate the weight sets, so
/// that at small weights the step's table holds enough canary clients.
fn sampled(client: u64, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    // Ids are random already; the mixer only spreads them.
    let z = crate::health::clients::mix(client);
    ((z >> 11) as f64 / (1u64 << 53) as f64) < rate
}

fn channel_mut(c: &mut ChannelCounts, canary: bool) -> &mut Counts {
    if canary {
        &mut c.canary
    } else {
        &mut c.stable
    }
}

#[cfg(test)]
mod tests;
