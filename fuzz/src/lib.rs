//! Property checks shared by the fuzz targets. Each check is written from the contract
//! (SPEC.md and the module docs), not copied from the code under test, so a target fails
//! when the code and the contract disagree, not only when something panics.

use canary_core::config::{BundleName, Version};
use canary_core::edge::route::{
    self, AssetRoute, Route, RouteError, MAX_RAW_PATH, MAX_SEGMENTS, MAX_SEGMENT_LEN,
};

/// Versions every parsed asset is also keyed under (besides its own pin): the floating
/// form is served from whatever version the rollout names.
pub const SAMPLE_VERSIONS: [&str; 3] = ["1.5.0", "2.0.0-rc.1+build.7", "V_9-x.y+z"];

/// The contract of a bundle name: `[a-z0-9][a-z0-9_-]*`, at most 64 bytes.
pub fn bundle_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// The contract of a version: ASCII letters, digits and `.-+_`, starting with a letter or
/// digit, no `..`, at most 64 bytes.
pub fn version_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'_'))
        && !s.contains("..")
}

/// One decoded file-path segment that may go into an R2 key.
pub fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= MAX_SEGMENT_LEN
        && !s.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

/// A decoded file path that may follow `<bundle>/<version>/` in an R2 key.
pub fn check_file_path(path: &str) {
    assert!(!path.is_empty(), "empty file path");
    let segments: Vec<&str> = path.split('/').collect();
    assert!(
        segments.len() <= MAX_SEGMENTS,
        "{} segments in {path:?}",
        segments.len()
    );
    for s in segments {
        assert!(segment_ok(s), "bad segment {s:?} in {path:?}");
    }
}

/// Resolves `.` and `..` segments the way RFC 3986 does (and the way any proxy, SDK or
/// storage layer that "normalizes" keys would), clamping at the root.
pub fn resolve_dot_segments(key: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in key.split('/') {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// Everything the worker relies on about an asset route parsed from `raw`: the R2 key stays
/// under `<bundle>/<version>/` for every version it may be served from, even after dot
/// segments or backslashes are resolved by someone else; the pinned path (the edge cache
/// key) re-parses to the same asset.
pub fn check_asset(raw: &str, a: &AssetRoute) {
    let bundle = a.bundle.as_str();
    assert!(bundle_ok(bundle), "bundle {bundle:?} from {raw:?}");
    match &a.pin {
        Some(v) => {
            assert!(version_ok(v.as_str()), "pin {v:?} from {raw:?}");
            assert!(
                raw.starts_with(&format!("/{bundle}@{v}/")),
                "{raw:?} -> {a:?}"
            );
        }
        None => assert!(raw.starts_with(&format!("/{bundle}/")), "{raw:?} -> {a:?}"),
    }
    check_file_path(&a.path);

    let mut versions: Vec<Version> = SAMPLE_VERSIONS
        .iter()
        .map(|v| Version::parse(v).expect("sample version"))
        .collect();
    versions.extend(a.pin.clone());
    for v in &versions {
        let key = a.object_key(v);
        let prefix = format!("{bundle}/{v}/");
        assert!(
            key.starts_with(&prefix),
            "key {key:?} outside {prefix:?} for {raw:?}"
        );
        assert_eq!(&key[prefix.len()..], a.path, "key {key:?} for {raw:?}");
        // Exactly bundle, version, then the path's segments: no extra or missing level.
        assert_eq!(
            key.split('/').count(),
            2 + a.path.split('/').count(),
            "{key:?}"
        );
        // A layer that resolves dot segments, or treats `\` as `/`, sees the same key.
        assert_eq!(resolve_dot_segments(&key), key, "dot segments in {key:?}");
        assert_eq!(
            resolve_dot_segments(&key.replace('\\', "/")),
            key,
            "backslash in {key:?}"
        );
        assert!(!key.chars().any(char::is_control), "control in {key:?}");

        // The pinned path is the edge cache key: a valid URL path that names this exact
        // asset in `v`.
        let pinned = a.pinned_path(v);
        assert!(
            pinned.bytes().all(|b| b.is_ascii_graphic()),
            "pinned path {pinned:?} is not a plain URL path"
        );
        assert!(
            !pinned.contains(['?', '#']),
            "query or fragment in pinned path {pinned:?}"
        );
        let expected = AssetRoute {
            pin: Some(v.clone()),
            ..a.clone()
        };
        match route::parse(&pinned) {
            Ok(Route::Asset(b)) => assert_eq!(b, expected, "pinned path {pinned:?} of {raw:?}"),
            Err(RouteError::BadRequest(_)) if pinned.len() > MAX_RAW_PATH => {}
            other => panic!("pinned path {pinned:?} of {raw:?} re-parses as {other:?}"),
        }
    }
}

/// Checks one raw path through `route::parse`; returns the result for further checks.
pub fn check_path(raw: &str) -> Result<Route, RouteError> {
    let result = route::parse(raw);
    match &result {
        Ok(Route::Asset(a)) => {
            assert!(
                raw.len() <= MAX_RAW_PATH,
                "over-long path accepted: {raw:?}"
            );
            check_asset(raw, a);
        }
        Ok(Route::Ops(rest)) => {
            assert!(
                raw == "/__canary" || raw.starts_with("/__canary/"),
                "{raw:?} routed to ops"
            );
            assert_eq!(rest, raw["/__canary".len()..].trim_start_matches('/'));
        }
        Err(RouteError::NotFound(m) | RouteError::BadRequest(m)) => {
            assert!(!m.is_empty(), "empty error message for {raw:?}");
            if raw.len() > MAX_RAW_PATH {
                assert!(matches!(result, Err(RouteError::BadRequest(_))), "{raw:?}");
            }
        }
    }
    result
}

/// Parses a name known to be valid (harness-side helper).
pub fn bundle(s: &str) -> BundleName {
    BundleName::parse(s).expect("valid bundle name")
}

/// A readable input format for targets with several inputs, so seeds can be real requests:
/// one `name: value` per line, like HTTP headers. A missing line is an absent input; the
/// first line of a name wins; lines without `: ` are ignored. Values are bytes (a field that
/// must be text and is not UTF-8 reads as absent).
pub struct Fields<'a>(Vec<(&'a [u8], &'a [u8])>);

impl<'a> Fields<'a> {
    pub fn parse(data: &'a [u8]) -> Self {
        let mut out = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            if let Some(i) = line.windows(2).position(|w| w == b": ") {
                out.push((&line[..i], &line[i + 2..]));
            }
        }
        Fields(out)
    }

    pub fn bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.0
            .iter()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| *v)
    }

    pub fn text(&self, name: &str) -> Option<&'a str> {
        self.bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.text(name).and_then(|v| v.trim().parse().ok())
    }
}
