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
        boot_ms: None,
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

/// The store as the Durable Object's tables hold it: rows by id, written from
/// `take_changes` the way the SQL is (reset drops every row first; gone waiting rows are
/// deleted), and the totals row.
#[derive(Default)]
struct Store {
    clients: std::collections::BTreeMap<u64, ClientRow>,
    networks: std::collections::BTreeMap<u64, u32>,
    waiting: std::collections::BTreeMap<u64, WaitingRow>,
    totals: Totals,
    rows_written: usize,
}

impl Store {
    fn save(&mut self, t: &mut Tracker) {
        let c = t.take_changes();
        if c.reset {
            self.clients.clear();
            self.networks.clear();
            self.waiting.clear();
        }
        self.rows_written += c.clients.len() + c.networks.len() + c.waiting.len();
        for r in c.clients {
            self.clients.insert(r.client, r);
        }
        for (n, k) in c.networks {
            self.networks.insert(n, k);
        }
        for r in c.waiting {
            self.waiting.insert(r.client, r);
        }
        for id in c.waiting_gone {
            self.waiting.remove(&id);
        }
        self.totals = t.totals();
    }

    fn restore(&self) -> Tracker {
        Tracker::restore(
            self.clients.values().copied(),
            self.networks.iter().map(|(n, k)| (*n, *k)),
            self.waiting.values().copied(),
            self.totals,
        )
    }
}

/// A step of varied traffic: loads (some from shared networks), boots before and after
/// their loads, failures, other-channel signals, silence, and a batch every second.
fn traffic(seed: u64) -> Vec<(f64, Vec<ClientEvent>)> {
    let mut x = seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    (0..120)
        .map(|second| {
            let mut events = vec![];
            for _ in 0..20 {
                let id = next() % 400;
                let canary = id % 3 == 0;
                let signal = match next() % 10 {
                    0..=3 => Load,
                    4..=7 => Boot,
                    _ => Failure,
                };
                // Loads from 150 networks; signals from 7 addresses (some beyond their cap).
                let network = if signal == Load { id % 150 } else { 1 + id % 7 };
                // Now and then a signal of the other channel.
                let canary = if next() % 50 == 0 { !canary } else { canary };
                events.push(ev(id, network, canary, signal));
            }
            (f64::from(second) * 1_000.0, events)
        })
        .collect()
}

#[test]
fn a_restart_at_any_batch_changes_no_count() {
    let r = BootRule {
        grace_ms: 10_000.0,
        ..rule(true, true)
    };
    for seed in 1..=5 {
        // The same traffic to a tracker that runs on, and to one rebuilt from its store
        // after every batch: each batch counts the same, and the trackers stay equal.
        let mut whole = Tracker::default();
        let mut store = Store::default();
        let mut restarted = Tracker::default();
        for (i, (at, events)) in traffic(seed).iter().enumerate() {
            let expected = whole.apply(events, r, *at);
            assert_eq!(
                restarted.apply(events, r, *at),
                expected,
                "seed {seed}, batch {i}"
            );
            store.save(&mut restarted);
            restarted = store.restore();
            assert_eq!(restarted, whole, "seed {seed}, batch {i}");
            assert_eq!(
                restarted.pending(),
                whole.pending(),
                "seed {seed}, batch {i}"
            );
            assert_eq!(
                restarted.next_due_ms(r.grace_ms),
                whole.next_due_ms(r.grace_ms),
                "seed {seed}, batch {i}"
            );
        }
        assert!(whole.refused.network_cap > 0, "the traffic shares networks");
        assert!(
            whole.no_boot[0] + whole.no_boot[1] > 0,
            "some clients go silent"
        );
        assert!(!whole.waiting.is_empty() || store.rows_written > 0);
        assert!(
            whole.refused.waiting_full > 0,
            "some networks wait beyond their cap"
        );
    }
}

#[test]
fn a_save_writes_only_what_changed() {
    let r = rule(true, true);
    let mut t = Tracker::default();
    let loads: Vec<_> = (0..1_000).map(|id| ev(id, id, true, Load)).collect();
    t.apply(&loads, r, 0.0);
    let first = t.take_changes();
    assert_eq!((first.clients.len(), first.networks.len()), (1_000, 1_000));
    // One boot: one client row, nothing else.
    t.apply(&[ev(5, 0, true, Boot)], r, 1.0);
    let one = t.take_changes();
    assert_eq!(one.clients.len(), 1);
    assert!(one.networks.is_empty() && one.waiting.is_empty() && !one.reset);
    // A refused load changes only the totals; a repeated boot changes nothing.
    t.apply(&[ev(5_000, 7, true, Load), ev(5, 0, true, Boot)], r, 2.0);
    assert!(t.take_changes().is_empty());
    // A boot before its load waits in a row; its load takes it (the row goes).
    t.apply(&[ev(9_000, 0, false, Boot)], r, 3.0);
    assert_eq!(t.take_changes().waiting.len(), 1);
    t.apply(&[ev(9_000, 9_000, false, Load)], r, 4.0);
    let taken = t.take_changes();
    assert_eq!(taken.waiting_gone, vec![9_000]);
    assert_eq!(taken.clients.len(), 1);
    // The sweep writes the clients it resolves.
    t.apply(&[], r, GRACE + 0.5);
    assert_eq!(
        t.take_changes().clients.len(),
        999,
        "all but the booted one went silent"
    );
    // A new step drops every row.
    t.reset();
    let reset = t.take_changes();
    assert!(reset.reset && reset.clients.is_empty());
}

