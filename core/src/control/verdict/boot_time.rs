//! The boot-time guard: is the canary's boot time worse than stable's by more than
//! `max_boot_slowdown` (`s`) on the median? One value per client (its first boot's
//! `boot_ms`), the step's tracked clients only, so an attacker's weight is his networks'.
//!
//! A sign test against stable's median, each side an anytime-valid e-process:
//!
//! - **Stable's median, bounded uniformly in time.** Among `t` stable values, the count
//!   below the true median `m` is dominated by Binomial(t, ½). A mixture e-process of that
//!   count against ½ (odds ratios [`BOUND_ODDS`], one-sided) stays below `1/α_m` at every
//!   `t` with probability `1 − α_m` (Ville); the order statistic at the largest count it
//!   allows is then an upper bound `m⁺ ≥ m` (the same on the other side, a lower bound
//!   `m⁻ ≤ m`), valid at every look at once.
//! - **Cut.** Null: the canary's median is at most `(1+s)·m`. Each canary value is a
//!   Bernoulli trial "slower than `(1+s)·m⁺`" against ½, mixed over [`WORSE`] odds ratios.
//!   While `m⁺ ≥ m`, a higher threshold only lowers the count of slower values, and the
//!   e-value is monotone in it: it is at most the e-value at the fixed threshold `(1+s)·m`,
//!   a test supermartingale under the null. So a wrong cut has probability at most
//!   `α_m + α_t` (the bound failing, or the e-process crossing `1/α_t`): the family's α is
//!   split, a tenth to the bound ([`BOUND_SHARE`]) and the rest to the trials, whose log
//!   e-value is reported net of it (`+ ln 0.9`) so it compares with the verdict's common
//!   cut threshold.
//! - **Pass.** Null: the canary's median is above `(1+s)·m`. The same with `m⁻` and
//!   [`BETTER`] odds ratios (trials "slower than `(1+s)·m⁻`", fewer than half under the
//!   alternative), at the pass's level `β` (`pass_confidence`), split the same way:
//!   `β/10 + 9β/10`. A step passes only when this rejects too.
//!
//! Hostile clients (`d`): a cut holds with the `d` slowest canary values and the `d` fastest
//! stable values removed; a pass with the `d` fastest canary values and the `d` slowest
//! stable values removed. Each removal only weakens the evidence, so the bounds hold
//! whatever those clients sent.
//!
//! Assumptions, stated: clients are independent, and whether a client's value has arrived
//! yet does not depend on the value (loads reach the control plane up to `HEALTH_FLUSH_MS`
//! late, boots within a second of booting: a slow boot arrives a little later, which biases
//! both channels towards fast alike; measured in `bench/verdict_sim.rs`). Times are whole
//! ms: ties are handled (the bounds count strictly below, the trials strictly above).

use serde::Serialize;

use super::{add_trials, mixture, normal_quantile, TestPolicy};

/// Odds ratios of the canary's "slower than the threshold" against ½ under a worse canary
/// (equal weights): +50% on the median at σ 0.8 is about 1.4, +200% about 6.
const WORSE: [f64; 6] = [1.25, 1.5, 2.0, 3.0, 5.0, 10.0];
const WORSE_WEIGHTS: [f64; 6] = [1.0 / 6.0; 6];
/// Under a canary as fast as stable, "slower than 1.25·m" has odds about 1/1.55 (σ 0.8) and
/// 1/1.35 (σ 1.2): most weight there.
const BETTER: [f64; 6] = [
    1.0 / 1.15,
    1.0 / 1.25,
    1.0 / 1.5,
    1.0 / 2.0,
    1.0 / 3.0,
    1.0 / 5.0,
];
const BETTER_WEIGHTS: [f64; 6] = [0.2, 0.25, 0.25, 0.15, 0.1, 0.05];
/// Odds ratios of the median bound's e-process (equal weights; one-sided, one per bound).
/// Fine near 1: at 2,000 stable values the bound is then within ~3.5% of the median's rank.
const BOUND_ODDS: [f64; 8] = [1.02, 1.035, 1.05, 1.1, 1.2, 1.4, 1.8, 3.0];
/// The share of a family's α spent on stable's bound (the rest on the canary's trials):
/// stable's sample is the larger, so a smaller share costs it little, and the trials, which
/// decide how many canary clients a verdict takes, keep most.
const BOUND_SHARE: f64 = 0.1;

/// The step's first boot times (`boot_ms`), per channel, as the tracker kept them (the first
/// `tracker::BOOT_TIMES_KEPT` of each), each channel kept sorted: the verdict, asked at every
/// batch, reads order statistics and counts by index and binary search instead of copying
/// and selecting up to 20,000 values a channel each time (measured natively, `judge_cost`:
/// 0.7 ms a call that way, 12 µs this way).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootTimes {
    stable: Vec<u32>,
    canary: Vec<u32>,
}

