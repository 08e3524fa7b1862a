//! The operator console's session: an operator logs in once (with a token, or through
//! Cloudflare Access) and gets a short-lived signed cookie, so no token is ever kept where
//! a script can read it.
//!
//! - The cookie value is `v3.<issued ms>.<expires>.<scope>.<name hex>.<credential>.<id>.<tag>`:
//!   `tag` is HMAC-SHA256 over the rest, keyed from the admin token (a new token ends every
//!   session); `id` is 128 random bits, what a logout revokes (`crate::ops::revocation`);
//!   `name` is who acts, recorded as `by`; `credential` names what the session was started
//!   with (`crate::ops::credential`), checked against the current secrets on every request. A
//!   `v2` cookie (before sessions named their credential) is refused: its holder logs in
//!   again.
//! - Writes made with the cookie also need the session's CSRF token in a request header:
//!   `csrf = HMAC(key, "csrf." + id)`, handed to the page by the login and session answers
//!   and kept in the page's memory only.
//! - Cookie: `__Host-canary_session`, `HttpOnly; Secure; SameSite=Strict; Path=/`, so it
//!   is bound to the console host (no `Domain`) and never sent to a bundle's host.
//! - The session and login answers go only to the console's own pages: see
//!   [`from_console_page`].

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::ops::credential::Bound;
use crate::ops::operators::{valid_name, Principal, Scope};

type HmacSha256 = Hmac<Sha256>;

pub const SESSION_COOKIE: &str = "__Host-canary_session";
/// The request header carrying the CSRF token on writes made with a session.
pub const CSRF_HEADER: &str = "x-canary-csrf";
/// How long a session lasts.
pub const SESSION_SECS: u64 = 8 * 3600;
/// Where the console's pages live; the session answers go only to requests from them.
pub const CONSOLE_PATH: &str = "/__canary/ui/";
const TAG_BYTES: usize = 16;
const MAX_COOKIE_CHARS: usize = 512;

#[derive(Clone)]
pub struct SessionKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// What a logout revokes (hex).
    pub id: String,
    pub principal: Principal,
    /// What it was started with, checked on every request (`credential::still_holds`).
    pub bound: Bound,
    pub issued_ms: u64,
    pub expires_unix: u64,
    /// What the page must send back on writes.
    pub csrf: String,
}

impl SessionKey {
    /// Keyed from the admin token, in its own domain (the token signs nothing else).
    pub fn new(admin_token: &str) -> Self {
        let mut derive = HmacSha256::new_from_slice(b"canary-edge session v2")
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        derive.update(admin_token.as_bytes());
        let key = derive.finalize().into_bytes();
        Self {
            mac: HmacSha256::new_from_slice(&key).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// A 128-bit MAC of `payload`, hex: the cookie's tag, the CSRF token, a credential.
    pub(crate) fn tag(&self, payload: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..TAG_BYTES])
    }

    /// A new session for `principal` from 128 random bits, valid for `SESSION_SECS`: the
    /// cookie value and the session. `None` when the name cannot be carried.
    pub fn issue(
        &self,
        principal: &Principal,
        bound: Bound,
        id: [u8; 16],
        now_ms: u64,
    ) -> Option<(String, Session)> {
        if !valid_name(&principal.name) {
            return None;
        }
        let id = hex::encode(id);
        let expires = now_ms / 1000 + SESSION_SECS;
        let payload = format!(
            "v3.{now_ms}.{expires}.{}.{}.{}.{id}",
            principal.scope.as_str(),
            hex::encode(&principal.name),
            bound.encode()
        );
        let value = format!("{payload}.{}", self.tag(&payload));
        let session = Session {
            csrf: self.tag(&format!("csrf.{id}")),
            id,
            principal: principal.clone(),
            bound,
            issued_ms: now_ms,
            expires_unix: expires,
        };
        Some((value, session))
    }

