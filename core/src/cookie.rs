//! The sticky cohort cookie: `cohort=<n>.<tag>`, where `tag` is a truncated HMAC-SHA256 of
//! the cohort and the cohort count. A client can delete the cookie (and get a new cohort)
//! but cannot pick its own: an edited, out-of-range or foreign value fails the check and is
//! replaced. Signing the cohort count too means a change of `COHORTS` re-buckets everyone
//! cleanly instead of reading old numbers against a new range.

use std::cell::OnceCell;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Hex characters of the tag kept in the cookie: 64 bits, plenty against guessing a cohort.
const TAG_HEX_LEN: usize = 16;

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
    /// The tag of each cohort, computed on first use: there are only `cohorts` valid
    /// cookies, so after warm-up a check is a table look-up, not an HMAC per request.
    tags: Vec<OnceCell<String>>,
    /// The whole `Set-Cookie` value of each cohort, likewise computed once.
    set_cookies: Vec<OnceCell<String>>,
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
            set_cookies: (0..cohorts).map(|_| OnceCell::new()).collect(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
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

    /// The cookie value for `cohort`.
    pub fn value(&self, cohort: u16) -> String {
        format!("{cohort}.{}", self.tag(cohort))
    }

    /// A `Set-Cookie` header value pinning `cohort`.
    pub fn set_cookie(&self, cohort: u16) -> String {
        let build = || format!("{}={}{}", self.name, self.value(cohort), self.attributes);
        match self.set_cookies.get(usize::from(cohort)) {
            Some(cell) => cell.get_or_init(build).clone(),
            None => build(),
        }
    }

    /// Checks one cookie value; `None` for anything but a well-formed, in-range, correctly
    /// signed cohort.
    pub fn verify(&self, value: &str) -> Option<u16> {
        let (number, tag) = value.split_once('.')?;
        let canonical = number == "0" || !number.starts_with('0');
        if number.is_empty()
            || number.len() > 5
            || !canonical
            || !number.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let cohort: u16 = number.parse().ok()?;
        if cohort >= self.cohorts || tag.len() != TAG_HEX_LEN {
            return None;
        }
        // Constant-time comparison with the one valid tag of this cohort.
        let genuine = bool::from(self.tag(cohort).as_bytes().ct_eq(tag.as_bytes()));
        genuine.then_some(cohort)
    }

    /// The cohort from a `Cookie` request header: the first of our cookies that verifies.
    /// Pairs are split on `;` and also `,` (never part of a cookie value), which is how a
    /// runtime joins two `Cookie` header lines; bytes past `MAX_COOKIE_SCAN` are not read,
    /// and pairs that are not UTF-8 are skipped.
    pub fn read(&self, header: &str) -> Option<u16> {
        let scanned = &header.as_bytes()[..header.len().min(MAX_COOKIE_SCAN)];
        scanned
            .split(|&b| b == b';' || b == b',')
            .filter_map(|pair| std::str::from_utf8(pair).ok())
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == self.name)
            .find_map(|(_, value)| self.verify(value.trim_matches('"')))
    }
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

    fn jar() -> CohortCookie {
        CohortCookie::new("cohort", b"secret", 10, 31_536_000)
    }

    #[test]
    fn set_cookie_parses_with_the_cookie_crate_and_has_the_cross_site_attributes() {
        let header = jar().set_cookie(3);
        let parsed = cookie::Cookie::parse(header.as_str()).expect("a valid Set-Cookie");
        assert_eq!(parsed.name(), "cohort");
        assert_eq!(jar().verify(parsed.value()), Some(3));
        assert_eq!(parsed.path(), Some("/"));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.same_site(), Some(cookie::SameSite::None));
        assert_eq!(parsed.partitioned(), Some(true));
        assert_eq!(
            parsed.max_age().map(|d| d.whole_seconds()),
            Some(31_536_000)
        );
        assert!(header.starts_with("cohort=3."), "{header}");
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
            let header = format!("a=1; cohort={}; b=2", jar.value(cohort));
            assert_eq!(jar.read(&header), Some(cohort), "{header}");
        }
    }

    #[test]
    fn tampered_foreign_or_out_of_range_values_are_rejected() {
        let jar = jar();
        let good = jar.value(4);
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
            format!("cohort={}", other_jar.value(4)),
            format!("cohort={}", hundred.value(4)),
            format!("cohort={}", hundred.value(42)),
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
        let good = jar.value(6);
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
            jar.value(2),
            jar.value(7)
        );
        assert_eq!(jar.read(&header), Some(2));
    }
}
