//! Criterion benchmarks of the routing core, natively, through the public API only.
//!
//! `cargo bench --bench routing` (about 2 s per benchmark); add `-- --quick` for a short,
//! noisier run (CI). `bench/run` turns the results into the table in BENCHMARKS.md.
//!
//! The bench profile inherits `[profile.release]` (opt-level "s", LTO): the same code
//! generation settings the wasm build uses, though on a native CPU.

use std::hint::black_box;
use std::time::Duration;

use canary_core::config::{BundleName, Rollout};
use canary_core::edge::decide::{ClientFacts, PreparedRollout, Router};
use canary_core::edge::route::{self, Route};
use canary_core::edge::serve::{AssetRequest, Edge, Served, Step};
use canary_core::kv::KvRead;
use canary_core::settings::Settings;
use criterion::{criterion_group, criterion_main, Criterion};

const CHROME_JA4: &str = "t13d1516h2_8daaf6152771_02713d6af862";
const IPV4: &str = "203.0.113.77";
const IPV6: &str = "2001:db8:4a2f:17:8d1c:2e4:91aa:3b07";
const FLOATING: &str = "/demo/sdk.js";
/// The benchmarks' clock, in seconds: `plan_benches`' `now` (milliseconds) / 1000.
const NOW_SECS: u64 = 1_800_000_000;

