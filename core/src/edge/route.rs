//! Request paths: which route a URL path names, and the R2 key of an asset.
//!
//! Every asset path is decoded and checked here, segment by segment, so that the key handed
//! to R2 is always `<bundle>/<version>/<path>` with `<path>` made only of plain, non-empty,
//! non-dot segments: nothing can climb out of its bundle's version prefix.

use percent_encoding::percent_decode_str;

use crate::config::origins::scheme_end;
use crate::config::{BundleName, Version};

/// Longest raw URL path accepted.
pub const MAX_RAW_PATH: usize = 1024;
/// Most segments in an asset path (after the bundle segment).
pub const MAX_SEGMENTS: usize = 32;
/// Longest single decoded segment.
pub const MAX_SEGMENT_LEN: usize = 255;

/// Prefix of the operations endpoints.
pub const OPS_PREFIX: &str = "/__canary";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/<bundle>/<path>` (floating, `pin == None`) or `/<bundle>@<version>/<path>`.
    Asset(AssetRoute),
    /// `/__canary/<rest>`: `rest` without the leading slash.
    Ops(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRoute {
    pub bundle: BundleName,
    pub pin: Option<Version>,
    /// The decoded file path inside the version, e.g. `sdk.js` or `chunks/a.js`.
    pub path: String,
}

impl AssetRoute {
    /// The R2 object key of this asset in `version`.
    pub fn object_key(&self, version: &Version) -> String {
        // `join`, not `format!`: the request path stays clear of `core::fmt` (edge/text.rs).
        [self.bundle.as_str(), version.as_str(), &self.path].join("/")
    }

    /// The pinned URL path of this asset in `version`: also the edge cache key's path, since
    /// the bytes of one file in one version never change.
    pub fn pinned_path(&self, version: &Version) -> String {
        self.pinned_url("", version)
    }

    /// `origin` + [`Self::pinned_path`], built in one string (the edge cache key).
    pub fn pinned_url(&self, origin: &str, version: &Version) -> String {
        let mut out = String::with_capacity(
            origin.len()
                + self.bundle.as_str().len()
                + version.as_str().len()
                + self.path.len()
                + 8,
        );
        out.push_str(origin);
        out.push('/');
        out.push_str(self.bundle.as_str());
        out.push('@');
        out.push_str(version.as_str());
        // Re-encode so the cache key is a valid URL whatever the file name.
        for segment in self.path.split('/') {
            out.push('/');
            out.extend(percent_encoding::utf8_percent_encode(
                segment,
                SEGMENT_ENCODE,
            ));
        }
        out
    }
}

/// Characters escaped when a decoded segment goes back into a URL.
const SEGMENT_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\\');

/// The origin (`scheme://host[:port]`) of an already-serialized WHATWG URL, such as the
/// runtime's `request.url`, without parsing it again (the `url` crate and its IDNA tables
/// would add ~100 KB to the wasm for this one lookup).
pub fn origin_of(url: &str) -> &str {
    let host_start = scheme_end(url).unwrap_or(0);
    let end = url.as_bytes()[host_start..]
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'));
    match end {
        Some(i) => &url[..host_start + i],
        None => url,
    }
}

/// The host (with its port, if any) of an already-serialized WHATWG URL.
pub fn host_of(url: &str) -> &str {
    let origin = origin_of(url);
    scheme_end(origin).map_or(origin, |i| &origin[i..])
}

/// The path of an already-serialized WHATWG URL (`request.url`): what follows the origin,
/// up to the query or fragment; `/` when empty. Still percent-encoded, as [`parse`] wants.
pub fn path_of(url: &str) -> &str {
    let rest = &url[origin_of(url).len()..];
    let end = rest
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    match &rest[..end] {
        "" => "/",
        path => path,
    }
}

/// The raw (still percent-encoded) value of the first `name=` query parameter of a
/// serialized URL. Enough for the integers the admin API takes, without the `url` crate
/// (whose IDNA tables would add ~200 KB to the wasm).
pub fn query_param<'u>(url: &'u str, name: &str) -> Option<&'u str> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Why a path was refused: `NotFound` for paths that name nothing we serve, `BadRequest` for
/// paths that are malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound(String),
    BadRequest(String),
}

