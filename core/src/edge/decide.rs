//! The routing decision: which cohort a client is in, which version it gets, and why.
//!
//! `Router` is built once per isolate from the settings; `Router::decide` is a pure function
//! of the request facts, the rollout and a source of randomness, so it is tested natively
//! and benchmarked without a runtime.

use crate::config::{BundleName, Rollout, Version};
use crate::edge::cohort::{Bucketer, CohortSource, MAX_IDENTITY_LEN};
use crate::edge::cookie::CohortCookie;
use crate::settings::Settings;

/// What the decision needs to know about a request; all of it untrusted.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientFacts<'a> {
    pub cookie_header: Option<&'a str>,
    pub user_key: Option<&'a str>,
    pub ja4: Option<&'a str>,
    pub ja3_hash: Option<&'a str>,
    pub client_ip: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Stable,
    Canary,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Canary => "canary",
        }
    }
}

/// A rollout ready for routing: the config plus what can be computed once per config load.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRollout {
    pub bundle: BundleName,
    pub rollout: Rollout,
    /// First canary cohort of the current canary version.
    pub rotation: u16,
}

impl PreparedRollout {
    /// The version a pinned URL names, classified: `Some(channel)` when it is the live
    /// stable or canary, `None` for any other (older, or not yet live) version.
    pub fn channel_of(&self, version: &Version) -> Option<Channel> {
        if *version == self.rollout.stable {
            Some(Channel::Stable)
        } else if self.rollout.canary.as_ref() == Some(version) {
            Some(Channel::Canary)
        } else {
            None
        }
    }
}

/// The outcome of routing one floating request; explains itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'r> {
    pub cohort: u16,
    pub source: CohortSource,
    pub channel: Channel,
    pub version: &'r Version,
    /// The client's id: from its cookie, or issued now.
    pub client: u64,
    /// `Set-Cookie` value when the cohort did not come from a valid cookie of the current
    /// format (a new client, or one whose previous-format cookie is upgraded in place).
    /// It is issued at the request's time: it stops verifying `Max-Age` later.
    pub set_cookie: Option<String>,
}

/// Per-isolate routing state.
#[derive(Debug, Clone)]
pub struct Router {
    bucketer: Bucketer,
    cookie: CohortCookie,
}

impl Router {
    pub fn new(settings: &Settings) -> Self {
        let secret = settings.cookie_secret.as_deref().unwrap_or(&settings.salt);
        Self {
            bucketer: Bucketer::new(&settings.salt, settings.cohorts),
            cookie: CohortCookie::new(
                &settings.cookie_name,
                secret.as_bytes(),
                settings.cohorts,
                i64::from(settings.cookie_max_age),
            ),
        }
    }

    pub fn bucketer(&self) -> &Bucketer {
        &self.bucketer
    }

    pub fn cookie(&self) -> &CohortCookie {
        &self.cookie
    }

    pub fn prepare(&self, bundle: BundleName, rollout: Rollout) -> PreparedRollout {
        let rotation = match &rollout.canary {
            Some(canary) => self
                .bucketer
                .rotation(bundle.as_str(), canary, rollout.cohort_offset),
            None => 0,
        };
        PreparedRollout {
            bundle,
            rollout,
            rotation,
        }
    }

    /// The client's cohort, from the first valid identity: cookie (checked at `now_secs`,
    /// seconds since the Unix epoch), user key, TLS fingerprint (JA4, else JA3), else
    /// `random()`.
    pub fn cohort(
        &self,
        facts: &ClientFacts<'_>,
        now_secs: u64,
        random: impl FnOnce() -> u64,
    ) -> (u16, CohortSource) {
        if let Some(c) = facts
            .cookie_header
            .and_then(|h| self.cookie.read(h, now_secs))
        {
            return (c, CohortSource::Cookie);
        }
        if let Some(key) = facts.user_key.and_then(identity) {
            return (self.bucketer.from_user_key(key), CohortSource::UserKey);
        }
        let fingerprint = facts
            .ja4
            .and_then(identity)
            .or_else(|| facts.ja3_hash.and_then(identity));
        if let Some(fp) = fingerprint {
            let ip = facts.client_ip.and_then(identity);
            return (
                self.bucketer.from_fingerprint(fp, ip),
                CohortSource::Fingerprint,
            );
        }
        (self.bucketer.scale(random()), CohortSource::Random)
    }

