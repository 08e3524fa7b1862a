//! The current cohort cookie format, `<cohort>.<client id: 16 hex>.<tag: 16 hex>`, through
//! `CohortCookie::value` and `CohortCookie::verify_client`.
//!
//! Input: byte 0 picks the cohort count, bytes 1-2 a cohort, bytes 3-10 a client id, bytes
//! 11-12 another cohort, bytes 13-20 another id, the rest an arbitrary cookie value.
//!
//! Properties:
//! - round trip: the value issued for (cohort, id) verifies as exactly (cohort, Some(id));
//! - the tag is HMAC-SHA256 over "cohort-v2", the cohort count, the cohort and the id (first
//!   8 bytes, lower-case hex), recomputed here independently;
//! - a tag never verifies for another id or another cohort: moving a genuine tag onto any
//!   other (cohort, id) pair is rejected;
//! - arbitrary values never panic, and a value that verifies in the current format is exactly
//!   the canonical value of what it verified as (one spelling per client), in range.
#![no_main]

use canary_core::cookie::{CohortCookie, Verified};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"canary-edge";

fn cohorts_of(b: u8) -> u16 {
    match b % 4 {
        0 => 10,
        1 => 100,
        2 => 1000,
        _ => 1 + u16::from(b) % 1000,
    }
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[at..at + 8]);
    u64::from_be_bytes(b)
}

fn oracle_tag(cohorts: u16, cohort: u16, client: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(b"cohort-v2");
    mac.update(&cohorts.to_be_bytes());
    mac.update(&cohort.to_be_bytes());
    mac.update(&client.to_be_bytes());
    hex::encode(&mac.finalize().into_bytes()[..8])
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 21 {
        return;
    }
    let cohorts = cohorts_of(data[0]);
    let cohort = u16::from_be_bytes([data[1], data[2]]) % cohorts;
    let client = u64_at(data, 3);
    let other_cohort = u16::from_be_bytes([data[11], data[12]]) % cohorts;
    let other_client = u64_at(data, 13);
    let jar = CohortCookie::new("cohort", SECRET, cohorts, 60);

    // Round trip, and the documented format.
    let value = jar.value(cohort, client);
    let tag = oracle_tag(cohorts, cohort, client);
    assert_eq!(value, format!("{cohort}.{client:016x}.{tag}"));
    assert_eq!(
        jar.verify_client(&value),
        Some(Verified {
            cohort,
            client: Some(client)
        })
    );

    // A genuine tag moved onto another (cohort, id) never verifies.
    if (other_cohort, other_client) != (cohort, client) {
        let moved = format!("{other_cohort}.{other_client:016x}.{tag}");
        assert_eq!(jar.verify_client(&moved), None, "{moved} took the tag of {value}");
    }

    // Arbitrary values: no panic; a current-format success is canonical and in range.
    if let Ok(text) = std::str::from_utf8(&data[21..]) {
        if let Some(v) = jar.verify_client(text) {
            assert!(v.cohort < cohorts);
            match v.client {
                Some(id) => assert_eq!(text, jar.value(v.cohort, id)),
                None => assert_eq!(text, jar.legacy_value(v.cohort)),
            }
        }
        let _ = jar.read_client(text);
    }
});
