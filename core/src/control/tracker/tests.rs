use super::*;

const GRACE: f64 = 30_000.0;

fn rule(expected: bool, stable_present: bool) -> BootRule {
    BootRule {
        expected,
        stable_present,
        grace_ms: GRACE,
        stable_sample: 1.0,
    }
}

/// The error family's counts and the silent clients per channel (stable, canary).
fn seen(r: Resolved) -> (ChannelCounts, (u64, u64)) {
    (r.errors, (r.silence.stable.errors, r.silence.canary.errors))
}

fn ev(client: u64, network: u64, canary: bool, signal: Signal) -> ClientEvent {
    ClientEvent {
        client,
        network,
        canary,
        signal,
    }
}

fn counts(sc: u64, se: u64, cc: u64, ce: u64) -> ChannelCounts {
    ChannelCounts {
        stable: Counts {
            clients: sc,
            errors: se,
        },
        canary: Counts {
            clients: cc,
            errors: ce,
        },
    }
}

use Signal::*;

#[test]
fn each_client_is_resolved_once_by_boot_failure_or_silence() {
    // (events, rule, at the load: errors family and silent clients, at the sweep: same)
    let r = rule(true, true);
    let none = (counts(0, 0, 0, 0), (0, 0));
    for (events, rule, at_load, at_sweep) in [
        // Booted: fine, counted when the boot comes.
        (
            vec![ev(1, 1, true, Load), ev(1, 0, true, Boot)],
            r,
            (counts(0, 0, 1, 0), (0, 0)),
            none,
        ),
        // Silent past the grace, boots expected, stable present: no_boot (silence family).
        (
            vec![ev(1, 1, true, Load)],
            r,
            none,
            (counts(0, 0, 0, 0), (0, 1)),
        ),
        // Same on stable.
        (
            vec![ev(1, 1, false, Load)],
            r,
            none,
            (counts(0, 0, 0, 0), (1, 0)),
        ),
        // Silent at weight 100: left out, neither pass nor failure.
        (vec![ev(1, 1, true, Load)], rule(true, false), none, none),
        // A bundle without boot signals: silence is a fine client.
        (
            vec![ev(1, 1, true, Load)],
            rule(false, true),
            none,
            (counts(0, 0, 1, 0), (0, 0)),
        ),
        // A failure counts at once, booted or not, and only once.
        (
            vec![
                ev(1, 1, true, Load),
                ev(1, 0, true, Failure),
                ev(1, 0, true, Failure),
                ev(1, 0, true, Boot),
            ],
            r,
            (counts(0, 0, 1, 1), (0, 0)),
            none,
        ),
        // Booted, then failed: one client, one failure.
        (
            vec![
                ev(1, 1, true, Load),
                ev(1, 0, true, Boot),
                ev(1, 0, true, Failure),
            ],
            r,
            (counts(0, 0, 1, 1), (0, 0)),
            none,
        ),
        // A boot before its load waits for it.
        (
            vec![ev(1, 0, true, Boot), ev(1, 1, true, Load)],
            r,
            (counts(0, 0, 1, 0), (0, 0)),
            none,
        ),
        // Signals without a load count nothing.
        (
            vec![ev(1, 0, true, Failure), ev(2, 0, false, Boot)],
            r,
            none,
            none,
        ),
        // A signal of the other channel is not the client's.
        (
            vec![ev(1, 1, true, Load), ev(1, 0, false, Failure)],
            r,
            none,
            (counts(0, 0, 0, 0), (0, 1)),
        ),
        // One client per network per step, whichever channel: the second is not counted.
        (
            vec![
                ev(1, 7, true, Load),
                ev(2, 7, false, Load),
                ev(2, 0, false, Failure),
                ev(1, 0, true, Boot),
            ],
            r,
            (counts(0, 0, 1, 0), (0, 0)),
            none,
        ),
    ] {
        let mut t = Tracker::default();
        let got = t.apply(&events, rule, 0.0);
        assert_eq!(seen(got), at_load, "{events:?}");
        assert_eq!(
            t.sweep(rule, GRACE - 1.0),
            Resolved::default(),
            "not yet due"
        );
        assert_eq!(seen(t.sweep(rule, GRACE)), at_sweep, "{events:?}");
        assert_eq!(t.sweep(rule, 10.0 * GRACE), Resolved::default(), "once");
    }
}

#[test]
fn clients_that_ran_and_silent_ones_make_the_silence_family() {
    let r = rule(true, true);
    let mut t = Tracker::default();
    let mut events = vec![];
    for id in 0..10 {
        events.push(ev(id, id, true, Load));
        if id < 7 {
            events.push(ev(id, 0, true, Boot));
        }
    }
    let mut got = t.apply(&events, r, 0.0);
    got.add(t.sweep(r, GRACE));
    assert_eq!(
        got.errors.canary,
        Counts {
            clients: 7,
            errors: 0
        }
    );
    assert_eq!(
        got.silence.canary,
        Counts {
            clients: 10,
            errors: 3
        }
    );
    // A report after the client was counted silent changes nothing.
    assert_eq!(
        t.apply(&[ev(9, 0, true, Failure)], r, GRACE + 1.0),
        Resolved::default()
    );
}