    /// Routes a floating-URL request at `now_secs` (seconds since the Unix epoch: the
    /// cookie's expiry, and the issue time of a new one). `random` supplies 64 random bits:
    /// a new client's id, and its cohort when it has no identity at all.
    pub fn decide<'r>(
        &self,
        prepared: &'r PreparedRollout,
        facts: &ClientFacts<'_>,
        now_secs: u64,
        mut random: impl FnMut() -> u64,
    ) -> Decision<'r> {
        if let Some(d) = facts
            .cookie_header
            .and_then(|h| self.decide_returning(prepared, h, now_secs, &mut random))
        {
            return d;
        }
        let (cohort, source) = self.cohort(facts, now_secs, &mut random);
        self.place(prepared, cohort, source, None, now_secs, random)
    }

    /// The decision for a returning client, from its `Cookie` header alone; `None` when the
    /// cookie does not verify (or has expired) at `now_secs`. Lets the edge skip reading
    /// the other identities (each a JS call) on the hot path, where nearly every client has
    /// the cookie. `random` is drawn only to upgrade a previous-format cookie.
    pub fn decide_returning<'r>(
        &self,
        prepared: &'r PreparedRollout,
        cookie_header: &str,
        now_secs: u64,
        random: impl FnMut() -> u64,
    ) -> Option<Decision<'r>> {
        let verified = self.cookie.read_client(cookie_header, now_secs)?;
        Some(self.place(
            prepared,
            verified.cohort,
            CohortSource::Cookie,
            verified.client,
            now_secs,
            random,
        ))
    }

    /// The channel the live rollout serves to `cohort`.
    pub fn served_channel(&self, prepared: &PreparedRollout, cohort: u16) -> Channel {
        let rollout = &prepared.rollout;
        let on_canary = rollout.live_canary().is_some()
            && self
                .bucketer
                .is_canary(cohort, rollout.weight, prepared.rotation);
        if on_canary {
            Channel::Canary
        } else {
            Channel::Stable
        }
    }

    /// Routes a known cohort; issues a client id (and the cookie that carries it, issued at
    /// `now_secs`) when the client has none yet, or only a previous-format cookie.
    fn place<'r>(
        &self,
        prepared: &'r PreparedRollout,
        cohort: u16,
        source: CohortSource,
        client: Option<u64>,
        now_secs: u64,
        mut random: impl FnMut() -> u64,
    ) -> Decision<'r> {
        let rollout = &prepared.rollout;
        let (channel, version) = match self.served_channel(prepared, cohort) {
            Channel::Canary => (
                Channel::Canary,
                rollout.live_canary().unwrap_or(&rollout.stable),
            ),
            Channel::Stable => (Channel::Stable, &rollout.stable),
        };
        let (client, set_cookie) = match client {
            Some(id) => (id, None),
            None => {
                let id = random();
                (id, Some(self.cookie.set_cookie(cohort, id, now_secs)))
            }
        };
        Decision {
            cohort,
            source,
            channel,
            version,
            client,
            set_cookie,
        }
    }
}