    /// The session a cookie value carries, if it is ours and current. Whether it was
    /// revoked (`crate::ops::revocation`) and whether its credential still holds
    /// (`crate::ops::credential`) are the caller's next checks.
    pub fn verify(&self, value: &str, now_ms: u64) -> Option<Session> {
        if value.len() > MAX_COOKIE_CHARS {
            return None;
        }
        let (payload, tag) = value.rsplit_once('.')?;
        let expected = self.tag(payload);
        if !bool::from(expected.as_bytes().ct_eq(tag.as_bytes())) {
            return None;
        }
        let fields: Vec<&str> = payload.split('.').collect();
        let ["v3", issued, expires, scope, name, bound, id] = fields.as_slice() else {
            return None;
        };
        let issued_ms: u64 = issued.parse().ok()?;
        let expires: u64 = expires.parse().ok()?;
        let name = String::from_utf8(hex::decode(name).ok()?).ok()?;
        if now_ms / 1000 >= expires || id.len() != 32 || !valid_name(&name) {
            return None;
        }
        Some(Session {
            csrf: self.tag(&format!("csrf.{id}")),
            id: (*id).to_owned(),
            principal: Principal {
                name,
                scope: Scope::parse(scope)?,
            },
            bound: Bound::decode(bound)?,
            issued_ms,
            expires_unix: expires,
        })
    }

    /// The session of a `Cookie` header, if one verifies.
    pub fn from_cookie_header(&self, header: Option<&str>, now_ms: u64) -> Option<Session> {
        crate::edge::http::cookie_values(header?, SESSION_COOKIE)
            .find_map(|value| self.verify(value, now_ms))
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
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={SESSION_SECS}; HttpOnly; Secure; SameSite=Strict"
    )
}

/// `Set-Cookie` that ends the session in the browser (the server revokes it too).
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// What a browser says about where a request comes from (Fetch Metadata, `Origin`,
/// `Referer`); all absent for a non-browser client.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSource<'a> {
    pub sec_fetch_site: Option<&'a str>,
    pub sec_fetch_dest: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub referer: Option<&'a str>,
}

