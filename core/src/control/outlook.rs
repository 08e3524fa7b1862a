//! When a waiting step will decide: the canary clients it still needs and, at the step's
//! traffic so far, when they will have come, said ahead of time so that an operator learns
//! that a step is below the traffic it needs before its hold ends, not when it pauses.
//!
//! The projection assumes the rates seen so far go on: the step's counts scaled up until the
//! verdict passes. It is a forecast for people, never an input to a decision.

use serde::Serialize;

use super::tracker::BOOT_TIMES_KEPT;
use super::verdict::boot_time::BootTimes;
use super::verdict::{Evidence, Exposure, TestPolicy, Verdict};
use crate::health::counts::{ChannelCounts, Counts};

/// Largest growth of the step's counts the projection looks at: past it, the step is
/// "not at these rates".
const MAX_SCALE: f64 = 256.0;
/// Age of a step before its traffic is taken as a rate (a few isolates' flushes).
pub const MIN_AGE_MS: f64 = 15_000.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outlook {
    /// Canary clients the step still needs to pass if its rates stay as they are (`None`:
    /// at these rates it never passes).
    pub clients_needed: Option<u64>,
    /// Canary clients counted a minute in this step so far.
    pub clients_per_min: f64,
    /// Minutes until then, at that rate.
    pub minutes_to_decide: Option<f64>,
    /// It would decide after the hold ends: the step is below the traffic it needs.
    pub below_needed_traffic: bool,
    /// One line for people (status, console, `release`).
    pub message: String,
}

/// The evidence with every count multiplied by `k`, and each boot time repeated as often
/// (the early silence data left as they are: it only ever cuts).
fn scaled(e: &Evidence, k: f64) -> Evidence {
    let c = |x: Counts| Counts {
        clients: (x.clients as f64 * k).round() as u64,
        errors: (x.errors as f64 * k).round() as u64,
    };
    let ch = |x: ChannelCounts| ChannelCounts {
        stable: c(x.stable),
        canary: c(x.canary),
    };
    Evidence {
        seen: ch(e.seen),
        silence: ch(e.silence),
        early: e.early.clone(),
        boot: BootTimes::new(stretch(e.boot.stable(), k), stretch(e.boot.canary(), k)),
    }
}

/// Sorted values `k` times as many (each repeated in order; `BootTimes` keeps its bound).
fn stretch(values: &[u32], k: f64) -> Vec<u32> {
    let m = ((values.len() as f64 * k).round() as usize).min(BOOT_TIMES_KEPT);
    (0..m).map(|i| values[i * values.len() / m]).collect()
}