/// An identity string worth hashing: trimmed, non-empty, not absurdly long, no control
/// characters. Anything else is treated as absent, and the next source is tried.
fn identity(raw: &str) -> Option<&str> {
    let s = raw.trim();
    let ok = !s.is_empty() && s.len() <= MAX_IDENTITY_LEN && !s.chars().any(char::is_control);
    ok.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Weight;

    /// 2027-01-15, in seconds.
    const NOW: u64 = 1_800_000_000;

    fn router(cohorts: u16) -> Router {
        Router::new(&Settings {
            cohorts,
            ..Settings::default()
        })
    }

    fn prepared(
        r: &Router,
        canary: Option<&str>,
        weight: u64,
        offset: Option<u32>,
    ) -> PreparedRollout {
        let rollout = Rollout {
            stable: Version::parse("1.0.0").unwrap(),
            canary: canary.map(|c| Version::parse(c).unwrap()),
            weight: Weight::new(weight).unwrap(),
            cohort_offset: offset,
            overrides_not_before: None,
            health: None,
            progression: None,
            revision: None,
            extra: Default::default(),
        };
        r.prepare(BundleName::parse("demo").unwrap(), rollout)
    }

    fn never() -> u64 {
        panic!("randomness used although an identity was present")
    }

    #[test]
    fn identity_sources_in_spec_order() {
        let r = router(10);
        let cookie = format!("cohort={}", r.cookie().value(7, 42, NOW));
        let cases: Vec<(ClientFacts, CohortSource)> = vec![
            (
                ClientFacts {
                    cookie_header: Some(&cookie),
                    user_key: Some("u"),
                    ja4: Some("j"),
                    ..Default::default()
                },
                CohortSource::Cookie,
            ),
            (
                ClientFacts {
                    cookie_header: Some("cohort=7"),
                    user_key: Some("u"),
                    ja4: Some("j"),
                    ..Default::default()
                },
                CohortSource::UserKey,
            ),
            (
                ClientFacts {
                    user_key: Some("   "),
                    ja4: Some("j"),
                    ..Default::default()
                },
                CohortSource::Fingerprint,
            ),
            (
                ClientFacts {
                    ja3_hash: Some("e7d705a3286e19ea42f587b344ee6865"),
                    ..Default::default()
                },
                CohortSource::Fingerprint,
            ),
        ];
        for (facts, source) in cases {
            let (cohort, got) = r.cohort(&facts, NOW, never);
            assert_eq!(got, source, "{facts:?}");
            assert!(cohort < 10);
        }
        let (c, s) = r.cohort(&ClientFacts::default(), NOW, || u64::MAX / 10 * 3 + 5);
        assert_eq!((c, s), (3, CohortSource::Random));
        let cookie_facts = ClientFacts {
            cookie_header: Some(&cookie),
            ..Default::default()
        };
        assert_eq!(r.cohort(&cookie_facts, NOW, never).0, 7);
    }

    #[test]
    fn bad_identities_fall_through() {
        let r = router(10);
        let long = "k".repeat(MAX_IDENTITY_LEN + 1);
        for bad in ["", "  ", "a\u{0}b", "a\nb", long.as_str()] {
            let facts = ClientFacts {
                user_key: Some(bad),
                ..Default::default()
            };
            assert_eq!(
                r.cohort(&facts, NOW, || 0).1,
                CohortSource::Random,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn weights_0_30_100_route_the_expected_cohorts() {
        let r = router(10);
        for (weight, canary_count) in [(0u64, 0usize), (30, 3), (100, 10)] {
            let p = prepared(&r, Some("1.1.0"), weight, Some(0));
            let mut canary = Vec::new();
            for cohort in 0..10u16 {
                let cookie = format!("cohort={}", r.cookie().value(cohort, 42, NOW));
                let facts = ClientFacts {
                    cookie_header: Some(&cookie),
                    ..Default::default()
                };
                let d = r.decide(&p, &facts, NOW, never);
                assert_eq!(d.cohort, cohort);
                assert_eq!(d.set_cookie, None, "a valid cookie is not rewritten");
                assert_eq!(d.client, 42, "the id comes from the cookie");
                match d.channel {
                    Channel::Canary => {
                        assert_eq!(d.version.as_str(), "1.1.0");
                        canary.push(cohort)
                    }
                    Channel::Stable => assert_eq!(d.version.as_str(), "1.0.0"),
                }
            }
            let expected: Vec<u16> = (0..canary_count as u16).collect();
            assert_eq!(canary, expected, "weight {weight} with offset 0");
        }
    }

    #[test]
    fn no_canary_means_everyone_is_stable_whatever_the_weight() {
        let r = router(10);
        let p = prepared(&r, None, 100, None);
        for cohort in 0..10u16 {
            let d = r.decide(&p, &ClientFacts::default(), NOW, || u64::from(cohort) << 60);
            assert!(d.set_cookie.is_some());
            assert_eq!(d.channel, Channel::Stable);
            assert_eq!(d.version.as_str(), "1.0.0");
        }
    }

    #[test]
    fn new_clients_get_a_cookie_that_routes_them_the_same_way_next_time() {
        let r = router(10);
        let p = prepared(&r, Some("1.1.0"), 50, None);
        for i in 0..200u64 {
            let first = r.decide(&p, &ClientFacts::default(), NOW, || {
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            });
            let set = first.set_cookie.clone().expect("new client gets a cookie");
            let pair = set.split(';').next().unwrap();
            let facts = ClientFacts {
                cookie_header: Some(pair),
                ..Default::default()
            };
            let again = r.decide(&p, &facts, NOW + 1, never);
            assert_eq!(
                (again.cohort, again.channel, again.client),
                (first.cohort, first.channel, first.client)
            );
            assert_eq!(again.source, CohortSource::Cookie);
            assert_eq!(again.set_cookie, None);
        }
    }

    #[test]
    fn expired_and_future_cookies_are_replaced_like_forged_ones() {
        let r = router(10);
        let max_age = u64::from(Settings::default().cookie_max_age);
        let p = prepared(&r, Some("1.1.0"), 50, None);
        let header = format!("cohort={}", r.cookie().value(7, 42, NOW));
        let facts = ClientFacts {
            cookie_header: Some(&header),
            user_key: Some("u"),
            ..Default::default()
        };
        for (now, valid) in [
            (NOW, true),
            (NOW + max_age, true),
            (NOW - 300, true),
            (NOW + max_age + 1, false),
            (NOW - 301, false),
        ] {
            let d = r.decide(&p, &facts, now, || 0xbeef);
            let returning = r.decide_returning(&p, &header, now, || 0xbeef);
            if valid {
                assert_eq!(
                    (d.source, d.client, d.set_cookie.as_deref()),
                    (CohortSource::Cookie, 42, None)
                );
                assert_eq!(returning, Some(d));
            } else {
                assert_eq!(
                    (d.source, d.client),
                    (CohortSource::UserKey, 0xbeef),
                    "at {now}"
                );
                assert_eq!(returning, None, "at {now}");
                let set = d.set_cookie.expect("a new cookie");
                let pair = set.split(';').next().unwrap();
                assert_eq!(
                    r.cookie().read_client(pair, now),
                    Some(crate::edge::cookie::Verified {
                        cohort: d.cohort,
                        client: Some(0xbeef),
                        issued: Some(now),
                    }),
                    "issued now"
                );
            }
        }
    }

    #[test]
    fn previous_format_cookies_keep_their_cohort_and_are_upgraded_in_place() {
        let r = router(10);
        let p = prepared(&r, Some("1.1.0"), 50, None);
        for cohort in 0..10u16 {
            for value in [
                r.cookie().legacy_value(cohort),
                r.cookie().v2_value(cohort, 42),
            ] {
                let old = format!("cohort={value}");
                let d = r
                    .decide_returning(&p, &old, NOW, || 0xfeed)
                    .expect("still valid");
                assert_eq!(
                    (d.cohort, d.source, d.client),
                    (cohort, CohortSource::Cookie, 0xfeed),
                    "{old}: a fresh id"
                );
                let set = d.set_cookie.expect("upgraded on this response");
                let pair = set.split(';').next().unwrap();
                assert_eq!(
                    pair,
                    format!("cohort={}", r.cookie().value(cohort, 0xfeed, NOW))
                );
                let next = r.decide_returning(&p, pair, NOW, never).unwrap();
                assert_eq!(
                    (next.cohort, next.channel, next.client),
                    (cohort, d.channel, 0xfeed)
                );
                assert_eq!(next.set_cookie, None, "upgraded once");
            }
        }
    }

    #[test]
    fn returning_clients_are_decided_from_the_cookie_alone() {
        let r = router(10);
        let p = prepared(&r, Some("1.1.0"), 50, None);
        for cohort in 0..10u16 {
            let header = format!("x=1; cohort={}", r.cookie().value(cohort, 9, NOW));
            let full = r.decide(
                &p,
                &ClientFacts {
                    cookie_header: Some(&header),
                    ..Default::default()
                },
                NOW,
                never,
            );
            assert_eq!(r.decide_returning(&p, &header, NOW, never), Some(full));
        }
        assert_eq!(r.decide_returning(&p, "cohort=3", NOW, never), None);
        assert_eq!(r.decide_returning(&p, "", NOW, never), None);
    }

    #[test]
    fn pinned_versions_are_classified() {
        let r = router(10);
        let p = prepared(&r, Some("1.1.0"), 10, None);
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(p.channel_of(&v("1.0.0")), Some(Channel::Stable));
        assert_eq!(p.channel_of(&v("1.1.0")), Some(Channel::Canary));
        assert_eq!(p.channel_of(&v("0.9.0")), None);
    }
}