/// Whether a request that uses or hands out a session comes from one of the console's own
/// pages at `console_origin` (`https://ops.example.com`): a same-origin `fetch` (not a
/// navigation, frame, script or image load) whose `Origin`, when sent, is the console's,
/// and whose `Referer` is a console page. A browser always sends `Sec-Fetch-Site`
/// (Chromium, Firefox and Safari do), so when it is present the `Referer` must be too (the
/// console's pages send it: `Referrer-Policy: same-origin`). A client sending none of
/// these is no browser, and has no operator's cookie to borrow; the CSRF token still
/// guards its writes.
pub fn from_console_page(src: &RequestSource<'_>, console_origin: &str) -> Result<(), String> {
    if let Some(site) = src.sec_fetch_site {
        if site != "same-origin" {
            return Err(format!("Sec-Fetch-Site is {site:?}, not same-origin"));
        }
    }
    if let Some(dest) = src.sec_fetch_dest {
        if dest != "empty" {
            return Err(format!("Sec-Fetch-Dest is {dest:?}, not a fetch"));
        }
    }
    if let Some(origin) = src.origin {
        if origin != console_origin {
            return Err(format!("Origin {origin:?} is not the console's"));
        }
    }
    let console_page = format!("{console_origin}{CONSOLE_PATH}");
    match src.referer {
        Some(referer) if !referer.starts_with(&console_page) => {
            Err("the Referer is not a console page".into())
        }
        None if src.sec_fetch_site.is_some() => Err("a browser request without a Referer".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const KEY_TOKEN: &str = "admin-token-0123456789abcdef012345";

    fn alice() -> Principal {
        Principal {
            name: "alice@example.com".into(),
            scope: Scope::Write,
        }
    }

    fn bound() -> Bound {
        Bound::Token("0123456789abcdef".into())
    }

    #[test]
    fn a_session_round_trips_with_its_principal_and_credential_and_expires() {
        let key = SessionKey::new(KEY_TOKEN);
        let (value, session) = key.issue(&alice(), bound(), [7; 16], NOW).unwrap();
        assert!(value.starts_with("v3."), "{value}");
        assert_eq!(key.verify(&value, NOW + 10), Some(session.clone()));
        assert_eq!(session.principal, alice());
        assert_eq!(session.bound, bound());
        assert_eq!(
            key.verify(&value, NOW + SESSION_SECS * 1000),
            None,
            "expired"
        );
        let header = format!("other=1; {SESSION_COOKIE}={value}; cohort=3.x.y");
        assert_eq!(
            key.from_cookie_header(Some(&header), NOW),
            Some(session.clone())
        );
        assert!(session.csrf_matches(Some(&session.csrf)));
        assert!(!session.csrf_matches(None));
        assert!(!session.csrf_matches(Some("0000")));
        let (_, other) = key.issue(&alice(), bound(), [8; 16], NOW).unwrap();
        assert_ne!(other.csrf, session.csrf, "one CSRF token per session");
        let (access, s) = key.issue(&alice(), Bound::Access, [9; 16], NOW).unwrap();
        assert_eq!(
            key.verify(&access, NOW).map(|s| s.bound),
            Some(Bound::Access)
        );
        assert_eq!(s.bound, Bound::Access);
        let bad_name = Principal {
            name: "a b".into(),
            scope: Scope::Read,
        };
        assert!(key.issue(&bad_name, bound(), [1; 16], NOW).is_none());
    }

    #[test]
    fn forged_tampered_old_or_foreign_sessions_are_refused() {
        let key = SessionKey::new(KEY_TOKEN);
        let (value, _) = key.issue(&alice(), bound(), [7; 16], NOW).unwrap();
        let foreign = SessionKey::new("another-token-0123456789abcdef0123")
            .issue(&alice(), bound(), [7; 16], NOW)
            .unwrap()
            .0;
        let read_only = value.replacen(".write.", ".read.", 1);
        let other_credential = value.replacen(".t0123456789abcdef.", ".access.", 1);
        let mut flipped = value.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        let v1 = "v1.1900000000.07070707070707070707070707070707.0123456789abcdef0123456789abcdef";
        // A v2 cookie, correctly signed: it names no credential, so it is not vouched for.
        let v2_payload = format!(
            "v2.{NOW}.{}.write.{}.{}",
            NOW / 1000 + 60,
            hex::encode("alice@example.com"),
            "07".repeat(16)
        );
        let v2 = format!("{v2_payload}.{}", key.tag(&v2_payload));
        for bad in [
            "",
            "v2",
            "v2.1.2.3",
            v1,
            v2.as_str(),
            foreign.as_str(),
            read_only.as_str(),
            other_credential.as_str(),
            flipped.as_str(),
            &format!("{value}.extra"),
            &"x".repeat(600),
        ] {
            assert_eq!(key.verify(bad, NOW), None, "{bad:?}");
        }
        assert_eq!(key.from_cookie_header(None, NOW), None);
        let old_name = format!("canary_session={value}");
        assert_eq!(
            key.from_cookie_header(Some(&old_name), NOW),
            None,
            "only the __Host- cookie counts"
        );
    }

    #[test]
    fn cookie_attributes() {
        let set = set_cookie("v");
        assert!(set.starts_with("__Host-canary_session=v;"), "{set}");
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/;",
            "Max-Age=28800",
        ] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(!set.to_ascii_lowercase().contains("domain"), "host-only");
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn only_the_consoles_own_pages_get_a_session() {
        const ORIGIN: &str = "https://ops.example.com";
        let page = "https://ops.example.com/__canary/ui/#/bundle/demo";
        let browser = |site, dest, origin, referer| RequestSource {
            sec_fetch_site: Some(site),
            sec_fetch_dest: Some(dest),
            origin,
            referer,
        };
        let ok = [
            browser("same-origin", "empty", None, Some(page)),
            browser("same-origin", "empty", Some(ORIGIN), Some(page)),
            RequestSource::default(),
        ];
        for src in ok {
            assert_eq!(from_console_page(&src, ORIGIN), Ok(()), "{src:?}");
        }
        let refused = [
            browser("same-site", "empty", None, Some(page)),
            browser("cross-site", "empty", Some("https://sdk.example.com"), None),
            browser("none", "document", None, None),
            browser("same-origin", "document", None, Some(page)),
            browser("same-origin", "iframe", None, Some(page)),
            browser("same-origin", "script", None, Some(page)),
            browser("same-origin", "empty", Some("null"), Some(page)),
            browser("same-origin", "empty", None, None),
            browser(
                "same-origin",
                "empty",
                None,
                Some("https://ops.example.com/other"),
            ),
            browser(
                "same-origin",
                "empty",
                None,
                Some("https://ops.example.com.evil.net/__canary/ui/"),
            ),
            RequestSource {
                origin: Some("https://sdk.example.com"),
                ..Default::default()
            },
        ];
        for src in refused {
            assert!(from_console_page(&src, ORIGIN).is_err(), "{src:?}");
        }
    }
}
