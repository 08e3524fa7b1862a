//! Gates and freezes: `progression.approve` holds a passed step before a gated one until a
//! person approves; `progression.freeze` holds a passed step until the window ends. Cuts
//! happen regardless.

use super::*;
use crate::control::status::admin_json;
use crate::time::iso_time;

/// A healthy batch for `canary`, then the clock to `at` (the alarm fires if due).
fn healthy_until(sim: &mut Sim, canary: &str, at: f64) {
    sim.batch(Some(canary), (300, 3), (300, 3));
    sim.wait_until(at);
}

fn weight(sim: &Sim) -> u8 {
    sim.kv_config().weight.percent()
}

fn kinds(sim: &Sim) -> Vec<&str> {
    sim.state
        .history
        .entries
        .iter()
        .map(|e| e.kind.as_str())
        .collect()
}

#[test]
fn a_gate_holds_the_step_after_its_bake_until_a_person_approves() {
    let mut sim = Sim::new(gated(json!({"approve": [100]})), 10);
    assert_eq!(sim.command("rollout", "{}"), Reply::Done);
    // Before the gate is reached: nothing awaits approval.
    let (status, message) = refused(sim.command("approve", ""));
    assert_eq!(status, 409);
    assert!(message.starts_with("nothing awaits approval"), "{message}");
    let start = sim.now;
    healthy_until(&mut sim, "1.1.0", start + 10_000.0);
    assert_eq!(weight(&sim), 50, "the ungated step advances by itself");
    healthy_until(&mut sim, "1.1.0", start + 20_000.0);
    assert_eq!(weight(&sim), 50, "held before the gated step");
    assert_eq!(sim.progress_state(), Some(ProgressState::AwaitingApproval));
    let reason = sim.state.progress.as_ref().unwrap().reason.clone().unwrap();
    assert!(
        reason.contains("step 3 (100%) waits for approval"),
        "{reason}"
    );
    assert_eq!(sim.logged("awaiting_approval").len(), 1);
    assert_eq!(sim.alarm, None, "no alarm waits for a person");
    let status = admin_json(&sim.state, sim.now);
    assert_eq!(
        (
            &status["gate"]["awaiting_approval"],
            &status["gate"]["step"],
            &status["gate"]["weight"]
        ),
        (&json!(true), &json!(3), &json!(100))
    );
    assert_eq!(status["progress"]["state"], "awaiting_approval");
    let stages = status["timeline"]["stages"].as_array().unwrap();
    assert_eq!(stages[1]["state"], "awaiting_approval");
    // Batches and time do not move it; it neither pauses nor advances.
    for t in 1..=5 {
        healthy_until(
            &mut sim,
            "1.1.0",
            start + 20_000.0 + f64::from(t) * 1_000_000.0,
        );
    }
    assert_eq!(
        (weight(&sim), sim.progress_state()),
        (50, Some(ProgressState::AwaitingApproval))
    );
    assert_eq!(sim.logged("awaiting_approval").len(), 1, "logged once");
    // The approval, naming the canary: the gated step at once, by whom.
    assert_eq!(
        sim.command("approve", r#"{"canary": "1.1.0"}"#),
        Reply::Done
    );
    assert_eq!(weight(&sim), 100);
    assert_eq!(sim.progress_state(), Some(ProgressState::Running));
    let approved = sim.state.history.of_kind("approved").next().unwrap();
    assert_eq!(approved.by, "operator");
    assert_eq!(approved.weight.map(Weight::percent), Some(100));
    assert_eq!(sim.logged("approved")[0]["by"], "operator");
    // An approval is used once: a second one finds nothing awaiting.
    assert_eq!(refused(sim.command("approve", "")).0, 409);
    let start = sim.now;
    healthy_until(&mut sim, "1.1.0", start + 10_000.0);
    assert_eq!(sim.progress_state(), Some(ProgressState::Done));
    assert_eq!(
        kinds(&sim),
        vec![
            "rollout_started",
            "step_advance",
            "awaiting_approval",
            "approved",
            "rollout_done"
        ]
    );
    let status = admin_json(&sim.state, sim.now);
    let states: Vec<_> = status["timeline"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, vec!["passed", "passed", "passed"]);
    assert_eq!(
        status["timeline"]["stages"][1]["ended_by"], "operator",
        "the approver ended the gated step's wait"
    );
}

#[test]
fn an_approval_is_for_the_current_canary_only_and_never_carries_over() {
    let mut sim = Sim::new(gated(json!({"approve": [50]})), 10);
    sim.command("rollout", "{}");
    let at = sim.now + 10_000.0;
    healthy_until(&mut sim, "1.1.0", at);
    assert_eq!(sim.progress_state(), Some(ProgressState::AwaitingApproval));
    // About another canary: refused by the canary guard.
    let (status, message) = refused(sim.command("approve", r#"{"canary": "1.2.0"}"#));
    assert_eq!(status, 409);
    assert!(message.contains("about canary 1.2.0"), "{message}");
    assert_eq!(weight(&sim), 10);
    // A new canary is published: the rollout ends, and nothing awaits approval.
    sim.now += 2_000.0;
    assert_eq!(
        sim.command("publish", r#"{"version": "1.2.0"}"#),
        Reply::Done
    );
    assert_eq!(sim.progress_state(), Some(ProgressState::Superseded));
    for body in ["", r#"{"canary": "1.1.0"}"#] {
        let (status, _) = refused(sim.command("approve", body));
        assert_eq!(status, 409, "{body}");
    }
    // The new canary's rollout waits at the same gate for its own approval.
    sim.now += 2_000.0;
    sim.command("rollout", "{}");
    let at = sim.now + 10_000.0;
    healthy_until(&mut sim, "1.2.0", at);
    assert_eq!(
        (weight(&sim), sim.progress_state()),
        (10, Some(ProgressState::AwaitingApproval))
    );
    assert_eq!(
        sim.command("approve", r#"{"canary": "1.2.0"}"#),
        Reply::Done
    );
    assert_eq!(weight(&sim), 50);
}

#[test]
fn a_freeze_holds_a_passed_step_until_the_window_ends() {
    struct Case {
        name: &'static str,
        /// The freeze windows, given the time the step is due (`due`).
        windows: fn(f64) -> serde_json::Value,
        /// Milliseconds after `due` when the freeze ends (None: not frozen).
        ends_after: Option<f64>,
    }
    let cases = [
        Case {
            name: "a range over the step's end",
            windows: |due| json!([{"from": iso_time(due - 5_000.0), "to": iso_time(due + 60_000.0)}]),
            ends_after: Some(60_000.0),
        },
        Case {
            name: "two ranges that touch join",
            windows: |due| {
                json!([
                    {"from": iso_time(due - 5_000.0), "to": iso_time(due + 60_000.0)},
                    {"from": iso_time(due + 60_000.0), "to": iso_time(due + 90_000.0)},
                ])
            },
            ends_after: Some(90_000.0),
        },
        Case {
            name: "a range that ended before the step did",
            windows: |due| json!([{"from": iso_time(due - 60_000.0), "to": iso_time(due)}]),
            ends_after: None,
        },
        Case {
            name: "a range that starts later",
            windows: |due| json!([{"from": iso_time(due + 1.0), "to": iso_time(due + 60_000.0)}]),
            ends_after: None,
        },
        // The simulation starts on Thursday 1970-01-01, 00:16:40 UTC.
        Case {
            name: "weekly: thursday 00:00–00:20",
            windows: |_| json!([{"weekly": {"day": "thu", "from": "00:00", "to": "00:20"}}]),
            ends_after: Some(1_200_000.0 - 1_010_000.0),
        },
        Case {
            name: "weekly: another day",
            windows: |_| json!([{"weekly": {"day": "fri", "from": "00:00", "to": "24:00"}}]),
            ends_after: None,
        },
    ];
    for case in cases {
        let due = 1_000_000.0 + 10_000.0;
        let mut sim = Sim::new(gated(json!({"freeze": (case.windows)(due)})), 10);
        sim.command("rollout", "{}");
        assert_eq!(sim.now, 1_000_000.0);
        healthy_until(&mut sim, "1.1.0", due);
        let Some(after) = case.ends_after else {
            assert_eq!(weight(&sim), 50, "{}: advances", case.name);
            assert!(sim.logged("frozen").is_empty(), "{}", case.name);
            continue;
        };
        assert_eq!(weight(&sim), 10, "{}: held", case.name);
        assert_eq!(
            sim.progress_state(),
            Some(ProgressState::Frozen),
            "{}",
            case.name
        );
        let until = due + after;
        assert_eq!(
            sim.alarm,
            Some(until),
            "{}: the alarm at the window's end",
            case.name
        );
        let status = admin_json(&sim.state, sim.now);
        assert_eq!(status["freeze"]["active"], true, "{}", case.name);
        assert_eq!(status["freeze"]["until"], iso_time(until), "{}", case.name);
        assert_eq!(status["progress"]["state"], "frozen", "{}", case.name);
        assert_eq!(
            status["timeline"]["stages"][0]["state"], "frozen",
            "{}",
            case.name
        );
        let reason = sim.state.progress.as_ref().unwrap().reason.clone().unwrap();
        assert!(
            reason.starts_with(&format!("frozen until {}", iso_time(until))),
            "{}: {reason}",
            case.name
        );
        // Batches during the freeze do not move it, nor log it again.
        sim.now = until - 1_000.0;
        sim.batch(Some("1.1.0"), (300, 3), (300, 3));
        assert_eq!(weight(&sim), 10, "{}: still held", case.name);
        assert_eq!(sim.logged("frozen").len(), 1, "{}", case.name);
        assert_eq!(sim.state.history.of_kind("frozen").count(), 1);
        // The window ends: the alarm advances it.
        sim.wait_until(until);
        assert_eq!(weight(&sim), 50, "{}: advanced at the end", case.name);
        assert_eq!(sim.progress_state(), Some(ProgressState::Running));
        assert_eq!(
            admin_json(&sim.state, sim.now)["freeze"]["active"],
            false,
            "{}",
            case.name
        );
    }
}

#[test]
fn a_cut_still_happens_during_a_freeze() {
    let due = 1_010_000.0;
    let windows = json!([{"from": iso_time(900_000.0), "to": iso_time(due + 3_600_000.0)}]);
    for frozen_first in [false, true] {
        let mut sim = Sim::new(gated(json!({"freeze": windows})), 10);
        sim.command("rollout", "{}");
        if frozen_first {
            healthy_until(&mut sim, "1.1.0", due);
            assert_eq!(sim.progress_state(), Some(ProgressState::Frozen));
        }
        sim.now += 2_000.0;
        sim.batch(Some("1.1.0"), (300, 0), (200, 150));
        let kv = sim.kv_config();
        assert_eq!(kv.weight, Weight::ZERO, "frozen first: {frozen_first}");
        assert_eq!(sim.progress_state(), Some(ProgressState::RolledBack));
        assert_eq!(sim.logged("rollback").len(), 1);
    }
}

#[test]
fn a_freeze_comes_before_a_gate_and_an_approval_is_a_persons_act() {
    // Frozen over the step's end, and the next step gated: frozen first, then awaiting.
    let due = 1_010_000.0;
    let mut sim = Sim::new(
        gated(json!({
            "approve": [50],
            "freeze": [{"from": iso_time(900_000.0), "to": iso_time(due + 30_000.0)}],
        })),
        10,
    );
    sim.command("rollout", "{}");
    healthy_until(&mut sim, "1.1.0", due);
    assert_eq!(sim.progress_state(), Some(ProgressState::Frozen));
    assert_eq!(
        refused(sim.command("approve", "")).0,
        409,
        "nothing awaits approval while frozen"
    );
    sim.wait_until(due + 30_000.0);
    assert_eq!(sim.progress_state(), Some(ProgressState::AwaitingApproval));
    assert_eq!(sim.command("approve", ""), Reply::Done);
    assert_eq!(weight(&sim), 50);
    // A freeze added to the config during a rollout (a KV write) holds it.
    let mut sim = Sim::new(gated(json!({})), 10);
    sim.command("rollout", "{}");
    let start = sim.now;
    let mut frozen = sim.kv_config();
    frozen.progression.as_mut().unwrap().freeze = crate::config::freeze::parse_windows(
        &json!([{"from": iso_time(start), "to": iso_time(start + 100_000.0)}]),
    )
    .unwrap();
    sim.kv = Some(frozen.to_json());
    // Any config written to KV by someone else pauses a rollout; resumed, it follows the
    // config's freeze.
    sim.wait_until(start + 10_000.0);
    assert_eq!(sim.progress_state(), Some(ProgressState::Paused));
    assert_eq!(sim.command("resume", ""), Reply::Done);
    healthy_until(&mut sim, "1.1.0", start + 20_000.0);
    assert_eq!(
        (weight(&sim), sim.progress_state()),
        (10, Some(ProgressState::Frozen))
    );
}
