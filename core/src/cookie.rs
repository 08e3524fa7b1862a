//! The sticky cohort cookie: `cohort=<n>.<id>.<tag>`, where `id` is a random 64-bit client id
//! the edge issued (16 hex digits) and `tag` a truncated HMAC-SHA256 of the cohort count, the
//! cohort and the id. A client can delete the cookie (and get a new cohort and id) but can
//! pick neither: an edited, out-of-range or foreign value fails the check and is replaced.
//! Signing the cohort count too means a change of `COHORTS` re-buckets everyone cleanly
//! instead of reading old numbers against a new range. The id is what health counting uses
//! to count clients rather than requests, and to accept error reports only from clients the
//! edge served.
//!
//! The previous format, `cohort=<n>.<tag>` (no id), still verifies: the client keeps its
//! cohort and gets the new format, with a fresh id, on its next response.

use std::cell::{OnceCell, RefCell};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Hex characters of the tag kept in the cookie: 64 bits, plenty against guessing a cohort.
const TAG_HEX_LEN: usize = 16;
/// Hex characters of the client id: 64 bits.
const ID_HEX_LEN: usize = 16;
/// Domain separation of the current format's MAC input from the previous one's.
const V2: &[u8] = b"cohort-v2";
/// Slots of the per-isolate cache of verified (cohort, id) tags.
const VERIFIED_SLOTS: usize = 2048;

/// A verified (cohort, id) and its genuine tag.
type VerifiedSlot = Option<(u16, u64, [u8; TAG_HEX_LEN / 2])>;

/// A cookie that verified: the client's cohort and, in the current format, its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub cohort: u16,
    /// `None` for the previous format: the edge issues an id and upgrades the cookie.
    pub client: Option<u64>,
}

/// How much of a `Cookie` header is scanned. Bounds the work per request while keeping a
/// valid cohort cookie that sits behind a few large cookies of the merchant's own.
pub const MAX_COOKIE_SCAN: usize = 64 * 1024;

#[derive(Clone)]
pub struct CohortCookie {
    name: String,
    cohorts: u16,
    /// Keyed HMAC state, cloned per use: the key schedule runs once per isolate.
    mac: HmacSha256,
    /// `; Path=/; Max-Age=…; Secure; HttpOnly; SameSite=None; Partitioned`, built once.
    attributes: String,
    /// The previous format's tag of each cohort, computed on first use: there are only
    /// `cohorts` such cookies, so checking one is a table look-up.
    tags: Vec<OnceCell<String>>,
    /// Tags of current-format cookies this isolate has verified, direct-mapped by id (ids
    /// are random, so they spread evenly): a returning visitor's next request compares
    /// against the cached genuine tag instead of running HMAC-SHA256 again. Only verified
    /// tags enter it, so it cannot be poisoned; bounded at `VERIFIED_SLOTS` entries.
    verified: RefCell<Vec<VerifiedSlot>>,
}

