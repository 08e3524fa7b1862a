//! The canary's verdict as sequential tests that stay valid however often they are looked
//! at (every batch flush and every alarm).
//!
//! Two questions, each an e-process (a nonnegative test supermartingale under its null
//! hypothesis), so by Ville's inequality the chance it *ever* crosses `1/α` while its null is
//! true is at most `α`:
//!
//! - **Cut?** Null: the canary is no worse than the tolerated limit. Rejected when *both*
//!   - relative: conditional on the errors seen, each erroring client is canary's with
//!     probability `ρ = n_c·p_c / (n_c·p_c + n_s·p_s)` (exposures `n` in distinct clients).
//!     At the tolerated limit `p_c = (1 + max_increase)·p_s` that is
//!     `ρ0 = (1+m)·n_c / ((1+m)·n_c + n_s)`; each error is a Bernoulli trial against `ρ0`
//!     (Lindon, Sanden, Shirikian, "Rapid Regression Detection in Software Deployments
//!     through Sequential Testing", KDD 2022: conditioning on the total count makes the
//!     canary's share binomial in its exposure share);
//!   - absolute: the canary's clients with an error, each client a Bernoulli trial, against
//!     the floor `min_error_rate`.
//!
//!   A rejection of both says, with confidence `1 − α`, that the canary is worse than
//!   stable by more than the margin and above the floor.
//! - **Pass?** (to advance a step) Null: the canary *is* worse than tolerated, i.e. both
//!   above `(1 + max_increase)·p_s` and above the floor. Under that null the relative test
//!   ("share of errors below `ρ0`") and the absolute test ("rate below the floor") are both
//!   e-processes on the same batches, so their mean is one too: rejected when the mean
//!   reaches `1/α` and the step has seen `min_clients` canary clients. (A mean rather than
//!   "either at `α/2`": never weaker, and when both see health, as at small weights, each
//!   needs only half the evidence.) At weight 100 there is no stable to compare with, fixed
//!   before the step starts, so the absolute test alone. No evidence is never a pass.
//!
//! Each e-process is a likelihood ratio mixed, with equal weights, over a grid of
//! alternatives (odds ratios against the null's boundary); a mixture of test martingales is
//! one. Updates are closed form per batch, with `ρ0` taken from the recent exposure ratio,
//! so a step change of the weight moves the boundary with it. Pure: counts in, numbers out.

use serde::{Deserialize, Serialize};

use super::counts::ChannelCounts;

/// Odds ratios of the alternatives against the boundary, for "worse" (equal weights) and for
/// "better". Half of the "better" weight is on 1/2: a canary exactly as good as stable, under
/// the default tolerance of twice stable's rate, is that alternative (and so is a canary at
/// half the floor), so the evidence for the common case is not diluted by the others.
const WORSE: [f64; 8] = [1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0, 50.0];
const WORSE_WEIGHTS: [f64; 8] = [0.125; 8];
const BETTER: [f64; 5] = [1.0 / 1.25, 1.0 / 1.5, 1.0 / 2.0, 1.0 / 4.0, 1.0 / 10.0];
const BETTER_WEIGHTS: [f64; 5] = [0.1, 0.15, 0.5, 0.15, 0.1];

/// The operator's knobs (rollout config `health`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestPolicy {
    /// `1 − α`: the chance of a wrong cut (or a wrong pass of one step) is at most `α`.
    pub confidence: f64,
    /// How much worse than stable the canary may be, relatively: 1.0 tolerates twice
    /// stable's error rate.
    pub max_increase: f64,
    /// Error rate below which the canary is never cut, whatever stable does.
    pub min_error_rate: f64,
    /// Canary clients a step must see before it may pass.
    pub min_clients: u64,
}

