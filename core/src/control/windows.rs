//! Health counts per channel in time windows, for one (stable, canary) pair of versions.

use serde::{Deserialize, Serialize};

use crate::config::Version;
use crate::health::counts::{ChannelCounts, Clients};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: f64,
    pub clients: Clients,
}

/// The counts of one (stable, canary) pair: the current and previous window, and totals
/// since the pair went live.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthWindows {
    pub stable: Option<Version>,
    pub canary: Option<Version>,
    /// Oldest first; at most the previous and the current window.
    pub windows: Vec<Window>,
    /// Every client since the pair went live.
    pub totals: Clients,
}

fn window_start(window_secs: u32, now_ms: f64) -> (f64, f64) {
    let window_ms = f64::from(window_secs) * 1000.0;
    ((now_ms / window_ms).floor() * window_ms, window_ms)
}

impl HealthWindows {
    /// Whether these counts are about `stable` and `canary`.
    pub fn is_for(&self, stable: &Version, canary: Option<&Version>) -> bool {
        self.stable.as_ref() == Some(stable) && self.canary.as_ref() == canary
    }

    /// Starts afresh for another pair of versions: one release's errors never count against
    /// the next.
    pub fn reset(&mut self, stable: &Version, canary: Option<&Version>) {
        *self = Self {
            stable: Some(stable.clone()),
            canary: canary.cloned(),
            ..Self::default()
        };
    }

    /// Adds a batch's clients at `now_ms`, dropping windows older than the previous one.
    pub fn add(&mut self, clients: &Clients, window_secs: u32, now_ms: f64) {
        let (current, window_ms) = window_start(window_secs, now_ms);
        match self.windows.last_mut() {
            Some(w) if w.start_ms == current => w.clients.merge(clients),
            _ => self.windows.push(Window {
                start_ms: current,
                clients: clients.clone(),
            }),
        }
        self.windows
            .retain(|w| w.start_ms >= current - window_ms && w.start_ms <= current);
        self.totals.merge(clients);
    }

    /// Distinct clients in the current and previous window, as seen at `now_ms`.
    pub fn recent(&self, window_secs: u32, now_ms: f64) -> ChannelCounts {
        let (current, window_ms) = window_start(window_secs, now_ms);
        let mut union = Clients::default();
        for w in &self.windows {
            if w.start_ms >= current - window_ms && w.start_ms <= current {
                union.merge(&w.clients);
            }
        }
        union.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::counts::Counts;

    /// `n` distinct clients of which the first `e` had an error, ids from `base`.
    pub(crate) fn clients(base: u64, stable: (u64, u64), canary: (u64, u64)) -> Clients {
        let mut c = Clients::default();
        for (ch, (n, e), offset) in [(false, stable, 0), (true, canary, 1 << 32)] {
            for i in 0..n {
                let id = base + offset + i;
                c.channel_mut(ch).insert(id, false);
                if i < e {
                    c.channel_mut(ch).insert(id, true);
                }
            }
        }
        c
    }

    fn counts(stable: (u64, u64), canary: (u64, u64)) -> ChannelCounts {
        ChannelCounts {
            stable: Counts {
                clients: stable.0,
                errors: stable.1,
            },
            canary: Counts {
                clients: canary.0,
                errors: canary.1,
            },
        }
    }

    #[test]
    fn windows_age_out_and_totals_keep_everything() {
        let v = |s| Version::parse(s).unwrap();
        let mut h = HealthWindows::default();
        h.reset(&v("1.0.0"), Some(&v("1.1.0")));
        h.add(&clients(0, (10, 1), (5, 2)), 60, 1_000.0);
        h.add(&clients(100, (10, 0), (5, 0)), 60, 61_000.0);
        assert_eq!(h.recent(60, 61_000.0), counts((20, 1), (10, 2)));
        assert_eq!(h.recent(60, 121_000.0), counts((10, 0), (5, 0)));
        assert_eq!(h.recent(60, 181_000.0), ChannelCounts::default());
        h.add(&clients(200, (1, 0), (1, 0)), 60, 181_000.0);
        assert_eq!(h.windows.len(), 1, "old windows dropped");
        assert_eq!(h.totals.counts(), counts((21, 1), (11, 2)));
        assert!(h.is_for(&v("1.0.0"), Some(&v("1.1.0"))));
        assert!(!h.is_for(&v("1.0.0"), Some(&v("1.2.0"))));
    }

    #[test]
    fn a_client_counts_once_however_often_it_loads_or_fails() {
        let mut h = HealthWindows::default();
        for _ in 0..1000 {
            let mut c = Clients::default();
            c.canary.insert(42, false);
            c.canary.insert(42, true);
            h.add(&c, 60, 0.0);
        }
        assert_eq!(
            h.recent(60, 0.0).canary,
            Counts {
                clients: 1,
                errors: 1
            }
        );
        // An error from a client whose load was not seen still counts it as a client.
        let mut c = Clients::default();
        c.canary.insert(7, true);
        h.add(&c, 60, 0.0);
        assert_eq!(
            h.recent(60, 0.0).canary,
            Counts {
                clients: 2,
                errors: 2
            }
        );
    }
}
