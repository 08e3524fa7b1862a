use super::*;
use crate::config::{Version, Weight};
use crate::edge::decide::Channel;
use crate::edge::serve::tests::{count_served, edge, edge_with, first_visit, CONFIG, NOW};
use crate::edge::serve::Served;
use crate::health::counts::Batch;

fn report<'a>(body: &'a str, cookie: Option<&'a str>) -> ReportRequest<'a> {
    ReportRequest {
        body: body.as_bytes(),
        oversize: false,
        cookie,
        override_token: None,
        client_ip: Some("203.0.113.9"),
        origin: None,
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
                // A boot carries its boot_ms (120 in these bodies) for the boot-time guard; a
                // failure carries its kind and texts after its signal.
                assert!(
                    token.ends_with("\tb120") || token.contains("\tf\t"),
                    "{token}"
                );
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
    e.record_config(&demo, crate::kv::KvRead::Value(CONFIG.into()), NOW);
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

/// Counts an admitted report's token at `at` and takes the batches due then.
fn count_now(e: &mut Edge, token: &str, at: f64) -> Vec<(BundleName, Batch)> {
    e.count_report(token, at);
    e.flush(at)
}

#[test]
fn reports_join_the_loads_pending_counts() {
    use crate::health::counts::Signal;
    let mut e = edge();
    let (cookie, channel, version) = served_client(&e, "client-0");
    let plan = first_visit(&e, "https://x.test/demo/sdk.js", "client-0");
    let load = plan.tally.unwrap();
    assert!(count_served(&mut e, &load, Served::AsRouted, NOW).is_empty());
    let token = |kind: &str| {
        let text = body(version.as_str(), kind);
        match e.plan_report(&report(&text, Some(&cookie))) {
            ReportStep::Admitted { token, .. } => token,
            other => panic!("{other:?}"),
        }
    };
    let (boot, failure) = (token("boot"), token("uncaught"));
    assert!(count_now(&mut e, &boot, NOW).is_empty());
    // The third signal fills the batch (HEALTH_FLUSH_REQUESTS=3): one batch.
    let sent = count_now(&mut e, &failure, NOW);
    assert_eq!(sent.len(), 1);
    let batch = &sent[0].1;
    assert_eq!(batch.weight, Some(Weight::new(50).unwrap()));
    let signals: Vec<Signal> = batch.events.iter().map(|ev| ev.signal).collect();
    assert_eq!(signals, [Signal::Load, Signal::Boot, Signal::Failure]);
    let times: Vec<Option<u32>> = batch.events.iter().map(|ev| ev.boot_ms).collect();
    assert_eq!(
        times,
        [None, Some(120), None],
        "the boot carries its boot_ms"
    );
    assert!(
        batch.events[1..]
            .iter()
            .all(|ev| ev.network == batch.events[0].network && ev.network != 0),
        "a report carries its address's network (the load's here: the same address)"
    );
    let on = |ch| u64::from(channel == ch);
    let counts = batch.clients.counts();
    assert_eq!(counts.canary.errors, on(Channel::Canary));
    assert_eq!(counts.stable.errors, on(Channel::Stable));
    for bad in [
        "",
        "x",
        "demo\t1.0.0\t\t50\t0\t1\t0\tq",
        &boot[..boot.len() - 5],
        &format!("{}\tb12x", boot.rsplit_once('\t').unwrap().0),
        &format!("{}\tf5", boot.rsplit_once('\t').unwrap().0),
        &format!("{}\tb-1", boot.rsplit_once('\t').unwrap().0),
    ] {
        // Nothing was pending (the batch above took it all), and nothing is.
        assert_eq!(e.count_report(bad, NOW), None, "{bad:?}");
    }
}

#[test]
fn a_lone_report_is_sent_by_the_timer() {
    let mut e = edge_with(&[]);
    let demo = BundleName::parse("demo").unwrap();
    e.record_config(&demo, crate::kv::KvRead::Value(CONFIG.into()), NOW);
    let (cookie, _, version) = served_client(&e, "lonely");
    let text = body(version.as_str(), "uncaught");
    let ReportStep::Admitted { token, .. } = e.plan_report(&report(&text, Some(&cookie))) else {
        panic!("admitted");
    };
    // The first record starts the batch: not due at once, due within a second.
    let due = e.count_report(&token, NOW).unwrap();
    assert_eq!(Some(due), e.next_flush_ms());
    assert!(due <= NOW + 1_000.0, "{due}");
    assert!(e.flush(due - 1.0).is_empty());
    let sent = e.flush(due);
    assert_eq!(sent.len(), 1);
    assert_eq!(e.next_flush_ms(), None);
}

/// With `health.origins`, a load counts only from a listed page (its `Referer`) and a report
/// only from one (its `Origin`); everything is still served.
#[test]
fn only_the_merchants_pages_move_the_counts() {
    let mut e = edge();
    let demo = BundleName::parse("demo").unwrap();
    let config = r#"{"stable":"1.0.0","canary":"1.1.0","weight":50,
        "health":{"origins":["https://shop.example","http://127.0.0.1:8787"]}}"#;
    e.record_config(&demo, crate::kv::KvRead::Value(config.into()), NOW);
    let url = "https://sdk.example/demo/sdk.js";
    let id = crate::edge::decide::ClientFacts {
        user_key: Some("shopper"),
        ..Default::default()
    };
    // (Referer, counted): counted loads carry a tally and mint the client's cookie.
    let mut cookie = None;
    for (referer, counted) in [
        (Some("https://shop.example/"), true),
        (Some("https://shop.example/checkout?o=1"), true),
        (Some("http://127.0.0.1:8787/merchant/index.html"), true),
        (Some("https://forum.example/thread/1"), false),
        (Some("http://localhost:8787/"), false),
        (None, false),
    ] {
        let req = crate::edge::serve::AssetRequest {
            referer,
            ..crate::edge::serve::tests::get(url)
        };
        let plan = crate::edge::serve::tests::serve(e.plan(&req, Some(&id), || 7));
        assert_eq!(plan.tally.is_some(), counted, "{referer:?}");
        let set = plan.headers.get("set-cookie");
        assert_eq!(
            set.is_some(),
            counted,
            "{referer:?}: an id only with a counted load"
        );
        assert!(
            plan.headers.get("x-cohort").is_some(),
            "{referer:?}: served all the same"
        );
        if let Some(set) = set {
            cookie = set.split(';').next().map(str::to_owned);
        }
    }
    let cookie = cookie.unwrap();
    let served = {
        let req = crate::edge::serve::AssetRequest {
            cookie: Some(&cookie),
            referer: Some("https://shop.example/"),
            ..crate::edge::serve::tests::get(url)
        };
        crate::edge::serve::tests::serve(e.plan(&req, None, || 7)).version
    };
    let text = body(served.as_str(), "uncaught");
    // (Origin, reason): `null` and a missing Origin never match.
    for (origin, expected) in [
        (Some("https://shop.example"), "admitted"),
        (Some("http://127.0.0.1:8787"), "admitted"),
        (Some("https://forum.example"), "origin_not_listed"),
        (Some("https://shop.example/"), "origin_not_listed"),
        (Some("null"), "origin_not_listed"),
        (None, "origin_not_listed"),
    ] {
        let req = ReportRequest {
            origin,
            ..report(&text, Some(&cookie))
        };
        let got = match e.plan_report(&req) {
            ReportStep::Admitted { .. } => "admitted".to_owned(),
            ReportStep::NotCounted { body, .. } => {
                let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                answer["reason"].as_str().unwrap().to_owned()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(got, expected, "{origin:?}");
    }
}

/// A failure's message and stack ride on its token, raw and bounded, into the batch's
/// `reports` (whatever characters they hold); a boot carries none.
#[test]
fn a_failures_text_rides_on_its_token_into_the_batch() {
    let mut e = edge_with(&[]);
    let demo = BundleName::parse("demo").unwrap();
    e.record_config(&demo, crate::kv::KvRead::Value(CONFIG.into()), NOW);
    let (cookie, channel, version) = served_client(&e, "texts");
    let message = "a\tb\nc\r%25 <img src=x onerror=alert(1)> é";
    let text = serde_json::json!({
        "bundle": "demo", "version": version.as_str(), "kind": "uncaught",
        "message": message, "stack": format!("Error\n    at f (https://x.test/a.js:1:2){}", "s".repeat(3000)),
    })
    .to_string();
    let ReportStep::Admitted { token, .. } = e.plan_report(&report(&text, Some(&cookie))) else {
        panic!("admitted");
    };
    assert!(!token.contains('\n') && !token.contains('\r'), "{token}");
    let bare = body(version.as_str(), "chunk_load").replace(r#","message":"x""#, "");
    let ReportStep::Admitted { token: bare, .. } = e.plan_report(&report(&bare, Some(&cookie)))
    else {
        panic!("admitted");
    };
    assert!(count_now(&mut e, &token, NOW).is_empty());
    assert!(count_now(&mut e, &bare, NOW).is_empty());
    let sent = e.flush(NOW + 1_000.0);
    let reports = &sent[0].1.reports;
    assert_eq!(
        reports.len(),
        1,
        "the client's first failure's text: {reports:?}"
    );
    let r = &reports[0];
    // Tabs and carriage returns become spaces, newlines U+001E: the token's separators.
    assert_eq!(
        r.message.as_deref(),
        Some("a b\u{1e}c %25 <img src=x onerror=alert(1)> é")
    );
    assert_eq!(r.kind, "uncaught");
    assert_eq!(r.canary, channel == Channel::Canary);
    let stack = r.stack.as_deref().unwrap();
    assert!(
        stack.starts_with("Error\u{1e}    at f (")
            && stack.len() == crate::edge::report::STACK_MAX_BYTES
    );
    assert_eq!(r.network, sent[0].1.events[0].network);
}
