//! Many isolates' batches, merged before they reach the bundle's control plane.
//!
//! Every isolate that served a bundle flushes its counts at least once a second while an
//! boot, a failure or a canary load is pending ([`URGENT_FLUSH_MS`](super::batching::URGENT_FLUSH_MS)). At internet
//! scale (30,000 isolates in an incident) that is 30,000 batches a second, far past what
//! one Durable Object takes. So an isolate sends its batches to one of [`AGGREGATORS`]
//! aggregator objects of the bundle (chosen at random once per isolate), and each
//! aggregator forwards what it merged to the bundle's object at most once per
//! [`FORWARD_EVERY_MS`]. The bundle's object then receives at most
//! `AGGREGATORS × 1000 / FORWARD_EVERY_MS` = 256 messages a second, whatever the traffic.
//!
//! A [`Coalescer`] is one aggregator's pending merge, pure: the host (the aggregator
//! object, `js/index.js`) adds batches, waits the delay it is told, takes the merged
//! message and forwards it. The first batch after a quiet spell is forwarded at once, so at
//! low traffic the hop adds no wait; under load a batch waits at most [`FORWARD_EVERY_MS`].
//!
//! Merging keeps everything the verdict reads: batches of the same versions and weight
//! become one (distinct-client sets merged, each client's signal kept once), batches of
//! different ones stay apart. Nothing is dropped but repeats, and new clients' loads past
//! [`LOADS_PER_FORWARD`] in one forward; boots and failures are always kept.
//!
//! The way back: a [`ConfigRelay`] is what one aggregator knows of the bundle's config. The
//! monitor's answer to each forward carries its committed config
//! ([`ConfigPush`]); the aggregator keeps the latest and answers
//! every isolate's batch with it, and every isolate's revision check (`GET /config`, every
//! ~2 s while the isolate serves a canary) from memory, asking the monitor first when what
//! it knows is older than [`CONFIG_FRESH_MS`], at most once per [`CONFIG_ASK_EVERY_MS`]: at
//! most [`AGGREGATORS`] such asks a second reach the monitor, whatever the traffic.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::counts::{Batch, Signal, MAX_TRACKED};
use crate::config::Version;
use crate::config::{BundleName, Weight};

/// Aggregator objects per bundle.
pub const AGGREGATORS: u32 = 64;
/// Least time between two forwards of one aggregator.
pub const FORWARD_EVERY_MS: f64 = 250.0;
/// New clients' loads one forward carries, per versions-and-weight: one round of forwards
/// from every aggregator carries at most what a step tracks ([`MAX_TRACKED`]), so a forward
/// stays small however many clients a second arrive. Loads past it are dropped (the
/// verdict needs a sample, not every client); boots and failures never are.
pub const LOADS_PER_FORWARD: usize = MAX_TRACKED / AGGREGATORS as usize;
/// Forwards a merged batch rides on before it is given up (the bundle's object failing
/// for about a second).
pub const FORWARD_ATTEMPTS: u32 = 4;
/// How old an aggregator's knowledge of the config may be when an isolate checks it: older,
/// the aggregator asks the monitor first.
pub const CONFIG_FRESH_MS: f64 = 1_000.0;
/// Least time between two asks of the monitor by one aggregator.
pub const CONFIG_ASK_EVERY_MS: f64 = 1_000.0;
/// An answer with a lower revision than the one known, within this of learning it, is an
/// older answer arriving late and is ignored; past it, it is the monitor's word (a control
/// plane that started over).
pub const CONFIG_REORDER_MS: f64 = 10_000.0;

/// What an aggregator forwards to the bundle's object: the merged batches (one per
/// versions-and-weight), and how many isolate batches went into them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestMessage {
    pub batches: Vec<Batch>,
    /// Isolate batches merged into `batches`.
    pub merged: u32,
}

/// A forward on its way: the message, and how often each of its batches failed before
/// (to give one up after [`FORWARD_ATTEMPTS`]).
#[derive(Debug, Clone, PartialEq)]
struct Forward {
    message: IngestMessage,
    failed_forwards: Vec<u32>,
}

/// A forward to send: its number (for [`Coalescer::settle`]) and its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: u64,
    pub body: String,
}

/// Why an aggregator refused a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not JSON of a [`Batch`].
    Malformed(String),
    /// The aggregator serves another bundle (its name is derived from the bundle).
    OtherBundle(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(e) => write!(f, "bad batch: {e}"),
            Refusal::OtherBundle(b) => write!(f, "this aggregator serves bundle {b}"),
        }
    }
}

/// The aggregator object's name for a bundle's shard (`shard` below [`AGGREGATORS`]).
pub fn aggregator_name(bundle: &BundleName, shard: u32) -> String {
    format!("{}{}", bundle.as_str(), shard_suffix(shard))
}

/// What follows the bundle's name in its aggregator's name: the entry module appends it.
pub fn shard_suffix(shard: u32) -> String {
    format!("#{}", shard % AGGREGATORS)
}

