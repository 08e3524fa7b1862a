//! Cohorts: which of `COHORTS` buckets a client is in, and which buckets get the canary.
//!
//! A client's cohort comes from the first stable identity it presents (see
//! [`crate::edge::decide`]); this module turns an identity into a bucket with a salted SHA-256.
//!
//! **Balance.** A TLS fingerprint names a client *library*, not a person: a handful of JA4
//! strings cover every Chromium browser. Hashing the fingerprint alone therefore puts most of
//! the world into one or two cohorts, and the canary share of traffic jumps in steps of 30% or
//! more. So a fingerprint is never hashed alone: it is hashed together with the client's
//! network address (the full IPv4 address, or the IPv6 /64 that one household or phone keeps
//! across privacy-address rotation). The pair is stable for one client for as long as it
//! keeps its network, which is all the fingerprint step must cover, because the first
//! response pins the cohort in a cookie. See `bench/balance` for the measurement.

use sha2::{Digest, Sha256};

use crate::config::{Version, Weight};
use crate::edge::text;

/// The identity a cohort was derived from; also the `reason` reported in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CohortSource {
    Cookie,
    UserKey,
    Fingerprint,
    Random,
}

impl CohortSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CohortSource::Cookie => "cookie",
            CohortSource::UserKey => "user_key",
            CohortSource::Fingerprint => "fingerprint",
            CohortSource::Random => "random",
        }
    }
}

/// Longest user key or fingerprint hashed; longer inputs are not identities but abuse.
pub const MAX_IDENTITY_LEN: usize = 256;

/// Salted bucketing of identities into `cohorts` buckets.
#[derive(Debug, Clone)]
pub struct Bucketer {
    /// SHA-256 state after absorbing the salt, cloned per hash so the salt is hashed once per
    /// isolate rather than once per request.
    salted: Sha256,
    cohorts: u16,
}

impl Bucketer {
    pub fn new(salt: &str, cohorts: u16) -> Self {
        let mut salted = Sha256::new();
        // Length-prefix the salt so ("ab", "c") and ("a", "bc") never collide.
        salted.update((salt.len() as u64).to_be_bytes());
        salted.update(salt.as_bytes());
        Self {
            salted,
            cohorts: cohorts.max(1),
        }
    }

    pub fn cohorts(&self) -> u16 {
        self.cohorts
    }