fn setup() -> (Router, PreparedRollout, String) {
    let settings = Settings {
        cohorts: 10,
        salt: "bench-salt".into(),
        cookie_secret: Some("bench-cookie-secret".into()),
        ..Settings::default()
    };
    let router = Router::new(&settings);
    let rollout = Rollout::parse(r#"{"stable":"1.4.2","canary":"1.5.0","weight":30}"#).unwrap();
    let prepared = router.prepare(BundleName::parse("demo").unwrap(), rollout);
    // A browser's Cookie header: the cohort cookie among a few others, as on a merchant page.
    let cookie = format!(
        "_ga=GA1.1.1234567890.1700000000; theme=dark; cohort={}; _fbp=fb.1.1700000000.42",
        router.cookie().value(7, 0x5eed_1234_abcd_0042, NOW_SECS)
    );
    (router, prepared, cookie)
}

/// What the worker does per floating request besides I/O: parse the path, decide, build the
/// cache key (pinned URL) and the cohort header value.
fn full_request(
    router: &Router,
    prepared: &PreparedRollout,
    path: &str,
    facts: &ClientFacts<'_>,
    random: u64,
) -> (String, String, Option<String>) {
    let Ok(Route::Asset(asset)) = route::parse(path) else {
        unreachable!()
    };
    let d = router.decide(prepared, facts, NOW_SECS, || random);
    let cache_key = asset.pinned_path(d.version);
    (cache_key, d.cohort.to_string(), d.set_cookie)
}

fn benches(c: &mut Criterion) {
    let (router, prepared, cookie) = setup();
    let returning = ClientFacts {
        cookie_header: Some(&cookie),
        ja4: Some(CHROME_JA4),
        client_ip: Some(IPV4),
        ..Default::default()
    };
    let first_fp4 = ClientFacts {
        ja4: Some(CHROME_JA4),
        client_ip: Some(IPV4),
        ..Default::default()
    };
    let first_fp6 = ClientFacts {
        ja4: Some(CHROME_JA4),
        client_ip: Some(IPV6),
        ..Default::default()
    };
    let first_user = ClientFacts {
        user_key: Some("merchant-42:customer-9f8e7d"),
        ..Default::default()
    };
    let anonymous = ClientFacts::default();

    let mut g = c.benchmark_group("cohort");
    g.bench_function("cookie_read", |b| {
        b.iter(|| router.cookie().read(black_box(&cookie), NOW_SECS))
    });
    // The previous format (`<n>.<tag>`, no client id): a per-cohort table look-up. Side by
    // side with `cookie_read` (the current format: one HMAC-SHA256 per request, since the
    // tag covers the client id), it is the cost of counting distinct clients.
    let legacy = cookie.replace(
        &router.cookie().value(7, 0x5eed_1234_abcd_0042, NOW_SECS),
        &router.cookie().legacy_value(7),
    );
    g.bench_function("cookie_read_previous_format", |b| {
        b.iter(|| router.cookie().read(black_box(&legacy), NOW_SECS))
    });
    // A current-format cookie this isolate has not verified yet (a client's first request
    // here): the HMAC runs. 4096 clients over the 2048-slot cache, so every read misses.
    let first_sight: Vec<String> = (0..4096u64)
        .map(|id| {
            format!(
                "theme=dark; cohort={}",
                router.cookie().value(7, id, NOW_SECS)
            )
        })
        .collect();
    g.bench_function("cookie_read_first_sight", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % first_sight.len();
            router.cookie().read(black_box(&first_sight[i]), NOW_SECS)
        })
    });
    g.bench_function("user_key", |b| {
        b.iter(|| router.cohort(black_box(&first_user), NOW_SECS, || 0))
    });
    g.bench_function("fingerprint_ipv4", |b| {
        b.iter(|| router.cohort(black_box(&first_fp4), NOW_SECS, || 0))
    });
    g.bench_function("fingerprint_ipv6", |b| {
        b.iter(|| router.cohort(black_box(&first_fp6), NOW_SECS, || 0))
    });
    g.bench_function("set_cookie", |b| {
        b.iter(|| {
            router
                .cookie()
                .set_cookie(black_box(3), black_box(0x5eed), NOW_SECS)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("route");
    g.bench_function("parse_floating", |b| {
        b.iter(|| route::parse(black_box(FLOATING)))
    });
    g.bench_function("parse_pinned", |b| {
        b.iter(|| route::parse(black_box("/demo@1.5.0/chunks/checkout.js")))
    });
    let Ok(Route::Asset(asset)) = route::parse(FLOATING) else {
        unreachable!()
    };
    g.bench_function("cache_key", |b| {
        b.iter(|| black_box(&asset).pinned_path(&prepared.rollout.stable))
    });
    g.finish();

    let mut g = c.benchmark_group("decide");
    g.bench_function("returning_cookie", |b| {
        b.iter(|| router.decide(&prepared, black_box(&returning), NOW_SECS, || 0))
    });
    g.bench_function("first_visit_fingerprint", |b| {
        b.iter(|| router.decide(&prepared, black_box(&first_fp4), NOW_SECS, || 0))
    });
    g.bench_function("first_visit_random", |b| {
        let mut x = 0u64;
        b.iter(|| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            router.decide(&prepared, black_box(&anonymous), NOW_SECS, || x)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("request");
    g.bench_function("hot_path_cookie", |b| {
        b.iter(|| {
            full_request(
                &router,
                &prepared,
                black_box(FLOATING),
                black_box(&returning),
                0,
            )
        })
    });
    g.bench_function("first_visit_fingerprint", |b| {
        b.iter(|| {
            full_request(
                &router,
                &prepared,
                black_box(FLOATING),
                black_box(&first_fp6),
                0,
            )
        })
    });
    g.bench_function("first_visit_user_key", |b| {
        b.iter(|| {
            full_request(
                &router,
                &prepared,
                black_box(FLOATING),
                black_box(&first_user),
                0,
            )
        })
    });
    g.finish();
}

/// The worker's whole synchronous part of an asset request, as the routing wasm runs it:
/// `Edge::plan` (path, config look-up, cookie, decision, override check, cache keys,
/// headers, tally token) and `Edge::served` (the health counts).
fn plan_benches(c: &mut Criterion) {
    let (router, _, cookie) = setup();
    let settings = Settings {
        cohorts: 10,
        salt: "bench-salt".into(),
        cookie_secret: Some("bench-cookie-secret".into()),
        ..Settings::default()
    };
    let mut edge = Edge::new(settings);
    let now = 1_800_000_000_000.0;
    let demo = BundleName::parse("demo").unwrap();
    let config = r#"{"stable":"1.4.2","canary":"1.5.0","weight":30}"#;
    edge.record_config(&demo, KvRead::Value(config.into()), now);
    // The same cookie the edge would verify (the router above shares the secret).
    let cookie = cookie.replace(
        &router.cookie().value(7, 0x5eed_1234_abcd_0042, NOW_SECS),
        &edge
            .router
            .cookie()
            .value(7, 0x5eed_1234_abcd_0042, NOW_SECS),
    );
    let request = |cookie| AssetRequest {
        method: "GET",
        url: "https://sdk.example.com/demo/sdk.js",
        cookie,
        override_token: None,
        client_ip: Some("203.0.113.7"),
        signed_user_key: None,
        referer: None,
        now_ms: now,
        config_read: false,
        manifest: None,
    };
    let returning = request(Some(cookie.as_str()));
    let first = request(None);
    let identity = ClientFacts {
        ja4: Some(CHROME_JA4),
        client_ip: Some(IPV6),
        ..ClientFacts::default()
    };
    let token = match edge.plan(&returning, None, || 0) {
        Step::Serve(plan) => plan.tally.clone().expect("a floating GET is counted"),
        other => panic!("{other:?}"),
    };

    let mut g = c.benchmark_group("plan");
    g.bench_function("returning_cookie", |b| {
        b.iter(|| edge.plan(black_box(&returning), None, || 0))
    });
    g.bench_function("first_visit_fingerprint", |b| {
        let mut x = 0u64;
        b.iter(|| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            edge.plan(black_box(&first), Some(black_box(&identity)), || x)
        })
    });
    // Held at the plan, given back when served: the round trip of a counted request's tally.
    g.bench_function("served", |b| {
        b.iter(|| {
            let handle = edge.hold(black_box(token.clone()), now);
            edge.served(handle, Served::AsRouted, now)
        })
    });
    // A first visit counted as the edge counts it: a new client's load each time, and the
    // timer's flush of the batch once a second's worth (~6,000 here) has gathered.
    g.bench_function("first_visit_counted", |b| {
        let mut x = 0u64;
        let mut n = 0u32;
        b.iter(|| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let Step::Serve(plan) = edge.plan(black_box(&first), Some(black_box(&identity)), || x)
            else {
                unreachable!("a first visit is served")
            };
            let handle = edge.hold(plan.tally.expect("counted"), now);
            edge.served(handle, Served::AsRouted, now);
            n += 1;
            if n.is_multiple_of(6_000) {
                black_box(edge.flush(now + 60_000.0 * f64::from(n / 6_000)));
            }
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .without_plots()
}

criterion_group! {
    name = plan;
    config = config();
    targets = plan_benches
}

criterion_group! {
    name = routing;
    config = config();
    targets = benches
}
criterion_main!(routing, plan);