/// Log e-values per alternative, and what the step has seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Since the current step (or weight) started.
    pub worse_relative: Vec<f64>,
    pub worse_absolute: Vec<f64>,
    pub better_relative: Vec<f64>,
    pub better_absolute: Vec<f64>,
    pub step_clients: u64,
    /// The step's clients and clients with errors, per channel: what the tests have seen,
    /// and what the verdict's estimates are about.
    #[serde(default)]
    pub seen: ChannelCounts,
}

/// New distinct clients (and new clients with an error) since the last update, per channel.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Increment {
    pub new: ChannelCounts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Worse than tolerated, with the configured confidence: roll back.
    Cut,
    /// Not worse than tolerated, with the configured confidence, on enough clients.
    Pass,
    /// Not enough evidence either way.
    Inconclusive,
}

/// A rate with its interval (Wilson score, at the policy's confidence; for display).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub clients: u64,
    pub errors: u64,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    pub canary: Estimate,
    pub stable: Estimate,
    /// Log e-values and the log thresholds they are compared with.
    pub worse_relative: f64,
    pub worse_absolute: f64,
    pub cut_threshold: f64,
    pub better_relative: f64,
    pub better_absolute: f64,
    /// What is compared with `pass_threshold`: the mean of the two (log), or the absolute
    /// test alone without stable traffic.
    pub better: f64,
    pub pass_threshold: f64,
    pub step_clients: u64,
    pub reason: String,
}

fn odds(p: f64) -> f64 {
    p / (1.0 - p)
}

fn from_odds(o: f64) -> f64 {
    o / (1.0 + o)
}

/// Adds `hits` successes and `misses` failures of Bernoulli trials with null probability
/// `p0` to the log likelihood ratio of each alternative (odds ratio `theta` against `p0`).
fn add_trials(logs: &mut Vec<f64>, thetas: &[f64], p0: f64, hits: f64, misses: f64) {
    if logs.len() != thetas.len() {
        *logs = vec![0.0; thetas.len()];
    }
    if !(p0 > 0.0 && p0 < 1.0) || (hits == 0.0 && misses == 0.0) {
        return;
    }
    for (log, theta) in logs.iter_mut().zip(thetas) {
        let p1 = from_odds(theta * odds(p0)).clamp(1e-12, 1.0 - 1e-12);
        *log += hits * (p1 / p0).ln() + misses * ((1.0 - p1) / (1.0 - p0)).ln();
    }
}

/// Log of the mixture of the e-values `exp(logs)` with prior `weights` (summing to 1): a
/// mixture of test martingales is one.
pub fn mixture(logs: &[f64], weights: &[f64]) -> f64 {
    if logs.is_empty() || logs.len() != weights.len() {
        return 0.0;
    }
    let max = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logs
        .iter()
        .zip(weights)
        .map(|(l, w)| w * (l - max).exp())
        .sum();
    max + sum.ln()
}

/// Wilson score interval for `errors` out of `clients` at two-sided `confidence`.
pub fn wilson(errors: u64, clients: u64, confidence: f64) -> Estimate {
    let n = clients as f64;
    let x = errors.min(clients) as f64;
    if clients == 0 {
        return Estimate {
            clients,
            errors,
            rate: 0.0,
            low: 0.0,
            high: 1.0,
        };
    }
    let z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let p = x / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    Estimate {
        clients,
        errors,
        rate: p,
        // The interval always holds the estimate: at 0 or all errors, rounding can leave
        // a bound a hair on the wrong side (1e-17 above a rate of 0, seen at 38 clients).
        low: (centre - half).clamp(0.0, p),
        high: (centre + half).clamp(p, 1.0),
    }
}

/// The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    let a = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    let b = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    let c = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    let d = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
            / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
    }
}

impl Evidence {
    /// Starts a new step (or a new weight): each step is its own experiment, with its own
    /// exposure ratio, so both tests start afresh. (A likelihood ratio that has gathered
    /// strong evidence of health would otherwise need as much again to see a canary that
    /// turns bad later.) The guarantee is per step: with k steps, a healthy rollout is cut
    /// with probability at most k·α, and measured far below that (BENCHMARKS.md).
    pub fn new_step(&mut self) {
        *self = Evidence::default();
    }