impl CohortCookie {
    pub fn new(name: &str, secret: &[u8], cohorts: u16, max_age_secs: i64) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        // Fixed attributes, written once. (Building them with the `cookie` crate pulls the
        // `time` crate's formatter into the wasm for one constant string; the tests parse the
        // result with the `cookie` crate instead.)
        let attributes = format!(
            "; Path=/; Max-Age={max_age_secs}; Secure; HttpOnly; SameSite=None; Partitioned"
        );
        Self {
            name: name.to_owned(),
            cohorts,
            mac,
            attributes,
            tags: (0..cohorts).map(|_| OnceCell::new()).collect(),
            verified: RefCell::new(Vec::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag of the current format: over the cohort count, the cohort and the id.
    fn client_tag(&self, cohort: u16, client: u64) -> [u8; TAG_HEX_LEN / 2] {
        let mut mac = self.mac.clone();
        mac.update(V2);
        mac.update(&self.cohorts.to_be_bytes());
        mac.update(&cohort.to_be_bytes());
        mac.update(&client.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0; TAG_HEX_LEN / 2];
        tag.copy_from_slice(&full[..TAG_HEX_LEN / 2]);
        tag
    }

    fn compute_tag(&self, cohort: u16) -> String {
        let mut mac = self.mac.clone();
        mac.update(&self.cohorts.to_be_bytes());
        mac.update(&cohort.to_be_bytes());
        let full = mac.finalize().into_bytes();
        hex::encode(&full[..TAG_HEX_LEN / 2])
    }

    /// The tag of an in-range cohort (cached).
    fn tag(&self, cohort: u16) -> &str {
        match self.tags.get(usize::from(cohort)) {
            Some(cell) => cell.get_or_init(|| self.compute_tag(cohort)),
            None => "",
        }
    }

    /// The cookie value for `cohort` and the client id `client`.
    pub fn value(&self, cohort: u16, client: u64) -> String {
        format!(
            "{cohort}.{client:016x}.{}",
            hex::encode(self.client_tag(cohort, client))
        )
    }

    /// The previous format's value for `cohort` (no client id): still accepted, and
    /// upgraded on the next response.
    pub fn legacy_value(&self, cohort: u16) -> String {
        format!("{cohort}.{}", self.tag(cohort))
    }

    /// A `Set-Cookie` header value pinning `cohort` and `client`.
    pub fn set_cookie(&self, cohort: u16, client: u64) -> String {
        format!(
            "{}={}{}",
            self.name,
            self.value(cohort, client),
            self.attributes
        )
    }

    /// Checks one cookie value; the cohort for a well-formed, in-range, correctly signed
    /// value of either format.
    pub fn verify(&self, value: &str) -> Option<u16> {
        self.verify_client(value).map(|v| v.cohort)
    }

    /// Checks one cookie value; `None` for anything but a well-formed, in-range, correctly
    /// signed cohort (and id, in the current format).
    pub fn verify_client(&self, value: &str) -> Option<Verified> {
        let (number, rest) = value.split_once('.')?;
        let canonical = number == "0" || !number.starts_with('0');
        if number.is_empty()
            || number.len() > 5
            || !canonical
            || !number.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let cohort: u16 = number.parse().ok()?;
        if cohort >= self.cohorts {
            return None;
        }
        if let Some((id, tag)) = rest.split_once('.') {
            return self.verify_v2(cohort, id, tag);
        }
        if rest.len() != TAG_HEX_LEN {
            return None;
        }
        // Previous format: constant-time comparison with the one valid tag of this cohort.
        let genuine = bool::from(self.tag(cohort).as_bytes().ct_eq(rest.as_bytes()));
        genuine.then_some(Verified {
            cohort,
            client: None,
        })
    }

    fn verify_v2(&self, cohort: u16, id: &str, tag: &str) -> Option<Verified> {
        let client = hex16(id)?;
        let given = hex16(tag)?.to_be_bytes();
        let slot = (client % VERIFIED_SLOTS as u64) as usize;
        let cached = self.verified.borrow().get(slot).copied().flatten();
        let expected = match cached {
            Some((c, id, tag)) if c == cohort && id == client => tag,
            _ => self.client_tag(cohort, client),
        };
        if !bool::from(expected.ct_eq(&given)) {
            return None;
        }
        if cached.is_none_or(|(c, id, _)| (c, id) != (cohort, client)) {
            let mut verified = self.verified.borrow_mut();
            if verified.is_empty() {
                verified.resize(VERIFIED_SLOTS, None);
            }
            verified[slot] = Some((cohort, client, expected));
        }
        Some(Verified {
            cohort,
            client: Some(client),
        })
    }

    /// The cohort from a `Cookie` request header: the first of our cookies that verifies.
    /// Pairs are split on `;` and also `,` (never part of a cookie value), which is how a
    /// runtime joins two `Cookie` header lines; bytes past `MAX_COOKIE_SCAN` are not read,
    /// and pairs that are not UTF-8 are skipped.
    pub fn read(&self, header: &str) -> Option<u16> {
        self.read_client(header).map(|v| v.cohort)
    }

    /// Like `read`, with the client id of a current-format cookie.
    pub fn read_client(&self, header: &str) -> Option<Verified> {
        let scanned = &header.as_bytes()[..header.len().min(MAX_COOKIE_SCAN)];
        scanned
            .split(|&b| b == b';' || b == b',')
            .filter_map(|pair| std::str::from_utf8(pair).ok())
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == self.name)
            .find_map(|(_, value)| self.verify_client(value.trim_matches('"')))
    }
}

/// Exactly 16 lower-case hex digits (one valid spelling per value), as a number.
fn hex16(s: &str) -> Option<u64> {
    if s.len() != ID_HEX_LEN {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(digit))
    })
}

impl std::fmt::Debug for CohortCookie {
    // The key and tags stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CohortCookie")
            .field("name", &self.name)
            .field("cohorts", &self.cohorts)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: u64 = 0x0123_4567_89ab_cdef;

    fn jar() -> CohortCookie {
        CohortCookie::new("cohort", b"secret", 10, 31_536_000)
    }

