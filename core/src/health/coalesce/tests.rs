use super::*;
use crate::health::counts::ClientEvent;
use crate::health::counts::Clients;

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn demo() -> Coalescer {
    Coalescer::new(BundleName::parse("demo").unwrap())
}

fn event(client: u64, signal: Signal) -> ClientEvent {
    ClientEvent {
        client,
        network: client,
        canary: true,
        signal,
        boot_ms: None,
    }
}

/// An isolate's batch about 1.0.0 / 1.1.0 at `weight`: these clients, with these signals.
fn batch(weight: u64, events: &[(u64, Signal)]) -> String {
    let mut clients = Clients::default();
    for &(client, signal) in events {
        clients
            .channel_mut(true)
            .insert(client, signal == Signal::Failure);
    }
    serde_json::to_string(&Batch {
        stable: v("1.0.0"),
        canary: Some(v("1.1.0")),
        weight: Some(Weight::new(weight).unwrap()),
        clients,
        events: events.iter().map(|&(c, s)| event(c, s)).collect(),
        reports: Vec::new(),
    })
    .unwrap()
}

fn message(out: &Outgoing) -> IngestMessage {
    serde_json::from_str(&out.body).unwrap()
}

#[test]
fn batches_of_the_same_versions_and_weight_merge_keeping_each_signal_once() {
    let mut c = demo();
    c.add(
        "demo",
        &batch(50, &[(1, Signal::Load), (1, Signal::Boot)]),
        0.0,
    )
    .unwrap();
    c.add(
        "demo",
        &batch(
            50,
            &[(1, Signal::Load), (2, Signal::Load), (2, Signal::Failure)],
        ),
        0.0,
    )
    .unwrap();
    c.add("demo", &batch(40, &[(3, Signal::Load)]), 0.0)
        .unwrap();
    let m = message(&c.take(0.0).unwrap());
    assert_eq!(m.merged, 3);
    assert_eq!(m.batches.len(), 2, "another weight stays apart");
    let at50 = &m.batches[0];
    let signals: Vec<(u64, Signal)> = at50.events.iter().map(|e| (e.client, e.signal)).collect();
    assert_eq!(
        signals,
        [
            (1, Signal::Load),
            (1, Signal::Boot),
            (2, Signal::Load),
            (2, Signal::Failure)
        ]
    );
    let counts = at50.clients.counts().canary;
    assert_eq!((counts.clients, counts.errors), (2, 1));
    assert_eq!(m.batches[1].weight, Some(Weight::new(40).unwrap()));
    assert!(c.take(1_000.0).is_none(), "nothing left");
}

#[test]
fn refuses_another_bundle_and_malformed_batches() {
    let mut c = demo();
    let cases = [
        (
            "other",
            batch(50, &[(1, Signal::Load)]),
            "this aggregator serves bundle demo",
        ),
        ("demo", "{".to_owned(), "bad batch"),
        (
            "demo",
            r#"{"stable":"../x","canary":null,"clients":{}}"#.to_owned(),
            "bad batch",
        ),
    ];
    for (bundle, body, expected) in cases {
        let refusal = c.add(bundle, &body, 0.0).unwrap_err().to_string();
        assert!(refusal.starts_with(expected), "{bundle} {body}: {refusal}");
    }
    assert!(c.is_idle());
}

#[test]
fn the_first_batch_after_a_quiet_spell_goes_at_once_then_at_most_every_interval() {
    let mut c = demo();
    let b = batch(50, &[(1, Signal::Failure)]);
    assert_eq!(c.add("demo", &b, 10_000.0).unwrap(), 0.0);
    c.take(10_000.0).unwrap();
    assert_eq!(c.add("demo", &b, 10_100.0).unwrap(), 150.0);
    assert_eq!(c.add("demo", &b, 10_249.0).unwrap(), 1.0);
    assert_eq!(c.add("demo", &b, 10_400.0).unwrap(), 0.0);
}

