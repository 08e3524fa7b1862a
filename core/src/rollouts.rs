//! The per-isolate copy of rollout configs: how long a KV read is trusted, and what is
//! served when KV fails or holds an invalid value (the last good config, else an error).
//!
//! Time is an argument (`now_ms`), so the TTL and fault rules are tested natively.

use std::collections::HashMap;
use std::rc::Rc;

use crate::config::{BundleName, Rollout};
use crate::decide::{PreparedRollout, Router};
use crate::error::EdgeError;

/// Most bundles remembered per isolate; unknown names probed by clients must not grow the
/// map without bound.
pub const MAX_BUNDLES: usize = 256;

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

    /// Records a KV read and returns what to serve, with a note when it is the last good
    /// config rather than what KV holds.
    ///
    /// `read_started_ms` is when the read was issued: KV may have answered with a value
    /// from any time after that, so the TTL runs from there (stamped at the answer, a slow
    /// read that began before a rollback write would keep the old weight a TTL past it).
    /// A read issued before the one already recorded is older news: it is not recorded,
    /// and the newer answer is served.
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
        let last_good = self.entries.get(bundle).and_then(|e| e.last_good.clone());
        let (known, staleness) = match read {
            KvRead::Missing => (Known::Missing, None),
            KvRead::Value(json) => match Rollout::parse(&json) {
                Ok(rollout) => {
                    let fresh = match &last_good {
                        // Same config as before: keep the prepared copy.
                        Some(prev) if prev.rollout == rollout => prev.clone(),
                        _ => Rc::new(router.prepare(bundle.clone(), rollout)),
                    };
                    (Known::Found(fresh), None)
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
        self.make_room(bundle);
        self.entries.insert(
            bundle.clone(),
            Entry {
                checked_at_ms: read_started_ms,
                known,
                last_good,
            },
        );
        (result, staleness)
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
    /// request reads KV. The last good config is kept.
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
}
