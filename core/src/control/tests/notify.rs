//! Notifications (`Effect::Notify`): one per event that a team hears about, derived from
//! the history entries and the rollout's state, with the evidence behind it.

use super::*;

fn events(sim: &Sim) -> Vec<&'static str> {
    sim.notified.iter().map(|n| n.event).collect()
}

#[test]
fn a_gated_rollout_notifies_each_step_the_gate_the_approval_and_the_end() {
    let mut sim = Sim::new(gated(json!({"approve": [100]})), 10);
    assert_eq!(sim.command("rollout", "{}"), Reply::Done);
    assert_eq!(events(&sim), Vec::<&str>::new(), "a start is not notified");
    let start = sim.now;
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    sim.wait_until(start + 10_000.0);
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    sim.wait_until(start + 20_000.0);
    assert_eq!(events(&sim), vec!["step_advanced", "awaiting_approval"]);
    let advanced = &sim.notified[0];
    assert_eq!(advanced.weight, Some(50));
    assert_eq!(advanced.by, "rollout");
    let evidence = advanced.evidence.as_ref().unwrap();
    assert_eq!(evidence.verdict, "pass", "the passed step's evidence, kept");
    assert!(evidence.canary.clients > 0);
    let awaiting = &sim.notified[1];
    assert_eq!(
        (awaiting.weight, awaiting.next_weight),
        (Some(50), Some(100))
    );
    assert_eq!(sim.command("approve", ""), Reply::Done);
    let start = sim.now;
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    sim.wait_until(start + 10_000.0);
    assert_eq!(
        events(&sim),
        vec!["step_advanced", "awaiting_approval", "approved", "done"]
    );
    assert_eq!(sim.notified[2].by, "operator");
    assert_eq!(sim.notified[2].weight, Some(100));
    let ids: std::collections::BTreeSet<_> = sim.notified.iter().map(|n| &n.id).collect();
    assert_eq!(ids.len(), 4, "one idempotency key per notification");
    assert_eq!(sim.command("promote", ""), Reply::Done);
    let promote = sim.notified.last().unwrap();
    assert_eq!(
        (
            promote.event,
            promote.stable.as_ref().map(|v| v.to_string())
        ),
        ("promote", Some("1.1.0".into()))
    );
    assert!(promote.evidence.is_none());
}

#[test]
fn an_automatic_cut_notifies_its_evidence_and_a_manual_one_who() {
    let mut sim = Sim::new(gated(json!({})), 10);
    sim.command("rollout", "{}");
    sim.now += 2_000.0;
    sim.batch(Some("1.1.0"), (300, 0), (200, 150));
    assert_eq!(events(&sim), vec!["rollback"]);
    let cut = &sim.notified[0];
    assert!(cut.automatic);
    assert_eq!(cut.by, "rollout");
    let evidence = cut.evidence.as_ref().unwrap();
    assert_eq!(evidence.verdict, "cut");
    assert!(evidence.canary.failed > 0 && evidence.canary.low > 0.0);
    // The kept cut says the same.
    assert_eq!(
        sim.state.cut.as_ref().unwrap().judge().canary.errors,
        evidence.canary.failed
    );

    let mut sim = Sim::new(dark(), 10);
    sim.command("weight", r#"{"weight": 10}"#);
    sim.command("rollback", r#"{"reason": "bad"}"#);
    assert_eq!(events(&sim), vec!["rollback"]);
    assert!(!sim.notified[0].automatic);
    assert_eq!(sim.notified[0].by, "operator");
}

#[test]
fn pauses_holds_publishes_and_supersedes_are_notified_once() {
    let mut sim = Sim::new(gated(json!({})), 10);
    sim.command("rollout", "{}");
    sim.command("pause", "");
    assert_eq!(events(&sim), vec!["paused"]);
    sim.command("resume", "");
    // Baked without evidence: waiting for evidence (once), with when it pauses.
    let start = sim.now;
    sim.wait_until(start + 10_000.0);
    sim.wait_until(start + 40_000.0);
    assert_eq!(events(&sim), vec!["paused", "waiting_for_evidence"]);
    assert!(sim.notified[1].until_ms.unwrap() > start + 10_000.0);
    // A publish supersedes the rollout: both are told.
    sim.now += 2_000.0;
    assert_eq!(
        sim.command("publish", r#"{"version": "1.2.0"}"#),
        Reply::Done
    );
    assert_eq!(
        events(&sim),
        vec!["paused", "waiting_for_evidence", "publish", "superseded"]
    );
    let superseded = &sim.notified[3];
    assert_eq!(
        superseded.canary.as_ref().map(|v| v.to_string()),
        Some("1.1.0".into())
    );
    assert_eq!(superseded.by, "operator");
}

#[test]
fn a_freeze_is_notified_with_its_end_then_the_step_when_it_ends() {
    let due = 1_010_000.0;
    let until = due + 60_000.0;
    let windows =
        json!([{"from": crate::time::iso_time(due - 5_000.0), "to": crate::time::iso_time(until)}]);
    let mut sim = Sim::new(gated(json!({"freeze": windows})), 10);
    sim.command("rollout", "{}");
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    sim.wait_until(due);
    assert_eq!(events(&sim), vec!["frozen"]);
    let frozen = &sim.notified[0];
    assert_eq!(
        (frozen.until_ms, frozen.next_weight, frozen.weight),
        (Some(until), Some(50), Some(10))
    );
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    sim.wait_until(until);
    assert_eq!(events(&sim), vec!["frozen", "step_advanced"]);
}