    /// Adds a batch's new clients.
    pub fn add(&mut self, inc: &Increment, policy: &TestPolicy) {
        let (nc, ns) = (inc.new.canary, inc.new.stable);
        for (seen, new) in [(&mut self.seen.canary, nc), (&mut self.seen.stable, ns)] {
            seen.clients = seen.clients.saturating_add(new.clients);
            seen.errors = seen.errors.saturating_add(new.errors);
        }
        // The exposure ratio: the step's clients so far (a step has one weight, so the
        // ratio of arrivals is the ratio of totals).
        let m = 1.0 + policy.max_increase;
        let (ec, es) = (
            self.seen.canary.clients as f64,
            self.seen.stable.clients as f64,
        );
        // Relative: each new erroring client is canary's with probability rho0 at the limit.
        if ec > 0.0 && es > 0.0 {
            let rho0 = m * ec / (m * ec + es);
            let (hits, misses) = (nc.errors as f64, ns.errors as f64);
            add_trials(&mut self.worse_relative, &WORSE, rho0, hits, misses);
            add_trials(&mut self.better_relative, &BETTER, rho0, hits, misses);
        }
        // Absolute: each canary client is a trial, an error a hit, against the floor. A
        // client counts as fine when first seen and as a hit if its error comes in a later
        // batch: the log ratio is linear in the counts, so adding (new errors, new clients
        // minus new errors) keeps it equal to the ratio of the cumulative counts.
        let errors = nc.errors as f64;
        let fine = nc.clients as f64 - errors;
        let floor = policy.min_error_rate;
        add_trials(&mut self.worse_absolute, &WORSE, floor, errors, fine);
        add_trials(&mut self.better_absolute, &BETTER, floor, errors, fine);
        self.step_clients = self.step_clients.saturating_add(nc.clients);
    }

