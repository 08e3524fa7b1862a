//! The edge side of health counting: the clients an isolate has seen and not yet sent to
//! the bundle's control plane, and when to send them.

use std::collections::{HashMap, HashSet};

use super::counts::{Batch, ClientEvent, Clients, Signal};
use super::report_text::{ReportText, TEXTS_PER_BATCH};
use crate::config::{BundleName, Version, Weight};
use crate::keyed::KeyedHash;
use crate::settings::FlushPolicy;

/// Clients an edge isolate has not yet sent to the control plane, for one bundle. Sending
/// on every request would put a Durable Object call on the hot path; instead they are
/// batched (as distinct-client sets, bounded at any traffic) and flushed within a second
/// when an urgent signal is pending, when enough requests piled up, or when enough time
/// passed. Urgent: a boot or a failure (they resolve a client), and while a canary is live
/// every load: the early silence test ages a client from its load (a canary that never boots
/// sends nothing else, so its loads must not wait for `HEALTH_FLUSH_MS`), and compares the
/// canary's clients with stable's of the same age, so both channels' loads travel alike (a
/// stable load held back would look booted at once when it arrives after its boot).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub stable: Version,
    pub canary: Option<Version>,
    pub weight: Weight,
    /// Keyed ids, for the windows' distinct counts.
    pub clients: Clients,
    /// Each client's signals once: the verdict's evidence.
    pub events: Vec<ClientEvent>,
    /// The first error text of each client in the batch, bounded ([`TEXTS_PER_BATCH`]).
    pub reports: Vec<ReportText>,
    sent: HashSet<(u64, u8)>,
    /// Requests (loads and counted reports) since the last flush.
    pub requests: u64,
    /// A boot, a failure, or a load while a canary is live waits: the batch goes within
    /// [`URGENT_FLUSH_MS`].
    pub urgent_pending: bool,
    pub last_flush_ms: f64,
}

/// Longest an urgent signal (a boot, a failure, a load while a canary is live) waits in an
/// isolate before it is sent to the monitor.
pub const URGENT_FLUSH_MS: u64 = 1_000;

impl Pending {
    pub fn new(stable: Version, canary: Option<Version>, weight: Weight, now_ms: f64) -> Self {
        Self {
            stable,
            canary,
            weight,
            clients: Clients::default(),
            events: Vec::new(),
            reports: Vec::new(),
            sent: HashSet::new(),
            requests: 0,
            urgent_pending: false,
            last_flush_ms: now_ms,
        }
    }

    /// Whether these counts belong to the given live versions and weight.
    pub fn is_for(&self, stable: &Version, canary: Option<&Version>, weight: Weight) -> bool {
        &self.stable == stable && self.canary.as_ref() == canary && self.weight == weight
    }

    /// Records one signal of `client` on a channel: `sketch_id` (its keyed id) for the
    /// distinct counts, the event itself once per batch.
    pub fn record(&mut self, event: ClientEvent, sketch_id: u64) {
        self.record_text(event, sketch_id, None);
    }

    /// [`record`](Self::record), with a failure's text: kept with the client's first failure
    /// in the batch (later ones of the same client are dropped), while the batch has room.
    pub fn record_text(&mut self, event: ClientEvent, sketch_id: u64, text: Option<ReportText>) {
        let failure = event.signal == Signal::Failure;
        self.clients
            .channel_mut(event.canary)
            .insert(sketch_id, failure);
        if self.sent.insert((event.client, event.signal as u8)) {
            self.events.push(event);
            if let Some(text) = text.filter(|_| failure && self.reports.len() < TEXTS_PER_BATCH) {
                self.reports.push(text);
            }
        }
        self.requests += 1;
        // Failures and boots go out within a second (a boot resolves its client), and so
        // do loads while a canary is live (the early silence test ages clients from them).
        self.urgent_pending |= event.signal != Signal::Load || self.canary.is_some();
    }

    /// Urgent signals go out within a second (or `every_ms`, if shorter), so that a failing
    /// or silent canary is judged at once without turning every signal into a Durable
    /// Object call.
    pub fn due(&self, policy: FlushPolicy, now_ms: f64) -> bool {
        let since = now_ms - self.last_flush_ms;
        let urgent_wait = policy.every_ms.min(URGENT_FLUSH_MS) as f64;
        self.requests > 0
            && ((self.urgent_pending && since >= urgent_wait)
                || self.requests >= policy.every_requests
                || since >= policy.every_ms as f64)
    }

