//! Table tests of the control plane's state machine, driven the way the Durable Object runs
//! it: a small simulator (`Sim`) reads its KV before commands and alarms, carries out write
//! effects against a fake KV that can fail, and feeds the outcomes back.

use serde_json::json;

use super::counts::{Batch, ChannelCounts, Clients};
use super::machine::{step, CommandRequest, Control, Effect, Event, Reply, WriteOutcome};
use super::progress::ProgressState;
use super::projection::STALE_HORIZON_MS;
use super::tracker::{ClientEvent, Signal};
use crate::admin::{parse_request, Command};
use crate::config::{BundleName, Rollout, Version, Weight};
use crate::rollouts::KvRead;

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// The Durable Object's loop around the machine, with a KV that does what it is told.
struct Sim {
    state: Control,
    now: f64,
    /// What KV holds.
    kv: Option<String>,
    /// What a KV read returns instead of `kv`, when set (a stale location).
    stale_read: Option<String>,
    /// Fail the next N writes with this message.
    fail_writes: u32,
    fail_with: &'static str,
    /// (time, text) of every successful write.
    writes: Vec<(f64, String)>,
    logs: Vec<(&'static str, serde_json::Value)>,
    alarm: Option<f64>,
    /// Client ids handed out by `batch`.
    next_client: u64,
}

impl Sim {
    fn new(config: serde_json::Value, cohorts: u16) -> Self {
        let mut sim = Self {
            state: Control::new(BundleName::parse("demo").unwrap(), cohorts),
            now: 1_000_000.0,
            kv: Some(config.to_string()),
            stale_read: None,
            fail_writes: 0,
            fail_with: "KV PUT failed: 429 Too Many Requests",
            writes: vec![],
            logs: vec![],
            alarm: None,
            next_client: 0,
        };
        sim.read_kv();
        sim
    }

    fn read_kv(&mut self) {
        let read = match self.stale_read.clone().or_else(|| self.kv.clone()) {
            Some(text) => KvRead::Value(text),
            None => KvRead::Missing,
        };
        self.run_one(Event::KvRead(read));
    }

    /// One event as the Durable Object handles it; returns the reply, if any.
    fn send(&mut self, event: Event) -> Option<Reply> {
        if self.state.wants_kv_read(&event, self.now) {
            self.read_kv();
        }
        self.run_one(event)
    }

    fn run_one(&mut self, event: Event) -> Option<Reply> {
        let state = self.state.clone();
        let (mut state, mut queue) = step(state, event, self.now);
        let mut reply = None;
        while !queue.is_empty() {
            match queue.remove(0) {
                Effect::WriteConfig(w) => {
                    // The DO waits for `not_before`; time passes.
                    self.now = self.now.max(w.not_before_ms);
                    let outcome = if self.fail_writes > 0 {
                        self.fail_writes -= 1;
                        WriteOutcome::RateLimited(self.fail_with.into())
                    } else {
                        if let Some((last, _)) = self.writes.last() {
                            assert!(self.now - last >= 1_000.0, "two writes within a second");
                        }
                        self.kv = Some(w.text.clone());
                        self.writes.push((self.now, w.text));
                        WriteOutcome::Ok
                    };
                    let (next, more) = step(state, Event::Written(outcome), self.now);
                    state = next;
                    queue.extend(more);
                }
                Effect::SetAlarm(at) => self.alarm = Some(at),
                Effect::Log(l) => self.logs.push((l.event, l.fields)),
                Effect::Reply(r) => reply = Some(r),
            }
        }
        assert!(state.inflight.is_none(), "a write was left in flight");
        self.state = state;
        reply
    }

    fn command(&mut self, action: &str, body: &str) -> Reply {
        let (command, expect_canary) = parse_request(action, body).unwrap();
        self.send(Event::Command(CommandRequest {
            command,
            expect_canary,
            by: "operator".into(),
        }))
        .expect("a command is answered")
    }

    /// Advances the clock to `at` and fires the alarm if it is due by then.
    fn wait_until(&mut self, at: f64) {
        self.now = at;
        if self.alarm.is_some_and(|a| a <= at) {
            self.alarm = None;
            self.send(Event::Alarm);
        }
    }

    fn kv_config(&self) -> Rollout {
        Rollout::parse(self.kv.as_deref().unwrap()).unwrap()
    }

    /// A batch of `n` new distinct clients per channel, each on a network of its own, `e`
    /// of them with an error and the others booted.
    fn batch(&mut self, canary: Option<&str>, stable: (u64, u64), canary_counts: (u64, u64)) {
        let mut clients = Clients::default();
        let mut events = vec![];
        for (is_canary, (n, e)) in [(false, stable), (true, canary_counts)] {
            for i in 0..n {
                self.next_client += 1;
                let client = self.next_client;
                clients.channel_mut(is_canary).insert(client, false);
                let signal = if i < e {
                    clients.channel_mut(is_canary).insert(client, true);
                    Signal::Failure
                } else {
                    Signal::Boot
                };
                for signal in [Signal::Load, signal] {
                    events.push(ClientEvent {
                        client,
                        network: client,
                        canary: is_canary,
                        signal,
                    });
                }
            }
        }
        self.batch_events(canary, clients, events);
    }