/// An aggregator under a storm: batches arrive at random, the host forwards when told.
/// Whatever the arrival rate, forwards stay at one per interval, and no batch waits more
/// than an interval.
#[test]
fn forwards_are_bounded_per_second_whatever_the_arrival_rate() {
    for per_second in [10u64, 1_000, 5_000] {
        let mut c = demo();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut arrivals: Vec<f64> = (0..per_second * 10)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % 10_000_000) as f64 / 1_000.0
            })
            .collect();
        arrivals.sort_by(f64::total_cmp);
        let (mut forwards, mut scheduled, mut oldest, mut worst_wait) = (0u32, None, 0.0, 0.0f64);
        let mut forward_times = vec![];
        let fire = |c: &mut Coalescer, at: f64, oldest: f64, worst: &mut f64| {
            let out = c.take(at).expect("something pending");
            c.settle(out.seq, true);
            *worst = worst.max(at - oldest);
            at
        };
        for (i, &at) in arrivals.iter().enumerate() {
            if let Some(due) = scheduled {
                if due <= at {
                    forward_times.push(fire(&mut c, due, oldest, &mut worst_wait));
                    forwards += 1;
                    scheduled = None;
                }
            }
            let wait = c
                .add("demo", &batch(50, &[(i as u64, Signal::Load)]), at)
                .unwrap();
            if scheduled.is_none() {
                scheduled = Some(at + wait);
                oldest = at;
            }
        }
        if let Some(due) = scheduled {
            forward_times.push(fire(&mut c, due, oldest, &mut worst_wait));
            forwards += 1;
        }
        assert!(
            forwards <= 41,
            "{per_second}/s: {forwards} forwards in 10 s"
        );
        assert!(
            worst_wait <= FORWARD_EVERY_MS,
            "{per_second}/s: waited {worst_wait} ms"
        );
        for pair in forward_times.windows(2) {
            assert!(pair[1] - pair[0] >= FORWARD_EVERY_MS - 1e-6);
        }
        assert!(c.is_idle());
    }
}

#[test]
fn a_failed_forward_rides_on_the_next_and_is_given_up_after_its_attempts() {
    let mut c = demo();
    c.add("demo", &batch(50, &[(1, Signal::Failure)]), 0.0)
        .unwrap();
    let mut now = 0.0;
    for attempt in 1..FORWARD_ATTEMPTS {
        let out = c.take(now).expect("kept for another forward");
        assert_eq!(message(&out).batches[0].events.len(), 1);
        assert_eq!(
            c.settle(out.seq, false),
            0,
            "attempt {attempt} gives nothing up"
        );
        now += FORWARD_EVERY_MS;
    }
    // New batches merge with the restored one; the restored one is still given up on time.
    c.add("demo", &batch(50, &[(2, Signal::Failure)]), now)
        .unwrap();
    let out = c.take(now).unwrap();
    assert_eq!(message(&out).batches[0].events.len(), 2);
    assert_eq!(c.settle(out.seq, false), 1);
    assert!(c.is_idle());
    // A delivered forward is settled for good; an unknown number is ignored.
    c.add("demo", &batch(50, &[(3, Signal::Failure)]), now)
        .unwrap();
    let out = c.take(now + 1_000.0).unwrap();
    assert_eq!(c.settle(out.seq, true), 0);
    assert_eq!(c.settle(out.seq, false), 0);
    assert!(c.is_idle());
}

#[test]
fn loads_past_a_forwards_share_are_dropped_but_never_boots_or_failures() {
    assert_eq!(LOADS_PER_FORWARD * AGGREGATORS as usize, 99_968);
    let mut c = demo();
    let loads: Vec<(u64, Signal)> = (0..LOADS_PER_FORWARD as u64 + 10)
        .map(|i| (i, Signal::Load))
        .collect();
    c.add("demo", &batch(50, &loads), 0.0).unwrap();
    c.add(
        "demo",
        &batch(
            50,
            &[
                (u64::MAX, Signal::Load),
                (u64::MAX, Signal::Failure),
                (7, Signal::Boot),
            ],
        ),
        0.0,
    )
    .unwrap();
    let m = message(&c.take(0.0).unwrap());
    let events = &m.batches[0].events;
    let count = |s| events.iter().filter(|e| e.signal == s).count();
    assert_eq!(count(Signal::Load), LOADS_PER_FORWARD);
    assert_eq!((count(Signal::Failure), count(Signal::Boot)), (1, 1));
}

