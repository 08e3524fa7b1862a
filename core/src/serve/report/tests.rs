use super::*;
use crate::config::{Version, Weight};
use crate::decide::Channel;
use crate::serve::tests::{edge, edge_with, first_visit, CONFIG, NOW};
use crate::serve::Served;

fn report<'a>(body: &'a str, cookie: Option<&'a str>) -> ReportRequest<'a> {
    ReportRequest {
        body: body.as_bytes(),
        oversize: false,
        cookie,
        override_token: None,
        client_ip: Some("203.0.113.9"),
        now_ms: NOW,
        config_read: false,
    }
}

fn body(version: &str, kind: &str) -> String {
    if kind == "boot" {
        format!(r#"{{"bundle":"demo","version":"{version}","kind":"boot","boot_ms":120}}"#)
    } else {
        format!(r#"{{"bundle":"demo","version":"{version}","kind":"{kind}","message":"x"}}"#)
    }
}

/// A served client's cookie pair and channel.
fn served_client(e: &Edge, key: &str) -> (String, Channel, Version) {
    let plan = first_visit(e, "https://x.test/demo/sdk.js", key);
    let cookie = plan
        .headers
        .get("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (cookie, plan.channel.unwrap(), plan.version)
}

#[test]
fn reports_are_decided_like_assets() {
    let e = edge();
    let (cookie, channel, version) = served_client(&e, "client-1");
    let other = if version.as_str() == "1.0.0" {
        "1.1.0"
    } else {
        "1.0.0"
    };
    // (body, cookie, oversize) -> the step's kind and, for answers, what they say.
    let long = "x".repeat(MAX_REPORT_BYTES + 1);
    for (body, cookie, oversize, expected) in [
        (
            body(version.as_str(), "uncaught"),
            Some(cookie.as_str()),
            false,
            "admitted",
        ),
        (
            body(version.as_str(), "boot"),
            Some(cookie.as_str()),
            false,
            "admitted",
        ),
        (body(version.as_str(), "uncaught"), None, false, "no_cookie"),
        (
            body(version.as_str(), "uncaught"),
            Some("cohort=3.forged"),
            false,
            "bad_cookie",
        ),
        (
            body(other, "uncaught"),
            Some(cookie.as_str()),
            false,
            "not_served_this_version",
        ),
        (
            body("9.9.9", "uncaught"),
            Some(cookie.as_str()),
            false,
            "version_not_live",
        ),
        ("not json".to_owned(), None, false, "400"),
        (long, None, false, "413"),
        (
            body(version.as_str(), "uncaught"),
            Some(cookie.as_str()),
            true,
            "413",
        ),
    ] {
        let req = ReportRequest {
            oversize,
            ..report(&body, cookie)
        };
        let got = match e.plan_report(&req) {
            ReportStep::Admitted {
                ip_limit_key,
                client_limit_key,
                body,
                token,
            } => {
                assert!(ip_limit_key.starts_with("net:") && !ip_limit_key.contains("203.0"));
                assert!(client_limit_key.starts_with("client:"));
                let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(answer["counted"], true);
                assert_eq!(answer["channel"], channel.as_str());
                assert!(token.ends_with("\tf") || token.ends_with("\tb"));
                "admitted".to_owned()
            }
            ReportStep::NotCounted { body, .. } => {
                let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(answer["counted"], false);
                answer["reason"].as_str().unwrap().to_owned()
            }
            ReportStep::Fail(err) => err.status().to_string(),
            ReportStep::ReadConfig { .. } => "read".to_owned(),
        };
        assert_eq!(got, expected, "{body:.60} {cookie:?} oversize={oversize}");
    }
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rate_limited_body()).unwrap()["reason"],
        "rate_limited"
    );
}

#[test]
fn a_report_of_a_bundle_not_read_yet_reads_its_config_first() {
    let mut e = edge_with(&[]);
    let text = body("1.1.0", "uncaught");
    match e.plan_report(&report(&text, None)) {
        ReportStep::ReadConfig { bundle, kv_key, .. } => {
            assert_eq!((bundle.as_str(), kv_key.as_str()), ("demo", "rollout/demo"));
        }
        other => panic!("{other:?}"),
    }
    let demo = BundleName::parse("demo").unwrap();
    e.record_config(&demo, crate::rollouts::KvRead::Value(CONFIG.into()), NOW);
    let read = ReportRequest {
        config_read: true,
        ..report(&text, None)
    };
    assert!(matches!(
        e.plan_report(&read),
        ReportStep::NotCounted { .. }
    ));
}

#[test]
fn networks_share_a_limit_key_by_ipv4_address_and_ipv6_slash_48() {
    let e = edge();
    let text = body("1.1.0", "uncaught");
    let key = |ip: &'static str| match e.plan_report(&ReportRequest {
        client_ip: Some(ip),
        ..report(&text, None)
    }) {
        ReportStep::NotCounted { ip_limit_key, .. } => ip_limit_key,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        key("2001:db8:1:aaaa::1"),
        key("2001:db8:1:bbbb::2"),
        "one /48"
    );
    assert_ne!(key("2001:db8:1::1"), key("2001:db8:2::1"));
    assert_ne!(key("203.0.113.1"), key("203.0.113.2"));
}

