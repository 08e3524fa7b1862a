//! The `Cookie` request header, read by `CohortCookie::read`.
//!
//! Input: byte 0 picks the cohort count (bits 0-2), the cookie name (bits 3-4) and whether
//! 64 KiB of other cookies go before or after the header (bits 5-6), byte 1 a cohort `k`,
//! the rest is the header (UTF-8, as the runtime hands it over).
//!
//! Properties:
//! - a cohort read from a header is always in `[0, COHORTS)`;
//! - no forgery: a cohort is read only if the header carries that cohort's exact signed
//!   value, which the harness recomputes itself (HMAC-SHA256, first 8 bytes in hex, over
//!   "cohort-v3", the cohort count, the cohort, the id and the issue time; or a previous
//!   format's: "cohort-v2", count, cohort and id, or count and cohort), so the tag cannot
//!   be chosen by the client;
//! - `Set-Cookie` round trip: the pair the worker sets reads back as the same cohort until
//!   `Max-Age` has passed, not after, and carries `Path=/`, `Secure`, `HttpOnly`,
//!   `SameSite=None`, `Partitioned`, `Max-Age`;
//! - the first valid cookie wins: appending a valid cookie to any header (within the scan
//!   limit, after `; ` or after `, ` as when a runtime joins two `Cookie` lines) yields the
//!   header's own cohort if it had one, else the appended one; prepending one yields the
//!   prepended one;
//! - only the first 64 KiB are read: a cohort read is signed within them, a cookie behind
//!   64 KiB of others is not read, and other cookies after the header change nothing.
#![no_main]

use std::sync::OnceLock;

use canary_core::edge::cookie::{CohortCookie, CLOCK_SKEW_SECS, MAX_COOKIE_SCAN};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

/// The default secret: with no `COHORT_SECRET`, the salt signs the cookie.
const SECRET: &[u8] = b"canary-edge";
/// Cookie names a deployment may configure (RFC 7230 tokens).
const NAMES: [&str; 4] = ["cohort", "__Host-cohort", "c", "x.y!#$%&'*+-^_`|~"];
/// The verifier's clock and the cookies' issue time (seconds), and their `Max-Age`.
const NOW: u64 = 1_800_000_000;
const MAX_AGE: u64 = 31_536_000;

fn cohorts_of(b: u8) -> u16 {
    match b % 8 {
        0..=3 => 10,
        4 => 1,
        5 => 100,
        6 => 1000,
        _ => 1 + u16::from(b) * 7 % 1000,
    }
}