/// Parses a raw (still percent-encoded) URL path.
pub fn parse(raw_path: &str) -> Result<Route, RouteError> {
    if raw_path.len() > MAX_RAW_PATH {
        return Err(RouteError::BadRequest(format!(
            "path longer than {MAX_RAW_PATH} bytes"
        )));
    }
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Err(RouteError::BadRequest("path must start with '/'".into()));
    };
    if raw_path == OPS_PREFIX || raw_path.starts_with("/__canary/") {
        let ops = raw_path[OPS_PREFIX.len()..].trim_start_matches('/');
        return Ok(Route::Ops(ops.to_owned()));
    }
    let (first, file) = match rest.split_once('/') {
        Some(pair) => pair,
        None => (rest, ""),
    };
    let (bundle_text, pin_text) = match first.split_once('@') {
        Some((b, v)) => (b, Some(v)),
        None => (first, None),
    };
    let bundle = BundleName::parse(bundle_text)
        .map_err(|_| RouteError::NotFound(format!("no bundle at {first:?}")))?;
    let pin = match pin_text {
        None => None,
        Some(v) => Some(
            Version::parse(v).map_err(|m| RouteError::BadRequest(format!("bad version: {m}")))?,
        ),
    };
    if file.is_empty() {
        return Err(RouteError::NotFound(format!(
            "no file named: use /{first}/<file>"
        )));
    }
    let path = decode_file_path(file)?;
    Ok(Route::Asset(AssetRoute { bundle, pin, path }))
}

