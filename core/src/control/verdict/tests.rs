use super::*;
use crate::health::counts::Counts;

fn policy() -> TestPolicy {
    TestPolicy {
        confidence: 0.99,
        pass_confidence: 0.99,
        max_increase: 1.0,
        min_error_rate: 0.02,
        min_clients: 100,
        hostile_clients: 0,
        max_boot_slowdown: 0.25,
    }
}

fn share(canary_share: f64) -> Exposure {
    Exposure {
        canary_share,
        judge_silence: false,
    }
}

/// Counts of clients that ran the SDK (the error family), nothing silent.
fn errors(errors: ChannelCounts) -> crate::control::tracker::Resolved {
    crate::control::tracker::Resolved {
        errors,
        ..Default::default()
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

fn share_of(canary_share: f64) -> Exposure {
    Exposure {
        canary_share,
        judge_silence: false,
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
        e.add(errors(new));
        if e.judge(share_of(share), &policy).verdict == watch_for {
            return (watch_for, canary_clients);
        }
    }
    (e.judge(share_of(share), &policy).verdict, canary_clients)
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
    e.add(errors(new));
    let with_stable = e.judge(share(0.01), &policy);
    let mean = ((with_stable.better_relative.exp() + with_stable.better_absolute.exp()) / 2.0).ln();
    assert!((with_stable.better - mean).abs() < 1e-9);
    assert!((with_stable.pass_threshold - 100f64.ln()).abs() < 1e-9);
    let alone = e.judge(share(1.0), &policy);
    assert_eq!(alone.better, alone.better_absolute);
}

#[test]
fn a_healthy_canary_passes_and_nothing_is_inconclusive_not_a_pass() {
    let mut rng = Rng(9);
    let (verdict, _) = run(&mut rng, 0.01, 0.01, 0.5, 400, 30);
    assert_eq!(verdict, Verdict::Pass);
    // No clients at all: never a pass.
    let j = Evidence::default().judge(share(0.5), &policy());
    assert_eq!(j.verdict, Verdict::Inconclusive);
    // Zero errors on both sides, enough clients: the absolute test passes it.
    let mut e = Evidence::default();
    let new = ChannelCounts {
        canary: counts(1000, 0),
        stable: counts(1000, 0),
    };
    e.add(errors(new));
    assert_eq!(e.judge(share(0.5), &policy()).verdict, Verdict::Pass);
    // A total failure is cut even with no stable traffic left (weight 100).
    let mut e = Evidence::default();
    let new = ChannelCounts {
        canary: counts(30, 30),
        stable: counts(0, 0),
    };
    e.add(errors(new));
    assert_eq!(e.judge(share(1.0), &policy()).verdict, Verdict::Cut);
}

/// Early silence: stable's clients (1,000, all older than 4 s) booted by 2 s except 5%
/// (early closes), in 8 bins of 0.5 s plus the grace's.
fn early(canary_silent: Vec<u64>) -> crate::control::tracker::EarlySilence {
    let stable = (0..9)
        .map(|i| (1_000, if i < 4 { 1_000 - 200 * i } else { 50 }))
        .collect();
    crate::control::tracker::EarlySilence {
        stable,
        canary_silent,
    }
}

#[test]
fn early_silence_cuts_canary_clients_silent_when_stable_has_booted() {
    let p = policy();
    let cut = (1.0 / (1.0 - p.confidence)).ln() + 4.0f64.ln();
    // 30 canary clients silent at 2–4 s, none ran: far beyond stable's 5%.
    let e = early_silence(&early(vec![0, 0, 0, 0, 10, 10, 10, 0, 0]), 0, &p);
    assert!(e >= cut, "{e}");
    // The same ages, but most canary clients booted: a share like stable's is no evidence.
    let e = early_silence(&early(vec![0, 0, 0, 0, 1, 1, 0, 0, 0]), 60, &p);
    assert!(e < cut, "{e}");
    // Silent at ages where stable is still booting too: no evidence.
    let e = early_silence(&early(vec![200, 200, 0, 0, 0, 0, 0, 0, 0]), 0, &p);
    assert!(e < 1.0, "{e}");
}

#[test]
fn early_silence_without_stable_evidence_is_none_and_hostile_clients_are_left_out() {
    let p = policy();
    let none = crate::control::tracker::EarlySilence {
        stable: vec![(0, 0); 9],
        canary_silent: vec![0, 0, 0, 0, 10, 10, 10, 0, 0],
    };
    assert!(early_silence(&none, 0, &p).abs() < 1e-12);
    let data = early(vec![0, 0, 0, 0, 10, 0, 0, 0, 0]);
    let honest = early_silence(&data, 0, &p);
    let robust = early_silence(
        &data,
        0,
        &TestPolicy {
            hostile_clients: 10,
            ..p.clone()
        },
    );
    assert!(honest > 0.0 && robust <= 0.0, "{honest} {robust}");
}

#[test]
fn pass_counts_leave_out_hostile_clients_both_ways_within_the_slack() {
    // (canary clients, canary failures, stable failures, stalled) → what the pass tests see.
    let p = TestPolicy {
        hostile_clients: 10,
        ..policy()
    };
    for ((nc, xc, xs, stalled), want) in [
        // No stall left out: d clean canary clients and d failing stable clients removed.
        ((1_000, 10, 90, 0), (990, 10, 80)),
        // Up to d failing canary clients left out as well.
        ((3_000, 40, 270, 10), (2_980, 30, 260)),
        // Never more failures than there are, nor stable failures below zero.
        ((50, 3, 4, 10), (37, 0, 0)),
        // Everything failed: no clean client to remove.
        ((5, 5, 0, 0), (5, 5, 0)),
    ] {
        assert_eq!(
            pass_counts(nc, xc, xs, stalled, &p),
            want,
            "{nc} {xc} {xs} {stalled}"
        );
    }
}

#[test]
fn the_stall_slack_scales_with_the_step_and_never_buys_a_clearly_worse_canary_a_pass() {
    // 10 hostile networks each report one canary failure in a step of a healthy canary
    // (1% like stable) at weight 100: the slack leaves out ⌊0.25 · 2% · n⌋ failures, at most
    // 10.
    let p = TestPolicy {
        hostile_clients: 10,
        pass_confidence: 0.95,
        ..policy()
    };
    let full = Exposure {
        canary_share: 1.0,
        judge_silence: false,
    };
    let evidence = |n: u64, x: u64| PassEvidence::of(n, x, 0, full, &p);
    // At 3,000 clients all 10 are left out (k = 15 allowed): the honest 30 failures pass.
    let healthy = evidence(3_000, 40);
    assert_eq!(healthy.clients, 2_990);
    assert!(healthy.passes((1.0f64 / 0.05).ln()), "{}", healthy.combined);
    // At 400 clients only 2 may be left out.
    let small = evidence(400, 14);
    assert!(small.combined < evidence(400, 12).combined + 1e-9);
    // A 3x canary (3%) with the 10 hostile failures on top never passes.
    assert!(!evidence(3_000, 100).passes((1.0f64 / 0.05).ln()));
    // Without the slack, the same healthy step would not pass: the stall is what it fixes.
    let strict = tests(2_990, 40, 0, full, &p);
    assert!(strict.better_absolute < healthy.combined);
}

/// The boot-time family in the verdict: `n` values per channel around `median` ms.
fn boot_times(stable: (usize, f64), canary: (usize, f64)) -> boot_time::BootTimes {
    let spread = |(n, median): (usize, f64)| -> Vec<u32> {
        (0..n)
            .map(|i| {
                let q = (i as f64 + 0.5) / n as f64;
                (median * (0.8 * normal_quantile(q)).exp()).round() as u32
            })
            .collect()
    };
    boot_time::BootTimes::new(spread(stable), spread(canary))
}

#[test]
fn the_boot_time_guard_cuts_a_slow_canary_and_gates_a_pass() {
    let p = policy();
    let silence = Exposure {
        canary_share: 0.5,
        judge_silence: true,
    };
    // Healthy on errors and silence (enough to pass both), 1,000 clients each side.
    let mut e = Evidence::default();
    e.add(errors(counts2(1000, 0, 1000, 0)));
    e.silence = counts2(1000, 0, 1000, 0);
    // (boot times, verdict, family): twice as slow is cut by the guard and named so; as
    // fast but too few values to prove it holds the pass; no stable values gates nothing.
    for (boot, verdict, family, words) in [
        (
            boot_times((2000, 400.0), (300, 800.0)),
            Verdict::Cut,
            Family::BootTime,
            "canary boots 100% slower than stable on the median",
        ),
        (
            boot_times((2000, 400.0), (50, 400.0)),
            Verdict::Inconclusive,
            Family::Errors,
            "errors pass, but not yet the boot time",
        ),
        (
            boot_times((0, 400.0), (300, 800.0)),
            Verdict::Pass,
            Family::Errors,
            "canary error rate",
        ),
    ] {
        e.boot = boot;
        let j = e.judge(silence, &p);
        assert_eq!((j.verdict, j.family), (verdict, family), "{}", j.reason);
        assert!(j.reason.contains(words), "{}", j.reason);
        assert!(
            (j.cut_threshold - (4.0 / (1.0 - p.confidence)).ln()).abs() < 1e-9,
            "four cut tests share α"
        );
    }
    // Without silence judged (stable's SDK not known to boot), no boot-time family.
    e.boot = boot_times((2000, 400.0), (300, 800.0));
    assert_eq!(e.judge(share(0.5), &p).boot_time, None);
}

fn counts2(sc: u64, se: u64, cc: u64, ce: u64) -> ChannelCounts {
    ChannelCounts {
        stable: counts(sc, se),
        canary: counts(cc, ce),
    }
}
