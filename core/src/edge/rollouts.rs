//! The per-isolate copy of rollout configs: how long a KV read is trusted, what is served
//! when KV fails or holds an invalid value (the last good config, else an error), and the
//! order of what the isolate learns: KV reads, and the configs the control plane pushes.
//!
//! # The order
//!
//! Per bundle the isolate keeps its config and a **floor**: the highest control-plane
//! `revision` it has seen, in a KV value or in a push (the config and its revision riding on
//! the answer to a health batch or to a revision check: `health::coalesce::ConfigPush`).
//!
//! | what arrives | taken when | then |
//! |---|---|---|
//! | a KV value with `revision` r | r > floor; or r = floor, but for the row below | floor = r |
//! | a KV value with `revision` r | r < floor; or r = floor (> 0) while what is served came without a revision (a raw write, a deleted key: read after r): **a stale read** (KV lagging), unless nothing good is served (an error) | keep what is served, fresh for the TTL (no KV read per request) |
//! | a KV value without `revision` (an operator's `wrangler kv key put`, the CLI without the admin API, a seed) | always, **the operator wins**, unless it is the same text as a raw value this isolate knew at a floor since passed (a stale read of it, or the operator writing those bytes again: the two look alike) and it serves at least as many canary cohorts as what is served ([`exposure`]): then it waits for the control plane's adoption (its next KV read, pushed with a higher revision). A known text that serves fewer is taken at once: **the lower exposure wins the ambiguity** (a byte-identical raw rollback) | floor unchanged |
//! | a push with revision p | p > floor | floor = p, fresh for the TTL |
//! | a push with revision p | p ≤ floor: older than what is served (an operator's raw write taken since: the control plane adopts it on its next KV read and pushes it with a higher revision) | ignored |
//! | KV fails, or holds an invalid value | — | the last good config (as before) |
//! | a deleted key | always | a 404; the last good config is forgotten |
//!
//! So an isolate never goes back to an older revision read from a lagging KV, and an
//! operator's raw write still takes effect at once where it is read, and everywhere once the
//! control plane has adopted it (adoption gives it a revision above every one written
//! before: the control plane's `adoption`).
//!
//! One way out of the floor: KV answering below it for longer than [`REVISION_HORIZON_MS`]
//! since the floor last rose. KV serves a read at most ~60 s stale, so past twice that the
//! lower value is not lag but a control plane that started over (its storage lost): it is
//! taken, and the floor goes down with it, rather than ignoring that control plane forever.
//!
//! Time is an argument (`now_ms`), so the TTL, fault and order rules are tested natively.

use std::collections::HashMap;
use std::rc::Rc;

use crate::config::{BundleName, ConfigError, Rollout};
use crate::edge::decide::{PreparedRollout, Router};
use crate::error::EdgeError;
use crate::kv::{exposure, KvRead, Staleness};

/// Most bundles remembered per isolate; unknown names probed by clients must not grow the
/// map without bound.
pub const MAX_BUNDLES: usize = 256;
/// How long KV may answer below the floor (since it last rose) before that is taken as a
/// control plane that started over rather than lag: twice KV's ~60 s (the control plane's
/// `STALE_HORIZON_MS` for its own reads).
pub const REVISION_HORIZON_MS: f64 = 120_000.0;
/// Values without a revision remembered per bundle (to know a lagging read of one).
pub const RAW_KNOWN: usize = 4;

#[derive(Debug, Clone)]
enum Known {
    Found(Rc<PreparedRollout>),
    Missing,
    /// KV had an invalid value (or failed) and there was no good config to fall back on.
    Error(EdgeError),
}

#[derive(Debug, Clone)]
struct Entry {
    checked_at_ms: f64,
    known: Known,
    last_good: Option<Rc<PreparedRollout>>,
    /// The highest control-plane revision seen for the bundle (0: none yet).
    floor: u64,
    /// Since when KV has answered only below the floor (reset when the floor rises).
    below_since_ms: Option<f64>,
    /// Values without a revision this isolate knows: (text hash, the floor they stood at:
    /// the floor when read from KV, or the revision they were pushed with), newest last.
    raw: Vec<(u64, u64)>,
}

