//! `health.origins`: the merchant's pages, the only ones whose visitors' loads, reports and
//! boot signals count as evidence. Anyone can embed the floating URL in a page of their own
//! (an ad, a forum post) and recruit its visitors, from thousands of real networks, to load
//! the canary and report failures for it; a listed origin is what a browser says about the
//! page it runs, which such a page cannot change. Everything is still served: only counting
//! is decided here.
//!
//! What a browser sends: a script tag's load carries `Referer`, which under the default
//! `strict-origin-when-cross-origin` policy is the page's origin (cross-origin) or its URL
//! (same origin); a `sendBeacon` or `fetch` POST carries `Origin`, the page's origin (or
//! `null` from an opaque origin, which never matches). A script (not a browser) can send any
//! header: it is bounded by the per-network caps, not by this.

use serde::Serialize;

/// Most origins a policy may list.
pub const MAX_ORIGINS: usize = 50;

/// Page origins, each as a browser serializes one: `scheme://host[:port]`, lower case, no
/// default port, no path. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PageOrigins(Vec<String>);

impl PageOrigins {
    /// A list of 1 to [`MAX_ORIGINS`] origins, each written as browsers send it. The error
    /// is the message for `health.origins`.
    pub fn from_value(v: &serde_json::Value) -> Result<Self, String> {
        let items = match v.as_array() {
            Some(items) if (1..=MAX_ORIGINS).contains(&items.len()) => items,
            _ => {
                return Err(format!(
                    "must list 1 to {MAX_ORIGINS} page origins, such as [\"https://shop.example\"] \
                     (leave the field out to count evidence from any page)"
                ))
            }
        };
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            let origin = item.as_str().filter(|o| is_origin(o)).ok_or_else(|| {
                format!(
                    "{item} is not an origin as browsers send it: http or https, a lower-case \
                     host, a port only when not the default, no path (\"https://shop.example\", \
                     \"http://localhost:8787\")"
                )
            })?;
            if out.iter().any(|o| o == origin) {
                return Err(format!("lists {item} twice"));
            }
            out.push(origin.to_owned());
        }
        Ok(Self(out))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    fn has(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == origin)
    }
}

/// Whether a load of the floating URL counts: any page without `origins`, else only a
/// `Referer` whose origin is listed (a load without one does not count).
pub fn load_counts(origins: Option<&PageOrigins>, referer: Option<&str>) -> bool {
    match origins {
        None => true,
        Some(listed) => referer
            .and_then(referer_origin)
            .is_some_and(|o| listed.has(o)),
    }
}

/// Whether a report or boot signal counts: any page without `origins`, else only an
/// `Origin` that is listed (`null`, or none, never is).
pub fn report_counts(origins: Option<&PageOrigins>, origin: Option<&str>) -> bool {
    match origins {
        None => true,
        Some(listed) => origin.is_some_and(|o| listed.has(o)),
    }
}

/// Where what follows a URL's `scheme://` starts. Bytes compared in place, not a `str`
/// pattern (`find("://")`), which would bring core's Two-Way searcher onto every request's
/// path and into the code the first one compiles (bench/first-compile.mjs).
pub fn scheme_end(url: &str) -> Option<usize> {
    url.as_bytes()
        .windows(3)
        .position(|w| w == b"://")
        .map(|i| i + 3)
}

/// The origin part of a `Referer` URL: up to the path, query or fragment.
fn referer_origin(referer: &str) -> Option<&str> {
    // ASCII delimiters, so the cut is at a character boundary.
    let bytes = referer.as_bytes();
    let host_at = scheme_end(referer)?;
    let end = bytes[host_at..]
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .map_or(bytes.len(), |i| host_at + i);
    referer.get(..end)
}

