//! Progressive rollouts: steps, bakes, holds, silence.

use super::*;

#[test]
fn a_healthy_rollout_steps_once_per_bake_and_finishes() {
    let mut sim = Sim::new(dark(), 10);
    assert_eq!(
        sim.command("rollout", r#"{"steps":[10,50,100],"bake_secs":10}"#),
        Reply::Done
    );
    assert_eq!(sim.kv_config().weight.percent(), 10);
    // Above the adopted seed's revision (1).
    assert_eq!(sim.kv_config().revision, Some(2));
    let start = sim.now;
    let mut weights = vec![];
    for i in 1..=3 {
        sim.batch(Some("1.1.0"), (300, 3), (300, 3));
        sim.wait_until(start + f64::from(i) * 10_000.0 + 5.0);
        weights.push(sim.kv_config().weight.percent());
    }
    assert_eq!(weights, vec![50, 100, 100]);
    assert_eq!(sim.progress_state(), Some(ProgressState::Done));
    assert_eq!(sim.writes.len(), 3);
    let steps = sim.logged("step_advance");
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["canary"], "1.1.0", "step lines name the canary");
    let kinds: Vec<_> = sim
        .state
        .history
        .entries
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "rollout_started",
            "step_advance",
            "step_advance",
            "rollout_done"
        ]
    );
}

