//! The sticky cohort cookie: `cohort=<n>.<id>.<issued>.<tag>`, where `id` is a random 64-bit
//! client id the edge issued (16 hex digits), `issued` the issue time (seconds since the
//! Unix epoch, lower-case hex without leading zeros) and `tag` a truncated HMAC-SHA256 of
//! the cohort count, the cohort, the id and the issue time. A client can delete the cookie
//! (and get a new cohort and id) but can pick neither: an edited, out-of-range or foreign
//! value fails the check and is replaced. Signing the cohort count too means a change of
//! `COHORTS` re-buckets everyone cleanly instead of reading old numbers against a new range.
//! Signing the issue time means a cookie stops verifying `Max-Age` after it was issued, or
//! when it claims a time ahead of the edge's clock by more than `CLOCK_SKEW_SECS`: a
//! stockpiled cookie expires even if its holder ignores `Max-Age`. The id is what health
//! counting uses to count clients rather than requests, and to accept error reports only
//! from clients the edge served.
//!
//! The previous formats, `cohort=<n>.<id>.<tag>` (no issue time, "cohort-v2" MAC) and
//! `cohort=<n>.<tag>` (no id), still verify for their cohort but without a client id: the
//! client keeps its cohort and gets the current format, with a fresh id, on its next
//! response.

use std::cell::{OnceCell, RefCell};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::text;

type HmacSha256 = Hmac<Sha256>;

/// Hex characters of the tag kept in the cookie: 64 bits, plenty against guessing a cohort.
const TAG_HEX_LEN: usize = 16;
/// Hex characters of the client id: 64 bits.
const ID_HEX_LEN: usize = 16;
/// Hex characters of the issue time at most: 40 bits of seconds, far past any real clock.
const ISSUED_HEX_MAX: usize = 10;
/// Domain separation of the current format's MAC input from the previous ones'.
const V3: &[u8] = b"cohort-v3";
/// Domain tag of the previous format with an id (`<n>.<id>.<tag>`).
const V2: &[u8] = b"cohort-v2";
/// How far an issue time may lie ahead of the verifier's clock (edges' clocks differ).
pub const CLOCK_SKEW_SECS: u64 = 300;
/// The longest current-format value: a 5-digit cohort, the id, the issue time, the tag and
/// three dots.
const VALUE_MAX_LEN: usize = 5 + ID_HEX_LEN + ISSUED_HEX_MAX + TAG_HEX_LEN + 3;
/// Slots of the per-isolate cache of verified (cohort, id, issued) tags.
const VERIFIED_SLOTS: usize = 2048;

/// A truncated tag, as bytes.
type Tag = [u8; TAG_HEX_LEN / 2];
/// A verified (cohort, id, issue time) and its genuine tag.
type VerifiedSlot = Option<(u16, u64, u64, Tag)>;

