//! Health counts per channel in time windows, for one (stable, canary) pair of versions.

use serde::{Deserialize, Serialize};

use crate::config::Version;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
    }

    pub fn rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.errors == 0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCounts {
    pub stable: Counts,
    pub canary: Counts,
}

impl ChannelCounts {
    pub fn add(&mut self, other: &ChannelCounts) {
        self.stable.add(other.stable);
        self.canary.add(other.canary);
    }

    pub fn is_empty(&self) -> bool {
        self.stable.is_empty() && self.canary.is_empty()
    }
}

/// Counts sent from an edge isolate to the bundle's control plane, naming the versions it
/// served: counts for versions that are no longer live are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub stable: Version,
    pub canary: Option<Version>,
    pub counts: ChannelCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: f64,
    pub counts: ChannelCounts,
}

/// The counts of one (stable, canary) pair: the current and previous window, and totals
/// since the pair went live.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthWindows {
    pub stable: Option<Version>,
    pub canary: Option<Version>,
    /// Oldest first; at most the previous and the current window.
    pub windows: Vec<Window>,
    pub totals: ChannelCounts,
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

    /// Adds counts at `now_ms`, dropping windows older than the previous one.
    pub fn add(&mut self, counts: &ChannelCounts, window_secs: u32, now_ms: f64) {
        let (current, window_ms) = window_start(window_secs, now_ms);
        match self.windows.last_mut() {
            Some(w) if w.start_ms == current => w.counts.add(counts),
            _ => self.windows.push(Window {
                start_ms: current,
                counts: *counts,
            }),
        }
        self.windows
            .retain(|w| w.start_ms >= current - window_ms && w.start_ms <= current);
        self.totals.add(counts);
    }

    /// Counts in the current and previous window, as seen at `now_ms`.
    pub fn recent(&self, window_secs: u32, now_ms: f64) -> ChannelCounts {
        let (current, window_ms) = window_start(window_secs, now_ms);
        let mut sum = ChannelCounts::default();
        for w in &self.windows {
            if w.start_ms >= current - window_ms && w.start_ms <= current {
                sum.add(&w.counts);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(stable: (u64, u64), canary: (u64, u64)) -> ChannelCounts {
        ChannelCounts {
            stable: Counts {
                requests: stable.0,
                errors: stable.1,
            },
            canary: Counts {
                requests: canary.0,
                errors: canary.1,
            },
        }
    }

    #[test]
    fn windows_age_out_and_totals_keep_everything() {
        let v = |s| Version::parse(s).unwrap();
        let mut h = HealthWindows::default();
        h.reset(&v("1.0.0"), Some(&v("1.1.0")));
        h.add(&counts((10, 1), (5, 2)), 60, 1_000.0);
        h.add(&counts((10, 0), (5, 0)), 60, 61_000.0);
        assert_eq!(h.recent(60, 61_000.0), counts((20, 1), (10, 2)));
        assert_eq!(h.recent(60, 121_000.0), counts((10, 0), (5, 0)));
        assert_eq!(h.recent(60, 181_000.0), ChannelCounts::default());
        h.add(&counts((1, 0), (1, 0)), 60, 181_000.0);
        assert_eq!(h.windows.len(), 1, "old windows dropped");
        assert_eq!(h.totals, counts((21, 1), (11, 2)));
        assert!(h.is_for(&v("1.0.0"), Some(&v("1.1.0"))));
        assert!(!h.is_for(&v("1.0.0"), Some(&v("1.2.0"))));
    }
}