impl BootTimes {
    /// From values in any order (a restore, a stored cut, a test): sorted once.
    pub fn new(mut stable: Vec<u32>, mut canary: Vec<u32>) -> Self {
        stable.truncate(crate::control::tracker::BOOT_TIMES_KEPT);
        canary.truncate(crate::control::tracker::BOOT_TIMES_KEPT);
        stable.sort_unstable();
        canary.sort_unstable();
        Self { stable, canary }
    }

    /// Stable's values, sorted.
    pub fn stable(&self) -> &[u32] {
        &self.stable
    }

    /// The canary's values, sorted.
    pub fn canary(&self) -> &[u32] {
        &self.canary
    }

    /// One channel's values as stored with a kept cut: 4 bytes each, little-endian.
    pub fn to_bytes(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// The values of [`BootTimes::to_bytes`] (a trailing partial value is dropped).
    pub fn from_bytes(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Adds a client's first boot time (nothing when its signal carried none), within
    /// `tracker::BOOT_TIMES_KEPT` per channel, in its sorted place.
    pub fn push(&mut self, canary: bool, ms: Option<u32>) {
        let side = if canary {
            &mut self.canary
        } else {
            &mut self.stable
        };
        if let Some(ms) = ms {
            if side.len() < crate::control::tracker::BOOT_TIMES_KEPT {
                let at = side.partition_point(|&v| v <= ms);
                side.insert(at, ms);
            }
        }
    }
}

/// A channel's median boot time with its interval (order statistics, for display).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Median {
    pub clients: u64,
    pub median_ms: f64,
    pub low_ms: f64,
    pub high_ms: f64,
}

/// The boot-time family's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootJudgement {
    pub canary: Median,
    pub stable: Median,
    /// The canary's slowdown on the median (0.48: 48% slower) with its interval.
    pub slowdown: f64,
    pub slowdown_low: f64,
    pub slowdown_high: f64,
    pub max_slowdown: f64,
    /// Log e-values of the trials, each net of the α spent on stable's bound (`+ ln 0.9`;
    /// compare with the verdict's thresholds): "slower than tolerated", "not slower than tolerated".
    pub worse: f64,
    pub better: f64,
    /// The thresholds the canary's values were tested against (ms): `(1+s)·m⁺`, `(1+s)·m⁻`.
    pub cut_at_ms: f64,
    pub pass_at_ms: f64,
}

/// The largest count `k` of `t` that the one-sided e-process "more than half of the values
/// fall on one side of the median" at level `alpha` allows: with probability `1 − alpha`, at
/// every `t`, at most `k` values are below the median (and, by symmetry, at most `k` above
/// it). `None`: even `t` is allowed (no finite bound yet).
fn largest_allowed(t: u64, alpha: f64) -> Option<u64> {
    let limit = (1.0 / alpha).ln();
    let e = |k: u64| {
        let mut logs = vec![];
        add_trials(&mut logs, &BOUND_ODDS, 0.5, k as f64, (t - k) as f64);
        mixture(&logs, &[1.0 / BOUND_ODDS.len() as f64; BOUND_ODDS.len()])
    };
    if t == 0 || e(t) < limit {
        return None;
    }
    // The e-value grows with k above t/2: the first k that reaches the limit, minus one.
    let (mut lo, mut hi) = (t / 2, t);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if e(mid) >= limit {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo.saturating_sub(1))
}

/// The `k`-th smallest (1-based) of sorted `values`.
fn order_stat(values: &[u32], k: usize) -> f64 {
    f64::from(values[k - 1])
}

/// Stable's median bounded from above (`upper`) or below, valid at every look with
/// probability `1 − alpha`, with the `d` most helpful values (to a cut: the fastest; to a
/// pass: the slowest) left out. `None`: no finite bound yet. `values` sorted.
fn median_bound(values: &[u32], d: u64, alpha: f64, upper: bool) -> Option<f64> {
    let t = (values.len() as u64).checked_sub(d)?;
    let k = largest_allowed(t, alpha)?;
    if upper {
        // Fewer than k+1 of the t honest values are below the median: the (k+1)-th
        // smallest of them is at or above it; the d fastest removed shift the index by d.
        let index = (k + 1 + d) as usize;
        (index <= values.len()).then(|| order_stat(values, index))
    } else {
        // At least t−k honest values are at or below the median: the (t−k)-th smallest is
        // at or below it (the d slowest removed change no index below t).
        let index = t - k;
        (index >= 1).then(|| order_stat(values, index as usize))
    }
}

