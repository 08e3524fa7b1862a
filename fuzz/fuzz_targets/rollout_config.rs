//! The rollout config JSON read from KV (`rollout/<bundle>`), through `Rollout::parse`.
//!
//! Properties:
//! - a config that validates round-trips: `parse(to_json(r)) == r`, and serializing again
//!   gives the same text (unknown fields included, so a CLI or admin read-modify-write
//!   loses nothing);
//! - what validates is in range: weight 0..=100, stable and canary are valid version labels
//!   and differ, health and progression values within their documented bounds;
//! - a refused config names a field, and the message shows it;
//! - a valid config routes: every cohort gets the stable or the live canary version, and
//!   the count of canary cohorts is `floor(weight * COHORTS / 100)`.
#![no_main]

use canary_core::config::{kv_key, Rollout, Weight};
use canary_core::edge::decide::{Channel, ClientFacts, Router};
use canary_core::settings::Settings;
use canary_edge_fuzz::{bundle, version_ok};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let r = match Rollout::parse(json) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.field.is_empty(), "error without a field: {e:?}");
            assert!(!e.message.is_empty(), "error without a message: {e:?}");
            assert!(e.to_string().contains(e.field), "{e}");
            return;
        }
    };

    // Validated values are in range.
    assert!(r.weight.percent() <= 100);
    assert!(version_ok(r.stable.as_str()), "{:?}", r.stable);
    if let Some(c) = &r.canary {
        assert!(version_ok(c.as_str()), "{c:?}");
        assert_ne!(c, &r.stable);
    }
    if let Some(h) = &r.health {
        assert!((10..=86_400).contains(&h.window_secs));
        assert!(h.min_clients >= 1);
        assert!(h.min_error_rate > 0.0 && h.min_error_rate < 1.0);
        assert!((0.0..=100.0).contains(&h.max_increase));
        assert!((0.5..1.0).contains(&h.confidence));
        assert!(h.max_hold_secs >= 1);
        assert!((1..=3_600).contains(&h.boot_grace_secs));
        assert!(h.hostile_networks <= 10_000);
    }
    if let Some(p) = &r.progression {
        assert!((1..=20).contains(&p.steps.len()));
        assert!(p.steps.windows(2).all(|w| w[0] < w[1]), "{:?}", p.steps);
        assert!(p.steps[0] > Weight::ZERO);
        assert!((1..=604_800).contains(&p.bake_secs));
    }
    assert_eq!(
        r.live_canary().is_some(),
        r.canary.is_some() && r.weight > Weight::ZERO
    );

    // Round trip.
    let text = r.to_json();
    let again = Rollout::parse(&text)
        .unwrap_or_else(|e| panic!("to_json output refused: {e}\ninput: {json}\noutput: {text}"));
    assert_eq!(
        again, r,
        "round trip changed the config\ninput: {json}\noutput: {text}"
    );
    assert_eq!(again.to_json(), text, "serialization is not stable");

    // It routes.
    let settings = Settings::default();
    let router = Router::new(&settings);
    let b = bundle("demo");
    assert_eq!(kv_key(&b), "rollout/demo");
    let prepared = router.prepare(b, r.clone());
    let n = settings.cohorts;
    let mut canary = 0u16;
    for cohort in 0..n {
        let header = format!(
            "cohort={}",
            router.cookie().value(cohort, u64::from(cohort), 0)
        );
        let facts = ClientFacts {
            cookie_header: Some(&header),
            ..Default::default()
        };
        let d = router.decide(&prepared, &facts, 0, || unreachable!());
        assert_eq!(d.cohort, cohort);
        match d.channel {
            Channel::Stable => assert_eq!(d.version, &r.stable),
            Channel::Canary => {
                assert_eq!(Some(d.version), r.live_canary());
                canary += 1;
            }
        }
    }
    let expected = if r.live_canary().is_some() {
        r.weight.canary_cohorts(n)
    } else {
        0
    };
    assert_eq!(
        canary,
        expected,
        "weight {} with {n} cohorts",
        r.weight.percent()
    );
    assert_eq!(
        r.weight.is_rounded(n),
        u32::from(r.weight.percent()) * u32::from(n) % 100 != 0
    );
});