    /// Takes the clients as a batch and starts afresh.
    pub fn take(&mut self, now_ms: f64) -> Batch {
        self.last_flush_ms = now_ms;
        self.requests = 0;
        self.urgent_pending = false;
        self.sent.clear();
        Batch {
            stable: self.stable.clone(),
            canary: self.canary.clone(),
            weight: Some(self.weight),
            clients: std::mem::take(&mut self.clients),
            events: std::mem::take(&mut self.events),
            reports: std::mem::take(&mut self.reports),
        }
    }
}

/// What one client did, for the counts: a load, a boot or a failure on a bundle's
/// channel, under the live versions and weight it was served with.
#[derive(Debug, Clone, Copy)]
pub struct Tally<'a> {
    pub bundle: &'a BundleName,
    pub stable: &'a Version,
    pub canary: Option<&'a Version>,
    pub weight: Weight,
    pub on_canary: bool,
    pub client: u64,
    /// Keyed hash of the client's network: its load's (an address or a signed user key), or
    /// the address a report came from.
    pub network: u64,
    pub signal: Signal,
    /// A boot signal's `boot_ms`.
    pub boot_ms: Option<u32>,
}

/// Every bundle's pending counts in one isolate.
#[derive(Debug)]
pub struct Outbox {
    pending: HashMap<BundleName, Pending>,
    /// Keys client ids before they enter a sketch.
    sketch_key: KeyedHash,
}

impl Outbox {
    pub fn new(sketch_key: KeyedHash) -> Self {
        Self {
            pending: HashMap::new(),
            sketch_key,
        }
    }
}

impl Outbox {
    /// Records `tally`; returns the batches to send now, for its bundle. A change of
    /// versions or weight sends the earlier batch as it is: counts stay labelled with what
    /// was served.
    pub fn record(&mut self, tally: Tally<'_>, policy: FlushPolicy, now_ms: f64) -> Vec<Batch> {
        self.record_text(tally, None, policy, now_ms)
    }

    /// [`record`](Self::record), with an error report's text (its kind, message and stack;
    /// the client, network and channel are the tally's).
    pub fn record_text(
        &mut self,
        tally: Tally<'_>,
        text: Option<(String, Option<String>, Option<String>)>,
        policy: FlushPolicy,
        now_ms: f64,
    ) -> Vec<Batch> {
        let fresh = || {
            Pending::new(
                tally.stable.clone(),
                tally.canary.cloned(),
                tally.weight,
                now_ms,
            )
        };
        let entry = match self.pending.get_mut(tally.bundle) {
            Some(entry) => entry,
            None => self
                .pending
                .entry(tally.bundle.clone())
                .or_insert_with(fresh),
        };
        let mut out = Vec::new();
        if !entry.is_for(tally.stable, tally.canary, tally.weight) {
            out.push(entry.take(now_ms));
            *entry = fresh();
        }
        let event = ClientEvent {
            client: tally.client,
            network: tally.network,
            canary: tally.on_canary,
            signal: tally.signal,
            boot_ms: tally.boot_ms.filter(|_| tally.signal == Signal::Boot),
        };
        let text = text.map(|(kind, message, stack)| ReportText {
            client: tally.client,
            network: tally.network,
            canary: tally.on_canary,
            kind,
            message,
            stack,
        });
        entry.record_text(event, self.sketch_key.id(tally.client), text);
        if entry.due(policy, now_ms) {
            out.push(entry.take(now_ms));
        }
        out.retain(|batch| !batch.clients.is_empty());
        out
    }
}

impl Outbox {
    /// Takes every bundle's batch that is due at `now_ms`.
    pub fn take_due(&mut self, policy: FlushPolicy, now_ms: f64) -> Vec<(BundleName, Batch)> {
        self.pending
            .iter_mut()
            .filter(|(_, p)| p.due(policy, now_ms))
            .map(|(bundle, p)| (bundle.clone(), p.take(now_ms)))
            .filter(|(_, batch)| !batch.clients.is_empty())
            .collect()
    }

    /// When the earliest pending batch falls due (`None`: nothing pending).
    pub fn next_due_ms(&self, policy: FlushPolicy) -> Option<f64> {
        self.pending
            .values()
            .filter_map(|p| p.due_at(policy))
            .min_by(f64::total_cmp)
    }
}