impl Entry {
    fn new(known: Known, checked_at_ms: f64) -> Self {
        Self {
            checked_at_ms,
            known,
            last_good: None,
            floor: 0,
            below_since_ms: None,
            raw: Vec::new(),
        }
    }

    /// What is served came without a revision (a raw write, or a deleted key).
    fn serves_raw(&self) -> bool {
        match &self.known {
            Known::Found(p) => p.rollout.revision.is_none(),
            Known::Missing => true,
            Known::Error(_) => false,
        }
    }

    /// Whether a KV value (`revision`, or none and the text's `hash`) is older than what this
    /// isolate serves: see the module's table.
    fn is_lagging(&self, rollout: &Rollout, hash: u64) -> bool {
        let served = match &self.known {
            // Nothing to serve: anything valid is better than an error.
            Known::Error(_) => return false,
            Known::Found(p) => exposure(&p.rollout),
            Known::Missing => 0,
        };
        match rollout.revision {
            Some(r) => r < self.floor || (r == self.floor && r > 0 && self.serves_raw()),
            // A raw text this isolate knew below the floor: a lagging read of it, or the
            // operator writing those bytes again (a rollback to the seed's text). The two
            // cannot be told apart, so the lower exposure wins: a value serving fewer canary
            // cohorts than what is served is taken at once; one serving as many or more
            // waits for the control plane's adoption (pushed with a higher revision).
            None => {
                exposure(rollout) >= served
                    && self.raw.iter().any(|&(h, at)| h == hash && at < self.floor)
            }
        }
    }

    fn know_raw(&mut self, hash: u64, at: u64) {
        self.raw.retain(|&(h, _)| h != hash);
        if self.raw.len() >= RAW_KNOWN {
            self.raw.remove(0);
        }
        self.raw.push((hash, at));
    }

    /// A revision seen: the floor is the highest (and KV is no longer below it).
    fn raise_floor(&mut self, revision: u64) {
        self.floor = self.floor.max(revision);
        self.below_since_ms = None;
    }
}

/// What a KV read is, relative to what the isolate has (see the module's table).
enum Take {
    /// Newer (or equal): taken, floor = the revision if it has one.
    Fresh,
    /// Older: what is served stays, fresh for the TTL.
    Lagging,
}

#[derive(Debug)]
pub struct RolloutCache {
    ttl_ms: f64,
    entries: HashMap<BundleName, Entry>,
}

impl RolloutCache {
    pub fn new(ttl_ms: u64) -> Self {
        Self {
            ttl_ms: ttl_ms as f64,
            entries: HashMap::new(),
        }
    }

    /// The cached answer for `bundle`, if it is younger than the TTL.
    pub fn fresh(
        &self,
        bundle: &BundleName,
        now_ms: f64,
    ) -> Option<Result<Rc<PreparedRollout>, EdgeError>> {
        let entry = self.entries.get(bundle)?;
        let age = now_ms - entry.checked_at_ms;
        if !(0.0..self.ttl_ms).contains(&age) {
            return None;
        }
        Some(answer(bundle, &entry.known))
    }

    /// The answer last recorded for `bundle`, however old: for the request that just read
    /// KV (with a TTL of 0 every answer is already stale).
    pub fn latest(&self, bundle: &BundleName) -> Option<Result<Rc<PreparedRollout>, EdgeError>> {
        self.entries.get(bundle).map(|e| answer(bundle, &e.known))
    }

    /// The highest control-plane revision this isolate has seen for `bundle` (0: none).
    pub fn floor(&self, bundle: &BundleName) -> u64 {
        self.entries.get(bundle).map_or(0, |e| e.floor)
    }

