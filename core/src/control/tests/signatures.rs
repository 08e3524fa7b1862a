//! Error signatures through the machine: batches' texts become the step's signatures, the
//! status lists the new ones, a rollback's notification names the top one, and the verdict
//! is the same with or without texts.

use super::*;
use crate::control::status::admin_json;
use crate::health::report_text::ReportText;

/// A batch of `n` clients per channel (networks of their own), the first `e` failing with
/// `message`, the others booted; with texts when `texts`.
fn batch(sim: &mut Sim, stable: (u64, u64, &str), canary: (u64, u64, &str), texts: bool) {
    let mut clients = Clients::default();
    let (mut events, mut reports) = (vec![], vec![]);
    for (is_canary, (n, e, message)) in [(false, stable), (true, canary)] {
        for i in 0..n {
            sim.next_client += 1;
            let client = sim.next_client;
            clients.channel_mut(is_canary).insert(client, i < e);
            let signal = if i < e { Signal::Failure } else { Signal::Boot };
            for signal in [Signal::Load, signal] {
                events.push(ClientEvent {
                    client,
                    network: client,
                    canary: is_canary,
                    signal,
                    boot_ms: None,
                });
            }
            if i < e && texts {
                reports.push(ReportText {
                    client,
                    network: client,
                    canary: is_canary,
                    kind: "uncaught".into(),
                    message: Some(format!("{message} (order {client})")),
                    stack: None,
                });
            }
        }
    }
    let weight = sim.state.config.as_ref().map(|c| c.weight);
    sim.send(Event::Batch(Batch {
        stable: v("1.0.0"),
        canary: Some(v("1.1.0")),
        weight,
        clients,
        events,
        reports,
    }));
}

#[test]
fn new_canary_errors_are_listed_and_named_by_the_rollback_and_the_verdict_is_unchanged() {
    let run = |texts: bool| {
        let mut sim = Sim::new(gated(json!({})), 10);
        sim.command("rollout", "{}");
        sim.now += 2_000.0;
        batch(
            &mut sim,
            (300, 3, "old failure"),
            (30, 1, "old failure"),
            texts,
        );
        let before = admin_json(&sim.state, sim.now);
        batch(
            &mut sim,
            (0, 0, ""),
            (170, 149, "<img src=x onerror=alert(1)> new"),
            texts,
        );
        (sim, before)
    };
    let (mut with, before) = run(true);
    let (without, _) = run(false);
    // The verdict does not change with texts.
    assert_eq!(with.notified.len(), 1);
    assert_eq!(
        with.notified[0].evidence, without.notified[0].evidence,
        "signatures explain the verdict, never change it"
    );
    assert_eq!(with.notified[0].reason, without.notified[0].reason);
    // Before the cut, the status lists the step's signatures: the canary's "old failure"
    // is not new (stable has it).
    let listed = &before["error_signatures"]["current"]["signatures"];
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["new"], false);
    assert_eq!(listed[0]["clients"], json!({"stable": 3, "canary": 1}));
    // The rollback names the new one, with its sample as sent (raw: shown escaped).
    let cut = with.notified[0].clone();
    assert_eq!(cut.event, "rollback");
    let new = cut.new_error.clone().expect("a new error");
    assert!(
        new.new
            && new
                .sample
                .starts_with("<img src=x onerror=alert(1)> new (order ")
    );
    assert_eq!(new.clients.canary, 149);
    assert!(without.notified[0].new_error.is_none());
    let json = cut.json(None);
    assert_eq!(json["new_error"]["clients"]["canary"], 149);
    let slack = cut.slack(None).to_string();
    assert!(slack.contains("&lt;img src=x onerror=alert(1)&gt;") && !slack.contains("<img"));
    // After the cut, the status names it; once a new step begins (the next batch, about
    // the dark canary), the cut step's signatures are the previous step's.
    let status = admin_json(&with.state, with.now);
    assert_eq!(status["error_signatures"]["top_new"]["id"], json!(new.id));
    with.now += 1_000.0;
    let weight = with.state.config.as_ref().map(|c| c.weight);
    with.send(Event::Batch(Batch {
        stable: v("1.0.0"),
        canary: None,
        weight,
        clients: Clients::default(),
        events: vec![],
        reports: vec![],
    }));
    let status = admin_json(&with.state, with.now);
    let s = &status["error_signatures"];
    assert_eq!(s["top_new"]["id"], json!(new.id));
    assert_eq!(s["current"]["signatures"], json!([]));
    assert_eq!(s["previous"]["new_in_canary"], 1);
    assert_eq!(s["previous"]["canary"], "1.1.0");
    let parsed: crate::control::signatures::SignaturesStatus =
        serde_json::from_value(s.clone()).unwrap();
    assert_eq!(parsed, with.state.signatures.status(), "one typed field");
}
