//! A bundle's health minute by minute over the last 24 hours: per channel, the distinct
//! clients seen and those with an error. What an operator charts to see a canary drift
//! above stable, or what happened at 03:12 last night.
//!
//! Bounded at any traffic: at most [`MINUTES_KEPT`] rows of four numbers, plus the current
//! minute's client sets (exact up to a cap, then a sketch: see `clients.rs`).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::config::Version;
use crate::health::counts::{ChannelCounts, Clients, Counts};

/// 24 hours of minutes.
pub const MINUTES_KEPT: u64 = 24 * 60;

/// One minute's counts, under the versions live at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    pub stable: Version,
    pub canary: Option<Version>,
    pub counts: ChannelCounts,
}

/// The current minute's distinct clients, and the counts of that minute before they
/// began (a restart, or a change of versions within the minute).
#[derive(Debug, Clone, PartialEq)]
struct Current {
    minute: u64,
    stable: Version,
    canary: Option<Version>,
    before: ChannelCounts,
    clients: Clients,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Minutes {
    /// Oldest first; one per minute that had traffic, none older than 24 hours.
    rows: VecDeque<Minute>,
    /// Not persisted: after a restart, a client may count twice in the minute it happened.
    current: Option<Current>,
}

fn minute_of(now_ms: f64) -> u64 {
    (now_ms.max(0.0) / 60_000.0) as u64
}

fn sum(a: Counts, b: Counts) -> Counts {
    Counts {
        clients: a.clients + b.clients,
        errors: a.errors + b.errors,
    }
}

impl Minutes {
    /// Rows as stored (oldest first), e.g. after a restart.
    pub fn from_rows(rows: impl IntoIterator<Item = Minute>) -> Self {
        let mut rows: Vec<Minute> = rows.into_iter().collect();
        rows.sort_by_key(|m| m.minute);
        rows.dedup_by_key(|m| m.minute);
        Self {
            rows: rows.into(),
            current: None,
        }
    }

    /// Adds a batch's clients, served under `stable`/`canary`, at `now_ms`.
    pub fn add(
        &mut self,
        stable: &Version,
        canary: Option<&Version>,
        clients: &Clients,
        now_ms: f64,
    ) {
        let minute = minute_of(now_ms);
        if self.rows.back().is_some_and(|last| last.minute > minute) {
            // A late batch (an isolate's clock behind the object's): history is not
            // rewritten; its clients count in the evidence and windows, not here.
            return;
        }
        let same = self.current.as_ref().is_some_and(|c| {
            c.minute == minute && &c.stable == stable && c.canary.as_ref() == canary
        });
        if !same {
            // A new minute, or new versions within this one: carry the minute's counts so far.
            let before = match self.rows.back() {
                Some(last) if last.minute == minute => last.counts,
                _ => ChannelCounts::default(),
            };
            self.current = Some(Current {
                minute,
                stable: stable.clone(),
                canary: canary.cloned(),
                before,
                clients: Clients::default(),
            });
        }
        let Some(current) = self.current.as_mut() else {
            return;
        };
        current.clients.merge(clients);
        let now = current.clients.counts();
        let row = Minute {
            minute,
            stable: current.stable.clone(),
            canary: current.canary.clone(),
            counts: ChannelCounts {
                stable: sum(current.before.stable, now.stable),
                canary: sum(current.before.canary, now.canary),
            },
        };
        match self.rows.back_mut() {
            Some(last) if last.minute == minute => *last = row,
            _ => self.rows.push_back(row),
        }
        self.prune(minute);
    }

    fn prune(&mut self, minute: u64) {
        let oldest = minute.saturating_sub(MINUTES_KEPT - 1);
        while self.rows.front().is_some_and(|m| m.minute < oldest) {
            self.rows.pop_front();
        }
    }

    /// The minutes from `since` (a Unix minute) on, oldest first.
    pub fn since(&self, since: u64) -> impl Iterator<Item = &Minute> {
        self.rows.iter().filter(move |m| m.minute >= since)
    }

    pub fn rows(&self) -> impl Iterator<Item = &Minute> {
        self.rows.iter()
    }