/// Decodes and checks the file part of an asset path.
fn decode_file_path(file: &str) -> Result<String, RouteError> {
    let bad = |m: &str| Err(RouteError::BadRequest(format!("bad file path: {m}")));
    let mut segments = Vec::new();
    for raw in file.split('/') {
        if segments.len() == MAX_SEGMENTS {
            return bad("too many segments");
        }
        let Ok(segment) = percent_decode_str(raw).decode_utf8() else {
            return bad("not UTF-8 after percent-decoding");
        };
        if segment.is_empty() {
            return bad("empty segment");
        }
        if segment == "." || segment == ".." {
            return bad("dot segment");
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return bad("segment too long");
        }
        if segment
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
        {
            return bad("slash, backslash or control character in a segment");
        }
        segments.push(segment);
    }
    Ok(segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(bundle: &str, pin: Option<&str>, path: &str) -> Route {
        Route::Asset(AssetRoute {
            bundle: BundleName::parse(bundle).unwrap(),
            pin: pin.map(|v| Version::parse(v).unwrap()),
            path: path.into(),
        })
    }

    #[test]
    fn routes() {
        let cases: Vec<(&str, Result<Route, &str>)> = vec![
            ("/demo/sdk.js", Ok(asset("demo", None, "sdk.js"))),
            (
                "/demo@1.1.0/sdk.js",
                Ok(asset("demo", Some("1.1.0"), "sdk.js")),
            ),
            ("/demo/chunks/a.js", Ok(asset("demo", None, "chunks/a.js"))),
            ("/demo/my%20file.js", Ok(asset("demo", None, "my file.js"))),
            ("/demo/%E2%9C%93.js", Ok(asset("demo", None, "✓.js"))),
            ("/__canary/health", Ok(Route::Ops("health".into()))),
            ("/__canary", Ok(Route::Ops("".into()))),
            ("/__canary/api/demo", Ok(Route::Ops("api/demo".into()))),
            ("/", Err("404")),
            ("/favicon.ico", Err("404")),
            ("/demo", Err("404")),
            ("/demo/", Err("404")),
            ("/Demo/sdk.js", Err("404")),
            ("/__canaryx/a", Err("404")),
            ("/demo@/sdk.js", Err("400")),
            ("/demo@1..0/sdk.js", Err("400")),
            ("/demo@%2e%2e/sdk.js", Err("400")),
            ("/demo/../secret", Err("400")),
            ("/demo/./sdk.js", Err("400")),
            ("/demo/%2e%2e/x", Err("400")),
            ("/demo/%2E%2e/x", Err("400")),
            ("/demo/a//b", Err("400")),
            ("/demo/a%2Fb", Err("400")),
            ("/demo/..%2Fx", Err("400")),
            ("/demo/a%5Cb", Err("400")),
            ("/demo/a%00b", Err("400")),
            ("/demo/a%0d%0aX-Bad:1", Err("400")),
            ("/demo/%ff.js", Err("400")),
            ("demo/sdk.js", Err("400")),
        ];
        for (path, expected) in cases {
            let got = parse(path);
            match (expected, got) {
                (Ok(route), Ok(got)) => assert_eq!(got, route, "{path}"),
                (Err("404"), Err(RouteError::NotFound(_))) => {}
                (Err("400"), Err(RouteError::BadRequest(_))) => {}
                (want, got) => panic!("{path}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn origins() {
        for (url, origin) in [
            (
                "https://sdk.example.com/demo/sdk.js?x=1",
                "https://sdk.example.com",
            ),
            ("http://127.0.0.1:8787/", "http://127.0.0.1:8787"),
            ("http://edge.test", "http://edge.test"),
            ("https://a.b/c/d@e", "https://a.b"),
        ] {
            assert_eq!(origin_of(url), origin, "{url}");
        }
    }

    #[test]
    fn query_parameters() {
        for (url, want) in [
            (
                "https://x.test/__canary/api/demo/minutes?since=123",
                Some("123"),
            ),
            ("https://x.test/a?x=1&since=7#f", Some("7")),
            ("https://x.test/a?since", Some("")),
            ("https://x.test/a?sinc=1", None),
            ("https://x.test/a#since=1", None),
            ("https://x.test/a", None),
        ] {
            assert_eq!(query_param(url, "since"), want, "{url}");
        }
    }

    #[test]
    fn path_of_a_serialized_url() {
        for (url, path) in [
            ("https://sdk.example.com/demo/sdk.js", "/demo/sdk.js"),
            ("https://sdk.example.com/demo/sdk.js?v=1#x", "/demo/sdk.js"),
            (
                "http://127.0.0.1:8787/demo@1.0.0/a%20b.js",
                "/demo@1.0.0/a%20b.js",
            ),
            ("https://sdk.example.com", "/"),
            ("https://sdk.example.com?q", "/"),
            ("https://sdk.example.com/#f", "/"),
        ] {
            assert_eq!(path_of(url), path, "{url}");
        }
    }

    #[test]
    fn limits() {
        let long = format!("/demo/{}", "a".repeat(MAX_RAW_PATH));
        assert!(matches!(parse(&long), Err(RouteError::BadRequest(_))));
        let deep = format!("/demo/{}x", "a/".repeat(MAX_SEGMENTS));
        assert!(matches!(parse(&deep), Err(RouteError::BadRequest(_))));
        let wide = format!("/demo/{}", "%41".repeat(MAX_SEGMENT_LEN + 1));
        assert!(matches!(parse(&wide), Err(RouteError::BadRequest(_))));
    }

    /// Version manifests live at `<bundle>/.manifests/<version>.json` (written by
    /// `scripts/canary publish`, read by the entry module on a canary miss): no route ever
    /// names that key, since a version cannot start with `.` and a file path has no dot
    /// segments, so the object key of any asset is `<bundle>/<version>/...` with a version
    /// that is never `.manifests`.
    #[test]
    fn no_route_reaches_a_version_manifest() {
        let manifest = "demo/.manifests/1.1.0.json";
        for path in [
            "/demo/.manifests/1.1.0.json",
            "/demo@1.1.0/../.manifests/1.1.0.json",
            "/demo@1.1.0/%2e%2e/.manifests/1.1.0.json",
            "/demo@1.1.0/..%2f.manifests%2f1.1.0.json",
            "/demo@.manifests/1.1.0.json",
            "/demo@%2emanifests/1.1.0.json",
            "/demo/%2e%2e/.manifests/1.1.0.json",
            "/demo/.manifests%2f1.1.0.json",
            "/demo/%2Emanifests/1.1.0.json",
            "/demo@1.1.0/.manifests/1.1.0.json",
        ] {
            let Ok(Route::Asset(a)) = parse(path) else {
                continue; // refused (400/404): no R2 read at all
            };
            for v in ["1.0.0", "1.1.0", "x"] {
                let version = a.pin.clone().unwrap_or_else(|| Version::parse(v).unwrap());
                let key = a.object_key(&version);
                assert_ne!(key, manifest, "{path}");
                assert!(
                    key.starts_with(&format!("demo/{version}/")) && !key.starts_with("demo/."),
                    "{path}: {key}"
                );
            }
        }
        assert!(Version::parse(".manifests").is_err());
        // The two obvious tries, spelled out: a file inside a version, and a 400.
        let Ok(Route::Asset(a)) = parse("/demo/.manifests/1.1.0.json") else {
            panic!()
        };
        assert_eq!(
            a.object_key(&Version::parse("1.0.0").unwrap()),
            "demo/1.0.0/.manifests/1.1.0.json"
        );
        assert!(matches!(
            parse("/demo@1.1.0/../.manifests/1.1.0.json"),
            Err(RouteError::BadRequest(_))
        ));
    }

    #[test]
    fn object_key_and_cache_path_stay_under_the_version_prefix() {
        let Route::Asset(a) = parse("/demo/dir/my%20file%3F.js").unwrap() else {
            panic!()
        };
        let v = Version::parse("1.1.0").unwrap();
        assert_eq!(a.object_key(&v), "demo/1.1.0/dir/my file?.js");
        assert_eq!(a.pinned_path(&v), "/demo@1.1.0/dir/my%20file%3F.js");
        assert_eq!(
            parse(&a.pinned_path(&v)).unwrap(),
            Route::Asset(AssetRoute { pin: Some(v), ..a })
        );
    }
}