impl Pending {
    /// When these counts fall due by time (volume sends them as it is reached).
    pub fn due_at(&self, policy: FlushPolicy) -> Option<f64> {
        if self.requests == 0 {
            return None;
        }
        let wait = if self.urgent_pending {
            policy.every_ms.min(URGENT_FLUSH_MS)
        } else {
            policy.every_ms
        };
        Some(self.last_flush_ms + wait as f64)
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    #[test]
    fn flushes_on_urgent_signals_volume_or_time() {
        let policy = FlushPolicy {
            every_ms: 10_000,
            every_requests: 100,
        };
        let v = |s| Version::parse(s).unwrap();
        let w = Weight::new(30).unwrap();
        let ev = |client, canary, signal| ClientEvent {
            client,
            network: client,
            canary,
            signal,
            boot_ms: None,
        };
        // Without a live canary, loads wait for HEALTH_FLUSH_MS.
        let mut p = Pending::new(v("1.0.0"), None, Weight::new(0).unwrap(), 0.0);
        assert!(!p.due(policy, 1e9), "nothing to send");
        for _ in 0..5 {
            p.record(ev(1, false, Signal::Load), 1);
        }
        assert_eq!(p.events.len(), 1, "a client's load goes once per batch");
        assert!(!p.due(policy, 5_000.0));
        assert!(p.due(policy, 10_000.0), "time");
        let mut p = Pending::new(v("1.0.0"), Some(v("1.1.0")), w, 0.0);
        p.record(ev(1, false, Signal::Load), 1);
        p.record(ev(2, true, Signal::Failure), 2);
        assert!(
            !p.due(policy, 500.0),
            "urgent signals wait at most a second..."
        );
        assert!(p.due(policy, 1_000.0), "...then go");
        let at_once = FlushPolicy {
            every_ms: 0,
            every_requests: 100,
        };
        assert!(
            p.due(at_once, 1.0),
            "with every_ms 0 everything goes at once"
        );
        let batch = p.take(2.0);
        let counts = batch.clients.counts();
        assert_eq!(
            (counts.stable.clients, counts.canary.errors),
            (1, 1),
            "distinct"
        );
        assert_eq!(batch.events.len(), 2);
        assert!(p.clients.is_empty() && p.requests == 0 && !p.urgent_pending);
        assert!(p.events.is_empty());
        p.record(ev(3, true, Signal::Boot), 3);
        assert!(p.due(policy, 2.0 + 1_000.0), "boots go within a second too");
        p.take(3.0);
        // While a canary is live, loads of either channel go within a second: silence is
        // evidence from a load on, against stable's clients of the same age.
        for (client, canary) in [(4, true), (5, false)] {
            p.record(ev(client, canary, Signal::Load), client);
            assert_eq!(p.due_at(policy), Some(3.0 + 1_000.0), "canary {canary}");
            p.take(3.0);
        }
        for i in 0..100 {
            p.record(ev(i, true, Signal::Load), i);
        }
        assert!(p.due(policy, 3.0), "volume");
        assert!(p.is_for(&v("1.0.0"), Some(&v("1.1.0")), w));
        assert!(!p.is_for(&v("1.0.0"), Some(&v("1.2.0")), w));
        assert!(!p.is_for(&v("1.0.0"), Some(&v("1.1.0")), Weight::FULL));
    }

    #[test]
    fn a_clients_first_failure_carries_its_text_bounded_per_batch() {
        let v = |s| Version::parse(s).unwrap();
        let mut p = Pending::new(v("1.0.0"), Some(v("1.1.0")), Weight::new(30).unwrap(), 0.0);
        let ev = |client, signal| ClientEvent {
            client,
            network: client,
            canary: true,
            signal,
            boot_ms: None,
        };
        let text = |client, message: &str| ReportText {
            client,
            network: client,
            canary: true,
            kind: "uncaught".into(),
            message: Some(message.into()),
            stack: None,
        };
        p.record_text(ev(1, Signal::Failure), 1, Some(text(1, "first")));
        p.record_text(ev(1, Signal::Failure), 1, Some(text(1, "second")));
        p.record_text(ev(2, Signal::Load), 2, Some(text(2, "a load has none")));
        assert_eq!(p.reports, vec![text(1, "first")], "the first per client");
        for i in 10..(10 + 2 * TEXTS_PER_BATCH as u64) {
            p.record_text(ev(i, Signal::Failure), i, Some(text(i, "m")));
        }
        assert_eq!(p.reports.len(), TEXTS_PER_BATCH);
        assert_eq!(
            p.events.len(),
            2 + 2 * TEXTS_PER_BATCH,
            "failures count all the same"
        );
        let batch = p.take(1.0);
        assert_eq!(batch.reports.len(), TEXTS_PER_BATCH);
        assert!(p.reports.is_empty());
    }

    #[test]
    fn the_outbox_keeps_counts_labelled_with_what_was_served() {
        let policy = FlushPolicy {
            every_ms: 10_000,
            every_requests: 100,
        };
        let v = |s| Version::parse(s).unwrap();
        let bundle = BundleName::parse("demo").unwrap();
        let (stable, canary) = (v("1.0.0"), v("1.1.0"));
        let tally = |weight: u64, client: u64, error: bool| Tally {
            bundle: &bundle,
            stable: &stable,
            canary: Some(&canary),
            weight: Weight::new(weight).unwrap(),
            on_canary: true,
            client,
            network: client,
            signal: if error { Signal::Failure } else { Signal::Load },
            boot_ms: None,
        };
        let mut outbox = Outbox::new(KeyedHash::derive(b"k", "sketch"));
        assert!(outbox.record(tally(30, 1, false), policy, 0.0).is_empty());
        assert!(outbox.record(tally(30, 2, false), policy, 1.0).is_empty());
        let sent = outbox.record(tally(50, 3, false), policy, 2.0);
        assert_eq!(sent.len(), 1, "a new weight sends the earlier batch");
        assert_eq!(sent[0].weight, Some(Weight::new(30).unwrap()));
        assert_eq!(sent[0].clients.counts().canary.clients, 2);
        let sent = outbox.record(tally(50, 3, true), policy, 1_500.0);
        assert_eq!(sent.len(), 1, "an error goes out within a second");
        assert_eq!(sent[0].clients.counts().canary.errors, 1);
        assert_eq!(sent[0].weight, Some(Weight::new(50).unwrap()));
    }
}

#[cfg(test)]
mod timer_tests {
    use super::*;

