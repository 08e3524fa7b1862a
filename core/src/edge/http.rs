//! HTTP details of asset responses that do not depend on the runtime: content types,
//! cache policies and conditional requests.

/// Content type by file extension, used when the R2 object carries none.
pub fn content_type_for(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        _ => "application/octet-stream",
    }
}

/// `Cache-Control` of a floating URL: its body differs per client, so only the client's
/// own cache may keep it, and briefly, so a rollback reaches it soon.
pub fn floating_cache_control(max_age: u32) -> String {
    format!("private, max-age={max_age}")
}

/// `Cache-Control` of a pinned URL: the bytes of one version never change.
pub fn pinned_cache_control(max_age: u32) -> String {
    format!("public, max-age={max_age}, immutable")
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison, RFC 9110 13.1.2).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let target = bare(etag);
    if_none_match.len() <= 4096
        && if_none_match
            .split(',')
            .any(|candidate| candidate.trim() == "*" || bare(candidate) == target)
}

/// The values of every cookie called `name` in a `Cookie` header, in order.
pub fn cookie_values<'h>(header: &'h str, name: &'h str) -> impl Iterator<Item = &'h str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// Response headers as `name\nvalue\n` pairs: handed across the wasm boundary in one
/// string rather than one call per header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderLines(String);

impl HeaderLines {
    pub fn with_capacity(bytes: usize) -> Self {
        Self(String::with_capacity(bytes))
    }

    /// Appends a header. A value with a newline would shift every later pair; none of ours
    /// has one, and any that did would not be a valid header value anyway.
    pub fn set(&mut self, name: &str, value: &str) {
        // Bytes, not chars: a char-set search walks code points and cost ~2 µs a request.
        let breaks = |s: &str| s.bytes().any(|b| b == b'\n' || b == b'\r');
        if breaks(value) || breaks(name) {
            return;
        }
        self.0.push_str(name);
        self.0.push('\n');
        self.0.push_str(value);
        self.0.push('\n');
    }

    /// The pairs, in the order they were set.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut lines = self.0.split('\n');
        std::iter::from_fn(move || Some((lines.next()?, lines.next()?)))
    }

    /// The lines as sent: `name\nvalue\n` per header.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value of the first header called `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        for (path, ct) in [
            ("sdk.js", "text/javascript; charset=utf-8"),
            ("a/b/chunk.MJS", "text/javascript; charset=utf-8"),
            ("sdk.js.map", "application/json; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("index.html", "text/html; charset=utf-8"),
            ("logo.svg", "image/svg+xml"),
            ("core.wasm", "application/wasm"),
            ("LICENSE", "application/octet-stream"),
            ("x.unknown", "application/octet-stream"),
        ] {
            assert_eq!(content_type_for(path), ct, "{path}");
        }
    }

    #[test]
    fn conditional_requests() {
        let etag = "\"abc\"";
        for (header, matches) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
            ("abc", false),
            ("", false),
        ] {
            assert_eq!(etag_matches(header, etag), matches, "{header}");
        }
        assert!(
            !etag_matches(&"\"abc\",".repeat(1000), etag),
            "oversized header ignored"
        );
    }

    #[test]
    fn cache_policies() {
        assert_eq!(floating_cache_control(60), "private, max-age=60");
        assert_eq!(
            pinned_cache_control(31_536_000),
            "public, max-age=31536000, immutable"
        );
    }
}
