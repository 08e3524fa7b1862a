//! The `Cookie` request header, read by `CohortCookie::read`.
//!
//! Input: byte 0 picks the cohort count (bits 0-2), the cookie name (bits 3-4) and whether
//! 64 KiB of other cookies go before or after the header (bits 5-6), byte 1 a cohort `k`,
//! the rest is the header (UTF-8, as the runtime hands it over).
//!
//! Properties:
//! - a cohort read from a header is always in `[0, COHORTS)`;
//! - no forgery: a cohort is read only if the header carries that cohort's exact signed
//!   value, which the harness recomputes itself (HMAC-SHA256 over the cohort count and the
//!   cohort, first 8 bytes in hex), so the tag cannot be chosen by the client;
//! - `Set-Cookie` round trip: the pair the worker sets reads back as the same cohort, and
//!   carries `Path=/`, `Secure`, `HttpOnly`, `SameSite=None`, `Partitioned`, `Max-Age`;
//! - the first valid cookie wins: appending a valid cookie to any header (within the scan
//!   limit, after `; ` or after `, ` as when a runtime joins two `Cookie` lines) yields the
//!   header's own cohort if it had one, else the appended one; prepending one yields the
//!   prepended one;
//! - only the first 64 KiB are read: a cohort read is signed within them, a cookie behind
//!   64 KiB of others is not read, and other cookies after the header change nothing.
#![no_main]

use std::sync::OnceLock;

use canary_core::cookie::{CohortCookie, MAX_COOKIE_SCAN};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

/// The default secret: with no `COHORT_SECRET`, the salt signs the cookie.
const SECRET: &[u8] = b"canary-edge";
/// Cookie names a deployment may configure (RFC 7230 tokens).
const NAMES: [&str; 4] = ["cohort", "__Host-cohort", "c", "x.y!#$%&'*+-^_`|~"];

fn cohorts_of(b: u8) -> u16 {
    match b % 8 {
        0..=3 => 10,
        4 => 1,
        5 => 100,
        6 => 1000,
        _ => 1 + u16::from(b) * 7 % 1000,
    }
}

/// The current format's signed value of `cohort` and `client`, computed from the format.
fn expected_v2(cohorts: u16, cohort: u16, client: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(b"cohort-v2");
    mac.update(&cohorts.to_be_bytes());
    mac.update(&cohort.to_be_bytes());
    mac.update(&client.to_be_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{cohort}.{client:016x}.{}", hex::encode(&tag[..8]))
}

/// The previous format's signed value of `cohort`, computed from the format, not by the
/// code under test.
fn expected_value(cohorts: u16, cohort: u16) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(&cohorts.to_be_bytes());
    mac.update(&cohort.to_be_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{cohort}.{}", hex::encode(&tag[..8]))
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
    let jar = CohortCookie::new(name, SECRET, cohorts, 31_536_000);

    // The signed values match the documented formats.
    let client = u64::from(data[1]).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    assert_eq!(jar.legacy_value(k), expected_value(cohorts, k));
    let value_k = jar.value(k, client);
    assert_eq!(value_k, expected_v2(cohorts, k, client));

    // In range, and never without the genuine signed value in the scanned part of the
    // header (compared ignoring case: an upper-case hex tag is the same tag).
    let read = jar.read(header);
    if let Some(v) = jar.read_client(header) {
        let c = v.cohort;
        assert!(c < cohorts, "cohort {c} of {cohorts} from {header:?}");
        let genuine = match v.client {
            None => expected_value(cohorts, c),
            Some(id) => expected_v2(cohorts, c, id),
        };
        let scanned = &header.as_bytes()[..header.len().min(MAX_COOKIE_SCAN)];
        assert!(
            scanned
                .to_ascii_lowercase()
                .windows(genuine.len())
                .any(|w| w == genuine.as_bytes()),
            "cohort {c} read from {header:?} without its signed value {genuine}"
        );
    }

    match (data[0] >> 5) & 3 {
        1 => assert_eq!(read, None, "cookie read past the scan limit: {text:?}"),
        2 if text.len() + 2 <= MAX_COOKIE_SCAN => {
            assert_eq!(
                read,
                jar.read(text),
                "cookies after {text:?} changed the cohort"
            )
        }
        _ => {}
    }

    // Set-Cookie round trip and attributes.
    let set = jar.set_cookie(k, client);
    let pair = set.split(';').next().unwrap();
    assert_eq!(pair, format!("{name}={value_k}"));
    assert_eq!(jar.read(pair), Some(k), "{set}");
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
                jar.read(&appended),
                Some(read.unwrap_or(k)),
                "appended to {header:?} after {separator:?}"
            );
        }
    }
    let prepended = format!("{name}={value_k}; {header}");
    if prepended.len() <= MAX_COOKIE_SCAN {
        assert_eq!(jar.read(&prepended), Some(k), "prepended to {header:?}");
    }

    // A jar with another secret or another cohort count never accepts these values.
    let other = CohortCookie::new(name, b"another secret", cohorts, 60);
    if let Some(v) = other.read_client(header) {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"another secret").unwrap();
        if let Some(id) = v.client {
            mac.update(b"cohort-v2");
            mac.update(&cohorts.to_be_bytes());
            mac.update(&v.cohort.to_be_bytes());
            mac.update(&id.to_be_bytes());
        } else {
            mac.update(&cohorts.to_be_bytes());
            mac.update(&v.cohort.to_be_bytes());
        }
        let tag = hex::encode(&mac.finalize().into_bytes()[..8]);
        assert!(header.to_ascii_lowercase().contains(&tag), "{header:?}");
    }
    assert_eq!(other.read(pair), None, "foreign secret accepted {pair}");
});