#[test]
fn aggregator_names_are_the_bundle_and_its_shard() {
    let demo = BundleName::parse("demo").unwrap();
    assert_eq!(aggregator_name(&demo, 7), "demo#7");
    assert_eq!(aggregator_name(&demo, AGGREGATORS + 1), "demo#1");
    assert_eq!(shard_suffix(63), "#63");
}

fn relay() -> ConfigRelay {
    ConfigRelay::new(BundleName::parse("demo").unwrap())
}

/// A monitor's answer to a forward carrying `revision` (`None`: no config).
fn ingest_answer(revision: Option<u64>) -> String {
    match revision {
        None => r#"{"ok":true}"#.into(),
        Some(r) => format!(
            r#"{{"ok":true,"config":{{"revision":{r},"text":"{{\"stable\":\"1.0.0\",\"weight\":0,\"revision\":{r}}}"}}}}"#
        ),
    }
}

#[test]
fn a_relay_keeps_the_latest_config_it_learned() {
    let mut r = relay();
    assert_eq!(r.message(), "", "nothing known");
    assert!(r.learn(&ingest_answer(Some(3)), 1_000.0));
    assert_eq!(
        r.message(),
        "3\n{\"stable\":\"1.0.0\",\"weight\":0,\"revision\":3}"
    );
    // A config check's answer reads the same way.
    let check = r#"{"config":{"revision":4,"text":"{\"stable\":\"1.0.0\"}\n"}}"#;
    assert!(r.learn(check, 1_100.0));
    assert_eq!(r.message(), "4\n{\"stable\":\"1.0.0\"}\n");
    // (answer, at, taken, revision known after)
    let rows: &[(&str, f64, bool, Option<&str>)] = &[
        ("not json", 1_200.0, false, Some("4")),
        (
            r#"{"ok":true,"config":{"revision":"x"}}"#,
            1_200.0,
            false,
            Some("4"),
        ),
    ];
    for &(answer, at, taken, known) in rows {
        assert_eq!(r.learn(answer, at), taken, "{answer}");
        assert_eq!(
            r.message().split('\n').next().filter(|s| !s.is_empty()),
            known
        );
    }
    // An older answer arriving late is ignored; past CONFIG_REORDER_MS a lower revision is
    // the monitor's word (it started over).
    assert!(!r.learn(&ingest_answer(Some(2)), 2_000.0));
    assert!(r.message().starts_with("4\n"));
    assert!(r.learn(&ingest_answer(Some(2)), 1_100.0 + CONFIG_REORDER_MS));
    assert!(r.message().starts_with("2\n"));
    // An answer without a config: the monitor has none (a deleted key it adopted).
    assert!(r.learn(&ingest_answer(None), 20_000.0));
    assert_eq!(r.message(), "");
}

#[test]
fn a_relay_asks_the_monitor_at_most_once_a_second_and_only_when_stale() {
    let mut r = relay();
    // (now, learned at this time first, asks?)
    let rows: &[(f64, Option<u64>, bool)] = &[
        (0.0, None, true),         // nothing known: ask
        (500.0, None, false),      // asked 0.5 s ago (its answer not in yet)
        (1_000.0, None, true),     // a second since the last ask
        (1_100.0, Some(5), false), // just learned (from the ask, or a forward's answer)
        (2_099.0, None, false),    // learned 0.999 s ago
        (2_100.0, None, true),     // learned a second ago: ask
        (2_200.0, Some(5), false), // a forward's answer meanwhile: fresh again
        (3_150.0, None, false),    // learned 0.95 s ago
        (3_200.0, None, true),
    ];
    for &(now, learn, asks) in rows {
        if let Some(revision) = learn {
            assert!(r.learn(&ingest_answer(Some(revision)), now));
        }
        assert_eq!(r.ask(now), asks, "at {now}");
    }
    // So at most one ask a second per aggregator, whatever the checks: AGGREGATORS a
    // second per bundle.
    let mut r = relay();
    let asks = (0..10_000).filter(|i| r.ask(*i as f64)).count();
    assert_eq!(asks, 10);
    assert_eq!(
        r.check_bundle("other"),
        Err(Refusal::OtherBundle("demo".into()))
    );
    assert_eq!(r.check_bundle("demo"), Ok(()));
}