    #[test]
    fn set_cookie_parses_with_the_cookie_crate_and_has_the_cross_site_attributes() {
        let header = jar().set_cookie(3, ID);
        let parsed = cookie::Cookie::parse(header.as_str()).expect("a valid Set-Cookie");
        assert_eq!(parsed.name(), "cohort");
        assert_eq!(
            jar().verify_client(parsed.value()),
            Some(Verified {
                cohort: 3,
                client: Some(ID)
            })
        );
        assert_eq!(parsed.path(), Some("/"));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.same_site(), Some(cookie::SameSite::None));
        assert_eq!(parsed.partitioned(), Some(true));
        assert_eq!(
            parsed.max_age().map(|d| d.whole_seconds()),
            Some(31_536_000)
        );
        assert!(header.starts_with("cohort=3.0123456789abcdef."), "{header}");
        for attr in [
            "Path=/",
            "Max-Age=31536000",
            "Secure",
            "HttpOnly",
            "SameSite=None",
            "Partitioned",
        ] {
            assert!(header.contains(attr), "{attr} missing in {header}");
        }
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let jar = jar();
        for cohort in 0..10 {
            for client in [0, 1, ID, u64::MAX] {
                let header = format!("a=1; cohort={}; b=2", jar.value(cohort, client));
                assert_eq!(
                    jar.read_client(&header),
                    Some(Verified {
                        cohort,
                        client: Some(client)
                    }),
                    "{header}"
                );
            }
        }
    }

    #[test]
    fn the_verified_cache_never_accepts_what_hmac_would_refuse() {
        let jar = jar();
        let good = jar.value(4, ID);
        assert!(jar.verify_client(&good).is_some(), "verified, now cached");
        let tag = good.rsplit('.').next().unwrap();
        // Same slot, other id or cohort, with the cached tag: refused.
        let same_slot = ID + VERIFIED_SLOTS as u64;
        for forged in [
            format!("4.{same_slot:016x}.{tag}"),
            format!("5.{ID:016x}.{tag}"),
            format!("4.{ID:016x}.{}", "0".repeat(16)),
        ] {
            assert_eq!(jar.verify_client(&forged), None, "{forged}");
        }
        // A colliding genuine cookie replaces the slot; both still verify.
        let other = jar.value(4, same_slot);
        assert!(jar.verify_client(&other).is_some());
        assert!(jar.verify_client(&good).is_some());
        assert!(jar.verified.borrow().len() <= VERIFIED_SLOTS);
    }

    #[test]
    fn the_previous_format_keeps_its_cohort_without_an_id() {
        let jar = jar();
        for cohort in 0..10 {
            let header = format!("cohort={}", jar.legacy_value(cohort));
            assert_eq!(
                jar.read_client(&header),
                Some(Verified {
                    cohort,
                    client: None
                })
            );
        }
    }

    #[test]
    fn the_tag_covers_the_id_and_the_cohort() {
        let jar = jar();
        let good = jar.value(4, ID);
        let parts: Vec<&str> = good.split('.').collect();
        let (id, tag) = (parts[1], parts[2]);
        for forged in [
            format!("5.{id}.{tag}"),
            format!("4.{:016x}.{tag}", ID ^ 1),
            format!("4.{:016x}.{tag}", ID.rotate_left(4)),
            format!("4.{}.{tag}", id.to_uppercase()),
            format!("4.{id}.{}", tag.to_uppercase()),
            format!("4.{id}.{}", &tag[..15]),
            format!("4.{}.{tag}", &id[1..]),
            format!("4.{id}.{tag}.0"),
            format!("4.{id}"),
            format!("4..{tag}"),
        ] {
            assert_eq!(jar.verify_client(&forged), None, "{forged}");
        }
    }

    #[test]
    fn tampered_foreign_or_out_of_range_values_are_rejected() {
        let jar = jar();
        let good = jar.legacy_value(4);
        let (_, tag) = good.split_once('.').unwrap();
        let other_jar = CohortCookie::new("cohort", b"other", 10, 60);
        let hundred = CohortCookie::new("cohort", b"secret", 100, 60);
        let cases = [
            "cohort=4".to_string(),
            format!("cohort=5.{tag}"),
            format!("cohort=04.{tag}"),
            format!("cohort=4.{}", &tag[..15]),
            format!("cohort=4.{}0", tag),
            format!(
                "cohort=4.{}",
                tag.to_uppercase().replace(char::is_numeric, "Z")
            ),
            format!("cohort={}", other_jar.legacy_value(4)),
            format!("cohort={}", other_jar.value(4, ID)),
            format!("cohort={}", hundred.legacy_value(4)),
            format!("cohort={}", hundred.value(4, ID)),
            format!("cohort={}", hundred.value(42, ID)),
            "cohort=-1.0000000000000000".to_string(),
            "cohort=99999999999.0000000000000000".to_string(),
            "cohort=".to_string(),
            "cohort".to_string(),
            "".to_string(),
            format!("xcohort={good}"),
            format!("big={}; cohort={good}", "x".repeat(MAX_COOKIE_SCAN)),
        ];
        for header in cases {
            assert_eq!(jar.read(&header), None, "{header}");
        }
    }

    #[test]
    fn large_headers_joined_lines_and_odd_bytes_still_find_the_cookie() {
        let jar = jar();
        let good = jar.value(6, ID);
        for header in [
            format!("big={}; cohort={good}", "x".repeat(16 * 1024)),
            format!("{}cohort={good}", "a=b; ".repeat(500)),
            format!("a=1, cohort={good}"),
            format!("bad=\u{fffd}\u{7f}; cohort=\"{good}\""),
        ] {
            assert_eq!(
                jar.read(&header),
                Some(6),
                "{}",
                &header[..header.len().min(60)]
            );
        }
    }

    #[test]
    fn the_first_valid_cookie_wins_over_junk() {
        let jar = jar();
        let header = format!(
            "cohort=junk; cohort={}; cohort={}",
            jar.value(2, 7),
            jar.legacy_value(7)
        );
        assert_eq!(jar.read(&header), Some(2));
    }
}