#[test]
fn a_rollout_is_bound_to_its_canary() {
    // Defect: a rollout for 3.1.0 took a newly published 3.2.0 to 50% and 100%.
    let mut sim = Sim::new(dark(), 10);
    sim.command("rollout", r#"{"steps":[10,50,100],"bake_secs":1}"#);
    // Publish 1.2.0 as the new dark canary by a KV write, as `scripts/canary publish` does.
    sim.now += 200.0;
    sim.kv = Some(json!({"stable": "1.0.0", "canary": "1.2.0", "weight": 0}).to_string());
    for t in 1..=5 {
        sim.wait_until(sim.now + f64::from(t) * 1_000.0);
    }
    let kv = sim.kv_config();
    assert_eq!(
        (kv.canary, kv.weight),
        (Some(v("1.2.0")), Weight::ZERO),
        "stays dark"
    );
    assert_eq!(sim.progress_state(), Some(ProgressState::Superseded));
    let line = sim.logged("rollout_superseded")[0];
    assert_eq!(
        (&line["rollout_canary"], &line["canary"]),
        (&json!("1.1.0"), &json!("1.2.0")),
        "logged with both versions"
    );
    assert_eq!(
        sim.writes.len(),
        1,
        "only the rollout's first step was written"
    );
}

#[test]
fn no_step_on_silence_it_waits_then_pauses() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("rollout", r#"{"steps":[10,50,100],"bake_secs":10}"#);
    let start = sim.now;
    // A canary failing for 25% of a handful of clients: not enough to cut at 99%, and not
    // a pass either. (The walkthrough's drill, in small.)
    sim.batch(Some("1.1.0"), (50, 0), (4, 1));
    sim.wait_until(start + 10_000.0);
    assert_eq!(
        sim.progress_state(),
        Some(ProgressState::WaitingForEvidence)
    );
    assert_eq!(sim.kv_config().weight.percent(), 10, "held at step 1");
    assert_eq!(sim.logged("waiting_for_evidence").len(), 1);
    // It is looked at again every RECHECK_MS, and logged once.
    sim.wait_until(start + 70_000.0);
    assert_eq!(sim.logged("waiting_for_evidence").len(), 1);
    // After the longest hold (1 h by default), it pauses.
    for t in 1..=130 {
        sim.wait_until(start + 10_000.0 + f64::from(t) * 30_000.0);
    }
    assert_eq!(sim.progress_state(), Some(ProgressState::Paused));
    assert!(sim
        .state
        .progress
        .as_ref()
        .unwrap()
        .reason
        .as_deref()
        .unwrap()
        .starts_with("no evidence 3600 s"));
    assert_eq!(sim.writes.len(), 1, "never advanced");
}

#[test]
fn a_waiting_step_advances_as_soon_as_a_batch_brings_the_evidence() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("rollout", r#"{"steps":[10,50,100],"bake_secs":10}"#);
    let start = sim.now;
    sim.wait_until(start + 10_000.0);
    assert_eq!(
        sim.progress_state(),
        Some(ProgressState::WaitingForEvidence)
    );
    sim.now = start + 12_000.0;
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    assert_eq!(
        sim.kv_config().weight.percent(),
        50,
        "advanced at the flush"
    );
    assert_eq!(
        sim.state.evidence.seen.canary.clients, 0,
        "the new step starts its evidence afresh"
    );
    let entry = sim.state.history.of_kind("step_advance").next().unwrap();
    assert!(entry.reason.contains("passed"), "{}", entry.reason);
}

#[test]
fn a_bundle_without_boot_signals_is_judged_on_errors_and_silence_at_weight_100_is_no_pass() {
    // No boots from either channel: loads count as fine clients once their grace ends.
    let mut sim = Sim::new(with_health(json!({"boot_grace_secs": 30})), 10);
    sim.command("weight", r#"{"weight": 50}"#);
    let mut events = vec![];
    for client in 1..=40 {
        events.push(ClientEvent {
            client,
            network: client,
            canary: client % 2 == 0,
            signal: Signal::Load,
            boot_ms: None,
        });
    }
    sim.batch_events(Some("1.1.0"), Clients::default(), events.clone());
    sim.now += 31_000.0;
    sim.batch_events(Some("1.1.0"), Clients::default(), vec![]);
    assert_eq!(sim.state.evidence.seen.canary.clients, 20);
    assert_eq!(sim.state.evidence.seen.canary.errors, 0);
    assert!(sim.state.booting.is_empty());
    // Stable known to boot, weight 100: a silent client is left out, neither fine nor failed.
    let mut full = Sim::new(with_health(json!({"boot_grace_secs": 30})), 10);
    full.state.booting.push(v("1.0.0"));
    full.command("weight", r#"{"weight": 100}"#);
    let canary_only: Vec<_> = events.iter().copied().filter(|e| e.canary).collect();
    full.batch_events(Some("1.1.0"), Clients::default(), canary_only);
    full.now += 31_000.0;
    full.batch_events(Some("1.1.0"), Clients::default(), vec![]);
    assert_eq!(full.state.evidence.seen.canary.clients, 0);
    assert_eq!(full.state.tracker.left_out, 20);
}

/// A canary at 50% failing for two thirds of its clients, stable healthy: cut at once.
fn failing_batch(sim: &mut Sim) {
    sim.batch(Some("1.1.0"), (100, 0), (30, 20));
}

/// Cut automatically at weight 50, set by hand.
fn cut_at_50(sim: &mut Sim) {
    sim.command("weight", r#"{"weight": 50}"#);
    failing_batch(sim);
}

#[test]
fn the_verdict_at_the_cut_is_kept_with_the_rollback() {
    use crate::control::verdict::Verdict;
    struct Case {
        name: &'static str,
        cut: fn(&mut Sim),
        by: &'static str,
        reason: Option<&'static str>,
        weight: u8,
        canary: (u64, u64),
        verdict: Option<Verdict>,
    }
    let cases = [
        Case {
            name: "automatically, at a weight set by hand",
            cut: cut_at_50,
            by: "auto",
            reason: None,
            weight: 50,
            canary: (30, 20),
            verdict: Some(Verdict::Cut),
        },
        Case {
            name: "by the rollout, at its step",
            cut: |sim| {
                sim.command("rollout", r#"{"steps":[50,100],"bake_secs":60}"#);
                failing_batch(sim);
            },
            by: "rollout",
            reason: None,
            weight: 50,
            canary: (30, 20),
            verdict: Some(Verdict::Cut),
        },
        Case {
            name: "by an operator, on the evidence so far",
            cut: |sim| {
                sim.command("weight", r#"{"weight": 50}"#);
                sim.batch(Some("1.1.0"), (40, 0), (40, 1));
                sim.command("rollback", r#"{"reason":"checkout spinner hangs"}"#);
            },
            by: "operator",
            reason: Some("checkout spinner hangs"),
            weight: 50,
            canary: (40, 1),
            verdict: None,
        },
        Case {
            name: "by an operator's write to KV (its rollback record says who and why)",
            cut: |sim| {
                sim.command("weight", r#"{"weight": 30}"#);
                sim.batch(Some("1.1.0"), (40, 0), (12, 2));
                let mut config = dark();
                config["rollback"] =
                    json!({"at": "2026-01-01T00:00:00Z", "reason": "by hand in KV", "by": "alice"});
                sim.kv = Some(config.to_string());
                sim.now += 2_000.0;
                sim.read_kv();
            },
            by: "alice",
            reason: Some("by hand in KV"),
            weight: 30,
            canary: (12, 2),
            verdict: None,
        },
    ];
    for case in cases {
        let name = case.name;
        let mut sim = Sim::new(dark(), 10);
        (case.cut)(&mut sim);
        assert_eq!(sim.kv_config().weight, Weight::ZERO, "{name}: cut");
        let cut = sim
            .state
            .cut
            .clone()
            .unwrap_or_else(|| panic!("{name}: kept"));
        let j = cut.judge();
        assert_eq!(
            (cut.canary.clone(), cut.by.as_str(), cut.weight.percent()),
            (v("1.1.0"), case.by, case.weight),
            "{name}"
        );
        assert_eq!((j.canary.clients, j.canary.errors), case.canary, "{name}");
        assert!(j.stable.clients > 0, "{name}: stable's side too");
        assert!(j.canary.high > j.canary.low, "{name}: with its interval");
        let entry = sim.state.history.entries.last().unwrap();
        assert_eq!(
            cut.at_ms, entry.at_ms,
            "{name}: when the rollback took effect"
        );
        match case.reason {
            Some(reason) => assert_eq!(cut.reason, reason, "{name}"),
            // The words that caused it are the kept verdict's.
            None => assert_eq!(
                (cut.reason.as_str(), &entry.reason),
                (j.reason.as_str(), &j.reason),
                "{name}"
            ),
        }
        if let Some(verdict) = case.verdict {
            assert_eq!(j.verdict, verdict, "{name}");
            assert!(
                j.worse_relative >= j.cut_threshold && j.worse_absolute >= j.cut_threshold,
                "{name}"
            );
        }
        // The live verdict has nothing left to judge; the status shows both.
        assert_eq!(sim.state.judge().canary.clients, 0, "{name}");
        let status = crate::control::status::admin_json(&sim.state, sim.now);
        let kept = &status["cut"];
        assert_eq!(
            kept["at"],
            crate::control::machine::iso_time(cut.at_ms),
            "{name}"
        );
        assert_eq!(kept["by"], case.by, "{name}");
        assert_eq!(kept["weight"], case.weight, "{name}");
        assert_eq!(kept["canary"], "1.1.0", "{name}");
        assert_eq!(kept["reason"], cut.reason.as_str(), "{name}");
        assert_eq!(kept["verdict"]["state"], json!(j.verdict), "{name}");
        assert_eq!(
            kept["verdict"]["canary"]["clients"], case.canary.0,
            "{name}"
        );
        assert_eq!(kept["verdict"]["canary"]["errors"], case.canary.1, "{name}");
        assert_eq!(
            kept["verdict"]["cut"]["relative"], j.worse_relative,
            "{name}"
        );
        assert_eq!(kept["verdict"]["pass"]["combined"], j.better, "{name}");
        assert_eq!(kept["verdict"]["min_clients"], 20, "{name}");
        assert_eq!(
            status["verdict"]["canary"]["clients"], 0,
            "{name}: the live one"
        );
    }
}

/// (what happens next, doing it, whether the cut is still kept).
type FollowUp = (&'static str, fn(&mut Sim), bool);

#[test]
fn a_kept_cut_lasts_while_its_canary_stays_dark() {
    let cases: [FollowUp; 9] = [
        (
            "batches and alarms",
            |sim| {
                sim.batch(Some("1.1.0"), (10, 0), (0, 0));
                sim.wait_until(sim.now + 120_000.0);
            },
            true,
        ),
        (
            "weight 0 again",
            |sim| {
                sim.command("weight", r#"{"weight": 0}"#);
            },
            true,
        ),
        (
            "a refused command",
            |sim| {
                sim.command("pause", "");
            },
            true,
        ),
        (
            "another field written to KV",
            |sim| {
                let mut config: serde_json::Value =
                    serde_json::from_str(sim.kv.as_deref().unwrap()).unwrap();
                config["health"]["window_secs"] = json!(120);
                sim.kv = Some(config.to_string());
                sim.read_kv();
            },
            true,
        ),
        (
            "the canary serves again",
            |sim| {
                sim.command("weight", r#"{"weight": 30}"#);
            },
            false,
        ),
        (
            "a new rollout of it",
            |sim| {
                sim.command("rollout", r#"{"steps":[10,50],"bake_secs":60}"#);
            },
            false,
        ),
        (
            "a new canary published",
            |sim| {
                sim.command("publish", r#"{"version": "1.2.0"}"#);
            },
            false,
        ),
        (
            "promoted",
            |sim| {
                sim.command("promote", "");
            },
            false,
        ),
        (
            "a new canary written to KV",
            |sim| {
                sim.kv =
                    Some(json!({"stable": "1.0.0", "canary": "1.2.0", "weight": 0}).to_string());
                sim.read_kv();
            },
            false,
        ),
    ];
    for (name, then, kept) in cases {
        let mut sim = Sim::new(dark(), 10);
        cut_at_50(&mut sim);
        let cut = sim.state.cut.clone().expect("kept at the cut");
        sim.now += 2_000.0;
        then(&mut sim);
        assert_eq!(sim.state.cut.is_some(), kept, "{name}");
        if kept {
            assert_eq!(sim.state.cut.as_ref(), Some(&cut), "{name}: unchanged");
        } else {
            assert!(
                crate::control::status::admin_json(&sim.state, sim.now)["cut"].is_null(),
                "{name}"
            );
        }
    }
}

#[test]
fn a_rollback_whose_write_failed_keeps_nothing_until_it_is_written() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("weight", r#"{"weight": 50}"#);
    sim.fail_writes = 2;
    failing_batch(&mut sim);
    assert_eq!(sim.kv_config().weight.percent(), 50, "the write failed");
    assert_eq!(sim.state.cut, None);
    assert_eq!(sim.state.decided, None, "nothing waits");
    // More evidence, then the retry: the cut keeps the evidence it was decided on.
    sim.batch(Some("1.1.0"), (10, 0), (6, 6));
    let at = sim.alarm.expect("a retry");
    sim.wait_until(at);
    assert_eq!(sim.kv_config().weight, Weight::ZERO);
    let j = sim.state.cut.as_ref().expect("kept").judge();
    assert_eq!((j.canary.clients, j.canary.errors), (36, 26));
}

#[test]
fn the_timeline_of_a_rollout_cut_at_its_second_step() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("rollout", r#"{"steps":[10,50,100],"bake_secs":10}"#);
    let start = sim.now;
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    sim.wait_until(start + 10_005.0);
    assert_eq!(sim.kv_config().weight.percent(), 50);
    sim.now += 1_000.0;
    failing_batch(&mut sim);
    let status = crate::control::status::admin_json(&sim.state, sim.now);
    let t = &status["timeline"];
    assert_eq!(t["canary"], "1.1.0");
    assert_eq!(t["rollout"]["state"], "rolled_back");
    assert_eq!(t["rollout"]["steps"], json!([10, 50, 100]));
    let stages = t["stages"].as_array().unwrap();
    let states: Vec<_> = stages
        .iter()
        .map(|s| (s["step"].clone(), s["weight"].clone(), s["state"].clone()))
        .collect();
    assert_eq!(
        states,
        vec![
            (json!(1), json!(10), json!("passed")),
            (json!(2), json!(50), json!("cut")),
            (json!(3), json!(100), json!("not_reached")),
        ]
    );
    let cut = &stages[1];
    assert_eq!(cut["kind"], "step");
    assert_eq!(cut["started_by"], "rollout");
    assert_eq!(cut["ended_by"], "rollout");
    assert_eq!(cut["ended_at"], status["cut"]["at"], "when it was cut");
    assert_eq!(cut["reason"], status["cut"]["reason"]);
    assert_eq!(stages[0]["started_by"], "operator");
    assert!(stages[0]["reason"].as_str().unwrap().contains("passed"));
}
