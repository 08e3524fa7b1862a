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
    assert_eq!(sim.kv_config().revision, Some(1));
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
