//! The cohort cookie formats through `CohortCookie::value` and
//! `CohortCookie::verify_client`: the current one,
//! `<cohort>.<client id: 16 hex>.<issued: hex seconds>.<tag: 16 hex>`, and the previous
//! `<cohort>.<client id>.<tag>` (v2) and `<cohort>.<tag>` (v1).
//!
//! Input: byte 0 picks the cohort count, bytes 1-2 a cohort, bytes 3-10 a client id, bytes
//! 11-12 another cohort, bytes 13-20 another id, bytes 21-25 an issue time (40 bits), bytes
//! 26-27 the jar's `Max-Age` (in 10-minute steps), bytes 28-31 a signed offset from the issue
//! time to the verifier's clock, the rest an arbitrary cookie value.
//!
//! Properties:
//! - round trip: the value issued for (cohort, id, issued) verifies as exactly
//!   (cohort, Some(id), Some(issued)) at the issue time;
//! - the tag is HMAC-SHA256 over "cohort-v3", the cohort count, the cohort, the id and the
//!   issue time (first 8 bytes, lower-case hex), recomputed here independently;
//! - expiry: at any clock, the value verifies exactly when `issued <= now + 300` and
//!   `now - issued <= Max-Age`, whether or not this isolate verified (cached) it before;
//! - a tag never verifies for another id, cohort or issue time: moving a genuine tag onto
//!   any other (cohort, id, issued) is rejected;
//! - a v2 value (its own "cohort-v2" MAC, recomputed here) verifies for its cohort with no
//!   id and no issue time, at any clock; a v1 value too;
//! - arbitrary values never panic, and a value that verifies is exactly the canonical value
//!   of what it verified as (one spelling per client), in range.
#![no_main]

use canary_core::edge::cookie::{CohortCookie, Verified, CLOCK_SKEW_SECS};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"canary-edge";
/// Bytes before the arbitrary value.
const FIXED: usize = 32;

fn cohorts_of(b: u8) -> u16 {
    match b % 4 {
        0 => 10,
        1 => 100,
        2 => 1000,
        _ => 1 + u16::from(b) % 1000,
    }
}

fn u64_at(data: &[u8], at: usize, len: usize) -> u64 {
    data[at..at + len]
        .iter()
        .fold(0, |acc, &b| acc << 8 | u64::from(b))
}

fn oracle_tag(parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(&mac.finalize().into_bytes()[..8])
}

fn v3_tag(cohorts: u16, cohort: u16, client: u64, issued: u64) -> String {
    oracle_tag(&[
        b"cohort-v3",
        &cohorts.to_be_bytes(),
        &cohort.to_be_bytes(),
        &client.to_be_bytes(),
        &issued.to_be_bytes(),
    ])
}

fuzz_target!(|data: &[u8]| {
    if data.len() < FIXED {
        return;
    }
    let cohorts = cohorts_of(data[0]);
    let cohort = u16::from_be_bytes([data[1], data[2]]) % cohorts;
    let client = u64_at(data, 3, 8);
    let other_cohort = u16::from_be_bytes([data[11], data[12]]) % cohorts;
    let other_client = u64_at(data, 13, 8);
    let issued = u64_at(data, 21, 5);
    let max_age = u64_at(data, 26, 2) * 600;
    let offset = i64::from(i32::from_be_bytes([data[28], data[29], data[30], data[31]]));
    let now = issued.saturating_add_signed(offset);
    let jar = CohortCookie::new("cohort", SECRET, cohorts, max_age as i64);

    // Round trip, and the documented format.
    let value = jar.value(cohort, client, issued);
    let tag = v3_tag(cohorts, cohort, client, issued);
    assert_eq!(value, format!("{cohort}.{client:016x}.{issued:x}.{tag}"));
    let genuine = Some(Verified {
        cohort,
        client: Some(client),
        issued: Some(issued),
    });

    // Expiry, before and after the value is cached, and back at the issue time.
    let fresh =
        issued <= now.saturating_add(CLOCK_SKEW_SECS) && now.saturating_sub(issued) <= max_age;
    let expected = if fresh { genuine } else { None };
    assert_eq!(
        jar.verify_client(&value, now),
        expected,
        "{value} at {now}, max age {max_age}"
    );
    assert_eq!(
        jar.verify_client(&value, issued),
        genuine,
        "{value} at its issue time"
    );
    assert_eq!(
        jar.verify_client(&value, now),
        expected,
        "cached {value} at {now}"
    );

    // A genuine tag moved onto another (cohort, id, issued) never verifies.
    for (c, id, at) in [
        (other_cohort, other_client, issued),
        (cohort, client, issued ^ 1),
        (other_cohort, client, issued),
        (cohort, other_client, issued),
    ] {
        if (c, id, at) != (cohort, client, issued) {
            let moved = format!("{c}.{id:016x}.{at:x}.{tag}");
            assert_eq!(
                jar.verify_client(&moved, issued),
                None,
                "{moved} took the tag of {value}"
            );
        }
    }

    // The previous formats: the cohort only, at any clock.
    let v2 = format!(
        "{cohort}.{client:016x}.{}",
        oracle_tag(&[
            b"cohort-v2",
            &cohorts.to_be_bytes(),
            &cohort.to_be_bytes(),
            &client.to_be_bytes(),
        ])
    );
    assert_eq!(jar.v2_value(cohort, client), v2);
    let previous = Some(Verified {
        cohort,
        client: None,
        issued: None,
    });
    assert_eq!(jar.verify_client(&v2, now), previous, "{v2}");
    assert_eq!(jar.verify_client(&jar.legacy_value(cohort), now), previous);

    // Arbitrary values: no panic; a success is canonical and in range.
    if let Ok(text) = std::str::from_utf8(&data[FIXED..]) {
        if let Some(v) = jar.verify_client(text, now) {
            assert!(v.cohort < cohorts);
            match (v.client, v.issued) {
                (Some(id), Some(at)) => {
                    assert_eq!(text, jar.value(v.cohort, id, at));
                    assert!(at <= now.saturating_add(CLOCK_SKEW_SECS));
                    assert!(now.saturating_sub(at) <= max_age);
                }
                (None, None) => match text.split('.').nth(1) {
                    Some(id) if text.matches('.').count() == 2 => {
                        let id = u64::from_str_radix(id, 16).expect("a hex id");
                        assert_eq!(text, jar.v2_value(v.cohort, id));
                    }
                    _ => assert_eq!(text, jar.legacy_value(v.cohort)),
                },
                other => panic!("{text} verified as {other:?}"),
            }
        }
        let _ = jar.read_client(text, now);
    }
});