    /// The rows of `self` that `before` does not hold as they are (new minutes, or changed
    /// counts or versions), oldest first: what storage must write. One pass over both, each
    /// sorted by minute: O(n + m), at most 2 × [`MINUTES_KEPT`] steps however many change
    /// (the current minute, as a rule).
    pub fn changed_since<'a>(&'a self, before: &'a Minutes) -> impl Iterator<Item = &'a Minute> {
        let mut old = before.rows.iter().peekable();
        self.rows.iter().filter(move |row| {
            while old.next_if(|o| o.minute < row.minute).is_some() {}
            old.peek().is_none_or(|o| *o != *row)
        })
    }

    /// The oldest minute kept, if any.
    pub fn oldest(&self) -> Option<u64> {
        self.rows.front().map(|m| m.minute)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: f64 = 60_000.0;
    const T0: f64 = 29_000_000.0 * MIN;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn clients(canary: &[(u64, bool)], stable: &[(u64, bool)]) -> Clients {
        let mut c = Clients::default();
        for &(id, error) in canary {
            c.channel_mut(true).insert(id, error);
        }
        for &(id, error) in stable {
            c.channel_mut(false).insert(id, error);
        }
        c
    }

    fn counts(m: &Minute) -> (u64, u64, u64, u64) {
        let c = m.counts;
        (
            c.stable.clients,
            c.stable.errors,
            c.canary.clients,
            c.canary.errors,
        )
    }

    #[test]
    fn distinct_clients_per_minute_across_batches() {
        let (s, c) = (v("1.0.0"), v("1.1.0"));
        let mut m = Minutes::default();
        m.add(
            &s,
            Some(&c),
            &clients(&[(1, false), (2, true)], &[(10, false)]),
            T0,
        );
        // Another isolate's batch in the same minute, with client 2 again.
        m.add(
            &s,
            Some(&c),
            &clients(&[(2, true), (3, false)], &[(11, true)]),
            T0 + 30_000.0,
        );
        assert_eq!(m.len(), 1);
        let row = m.rows().next().unwrap();
        assert_eq!(row.minute, (T0 / MIN) as u64);
        assert_eq!(counts(row), (2, 1, 3, 1), "client 2 once");
        m.add(&s, Some(&c), &clients(&[(2, false)], &[]), T0 + MIN);
        assert_eq!(m.len(), 2, "a new minute, a new row");
        assert_eq!(counts(m.rows().last().unwrap()), (0, 0, 1, 0));
        assert_eq!(m.since((T0 / MIN) as u64 + 1).count(), 1);
    }

    #[test]
    fn a_change_of_versions_within_a_minute_keeps_what_came_before() {
        let s = v("1.0.0");
        let mut m = Minutes::default();
        m.add(
            &s,
            Some(&v("1.1.0")),
            &clients(&[(1, true)], &[(2, false)]),
            T0,
        );
        m.add(&s, None, &clients(&[], &[(3, false)]), T0 + 10_000.0);
        let row = m.rows().next().unwrap();
        assert_eq!(counts(row), (2, 0, 1, 1));
        assert_eq!(
            row.canary, None,
            "labelled with the versions live at its end"
        );
    }

    #[test]
    fn bounded_to_24_hours_at_any_traffic() {
        let s = v("1.0.0");
        let mut m = Minutes::default();
        for minute in 0..(3 * MINUTES_KEPT) {
            let batch = clients(&[], &[(minute, minute % 7 == 0)]);
            m.add(&s, None, &batch, T0 + minute as f64 * MIN);
        }
        assert_eq!(m.len() as u64, MINUTES_KEPT);
        let first = m.rows().next().unwrap().minute;
        let last = m.rows().last().unwrap().minute;
        assert_eq!(last - first, MINUTES_KEPT - 1);
        // A heavy minute stays one row of numbers.
        let heavy: Vec<(u64, bool)> = (0..100_000).map(|i| (i, i % 50 == 0)).collect();
        m.add(
            &s,
            None,
            &clients(&[], &heavy),
            T0 + 3.0 * MINUTES_KEPT as f64 * MIN,
        );
        let row = m.rows().last().unwrap();
        let est = row.counts.stable.clients as f64;
        assert!((est - 100_000.0).abs() / 100_000.0 < 0.1, "{est}");
    }

    #[test]
    fn after_a_restart_the_minute_goes_on_and_late_batches_do_not_reorder() {
        let s = v("1.0.0");
        let stored = Minute {
            minute: (T0 / MIN) as u64,
            stable: s.clone(),
            canary: None,
            counts: ChannelCounts {
                stable: Counts {
                    clients: 5,
                    errors: 1,
                },
                canary: Counts::default(),
            },
        };
        let mut m = Minutes::from_rows([stored]);
        m.add(&s, None, &clients(&[], &[(9, true)]), T0 + 1_000.0);
        assert_eq!(counts(m.rows().next().unwrap()), (6, 2, 0, 0));
        m.add(&s, None, &clients(&[], &[(9, true)]), T0 - MIN);
        assert_eq!(m.len(), 1, "a batch from an earlier minute adds no row");
    }

    /// The diff storage used before: for each row, a scan of every stored row.
    fn changed_quadratic<'a>(after: &'a Minutes, before: &Minutes) -> Vec<&'a Minute> {
        after
            .rows()
            .filter(|m| before.rows().find(|x| x.minute == m.minute) != Some(*m))
            .collect()
    }

