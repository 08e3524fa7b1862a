//! Raw request paths, as the worker hands them to `route::parse` (floating `/<bundle>/<file>`,
//! pinned `/<bundle>@<version>/<file>`, `/__canary/...`, percent-encoded or not).
//!
//! Properties (see `check_path`): an accepted asset path yields an R2 key under
//! `<bundle>/<version>/` for every version, with only plain segments (no `.`, `..`, empty,
//! `\` or control characters, so no resolver can climb out); its pinned path (the edge cache
//! key) is a plain URL path that re-parses to the same asset; over-long paths are 400s.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The worker only ever sees UTF-8 paths (a URL's path is ASCII, percent-encoded).
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let _ = canary_edge_fuzz::check_path(raw);
});