/// The outlook of a step that is waiting for evidence, `None` when the verdict is not
/// waiting (a pass or a cut) or the step is too young (under [`MIN_AGE_MS`]) to have a rate.
pub fn outlook(
    evidence: &Evidence,
    exposure: Exposure,
    policy: &TestPolicy,
    step_started_ms: f64,
    hold_until_ms: f64,
    now_ms: f64,
) -> Option<Outlook> {
    if evidence.judge(exposure, policy).verdict != Verdict::Inconclusive {
        return None;
    }
    if now_ms - step_started_ms < MIN_AGE_MS {
        return None;
    }
    let minutes = (now_ms - step_started_ms) / 60_000.0;
    let n = evidence.seen.canary.clients;
    let per_min = n as f64 / minutes;
    let passes = |k: f64| scaled(evidence, k).judge(exposure, policy).verdict == Verdict::Pass;
    // The smallest growth that passes (bisection: more clients at the same rates is more
    // evidence either way).
    let needed = if n == 0 {
        // Nothing to scale: at least the clients a step needs.
        Some(policy.min_clients)
    } else if passes(MAX_SCALE) {
        let (mut lo, mut hi) = (1.0, MAX_SCALE);
        for _ in 0..40 {
            let mid = (lo + hi) / 2.0;
            if passes(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(((hi * n as f64).ceil() as u64).saturating_sub(n).max(1))
    } else {
        None
    };
    let to_decide = needed.filter(|_| per_min > 0.0).map(|k| k as f64 / per_min);
    let hold_left = (hold_until_ms - now_ms) / 60_000.0;
    let below = match to_decide {
        Some(m) => m > hold_left,
        None => true,
    };
    let message = match (needed, to_decide) {
        (None, _) => format!(
            "at the rates seen so far this step does not pass: the canary's counts would have to improve (hold ends in {:.0} min)",
            hold_left.max(0.0)
        ),
        (Some(k), None) => format!(
            "needs about {k} more canary clients and none came yet: below the traffic this step needs (hold ends in {:.0} min)",
            hold_left.max(0.0)
        ),
        (Some(k), Some(m)) if below => format!(
            "below the traffic this step needs: about {k} more canary clients, {m:.0} min at {per_min:.1} a minute, after the hold ends in {:.0} min (it will pause unless traffic rises)",
            hold_left.max(0.0)
        ),
        (Some(k), Some(m)) => format!(
            "about {k} more canary clients to decide, {m:.0} min at {per_min:.1} a minute (hold ends in {:.0} min)",
            hold_left.max(0.0)
        ),
    };
    Some(Outlook {
        clients_needed: needed,
        clients_per_min: per_min,
        minutes_to_decide: to_decide,
        below_needed_traffic: below,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TestPolicy {
        TestPolicy::from_health(&crate::config::HealthPolicy::default())
    }

    fn evidence(nc: u64, xc: u64, ns: u64, xs: u64) -> Evidence {
        let mut e = Evidence::default();
        e.seen.canary = Counts {
            clients: nc,
            errors: xc,
        };
        e.seen.stable = Counts {
            clients: ns,
            errors: xs,
        };
        e
    }

    const FULL: Exposure = Exposure {
        canary_share: 1.0,
        judge_silence: false,
    };
    const MIN: f64 = 60_000.0;

    #[test]
    fn a_waiting_step_says_how_many_clients_it_needs_and_whether_they_come_in_time() {
        let p = policy();
        // (canary clients, failures, minutes into the step, hold left in minutes) →
        // (needs clients, below the traffic it needs).
        for ((nc, xc, minutes, hold_left), want) in [
            // Healthy so far at 50 a minute, an hour of hold left: decides in time.
            ((250, 2, 5.0, 60.0), (true, false)),
            // 5 a minute with half an hour of hold left: the ~225 clients it needs take 45 min.
            ((25, 0, 5.0, 30.0), (true, true)),
            // At the floor's rate it never passes, however many come.
            ((1_000, 30, 20.0, 45.0), (false, true)),
        ] {
            let now = minutes * MIN;
            let o = outlook(
                &evidence(nc, xc, 0, 0),
                FULL,
                &p,
                0.0,
                now + hold_left * MIN,
                now,
            )
            .expect("waiting");
            assert_eq!(
                (o.clients_needed.is_some(), o.below_needed_traffic),
                want,
                "{nc} {xc}: {}",
                o.message
            );
        }
    }

    #[test]
    fn the_projection_is_where_the_verdict_passes() {
        let p = policy();
        let e = evidence(250, 1, 0, 0);
        let o = outlook(&e, FULL, &p, 0.0, 65.0 * MIN, 5.0 * MIN).expect("waiting");
        let k = o.clients_needed.expect("passes at some size");
        let grown = |extra: u64| {
            let f = (250 + extra) as f64 / 250.0;
            scaled(&e, f).judge(FULL, &p).verdict
        };
        assert_eq!(grown(k + 1), Verdict::Pass);
        assert_ne!(grown(k.saturating_sub(k / 10 + 2)), Verdict::Pass);
        // No outlook for a step that is not waiting, nor in its first 15 s.
        assert!(outlook(
            &evidence(10_000, 10, 0, 0),
            FULL,
            &p,
            0.0,
            65.0 * MIN,
            30.0 * MIN
        )
        .is_none());
        assert!(outlook(&e, FULL, &p, 0.0, 65.0 * MIN, 0.2 * MIN).is_none());
    }
}