#[test]
fn reports_join_the_loads_pending_counts() {
    use crate::control::tracker::Signal;
    let mut e = edge();
    let (cookie, channel, version) = served_client(&e, "client-0");
    let plan = first_visit(&e, "https://x.test/demo/sdk.js", "client-0");
    let load = plan.tally.unwrap();
    assert!(e.served(&load.0, Served::AsRouted, NOW).is_empty());
    let token = |kind: &str| {
        let text = body(version.as_str(), kind);
        match e.plan_report(&report(&text, Some(&cookie))) {
            ReportStep::Admitted { token, .. } => token,
            other => panic!("{other:?}"),
        }
    };
    let (boot, failure) = (token("boot"), token("uncaught"));
    assert!(e.count_report(&boot, NOW).is_empty());
    // The third signal fills the batch (HEALTH_FLUSH_REQUESTS=3): one batch.
    let sent = e.count_report(&failure, NOW);
    assert_eq!(sent.len(), 1);
    let batch = &sent[0].1;
    assert_eq!(batch.weight, Some(Weight::new(50).unwrap()));
    let signals: Vec<Signal> = batch.events.iter().map(|ev| ev.signal).collect();
    assert_eq!(signals, [Signal::Load, Signal::Boot, Signal::Failure]);
    assert!(
        batch.events[1..].iter().all(|ev| ev.network == 0),
        "a report carries no network: the tracker takes its load's"
    );
    let on = |ch| u64::from(channel == ch);
    let counts = batch.clients.counts();
    assert_eq!(counts.canary.errors, on(Channel::Canary));
    assert_eq!(counts.stable.errors, on(Channel::Stable));
    for bad in [
        "",
        "x",
        "demo\t1.0.0\t\t50\t0\t1\t0\tq",
        &boot[..boot.len() - 2],
    ] {
        assert!(e.count_report(bad, NOW).is_empty(), "{bad:?}");
    }
}

#[test]
fn a_lone_report_is_sent_by_the_timer() {
    let mut e = edge_with(&[]);
    let demo = BundleName::parse("demo").unwrap();
    e.record_config(&demo, crate::rollouts::KvRead::Value(CONFIG.into()), NOW);
    let (cookie, _, version) = served_client(&e, "lonely");
    let text = body(version.as_str(), "uncaught");
    let ReportStep::Admitted { token, .. } = e.plan_report(&report(&text, Some(&cookie))) else {
        panic!("admitted");
    };
    // The first record starts the batch: not due at once, due within a second.
    assert!(e.count_report(&token, NOW).is_empty());
    let due = e.next_flush_ms().unwrap();
    assert!(due <= NOW + 1_000.0, "{due}");
    assert!(e.flush(due - 1.0).is_empty());
    let sent = e.flush(due);
    assert_eq!(sent.len(), 1);
    assert_eq!(e.next_flush_ms(), None);
}