    /// The verdict, with the numbers behind it (about the step's clients). `stable_present`:
    /// whether any stable traffic exists to compare with (not at weight 100).
    pub fn judge(&self, stable_present: bool, policy: &TestPolicy) -> Judgement {
        let totals = &self.seen;
        let alpha = (1.0 - policy.confidence).clamp(1e-9, 0.5);
        let cut_threshold = (1.0 / alpha).ln();
        let pass_threshold = cut_threshold;
        let worse_relative = mixture(&self.worse_relative, &WORSE_WEIGHTS);
        let worse_absolute = mixture(&self.worse_absolute, &WORSE_WEIGHTS);
        let better_relative = mixture(&self.better_relative, &BETTER_WEIGHTS);
        let better_absolute = mixture(&self.better_absolute, &BETTER_WEIGHTS);
        let better = if stable_present {
            mixture(&[better_relative, better_absolute], &[0.5, 0.5])
        } else {
            better_absolute
        };
        let relative_worse = worse_relative >= cut_threshold;
        let absolute_worse = worse_absolute >= cut_threshold;
        let canary = wilson(
            totals.canary.errors,
            totals.canary.clients,
            policy.confidence,
        );
        let stable = wilson(
            totals.stable.errors,
            totals.stable.clients,
            policy.confidence,
        );
        let describe = |e: &Estimate| {
            format!(
                "{:.2}% ({}/{}, {:.0}% interval {:.2}–{:.2}%)",
                e.rate * 100.0,
                e.errors,
                e.clients,
                policy.confidence * 100.0,
                e.low * 100.0,
                e.high * 100.0
            )
        };
        let versus_stable = if stable_present {
            format!(
                "{}x stable's {}",
                1.0 + policy.max_increase,
                describe(&stable)
            )
        } else {
            "(no stable traffic to compare)".to_owned()
        };
        let (verdict, reason) = if absolute_worse && (relative_worse || !stable_present) {
            (
                Verdict::Cut,
                format!(
                    "canary error rate {} is above {versus_stable} and above {:.2}% with {:.0}% confidence",
                    describe(&canary),
                    policy.min_error_rate * 100.0,
                    policy.confidence * 100.0
                ),
            )
        } else if self.step_clients < policy.min_clients {
            (
                Verdict::Inconclusive,
                format!(
                    "{} of the {} canary clients a step needs (canary {} vs stable {})",
                    self.step_clients,
                    policy.min_clients,
                    describe(&canary),
                    describe(&stable)
                ),
            )
        } else if better >= pass_threshold {
            (
                Verdict::Pass,
                // Named after the test with more of the evidence.
                if stable_present && better_relative >= better_absolute {
                    format!(
                        "canary error rate {} is within {versus_stable}, with {:.0}% confidence",
                        describe(&canary),
                        policy.confidence * 100.0
                    )
                } else {
                    format!(
                        "canary error rate {} is below {:.2}%, with {:.0}% confidence",
                        describe(&canary),
                        policy.min_error_rate * 100.0,
                        policy.confidence * 100.0
                    )
                },
            )
        } else {
            (
                Verdict::Inconclusive,
                format!(
                    "not yet enough evidence: canary {} vs stable {}",
                    describe(&canary),
                    describe(&stable)
                ),
            )
        };
        Judgement {
            verdict,
            canary,
            stable,
            worse_relative,
            worse_absolute,
            cut_threshold,
            better_relative,
            better_absolute,
            better,
            pass_threshold,
            step_clients: self.step_clients,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::counts::Counts;

    fn policy() -> TestPolicy {
        TestPolicy {
            confidence: 0.99,
            max_increase: 1.0,
            min_error_rate: 0.02,
            min_clients: 100,
        }
    }

    fn counts(clients: u64, errors: u64) -> Counts {
        Counts { clients, errors }
    }

    /// Seeded splitmix64, for the Monte Carlo checks.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn binomial(&mut self, n: u64, p: f64) -> u64 {
            (0..n).filter(|_| self.next() < p).count() as u64
        }
    }