/// One merged batch, with the signals it holds (to keep each once).
#[derive(Debug)]
struct Merged {
    batch: Batch,
    seen: HashSet<(u64, Signal, bool)>,
    loads: usize,
    /// Forwards that failed with this batch in them.
    failed_forwards: u32,
}

impl Merged {
    fn new(mut batch: Batch) -> Self {
        let events = std::mem::take(&mut batch.events);
        let reports = std::mem::take(&mut batch.reports);
        let mut merged = Merged {
            batch,
            seen: HashSet::new(),
            loads: 0,
            failed_forwards: 0,
        };
        merged.add_events(events);
        merged.add_reports(reports);
        merged
    }

    fn is_for(&self, stable: &Version, canary: Option<&Version>, weight: Option<Weight>) -> bool {
        &self.batch.stable == stable
            && self.batch.canary.as_ref() == canary
            && self.batch.weight == weight
    }

    fn add(&mut self, mut batch: Batch, failed_forwards: u32) {
        self.failed_forwards = self.failed_forwards.max(failed_forwards);
        self.batch.clients.merge(&batch.clients);
        self.add_events(std::mem::take(&mut batch.events));
        self.add_reports(std::mem::take(&mut batch.reports));
    }

    /// Keeps the first text of each client (and channel), at most
    /// [`TEXTS_PER_BATCH`](super::report_text::TEXTS_PER_BATCH) a forward.
    fn add_reports(&mut self, reports: Vec<super::report_text::ReportText>) {
        for r in reports {
            if self.batch.reports.len() >= super::report_text::TEXTS_PER_BATCH {
                return;
            }
            let first = !self
                .batch
                .reports
                .iter()
                .any(|k| k.client == r.client && k.canary == r.canary);
            if first {
                self.batch.reports.push(r);
            }
        }
    }

    fn add_events(&mut self, events: Vec<super::counts::ClientEvent>) {
        for event in events {
            if event.signal == Signal::Load && self.loads >= LOADS_PER_FORWARD {
                continue;
            }
            if self.seen.insert((event.client, event.signal, event.canary)) {
                self.loads += usize::from(event.signal == Signal::Load);
                self.batch.events.push(event);
            }
        }
    }
}

/// One aggregator's batches not yet forwarded, and when it last forwarded.
#[derive(Debug)]
pub struct Coalescer {
    bundle: BundleName,
    pending: Vec<Merged>,
    merged: u32,
    last_forward_ms: f64,
    /// Forwards sent and not yet settled, by number.
    in_flight: Vec<(u64, Forward)>,
    next_seq: u64,
}

impl Coalescer {
    pub fn new(bundle: BundleName) -> Self {
        Self {
            bundle,
            pending: Vec::new(),
            merged: 0,
            last_forward_ms: f64::NEG_INFINITY,
            in_flight: Vec::new(),
            next_seq: 0,
        }
    }

    pub fn bundle(&self) -> &BundleName {
        &self.bundle
    }

    /// Merges an isolate's batch (its JSON text, for `bundle`). Returns how long to wait
    /// before [`take`](Self::take): 0 when the last forward is old enough.
    pub fn add(&mut self, bundle: &str, body: &str, now_ms: f64) -> Result<f64, Refusal> {
        if bundle != self.bundle.as_str() {
            return Err(Refusal::OtherBundle(self.bundle.as_str().to_owned()));
        }
        let batch: Batch =
            serde_json::from_str(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
        self.merge(batch, 0);
        self.merged = self.merged.saturating_add(1);
        Ok(self.wait_ms(now_ms))
    }

    fn merge(&mut self, batch: Batch, failed_forwards: u32) {
        match self
            .pending
            .iter_mut()
            .find(|m| m.is_for(&batch.stable, batch.canary.as_ref(), batch.weight))
        {
            Some(merged) => merged.add(batch, failed_forwards),
            None => {
                let mut merged = Merged::new(batch);
                merged.failed_forwards = failed_forwards;
                self.pending.push(merged);
            }
        }
    }

    /// The outcome of forward `seq`: delivered, or failed. A failed forward's batches ride
    /// on the next one; a batch that failed [`FORWARD_ATTEMPTS`] times is given up.
    /// Returns the batches given up (the host logs them).
    pub fn settle(&mut self, seq: u64, delivered: bool) -> u32 {
        let Some(at) = self.in_flight.iter().position(|(s, _)| *s == seq) else {
            return 0;
        };
        let (_, forward) = self.in_flight.swap_remove(at);
        if delivered {
            0
        } else {
            self.restore(forward)
        }
    }

    fn restore(&mut self, failed: Forward) -> u32 {
        let mut given_up = 0;
        for (batch, failures) in failed
            .message
            .batches
            .into_iter()
            .zip(failed.failed_forwards)
        {
            if failures + 1 >= FORWARD_ATTEMPTS {
                given_up += 1;
            } else {
                self.merge(batch, failures + 1);
            }
        }
        if given_up == 0 {
            self.merged = self.merged.saturating_add(failed.message.merged);
        }
        given_up
    }

    /// How long until the next forward may go.
    pub fn wait_ms(&self, now_ms: f64) -> f64 {
        (self.last_forward_ms + FORWARD_EVERY_MS - now_ms).max(0.0)
    }

    /// Whether no batch waits for a forward.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether nothing is pending nor in flight (the host may drop this coalescer).
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_empty()
    }