/// A cookie that verified: the client's cohort and, in the current format, its id and the
/// cookie's issue time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub cohort: u16,
    /// `None` for a previous format: the edge issues an id and upgrades the cookie.
    pub client: Option<u64>,
    /// Seconds since the Unix epoch; `None` for a previous format.
    pub issued: Option<u64>,
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
    /// The cookie's `Max-Age`: a current-format cookie issued longer ago fails the check.
    max_age: u64,
    /// `; Path=/; Max-Age=…; Secure; HttpOnly; SameSite=None; Partitioned`, built once.
    attributes: String,
    /// The oldest format's tag of each cohort, computed on first use: there are only
    /// `cohorts` such cookies, so checking one is a table look-up.
    tags: Vec<OnceCell<String>>,
    /// Tags of current-format cookies this isolate has verified, direct-mapped by id (ids
    /// are random, so they spread evenly): a returning visitor's next request compares
    /// against the cached genuine tag of the same (cohort, id, issued) instead of running
    /// HMAC-SHA256 again. Only verified tags enter it, so it cannot be poisoned; bounded at
    /// `VERIFIED_SLOTS` entries. Expiry is checked on every read, cached or not.
    verified: RefCell<Vec<VerifiedSlot>>,
    /// MACs computed, for the tests' count of the work a header costs.
    #[cfg(test)]
    macs: std::cell::Cell<u32>,
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
            max_age: u64::try_from(max_age_secs).unwrap_or(0),
            attributes,
            tags: (0..cohorts).map(|_| OnceCell::new()).collect(),
            verified: RefCell::new(Vec::new()),
            #[cfg(test)]
            macs: std::cell::Cell::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first 8 bytes of the HMAC of `parts`, concatenated.
    fn mac_tag(&self, parts: &[&[u8]]) -> Tag {
        #[cfg(test)]
        self.macs.set(self.macs.get() + 1);
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0; TAG_HEX_LEN / 2];
        tag.copy_from_slice(&full[..TAG_HEX_LEN / 2]);
        tag
    }

    /// The tag of the current format: over the cohort count, the cohort, the id and the
    /// issue time.
    fn client_tag(&self, cohort: u16, client: u64, issued: u64) -> Tag {
        self.mac_tag(&[
            V3,
            &self.cohorts.to_be_bytes(),
            &cohort.to_be_bytes(),
            &client.to_be_bytes(),
            &issued.to_be_bytes(),
        ])
    }

    /// The tag of the previous format with an id: over the cohort count, cohort and id.
    fn v2_tag(&self, cohort: u16, client: u64) -> Tag {
        self.mac_tag(&[
            V2,
            &self.cohorts.to_be_bytes(),
            &cohort.to_be_bytes(),
            &client.to_be_bytes(),
        ])
    }

    fn compute_tag(&self, cohort: u16) -> String {
        let mut out = String::with_capacity(TAG_HEX_LEN);
        let tag = self.mac_tag(&[&self.cohorts.to_be_bytes(), &cohort.to_be_bytes()]);
        text::push_hex_bytes(&mut out, &tag);
        out
    }

    /// The oldest format's tag of an in-range cohort (cached).
    fn tag(&self, cohort: u16) -> &str {
        match self.tags.get(usize::from(cohort)) {
            Some(cell) => cell.get_or_init(|| self.compute_tag(cohort)),
            None => "",
        }
    }

    /// The cookie value for `cohort` and the client id `client`, issued at `issued_secs`
    /// (seconds since the Unix epoch; below 2^40, which any real clock is).
    pub fn value(&self, cohort: u16, client: u64, issued_secs: u64) -> String {
        let mut out = String::with_capacity(VALUE_MAX_LEN);
        self.push_value(&mut out, cohort, client, issued_secs);
        out
    }

    /// Appends [`Self::value`]: `{cohort}.{client:016x}.{issued_secs:x}.{tag}`.
    fn push_value(&self, out: &mut String, cohort: u16, client: u64, issued_secs: u64) {
        text::push_decimal(out, cohort);
        out.push('.');
        text::push_hex16(out, client);
        out.push('.');
        text::push_hex(out, issued_secs);
        out.push('.');
        text::push_hex_bytes(out, &self.client_tag(cohort, client, issued_secs));
    }

    /// The previous format's value for `cohort` and `client` (no issue time): still
    /// accepted for its cohort, and upgraded on the next response.
    pub fn v2_value(&self, cohort: u16, client: u64) -> String {
        let mut out = String::with_capacity(VALUE_MAX_LEN);
        text::push_decimal(&mut out, cohort);
        out.push('.');
        text::push_hex16(&mut out, client);
        out.push('.');
        text::push_hex_bytes(&mut out, &self.v2_tag(cohort, client));
        out
    }

    /// The oldest format's value for `cohort` (no client id): still accepted, and
    /// upgraded on the next response.
    pub fn legacy_value(&self, cohort: u16) -> String {
        let mut out = text::decimal(cohort);
        out.push('.');
        out.push_str(self.tag(cohort));
        out
    }

    /// A `Set-Cookie` header value pinning `cohort` and `client`, issued at `issued_secs`.
    pub fn set_cookie(&self, cohort: u16, client: u64, issued_secs: u64) -> String {
        let mut out =
            String::with_capacity(self.name.len() + 1 + VALUE_MAX_LEN + self.attributes.len());
        out.push_str(&self.name);
        out.push('=');
        self.push_value(&mut out, cohort, client, issued_secs);
        out.push_str(&self.attributes);
        out
    }

    /// Checks one cookie value at `now_secs`; the cohort for a well-formed, in-range,
    /// correctly signed (and, in the current format, unexpired) value of any format.
    pub fn verify(&self, value: &str, now_secs: u64) -> Option<u16> {
        self.verify_client(value, now_secs).map(|v| v.cohort)
    }

    /// Checks one cookie value at `now_secs` (seconds since the Unix epoch); `None` for
    /// anything but a well-formed, in-range, correctly signed cohort (and id and issue time,
    /// in the current format, issued at most `Max-Age` ago and not in the future).
    pub fn verify_client(&self, value: &str, now_secs: u64) -> Option<Verified> {
        match self.check(self.candidate(value, now_secs)?, true) {
            Check::Genuine(v) => Some(v),
            Check::Forged | Check::NeedsMac => None,
        }
    }

    /// What a value claims, if it is well-formed: everything checked but its MAC (an
    /// expired or future issue time is refused here: the time is not secret).
    fn candidate<'v>(&self, value: &'v str, now_secs: u64) -> Option<Candidate<'v>> {
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
        let Some((id, rest)) = rest.split_once('.') else {
            return (rest.len() == TAG_HEX_LEN).then_some(Candidate::V1 { cohort, tag: rest });
        };
        let client = hex16(id)?;
        let Some((issued, tag)) = rest.split_once('.') else {
            let tag = hex16(rest)?.to_be_bytes();
            return Some(Candidate::V2 {
                cohort,
                client,
                tag,
            });
        };
        let issued = hex_time(issued)?;
        let tag = hex16(tag)?.to_be_bytes();
        if issued > now_secs.saturating_add(CLOCK_SKEW_SECS)
            || now_secs.saturating_sub(issued) > self.max_age
        {
            return None;
        }
        Some(Candidate::V3 {
            cohort,
            client,
            issued,
            tag,
        })
    }

    /// Whether a candidate's tag is genuine (compared in constant time): against a tag known
    /// without a new MAC (the oldest format's, at most one MAC per cohort per isolate; the
    /// verified-tag cache), else by its MAC when `mac` allows, else [`Check::NeedsMac`].
    fn check(&self, candidate: Candidate<'_>, mac: bool) -> Check {
        let genuine = |ok: bool, v: Verified| if ok { Check::Genuine(v) } else { Check::Forged };
        let old = |cohort| Verified {
            cohort,
            client: None,
            issued: None,
        };
        match candidate {
            // `<n>.<tag>`: the one valid tag of this cohort, computed once per isolate.
            Candidate::V1 { cohort, tag } => genuine(
                bool::from(self.tag(cohort).as_bytes().ct_eq(tag.as_bytes())),
                old(cohort),
            ),
            // `<n>.<id>.<tag>`: the cohort only; the id is replaced with the cookie. Not
            // cached: a client sends it until its next response upgrades it.
            Candidate::V2 {
                cohort,
                client,
                tag,
            } => match mac {
                true => genuine(
                    bool::from(self.v2_tag(cohort, client).ct_eq(&tag)),
                    old(cohort),
                ),
                false => Check::NeedsMac,
            },
            Candidate::V3 {
                cohort,
                client,
                issued,
                tag,
            } => {
                let slot = (client % VERIFIED_SLOTS as u64) as usize;
                let cached = self.verified.borrow().get(slot).copied().flatten();
                let hit = cached.filter(|&(c, id, at, _)| (c, id, at) == (cohort, client, issued));
                let expected = match hit {
                    Some((.., known)) => known,
                    None if mac => self.client_tag(cohort, client, issued),
                    None => return Check::NeedsMac,
                };
                let ok = bool::from(expected.ct_eq(&tag));
                if ok && hit.is_none() {
                    let mut verified = self.verified.borrow_mut();
                    if verified.is_empty() {
                        verified.resize(VERIFIED_SLOTS, None);
                    }
                    verified[slot] = Some((cohort, client, issued, expected));
                }
                genuine(
                    ok,
                    Verified {
                        cohort,
                        client: Some(client),
                        issued: Some(issued),
                    },
                )
            }
        }
    }

    /// The cohort from a `Cookie` request header at `now_secs`: the first of our cookies
    /// that verifies. Pairs are split on `;` and also `,` (never part of a cookie value),
    /// which is how a runtime joins two `Cookie` header lines; bytes past `MAX_COOKIE_SCAN`
    /// are not read, and pairs that are not UTF-8 are skipped.
    pub fn read(&self, header: &str, now_secs: u64) -> Option<u16> {
        self.read_client(header, now_secs).map(|v| v.cohort)
    }

    /// Like `read`, with the client id and issue time of a current-format cookie. At most
    /// one MAC per header: for the first well-formed pair whose tag is not known already
    /// (the verified-tag cache; the oldest format's tags, one MAC per cohort per isolate),
    /// so that a header stuffed with forged pairs costs one HMAC, not one each. A later pair
    /// is then found only from a known tag (a cookie this isolate verified before).
    pub fn read_client(&self, header: &str, now_secs: u64) -> Option<Verified> {
        let scanned = &header.as_bytes()[..header.len().min(MAX_COOKIE_SCAN)];
        let mut mac_left = true;
        scanned
            .split(|&b| b == b';' || b == b',')
            .filter_map(|pair| std::str::from_utf8(pair).ok())
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == self.name)
            .filter_map(|(_, value)| self.candidate(value.trim_matches('"'), now_secs))
            .find_map(|candidate| {
                let checked = match self.check(candidate, false) {
                    Check::NeedsMac if mac_left => {
                        mac_left = false;
                        self.check(candidate, true)
                    }
                    checked => checked,
                };
                match checked {
                    Check::Genuine(v) => Some(v),
                    Check::Forged | Check::NeedsMac => None,
                }
            })
    }
}