/// The median of sorted `values` with a (pointwise) interval at normal quantile `z`.
fn median_with_interval(values: &[u32], z: f64) -> Median {
    let n = values.len();
    if n == 0 {
        return Median {
            clients: 0,
            median_ms: 0.0,
            low_ms: 0.0,
            high_ms: f64::INFINITY,
        };
    }
    let at = |i: f64| order_stat(values, (i.max(0.0) as usize).min(n - 1) + 1);
    let half = z * (n as f64).sqrt() / 2.0;
    let mid = (n - 1) as f64 / 2.0;
    let median = (at(mid.floor()) + at(mid.ceil())) / 2.0;
    Median {
        clients: n as u64,
        median_ms: median,
        low_ms: at((mid - half).floor()),
        high_ms: if mid + half > (n - 1) as f64 {
            f64::INFINITY
        } else {
            at((mid + half).ceil())
        },
    }
}

/// The boot-time family at the policy's confidence; `alpha_cut` is the family's share of the
/// cut α. The pass is judged at the pass's level `β` (`pass_confidence`), split as the cut's
/// is: a tenth to stable's bound, the rest to the trials.
pub fn judge(times: &BootTimes, policy: &TestPolicy, alpha_cut: f64) -> BootJudgement {
    let d = policy.hostile_clients;
    let s = 1.0 + policy.max_boot_slowdown;
    let alpha = (1.0 - policy.confidence).clamp(1e-9, 0.5);
    let beta = (1.0 - policy.pass_confidence).clamp(1e-9, 0.5);
    let canary = times.canary();
    let slower = |at: f64| (canary.len() - canary.partition_point(|&v| f64::from(v) <= at)) as u64;
    let n = canary.len() as u64;
    // Cut: the d slowest canary values and the d fastest stable ones left out.
    let stable = times.stable();
    let cut_at = median_bound(stable, d, alpha_cut * BOUND_SHARE, true).map(|m| s * m);
    let worse = cut_at.map_or(0.0, |at| {
        let hits = slower(at);
        let removed = d.min(hits);
        let mut logs = vec![];
        add_trials(
            &mut logs,
            &WORSE,
            0.5,
            (hits - removed) as f64,
            (n - hits) as f64,
        );
        mixture(&logs, &WORSE_WEIGHTS)
    }) + (1.0 - BOUND_SHARE).ln();
    // Pass: the d fastest canary values and the d slowest stable ones left out; no finite
    // lower bound yet is no evidence (every canary value is "slower than 0").
    let pass_at = median_bound(stable, d, beta * BOUND_SHARE, false)
        .map(|m| s * m)
        .unwrap_or(0.0);
    let better = {
        let hits = slower(pass_at);
        let fast = n - hits;
        let mut logs = vec![];
        add_trials(
            &mut logs,
            &BETTER,
            0.5,
            hits as f64,
            (fast - d.min(fast)) as f64,
        );
        if logs.is_empty() {
            0.0
        } else {
            mixture(&logs, &BETTER_WEIGHTS)
        }
    } + (1.0 - BOUND_SHARE).ln();
    // For display: each median at confidence 1 − α/2, so the ratio's interval is at 1 − α.
    let z = normal_quantile(1.0 - alpha / 4.0);
    let c = median_with_interval(canary, z);
    let st = median_with_interval(stable, z);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b - 1.0 } else { f64::INFINITY };
    BootJudgement {
        canary: c,
        stable: st,
        slowdown: ratio(c.median_ms, st.median_ms),
        slowdown_low: ratio(c.low_ms, st.high_ms).max(-1.0),
        slowdown_high: ratio(c.high_ms, st.low_ms),
        max_slowdown: policy.max_boot_slowdown,
        worse,
        better,
        cut_at_ms: cut_at.unwrap_or(f64::INFINITY),
        pass_at_ms: pass_at,
    }
}

impl BootJudgement {
    /// "48% slower than stable on the median (99% interval 31–66%)", in words.
    pub fn describe(&self, confidence: f64) -> String {
        let pct = |x: f64| {
            if x.is_finite() {
                format!("{:.0}%", x * 100.0)
            } else {
                "∞".to_owned()
            }
        };
        let (word, shown) = if self.slowdown >= 0.0 {
            ("slower", self.slowdown)
        } else {
            ("faster", -self.slowdown)
        };
        format!(
            "canary boots {} {word} than stable on the median ({:.0}% interval of the slowdown {} to {}): median {:.0} ms of {} canary clients vs {:.0} ms of {} stable",
            pct(shown),
            confidence * 100.0,
            pct(self.slowdown_low),
            pct(self.slowdown_high),
            self.canary.median_ms,
            self.canary.clients,
            self.stable.median_ms,
            self.stable.clients
        )
    }
}

#[cfg(test)]
mod tests;