    fn batch_events(&mut self, canary: Option<&str>, clients: Clients, events: Vec<ClientEvent>) {
        let weight = self.state.config.as_ref().map(|c| c.weight);
        self.send(Event::Batch(Batch {
            stable: v("1.0.0"),
            canary: canary.map(v),
            weight,
            clients,
            events,
        }));
    }

    fn logged(&self, event: &str) -> Vec<&serde_json::Value> {
        self.logs
            .iter()
            .filter(|(e, _)| *e == event)
            .map(|(_, f)| f)
            .collect()
    }

    fn progress_state(&self) -> Option<ProgressState> {
        self.state.progress.as_ref().map(|p| p.state)
    }
}

fn dark() -> serde_json::Value {
    json!({"stable": "1.0.0", "canary": "1.1.0", "weight": 0,
           "health": {"window_secs": 60, "min_requests": 20, "max_error_rate": 0.1, "max_relative": 2.0,
                      "hostile_networks": 0}})
}

fn refused(reply: Reply) -> (u16, String) {
    match reply {
        Reply::Refused { status, message } => (status, message),
        Reply::Done => panic!("expected a refusal"),
    }
}

#[test]
fn a_fresh_control_plane_adopts_kv_quietly() {
    let sim = Sim::new(dark(), 10);
    assert_eq!(sim.state.config.as_ref().unwrap().canary, Some(v("1.1.0")));
    assert!(sim.state.history.entries.is_empty());
    assert!(sim.writes.is_empty(), "reading is not writing");
}

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
fn a_failed_step_write_is_retried_and_never_skips_a_step() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("rollout", r#"{"steps":[10,50,100],"bake_secs":10}"#);
    let start = sim.now;
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    // Every write fails for a while: the alarm's step is not applied.
    sim.fail_writes = 4;
    sim.wait_until(start + 10_000.0);
    assert_eq!(sim.kv_config().weight.percent(), 10);
    let p = sim.state.progress.clone().unwrap();
    assert_eq!(
        (p.step, p.state),
        (0, ProgressState::Running),
        "state did not run ahead"
    );
    assert!(sim.state.kv.retry_at_ms.is_some(), "a retry is scheduled");
    assert_eq!(sim.alarm, sim.state.kv.retry_at_ms);
    assert_eq!(sim.logged("kv_write_failed").len(), 1);
    // The first retry fails too (two more attempts), the next succeeds: 10 -> 50, not 100
    // (the next step has no evidence of its own yet).
    for _ in 0..2 {
        let at = sim.alarm.unwrap();
        sim.wait_until(at);
    }
    assert_eq!(sim.kv_config().weight.percent(), 50);
    assert_eq!(sim.state.progress.as_ref().unwrap().step, 1);
    assert_eq!(sim.state.kv.failures, 0);
}

#[test]
fn a_command_retries_a_429_once_then_fails_cleanly() {
    let mut sim = Sim::new(dark(), 10);
    sim.fail_writes = 1;
    let before = sim.now;
    assert_eq!(sim.command("weight", r#"{"weight": 30}"#), Reply::Done);
    assert_eq!(sim.kv_config().weight.percent(), 30);
    assert!(sim.now - before >= 1_000.0, "the retry waited a second");

    sim.fail_writes = 2;
    let state_before = sim.state.clone();
    let (status, message) = refused(sim.command("weight", r#"{"weight": 50}"#));
    assert_eq!(status, 503);
    assert!(
        message.contains("429") && message.contains("nothing was changed"),
        "{message}"
    );
    assert_eq!(sim.kv_config().weight.percent(), 30, "KV unchanged");
    assert_eq!(sim.state.config, state_before.config, "state unchanged");
    assert_eq!(sim.state.history, state_before.history);
}

#[test]
fn writes_are_at_least_a_second_apart() {
    let mut sim = Sim::new(dark(), 10);
    for w in [10, 20, 30, 0, 40] {
        sim.command("weight", &format!(r#"{{"weight": {w}}}"#));
    }
    sim.command("rollback", r#"{"reason": "drill"}"#);
    assert_eq!(sim.writes.len(), 6);
    for pair in sim.writes.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= 1_000.0);
    }
    assert_eq!(sim.kv_config().revision, Some(6));
}

#[test]
fn a_stale_read_never_undoes_a_newer_write() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("rollout", r#"{"steps":[10,50,100],"bake_secs":10}"#);
    let first_write = sim.kv.clone();
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    sim.wait_until(sim.now + 10_000.0);
    assert_eq!(sim.kv_config().weight.percent(), 50);
    // This location still returns the first write (rev 1, weight 10).
    sim.stale_read = first_write.clone();
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    sim.wait_until(sim.now + 10_000.0);
    assert_eq!(sim.logged("kv_stale_read_ignored").len(), 1);
    assert!(sim.logged("kv_adopted").is_empty());
    assert_eq!(sim.kv_config().weight.percent(), 100, "the rollout went on");
    // Long after, the same old bytes are someone's deliberate restore: adopted.
    sim.stale_read = None;
    sim.now += STALE_HORIZON_MS + 1.0;
    sim.kv = first_write;
    sim.command("pause", "");
    assert_eq!(sim.logged("kv_adopted").len(), 1);
    assert_eq!(sim.state.config.as_ref().unwrap().weight.percent(), 10);
}

#[test]
fn an_operators_kv_write_wins_and_pauses_the_rollout() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("rollout", r#"{"steps":[10,50,100],"bake_secs":10}"#);
    sim.now += 2_000.0;
    let mut by_hand = sim.kv_config();
    by_hand.weight = Weight::new(30).unwrap();
    // Even with our own revision copied along, different bytes are someone else's.
    sim.kv = Some(by_hand.to_json());
    sim.wait_until(sim.now + 20_000.0);
    assert_eq!(
        sim.kv_config().weight.percent(),
        30,
        "the operator's weight stands"
    );
    assert_eq!(sim.progress_state(), Some(ProgressState::Paused));
    assert_eq!(sim.writes.len(), 1);
    let adopted = sim.state.history.of_kind("kv_adopted").next().unwrap();
    assert_eq!(adopted.by, "kv");
    // The next write outranks the operator's revision.
    sim.command("weight", r#"{"weight": 40}"#);
    assert!(sim.kv_config().revision.unwrap() > by_hand.revision.unwrap());
}

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
fn racing_events_lose_nothing() {
    // The Durable Object runs one event at a time (its lock); whatever order the events
    // come in, every count and every command is in the state afterwards.
    let mut sim = Sim::new(dark(), 10);
    sim.command("weight", r#"{"weight": 50}"#);
    for i in 0..20 {
        sim.batch(Some("1.1.0"), (3, 0), (2, 0));
        if i % 5 == 0 {
            sim.command("weight", &format!(r#"{{"weight": {}}}"#, 50 + i));
        }
    }
    let totals = sim.state.health.totals.counts();
    assert_eq!((totals.stable.clients, totals.canary.clients), (60, 40));
    assert_eq!(sim.state.history.of_kind("set_weight").count(), 5);
}

#[test]
fn a_deleted_key_is_adopted_as_no_config() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("weight", r#"{"weight": 50}"#);
    sim.now += STALE_HORIZON_MS;
    sim.kv = None;
    let (status, _) = refused(sim.command("weight", r#"{"weight": 60}"#));
    assert_eq!(status, 404);
    assert_eq!(sim.state.config, None);
    // Publishing again creates the bundle afresh.
    assert_eq!(
        sim.command("publish", r#"{"version": "2.0.0"}"#),
        Reply::Done
    );
    assert_eq!(sim.kv_config().stable, v("2.0.0"));
    let _ = Command::Pause;
}

#[test]
fn iso_times() {
    use super::machine::iso_time;
    for (ms, text) in [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_795_000_381_738.0, "2026-11-18T11:13:01.738Z"),
        (951_782_400_000.0, "2000-02-29T00:00:00.000Z"),
    ] {
        assert_eq!(iso_time(ms), text);
    }
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
    assert_eq!(sim.state.judge().verdict, super::verdict::Verdict::Pass);
    let mut bad = Sim::new(dark(), 10);
    bad.command("weight", r#"{"weight": 50}"#);
    for _ in 0..10 {
        bad.batch(Some("1.1.0"), (20, 1), (20, 8));
    }
    assert_eq!(bad.kv_config().weight.percent(), 0, "cut");
}

#[test]
fn a_batch_that_would_step_reads_kv_first_and_the_operator_wins() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("rollout", r#"{"steps":[10,50,100],"bake_secs":10}"#);
    sim.now += 11_000.0; // due, but the alarm has not fired yet
    let mut by_hand = sim.kv_config();
    by_hand.weight = Weight::new(30).unwrap();
    sim.kv = Some(by_hand.to_json());
    // Healthy evidence arrives: it would pass the step, but KV is read first.
    sim.batch(Some("1.1.0"), (300, 3), (300, 3));
    assert_eq!(
        sim.kv_config().weight.percent(),
        30,
        "not overwritten by a step"
    );
    assert_eq!(sim.progress_state(), Some(ProgressState::Paused));
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
                });
            }
        }
    }
    sim.batch_events(Some("1.1.0"), Clients::default(), events);
}

fn with_health(extra: serde_json::Value) -> serde_json::Value {
    let mut config = dark();
    let health = config["health"].as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        health.insert(k.clone(), v.clone());
    }
    config
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
    assert_eq!(sim.state.judge().verdict, super::verdict::Verdict::Cut);
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