#[test]
fn stable_clients_are_sampled_at_the_rate_and_canary_ones_all_tracked() {
    let r = BootRule {
        stable_sample: 0.1,
        ..rule(false, true)
    };
    let mut t = Tracker::default();
    let events: Vec<_> = (0..20_000u64)
        .map(|id| {
            ev(
                id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                id,
                id % 2 == 0,
                Load,
            )
        })
        .collect();
    let got = t.apply(&events, r, 0.0);
    let _ = got;
    let tracked_stable = 10_000 - t.refused.not_sampled;
    assert!((800..=1_200).contains(&tracked_stable), "{tracked_stable}");
    let resolved = t.sweep(r, GRACE);
    assert_eq!(resolved.errors.canary.clients, 10_000);
    assert_eq!(resolved.errors.stable.clients, tracked_stable);
}

#[test]
fn a_network_counts_once_however_many_ids_it_mints() {
    let mut t = Tracker::default();
    let events: Vec<_> = (0..1_000).map(|id| ev(id, 42, true, Load)).collect();
    t.apply(&events, rule(true, true), 0.0);
    let failures: Vec<_> = (0..1_000).map(|id| ev(id, 0, true, Failure)).collect();
    let got = t.apply(&failures, rule(true, true), 1.0);
    assert_eq!(got.errors, counts(0, 0, 1, 1));
    assert_eq!(t.refused.network_cap, 999);
}

#[test]
fn capacity_and_waiting_signals_are_bounded() {
    let mut t = Tracker::default();
    let loads: Vec<_> = (0..MAX_TRACKED as u64 + 10)
        .map(|id| ev(id, id, false, Load))
        .collect();
    t.apply(&loads, rule(false, true), 0.0);
    assert_eq!(t.refused.over_capacity, 10);
    let boots: Vec<_> = (0..MAX_WAITING as u64 * 2)
        .map(|id| ev(u64::MAX - id, 0, false, Boot))
        .collect();
    t.apply(&boots, rule(false, true), 0.0);
    assert_eq!(t.waiting.len(), MAX_WAITING);
    // Waiting signals age out.
    t.sweep(rule(false, true), 3.0 * GRACE);
    assert!(t.waiting.is_empty());
}

/// A boot goes out within a second; its client's load may wait in its isolate until the
/// next flush (10 s by default, on the isolate's next request). With a short grace the boot
/// must still be there when the load comes, or a client that booted counts as silent.
#[test]
fn a_boot_waits_for_a_load_flushed_late_even_with_a_short_grace() {
    let short = BootRule {
        grace_ms: 5_000.0,
        ..rule(true, true)
    };
    // (seconds between the boot and its load, silent clients at the sweep after the grace)
    for (late_secs, silent) in [(1.0, 0), (12.0, 0), (30.0, 0), (59.0, 0), (61.0, 1)] {
        let mut t = Tracker::default();
        t.apply(&[ev(7, 0, true, Boot)], short, 0.0);
        let at_load = late_secs * 1_000.0;
        t.sweep(short, at_load - 1.0);
        t.apply(&[ev(7, 7, true, Load)], short, at_load);
        let r = t.sweep(short, at_load + 6_000.0);
        assert_eq!(
            r.silence.canary.errors, silent,
            "load {late_secs} s after its boot"
        );
        assert_eq!(t.no_boot[1], silent, "load {late_secs} s after its boot");
    }
}

#[test]
fn the_next_due_time_is_the_earliest_pending_grace() {
    let mut t = Tracker::default();
    assert_eq!(t.next_due_ms(GRACE), None);
    t.apply(&[ev(1, 1, true, Load)], rule(true, true), 5.0);
    t.apply(&[ev(2, 2, true, Load)], rule(true, true), 9.0);
    assert_eq!(t.next_due_ms(GRACE), Some(5.0 + GRACE));
    assert_eq!(t.pending(), 2);
}

#[test]
fn events_round_trip_as_json_with_hex_ids() {
    let e = ev(u64::MAX, 0xabc, true, Boot);
    let text = serde_json::to_string(&e).unwrap();
    assert_eq!(
        text,
        r#"{"client":"ffffffffffffffff","network":"abc","canary":true,"signal":"boot"}"#
    );
    assert_eq!(serde_json::from_str::<ClientEvent>(&text).unwrap(), e);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        serde_json::from_value::<ClientEvent>(value).unwrap(),
        e,
        "through a Value"
    );
    for bad in [
        r#"{"client":"","canary":true,"signal":"boot"}"#,
        r#"{"client":"1ffffffffffffffff","canary":true,"signal":"boot"}"#,
        r#"{"client":"zz","canary":true,"signal":"boot"}"#,
        r#"{"client":"1","canary":true,"signal":"reboot"}"#,
    ] {
        assert!(serde_json::from_str::<ClientEvent>(bad).is_err(), "{bad}");
    }
}