    /// Uniform 64-bit hash of `parts` under the salt and a domain tag, so a user key and a
    /// fingerprint with the same text land in unrelated buckets.
    fn hash(&self, domain: &[u8], parts: &[&[u8]]) -> u64 {
        let mut h = self.salted.clone();
        h.update([domain.len() as u8]);
        h.update(domain);
        for part in parts {
            h.update((part.len() as u32).to_be_bytes());
            h.update(part);
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    /// Maps a uniform 64-bit value onto `0..cohorts` without modulo bias (Lemire's
    /// multiply-shift).
    pub fn scale(&self, x: u64) -> u16 {
        ((u128::from(x) * u128::from(self.cohorts)) >> 64) as u16
    }

    /// The cohort of a logged-in user (or any caller-chosen stable key).
    pub fn from_user_key(&self, key: &str) -> u16 {
        self.scale(self.hash(b"user", &[key.as_bytes()]))
    }

    /// The cohort of a client known by its TLS fingerprint and, when present, its network.
    /// See the module docs for why the network is part of it.
    pub fn from_fingerprint(&self, fingerprint: &str, client_ip: Option<&str>) -> u16 {
        let network = client_ip.map(network_of).unwrap_or_default();
        self.scale(self.hash(b"tls", &[fingerprint.as_bytes(), network.as_bytes()]))
    }

    /// Which cohort is first in line for this canary version: derived from the version so
    /// each release starts with different users, unless the config pins it.
    pub fn rotation(&self, bundle: &str, canary: &Version, pinned: Option<u32>) -> u16 {
        match pinned {
            Some(offset) => (offset % u32::from(self.cohorts)) as u16,
            None => self.scale(self.hash(
                b"rotation",
                &[bundle.as_bytes(), canary.as_str().as_bytes()],
            )),
        }
    }

    /// Whether `cohort` is on the canary at `weight`, with the canary's first cohort at
    /// `rotation`. The canary set is the `floor(weight * cohorts / 100)` cohorts starting at
    /// `rotation` and wrapping around, so raising the weight only ever adds cohorts.
    pub fn is_canary(&self, cohort: u16, weight: Weight, rotation: u16) -> bool {
        let n = u32::from(self.cohorts);
        let position = (u32::from(cohort) + n - u32::from(rotation) % n) % n;
        position < u32::from(weight.canary_cohorts(self.cohorts))
    }
}

/// The part of a client address that stays with one client: an IPv4 address whole, an IPv6
/// address cut to its /64 (the rest rotates for privacy). Text that is not an address is
/// used as it is.
pub fn network_of(ip: &str) -> String {
    let ip = ip.trim();
    match ip.parse::<std::net::IpAddr>() {
        // Written as `format!("{:x}:{:x}:{:x}:{:x}::/64", ..)` and `v4.to_string()` would
        // (the hash input, so every client keeps its cohort), without `core::fmt`.
        Ok(std::net::IpAddr::V6(v6)) => {
            let mut out = String::with_capacity(4 * 5 + 4);
            for segment in &v6.segments()[..4] {
                text::push_hex(&mut out, u64::from(*segment));
                out.push(':');
            }
            out.push_str(":/64");
            out
        }
        Ok(std::net::IpAddr::V4(v4)) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                text::push_decimal(&mut out, octet);
            }
            out
        }
        Err(_) => ip.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn same_input_same_cohort_and_in_range() {
        for cohorts in [1u16, 2, 10, 100, 1000] {
            let b = Bucketer::new("salt", cohorts);
            for key in ["alice", "bob", "", "ünïcode", &"k".repeat(256)] {
                let c = b.from_user_key(key);
                assert!(c < cohorts, "{key} -> {c} of {cohorts}");
                assert_eq!(
                    c,
                    Bucketer::new("salt", cohorts).from_user_key(key),
                    "{key}"
                );
            }
        }
    }

    #[test]
    fn salt_changes_the_assignment() {
        let a = Bucketer::new("one", 100);
        let b = Bucketer::new("two", 100);
        let moved = (0..1000)
            .filter(|i| a.from_user_key(&i.to_string()) != b.from_user_key(&i.to_string()))
            .count();
        assert!(moved > 900, "only {moved} of 1000 keys moved");
    }

    #[test]
    fn user_keys_spread_evenly() {
        let b = Bucketer::new("canary-edge", 10);
        let mut counts = [0u32; 10];
        for i in 0..100_000 {
            counts[b.from_user_key(&format!("user-{i}")) as usize] += 1;
        }
        for (cohort, n) in counts.iter().enumerate() {
            assert!((9_700..=10_300).contains(n), "cohort {cohort}: {n}");
        }
    }

    #[test]
    fn one_fingerprint_across_many_networks_spreads_evenly() {
        // The failure the spec warns of: one JA4 for all of Chromium.
        let b = Bucketer::new("canary-edge", 10);
        let chrome = "t13d1516h2_8daaf6152771_02713d6af862";
        let alone: std::collections::HashSet<u16> = (0..1000)
            .map(|_| b.from_fingerprint(chrome, None))
            .collect();
        assert_eq!(alone.len(), 1, "a fingerprint alone is one cohort");
        let mut counts = [0u32; 10];
        for i in 0..50_000u32 {
            let ip = format!("{}.{}.{}.{}", 10 + i % 200, (i >> 8) % 256, i % 256, i % 97);
            counts[b.from_fingerprint(chrome, Some(&ip)) as usize] += 1;
        }
        for (cohort, n) in counts.iter().enumerate() {
            assert!((4_700..=5_300).contains(n), "cohort {cohort}: {n}");
        }
    }

    #[test]
    fn ipv6_privacy_rotation_keeps_the_cohort() {
        let b = Bucketer::new("s", 100);
        let fp = "t13d1516h2_8daaf6152771_02713d6af862";
        let a = b.from_fingerprint(fp, Some("2001:db8:1:2:aaaa:bbbb:cccc:dddd"));
        let rotated = b.from_fingerprint(fp, Some("2001:db8:1:2:1111:2222:3333:4444"));
        assert_eq!(a, rotated);
        assert_eq!(network_of("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(network_of(" 192.0.2.7 "), "192.0.2.7");
        assert_eq!(network_of("not an ip"), "not an ip");
    }

    /// The network text is hash input: it must stay what `format!` wrote before, byte for
    /// byte, or clients without a cookie would change cohort.
    #[test]
    fn network_text_is_the_format_spelling() {
        use std::net::IpAddr;
        for ip in [
            "0.0.0.0",
            "192.0.2.7",
            "10.200.30.255",
            "255.255.255.255",
            "::",
            "::1",
            "2001:db8::",
            "2001:db8:0:ffff:1::1",
            "fe80:0:a:bc::7",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:192.0.2.7",
        ] {
            let expected = match ip.parse::<IpAddr>().unwrap() {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            };
            assert_eq!(network_of(ip), expected, "{ip}");
        }
    }

    #[test]
    fn domains_are_separate() {
        let b = Bucketer::new("s", 1000);
        let same = (0..500)
            .filter(|i| {
                let k = format!("id{i}");
                b.from_user_key(&k) == b.from_fingerprint(&k, None)
            })
            .count();
        assert!(same < 10, "{same}");
    }

    #[test]
    fn canary_set_has_exactly_floor_weight_cohorts() {
        for cohorts in [10u16, 100] {
            let b = Bucketer::new("s", cohorts);
            for rotation in [0, 3, cohorts - 1] {
                for w in 0..=100u64 {
                    let weight = Weight::new(w).unwrap();
                    let on = (0..cohorts)
                        .filter(|&c| b.is_canary(c, weight, rotation))
                        .count();
                    assert_eq!(
                        on,
                        weight.canary_cohorts(cohorts) as usize,
                        "w={w} r={rotation}"
                    );
                }
            }
        }
    }

    #[test]
    fn raising_the_weight_never_moves_a_client_back_to_stable() {
        let b = Bucketer::new("s", 100);
        for rotation in [0u16, 17, 99] {
            for cohort in 0..100u16 {
                let mut was_canary = false;
                for w in 0..=100u64 {
                    let now = b.is_canary(cohort, Weight::new(w).unwrap(), rotation);
                    assert!(!was_canary || now, "cohort {cohort} left canary at {w}%");
                    was_canary = now;
                }
                assert!(was_canary, "100% includes everyone");
            }
        }
    }

    #[test]
    fn rotation_follows_the_version_unless_pinned() {
        let b = Bucketer::new("s", 10);
        let firsts: std::collections::HashSet<u16> = (0..50)
            .map(|i| b.rotation("demo", &v(&format!("1.{i}.0")), None))
            .collect();
        assert!(firsts.len() >= 8, "rotation barely varies: {firsts:?}");
        assert_eq!(b.rotation("demo", &v("1.1.0"), Some(13)), 3);
        assert_eq!(
            b.rotation("demo", &v("1.1.0"), None),
            b.rotation("demo", &v("1.1.0"), None)
        );
    }
}
