//! KV as a projection: adoption, stale reads, failed and rate-limited writes, reads before writes, races.

use super::*;

#[test]
fn a_fresh_control_plane_adopts_kv_quietly() {
    let sim = Sim::new(dark(), 10);
    assert_eq!(sim.state.config.as_ref().unwrap().canary, Some(v("1.1.0")));
    assert!(sim.state.history.entries.is_empty());
    assert!(sim.writes.is_empty(), "reading is not writing");
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
    // The seed, adopted, is revision 1; the six writes follow it.
    assert_eq!(sim.kv_config().revision, Some(7));
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
fn a_stale_read_of_an_adopted_config_never_raises_exposure() {
    // The object adopted what KV held (a raw seed at weight 30), then wrote a newer config
    // (weight 10): a location that still caches the seed returns it, which is lag, not an
    // operator, and it would serve more canary cohorts: ignored.
    let mut seed_config = dark();
    seed_config["weight"] = serde_json::json!(30);
    let mut sim = Sim::new(seed_config, 10);
    let seed = sim.kv.clone();
    sim.now += 5_000.0;
    sim.command("weight", r#"{"weight": 10}"#);
    assert_eq!(sim.kv_config().weight.percent(), 10);
    sim.stale_read = seed.clone();
    sim.now += 2_000.0;
    sim.command("pause", "");
    assert!(sim.logged("kv_adopted").is_empty(), "{:?}", sim.logs);
    assert_eq!(sim.logged("kv_stale_read_ignored").len(), 1);
    assert_eq!(sim.state.config.as_ref().unwrap().weight.percent(), 10);
    // Past the horizon the same bytes are someone's deliberate restore: adopted.
    sim.stale_read = None;
    sim.now += STALE_HORIZON_MS + 1.0;
    sim.kv = seed;
    sim.command("pause", "");
    assert_eq!(sim.logged("kv_adopted").len(), 1);
    assert_eq!(sim.state.config.as_ref().unwrap().weight.percent(), 30);
}

#[test]
fn a_raw_rollback_to_the_seeds_bytes_is_adopted_at_once() {
    // The object adopted the raw seed (weight 0), then wrote weight 30; the operator writes
    // the seed's exact bytes back. A lagging read of the seed looks the same, but it serves
    // fewer canary cohorts of the same canary: the lower exposure wins, adopted at once.
    let mut sim = Sim::new(dark(), 10);
    let seed = sim.kv.clone();
    sim.now += 5_000.0;
    sim.command("weight", r#"{"weight": 30}"#);
    assert_eq!(sim.kv_config().weight.percent(), 30);
    sim.now += 2_000.0;
    sim.kv = seed;
    sim.command("pause", "");
    assert_eq!(sim.logged("kv_adopted").len(), 1, "{:?}", sim.logs);
    assert_eq!(sim.state.config.as_ref().unwrap().weight.percent(), 0);
    // Its revision is above every earlier one: pushed, it outranks the weight-30 write.
    assert!(sim.state.kv.revision > 2, "{}", sim.state.kv.revision);
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
fn kv_is_read_before_anything_writes_and_only_then() {
    let mut sim = Sim::new(dark(), 10);
    sim.command("weight", r#"{"weight": 50}"#);
    let reads = sim.kv_reads;
    // A batch that decides nothing reads nothing.
    sim.batch(Some("1.1.0"), (20, 0), (20, 0));
    assert_eq!(sim.kv_reads, reads);
    // A command reads once, then writes.
    sim.now += 2_000.0;
    sim.command("weight", r#"{"weight": 60}"#);
    assert_eq!(sim.kv_reads, reads + 1);
    // A batch whose decision writes (a cut) reads first, and decides again on what it read:
    // an operator's write since is adopted (the weight they set), never undone.
    sim.now += 2_000.0;
    let mut by_hand = sim.kv_config();
    by_hand.weight = Weight::new(70).unwrap();
    by_hand.revision = None;
    sim.kv = Some(by_hand.to_json());
    sim.batch(Some("1.1.0"), (400, 0), (400, 200));
    assert_eq!(sim.kv_reads, reads + 2, "one read for the cut");
    assert!(sim.logs.iter().any(|(e, _)| *e == "kv_adopted"));
    assert!(
        sim.state
            .history
            .entries
            .iter()
            .all(|e| e.kind != "rollback"),
        "the cut was decided on evidence from weight 60: after adopting 70, it waits"
    );
    assert_eq!(sim.kv_config().weight.percent(), 70);
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
    use crate::control::machine::iso_time;
    for (ms, text) in [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_795_000_381_738.0, "2026-11-18T11:13:01.738Z"),
        (951_782_400_000.0, "2000-02-29T00:00:00.000Z"),
    ] {
        assert_eq!(iso_time(ms), text);
    }
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
fn a_new_bundles_first_batch_waits_for_a_read_and_is_counted() {
    let mut sim = Sim::new(dark(), 10);
    // The object has never run: no config until it reads KV, where the bundle is at 50%.
    sim.state = Control::new(BundleName::parse("demo").unwrap(), 10);
    let mut live = dark();
    live["weight"] = json!(50);
    sim.kv = Some(live.to_string());
    let reads = sim.kv_reads;
    sim.send(Event::Batch(Batch {
        stable: v("1.0.0"),
        canary: Some(v("1.1.0")),
        weight: Weight::new(50).ok(),
        clients: Clients::default(),
        events: vec![],
        reports: vec![],
    }));
    assert_eq!(sim.kv_reads, reads + 1, "the batch read KV first");
    assert_eq!(
        sim.state.config.as_ref().map(|c| c.weight.percent()),
        Some(50)
    );
    assert!(sim.logged("batch_ignored").is_empty(), "and was taken");
    // A second batch about other versions within the second does not read again.
    sim.batch(Some("9.9.9"), (1, 0), (1, 0));
    assert_eq!(sim.kv_reads, reads + 1);
    assert_eq!(sim.logged("batch_ignored").len(), 1);
}