/// Whether `text` is an origin as a browser serializes it: `http` or `https`, `://`, a
/// lower-case host (DNS labels, or a bracketed IPv6 address), and a port only when it is
/// not the scheme's default; nothing after it.
fn is_origin(text: &str) -> bool {
    let (default_port, rest) = if let Some(rest) = text.strip_prefix("https://") {
        ("443", rest)
    } else if let Some(rest) = text.strip_prefix("http://") {
        ("80", rest)
    } else {
        return false;
    };
    // An IPv6 literal is bracketed; otherwise a port follows the last colon.
    let (host_ok, after) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, after)) => {
                let hex = |b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b':' | b'.');
                (!addr.is_empty() && addr.bytes().all(hex), after)
            }
            None => (false, ""),
        },
        None => {
            let at = rest.rfind(':').unwrap_or(rest.len());
            let label = |l: &str| {
                (1..=63).contains(&l.len())
                    && l.bytes()
                        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
            };
            (at <= 253 && rest[..at].split('.').all(label), &rest[at..])
        }
    };
    // Nothing, or `:` and a port other than the default, without leading zeros.
    let port_ok = after.is_empty()
        || after.strip_prefix(':').is_some_and(|p| {
            !p.starts_with('0')
                && p != default_port
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok()
        });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listed(origins: &[&str]) -> PageOrigins {
        PageOrigins::from_value(&json!(origins)).unwrap()
    }

    #[test]
    fn origins_are_validated_and_must_be_written_as_browsers_send_them() {
        for ok in [
            "https://shop.example",
            "http://127.0.0.1:8787",
            "https://a-b.example.co.uk:8443",
            "http://localhost:3000",
            "https://[2001:db8::1]",
            "https://[::1]:8443",
            "https://xn--bcher-kva.example",
        ] {
            assert_eq!(listed(&[ok]).as_slice(), [ok.to_string()], "{ok}");
        }
        for (bad, words) in [
            (json!("https://shop.example"), "must list"),
            (json!([]), "1 to 50"),
            (json!(vec!["https://a.example"; 51]), "1 to 50"),
            (json!([1]), "1 is not an origin"),
            (json!(["https://a.example", "https://a.example"]), "twice"),
        ]
        .into_iter()
        .chain(
            [
                "https://shop.example/",
                "https://shop.example/checkout",
                "https://shop.example?x",
                "shop.example",
                "ftp://shop.example",
                "null",
                "https://",
                "https://a..example",
                "https://user@shop.example",
                "https://shop.example:",
                "https://shop.example:0",
                "https://shop.example:65536",
                "https://shop.example:08443",
                "https://[2001:db8::1",
                "https://[]",
                "https://[::1]x",
                "https://[2001:DB8::1]",
                // Not as browsers send them: upper case, a default port.
                "https://Shop.Example",
                "HTTPS://shop.example",
                "https://shop.example:443",
                "http://shop.example:80",
            ]
            .map(|o| (json!([o]), "is not an origin as browsers send it")),
        ) {
            let e = PageOrigins::from_value(&bad).expect_err(&bad.to_string());
            assert!(e.contains(words), "{bad}: {e}");
        }
    }

    #[test]
    fn a_load_counts_from_a_listed_referer_and_a_report_from_a_listed_origin() {
        let shop = listed(&["https://shop.example", "http://127.0.0.1:8787"]);
        let some = Some(&shop);
        for (referer, counts) in [
            // Cross-origin under strict-origin-when-cross-origin: the origin and a slash.
            (Some("https://shop.example/"), true),
            // Same origin, or a page's own policy: the whole URL.
            (Some("https://shop.example/checkout/pay?order=1#x"), true),
            (Some("https://shop.example"), true),
            (Some("https://shop.example?x=1"), true),
            (Some("http://127.0.0.1:8787/merchant/index.html"), true),
            (Some("http://127.0.0.1:8788/merchant/index.html"), false),
            (Some("http://127.0.0.1/"), false),
            (Some("http://shop.example/"), false),
            (Some("https://shop.example.evil.test/"), false),
            (Some("https://shop.example@evil.test/"), false),
            (Some("https://evil.test/https://shop.example"), false),
            (Some("https://sub.shop.example/"), false),
            (Some(""), false),
            (Some("null"), false),
            // No Referer (`referrerpolicy="no-referrer"`): not counted.
            (None, false),
        ] {
            assert_eq!(load_counts(some, referer), counts, "{referer:?}");
            // Without the policy every load counts.
            assert!(load_counts(None, referer), "{referer:?}");
        }
        for (origin, counts) in [
            (Some("https://shop.example"), true),
            (Some("http://127.0.0.1:8787"), true),
            (Some("https://shop.example/"), false),
            (Some("https://evil.test"), false),
            (Some("https://SHOP.example"), false),
            (Some("null"), false),
            (Some(""), false),
            (None, false),
        ] {
            assert_eq!(report_counts(some, origin), counts, "{origin:?}");
            assert!(report_counts(None, origin), "{origin:?}");
        }
    }
}