    /// The entry module's timer: what is pending falls due at a time the outbox names, and
    /// a flush then takes it (the last request of an isolate is never left waiting).
    #[test]
    fn pending_counts_name_when_they_fall_due_and_a_flush_takes_them() {
        let policy = FlushPolicy {
            every_ms: 10_000,
            every_requests: 1_000,
        };
        let v = |s| Version::parse(s).unwrap();
        let (stable, canary) = (v("1.0.0"), v("1.1.0"));
        let bundle = BundleName::parse("demo").unwrap();
        let tally = |client: u64, signal| Tally {
            bundle: &bundle,
            stable: &stable,
            canary: Some(&canary),
            weight: Weight::new(50).unwrap(),
            on_canary: true,
            client,
            network: client,
            signal,
            boot_ms: None,
        };
        let mut outbox = Outbox::new(KeyedHash::derive(b"k", "sketch"));
        assert_eq!(outbox.next_due_ms(policy), None, "nothing pending");
        // (what is recorded at 100 ms, when it falls due)
        for (signal, due) in [
            (Signal::Load, 10_100.0),
            (Signal::Failure, 1_100.0),
            (Signal::Boot, 1_100.0),
        ] {
            let mut outbox = Outbox::new(KeyedHash::derive(b"k", "sketch"));
            assert!(
                outbox.record(tally(1, signal), policy, 100.0).is_empty() || signal != Signal::Load
            );
            // A first record starts the batch's clock at its own time.
            let due_at = outbox.next_due_ms(policy).unwrap();
            assert!(due_at <= due, "{signal:?}: {due_at} > {due}");
            assert!(
                outbox.take_due(policy, due_at - 1.0).is_empty(),
                "{signal:?}: not before"
            );
            let sent = outbox.take_due(policy, due_at);
            assert_eq!(sent.len(), 1, "{signal:?}");
            assert_eq!(sent[0].0, bundle);
            assert_eq!(outbox.next_due_ms(policy), None, "{signal:?}: nothing left");
        }
        assert!(outbox.take_due(policy, 1e12).is_empty());
    }
}
