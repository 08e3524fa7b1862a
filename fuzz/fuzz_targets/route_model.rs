//! Structured paths checked against a model of the contract.
//!
//! The harness builds `/<bundle>[@<version>]/<seg>/<seg>...` from chosen parts, percent-
//! encoding a fuzzer-chosen subset of each segment's characters (upper- or lower-case hex;
//! `/` and `%` always, since they are structure). Then:
//! - the parser must accept it exactly when the contract says so (valid bundle, valid pin,
//!   1..=32 segments that decode to non-empty, non-dot, <=255-byte segments without `/`,
//!   `\` or control characters, whole path <= 1024 bytes), with 404 for an unknown bundle
//!   or a missing file and 400 for the rest;
//! - an accepted path decodes to exactly the segments that were encoded, whatever subset was
//!   encoded (percent-encoding never changes which file is named);
//! - plus every property of `route_path` (R2 key prefix, cache key round trip).
#![no_main]

use arbitrary::Arbitrary;
use canary_core::edge::route::{Route, RouteError, MAX_RAW_PATH, MAX_SEGMENTS};
use canary_edge_fuzz::{bundle_ok, check_path, segment_ok, version_ok};
use libfuzzer_sys::fuzz_target;

const BUNDLES: [&str; 6] = ["demo", "payments", "a", "v2_widget", "x-1", "__canary"];
const VERSIONS: [&str; 6] = ["1.1.0", "1.5.0", "2.0.0-rc.1+build.7", "v3", "..", "1..0"];
const SEGMENTS: [&str; 12] = [
    "sdk.js",
    "chunks",
    "a.js",
    ".",
    "..",
    "",
    "my file.js",
    "✓.js",
    "a/b",
    "a\\b",
    "a\r\nX-Injected: 1",
    "%2e%2e",
];

#[derive(Arbitrary, Debug)]
enum Text {
    Known(u8),
    Raw(String),
}

impl Text {
    fn get<'a>(&'a self, known: &'a [&'a str]) -> &'a str {
        match self {
            Text::Known(i) => known[*i as usize % known.len()],
            Text::Raw(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Segment {
    text: Text,
    /// Bit `i % 64` set: encode the `i`-th character.
    encode: u64,
    lower_hex: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    bundle: Text,
    pin: Option<Text>,
    segments: Vec<Segment>,
}

fn encode_segment(seg: &Segment, text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if c == '/' || c == '%' || seg.encode & (1 << (i % 64)) != 0 {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                if seg.lower_hex {
                    out.push_str(&format!("%{b:02x}"));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Expect {
    Ops,
    Asset(String),
    NotFound,
    BadRequest,
}

fuzz_target!(|input: Input| {
    let bundle = input.bundle.get(&BUNDLES);
    let pin = input.pin.as_ref().map(|p| p.get(&VERSIONS));
    // Parts that would change the path's structure are not what this target models.
    if bundle.contains(['/', '@']) || pin.is_some_and(|p| p.contains('/')) {
        return;
    }
    let texts: Vec<&str> = input
        .segments
        .iter()
        .map(|s| s.text.get(&SEGMENTS))
        .collect();
    let encoded: Vec<String> = input
        .segments
        .iter()
        .zip(&texts)
        .map(|(s, t)| encode_segment(s, t))
        .collect();
    let file = encoded.join("/");
    let raw = match pin {
        Some(v) => format!("/{bundle}@{v}/{file}"),
        None => format!("/{bundle}/{file}"),
    };

    let expect = if raw.len() > MAX_RAW_PATH {
        Expect::BadRequest
    } else if raw == "/__canary" || raw.starts_with("/__canary/") {
        Expect::Ops
    } else if !bundle_ok(bundle) {
        Expect::NotFound
    } else if pin.is_some_and(|v| !version_ok(v)) {
        Expect::BadRequest
    } else if file.is_empty() {
        Expect::NotFound
    } else if texts.len() > MAX_SEGMENTS || !texts.iter().all(|t| segment_ok(t)) {
        Expect::BadRequest
    } else {
        Expect::Asset(texts.join("/"))
    };

    let got = match check_path(&raw) {
        Ok(Route::Ops(_)) => Expect::Ops,
        Ok(Route::Asset(a)) => {
            assert_eq!(a.bundle.as_str(), bundle, "{raw:?}");
            assert_eq!(a.pin.as_ref().map(|v| v.as_str()), pin, "{raw:?}");
            Expect::Asset(a.path)
        }
        Err(RouteError::NotFound(_)) => Expect::NotFound,
        Err(RouteError::BadRequest(_)) => Expect::BadRequest,
    };
    assert_eq!(got, expect, "path {raw:?}");
});