    /// Records a KV read and returns what to serve, with a note when it is the last good
    /// config rather than what KV holds.
    ///
    /// `read_started_ms` is when the read was issued: KV may have answered with a value
    /// from any time after that, so the TTL runs from there (stamped at the answer, a slow
    /// read that began before a rollback write would keep the old weight a TTL past it).
    /// A read issued before the one already recorded is older news: it is not recorded,
    /// and the newer answer is served. A value older than what the isolate has (the
    /// module's table: a lagging KV) is not taken either, but counts as a read for the TTL.
    pub fn record(
        &mut self,
        router: &Router,
        bundle: &BundleName,
        read: KvRead,
        read_started_ms: f64,
    ) -> (Result<Rc<PreparedRollout>, EdgeError>, Option<Staleness>) {
        if let Some(newer) = self
            .entries
            .get(bundle)
            .filter(|e| e.checked_at_ms > read_started_ms)
        {
            return (answer(bundle, &newer.known), None);
        }
        let previous = self.entries.get(bundle);
        let last_good = previous.and_then(|e| e.last_good.clone());
        let mut revision = None;
        let (known, staleness) = match read {
            KvRead::Missing => (Known::Missing, None),
            KvRead::Value(json) => match Rollout::parse(&json) {
                Ok(rollout) => {
                    let hash = text_hash(&json);
                    if let Some(entry) = self.entries.get_mut(bundle) {
                        if let Take::Lagging = entry.judge(&rollout, hash, read_started_ms) {
                            entry.checked_at_ms = read_started_ms;
                            return (answer(bundle, &entry.known), None);
                        }
                    }
                    revision = Some((rollout.revision, hash));
                    (
                        Known::Found(prepared(router, bundle, rollout, &last_good)),
                        None,
                    )
                }
                Err(error) => match &last_good {
                    Some(prev) => (
                        Known::Found(prev.clone()),
                        Some(Staleness::InvalidInKv(error.to_string())),
                    ),
                    None => (
                        Known::Error(EdgeError::ConfigInvalid {
                            bundle: bundle.to_string(),
                            error,
                        }),
                        None,
                    ),
                },
            },
            KvRead::Failed(detail) => match &last_good {
                Some(prev) => (
                    Known::Found(prev.clone()),
                    Some(Staleness::KvFailed(detail)),
                ),
                None => (
                    Known::Error(EdgeError::ConfigUnavailable {
                        bundle: bundle.to_string(),
                        detail,
                    }),
                    None,
                ),
            },
        };
        let last_good = match &known {
            Known::Found(p) => Some(p.clone()),
            // A deleted key is a deliberate removal: forget the old config.
            Known::Missing => None,
            Known::Error(_) => last_good,
        };
        let result = answer(bundle, &known);
        let entry = self.slot(bundle);
        entry.checked_at_ms = read_started_ms;
        entry.known = known;
        entry.last_good = last_good;
        match revision {
            Some((Some(r), _)) => entry.raise_floor(r),
            Some((None, hash)) => {
                entry.below_since_ms = None;
                let at = entry.floor;
                entry.know_raw(hash, at);
            }
            None => {}
        }
        (result, staleness)
    }

    /// Records a config the control plane pushed (`text`, exactly as KV holds it, at
    /// `revision`): taken only when `revision` is above the floor, and then trusted for the
    /// TTL like a read at `now_ms`. Returns whether it was taken; an invalid text is not.
    pub fn push(
        &mut self,
        router: &Router,
        bundle: &BundleName,
        revision: u64,
        text: &str,
        now_ms: f64,
    ) -> Result<bool, ConfigError> {
        if self
            .entries
            .get(bundle)
            .is_some_and(|e| revision <= e.floor)
        {
            return Ok(false);
        }
        let rollout = Rollout::parse(text)?;
        let raw = rollout.revision.is_none();
        let last_good = self.entries.get(bundle).and_then(|e| e.last_good.clone());
        let fresh = prepared(router, bundle, rollout, &last_good);
        let entry = self.slot(bundle);
        entry.checked_at_ms = entry.checked_at_ms.max(now_ms);
        entry.known = Known::Found(fresh.clone());
        entry.last_good = Some(fresh);
        entry.raise_floor(revision);
        if raw {
            // An operator's write the control plane adopted: its text in KV has no
            // revision, so a lagging read of it is known by the text.
            entry.know_raw(text_hash(text), revision);
        }
        Ok(true)
    }

    /// `bundle`'s entry, made (never read: `checked_at_ms` −∞) if there is none, with room
    /// made for it.
    fn slot(&mut self, bundle: &BundleName) -> &mut Entry {
        self.make_room(bundle);
        self.entries
            .entry(bundle.clone())
            .or_insert_with(|| Entry::new(Known::Missing, f64::NEG_INFINITY))
    }

