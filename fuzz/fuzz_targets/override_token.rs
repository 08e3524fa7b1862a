//! Signed override tokens (`x-canary-override` header / `canary_override` cookie), through
//! `OverrideKey::verify`.
//!
//! Input: either a raw token, or a genuine token the harness issues and then edits (replace,
//! insert or delete one byte, or cut it short).
//!
//! Properties:
//! - issue/verify round trip: a genuine token grants its channel until its expiry, and
//!   nothing after;
//! - no forgery: whatever the token, a granted channel means the token is
//!   `v2.<this bundle>.<that channel>.<issued>.<expiry>.<tag>` (or the earlier
//!   `v1.<bundle>.<channel>.<expiry>.<tag>`) with an expiry not in the past, an issue time
//!   not before the revocation, and a tag equal to the first 16 bytes of
//!   HMAC-SHA256(secret, everything before the last dot), recomputed by the harness; tokens
//!   over 256 bytes are refused.
#![no_main]

use canary_core::edge::decide::Channel;
use canary_core::edge::override_token::OverrideKey;
use canary_edge_fuzz::{bundle, Fields};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"s3cret";
const BUNDLES: [&str; 3] = ["demo", "payments", "d"];

enum Token<'a> {
    Raw(&'a str),
    Edited {
        canary: bool,
        expires: u64,
        op: u8,
        at: u16,
        byte: u8,
    },
}

struct Input<'a> {
    bundle: &'a str,
    now: u64,
    token: Token<'a>,
}

impl<'a> Input<'a> {
    /// Lines `bundle:` (one of `BUNDLES`, else the first), `now:`, and either
    /// `x-canary-override: <token>` or `issue: <canary|stable> <expiry>` with
    /// `edit: <op 0-3> <at> <byte>`.
    fn parse(data: &'a [u8]) -> Option<Self> {
        let f = Fields::parse(data);
        let bundle = f
            .text("bundle")
            .and_then(|b| BUNDLES.iter().find(|k| **k == b))
            .unwrap_or(&BUNDLES[0]);
        let token = if let Some(t) = f.text("x-canary-override") {
            Token::Raw(t)
        } else {
            let issue = f.text("issue")?;
            let (channel, expires) = issue.split_once(' ')?;
            let mut edit = f
                .text("edit")
                .unwrap_or("")
                .split(' ')
                .map(|n| n.parse::<u16>().unwrap_or(0));
            Token::Edited {
                canary: channel == "canary",
                expires: expires.parse().ok()?,
                op: edit.next().unwrap_or(3) as u8,
                at: edit.next().unwrap_or(u16::MAX),
                byte: edit.next().unwrap_or(0) as u8,
            }
        };
        Some(Input {
            bundle,
            now: f.number("now").unwrap_or(0),
            token,
        })
    }
}

/// Tokens issued before this are revoked in the harness's config.
const NOT_BEFORE: u64 = 1_000;

fn check(key: &OverrideKey, token: &str, bundle_name: &str, now: u64) {
    let Some(channel) = key.verify(token, &bundle(bundle_name), now, NOT_BEFORE) else {
        return;
    };
    assert!(token.len() <= 256, "over-long token accepted");
    let t = token.trim();
    let (payload, tag_hex) = t.rsplit_once('.').expect("granted without a tag");
    let parts: Vec<&str> = payload.split('.').collect();
    assert_eq!(parts.len(), 5, "only v2 tokens survive a revocation: {t:?}");
    assert_eq!(parts[0], "v2", "{t:?}");
    assert_eq!(
        parts[1], bundle_name,
        "token for another bundle granted: {t:?}"
    );
    assert_eq!(parts[2], channel.as_str(), "{t:?}");
    let issued: u64 = parts[3].parse().expect("issue time");
    assert!(issued >= NOT_BEFORE, "revoked token granted: {t:?}");
    let expires: u64 = parts[4].parse().expect("expiry");
    assert!(expires >= now, "expired token granted: {t:?} at {now}");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(payload.as_bytes());
    let tag = mac.finalize().into_bytes();
    assert_eq!(
        hex::decode(tag_hex).ok().as_deref(),
        Some(&tag[..16]),
        "forged token granted: {t:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let key = OverrideKey::new(SECRET);
    let bundle_name = input.bundle;
    match input.token {
        Token::Raw(token) => check(&key, token, bundle_name, input.now),
        Token::Edited {
            canary,
            expires,
            op,
            at,
            byte,
        } => {
            let channel = if canary {
                Channel::Canary
            } else {
                Channel::Stable
            };
            let genuine = key.issue(&bundle(bundle_name), channel, NOT_BEFORE, expires);
            let granted = key.verify(&genuine, &bundle(bundle_name), input.now, NOT_BEFORE);
            assert_eq!(
                granted,
                (expires >= input.now).then_some(channel),
                "{genuine}"
            );
            assert_eq!(
                key.verify(&genuine, &bundle(bundle_name), input.now, NOT_BEFORE + 1),
                None,
                "revoked: {genuine}"
            );
            let other = if bundle_name == "demo" {
                "payments"
            } else {
                "demo"
            };
            assert_eq!(
                key.verify(&genuine, &bundle(other), 0, 0),
                None,
                "bundle-bound"
            );

            let mut bytes = genuine.into_bytes();
            let at = at as usize % (bytes.len() + 1);
            match op % 4 {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
            if let Ok(edited) = String::from_utf8(bytes) {
                check(&key, &edited, bundle_name, input.now);
            }
        }
    }
});
