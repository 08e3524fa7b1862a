//! Signed overrides: a token that sends its holder to a chosen channel (typically the canary
//! at weight 0, for QA and synthetic probes), for one bundle, until it expires. A bare
//! `always`/`never` header would let any client opt itself in; this needs the secret.
//!
//! Format: `v2.<bundle>.<channel>.<issued unix secs>.<expiry unix secs>.<tag>`, `tag` =
//! hex of the first 16 bytes of HMAC-SHA256(secret, everything before the last dot). The
//! issue time is what revocation compares: a bundle's config may say
//! `overrides_not_before` (set by the `revoke-overrides` command), and every token issued
//! before it is void. Tokens of the earlier format `v1.<bundle>.<channel>.<expiry>.<tag>`
//! carry no issue time: they verify only while the bundle has never revoked overrides.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::BundleName;
use crate::edge::decide::Channel;

type HmacSha256 = Hmac<Sha256>;

/// Header and cookie that carry an override token. Must match scripts/canary.
pub const OVERRIDE_HEADER: &str = "x-canary-override";
pub const OVERRIDE_COOKIE: &str = "canary_override";
/// Longest validity an issued token may have.
pub const MAX_TTL_SECS: u64 = 7 * 24 * 3600;
const TAG_BYTES: usize = 16;

#[derive(Clone)]
pub struct OverrideKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for OverrideKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OverrideKey(..)")
    }
}

impl OverrideKey {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length.
        let mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        Self { mac }
    }

    fn tag(&self, payload: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        mac
    }

    /// Issues a token for `bundle` → `channel`, issued at `issued_unix`, valid until
    /// `expires_unix`.
    pub fn issue(
        &self,
        bundle: &BundleName,
        channel: Channel,
        issued_unix: u64,
        expires_unix: u64,
    ) -> String {
        let payload = format!(
            "v2.{bundle}.{}.{issued_unix}.{expires_unix}",
            channel.as_str()
        );
        let tag = self.tag(&payload).finalize().into_bytes();
        format!("{payload}.{}", hex::encode(&tag[..TAG_BYTES]))
    }

    /// The override token in a `Cookie` header (`canary_override=<token>`), if any.
    pub fn from_cookie_header(header: &str) -> Option<&str> {
        crate::edge::http::cookie_values(header, OVERRIDE_COOKIE).next()
    }

    /// The client id a holder of `token` counts as in health counts: one token, one client.
    pub fn holder_id(token: &str) -> u64 {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(token.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(b)
    }

    /// The channel a token grants for `bundle` at `now_unix`, if it is genuine, current,
    /// and not issued before `not_before_unix` (the bundle's `overrides_not_before`, or 0).
    pub fn verify(
        &self,
        token: &str,
        bundle: &BundleName,
        now_unix: u64,
        not_before_unix: u64,
    ) -> Option<Channel> {
        if token.len() > 256 {
            return None;
        }
        let (payload, tag_hex) = token.trim().rsplit_once('.')?;
        let parts: Vec<&str> = payload.splitn(7, '.').collect();
        let (b, ch, issued, exp) = match parts.as_slice() {
            ["v2", b, ch, issued, exp] => (*b, *ch, issued.parse::<u64>().ok()?, *exp),
            ["v1", b, ch, exp] => (*b, *ch, 0, *exp),
            _ => return None,
        };
        if b != bundle.as_str() || tag_hex.len() != TAG_BYTES * 2 {
            return None;
        }
        let tag = hex::decode(tag_hex).ok()?;
        self.tag(payload).verify_truncated_left(&tag).ok()?;
        let expires: u64 = exp.parse().ok()?;
        if expires < now_unix || issued < not_before_unix {
            return None;
        }
        match ch {
            "canary" => Some(Channel::Canary),
            "stable" => Some(Channel::Stable),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_cookie_is_found_among_others() {
        for (header, expected) in [
            ("canary_override=v1.a.b", Some("v1.a.b")),
            ("x=1; canary_override=tok; y=2", Some("tok")),
            ("xcanary_override=tok", None),
            ("cohort=3.abc", None),
            ("", None),
        ] {
            assert_eq!(
                OverrideKey::from_cookie_header(header),
                expected,
                "{header}"
            );
        }
    }

    fn demo() -> BundleName {
        BundleName::parse("demo").unwrap()
    }

    #[test]
    fn issued_tokens_verify_until_they_expire_or_are_revoked() {
        let key = OverrideKey::new(b"s3cret");
        let t = key.issue(&demo(), Channel::Canary, 500, 1_000);
        assert!(t.starts_with("v2.demo.canary.500.1000."), "{t}");
        assert_eq!(key.verify(&t, &demo(), 999, 0), Some(Channel::Canary));
        assert_eq!(key.verify(&t, &demo(), 1_000, 0), Some(Channel::Canary));
        assert_eq!(key.verify(&t, &demo(), 1_001, 0), None, "expired");
        assert_eq!(key.verify(&t, &demo(), 600, 500), Some(Channel::Canary));
        assert_eq!(key.verify(&t, &demo(), 600, 501), None, "revoked");
        let s = key.issue(&demo(), Channel::Stable, 0, 1_000);
        assert_eq!(key.verify(&s, &demo(), 0, 0), Some(Channel::Stable));
        // A token of the earlier format: no issue time, so void after any revocation.
        let payload = "v1.demo.canary.1000";
        let tag = key.tag(payload).finalize().into_bytes();
        let v1 = format!("{payload}.{}", hex::encode(&tag[..TAG_BYTES]));
        assert_eq!(key.verify(&v1, &demo(), 10, 0), Some(Channel::Canary));
        assert_eq!(key.verify(&v1, &demo(), 10, 1), None);
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let key = OverrideKey::new(b"s3cret");
        let t = key.issue(&demo(), Channel::Canary, 100, 5_000);
        let other = OverrideKey::new(b"other").issue(&demo(), Channel::Canary, 100, 5_000);
        let payments = BundleName::parse("payments").unwrap();
        let cases = [
            "always".to_string(),
            "canary".to_string(),
            other,
            t.replace("5000", "9999"),
            t.replace(".100.", ".200."),
            t.replace("canary", "stable"),
            format!("{t}0"),
            t[..t.len() - 1].to_string(),
            t.replace("v2.", "v1."),
            t.replace("v2.", "v3."),
            String::new(),
            "x".repeat(300),
        ];
        for bad in &cases {
            assert_eq!(key.verify(bad, &demo(), 0, 0), None, "{bad}");
        }
        assert_eq!(key.verify(&t, &payments, 0, 0), None, "bound to its bundle");
    }
}
