//! Evidence and verdicts through the machine: which batches count, cuts, silence.

use super::*;

#[test]
fn batches_about_other_versions_never_judge_the_canary() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("weight", r#"{"weight": 50}"#);
    // A stale isolate still counting an old canary: errors galore, ignored.
    sim.batch(Some("1.0.9"), (100, 0), (100, 90));
    assert_eq!(sim.kv_config().weight.percent(), 50);
    assert_eq!(sim.state.health.totals.counts(), ChannelCounts::default());
    let ignored = sim.logged("batch_ignored");
    assert_eq!(ignored[0]["batch_canary"], "1.0.9");
    assert_eq!(ignored[0]["canary"], "1.1.0");
    // The live canary failing is cut, once.
    sim.batch(Some("1.1.0"), (100, 0), (30, 20));
    assert_eq!(sim.kv_config().weight, Weight::ZERO);
    sim.batch(Some("1.1.0"), (100, 0), (30, 20));
    assert_eq!(
        sim.state.history.of_kind("rollback").count(),
        1,
        "a second unhealthy batch (now about a canary that is not live) cuts nothing"
    );
    assert_eq!(sim.kv_config().extra["rollback"]["by"], "auto");
}

#[test]
fn equal_error_rates_are_never_cut_and_a_bad_canary_is() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("weight", r#"{"weight": 50}"#);
    for _ in 0..40 {
        sim.batch(Some("1.1.0"), (50, 10), (50, 10));
    }
    assert_eq!(
        sim.kv_config().weight.percent(),
        50,
        "20% on both sides is a shared cause"
    );
    assert_eq!(
        sim.state.judge().verdict,
        crate::control::verdict::Verdict::Pass
    );
    let mut bad = Sim::new(dark(), 10);
    bad.command("weight", r#"{"weight": 50}"#);
    for _ in 0..10 {
        bad.batch(Some("1.1.0"), (20, 1), (20, 8));
    }
    assert_eq!(bad.kv_config().weight.percent(), 0, "cut");
}

#[test]
fn a_client_counts_once_per_step_however_many_batches_it_is_in() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("weight", r#"{"weight": 50}"#);
    let ev = |client, signal| ClientEvent {
        client,
        network: client,
        canary: true,
        signal,
        boot_ms: None,
    };
    for _ in 0..5 {
        let mut events: Vec<_> = (1..=10).map(|id| ev(id, Signal::Load)).collect();
        events.extend((1..=10).map(|id| ev(id, Signal::Boot)));
        events.push(ev(3, Signal::Failure));
        sim.batch_events(Some("1.1.0"), Clients::default(), events);
    }
    let seen = sim.state.evidence.seen.canary;
    assert_eq!((seen.clients, seen.errors), (10, 1));
}

/// A batch where stable's clients load and boot, and the canary's only load.
fn silent_canary_batch(sim: &mut Sim, stable: u64, canary: u64) {
    let mut events = vec![];
    for (is_canary, n) in [(false, stable), (true, canary)] {
        for _ in 0..n {
            sim.next_client += 1;
            let client = sim.next_client;
            let mut signals = vec![Signal::Load];
            if !is_canary {
                signals.push(Signal::Boot);
            }
            for signal in signals {
                events.push(ClientEvent {
                    client,
                    network: client,
                    canary: is_canary,
                    signal,
                    boot_ms: None,
                });
            }
        }
    }
    sim.batch_events(Some("1.1.0"), Clients::default(), events);
}

#[test]
fn a_canary_that_never_boots_is_cut_once_its_clients_grace_ends() {
    let mut sim = Sim::new(
        with_health(json!({"boot_grace_secs": 30, "hostile_networks": 10})),
        10,
    );
    sim.command("rollout", r#"{"steps":[50,100],"bake_secs":60}"#);
    let start = sim.now;
    for i in 0..6 {
        sim.now = start + f64::from(i) * 5_000.0;
        silent_canary_batch(&mut sim, 10, 10);
    }
    assert_eq!(
        sim.kv_config().weight.percent(),
        50,
        "nothing counted before the grace"
    );
    assert!(
        sim.state.booting.contains(&v("1.0.0")),
        "stable's boots make silence count"
    );
    let alarm = sim.alarm.expect("an alarm for the first grace");
    assert!(alarm <= start + 30_000.0 + 1.0, "{alarm}");
    sim.wait_until(start + 60_000.0);
    assert_eq!(sim.kv_config().weight.percent(), 0, "cut on no_boot");
    assert!(sim.state.tracker.no_boot[1] > 10);
    let cut = sim.state.history.of_kind("rollback").next().unwrap();
    assert!(cut.reason.contains("never booted"), "{}", cut.reason);
    // The webhook's evidence is the silence family's counts, which the reason names (the
    // error family has no canary client: none ran).
    let notified = sim.notified.iter().find(|n| n.event == "rollback").unwrap();
    let e = notified.evidence.as_ref().unwrap();
    assert_eq!(e.family, crate::control::verdict::Family::Silence);
    assert!(
        e.canary.clients > 10 && e.canary.failed == e.canary.clients,
        "{e:?}"
    );
    assert_eq!(e.stable.failed, 0, "{e:?}");
}

/// What one copy of the state costs with a full step (the Durable Object made three per
/// event, now one): `cargo test -p canary-core --release -- --ignored --nocapture state_clone_cost`.
#[test]
#[ignore = "a measurement, not a check"]
fn state_clone_cost() {
    let mut config = dark();
    config["weight"] = json!(50);
    let mut sim = Sim::new(config, 10);
    for _ in 0..10 {
        sim.batch(Some("1.1.0"), (5_000, 0), (5_000, 0));
    }
    let tracked = sim.state.tracker.len();
    let runs = 20;
    let started = std::time::Instant::now();
    for _ in 0..runs {
        std::hint::black_box(sim.state.clone());
    }
    let each = started.elapsed() / runs;
    println!("one clone of the state with {tracked} tracked clients: {each:?}");
}

/// The aggregators' merge (`coalesce`) keeps the evidence: the same clients sent one batch
/// per isolate, or merged by an aggregator, give the same verdict and cut at the same
/// point.
#[test]
fn merged_batches_judge_as_the_isolates_batches_they_merge() {
    use crate::health::coalesce::{Coalescer, IngestMessage};
    for (canary_errors, cut) in [(0u64, false), (8, true)] {
        let mut direct = Sim::new(dark(), 10);
        let mut merged = Sim::new(dark(), 10);
        direct.command("weight", r#"{"weight": 50}"#);
        merged.command("weight", r#"{"weight": 50}"#);
        let mut client = 0;
        for round in 0..10 {
            // Twenty isolates' batches a round, each of two clients per channel.
            let mut coalescer = Coalescer::new(BundleName::parse("demo").unwrap());
            for isolate in 0..20u64 {
                let mut clients = Clients::default();
                let mut events = vec![];
                for canary in [false, true] {
                    for _ in 0..2 {
                        client += 1;
                        let failed = canary && isolate < canary_errors;
                        clients.channel_mut(canary).insert(client, false);
                        clients.channel_mut(canary).insert(client, failed);
                        for signal in [
                            Signal::Load,
                            if failed {
                                Signal::Failure
                            } else {
                                Signal::Boot
                            },
                        ] {
                            events.push(ClientEvent {
                                client,
                                network: client,
                                canary,
                                signal,
                                boot_ms: None,
                            });
                        }
                    }
                }
                // The same client seen again by another isolate: a repeat either way.
                events.push(events[0]);
                direct.batch_events(Some("1.1.0"), clients.clone(), events.clone());
                let weight = merged.state.config.as_ref().map(|c| c.weight);
                let batch = Batch {
                    stable: v("1.0.0"),
                    canary: Some(v("1.1.0")),
                    weight,
                    clients,
                    events,
                    reports: Vec::new(),
                };
                coalescer
                    .add(
                        "demo",
                        &serde_json::to_string(&batch).unwrap(),
                        round as f64,
                    )
                    .unwrap();
            }
            let out = coalescer.take(round as f64).unwrap();
            let message: IngestMessage = serde_json::from_str(&out.body).unwrap();
            assert_eq!((message.merged, message.batches.len()), (20, 1));
            for batch in message.batches {
                merged.send(Event::Batch(batch));
            }
            // Cut in the same round (the isolates' batches may cut mid-round); until then,
            // the same evidence and verdict.
            let (d, m) = (direct.kv_config().weight, merged.kv_config().weight);
            assert_eq!(d, m, "errors {canary_errors}, round {round}");
            if d != Weight::ZERO {
                assert_eq!(direct.state.judge(), merged.state.judge());
                assert_eq!(
                    direct.state.health.totals.counts(),
                    merged.state.health.totals.counts()
                );
            }
        }
        assert_eq!(
            direct.kv_config().weight == Weight::ZERO,
            cut,
            "errors {canary_errors}"
        );
    }
}

#[test]
fn the_status_warns_when_evidence_is_accepted_from_any_page() {
    let status = |config| {
        let sim = Sim::new(config, 10);
        crate::control::status::admin_json(&sim.state, sim.now)["evidence"].clone()
    };
    let any = status(dark());
    assert_eq!(any["origins"], json!(null));
    assert!(
        any["warning"].as_str().unwrap().contains("any page"),
        "{any}"
    );
    let listed = status(with_health(json!({"origins": ["https://shop.example"]})));
    assert_eq!(
        listed,
        json!({"origins": ["https://shop.example"], "warning": null})
    );
}