#[test]
fn stored_states_round_trip_through_their_codes() {
    for s in [
        Resolution::Pending,
        Resolution::Counted { failed: false },
        Resolution::Counted { failed: true },
        Resolution::Silent,
        Resolution::LeftOut,
    ] {
        assert_eq!(Resolution::from_code(s.code()), Some(s));
    }
    assert_eq!(Resolution::from_code(9), None);
}

#[test]
fn a_detached_tracker_leaves_its_counters_behind() {
    let r = rule(true, true);
    let mut t = Tracker::default();
    t.apply(
        &[
            ev(1, 1, true, Load),
            ev(2, 1, true, Load),
            ev(3, 3, false, Load),
        ],
        r,
        0.0,
    );
    let (pending, totals) = (t.pending(), t.totals());
    let moved = t.detach();
    assert_eq!((t.pending(), t.totals(), t.len()), (pending, totals, 0));
    assert_eq!(
        (moved.pending(), moved.totals(), moved.len()),
        (pending, totals, 2)
    );
}

/// One network mints ids and sends a signal for each before any load (their loads never
/// come, or are refused by the network cap): more than the whole table holds. Honest
/// clients of other networks, whose boots and failures come before their loads as usual,
/// must still be matched when their loads arrive.
#[test]
fn a_network_flooding_the_waiting_table_crowds_out_no_one_else() {
    let r = rule(true, true);
    let mut t = Tracker::default();
    const FLOOD: u64 = 0xf100d;
    let flood: Vec<_> = (0..MAX_WAITING as u64 + 5_000)
        .map(|id| ev(1 << 40 | id, FLOOD, id % 2 == 0, Failure))
        .collect();
    t.apply(&flood, r, 0.0);
    // 200 honest clients on networks of their own: 20 fail, the rest boot; then their loads.
    let honest = |id: u64| (id, 1_000 + id, id.is_multiple_of(2));
    let signals: Vec<_> = (1..=200)
        .map(honest)
        .map(|(id, net, canary)| ev(id, net, canary, if id % 10 == 0 { Failure } else { Boot }))
        .collect();
    t.apply(&signals, r, 1_000.0);
    let loads: Vec<_> = (1..=200)
        .map(honest)
        .map(|(id, net, canary)| ev(id, net, canary, Load))
        .collect();
    let matched = t.apply(&loads, r, 10_000.0);
    let later = t.sweep(r, 10_000.0 + GRACE + 1.0);
    let clients = matched.errors.canary.clients + matched.errors.stable.clients;
    let failures = matched.errors.canary.errors + matched.errors.stable.errors;
    println!(
        "honest clients matched at their load: {clients}/200 ({failures}/20 failures); \
         silent after the grace: {}",
        later.silence.canary.errors + later.silence.stable.errors
    );
    assert_eq!((clients, failures), (200, 20));
    assert_eq!(later.silence, ChannelCounts::default());
    assert_eq!(t.pending(), 0);
}

#[test]
fn signals_wait_within_their_networks_cap_and_go_when_their_load_is_refused() {
    let r = rule(true, true);
    let mut t = Tracker::default();
    // A network's signals beyond its cap are not kept; repeats of a kept one are.
    let flood: Vec<_> = (0..100).map(|id| ev(id, 5, true, Boot)).collect();
    t.apply(&flood, r, 0.0);
    assert_eq!(t.waiting.len(), WAITING_PER_NETWORK as usize);
    assert_eq!(t.refused.waiting_full, 100 - u64::from(WAITING_PER_NETWORK));
    t.apply(&[ev(0, 5, true, Failure)], r, 1.0);
    assert!(t.waiting[&0].failed && t.refused.waiting_full == 84);
    // Network 0 (unknown: an older edge's batch) is bounded by the table only.
    let unknown: Vec<_> = (1_000..1_100).map(|id| ev(id, 0, true, Boot)).collect();
    t.apply(&unknown, r, 2.0);
    assert_eq!(t.waiting.len(), WAITING_PER_NETWORK as usize + 100);
    // The first load of network 9 takes its waiting boot; the others' loads are refused by
    // the network cap, and their signals leave the table (they can never match), freeing
    // their network's slots at once rather than after a minute.
    let loads: Vec<_> = (0..WAITING_PER_NETWORK as u64)
        .map(|id| ev(id, 9, true, Load))
        .collect();
    let got = t.apply(&loads, r, 3.0);
    assert_eq!(got.errors, counts(0, 0, 1, 1));
    assert_eq!(t.refused.network_cap, u64::from(WAITING_PER_NETWORK) - 1);
    assert_eq!(t.waiting.len(), 100);
    assert!(!t.waiting_networks.contains_key(&5));
    let again: Vec<_> = (200..200 + WAITING_PER_NETWORK as u64)
        .map(|id| ev(id, 5, false, Boot))
        .collect();
    t.apply(&again, r, 4.0);
    assert_eq!(t.waiting_networks[&5], WAITING_PER_NETWORK);
    // Aged out, they leave their network's count too.
    t.sweep(r, 4.0 + WAITING_KEEP_MS + 1.0);
    assert!(t.waiting.is_empty() && t.waiting_networks.is_empty());
}

