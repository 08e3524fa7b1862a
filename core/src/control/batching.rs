//! The edge side of health counting: counts an isolate has not yet sent to the bundle's
//! control plane, and when to send them.

use super::counts::{Batch, ChannelCounts};
use crate::config::Version;

/// Counts an edge isolate has not yet sent to the monitor, for one bundle. Sending on every
/// request would put a Durable Object call on the hot path; instead counts are batched and
/// flushed when an error is pending (errors matter at once), when enough requests piled up,
/// or when enough time passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub stable: Version,
    pub canary: Option<Version>,
    pub counts: ChannelCounts,
    pub last_flush_ms: f64,
}

/// Longest an error waits in an isolate before it is sent to the monitor.
pub const ERROR_FLUSH_MS: u64 = 1_000;

/// When an isolate flushes its counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlushPolicy {
    pub every_ms: u64,
    pub every_requests: u64,
}

impl Pending {
    pub fn new(stable: Version, canary: Option<Version>, now_ms: f64) -> Self {
        Self {
            stable,
            canary,
            counts: ChannelCounts::default(),
            last_flush_ms: now_ms,
        }
    }

    /// Whether these counts belong to the given live versions.
    pub fn is_for(&self, stable: &Version, canary: Option<&Version>) -> bool {
        &self.stable == stable && self.canary.as_ref() == canary
    }

    /// Errors go out within a second (or `every_ms`, if shorter), so that a failing canary
    /// is judged at once without turning every error into a Durable Object call.
    pub fn due(&self, policy: FlushPolicy, now_ms: f64) -> bool {
        let c = &self.counts;
        let since = now_ms - self.last_flush_ms;
        let error_wait = policy.every_ms.min(ERROR_FLUSH_MS) as f64;
        !c.is_empty()
            && ((c.stable.errors + c.canary.errors > 0 && since >= error_wait)
                || c.stable.requests + c.canary.requests >= policy.every_requests
                || since >= policy.every_ms as f64)
    }

    /// Takes the counts as a batch and starts afresh.
    pub fn take(&mut self, now_ms: f64) -> Batch {
        self.last_flush_ms = now_ms;
        Batch {
            stable: self.stable.clone(),
            canary: self.canary.clone(),
            counts: std::mem::take(&mut self.counts),
        }
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    #[test]
    fn flushes_on_errors_volume_or_time() {
        let policy = FlushPolicy {
            every_ms: 10_000,
            every_requests: 100,
        };
        let v = |s| Version::parse(s).unwrap();
        let mut p = Pending::new(v("1.0.0"), Some(v("1.1.0")), 0.0);
        assert!(!p.due(policy, 1e9), "nothing to send");
        p.counts.stable.requests = 5;
        assert!(!p.due(policy, 5_000.0));
        assert!(p.due(policy, 10_000.0), "time");
        p.counts.canary.errors = 1;
        assert!(!p.due(policy, 500.0), "errors wait at most a second...");
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
        assert_eq!(batch.counts.canary.errors, 1);
        assert!(p.counts.is_empty());
        p.counts.canary.requests = 100;
        assert!(p.due(policy, 3.0), "volume");
        assert!(p.is_for(&v("1.0.0"), Some(&v("1.1.0"))));
        assert!(!p.is_for(&v("1.0.0"), Some(&v("1.2.0"))));
    }
}