    fn make_room(&mut self, incoming: &BundleName) {
        if self.entries.len() < MAX_BUNDLES || self.entries.contains_key(incoming) {
            return;
        }
        self.entries
            .retain(|_, e| matches!(e.known, Known::Found(_)) || e.last_good.is_some());
        if self.entries.len() >= MAX_BUNDLES {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by(|a, b| a.1.checked_at_ms.total_cmp(&b.1.checked_at_ms))
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
    }

    /// Forgets the copy of `bundle` (after this isolate wrote a new config), so the next
    /// request reads KV. The last good config is kept, and so is the floor.
    pub fn invalidate(&mut self, bundle: &BundleName) {
        if let Some(e) = self.entries.get_mut(bundle) {
            e.checked_at_ms = f64::NEG_INFINITY;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Entry {
    /// Whether a valid KV value is taken or is a lagging read; a lagging read is taken all
    /// the same once KV has answered below the floor for [`REVISION_HORIZON_MS`].
    fn judge(&mut self, rollout: &Rollout, hash: u64, now_ms: f64) -> Take {
        if !self.is_lagging(rollout, hash) {
            return Take::Fresh;
        }
        let since = *self.below_since_ms.get_or_insert(now_ms);
        if now_ms - since < REVISION_HORIZON_MS {
            return Take::Lagging;
        }
        // Not lag: a control plane that started over. Its revision is the floor now.
        if let Some(r) = rollout.revision {
            self.floor = r;
        }
        Take::Fresh
    }
}

/// The prepared copy of `rollout`: `last_good`'s when it is the same config.
fn prepared(
    router: &Router,
    bundle: &BundleName,
    rollout: Rollout,
    last_good: &Option<Rc<PreparedRollout>>,
) -> Rc<PreparedRollout> {
    match last_good {
        Some(prev) if prev.rollout == rollout => prev.clone(),
        _ => Rc::new(router.prepare(bundle.clone(), rollout)),
    }
}

/// FNV-1a of a KV value, exactly as stored: tells a value read again from any other.
fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn answer(bundle: &BundleName, known: &Known) -> Result<Rc<PreparedRollout>, EdgeError> {
    match known {
        Known::Found(p) => Ok(p.clone()),
        Known::Missing => Err(EdgeError::NoRollout(bundle.to_string())),
        Known::Error(e) => Err(e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    const GOOD: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":30}"#;
    const GOOD2: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":60}"#;

    fn setup() -> (Router, RolloutCache, BundleName) {
        (
            Router::new(&Settings::default()),
            RolloutCache::new(5_000),
            BundleName::parse("demo").unwrap(),
        )
    }

    fn weight(r: &Result<Rc<PreparedRollout>, EdgeError>) -> u8 {
        r.as_ref().unwrap().rollout.weight.percent()
    }

    #[test]
    fn a_read_is_trusted_for_the_ttl_then_refreshed() {
        let (router, mut cache, demo) = setup();
        assert!(cache.fresh(&demo, 0.0).is_none());
        let (r, _) = cache.record(&router, &demo, KvRead::Value(GOOD.into()), 1_000.0);
        assert_eq!(weight(&r), 30);
        assert_eq!(weight(&cache.fresh(&demo, 5_999.0).unwrap()), 30);
        assert!(cache.fresh(&demo, 6_000.0).is_none(), "expired at the TTL");
        assert!(
            cache.fresh(&demo, 999.0).is_none(),
            "clock going back forces a read"
        );
        let (r, _) = cache.record(&router, &demo, KvRead::Value(GOOD2.into()), 6_000.0);
        assert_eq!(weight(&r), 60);
    }

    #[test]
    fn a_slow_read_is_trusted_from_when_it_was_issued() {
        let (router, mut cache, demo) = setup();
        // Issued at 1 s, answered at 3 s: trusted until 1 s + TTL, not 3 s + TTL.
        let _ = cache.record(&router, &demo, KvRead::Value(GOOD.into()), 1_000.0);
        assert!(cache.fresh(&demo, 5_999.0).is_some());
        assert!(cache.fresh(&demo, 6_000.0).is_none());
    }

    #[test]
    fn an_older_read_answering_late_does_not_replace_a_newer_one() {
        let (router, mut cache, demo) = setup();
        // Read A issued at 1 s (before a write), read B at 2 s (after it); B answers first.
        let (r, _) = cache.record(&router, &demo, KvRead::Value(GOOD2.into()), 2_000.0);
        assert_eq!(weight(&r), 60);
        let (r, staleness) = cache.record(&router, &demo, KvRead::Value(GOOD.into()), 1_000.0);
        assert_eq!(weight(&r), 60, "A's older value is not served");
        assert_eq!(staleness, None);
        assert_eq!(weight(&cache.fresh(&demo, 2_500.0).unwrap()), 60);
        assert!(cache.fresh(&demo, 7_000.0).is_none(), "B's TTL, from 2 s");
        // A failed older read does not turn the newer config into a fallback either.
        let (r, staleness) = cache.record(&router, &demo, KvRead::Failed("boom".into()), 1_500.0);
        assert_eq!((weight(&r), staleness), (60, None));
    }

    #[test]
    fn zero_ttl_reads_every_time() {
        let router = Router::new(&Settings::default());
        let mut cache = RolloutCache::new(0);
        let demo = BundleName::parse("demo").unwrap();
        let _ = cache.record(&router, &demo, KvRead::Value(GOOD.into()), 0.0);
        assert!(cache.fresh(&demo, 0.0).is_none());
    }

    #[test]
    fn faults_keep_the_last_good_config() {
        let (router, mut cache, demo) = setup();
        let _ = cache.record(&router, &demo, KvRead::Value(GOOD.into()), 0.0);
        let (r, stale) = cache.record(&router, &demo, KvRead::Value("{bad".into()), 10_000.0);
        assert_eq!(weight(&r), 30);
        assert!(matches!(stale, Some(Staleness::InvalidInKv(m)) if m.contains("(document)")));
        let (r, stale) = cache.record(
            &router,
            &demo,
            KvRead::Value(r#"{"stable":"1.0.0","weight":300}"#.into()),
            20_000.0,
        );
        assert_eq!(weight(&r), 30);
        assert!(matches!(stale, Some(Staleness::InvalidInKv(m)) if m.contains("weight")));
        let (r, stale) = cache.record(&router, &demo, KvRead::Failed("timeout".into()), 30_000.0);
        assert_eq!(weight(&r), 30);
        assert_eq!(stale, Some(Staleness::KvFailed("timeout".into())));
        assert_eq!(weight(&cache.fresh(&demo, 30_001.0).unwrap()), 30);
    }

    #[test]
    fn faults_keep_the_last_good_config_whatever_it_came_from() {
        // A pushed config is a good config too: KV's faults keep it, with its floor.
        let (router, mut cache, demo) = setup();
        let _ = cache.record(&router, &demo, KvRead::Value(C1.into()), 0.0);
        assert_eq!(cache.push(&router, &demo, 3, CUT3, 1_000.0), Ok(true));
        for (read, at) in [
            (KvRead::Value("{bad".into()), 10_000.0),
            (KvRead::Failed("timeout".into()), 20_000.0),
        ] {
            let (r, stale) = cache.record(&router, &demo, read, at);
            assert_eq!(weight(&r), 0);
            assert!(stale.is_some());
        }
        assert_eq!(cache.floor(&demo), 3);
        // And the next lagging read of revision 1 is still lag.
        let (r, _) = cache.record(&router, &demo, KvRead::Value(C1.into()), 30_000.0);
        assert_eq!(weight(&r), 0);
    }

    #[test]
    fn faults_without_a_good_config_are_errors() {
        let (router, mut cache, demo) = setup();
        let (r, _) = cache.record(
            &router,
            &demo,
            KvRead::Value(r#"{"stable":"1.0.0","weight":"x"}"#.into()),
            0.0,
        );
        let err = r.unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.public_message().contains("weight"), "{err}");
        let (r, _) = cache.record(&router, &demo, KvRead::Failed("down".into()), 10_000.0);
        assert_eq!(r.unwrap_err().status(), 503);
    }

    #[test]
    fn a_deleted_key_is_a_404_and_forgets_the_old_config() {
        let (router, mut cache, demo) = setup();
        let _ = cache.record(&router, &demo, KvRead::Value(GOOD.into()), 0.0);
        let (r, _) = cache.record(&router, &demo, KvRead::Missing, 10_000.0);
        assert!(matches!(r, Err(EdgeError::NoRollout(b)) if b == "demo"));
        let (r, _) = cache.record(&router, &demo, KvRead::Failed("down".into()), 20_000.0);
        assert_eq!(
            r.unwrap_err().status(),
            503,
            "no good config remembered after a delete"
        );
    }

    #[test]
    fn probing_unknown_bundles_does_not_grow_without_bound() {
        let (router, mut cache, demo) = setup();
        let _ = cache.record(&router, &demo, KvRead::Value(GOOD.into()), 0.0);
        for i in 0..10 * MAX_BUNDLES {
            let b = BundleName::parse(&format!("probe{i}")).unwrap();
            let _ = cache.record(&router, &b, KvRead::Missing, i as f64);
        }
        assert!(cache.len() <= MAX_BUNDLES);
        assert!(cache.fresh(&demo, 1.0).is_some(), "known bundles are kept");
    }

    // The order (the module's table). Revisions 1..4 as the control plane writes them; raw
    // values as an operator writes them (no revision).
    const C1: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":30,"revision":1}"#;
    const C2: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":60,"revision":2}"#;
    const CUT3: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":0,"revision":3}"#;
    const C4: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":20,"revision":4}"#;
    const RAW50: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":50}"#;
    const RAW10: &str = r#"{"stable":"1.0.0", "canary":"1.1.0", "weight":10}"#;
    /// A seed (or an operator's rollback written back to the seed's exact bytes).
    const RAW0: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":0}"#;
    const RAW_STABLE: &str = r#"{"stable":"1.0.0","weight":80}"#;

    /// What the isolate learns, at a time (ms).
    #[derive(Clone, Copy)]
    enum Op {
        Kv(&'static str),
        KvMissing,
        KvFailed,
        /// A push: revision and KV text.
        Push(u64, &'static str),
    }
    use Op::*;

    const H: f64 = REVISION_HORIZON_MS;

    /// Each row: what arrives when, then the weight served (`None`: no config, a 404 or an
    /// error) and the floor.
    #[allow(clippy::type_complexity)]
    const ORDER: &[(&str, &[(f64, Op)], Option<u8>, u64)] = &[
        (
            "a KV value with a newer revision is taken",
            &[(0.0, Kv(C1)), (10e3, Kv(C2))],
            Some(60),
            2,
        ),
        (
            "the same revision again is taken (a refresh)",
            &[(0.0, Kv(C2)), (10e3, Kv(C2))],
            Some(60),
            2,
        ),
        (
            "a KV value below the floor is a stale read: the config stays",
            &[(0.0, Kv(C2)), (10e3, Kv(C1))],
            Some(60),
            2,
        ),
        (
            "a push above the floor is taken",
            &[(0.0, Kv(C1)), (1e3, Push(3, CUT3))],
            Some(0),
            3,
        ),
        (
            "after a push, KV lagging 60 s never brings the older revision back",
            &[
                (0.0, Kv(C1)),
                (1e3, Push(3, CUT3)),
                (6e3, Kv(C1)),
                (31e3, Kv(C1)),
                (61e3, Kv(C1)),
            ],
            Some(0),
            3,
        ),
        (
            "then KV catches up",
            &[
                (0.0, Kv(C1)),
                (1e3, Push(3, CUT3)),
                (61e3, Kv(C1)),
                (66e3, Kv(CUT3)),
            ],
            Some(0),
            3,
        ),
        (
            "a push at or below the floor is ignored",
            &[(0.0, Kv(C2)), (1e3, Push(1, C1)), (2e3, Push(2, CUT3))],
            Some(60),
            2,
        ),
        (
            "pushes out of order: the older one is ignored",
            &[(0.0, Kv(C1)), (1e3, Push(4, C4)), (1.1e3, Push(3, CUT3))],
            Some(20),
            4,
        ),
        (
            "a push for a bundle not read yet is taken",
            &[(0.0, Push(2, C2))],
            Some(60),
            2,
        ),
        (
            "an invalid push is ignored",
            &[(0.0, Kv(C1)), (1e3, Push(5, "{\"stable\": "))],
            Some(30),
            1,
        ),
        (
            "a KV value without a revision is taken (the operator wins); the floor stays",
            &[(0.0, Kv(C2)), (10e3, Kv(RAW50))],
            Some(50),
            2,
        ),
        (
            "a push older than an operator's raw write the isolate took does not undo it",
            &[(0.0, Kv(C2)), (10e3, Kv(RAW50)), (11e3, Push(2, C2))],
            Some(50),
            2,
        ),
        (
            "the raw write, adopted and pushed with a higher revision, is taken",
            &[(0.0, Kv(C2)), (10e3, Kv(RAW50)), (12e3, Push(3, RAW50))],
            Some(50),
            3,
        ),
        (
            "the floor's revision read again after a raw write is a stale read",
            &[(0.0, Kv(C2)), (10e3, Kv(RAW50)), (20e3, Kv(C2))],
            Some(50),
            2,
        ),
        (
            "a raw value read before the floor rose is a stale read",
            &[
                (0.0, Kv(C1)),
                (5e3, Kv(RAW50)),
                (6e3, Push(3, CUT3)),
                (11e3, Kv(RAW50)),
            ],
            Some(0),
            3,
        ),
        (
            "an adopted raw value pushed, then a newer push: KV's raw text is a stale read",
            &[
                (0.0, Kv(C1)),
                (1e3, Push(2, RAW50)),
                (2e3, Push(3, CUT3)),
                (10e3, Kv(RAW50)),
            ],
            Some(0),
            3,
        ),
        (
            "an operator's new raw write after the floor rose is taken",
            &[(0.0, Kv(C1)), (1e3, Push(3, CUT3)), (10e3, Kv(RAW10))],
            Some(10),
            3,
        ),
        (
            "a raw rollback byte-identical to the seed, after newer pushes: fewer canary cohorts, taken at once",
            &[(0.0, Kv(RAW0)), (1e3, Push(1, RAW0)), (5e3, Push(2, C2)), (10e3, Kv(RAW0))],
            Some(0),
            2,
        ),
        (
            "then a lagging read of the revision it replaced is a stale read",
            &[
                (0.0, Kv(RAW0)),
                (5e3, Push(2, C2)),
                (10e3, Kv(RAW0)),
                (15e3, Kv(C2)),
            ],
            Some(0),
            2,
        ),
        (
            "and the control plane's adoption of it, pushed, is taken",
            &[
                (0.0, Kv(RAW0)),
                (5e3, Push(2, C2)),
                (10e3, Kv(RAW0)),
                (12e3, Push(3, RAW0)),
                (20e3, Kv(RAW0)),
            ],
            Some(0),
            3,
        ),
        (
            "a known raw text serving as many canary cohorts waits (could be lag)",
            &[(0.0, Kv(RAW0)), (5e3, Push(2, CUT3)), (10e3, Kv(RAW0))],
            Some(0),
            2,
        ),
        (
            "a known raw text raising exposure waits for the adoption",
            &[(0.0, Kv(RAW50)), (5e3, Push(2, C2)), (6e3, Push(3, CUT3)), (10e3, Kv(RAW50))],
            Some(0),
            3,
        ),
        (
            "... and is served once the control plane pushes its adoption",
            &[
                (0.0, Kv(RAW50)),
                (6e3, Push(3, CUT3)),
                (10e3, Kv(RAW50)),
                (12e3, Push(4, RAW50)),
            ],
            Some(50),
            4,
        ),
        (
            "a known raw text without a canary lowers exposure: taken",
            &[(0.0, Kv(RAW_STABLE)), (5e3, Push(2, C2)), (10e3, Kv(RAW_STABLE))],
            Some(80),
            2,
        ),
        (
            "raw writes back and forth at one floor are each taken",
            &[
                (0.0, Kv(C2)),
                (5e3, Kv(RAW50)),
                (10e3, Kv(RAW10)),
                (15e3, Kv(RAW50)),
            ],
            Some(50),
            2,
        ),
        (
            "below the floor for the horizon: a control plane that started over, taken",
            &[(0.0, Kv(C2)), (5e3, Kv(C1)), (5e3 + H, Kv(C1))],
            Some(30),
            1,
        ),
        (
            "the horizon runs from when the floor last rose",
            &[
                (0.0, Kv(C1)),
                (1e3, Push(3, CUT3)),
                (5e3, Kv(C1)),
                (100e3, Push(4, C4)),
                (5e3 + H, Kv(C1)),
            ],
            Some(20),
            4,
        ),
        (
            "a failed read keeps the config and the floor",
            &[(0.0, Kv(C2)), (10e3, KvFailed)],
            Some(60),
            2,
        ),
        (
            "a deleted key is taken whatever the floor",
            &[(0.0, Kv(C2)), (10e3, KvMissing)],
            None,
            2,
        ),
        (
            "a lagging read after a delete is still lag",
            &[
                (0.0, Kv(C2)),
                (10e3, KvMissing),
                (20e3, Kv(C1)),
                (30e3, Kv(C2)),
            ],
            None,
            2,
        ),
        (
            "an error (no good config) takes any valid value; the floor stays",
            &[
                (0.0, Kv(C2)),
                (5e3, KvMissing),
                (10e3, Kv("{bad")),
                (20e3, Kv(C1)),
            ],
            Some(30),
            2,
        ),
    ];

    #[test]
    fn the_order_of_kv_reads_and_pushes() {
        for &(name, ops, served, floor) in ORDER {
            let (router, mut cache, demo) = setup();
            for &(at, op) in ops {
                match op {
                    Kv(text) => {
                        let _ = cache.record(&router, &demo, KvRead::Value(text.into()), at);
                    }
                    KvMissing => {
                        let _ = cache.record(&router, &demo, KvRead::Missing, at);
                    }
                    KvFailed => {
                        let _ = cache.record(&router, &demo, KvRead::Failed("x".into()), at);
                    }
                    Push(revision, text) => {
                        let taken = cache.push(&router, &demo, revision, text, at);
                        assert_eq!(taken.is_err(), Rollout::parse(text).is_err(), "{name}");
                    }
                }
            }
            let got = cache.latest(&demo).unwrap();
            let got = got.ok().map(|p| p.rollout.weight.percent());
            assert_eq!((got, cache.floor(&demo)), (served, floor), "{name}");
        }
    }

    #[test]
    fn a_stale_read_counts_as_a_read_for_the_ttl() {
        // KV lagging: the isolate does not read it again at every request.
        let (router, mut cache, demo) = setup();
        let _ = cache.record(&router, &demo, KvRead::Value(C1.into()), 0.0);
        assert_eq!(cache.push(&router, &demo, 3, CUT3, 1_000.0), Ok(true));
        assert!(cache.fresh(&demo, 5_999.0).is_some(), "a push is a read");
        assert!(cache.fresh(&demo, 6_000.0).is_none());
        let (r, stale) = cache.record(&router, &demo, KvRead::Value(C1.into()), 6_000.0);
        assert_eq!((weight(&r), stale), (0, None), "not logged: lag is normal");
        assert_eq!(weight(&cache.fresh(&demo, 10_999.0).unwrap()), 0);
        assert!(cache.fresh(&demo, 11_000.0).is_none());
    }

    #[test]
    fn a_push_answers_whether_it_was_taken() {
        let (router, mut cache, demo) = setup();
        let _ = cache.record(&router, &demo, KvRead::Value(C2.into()), 0.0);
        assert_eq!(cache.push(&router, &demo, 2, C2, 1.0), Ok(false));
        assert_eq!(cache.push(&router, &demo, 3, CUT3, 2.0), Ok(true));
        let err = cache.push(&router, &demo, 4, "[]", 3.0).unwrap_err();
        assert_eq!(err.field, "(document)");
        assert_eq!(cache.floor(&demo), 3);
        // The same config as the last good one keeps its prepared copy.
        let before = cache.latest(&demo).unwrap().unwrap();
        let _ = cache.record(&router, &demo, KvRead::Value(CUT3.into()), 10_000.0);
        assert!(Rc::ptr_eq(&before, &cache.latest(&demo).unwrap().unwrap()));
    }
}
