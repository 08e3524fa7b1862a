//! The client's identity inputs: cookie header, user key (`X-User-Key`), JA4 / JA3
//! fingerprint and client IP, under fuzzed deployment vars (`COHORTS`, `COHORT_SALT`,
//! `COHORT_SECRET`), through `Router::cohort` and `Router::decide`. Input: one
//! `name: value` per line (see `Input::parse`), so seeds are readable requests.
//!
//! Properties:
//! - settings built from a `COHORTS` in 1..=1000 are accepted; an empty salt is refused
//!   naming `COHORT_SALT`;
//! - the cohort is always in `[0, COHORTS)`, whatever the source;
//! - the source follows the spec's order (valid cookie, usable user key, JA4 else JA3,
//!   random), randomness is drawn only when no identity is usable, and the cohort equals the
//!   hash of the trimmed identity (surrounding whitespace never changes a cohort);
//! - deterministic: the same inputs on a fresh router (another isolate) give the same cohort;
//! - `decide` serves the stable or the live canary version only; `Set-Cookie` is sent exactly
//!   when the cohort did not come from a valid cookie, and that cookie brings the client back
//!   to the same cohort and channel (stickiness);
//! - within one canary version, raising the weight never moves a client from canary to
//!   stable; weight 0 is everyone stable, 100 everyone canary; exactly
//!   `floor(weight * COHORTS / 100)` cohorts are canary.
#![no_main]

use std::cell::Cell;

use canary_core::edge::cohort::{network_of, CohortSource, MAX_IDENTITY_LEN};
use canary_core::config::{Rollout, Version, Weight};
use canary_core::edge::decide::{Channel, ClientFacts, Router};
use canary_core::settings::{Settings, SECRET_COOKIE_KEY, VAR_COHORTS, VAR_SALT};
use canary_edge_fuzz::{bundle, Fields};
use libfuzzer_sys::fuzz_target;

/// The request's clock, in seconds (cookies are issued and checked at it).
const NOW: u64 = 1_800_000_000;

struct Input<'a> {
    cohorts: u16,
    salt: Option<&'a str>,
    secret: Option<&'a str>,
    cookie_header: Option<&'a str>,
    /// Append a valid cookie for this cohort to the header.
    mint: Option<u16>,
    user_key: Option<&'a str>,
    ja4: Option<&'a str>,
    ja3_hash: Option<&'a str>,
    client_ip: Option<&'a str>,
    random: u64,
    canary: bool,
    weight_a: u8,
    weight_b: u8,
    cohort_offset: Option<u32>,
}

impl<'a> Input<'a> {
    /// Lines `cohorts:`, `salt:`, `secret:`, `cookie:`, `mint:`, `x-user-key:`, `ja4:`,
    /// `ja3:`, `ip:`, `random:`, `canary:` (any value: a canary runs), `weights: <a> <b>`,
    /// `offset:`; see `Fields`.
    fn parse(data: &'a [u8]) -> Self {
        let f = Fields::parse(data);
        let mut weights = f
            .text("weights")
            .unwrap_or("")
            .split(' ')
            .map(|w| w.parse::<u8>().unwrap_or(0));
        Input {
            cohorts: f.number("cohorts").unwrap_or(10),
            salt: f.text("salt"),
            secret: f.text("secret"),
            cookie_header: f.text("cookie"),
            mint: f.number("mint"),
            user_key: f.text("x-user-key"),
            ja4: f.text("ja4"),
            ja3_hash: f.text("ja3"),
            client_ip: f.text("ip"),
            random: f.number("random").unwrap_or(0),
            canary: f.bytes("canary").is_some(),
            weight_a: weights.next().unwrap_or(0),
            weight_b: weights.next().unwrap_or(0),
            cohort_offset: f.number("offset"),
        }
    }
}

/// What the spec calls a usable identity: trimmed, non-empty, at most 256 bytes, no control
/// characters.
fn usable(raw: Option<&str>) -> Option<&str> {
    let s = raw?.trim();
    (!s.is_empty() && s.len() <= MAX_IDENTITY_LEN && !s.chars().any(char::is_control)).then_some(s)
}