/// A well-formed cookie value, by format: what it claims, its MAC not yet checked.
#[derive(Clone, Copy)]
enum Candidate<'v> {
    /// `<n>.<tag>` (oldest format, no id).
    V1 { cohort: u16, tag: &'v str },
    /// `<n>.<id>.<tag>` (no issue time).
    V2 { cohort: u16, client: u64, tag: Tag },
    /// `<n>.<id>.<issued>.<tag>`, issued within `Max-Age`.
    V3 {
        cohort: u16,
        client: u64,
        issued: u64,
        tag: Tag,
    },
}

/// A candidate's tag: genuine, forged, or not known without a MAC (which was not allowed).
enum Check {
    Genuine(Verified),
    Forged,
    NeedsMac,
}

/// Exactly 16 lower-case hex digits (one valid spelling per value), as a number.
fn hex16(s: &str) -> Option<u64> {
    if s.len() != ID_HEX_LEN {
        return None;
    }
    hex_digits(s)
}

/// An issue time: 1 to `ISSUED_HEX_MAX` lower-case hex digits without leading zeros (one
/// valid spelling per value), as a number.
fn hex_time(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > ISSUED_HEX_MAX || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    hex_digits(s)
}

/// Lower-case hex digits (at most 16), as a number.
fn hex_digits(s: &str) -> Option<u64> {
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
    /// 2027-01-15, in seconds.
    const NOW: u64 = 1_800_000_000;
    const MAX_AGE: u64 = 31_536_000;

    fn jar() -> CohortCookie {
        CohortCookie::new("cohort", b"secret", 10, MAX_AGE as i64)
    }

    fn v3(cohort: u16, client: u64, issued: u64) -> Option<Verified> {
        Some(Verified {
            cohort,
            client: Some(client),
            issued: Some(issued),
        })
    }

    fn old(cohort: u16) -> Option<Verified> {
        Some(Verified {
            cohort,
            client: None,
            issued: None,
        })
    }

    #[test]
    fn set_cookie_parses_with_the_cookie_crate_and_has_the_cross_site_attributes() {
        let header = jar().set_cookie(3, ID, NOW);
        let parsed = cookie::Cookie::parse(header.as_str()).expect("a valid Set-Cookie");
        assert_eq!(parsed.name(), "cohort");
        assert_eq!(jar().verify_client(parsed.value(), NOW), v3(3, ID, NOW));
        assert_eq!(parsed.path(), Some("/"));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.same_site(), Some(cookie::SameSite::None));
        assert_eq!(parsed.partitioned(), Some(true));
        assert_eq!(
            parsed.max_age().map(|d| d.whole_seconds()),
            Some(31_536_000)
        );
        assert!(
            header.starts_with("cohort=3.0123456789abcdef.6b49d200."),
            "{header}"
        );
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
    fn the_value_is_the_documented_format_and_mac() {
        let jar = jar();
        for (cohort, client, issued, spelled) in [
            (3u16, ID, NOW, "6b49d200"),
            (0, 0, 0, "0"),
            (9, u64::MAX, 0xf, "f"),
            (7, 1, 0xff_ffff_ffff, "ffffffffff"),
        ] {
            let mut mac = HmacSha256::new_from_slice(b"secret").unwrap();
            mac.update(b"cohort-v3");
            mac.update(&10u16.to_be_bytes());
            mac.update(&cohort.to_be_bytes());
            mac.update(&client.to_be_bytes());
            mac.update(&issued.to_be_bytes());
            let tag = hex::encode(&mac.finalize().into_bytes()[..8]);
            assert_eq!(
                jar.value(cohort, client, issued),
                format!("{cohort}.{client:016x}.{spelled}.{tag}")
            );
        }
    }

    #[test]
    fn reads_back_what_it_wrote_within_its_lifetime() {
        let jar = jar();
        // (issued, now): every one in the cookie's lifetime, the edges included.
        let times = [
            (NOW, NOW),
            (NOW - MAX_AGE, NOW),
            (NOW + CLOCK_SKEW_SECS, NOW),
            (NOW, NOW + MAX_AGE),
            (0, 0),
            (0, MAX_AGE),
            (0xff_ffff_ffff, 0xff_ffff_ffff),
        ];
        for cohort in 0..10 {
            for client in [0, 1, ID, u64::MAX] {
                for (issued, now) in times {
                    let header = format!("a=1; cohort={}; b=2", jar.value(cohort, client, issued));
                    assert_eq!(
                        jar.read_client(&header, now),
                        v3(cohort, client, issued),
                        "{header} at {now}"
                    );
                    assert_eq!(jar.read(&header, now), Some(cohort));
                }
            }
        }
    }

    #[test]
    fn expired_and_future_cookies_fail_like_forged_ones() {
        let jar = jar();
        let short = CohortCookie::new("cohort", b"secret", 10, 60);
        // (jar, issued, now): out of the lifetime, whether or not the tag was seen before.
        for (jar, issued, now) in [
            (&jar, NOW - MAX_AGE - 1, NOW),
            (&jar, NOW, NOW + MAX_AGE + 1),
            (&jar, 0, u64::MAX),
            (&jar, NOW + CLOCK_SKEW_SECS + 1, NOW),
            (&jar, NOW, 0),
            (&jar, 0x100_0000_0000, 0x100_0000_0000),
            (&short, NOW - 61, NOW),
            (&short, NOW, NOW + 61),
            (&short, NOW + CLOCK_SKEW_SECS + 1, NOW),
        ] {
            let value = jar.value(4, ID, issued);
            assert_eq!(jar.verify_client(&value, now), None, "{value} at {now}");
            // Verified (and cached) when it was fresh, still refused once it is not.
            if let Some(fresh) = [issued, issued.saturating_add(1)]
                .into_iter()
                .find(|&t| jar.verify_client(&value, t).is_some())
            {
                assert_eq!(jar.verify_client(&value, fresh), v3(4, ID, issued));
                assert_eq!(jar.verify_client(&value, now), None, "cached, {value}");
            }
        }
        let value = short.value(4, ID, NOW);
        assert_eq!(short.verify_client(&value, NOW + 60), v3(4, ID, NOW));
        assert_eq!(short.verify_client(&value, NOW - 300), v3(4, ID, NOW));
    }

    #[test]
    fn the_tag_covers_the_cohort_the_id_and_the_issue_time() {
        let jar = jar();
        let good = jar.value(4, ID, NOW);
        assert_eq!(jar.verify_client(&good, NOW), v3(4, ID, NOW));
        let parts: Vec<&str> = good.split('.').collect();
        let (id, issued, tag) = (parts[1], parts[2], parts[3]);
        let flipped = |s: &str| {
            let last = if s.ends_with('0') { "1" } else { "0" };
            format!("{}{last}", &s[..s.len() - 1])
        };
        for forged in [
            // Another cohort, id, issue time or tag.
            format!("5.{id}.{issued}.{tag}"),
            format!("4.{}.{issued}.{tag}", flipped(id)),
            format!("4.{:016x}.{issued}.{tag}", ID.rotate_left(4)),
            format!("4.{id}.{}.{tag}", flipped(issued)),
            format!("4.{id}.{:x}.{tag}", NOW - 1),
            format!("4.{id}.{:x}.{tag}", NOW + 1),
            format!("4.{id}.{issued}.{}", flipped(tag)),
            // Other spellings of the same numbers.
            format!("4.{}.{issued}.{tag}", id.to_uppercase()),
            format!("4.{id}.{}.{tag}", issued.to_uppercase()),
            format!("4.{id}.0{issued}.{tag}"),
            format!("4.{id}.{issued}.{}", tag.to_uppercase()),
            format!("04.{id}.{issued}.{tag}"),
            // Malformed.
            format!("4.{id}.{issued}.{}", &tag[..15]),
            format!("4.{}.{issued}.{tag}", &id[1..]),
            format!("4.{id}.{issued}.{tag}.0"),
            format!("4.{id}..{tag}"),
            format!("4.{id}.{issued}"),
            format!("4.{id}.00000000{issued}.{tag}"),
            format!("4..{issued}.{tag}"),
            format!("4.{id}.-{issued}.{tag}"),
            format!("4.{id}.+{issued}.{tag}"),
            // The v3 tag under the previous format (no issue time).
            format!("4.{id}.{tag}"),
        ] {
            assert_eq!(jar.verify_client(&forged, NOW), None, "{forged}");
        }
    }

    #[test]
    fn previous_formats_keep_their_cohort_without_an_id_at_any_time() {
        let jar = jar();
        for cohort in 0..10 {
            for (value, now) in [
                (jar.v2_value(cohort, ID), NOW),
                (jar.v2_value(cohort, 0), 0),
                (jar.v2_value(cohort, u64::MAX), u64::MAX),
                (jar.legacy_value(cohort), NOW),
                (jar.legacy_value(cohort), 0),
            ] {
                let header = format!("cohort={value}");
                assert_eq!(jar.read_client(&header, now), old(cohort), "{header}");
            }
        }
        // A previous-format cookie is checked against its own MAC, whole.
        let v2 = jar.v2_value(4, ID);
        let (_, tag) = v2.rsplit_once('.').unwrap();
        for forged in [
            format!("5.{ID:016x}.{tag}"),
            format!("4.{:016x}.{tag}", ID ^ 1),
            format!("4.{ID:016x}.{}", "0".repeat(16)),
            format!("4.{ID:016x}.{:x}.{tag}", NOW),
            format!("4.{tag}"),
        ] {
            assert_eq!(jar.verify_client(&forged, NOW), None, "{forged}");
        }
    }

    #[test]
    fn the_verified_cache_never_accepts_what_hmac_would_refuse() {
        let jar = jar();
        let good = jar.value(4, ID, NOW);
        assert!(
            jar.verify_client(&good, NOW).is_some(),
            "verified, now cached"
        );
        let tag = good.rsplit('.').next().unwrap();
        // Same slot, other id, cohort or issue time, with the cached tag: refused.
        let same_slot = ID + VERIFIED_SLOTS as u64;
        for forged in [
            format!("4.{same_slot:016x}.{NOW:x}.{tag}"),
            format!("5.{ID:016x}.{NOW:x}.{tag}"),
            format!("4.{ID:016x}.{:x}.{tag}", NOW - 1),
            format!("4.{ID:016x}.{:x}.{tag}", NOW + 1),
            format!("4.{ID:016x}.{NOW:x}.{}", "0".repeat(16)),
            format!("4.{ID:016x}.{tag}"),
        ] {
            assert_eq!(jar.verify_client(&forged, NOW), None, "{forged}");
        }
        assert_eq!(
            jar.verify_client(&good, NOW),
            v3(4, ID, NOW),
            "still cached"
        );
        // A colliding genuine cookie (same slot; or the same id and cohort issued at
        // another time) replaces the slot; all still verify.
        for other in [jar.value(4, same_slot, NOW), jar.value(4, ID, NOW - 1)] {
            assert!(jar.verify_client(&other, NOW).is_some(), "{other}");
            assert!(jar.verify_client(&good, NOW).is_some());
            assert!(jar.verify_client(&other, NOW).is_some(), "{other}");
        }
        // Failures, the expired and the previous formats never enter it.
        let expired = jar.value(3, ID + 1, NOW - MAX_AGE - 1);
        assert_eq!(jar.verify_client(&expired, NOW), None);
        let _ = jar.verify_client(&jar.v2_value(3, ID + 1), NOW);
        assert_eq!(
            jar.verified.borrow()[(ID + 1) as usize % VERIFIED_SLOTS],
            None
        );
        assert!(jar.verified.borrow().len() <= VERIFIED_SLOTS);
    }

    #[test]
    fn tampered_foreign_or_out_of_range_values_are_rejected() {
        let jar = jar();
        let good = jar.legacy_value(4);
        let (_, tag) = good.split_once('.').unwrap();
        let other_jar = CohortCookie::new("cohort", b"other", 10, MAX_AGE as i64);
        let hundred = CohortCookie::new("cohort", b"secret", 100, MAX_AGE as i64);
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
            format!("cohort={}", other_jar.v2_value(4, ID)),
            format!("cohort={}", other_jar.value(4, ID, NOW)),
            format!("cohort={}", hundred.legacy_value(4)),
            format!("cohort={}", hundred.v2_value(4, ID)),
            format!("cohort={}", hundred.value(4, ID, NOW)),
            format!("cohort={}", hundred.value(42, ID, NOW)),
            "cohort=-1.0000000000000000".to_string(),
            "cohort=99999999999.0000000000000000".to_string(),
            "cohort=".to_string(),
            "cohort".to_string(),
            "".to_string(),
            format!("xcohort={good}"),
            format!("big={}; cohort={good}", "x".repeat(MAX_COOKIE_SCAN)),
        ];
        for header in cases {
            assert_eq!(jar.read(&header, NOW), None, "{header}");
        }
    }

    #[test]
    fn large_headers_joined_lines_and_odd_bytes_still_find_the_cookie() {
        let jar = jar();
        let good = jar.value(6, ID, NOW);
        for header in [
            format!("big={}; cohort={good}", "x".repeat(16 * 1024)),
            format!("{}cohort={good}", "a=b; ".repeat(500)),
            format!("a=1, cohort={good}"),
            format!("bad=\u{fffd}\u{7f}; cohort=\"{good}\""),
        ] {
            assert_eq!(
                jar.read(&header, NOW),
                Some(6),
                "{}",
                &header[..header.len().min(60)]
            );
        }
    }

    #[test]
    fn the_first_valid_cookie_wins_over_junk_and_expired_ones() {
        let jar = jar();
        let header = format!(
            "cohort=junk; cohort={}; cohort={}; cohort={}",
            jar.value(1, 7, NOW - MAX_AGE - 1),
            jar.value(2, 7, NOW),
            jar.legacy_value(7)
        );
        assert_eq!(jar.read(&header, NOW), Some(2));
    }

    /// A header stuffed with forged pairs (issue 26: 567 of them added 20-30 ms to a
    /// request) costs one MAC: the first well-formed pair's whose tag is not known already.
    #[test]
    fn a_header_of_many_forged_pairs_costs_one_mac() {
        let jar = jar();
        let forged: Vec<String> = (0..567u64)
            .map(|i| format!("cohort={}.{:016x}.{NOW:x}.{:016x}", i % 10, ID + i, i))
            .collect();
        let header = forged.join("; ");
        let macs = |header: &str| {
            let before = jar.macs.get();
            let got = jar.read_client(header, NOW);
            (got, jar.macs.get() - before)
        };
        assert_eq!(macs(&header), (None, 1));
        // The same for the previous format's shape.
        let v2: Vec<String> = (0..567u64)
            .map(|i| format!("cohort={}.{:016x}.{:016x}", i % 10, ID + i, i))
            .collect();
        assert_eq!(macs(&v2.join("; ")), (None, 1));
        // The oldest format's tags cost one MAC per cohort per isolate, then none.
        let v1: Vec<String> = (0..567u64)
            .map(|i| format!("cohort={}.{:016x}", i % 10, i))
            .collect();
        assert_eq!(macs(&v1.join("; ")), (None, 10));
        assert_eq!(macs(&v1.join("; ")), (None, 0));
        // Malformed or expired pairs cost nothing.
        let junk = format!(
            "cohort=x; cohort=1.2; cohort={}",
            jar.value(1, 7, NOW - MAX_AGE - 1)
        );
        assert_eq!(macs(&junk), (None, 0));
        // A genuine cookie behind forged pairs of the oldest format is verified (their tags
        // are known); behind forged pairs of the current one, only once this isolate has
        // verified it (a previous request), from its cached tag.
        let good = jar.value(4, 0xfeed, NOW);
        let valid = Some(Verified {
            cohort: 4,
            client: Some(0xfeed),
            issued: Some(NOW),
        });
        let behind = format!("{header}; cohort={good}");
        assert_eq!(
            macs(&behind),
            (None, 1),
            "the MAC went to the first forged pair"
        );
        assert_eq!(
            macs(&format!("{}; cohort={good}", v1.join("; "))),
            (valid, 1)
        );
        assert_eq!(macs(&behind), (valid, 1), "found from its cached tag");
    }
}