    fn full_day(s: &Version) -> Minutes {
        let mut m = Minutes::default();
        for minute in 0..MINUTES_KEPT {
            let batch = clients(&[], &[(minute, minute % 7 == 0)]);
            m.add(s, None, &batch, T0 + minute as f64 * MIN);
        }
        m
    }

    #[test]
    fn changed_since_is_what_the_row_by_row_scan_finds() {
        let (s, c) = (v("1.0.0"), v("1.1.0"));
        let day = full_day(&s);
        let minute = |i: u64| T0 + i as f64 * MIN;
        let mut cases: Vec<(Minutes, Minutes)> = vec![
            (Minutes::default(), day.clone()),
            (day.clone(), day.clone()),
            (day.clone(), Minutes::default()),
        ];
        // The current minute grows.
        let mut grown = day.clone();
        grown.add(
            &s,
            None,
            &clients(&[], &[(1 << 40, true)]),
            minute(MINUTES_KEPT - 1),
        );
        cases.push((day.clone(), grown));
        // A new minute: one appended, the oldest pruned.
        let mut next = day.clone();
        next.add(
            &s,
            Some(&c),
            &clients(&[(7, false)], &[]),
            minute(MINUTES_KEPT),
        );
        cases.push((day.clone(), next.clone()));
        // Hours later, with gaps.
        let mut later = next.clone();
        for i in [MINUTES_KEPT + 90, MINUTES_KEPT + 91, MINUTES_KEPT + 400] {
            later.add(&s, None, &clients(&[], &[(i, false)]), minute(i));
        }
        cases.push((next.clone(), later.clone()));
        cases.push((later.clone(), next));
        // Rows that differ anywhere (not what `add` does, but the diff must not assume it).
        let mut edited = day.clone();
        edited.rows[3].counts.stable.errors += 1;
        edited.rows[700].canary = Some(c.clone());
        edited.rows.remove(900);
        cases.push((day.clone(), edited.clone()));
        cases.push((edited, day));
        for (i, (before, after)) in cases.iter().enumerate() {
            let fast: Vec<&Minute> = after.changed_since(before).collect();
            assert_eq!(fast, changed_quadratic(after, before), "case {i}");
        }
        assert_eq!(
            cases[3].1.changed_since(&cases[3].0).count(),
            1,
            "only the current minute"
        );
    }

    /// `cargo test -p canary-core --release -- --ignored --nocapture minutes_diff_cost`:
    /// the cost of one ingest's diff of a full day (1,440 rows), before and after.
    #[test]
    #[ignore]
    fn minutes_diff_cost() {
        let s = v("1.0.0");
        let before = full_day(&s);
        let mut after = before.clone();
        after.add(
            &s,
            None,
            &clients(&[], &[(1 << 40, true)]),
            T0 + (MINUTES_KEPT - 1) as f64 * MIN,
        );
        let time = |f: &dyn Fn() -> usize| {
            let runs = 200;
            let start = std::time::Instant::now();
            let mut n = 0;
            for _ in 0..runs {
                n += std::hint::black_box(f());
            }
            assert_eq!(n, runs);
            start.elapsed().as_secs_f64() * 1e6 / runs as f64
        };
        let quadratic = time(&|| changed_quadratic(&after, &before).len());
        let linear = time(&|| after.changed_since(&before).count());
        println!(
            "minutes diff of {MINUTES_KEPT} rows: row-by-row scan {quadratic:.1} µs, one pass {linear:.1} µs"
        );
    }
}
