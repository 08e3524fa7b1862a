//! The asset path as plans, table by table: routes, config reads, routing, headers,
//! overrides, and the counts a served request leaves behind.

use super::*;
use crate::edge::override_token::OverrideKey;

pub(super) const NOW: f64 = 1_800_000_000_000.0;
pub(super) const CONFIG: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":50}"#;

pub(super) fn edge_with(vars: &[(&str, &str)]) -> Edge {
    let settings = Settings::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    Edge::new(settings)
}

pub(super) fn edge() -> Edge {
    let mut e = edge_with(&[("HEALTH_FLUSH_REQUESTS", "3")]);
    let demo = BundleName::parse("demo").unwrap();
    assert_eq!(
        e.record_config(&demo, KvRead::Value(CONFIG.into()), NOW),
        None
    );
    e
}

pub(super) fn get(url: &str) -> AssetRequest<'_> {
    AssetRequest {
        method: "GET",
        url,
        cookie: None,
        override_token: None,
        client_ip: Some("203.0.113.9"),
        signed_user_key: None,
        referer: None,
        now_ms: NOW,
        config_read: false,
        manifest: None,
    }
}

/// Random bits that differ on every call, across calls of `counter()` too (each new client
/// gets its own id).
pub(super) fn counter() -> impl FnMut() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut n = NEXT.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed);
    move || {
        n += 1;
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

pub(super) fn serve(step: Step) -> AssetPlan {
    match step {
        Step::Serve(plan) => *plan,
        other => panic!("expected a plan, got {other:?}"),
    }
}

/// A plan for a client with the given identity (no cookie).
/// Holds `tally` as the entry module does, serves it as `outcome` at `at`, and takes the
/// batches due then.
pub(super) fn count_served(
    e: &mut Edge,
    tally: &TallyFacts,
    outcome: Served,
    at: f64,
) -> Vec<(BundleName, Batch)> {
    let handle = e.hold(tally.clone(), at);
    e.served(handle, outcome, at);
    e.flush(at)
}

pub(super) fn first_visit(e: &Edge, url: &str, user_key: &str) -> AssetPlan {
    let id = ClientFacts {
        user_key: Some(user_key),
        ..ClientFacts::default()
    };
    serve(e.plan(&get(url), Some(&id), counter()))
}

#[test]
fn every_asset_response_carries_the_static_headers() {
    let h = Edge::static_headers();
    assert_eq!(h.get("access-control-allow-origin"), Some("*"));
    assert_eq!(
        h.get("access-control-expose-headers"),
        Some(EXPOSED_HEADERS)
    );
    assert_eq!(h.get("x-content-type-options"), Some("nosniff"));
    assert_eq!(h.pairs().count(), 3);
}

#[test]
fn routes_and_methods() {
    let e = edge();
    type Expect = fn(&Step) -> bool;
    let cases: &[(&str, &str, Expect)] = &[
        ("GET", "https://x.test/__canary/health", |s| *s == Step::Ops),
        // Reports are the count path's (serve/report.rs), not the operations module's.
        ("POST", "https://x.test/__canary/report", |s| {
            *s == Step::Report
        }),
        ("GET", "https://x.test/__canary/report", |s| {
            *s == Step::Fail(EdgeError::MethodNotAllowed("POST"))
        }),
        ("GET", "https://x.test/", |s| {
            matches!(s, Step::Fail(EdgeError::NotFound(_)))
        }),
        ("GET", "https://x.test/demo/../x.js", |s| {
            matches!(s, Step::Fail(EdgeError::BadRequest(_)))
        }),
        ("POST", "https://x.test/demo/sdk.js", |s| {
            *s == Step::Fail(EdgeError::MethodNotAllowed("GET, HEAD"))
        }),
        ("GET", "https://x.test/other/sdk.js", |s| {
            matches!(s, Step::ReadConfig { bundle, kv_key, .. }
                if bundle.as_str() == "other" && kv_key == "rollout/other")
        }),
        ("GET", "https://x.test/demo/sdk.js", |s| {
            *s == Step::NeedIdentity
        }),
        (
            "HEAD",
            "https://x.test/demo@1.0.0/sdk.js?x=1",
            |s| matches!(s, Step::Serve(p) if p.head && p.tally.is_none()),
        ),
    ];
    for (method, url, ok) in cases {
        let req = AssetRequest { method, ..get(url) };
        let step = e.plan(&req, None, counter());
        assert!(ok(&step), "{method} {url}: {step:?}");
    }
}

#[test]
fn a_request_that_read_the_config_uses_it_even_with_a_ttl_of_0() {
    let mut e = edge_with(&[("CONFIG_TTL_MS", "0")]);
    let demo = BundleName::parse("demo").unwrap();
    let url = "https://x.test/demo@1.0.0/sdk.js";
    assert!(matches!(
        e.plan(&get(url), None, counter()),
        Step::ReadConfig { .. }
    ));
    e.record_config(&demo, KvRead::Value(CONFIG.into()), NOW);
    assert!(
        matches!(e.plan(&get(url), None, counter()), Step::ReadConfig { .. }),
        "stale at once"
    );
    let after_read = AssetRequest {
        config_read: true,
        ..get(url)
    };
    assert!(matches!(
        e.plan(&after_read, None, counter()),
        Step::Serve(_)
    ));
}

#[test]
fn config_reads_and_their_failures() {
    let mut e = edge_with(&[]);
    let other = BundleName::parse("other").unwrap();
    let url = "https://x.test/other@1.0.0/sdk.js";
    assert!(
        matches!(e.plan(&get(url), None, counter()), Step::ReadConfig { timeout_ms, .. } if timeout_ms == e.settings.kv_timeout_ms)
    );
    assert_eq!(e.record_config(&other, KvRead::Missing, NOW), None);
    assert_eq!(
        e.plan(&get(url), None, counter()),
        Step::Fail(EdgeError::NoRollout("other".into()))
    );
    let later = NOW + 60_000.0;
    let req = AssetRequest {
        now_ms: later,
        ..get(url)
    };
    assert!(
        matches!(e.plan(&req, None, counter()), Step::ReadConfig { .. }),
        "the TTL expired"
    );
    e.record_config(&other, KvRead::Value(CONFIG.into()), later);
    assert!(matches!(e.plan(&req, None, counter()), Step::Serve(_)));
    // A failed read keeps the last good config and says so.
    let log = e
        .record_config(&other, KvRead::Failed("timeout".into()), later + 60_000.0)
        .unwrap();
    assert_eq!(log.event, "kv_failed_kept_last_good");
    assert!(
        log.to_json().contains(r#""detail":"timeout""#),
        "{}",
        log.to_json()
    );
    let log = e
        .record_config(&other, KvRead::Value("{".into()), later + 120_000.0)
        .unwrap();
    assert_eq!(log.event, "config_invalid_kept_last_good");
}

#[test]
fn a_first_visit_gets_a_cohort_a_cookie_and_a_tally() {
    let e = edge();
    let mut seen = [false; 2];
    for user in 0..40 {
        let plan = first_visit(&e, "https://x.test/demo/sdk.js", &format!("user-{user}"));
        let cookie = plan
            .headers
            .get("set-cookie")
            .expect("a new client gets a cookie");
        assert!(cookie.starts_with("cohort="), "{cookie}");
        assert!(plan.headers.get("x-cohort").is_some());
        assert_eq!(
            plan.headers.get("cache-control"),
            Some("private, max-age=60")
        );
        assert_eq!(
            plan.headers.get("access-control-expose-headers"),
            None,
            "static"
        );
        assert!(plan.tally.is_some(), "a floating GET is counted");
        assert_eq!(plan.default_content_type, "text/javascript; charset=utf-8");
        match plan.channel {
            Some(Channel::Canary) => {
                seen[1] = true;
                assert_eq!(plan.version.as_str(), "1.1.0");
                assert_eq!(plan.load.object_key, "demo/1.1.0/sdk.js");
                assert_eq!(plan.load.cache_key, "https://x.test/demo@1.1.0/sdk.js");
                assert_eq!(
                    e.stored_cache_control(),
                    "public, max-age=31536000, immutable"
                );
                let (stable, load) = plan.fallback.as_ref().expect("canary falls back");
                assert_eq!(
                    (stable.as_str(), load.object_key.as_str()),
                    ("1.0.0", "demo/1.0.0/sdk.js")
                );
            }
            Some(Channel::Stable) => {
                seen[0] = true;
                assert_eq!(plan.version.as_str(), "1.0.0");
                assert!(plan.fallback.is_none());
            }
            None => panic!("a floating request has a channel"),
        }
    }
    assert_eq!(seen, [true, true], "weight 50 serves both channels");
}

#[test]
fn a_returning_client_is_decided_by_its_cookie_alone() {
    let e = edge();
    let first = first_visit(&e, "https://x.test/demo/sdk.js", "returning");
    let cookie = first
        .headers
        .get("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let req = AssetRequest {
        cookie: Some(&cookie),
        ..get("https://x.test/demo/sdk.js")
    };
    let again = serve(e.plan(&req, None, counter()));
    assert_eq!(again.headers.get("set-cookie"), None);
    assert_eq!(again.headers.get("x-cohort"), first.headers.get("x-cohort"));
    assert_eq!(
        (again.channel, &again.version),
        (first.channel, &first.version)
    );
    assert_eq!(again.tally, first.tally, "the same client, the same counts");
    // A forged cookie does not decide: the identity is asked for.
    let forged = format!("{}0", &cookie[..cookie.len() - 1]);
    let req = AssetRequest {
        cookie: Some(&forged),
        ..get("https://x.test/demo/sdk.js")
    };
    assert!(matches!(e.plan(&req, None, counter()), Step::NeedIdentity) || forged == cookie);
}

#[test]
fn pinned_urls_and_head_requests_are_not_counted() {
    let mut e = edge();
    // 0.9.0, which the config does not name, was published.
    let (demo, old) = (
        BundleName::parse("demo").unwrap(),
        Version::parse("0.9.0").unwrap(),
    );
    let manifest = crate::manifest::Manifest::of(&demo, &old, vec!["sdk.js".into()]);
    e.record_manifest(&demo, &old, KvRead::Value(manifest.to_json()));
    let cases = [
        (
            "GET",
            "https://x.test/demo@1.1.0/sdk.js",
            Some(Channel::Canary),
            "public, max-age=31536000, immutable",
        ),
        (
            "GET",
            "https://x.test/demo@0.9.0/sdk.js",
            None,
            "public, max-age=31536000, immutable",
        ),
        (
            "HEAD",
            "https://x.test/demo@1.0.0/sdk.js",
            Some(Channel::Stable),
            "public, max-age=31536000, immutable",
        ),
    ];
    for (method, url, channel, cache_control) in cases {
        let plan = serve(e.plan(&AssetRequest { method, ..get(url) }, None, counter()));
        assert_eq!(plan.channel, channel, "{url}");
        assert_eq!(plan.headers.get("cache-control"), Some(cache_control));
        assert_eq!(
            (plan.tally, plan.fallback, plan.headers.get("set-cookie")),
            (None, None, None)
        );
    }
    let id = ClientFacts::default();
    let head = serve(e.plan(
        &AssetRequest {
            method: "HEAD",
            ..get("https://x.test/demo/sdk.js")
        },
        Some(&id),
        counter(),
    ));
    assert!(
        head.head && head.tally.is_none(),
        "HEAD is not a script load"
    );
    assert_eq!(
        head.headers.get("set-cookie"),
        None,
        "and mints no client id: ids cannot be stockpiled unseen"
    );
    assert!(head.headers.get("x-cohort").is_some());
}

#[test]
fn a_pinned_version_the_config_does_not_name_must_have_been_published() {
    let mut e = edge_with(&[("OVERRIDE_SECRET", "qa-secret")]);
    let demo = BundleName::parse("demo").unwrap();
    e.record_config(&demo, KvRead::Value(CONFIG.into()), NOW);
    let expires = (NOW / 1000.0) as u64 + 600;
    let token =
        OverrideKey::new(b"qa-secret").issue(&demo, Channel::Canary, expires - 600, expires);
    let forged = OverrideKey::new(b"other").issue(&demo, Channel::Canary, expires - 600, expires);
    // (url, override, its manifest is read first, cache-control)
    let immutable = "public, max-age=31536000, immutable";
    for (url, token, check, cache_control) in [
        ("https://x.test/demo@1.0.0/sdk.js", None, false, immutable),
        ("https://x.test/demo@1.1.0/sdk.js", None, false, immutable),
        ("https://x.test/demo@0.9.0/sdk.js", None, true, immutable),
        (
            "https://x.test/demo@1.2.0/sdk.js",
            Some(forged.as_str()),
            true,
            immutable,
        ),
        // QA of an upload before it is published: never kept by a shared cache.
        (
            "https://x.test/demo@1.2.0/sdk.js",
            Some(token.as_str()),
            false,
            "private, no-store",
        ),
        (
            "https://x.test/demo@1.0.0/sdk.js",
            Some(token.as_str()),
            false,
            immutable,
        ),
        (
            "https://x.test/demo/sdk.js",
            None,
            false,
            "private, max-age=60",
        ),
    ] {
        let req = AssetRequest {
            override_token: token,
            ..get(url)
        };
        let step = e.plan(&req, Some(&ClientFacts::default()), counter());
        if check {
            let Step::ReadManifest { key, .. } = &step else {
                panic!("{url} {token:?}: {step:?}");
            };
            assert!(key.starts_with("demo/.manifests/"), "{key}");
            continue;
        }
        let plan = serve(step);
        assert_eq!(
            plan.headers.get("cache-control"),
            Some(cache_control),
            "{url}"
        );
        assert_eq!(plan.headers.get("x-canary-override"), None, "{url}");
    }

    // What the read found decides: missing is a 404, a failed read a 503 (try again), a
    // manifest of this version serves it, and is kept (no read for the next request).
    let v090 = Version::parse("0.9.0").unwrap();
    let pinned = get("https://x.test/demo@0.9.0/sdk.js");
    let Step::ReadManifest {
        bundle,
        version,
        key,
    } = e.plan(&pinned, None, counter())
    else {
        panic!("the manifest is read first");
    };
    assert_eq!(
        (bundle.as_str(), version.as_str(), key.as_str()),
        ("demo", "0.9.0", "demo/.manifests/0.9.0.json")
    );
    let after = |state: &ManifestState| {
        let req = AssetRequest {
            manifest: Some(state),
            ..pinned
        };
        e.plan(&req, None, counter())
    };
    let Step::Fail(missing) = after(&ManifestState::Missing) else {
        panic!("a version without a manifest is not published");
    };
    assert_eq!(missing.status(), 404);
    assert!(missing
        .public_message()
        .contains("demo@0.9.0 is not a published version"));
    let Step::Fail(unknown) = after(&ManifestState::Failed("R2 timed out".into())) else {
        panic!("an unreadable manifest says nothing");
    };
    assert_eq!(unknown.status(), 503);
    assert!(unknown.log_detail().contains("R2 timed out"));
    let manifest = crate::manifest::Manifest::of(&demo, &v090, vec!["sdk.js".into()]);
    let known = e.record_manifest(&demo, &v090, KvRead::Value(manifest.to_json()));
    assert_eq!(known, ManifestState::Known);
    assert_eq!(
        serve(e.plan(&pinned, None, counter())).version,
        v090,
        "kept: no second read"
    );
}

#[test]
fn a_canary_miss_counts_by_the_canarys_manifest() {
    let mut e = edge();
    let demo = BundleName::parse("demo").unwrap();
    let canary = Version::parse("1.1.0").unwrap();
    let key = "demo/1.1.0/chunks/a.js";
    // An origin failure counts without a manifest read.
    assert_eq!(
        e.canary_miss(&demo, &canary, key, "R2 500", None),
        MissStep::Judged(MissRule {
            counted: true,
            reason: "r2_error",
            detail: Some("R2 500".into())
        })
    );
    // An absent file: the manifest first, then what it said.
    assert_eq!(
        e.canary_miss(&demo, &canary, key, "", None),
        MissStep::ReadManifest {
            key: "demo/.manifests/1.1.0.json".into()
        }
    );
    let judged = |e: &Edge, state: Option<&ManifestState>| match e
        .canary_miss(&demo, &canary, key, "", state)
    {
        MissStep::Judged(rule) => (rule.counted, rule.reason),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        judged(&e, Some(&ManifestState::Missing)),
        (false, "no_manifest")
    );
    assert_eq!(
        judged(&e, Some(&ManifestState::Failed("R2 down".into()))),
        (false, "manifest_read_failed")
    );
    let listed = crate::manifest::Manifest::of(&demo, &canary, vec!["chunks/a.js".into()]);
    let state = e.record_manifest(&demo, &canary, KvRead::Value(listed.to_json()));
    assert_eq!(judged(&e, Some(&state)), (true, "missing_published_file"));
    // Kept: the next miss needs no read; a file the canary never had is not counted.
    assert_eq!(judged(&e, None), (true, "missing_published_file"));
    let MissStep::Judged(other) =
        e.canary_miss(&demo, &canary, "demo/1.1.0/stable-only.js", "", None)
    else {
        panic!("kept manifest");
    };
    assert_eq!((other.counted, other.reason), (false, "not_in_canary"));
}

#[test]
fn the_console_host_serves_no_bundle() {
    let mut e = edge_with(&[("CONSOLE_HOST", "ops.example.com")]);
    let demo = BundleName::parse("demo").unwrap();
    e.record_config(&demo, KvRead::Value(CONFIG.into()), NOW);
    for url in [
        "https://ops.example.com/demo/sdk.js",
        "https://OPS.example.com:8443/demo@1.0.0/sdk.js",
    ] {
        match e.plan(&get(url), Some(&ClientFacts::default()), counter()) {
            Step::Fail(EdgeError::NotFound(m)) => assert!(m.contains("console"), "{m}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    assert_eq!(
        e.plan(
            &get("https://ops.example.com/__canary/ui/"),
            None,
            counter()
        ),
        Step::Ops
    );
    serve(e.plan(
        &get("https://sdk.example.com/demo/sdk.js"),
        Some(&ClientFacts::default()),
        counter(),
    ));
}

#[test]
fn a_counted_load_names_its_keyed_network_and_a_signed_user_key_is_its_own() {
    use crate::edge::user_key::UserKeySigner;
    use crate::health::counts::Signal;
    let mut e = {
        let mut e = edge_with(&[("HEALTH_FLUSH_REQUESTS", "1"), ("USER_KEY_SECRET", "m")]);
        e.record_config(
            &BundleName::parse("demo").unwrap(),
            KvRead::Value(CONFIG.into()),
            NOW,
        );
        e
    };
    let signature = UserKeySigner::new(b"m").sign("alice");
    let forged = UserKeySigner::new(b"x").sign("alice");
    let network = |e: &mut Edge, ip: &str, signed: Option<(&str, &str)>| {
        let req = AssetRequest {
            client_ip: Some(ip),
            signed_user_key: signed,
            ..get("https://x.test/demo/sdk.js")
        };
        let plan = serve(e.plan(&req, Some(&ClientFacts::default()), counter()));
        assert!(
            plan.headers.get("set-cookie").is_some(),
            "a counted load mints"
        );
        let sent = count_served(e, &plan.tally.unwrap(), Served::AsRouted, NOW);
        let events = &sent[0].1.events;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].signal, Signal::Load);
        events[0].network
    };
    let a = network(&mut e, "203.0.113.9", None);
    assert_eq!(
        a,
        network(&mut e, "203.0.113.9", None),
        "one address, one network"
    );
    assert_ne!(a, network(&mut e, "203.0.113.10", None));
    assert_eq!(
        a,
        network(&mut e, "203.0.113.9", Some(("alice", &forged))),
        "an unsigned user key falls under its address's cap"
    );
    let alice = network(&mut e, "203.0.113.9", Some(("alice", &signature)));
    assert_ne!(alice, a, "a signed user key is a client of its own");
    assert_eq!(
        alice,
        network(&mut e, "198.51.100.1", Some(("alice", &signature)))
    );
}

#[test]
fn a_signed_override_picks_the_channel_and_is_not_counted() {
    let e = {
        let mut e = edge_with(&[("OVERRIDE_SECRET", "qa-secret")]);
        e.record_config(
            &BundleName::parse("demo").unwrap(),
            KvRead::Value(CONFIG.into()),
            NOW,
        );
        e
    };
    let key = OverrideKey::new(b"qa-secret");
    let demo = BundleName::parse("demo").unwrap();
    let expires = (NOW / 1000.0) as u64 + 600;
    for channel in [Channel::Canary, Channel::Stable] {
        let token = key.issue(&demo, channel, expires - 600, expires);
        let cookie = format!("canary_override={token}");
        for (header, cookie) in [(Some(token.as_str()), None), (None, Some(cookie.as_str()))] {
            let req = AssetRequest {
                override_token: header,
                cookie,
                ..get("https://x.test/demo/sdk.js")
            };
            let plan = serve(e.plan(&req, Some(&ClientFacts::default()), counter()));
            assert_eq!(plan.channel, Some(channel));
            assert_eq!(
                plan.headers.get("x-canary-override"),
                Some(channel.as_str())
            );
            assert_eq!(plan.headers.get("cache-control"), Some("private, no-store"));
            assert_eq!(plan.tally, None);
        }
    }
    let wrong = OverrideKey::new(b"other").issue(&demo, Channel::Canary, expires - 600, expires);
    let req = AssetRequest {
        override_token: Some(&wrong),
        ..get("https://x.test/demo/sdk.js")
    };
    let plan = serve(e.plan(&req, Some(&ClientFacts::default()), counter()));
    assert_eq!(
        plan.headers.get("x-canary-override"),
        None,
        "a forged token is ignored"
    );
}

#[test]
fn served_requests_become_batches() {
    let mut e = edge();
    let tallies: Vec<TallyFacts> = (0..3)
        .map(|i| {
            let plan = first_visit(&e, "https://x.test/demo/sdk.js", &format!("client-{i}"));
            plan.tally.unwrap()
        })
        .collect();
    assert!(count_served(&mut e, &tallies[0], Served::AsRouted, NOW).is_empty());
    assert!(count_served(&mut e, &tallies[1], Served::AsRouted, NOW).is_empty());
    let sent = count_served(&mut e, &tallies[2], Served::AsRouted, NOW);
    assert_eq!(sent.len(), 1, "HEALTH_FLUSH_REQUESTS=3");
    let (bundle, batch) = &sent[0];
    assert_eq!(bundle.as_str(), "demo");
    let counts = batch.clients.counts();
    assert_eq!(counts.stable.clients + counts.canary.clients, 3);
    assert_eq!(batch.weight, Some(Weight::new(50).unwrap()));
    // A canary client the origin failed: a load and an error of the canary's, sent within
    // a second.
    let canary = (0..50)
        .map(|i| first_visit(&e, "https://x.test/demo/sdk.js", &format!("c-{i}")))
        .find(|p| p.channel == Some(Channel::Canary))
        .and_then(|p| p.tally)
        .unwrap();
    assert!(count_served(&mut e, &canary, Served::CountedFallback, NOW).is_empty());
    let sent = count_served(&mut e, &canary, Served::CountedFallback, NOW + 1_000.0);
    let counts = sent[0].1.clients.counts();
    assert_eq!((counts.canary.clients, counts.canary.errors), (1, 1));
    // A file the canary never had (a plain fallback) counts nothing, not even a load: a
    // client asking for it cannot make the canary look broken. Nor does a file no version
    // has.
    let other = (0..50)
        .map(|i| first_visit(&e, "https://x.test/demo/sdk.js", &format!("p-{i}")))
        .filter(|p| p.channel == Some(Channel::Canary))
        .filter_map(|p| p.tally)
        .find(|t| t != &canary)
        .unwrap();
    for i in 0..5 {
        let at = NOW + 2_000.0 + f64::from(i) * 1_000.0;
        let outcome = [Served::PlainFallback, Served::NotServed][i as usize % 2];
        let handle = e.hold(other.clone(), at);
        e.served(handle, outcome, at);
    }
    // The next batch (due by time) holds only the canary client's own signals (its second
    // fallback's failure, its load): nothing of the plain fallbacks' client.
    let sent = count_served(&mut e, &canary, Served::AsRouted, NOW + 60_000.0);
    let counts = sent[0].1.clients.counts();
    assert_eq!(counts.canary.clients, 1, "{counts:?}");
    assert!(sent[0].1.events.iter().all(|ev| ev.client == canary.client));
}

#[test]
fn a_held_tally_counts_once_and_only_for_its_handle() {
    let mut e = edge();
    let tally = first_visit(&e, "https://x.test/demo/sdk.js", "client-0")
        .tally
        .unwrap();
    let handle = e.hold(tally, NOW);
    // Handles are ours: one never issued counts nothing, and nothing falls due.
    for bad in [handle + 1, handle + 1_000, u64::MAX] {
        assert_eq!(e.served(bad, Served::CountedFallback, NOW), None, "{bad}");
    }
    let due = e.served(handle, Served::AsRouted, NOW).unwrap();
    assert!(
        due > NOW && due <= NOW + 1_000.0,
        "a live canary's load: within a second"
    );
    // Given back twice (a bug in the entry): counted once.
    assert_eq!(e.served(handle, Served::CountedFallback, NOW), Some(due));
    let sent = e.flush(due);
    let counts = sent[0].1.clients.counts();
    let total = counts.stable.clients + counts.canary.clients;
    let errors = counts.stable.errors + counts.canary.errors;
    assert_eq!((total, errors), (1, 0));
    assert!(e.flush(due + 60_000.0).is_empty());
}

#[test]
fn misses() {
    assert_eq!(
        Edge::miss_error("demo/1.0.0/x.js", Miss::Absent).status(),
        404
    );
    let e = Edge::miss_error("demo/1.0.0/x.js", Miss::Failed("r2 down".into()));
    assert_eq!(e.status(), 502);
    assert!(e.log_detail().contains("r2 down") && !e.public_message().contains("r2 down"));
}

#[test]
fn the_operations_module_reads_and_forgets_configs_through_the_same_cache() {
    let mut e = edge();
    let demo = BundleName::parse("demo").unwrap();
    let ttl = e.settings.config_ttl_ms as f64;
    let fresh = e.config(&demo, NOW + 1.0).unwrap().unwrap();
    assert_eq!(fresh.rollout.weight.percent(), 50);
    assert!(e.config(&demo, NOW + ttl).is_none(), "expired at the TTL");
    assert!(e
        .config(&BundleName::parse("other").unwrap(), NOW)
        .is_none());
    // A read returns what it leaves, with the log line `record_config` would give.
    let newer = r#"{"stable":"1.0.0","canary":"1.1.0","weight":60}"#;
    let (answer, log) = e.read_config(&demo, KvRead::Value(newer.into()), NOW + ttl);
    assert_eq!((answer.unwrap().rollout.weight.percent(), log), (60, None));
    // An older read answering late gets the newer config.
    let (answer, log) = e.read_config(&demo, KvRead::Value(CONFIG.into()), NOW);
    assert_eq!((answer.unwrap().rollout.weight.percent(), log), (60, None));
    // After an operator's write the copy is forgotten (the next request, the asset
    // path's too, reads KV), but the last good config still covers KV's faults.
    e.forget_config(&demo);
    assert!(e.config(&demo, NOW + ttl + 1.0).is_none());
    assert!(matches!(
        e.plan(&get("https://x.test/demo/sdk.js"), None, counter()),
        Step::ReadConfig { .. }
    ));
    let (answer, log) = e.read_config(&demo, KvRead::Failed("down".into()), NOW + ttl + 2.0);
    assert_eq!(answer.unwrap().rollout.weight.percent(), 60);
    assert_eq!(log.unwrap().event, "kv_failed_kept_last_good");
    assert!(e.config(&demo, NOW + ttl + 3.0).is_some());
}

#[test]
fn an_override_holder_is_found_as_the_asset_path_finds_it() {
    let demo = BundleName::parse("demo").unwrap();
    let plain = edge();
    let prepared = plain.config(&demo, NOW).unwrap().unwrap();
    let key = OverrideKey::new(b"qa-secret");
    let expires = (NOW / 1000.0) as u64 + 600;
    let token = key.issue(&demo, Channel::Canary, expires - 600, expires);
    assert!(plain.override_key().is_none());
    assert_eq!(
        plain.override_holder(&prepared, Some(&token), None, NOW),
        None,
        "overrides off"
    );
    let mut e = edge_with(&[("OVERRIDE_SECRET", "qa-secret")]);
    e.record_config(&demo, KvRead::Value(CONFIG.into()), NOW);
    let issued = e
        .override_key()
        .unwrap()
        .issue(&demo, Channel::Stable, expires - 600, expires);
    let holder = |header, cookie| e.override_holder(&prepared, header, cookie, NOW);
    let id = OverrideKey::holder_id(&token);
    assert_eq!(holder(Some(&token), None), Some((Channel::Canary, id)));
    let cookie = format!("a=b; canary_override={token}");
    assert_eq!(holder(None, Some(&cookie)), Some((Channel::Canary, id)));
    // The header's token first, as for an asset request.
    assert_eq!(
        holder(Some(&issued), Some(&cookie)),
        Some((Channel::Stable, OverrideKey::holder_id(&issued)))
    );
    let forged = OverrideKey::new(b"other").issue(&demo, Channel::Canary, expires - 600, expires);
    assert_eq!(holder(Some(&forged), None), None);
    assert_eq!(
        holder(Some(&forged), Some(&cookie)),
        Some((Channel::Canary, id)),
        "a forged header does not hide a valid cookie"
    );
    let other = BundleName::parse("other").unwrap();
    let elsewhere = key.issue(&other, Channel::Canary, expires - 600, expires);
    assert_eq!(holder(Some(&elsewhere), None), None, "another bundle's");
    let late = NOW + 601_000.0;
    assert_eq!(
        e.override_holder(&prepared, Some(&token), None, late),
        None,
        "expired"
    );
}

#[test]
fn limit_keys_are_keyed_networks_ipv4_addresses_and_ipv6_slash_48s() {
    let e = edge();
    let key = |ip: &str| e.network_limit_key(Some(ip));
    for (a, b, same) in [
        ("2001:db8:1:aaaa::1", "2001:db8:1:bbbb::2", true),
        ("2001:db8:1::1", "2001:db8:2::1", false),
        ("203.0.113.1", "203.0.113.1", true),
        ("203.0.113.1", "203.0.113.2", false),
    ] {
        assert_eq!(key(a) == key(b), same, "{a} {b}");
    }
    assert!(key("203.0.113.1").starts_with("net:"));
    assert!(!key("203.0.113.1").contains("203.0"), "no address leaves");
    assert_eq!(e.network_limit_key(None), key(""));
}

#[test]
fn a_pushed_config_is_served_and_ends_the_revision_checks() {
    let mut e = edge();
    let demo = BundleName::parse("demo").unwrap();
    let url = "https://x.test/demo/sdk.js";
    let plan = first_visit(&e, url, "pushed");
    assert!(plan.serving_canary, "weight 50 serves a canary: checks on");
    // The control plane's cut, pushed at revision 3: served at once, before the TTL ends.
    let cut = r#"{"stable":"1.0.0","canary":"1.1.0","weight":0,"revision":3}"#;
    assert!(e.pushed_config(&demo, 3, cut, NOW));
    let plan = first_visit(&e, url, "pushed");
    assert_eq!(
        (plan.version.as_str(), plan.serving_canary),
        ("1.0.0", false),
        "no canary served, no more checks"
    );
    // An older push (or KV lagging with an older revision) does not bring it back.
    let older = r#"{"stable":"1.0.0","canary":"1.1.0","weight":100,"revision":2}"#;
    assert!(!e.pushed_config(&demo, 2, older, NOW));
    let ttl = e.settings.config_ttl_ms as f64;
    assert_eq!(
        e.record_config(&demo, KvRead::Value(older.into()), NOW + ttl + 3.0),
        None
    );
    let id = ClientFacts {
        user_key: Some("pushed"),
        ..ClientFacts::default()
    };
    let later = AssetRequest {
        now_ms: NOW + ttl + 4.0,
        ..get(url)
    };
    let plan = serve(e.plan(&later, Some(&id), counter()));
    assert_eq!(
        (plan.version.as_str(), plan.serving_canary),
        ("1.0.0", false)
    );
    // A text that does not parse is not taken.
    assert!(!e.pushed_config(&demo, 4, "{", NOW + ttl + 5.0));
    let plan = serve(e.plan(&later, Some(&id), counter()));
    assert_eq!(plan.version.as_str(), "1.0.0");
}
