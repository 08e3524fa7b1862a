//! The admin API's commands: what each refuses, what it writes, and who it records.

use super::*;

#[test]
fn commands_name_the_canary_they_are_about() {
    let mut sim = Sim::new(dark(), 10);
    let (status, message) = refused(sim.command("weight", r#"{"weight": 30, "canary": "1.0.5"}"#));
    assert_eq!(status, 409);
    assert!(
        message.contains("1.0.5") && message.contains("1.1.0"),
        "{message}"
    );
    assert_eq!(
        sim.command("weight", r#"{"weight": 30, "canary": "1.1.0"}"#),
        Reply::Done
    );
}

#[test]
fn weights_and_steps_must_serve_someone() {
    let mut sim = Sim::new(dark(), 10);
    for (action, body, status, needle) in [
        ("weight", r#"{"weight": 5}"#, 400, "no cohort"),
        (
            "rollout",
            r#"{"steps": [1, 5, 25, 50, 100]}"#,
            400,
            "step 1%",
        ),
        ("rollout", r#"{"steps": [10, 15, 100]}"#, 400, "step 15%"),
        ("resume", "", 409, "no paused rollout"),
        ("pause", "", 409, "no running rollout"),
    ] {
        let (got, message) = refused(sim.command(action, body));
        assert_eq!(got, status, "{action} {body}");
        assert!(message.contains(needle), "{action} {body}: {message}");
    }
    assert!(sim.writes.is_empty());
    let mut fine = Sim::new(dark(), 100);
    assert_eq!(
        fine.command("rollout", r#"{"steps": [1, 5, 25, 50, 100]}"#),
        Reply::Done
    );
}

#[test]
fn publish_supersedes_a_running_rollout_and_stays_dark() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("rollout", r#"{"steps":[10,50,100],"bake_secs":10}"#);
    assert_eq!(
        sim.command("publish", r#"{"version": "1.2.0"}"#),
        Reply::Done
    );
    let kv = sim.kv_config();
    assert_eq!((kv.canary, kv.weight), (Some(v("1.2.0")), Weight::ZERO));
    assert_eq!(sim.progress_state(), Some(ProgressState::Superseded));
    sim.wait_until(sim.now + 60_000.0);
    assert_eq!(sim.kv_config().weight, Weight::ZERO);
    let (status, _) = refused(sim.command("publish", r#"{"version": "1.2.0"}"#));
    assert_eq!(status, 409, "versions are immutable");
    assert_eq!(
        refused(sim.command("resume", "")).0,
        409,
        "a superseded rollout does not resume"
    );
}

#[test]
fn promote_and_operator_rollback() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("weight", r#"{"weight": 50}"#);
    assert_eq!(
        sim.command("rollback", r#"{"reason":"bad deploy"}"#),
        Reply::Done
    );
    let kv = sim.kv_config();
    assert_eq!(kv.weight, Weight::ZERO);
    assert_eq!(kv.extra["rollback"]["reason"], "bad deploy");
    assert_eq!(kv.extra["rollback"]["by"], "operator");
    assert_eq!(sim.command("promote", ""), Reply::Done);
    let kv = sim.kv_config();
    assert_eq!((kv.stable, kv.canary), (v("1.1.0"), None));
    assert!(!kv.extra.contains_key("rollback"));
    assert_eq!(refused(sim.command("promote", "")).0, 409);
    assert_eq!(refused(sim.command("rollback", "")).0, 409);
}

#[test]
fn revoking_overrides_stamps_the_config_and_survives_later_changes() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("weight", r#"{"weight": 50}"#);
    let at = (sim.now / 1000.0) as u64;
    assert_eq!(sim.command("revoke-overrides", ""), Reply::Done);
    let kv = sim.kv_config();
    assert_eq!(kv.overrides_not_before, Some(at));
    assert_eq!(kv.weight.percent(), 50, "nothing else changes");
    let entry = sim.state.history.entries.last().unwrap();
    assert_eq!(
        (entry.kind.as_str(), entry.by.as_str()),
        ("overrides_revoked", "operator")
    );
    assert!(sim
        .logs
        .iter()
        .any(|(e, f)| *e == "overrides_revoked" && f["not_before"] == at));
    sim.now += 5_000.0;
    sim.command("promote", "");
    assert_eq!(
        sim.kv_config().overrides_not_before,
        Some(at),
        "kept by later writes"
    );
}

#[test]
fn without_cohort_secret_nothing_automatic_acts() {
    let mut sim = Sim::new(dark(), 10);
    sim.state.signed = false;
    let (status, message) = refused(sim.command("rollout", r#"{"steps":[50,100],"bake_secs":10}"#));
    assert_eq!(status, 503);
    assert!(message.contains("COHORT_SECRET"), "{message}");
    assert_eq!(sim.logged("auto_canary_refused").len(), 1);
    sim.command("weight", r#"{"weight": 50}"#);
    for _ in 0..10 {
        sim.batch(Some("1.1.0"), (20, 0), (20, 20));
    }
    assert_eq!(sim.kv_config().weight.percent(), 50, "never cut unsigned");
    assert_eq!(
        sim.state.judge().verdict,
        crate::control::verdict::Verdict::Cut
    );
}

#[test]
fn a_resume_that_writes_the_steps_weight_starts_its_evidence_afresh() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("rollout", r#"{"steps":[10,50],"bake_secs":10}"#);
    sim.command("pause", "");
    sim.command("weight", r#"{"weight": 30}"#);
    sim.now += 1_500.0;
    sim.batch(Some("1.1.0"), (50, 0), (50, 0));
    assert!(sim.state.evidence.seen.canary.clients > 0);
    sim.now += 1_500.0;
    assert_eq!(sim.command("resume", ""), Reply::Done);
    assert_eq!(sim.kv_config().weight.percent(), 10);
    assert_eq!(
        sim.state.evidence.seen,
        ChannelCounts::default(),
        "evidence gathered at the operator's weight does not judge the step"
    );
}

#[test]
fn a_policy_change_is_recorded_and_applies_from_the_next_step() {
    let mut sim = Sim::new(dark(), 10);
    assert_eq!(sim.command("weight", r#"{"weight": 30}"#), Reply::Done);
    let started_with = sim.state.policy();
    assert_eq!(
        sim.command(
            "policy",
            r#"{"health": {"min_clients": 500, "confidence": 0.999}}"#
        ),
        Reply::Done
    );
    // Written, with the new values, and recorded with who and what moved.
    let written = sim.kv_config().health_policy();
    assert_eq!((written.min_clients, written.confidence), (500, 0.999));
    let entry = sim.state.history.entries.last().unwrap();
    assert_eq!(
        (entry.kind.as_str(), entry.by.as_str()),
        ("policy_changed", "operator")
    );
    assert_eq!(
        entry.reason,
        "health.confidence: 0.99 -> 0.999; health.min_clients: 20 -> 500"
    );
    assert!(sim
        .notified
        .iter()
        .any(|n| n.event == "policy_changed" && n.reason == entry.reason));
    // The running step keeps the policy it started with; the next step takes the new one.
    assert_eq!(sim.state.policy(), started_with);
    assert_eq!(sim.command("weight", r#"{"weight": 50}"#), Reply::Done);
    assert_eq!(sim.state.policy().min_clients, 500);
    assert_eq!(sim.state.step_health, None);
}

#[test]
fn a_policy_change_is_validated_with_the_configs_rules() {
    let mut sim = Sim::new(dark(), 10);
    for (body, needle) in [
        (r#"{"health": {"confidence": 1.5}}"#, "health.confidence"),
        (r#"{"health": {"typo": 1}}"#, "unknown field `typo`"),
        (r#"{"progression": {"bake_secs": 60}}"#, "progression"),
    ] {
        let (status, message) = refused(sim.command("policy", body));
        assert_eq!(status, 400, "{body}");
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert!(sim.writes.is_empty(), "nothing written");
    // The same values again: nothing to write, nothing recorded.
    let entries = sim.state.history.entries.len();
    assert_eq!(
        sim.command("policy", r#"{"health": {"min_clients": 20}}"#),
        Reply::Done
    );
    assert!(sim.writes.is_empty());
    assert_eq!(sim.state.history.entries.len(), entries);
}

#[test]
fn an_operators_kv_write_of_the_policy_also_waits_for_the_next_step() {
    let mut sim = Sim::new(dark(), 10);
    assert_eq!(sim.command("weight", r#"{"weight": 30}"#), Reply::Done);
    let mut raw = serde_json::to_value(sim.kv_config()).unwrap();
    raw["health"]["min_clients"] = json!(700);
    raw["revision"] = serde_json::Value::Null;
    sim.kv = Some(raw.to_string());
    sim.now += 2_000.0;
    sim.read_kv();
    assert_eq!(
        sim.state
            .config
            .as_ref()
            .unwrap()
            .health_policy()
            .min_clients,
        700
    );
    assert_eq!(sim.state.policy().min_clients, 20, "the running step's");
}
