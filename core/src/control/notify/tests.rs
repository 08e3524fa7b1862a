use super::*;

fn sample(event: &'static str, by: &str) -> Notification {
    Notification {
        id: format!("sdk-7-{event}"),
        event,
        bundle: "sdk".into(),
        stable: Some(Version::parse("1.0.0").unwrap()),
        canary: Some(Version::parse("1.1.0").unwrap()),
        weight: Some(0),
        next_weight: None,
        by: by.into(),
        automatic: event == "rollback" && is_automatic(by),
        reason: "canary failure rate 8.00% vs stable 1.00%".into(),
        new_error: None,
        evidence: Some(Evidence {
            verdict: "cut".into(),
            family: Family::Errors,
            canary: Side {
                clients: 200,
                failed: 16,
                rate: 0.08,
                low: 0.05,
                high: 0.12,
            },
            stable: Side {
                clients: 1800,
                failed: 18,
                rate: 0.01,
                low: 0.006,
                high: 0.016,
            },
            summary: "worse".into(),
            boot_time: None,
        }),
        at_ms: 1_764_567_600_000.0,
        until_ms: None,
    }
}

#[test]
fn retries_back_off_then_give_up() {
    let delays: Vec<Option<f64>> = (0..=7).map(retry_delay_ms).collect();
    assert_eq!(
        delays,
        vec![
            None,
            Some(1e3),
            Some(5e3),
            Some(30e3),
            Some(120e3),
            Some(600e3),
            None,
            None
        ]
    );
}

#[test]
fn signature_is_hmac_sha256_hex() {
    // RFC 4231 test case 2.
    assert_eq!(
        signature("Jefe", "what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let h = headers(Format::Json, "sdk-1-publish", "{}", Some("k"));
    assert_eq!(h[0], (DELIVERY_HEADER, "sdk-1-publish".to_owned()));
    assert_eq!(h[1], (SIGNATURE_HEADER, signature("k", "{}")));
    // Slack's receivers get no signature; neither does JSON without a secret.
    assert_eq!(headers(Format::Slack, "i", "{}", Some("k")).len(), 1);
    assert_eq!(headers(Format::Json, "i", "{}", None).len(), 1);
}

#[test]
fn titles_say_what_happened() {
    let cases = [
        (
            "rollback",
            "auto",
            "sdk: canary 1.1.0 was rolled back automatically",
        ),
        (
            "rollback",
            "alice",
            "sdk: canary 1.1.0 was rolled back by alice",
        ),
        (
            "step_advanced",
            "rollout",
            "sdk: canary 1.1.0 advanced to 0%",
        ),
        (
            "paused",
            "bob",
            "sdk: the rollout of 1.1.0 was paused by bob",
        ),
        (
            "superseded",
            "operator",
            "sdk: the rollout of 1.1.0 was superseded",
        ),
        ("promote", "alice", "sdk: 1.0.0 promoted to stable by alice"),
        (
            "awaiting_approval",
            "rollout",
            "sdk: canary 1.1.0 awaits approval for 100%",
        ),
    ];
    for (event, by, want) in cases {
        assert_eq!(sample(event, by).title(), want);
    }
}

#[test]
fn json_has_every_field_and_the_link() {
    let n = sample("rollback", "auto");
    let j = n.json(Some("ops.example.com"));
    assert_eq!(j["id"], "sdk-7-rollback");
    assert_eq!(j["event"], "rollback");
    assert_eq!(j["bundle"], "sdk");
    assert_eq!(j["stable"], "1.0.0");
    assert_eq!(j["canary"], "1.1.0");
    assert_eq!(j["weight"], 0);
    assert_eq!(j["by"], "auto");
    assert_eq!(j["automatic"], true);
    assert_eq!(j["evidence"]["canary"]["clients"], 200);
    assert_eq!(j["evidence"]["canary"]["failed"], 16);
    assert_eq!(j["evidence"]["stable"]["high"], 0.016);
    assert_eq!(j["evidence"]["verdict"], "cut");
    assert_eq!(j["at"], "2025-12-01T05:40:00.000Z");
    assert_eq!(j["url"], "https://ops.example.com/__canary/ui/#/b/sdk");
    assert_eq!(n.json(None)["url"], Value::Null);
    assert_eq!(n.json(Some(""))["url"], Value::Null);
}

#[test]
fn slack_has_text_and_a_section_per_fact() {
    let n = sample("rollback", "auto");
    let s = n.slack(Some("ops.example.com"));
    assert_eq!(s["text"], n.title());
    let blocks = s["blocks"].as_array().unwrap();
    assert!(blocks.iter().all(|b| b["type"] == "section"));
    let texts: Vec<&str> = blocks
        .iter()
        .map(|b| b["text"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts[0],
        "*sdk: canary 1.1.0 was rolled back automatically*"
    );
    for fact in [
        "*Bundle:* sdk",
        "*Stable:* 1.0.0",
        "*Canary:* 1.1.0",
        "*Weight:* 0%",
        "*By:* auto",
    ] {
        assert!(texts.contains(&fact), "{fact} in {texts:?}");
    }
    assert!(texts
        .iter()
        .any(|t| t.starts_with("*Evidence:* cut: canary 200 clients, 16 with failures")));
    assert!(texts.contains(&"*Console:* <https://ops.example.com/__canary/ui/#/b/sdk|sdk>"));
    // No console host: no link.
    let s = n.slack(None).to_string();
    assert!(!s.contains("Console"), "{s}");
    // The body is the JSON text of the shape.
    assert_eq!(n.body(Format::Slack, None), n.slack(None).to_string());
    assert_eq!(n.body(Format::Json, None), n.json(None).to_string());
}

#[test]
fn a_boot_time_cut_names_the_boot_times_in_json_and_slack() {
    use crate::control::verdict::boot_time::{BootJudgement, Median};
    let mut n = sample("rollback", "auto");
    let median = |clients, median_ms, low_ms, high_ms| Median {
        clients,
        median_ms,
        low_ms,
        high_ms,
    };
    let e = n.evidence.as_mut().unwrap();
    e.family = Family::BootTime;
    e.boot_time = Some(BootJudgement {
        canary: median(300, 592.0, 540.0, 650.0),
        stable: median(2000, 400.0, 390.0, 410.0),
        slowdown: 0.48,
        slowdown_low: 0.31,
        slowdown_high: 0.66,
        max_slowdown: 0.25,
        worse: 9.0,
        better: -20.0,
        cut_at_ms: 540.0,
        pass_at_ms: 460.0,
    });
    let json = n.json(None);
    assert_eq!(json["evidence"]["family"], "boot_time");
    assert_eq!(json["evidence"]["boot_time"]["canary"]["median_ms"], 592.0);
    assert_eq!(json["evidence"]["boot_time"]["slowdown_low"], 0.31);
    let slack = n.slack(None).to_string();
    assert!(
        slack.contains("*Boot time:* canary median 592 ms (300 clients), stable 400 ms (2000): +48% (interval +31% to +66%, tolerated +25%)"),
        "{slack}"
    );
    // Without boot times, no such field or line.
    let plain = sample("rollback", "auto");
    assert!(plain.json(None)["evidence"].get("boot_time").is_none());
    assert!(!plain.slack(None).to_string().contains("Boot time"));
}