/// The first 8 bytes of HMAC-SHA256 under `secret` over `parts`, in hex.
fn tag(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// The current format's signed value of `cohort`, `client` and `issued`, computed from the
/// format.
fn expected_v3(secret: &[u8], cohorts: u16, cohort: u16, client: u64, issued: u64) -> String {
    let t = tag(
        secret,
        &[
            b"cohort-v3",
            &cohorts.to_be_bytes(),
            &cohort.to_be_bytes(),
            &client.to_be_bytes(),
            &issued.to_be_bytes(),
        ],
    );
    format!("{cohort}.{client:016x}.{issued:x}.{t}")
}

/// The v2 format's signed value of `cohort` and `client`, computed from the format.
fn expected_v2(secret: &[u8], cohorts: u16, cohort: u16, client: u64) -> String {
    let t = tag(
        secret,
        &[
            b"cohort-v2",
            &cohorts.to_be_bytes(),
            &cohort.to_be_bytes(),
            &client.to_be_bytes(),
        ],
    );
    format!("{cohort}.{client:016x}.{t}")
}

/// The v1 format's signed value of `cohort`, computed from the format, not by the code
/// under test.
fn expected_value(secret: &[u8], cohorts: u16, cohort: u16) -> String {
    let t = tag(secret, &[&cohorts.to_be_bytes(), &cohort.to_be_bytes()]);
    format!("{cohort}.{t}")
}

/// Whether `text` (lower-cased) carries a genuine previous-format value of `cohort`: the v1
/// value, or a v2 value for the id written after `<cohort>.`.
fn carries_previous(text: &[u8], secret: &[u8], cohorts: u16, cohort: u16) -> bool {
    let text = text.to_ascii_lowercase();
    let v1 = expected_value(secret, cohorts, cohort);
    let prefix = format!("{cohort}.");
    text.windows(v1.len()).any(|w| w == v1.as_bytes())
        || (0..text.len()).any(|i| {
            let rest = &text[i..];
            let Some(id) = rest
                .strip_prefix(prefix.as_bytes())
                .and_then(|r| r.get(..16))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            else {
                return false;
            };
            rest.starts_with(expected_v2(secret, cohorts, cohort, id).as_bytes())
        })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cohorts = cohorts_of(data[0]);
    let name = NAMES[(data[0] as usize / 8) % NAMES.len()];
    let k = u16::from(data[1]) % cohorts;
    let Ok(text) = std::str::from_utf8(&data[2..]) else {
        return;
    };
    // Big merchant cookies around ours; `pad` is more than the scan limit on its own.
    static PAD: OnceLock<String> = OnceLock::new();
    let pad = PAD.get_or_init(|| format!("pad={}", "p".repeat(MAX_COOKIE_SCAN)));
    let padded;
    let header = match (data[0] >> 5) & 3 {
        1 => {
            padded = format!("{pad}; {text}");
            padded.as_str()
        }
        2 => {
            padded = format!("{text}; {pad}");
            padded.as_str()
        }
        _ => text,
    };
    let jar = CohortCookie::new(name, SECRET, cohorts, MAX_AGE as i64);

    // The signed values match the documented formats.
    let client = u64::from(data[1]).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    assert_eq!(jar.legacy_value(k), expected_value(SECRET, cohorts, k));
    assert_eq!(
        jar.v2_value(k, client),
        expected_v2(SECRET, cohorts, k, client)
    );
    let value_k = jar.value(k, client, NOW);
    assert_eq!(value_k, expected_v3(SECRET, cohorts, k, client, NOW));

    // In range, and never without the genuine signed value in the scanned part of the
    // header (compared ignoring case: an upper-case hex tag is the same tag).
    let read = jar.read(header, NOW);
    if let Some(v) = jar.read_client(header, NOW) {
        let c = v.cohort;
        assert!(c < cohorts, "cohort {c} of {cohorts} from {header:?}");
        let scanned = &header.as_bytes()[..header.len().min(MAX_COOKIE_SCAN)];
        match (v.client, v.issued) {
            (Some(id), Some(at)) => {
                let genuine = expected_v3(SECRET, cohorts, c, id, at);
                assert!(
                    scanned
                        .to_ascii_lowercase()
                        .windows(genuine.len())
                        .any(|w| w == genuine.as_bytes()),
                    "cohort {c} read from {header:?} without its signed value {genuine}"
                );
                assert!(
                    at <= NOW + CLOCK_SKEW_SECS && NOW - at.min(NOW) <= MAX_AGE,
                    "expired {at}"
                );
            }
            (None, None) => assert!(
                carries_previous(scanned, SECRET, cohorts, c),
                "cohort {c} read from {header:?} without a signed previous-format value"
            ),
            other => panic!("{header:?} verified as {other:?}"),
        }
    }

    match (data[0] >> 5) & 3 {
        1 => assert_eq!(read, None, "cookie read past the scan limit: {text:?}"),
        2 if text.len() + 2 <= MAX_COOKIE_SCAN => {
            assert_eq!(
                read,
                jar.read(text, NOW),
                "cookies after {text:?} changed the cohort"
            )
        }
        _ => {}
    }

    // Set-Cookie round trip and attributes.
    let set = jar.set_cookie(k, client, NOW);
    let pair = set.split(';').next().unwrap();
    assert_eq!(pair, format!("{name}={value_k}"));
    assert_eq!(jar.read(pair, NOW), Some(k), "{set}");
    assert_eq!(jar.read(pair, NOW + MAX_AGE), Some(k), "{set}");
    assert_eq!(jar.read(pair, NOW + MAX_AGE + 1), None, "expired {set}");
    for attr in [
        "; Path=/",
        "; Secure",
        "; HttpOnly",
        "; SameSite=None",
        "; Partitioned",
        "; Max-Age=31536000",
    ] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }

    // First valid cookie wins, whatever junk surrounds it.
    for separator in ["; ", ", "] {
        let appended = format!("{header}{separator}{name}={value_k}");
        if appended.len() <= MAX_COOKIE_SCAN {
            assert_eq!(
                jar.read(&appended, NOW),
                Some(read.unwrap_or(k)),
                "appended to {header:?} after {separator:?}"
            );
        }
    }
    let prepended = format!("{name}={value_k}; {header}");
    if prepended.len() <= MAX_COOKIE_SCAN {
        assert_eq!(
            jar.read(&prepended, NOW),
            Some(k),
            "prepended to {header:?}"
        );
    }

    // A jar with another secret or another cohort count never accepts these values.
    let other = CohortCookie::new(name, b"another secret", cohorts, MAX_AGE as i64);
    if let Some(v) = other.read_client(header, NOW) {
        let secret = b"another secret";
        let carried = match (v.client, v.issued) {
            (Some(id), Some(at)) => {
                let genuine = expected_v3(secret, cohorts, v.cohort, id, at);
                header.to_ascii_lowercase().contains(&genuine)
            }
            _ => carries_previous(header.as_bytes(), secret, cohorts, v.cohort),
        };
        assert!(carried, "{header:?}");
    }
    assert_eq!(
        other.read(pair, NOW),
        None,
        "foreign secret accepted {pair}"
    );
});
