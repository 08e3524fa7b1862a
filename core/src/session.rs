//! The operator console's session: the admin token, entered once, is exchanged for a
//! short-lived signed cookie, so the token is never kept where a script can read it.
//!
//! - The cookie value is `v1.<expires>.<nonce>.<tag>`: `tag` is HMAC-SHA256 over the rest,
//!   keyed from the admin token (a new token ends every session).
//! - Writes made with the cookie also need the session's CSRF token in a request header:
//!   `csrf = HMAC(key, "csrf." + nonce)`, handed to the page by the login and session
//!   answers (JSON, same origin) and kept in the page's memory only. A cross-site page can
//!   neither read it nor, with `SameSite=Strict`, send the cookie.
//! - Cookie: `HttpOnly; Secure; SameSite=Strict; Path=/__canary/`.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub const SESSION_COOKIE: &str = "canary_session";
/// The request header carrying the CSRF token on writes made with a session.
pub const CSRF_HEADER: &str = "x-canary-csrf";
/// How long a session lasts.
pub const SESSION_SECS: u64 = 8 * 3600;
const COOKIE_PATH: &str = "/__canary/";
const TAG_BYTES: usize = 16;

#[derive(Clone)]
pub struct SessionKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// A verified session: what the page may send back as its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub csrf: String,
    pub expires_unix: u64,
}

impl SessionKey {
    /// Keyed from the admin token, in its own domain (the token signs nothing else).
    pub fn new(admin_token: &str) -> Self {
        let mut derive = HmacSha256::new_from_slice(b"canary-edge session v1")
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        derive.update(admin_token.as_bytes());
        let key = derive.finalize().into_bytes();
        Self {
            mac: HmacSha256::new_from_slice(&key).unwrap_or_else(|_| unreachable!()),
        }
    }

    fn tag(&self, payload: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..TAG_BYTES])
    }

    /// A new session from 128 random bits, valid until `now_unix + SESSION_SECS`: the
    /// cookie value and the session.
    pub fn issue(&self, nonce: [u8; 16], now_unix: u64) -> (String, Session) {
        let expires = now_unix + SESSION_SECS;
        let payload = format!("v1.{expires}.{}", hex::encode(nonce));
        let value = format!("{payload}.{}", self.tag(&payload));
        let session = Session {
            csrf: self.tag(&format!("csrf.{}", hex::encode(nonce))),
            expires_unix: expires,
        };
        (value, session)
    }

    /// The session a cookie value carries, if it is ours and not expired.
    pub fn verify(&self, value: &str, now_unix: u64) -> Option<Session> {
        if value.len() > 128 {
            return None;
        }
        let (payload, tag) = value.rsplit_once('.')?;
        let mut parts = payload.split('.');
        let (Some("v1"), Some(expires), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expected = self.tag(payload);
        if !bool::from(expected.as_bytes().ct_eq(tag.as_bytes())) {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        if now_unix >= expires || nonce.len() != 32 {
            return None;
        }
        Some(Session {
            csrf: self.tag(&format!("csrf.{nonce}")),
            expires_unix: expires,
        })
    }

    /// The session of a `Cookie` header, if any verifies.
    pub fn from_cookie_header(&self, header: Option<&str>, now_unix: u64) -> Option<Session> {
        crate::http::cookie_values(header?, SESSION_COOKIE)
            .find_map(|value| self.verify(value, now_unix))
    }
}

impl Session {
    /// Whether a write's CSRF header carries this session's token (constant time).
    pub fn csrf_matches(&self, header: Option<&str>) -> bool {
        header.is_some_and(|h| bool::from(h.trim().as_bytes().ct_eq(self.csrf.as_bytes())))
    }
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={SESSION_SECS}; HttpOnly; Secure; SameSite=Strict"
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// Whether a browser's `Sec-Fetch-Site` allows a write: the page itself (same origin) or a
/// request the user typed; absent (non-browser clients) is left to the CSRF token.
pub fn fetch_site_allows(sec_fetch_site: Option<&str>) -> bool {
    matches!(sec_fetch_site, None | Some("same-origin") | Some("none"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_session_round_trips_and_expires() {
        let key = SessionKey::new("admin-token");
        let (value, session) = key.issue([7; 16], NOW);
        assert_eq!(key.verify(&value, NOW + 10), Some(session.clone()));
        assert_eq!(key.verify(&value, NOW + SESSION_SECS), None, "expired");
        let header = format!("other=1; {SESSION_COOKIE}={value}; cohort=3.x.y");
        assert_eq!(
            key.from_cookie_header(Some(&header), NOW),
            Some(session.clone())
        );
        assert!(session.csrf_matches(Some(&session.csrf)));
        assert!(!session.csrf_matches(None));
        assert!(!session.csrf_matches(Some("0000")));
        let (_, other) = key.issue([8; 16], NOW);
        assert_ne!(other.csrf, session.csrf, "one CSRF token per session");
    }

    #[test]
    fn forged_tampered_or_foreign_sessions_are_refused() {
        let key = SessionKey::new("admin-token");
        let (value, _) = key.issue([7; 16], NOW);
        let foreign = SessionKey::new("another-token").issue([7; 16], NOW).0;
        let later = value.replacen(
            &format!("v1.{}", NOW + SESSION_SECS),
            &format!("v1.{}", NOW + 10 * SESSION_SECS),
            1,
        );
        let mut flipped = value.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            "",
            "v1",
            "v1.1.2.3",
            foreign.as_str(),
            later.as_str(),
            flipped.as_str(),
            &format!("{value}.extra"),
            &"x".repeat(200),
        ] {
            assert_eq!(key.verify(bad, NOW), None, "{bad:?}");
        }
        assert_eq!(key.from_cookie_header(None, NOW), None);
        assert_eq!(
            key.from_cookie_header(Some(&format!("{SESSION_COOKIE}={foreign}")), NOW),
            None
        );
    }

    #[test]
    fn cookie_attributes_and_fetch_site() {
        let set = set_cookie("v");
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/__canary/",
            "Max-Age=28800",
        ] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(clear_cookie().contains("Max-Age=0"));
        for (site, ok) in [
            (None, true),
            (Some("same-origin"), true),
            (Some("none"), true),
            (Some("same-site"), false),
            (Some("cross-site"), false),
        ] {
            assert_eq!(fetch_site_allows(site), ok, "{site:?}");
        }
    }
}