    /// Everything merged since the last forward, as the message to forward (`None`:
    /// nothing pending). Starts the next interval; the host reports the outcome with
    /// [`settle`](Self::settle).
    pub fn take(&mut self, now_ms: f64) -> Option<Outgoing> {
        let forward = self.take_forward(now_ms)?;
        let body = serde_json::to_string(&forward.message).ok()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push((seq, forward));
        Some(Outgoing { seq, body })
    }

    fn take_forward(&mut self, now_ms: f64) -> Option<Forward> {
        if self.pending.is_empty() {
            return None;
        }
        self.last_forward_ms = now_ms;
        let (batches, failed_forwards) = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|m| (m.batch, m.failed_forwards))
            .unzip();
        Some(Forward {
            message: IngestMessage {
                batches,
                merged: std::mem::take(&mut self.merged),
            },
            failed_forwards,
        })
    }
}

/// What one aggregator knows of its bundle's config: the latest the monitor told it, and
/// when (see the module's docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRelay {
    bundle: BundleName,
    known: Option<ConfigPush>,
    /// When the monitor last answered with what is known.
    learned_ms: f64,
    /// When the aggregator last asked the monitor.
    asked_ms: f64,
}

/// A monitor's answer, to a forward or to a config check: only its config is read.
#[derive(Deserialize)]
struct ConfigOf {
    #[serde(default)]
    config: Option<ConfigPush>,
}

impl ConfigRelay {
    pub fn new(bundle: BundleName) -> Self {
        Self {
            bundle,
            known: None,
            learned_ms: f64::NEG_INFINITY,
            asked_ms: f64::NEG_INFINITY,
        }
    }

    /// `self`, for `bundle` (an aggregator serves one bundle: its name is derived from it).
    pub fn check_bundle(&self, bundle: &str) -> Result<(), Refusal> {
        match bundle == self.bundle.as_str() {
            true => Ok(()),
            false => Err(Refusal::OtherBundle(self.bundle.as_str().to_owned())),
        }
    }

    /// Learns the config in a monitor's answer (JSON: an `IngestAnswer` or a
    /// `ConfigAnswer`). A lower revision than the one known, learned less than
    /// [`CONFIG_REORDER_MS`] ago, is an older answer arriving late: ignored. Returns
    /// whether the answer was taken; one that does not parse teaches nothing.
    pub fn learn(&mut self, answer: &str, now_ms: f64) -> bool {
        let Ok(ConfigOf { config }) = serde_json::from_str(answer) else {
            return false;
        };
        let reordered = match (&self.known, &config) {
            (Some(known), Some(new)) => {
                new.revision < known.revision && now_ms - self.learned_ms < CONFIG_REORDER_MS
            }
            _ => false,
        };
        if reordered {
            return false;
        }
        self.known = config;
        self.learned_ms = now_ms;
        true
    }

    /// Whether an isolate's check at `now_ms` asks the monitor first: what is known is
    /// older than [`CONFIG_FRESH_MS`] and the last ask older than [`CONFIG_ASK_EVERY_MS`].
    /// A `true` counts as the ask.
    pub fn ask(&mut self, now_ms: f64) -> bool {
        let due = now_ms - self.learned_ms >= CONFIG_FRESH_MS
            && now_ms - self.asked_ms >= CONFIG_ASK_EVERY_MS;
        if due {
            self.asked_ms = now_ms;
        }
        due
    }

    /// What isolates are answered: [`ConfigPush::message`], or empty when nothing is known.
    pub fn message(&self) -> String {
        self.known
            .as_ref()
            .map(ConfigPush::message)
            .unwrap_or_default()
    }
}

/// A bundle's config as the control plane pushes it to the edge: `text` exactly as KV
/// holds it (or will, once KV has propagated it), and the control plane's `revision` of it
/// (the `revision` inside an operator's raw text, if any, is not it: an adopted write gets
/// one above everything before, the control plane's `adoption`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPush {
    pub revision: u64,
    pub text: String,
}

impl ConfigPush {
    /// The push as an aggregator answers it and the edge's router takes it
    /// (`pushed_config`): the revision, a newline, the text (which may hold newlines).
    pub fn message(&self) -> String {
        format!("{}\n{}", self.revision, self.text)
    }
}

#[cfg(test)]
mod tests;
