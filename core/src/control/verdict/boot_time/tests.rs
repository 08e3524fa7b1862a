use super::*;

fn policy(hostile_clients: u64) -> TestPolicy {
    TestPolicy {
        confidence: 0.99,
        pass_confidence: 0.99,
        max_increase: 1.0,
        min_error_rate: 0.02,
        min_clients: 100,
        hostile_clients,
        max_boot_slowdown: 0.25,
    }
}

/// `n` values spread evenly over a log-normal's quantiles (median `median`, σ `sigma`):
/// a deterministic sample, shuffled by a fixed stride so that no prefix is sorted.
fn lognormal(n: usize, median: f64, sigma: f64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n)
        .map(|i| {
            let q = (i as f64 + 0.5) / n as f64;
            (median * (sigma * normal_quantile(q)).exp()).round() as u32
        })
        .collect();
    let stride = 7919 % n.max(1);
    if n > 1 && stride > 0 {
        v = (0..n).map(|i| v[(i * stride) % n]).collect();
    }
    v
}

fn times(stable: Vec<u32>, canary: Vec<u32>) -> BootTimes {
    BootTimes::new(stable, canary)
}

const ALPHA_CUT: f64 = 0.01 / 4.0;

#[test]
fn the_median_bound_allows_about_half_plus_a_margin() {
    // (t, alpha): the largest count allowed, within these limits.
    for (t, alpha, lo, hi) in [
        (10, 0.01, 10, 10),  // too few: no finite bound (None is checked below)
        (100, 0.01, 62, 72), // ~2.6 standard deviations and the mixture's cost
        (2000, 0.01, 1040, 1085),
        (2000, 0.00125, 1045, 1095),
    ] {
        match largest_allowed(t, alpha) {
            None => assert!(t <= 10, "t {t}: a bound at 100 values"),
            Some(k) => assert!((lo..=hi).contains(&k), "t {t} alpha {alpha}: {k}"),
        }
    }
    assert_eq!(largest_allowed(0, 0.01), None);
    assert_eq!(
        largest_allowed(5, 0.01),
        None,
        "5 values bound nothing at 1%"
    );
}

#[test]
fn the_median_bounds_bracket_the_median() {
    let stable = lognormal(2000, 400.0, 0.8);
    let mut sorted = stable.clone();
    sorted.sort_unstable();
    let up = median_bound(&sorted, 0, 0.01, true).unwrap();
    let down = median_bound(&sorted, 0, 0.01, false).unwrap();
    assert!(down < 400.0 && 400.0 < up, "{down} .. {up}");
    assert!(up < 440.0 && down > 360.0, "tight at 2,000: {down} .. {up}");
    // The hostile discount widens both.
    let up_d = median_bound(&sorted, 10, 0.01, true).unwrap();
    let down_d = median_bound(&sorted, 10, 0.01, false).unwrap();
    assert!(up_d >= up && down_d <= down);
    // Fewer values than the discount: no bound.
    assert_eq!(median_bound(&sorted[..5], 10, 0.01, true), None);
}

#[test]
fn cuts_a_slower_canary_passes_an_equal_one_and_waits_in_between() {
    // (σ, stable clients, canary slowdown, canary clients): cut, pass. A pass at the default
    // 25% takes hundreds of canary clients: a sign test gets one bit a client, and a healthy
    // canary's values fall above 1.25x stable's median about 40% of the time at σ 0.8.
    for (sigma, stable_n, slowdown, n, cut, pass) in [
        (0.8, 20_000, 0.0, 1500, false, true),
        (0.8, 2000, 0.0, 100, false, false),
        (0.8, 2000, 1.0, 200, true, false),
        (0.8, 2000, 2.0, 60, true, false),
        (0.8, 2000, 0.25, 400, false, false),
        (1.2, 20_000, 0.0, 3000, false, true),
        (1.2, 2000, 1.0, 400, true, false),
        (0.8, 2000, -0.3, 150, false, true),
    ] {
        let t = times(
            lognormal(stable_n, 400.0, sigma),
            lognormal(n, 400.0 * (1.0 + slowdown), sigma),
        );
        let j = judge(&t, &policy(0), ALPHA_CUT);
        let cut_threshold = (1.0 / ALPHA_CUT).ln();
        let pass_threshold = (1.0 / 0.01f64).ln();
        assert_eq!(
            (j.worse >= cut_threshold, j.better >= pass_threshold),
            (cut, pass),
            "σ {sigma} stable {stable_n} slowdown {slowdown} n {n}: {j:?}"
        );
        assert!(
            (j.slowdown - slowdown).abs() < 0.15 * (1.0 + slowdown),
            "estimate {} for {slowdown}",
            j.slowdown
        );
        assert!(j.slowdown_low <= j.slowdown && j.slowdown <= j.slowdown_high);
    }
}