    #[test]
    fn normal_quantiles_and_wilson_intervals_match_known_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_964),
            (0.995, 2.575_829),
            (0.9, 1.281_552),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-5, "{p}");
            assert!((normal_quantile(1.0 - p) + z).abs() < 1e-5, "{p}");
        }
        // Wilson 95% for 10/100 is (5.52%, 17.44%); for 0/50, (0, 7.13%).
        let e = wilson(10, 100, 0.95);
        assert!(
            (e.low - 0.0552).abs() < 5e-4 && (e.high - 0.1744).abs() < 5e-4,
            "{e:?}"
        );
        let e = wilson(0, 50, 0.95);
        assert!(e.low == 0.0 && (e.high - 0.0713).abs() < 5e-4, "{e:?}");
        // The interval holds the estimate for every count (rounding once put the lower
        // bound 1e-17 above a rate of 0).
        for n in 1..=400 {
            for x in [0, 1, n / 2, n - 1, n] {
                let e = wilson(x, n, 0.99);
                assert!(e.low <= e.rate && e.rate <= e.high, "{x}/{n}: {e:?}");
            }
        }
    }

    #[test]
    fn the_update_is_the_binomial_likelihood_ratio() {
        // One alternative, n trials: exp(log) must equal the ratio of binomial pmfs.
        for (p0, theta, x, n) in [
            (0.01, 3.0, 2.0, 100.0),
            (0.3, 0.5, 10.0, 40.0),
            (0.5, 2.0, 7.0, 7.0),
        ] {
            let mut logs = vec![];
            add_trials(&mut logs, &[theta], p0, x, n - x);
            let p1 = from_odds(theta * odds(p0));
            let exact = (p1 / p0).powf(x) * ((1.0 - p1) / (1.0 - p0)).powf(n - x);
            assert!(
                (logs[0].exp() / exact - 1.0).abs() < 1e-9,
                "{p0} {theta} {x}/{n}"
            );
        }
        // In pieces or at once: the same.
        let (mut a, mut b) = (vec![], vec![]);
        add_trials(&mut a, &WORSE, 0.2, 5.0, 20.0);
        add_trials(&mut b, &WORSE, 0.2, 2.0, 11.0);
        add_trials(&mut b, &WORSE, 0.2, 3.0, 9.0);
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-9));
    }

    #[test]
    fn a_fixed_sample_never_rejects_a_true_null_more_than_alpha_exact_binomial_tails() {
        // For n trials at the null's boundary p0, sum the exact binomial probabilities of
        // every outcome whose mixture e-value crosses 1/alpha: that is at most alpha.
        let alpha: f64 = 0.01;
        for (p0, n) in [(0.01f64, 500u32), (0.05, 200), (0.3, 60), (0.5, 40)] {
            for (thetas, weights) in [
                (&WORSE[..], &WORSE_WEIGHTS[..]),
                (&BETTER[..], &BETTER_WEIGHTS[..]),
            ] {
                let mut tail = 0.0;
                let mut log_pmf_0 = f64::from(n) * (1.0 - p0).ln();
                for x in 0..=n {
                    if x > 0 {
                        // pmf(x) = pmf(x-1) * (n-x+1)/x * p0/(1-p0)
                        log_pmf_0 +=
                            (f64::from(n - x + 1) / f64::from(x)).ln() + (p0 / (1.0 - p0)).ln();
                    }
                    let mut logs = vec![];
                    add_trials(&mut logs, thetas, p0, f64::from(x), f64::from(n - x));
                    if mixture(&logs, weights) >= (1.0 / alpha).ln() {
                        tail += log_pmf_0.exp();
                    }
                }
                assert!(tail <= alpha, "p0 {p0}, n {n}: {tail}");
            }
        }
    }

    /// Monitors `batches` batches of `per_batch` new clients per channel, canary share
    /// `share`, judging after every batch. Returns `watch_for` with the canary clients seen
    /// when it first comes, else the last verdict and the canary clients of all batches.
    fn monitor(
        rng: &mut Rng,
        p_stable: f64,
        p_canary: f64,
        share: f64,
        per_batch: u64,
        batches: u32,
        watch_for: Verdict,
    ) -> (Verdict, u64) {
        let policy = policy();
        let mut e = Evidence::default();
        let mut canary_clients = 0;
        for _ in 0..batches {
            let nc = ((per_batch as f64) * share).round().max(1.0) as u64;
            let ns = per_batch - nc.min(per_batch);
            let new = ChannelCounts {
                canary: counts(nc, rng.binomial(nc, p_canary)),
                stable: counts(ns, rng.binomial(ns, p_stable)),
            };
            canary_clients += nc;
            e.add(&Increment { new }, &policy);
            if e.judge(true, &policy).verdict == watch_for {
                return (watch_for, canary_clients);
            }
        }
        (e.judge(true, &policy).verdict, canary_clients)
    }

    /// Watching for a cut: the first cut and when, else the last verdict.
    fn run(
        rng: &mut Rng,
        p_stable: f64,
        p_canary: f64,
        share: f64,
        per_batch: u64,
        batches: u32,
    ) -> (Verdict, u64) {
        monitor(
            rng,
            p_stable,
            p_canary,
            share,
            per_batch,
            batches,
            Verdict::Cut,
        )
    }

    #[test]
    fn equal_rates_are_almost_never_cut_under_continuous_monitoring() {
        let mut rng = Rng(42);
        let runs = 400;
        let cuts = (0..runs)
            .filter(|_| run(&mut rng, 0.02, 0.02, 0.1, 200, 60).0 == Verdict::Cut)
            .count();
        assert!(
            cuts as f64 / runs as f64 <= 0.01,
            "{cuts} false cuts in {runs}"
        );
    }

    #[test]
    fn a_ten_times_worse_canary_is_cut_after_about_a_hundred_canary_clients() {
        // Step 1 (1% of traffic), 10 new canary clients a batch, stable at 1%. Even an
        // optimal fixed-sample test needs 7 errors in 100 to say "above 2%" at 99%, which a
        // 10% canary misses 13% of the time: the median is the figure to hold.
        let mut rng = Rng(7);
        let mut exposed: Vec<u64> = (0..200)
            .map(|_| {
                let (verdict, clients) = run(&mut rng, 0.01, 0.10, 0.01, 1000, 60);
                assert_eq!(verdict, Verdict::Cut);
                clients
            })
            .collect();
        exposed.sort_unstable();
        assert!(exposed[100] <= 100, "median {}", exposed[100]);
        assert!(exposed[199] <= 400, "worst {}", exposed[199]);
    }

    #[test]
    fn a_canary_at_the_tolerated_limit_almost_never_passes_under_continuous_monitoring() {
        // The pass rule's null at its hardest: the canary exactly twice stable (the limit
        // of max_increase 1.0) and above the floor, watched at every batch. Both tests are
        // on their boundary, so their mean is a test martingale: passes ≤ α = 1%.
        let mut rng = Rng(11);
        let runs = 400;
        for (p_stable, share) in [(0.015, 0.1), (0.015, 0.5), (0.03, 0.05)] {
            let passed = (0..runs)
                .filter(|_| {
                    let p_canary = 2.0 * p_stable;
                    monitor(&mut rng, p_stable, p_canary, share, 400, 40, Verdict::Pass).0
                        == Verdict::Pass
                })
                .count();
            assert!(
                passed as f64 / runs as f64 <= 0.01,
                "stable {p_stable}, share {share}: {passed} passes in {runs}"
            );
        }
    }

    #[test]
    fn the_pass_averages_both_tests_and_uses_the_absolute_one_alone_without_stable() {
        let policy = policy();
        let mut e = Evidence::default();
        let new = ChannelCounts {
            canary: counts(400, 2),
            stable: counts(40_000, 400),
        };
        e.add(&Increment { new }, &policy);
        let with_stable = e.judge(true, &policy);
        let mean =
            ((with_stable.better_relative.exp() + with_stable.better_absolute.exp()) / 2.0).ln();
        assert!((with_stable.better - mean).abs() < 1e-9);
        assert!((with_stable.pass_threshold - 100f64.ln()).abs() < 1e-9);
        let alone = e.judge(false, &policy);
        assert_eq!(alone.better, alone.better_absolute);
    }

    #[test]
    fn a_healthy_canary_passes_and_nothing_is_inconclusive_not_a_pass() {
        let mut rng = Rng(9);
        let (verdict, _) = run(&mut rng, 0.01, 0.01, 0.5, 400, 30);
        assert_eq!(verdict, Verdict::Pass);
        // No clients at all: never a pass.
        let j = Evidence::default().judge(true, &policy());
        assert_eq!(j.verdict, Verdict::Inconclusive);
        // Zero errors on both sides, enough clients: the absolute test passes it.
        let mut e = Evidence::default();
        let new = ChannelCounts {
            canary: counts(1000, 0),
            stable: counts(1000, 0),
        };
        e.add(&Increment { new }, &policy());
        assert_eq!(e.judge(true, &policy()).verdict, Verdict::Pass);
        // A total failure is cut even with no stable traffic left (weight 100).
        let mut e = Evidence::default();
        let new = ChannelCounts {
            canary: counts(30, 30),
            stable: counts(0, 0),
        };
        e.add(&Increment { new }, &policy());
        assert_eq!(e.judge(false, &policy()).verdict, Verdict::Cut);
    }
}