#[test]
fn early_silence_bins_stable_boot_ages_and_a_late_boot_withdraws_a_canary_silence() {
    let mut t = Tracker::default();
    let r = rule(true, true);
    // Two stable clients loaded at 0: one boots at 1.2 s, one never; a canary client at 0.
    t.apply(
        &[
            ev(1, 1, false, Signal::Load),
            ev(2, 2, false, Signal::Load),
            ev(3, 3, true, Signal::Load),
        ],
        r,
        0.0,
    );
    t.apply(&[ev(1, 1, false, Signal::Boot)], r, 1_200.0);
    let e = t.early_silence(3_000.0, GRACE);
    assert_eq!(e.stable.len(), 61);
    // Bin 0 (age 0): both not booted; bin 2 (age 1 s): both; bin 3 (1.5 s): one booted.
    assert_eq!(e.stable[0], (2, 2));
    assert_eq!(e.stable[2], (2, 2));
    assert_eq!(e.stable[3], (2, 1));
    // Ages beyond the clients' own (3 s) have no stable clients yet.
    assert_eq!(e.stable[7], (0, 0));
    assert_eq!(e.canary_silent[6], 1);
    // The canary client boots late: no longer silent anywhere.
    t.apply(&[ev(3, 3, true, Signal::Boot)], r, 9_000.0);
    let e = t.early_silence(9_000.0, GRACE);
    assert_eq!(e.canary_silent.iter().sum::<u64>(), 0);
    // Restored from its rows, the same data.
    let rows = t.take_changes();
    let back = Tracker::restore(rows.clients, rows.networks, rows.waiting, t.totals());
    assert_eq!(back.early_silence(9_000.0, GRACE), e);
}

#[test]
fn a_client_keeps_its_first_boot_time_and_a_restore_keeps_them_all() {
    let mut t = Tracker::default();
    let r = rule(true, true);
    let boot = |client, canary, ms| ClientEvent {
        boot_ms: Some(ms),
        ..ev(client, client, canary, Signal::Boot)
    };
    // Client 1 loads then boots twice (a reload): its first time counts. Client 2's boot
    // comes before its load (it waits, with its time). Client 3 boots without a time (an
    // older edge): no value. Client 4 is a stable client.
    t.apply(&[ev(1, 1, true, Load), boot(1, true, 900)], r, 0.0);
    t.apply(&[boot(1, true, 50), boot(2, true, 700)], r, 100.0);
    t.apply(
        &[
            ev(2, 2, true, Load),
            ev(3, 3, true, Load),
            ev(3, 3, true, Boot),
        ],
        r,
        200.0,
    );
    t.apply(&[ev(4, 4, false, Load), boot(4, false, 400)], r, 300.0);
    assert_eq!(t.boot_times().canary(), &[700, 900]);
    assert_eq!(t.boot_times().stable(), &[400]);
    let rows = t.take_changes();
    let times: Vec<Option<u32>> = rows.clients.iter().map(|c| c.tracked.boot_ms).collect();
    assert_eq!(times, [Some(900), Some(700), None, Some(400)]);
    let back = Tracker::restore(rows.clients, rows.networks, rows.waiting, t.totals());
    assert_eq!(back.boot_times(), t.boot_times());
}

#[test]
fn signals_of_stable_clients_outside_the_sample_do_not_wait() {
    let mut t = Tracker::default();
    let r = BootRule {
        stable_sample: 0.1,
        ..rule(true, true)
    };
    // 1,000 stable boots and 10 canary boots before their loads: only the sampled stable
    // ones (about 100) and every canary one wait.
    let mut events: Vec<ClientEvent> = (1..=1000).map(|id| ev(id, id, false, Boot)).collect();
    events.extend((2001..=2010).map(|id| ev(id, id, true, Boot)));
    t.apply(&events, r, 0.0);
    let sampled_stable = (1..=1000).filter(|&id| sampled(id, 0.1)).count();
    assert!((50..200).contains(&sampled_stable), "{sampled_stable}");
    assert_eq!(t.waiting.len(), sampled_stable + 10);
    assert_eq!(t.refused.waiting_full, 0);
}