#[test]
fn the_pass_is_judged_at_the_pass_level_and_the_cut_at_the_cut_level() {
    // Same values, pass_confidence 0.99 then 0.95: stable's lower bound is taken at β/10, so
    // the looser pass level gives a higher threshold (fewer canary values "slower") and
    // more evidence for the pass; the cut's side does not move.
    let t = times(lognormal(3000, 400.0, 1.2), lognormal(1500, 400.0, 1.2));
    let strict = judge(&t, &policy(0), ALPHA_CUT);
    let usual = judge(
        &t,
        &TestPolicy {
            pass_confidence: 0.95,
            ..policy(0)
        },
        ALPHA_CUT,
    );
    assert!(usual.pass_at_ms > strict.pass_at_ms, "{usual:?} {strict:?}");
    assert!(usual.better > strict.better, "{usual:?} {strict:?}");
    assert_eq!(usual.cut_at_ms, strict.cut_at_ms);
    assert_eq!(usual.worse, strict.worse);
}

#[test]
fn hostile_values_cannot_make_a_cut_or_a_pass() {
    let d = 10;
    let stable = lognormal(2000, 400.0, 0.8);
    // A healthy canary with d hostile clients reporting 10-minute boots, and d hostile stable
    // clients reporting 0 ms: the cut e-value is no higher than the honest one's.
    let honest = lognormal(150, 400.0, 0.8);
    let mut canary = honest.clone();
    canary.extend([600_000; 10]);
    let mut fast_stable = stable.clone();
    fast_stable.extend([0; 10]);
    let attacked = judge(&times(fast_stable, canary), &policy(d), ALPHA_CUT);
    let clean = judge(&times(stable.clone(), honest), &policy(0), ALPHA_CUT);
    assert!(
        attacked.worse <= clean.worse + 1e-9,
        "{attacked:?} vs {clean:?}"
    );
    // A slow canary with d hostile 0 ms boots, and d hostile 10-minute stable boots: the
    // pass e-value is no higher than the honest one's.
    let honest = lognormal(300, 800.0, 0.8);
    let mut canary = honest.clone();
    canary.extend([0; 10]);
    let mut slow_stable = stable.clone();
    slow_stable.extend([600_000; 10]);
    let attacked = judge(&times(slow_stable, canary), &policy(d), ALPHA_CUT);
    let clean = judge(&times(stable, honest), &policy(0), ALPHA_CUT);
    assert!(attacked.better <= clean.better + 1e-9);
    assert!(attacked.better < (1.0 / 0.01f64).ln(), "no pass");
}

#[test]
fn no_data_is_no_evidence() {
    for t in [
        times(vec![], vec![]),
        times(vec![400; 3], vec![5000; 3]),
        times(lognormal(2000, 400.0, 0.8), vec![]),
    ] {
        let j = judge(&t, &policy(0), ALPHA_CUT);
        assert!(j.worse <= 0.0 && j.better <= 0.0, "{t:?}: {j:?}");
    }
}

#[test]
fn the_reason_names_the_slowdown_with_its_interval() {
    let t = times(lognormal(2000, 400.0, 0.8), lognormal(300, 600.0, 0.8));
    let text = judge(&t, &policy(0), ALPHA_CUT).describe(0.99);
    assert!(
        text.starts_with("canary boots 5")
            && text.contains("% slower than stable on the median (99% interval of the slowdown "),
        "{text}"
    );
    assert!(
        text.contains("ms of 300 canary clients vs") && text.contains("of 2000 stable"),
        "{text}"
    );
}

#[test]
fn boot_times_round_trip_as_bytes() {
    let values = vec![0, 1, 412, u32::MAX];
    let bytes = BootTimes::to_bytes(&values);
    assert_eq!(bytes.len(), 16);
    assert_eq!(BootTimes::from_bytes(&bytes), values);
    assert_eq!(
        BootTimes::from_bytes(&bytes[..7]),
        vec![0],
        "a partial value is dropped"
    );
    assert!(BootTimes::from_bytes(&[]).is_empty());
}

#[test]
fn boot_times_keep_one_value_per_client_within_the_cap() {
    let mut b = BootTimes::default();
    b.push(true, Some(5));
    b.push(true, None);
    b.push(false, Some(7));
    b.push(true, Some(3));
    b.push(true, Some(5));
    assert_eq!(
        (b.canary(), b.stable()),
        (&[3, 5, 5][..], &[7][..]),
        "sorted"
    );
    for _ in 0..crate::control::tracker::BOOT_TIMES_KEPT + 5 {
        b.push(false, Some(1));
    }
    assert_eq!(b.stable().len(), crate::control::tracker::BOOT_TIMES_KEPT);
    assert_eq!(BootTimes::new(vec![3, 1, 2], vec![]).stable(), &[1, 2, 3]);
}

#[test]
#[ignore = "a timing, not a check: cargo test -p canary-core judge_cost --release -- --ignored --nocapture"]
fn judge_cost() {
    let t = times(lognormal(20_000, 400.0, 0.8), lognormal(20_000, 420.0, 0.8));
    let started = std::time::Instant::now();
    for _ in 0..100 {
        std::hint::black_box(judge(&t, &policy(10), ALPHA_CUT));
    }
    eprintln!(
        "judge at 20,000 values a channel: {:?} a call",
        started.elapsed() / 100
    );
}