fn rollout(canary: bool, weight: u8, offset: Option<u32>) -> Rollout {
    let mut json = serde_json::json!({ "stable": "1.4.2", "weight": weight });
    if canary {
        json["canary"] = "1.5.0".into();
    }
    if let Some(o) = offset {
        json["cohort_offset"] = o.into();
    }
    Rollout::from_value(json).expect("valid rollout")
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let n = 1 + (input.cohorts.max(1) - 1) % 1000;
    let lookup = |k: &str| -> Option<String> {
        match k {
            VAR_COHORTS => Some(format!(" {n}")),
            VAR_SALT => input.salt.map(str::to_owned),
            SECRET_COOKIE_KEY => input.secret.map(str::to_owned),
            _ => None,
        }
    };
    let settings = match Settings::from_lookup(lookup) {
        Ok(s) => s,
        Err(e) => {
            assert_eq!(input.salt, Some(""), "settings refused: {e}");
            assert_eq!(e.var, VAR_SALT);
            return;
        }
    };
    assert_eq!(settings.cohorts, n);
    let router = Router::new(&settings);
    assert_eq!(router.bucketer().cohorts(), n);

    let minted;
    let cookie_header = match input.mint {
        Some(m) => {
            minted = format!(
                "{}; {}={}",
                input.cookie_header.unwrap_or(""),
                settings.cookie_name,
                router.cookie().value(m % n, u64::from(m), NOW)
            );
            Some(minted.as_str())
        }
        None => input.cookie_header,
    };
    let facts = ClientFacts {
        cookie_header,
        user_key: input.user_key,
        ja4: input.ja4,
        ja3_hash: input.ja3_hash,
        client_ip: input.client_ip,
    };

    let drawn = Cell::new(false);
    let (cohort, source) = router.cohort(&facts, NOW, || {
        drawn.set(true);
        input.random
    });
    assert!(cohort < n, "cohort {cohort} of {n} from {facts:?}");
    assert_eq!(drawn.get(), source == CohortSource::Random, "{source:?}");

    // Spec order and the hash of the trimmed identity.
    let from_cookie = cookie_header.and_then(|h| router.cookie().read(h, NOW));
    let b = router.bucketer();
    match source {
        CohortSource::Cookie => assert_eq!(Some(cohort), from_cookie),
        CohortSource::UserKey => {
            assert_eq!(from_cookie, None);
            let key = usable(input.user_key).expect("user key source without a usable key");
            assert_eq!(cohort, b.from_user_key(key));
            let padded = format!(" \t{key} ");
            let facts = ClientFacts {
                user_key: Some(&padded),
                ..facts
            };
            let (c, s) = router.cohort(&facts, NOW, || unreachable!("random drawn for a user key"));
            assert_eq!((c, s), (cohort, source), "padding changed the cohort");
        }
        CohortSource::Fingerprint => {
            assert_eq!(from_cookie, None);
            assert_eq!(usable(input.user_key), None);
            let fp = usable(input.ja4)
                .or_else(|| usable(input.ja3_hash))
                .expect("fingerprint source without a usable fingerprint");
            assert_eq!(cohort, b.from_fingerprint(fp, usable(input.client_ip)));
        }
        CohortSource::Random => {
            assert_eq!(from_cookie, None);
            assert_eq!(usable(input.user_key), None);
            assert_eq!(usable(input.ja4), None);
            assert_eq!(usable(input.ja3_hash), None);
            assert_eq!(cohort, b.scale(input.random));
        }
    }
    if let Some(m) = input.mint {
        assert!(source == CohortSource::Cookie, "minted cookie {m} ignored");
    }

    // Another isolate with the same vars agrees.
    let again = Router::new(&Settings::from_lookup(lookup).unwrap());
    assert_eq!(again.cohort(&facts, NOW, || input.random), (cohort, source));

    // Raw hashing entry points stay in range for any text.
    for text in [input.user_key, input.ja4, input.ja3_hash, input.client_ip]
        .into_iter()
        .flatten()
    {
        assert!(b.from_user_key(text) < n);
        assert!(b.from_fingerprint(text, input.client_ip) < n);
        let _ = network_of(text);
    }

    // The routing decision.
    let (w1, w2) = {
        let (a, c) = (input.weight_a % 101, input.weight_b % 101);
        (a.min(c), a.max(c))
    };
    let low = router.prepare(
        bundle("demo"),
        rollout(input.canary, w1, input.cohort_offset),
    );
    let high = router.prepare(
        bundle("demo"),
        rollout(input.canary, w2, input.cohort_offset),
    );
    assert!(low.rotation < n && high.rotation == low.rotation);
    let d_low = router.decide(&low, &facts, NOW, || input.random);
    let d_high = router.decide(&high, &facts, NOW, || input.random);
    for (d, w) in [(&d_low, w1), (&d_high, w2)] {
        assert_eq!((d.cohort, d.source), (cohort, source));
        match d.channel {
            Channel::Stable => assert_eq!(d.version.as_str(), "1.4.2"),
            Channel::Canary => {
                assert!(input.canary && w > 0, "canary at weight {w}");
                assert_eq!(d.version.as_str(), "1.5.0");
            }
        }
        if input.canary && w == 100 {
            assert_eq!(d.channel, Channel::Canary, "weight 100 must be all canary");
        }
        if w == 0 {
            assert_eq!(
                d.channel,
                Channel::Stable,
                "weight 0 must be a full rollback"
            );
        }
        // A cookie is set exactly when the cohort did not come from a current-format cookie
        // (a previous-format one is upgraded), and it carries the client id.
        let upgraded = source == CohortSource::Cookie
            && cookie_header
                .and_then(|h| router.cookie().read_client(h, NOW))
                .is_some_and(|v| v.client.is_none());
        assert_eq!(
            d.set_cookie.is_some(),
            source != CohortSource::Cookie || upgraded
        );
        if let Some(set) = &d.set_cookie {
            assert!(set.contains(&format!("{:016x}", d.client)), "{set}");
        }
    }
    assert!(
        !(d_low.channel == Channel::Canary && d_high.channel == Channel::Stable),
        "cohort {cohort} left the canary when the weight rose {w1} -> {w2}"
    );

    // The cookie set now brings the client back to the same cohort and channel.
    if let Some(set) = &d_high.set_cookie {
        let pair = set.split(';').next().unwrap();
        let back = ClientFacts {
            cookie_header: Some(pair),
            ..facts
        };
        let d = router.decide(&high, &back, NOW, || {
            unreachable!("random drawn with a valid cookie")
        });
        assert_eq!(
            (d.cohort, d.source, d.channel, d.client),
            (cohort, CohortSource::Cookie, d_high.channel, d_high.client)
        );
        assert_eq!(
            d.set_cookie, None,
            "the cookie set is current: not set again"
        );
    }

    // Exactly floor(w * n / 100) canary cohorts, for the fuzzed weight and rotation.
    if input.canary {
        let w = Weight::new(u64::from(w2)).unwrap();
        let on = (0..n).filter(|&c| b.is_canary(c, w, high.rotation)).count();
        assert_eq!(on, usize::from(w2) * usize::from(n) / 100, "w={w2} n={n}");
        let v = Version::parse("1.5.0").unwrap();
        assert!(b.rotation("demo", &v, input.cohort_offset) < n);
    }
});
