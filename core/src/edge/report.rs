//! Error reports and boot signals sent by the SDK in browsers to `POST /__canary/report`
//! (`navigator.sendBeacon`-friendly: any content type, a small JSON body). A boot signal is
//! the report of kind `boot`, carrying `boot_ms`: the client booted the version it names.

use serde::Deserialize;

use crate::config::{BundleName, Version};
use crate::edge::cookie::Verified;
use crate::edge::decide::{Channel, PreparedRollout, Router};
use crate::health::report_text::bounded;

/// Largest report body accepted.
pub const MAX_REPORT_BYTES: usize = 4096;

/// The kind reserved for boot signals (positive evidence that a client booted a version).
pub const BOOT_KIND: &str = "boot";

/// Largest `boot_ms` accepted: ten minutes.
pub const MAX_BOOT_MS: u32 = 600_000;

/// An error report's `message` is kept up to this many bytes (cut on a character
/// boundary); it travels to the control plane, which makes it a signature
/// (the control plane's `signatures`).
pub const MESSAGE_MAX_BYTES: usize = 300;
/// An error report's optional `stack`, likewise.
pub const STACK_MAX_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub bundle: BundleName,
    pub version: Version,
    pub kind: String,
    /// Milliseconds from the entry script's start to the SDK initialised; present exactly
    /// when the report is a boot signal (kind `boot`).
    pub boot_ms: Option<u32>,
    /// An error report's `message` and `stack`, when strings, cut to [`MESSAGE_MAX_BYTES`]
    /// and [`STACK_MAX_BYTES`]. Attacker text: never normalised nor hashed here (the
    /// routing wasm stays small), only carried.
    pub message: Option<String>,
    pub stack: Option<String>,
}

impl Report {
    /// Whether this is a boot signal rather than an error report.
    pub fn is_boot(&self) -> bool {
        self.kind == BOOT_KIND
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportError {
    TooLarge,
    Malformed(String),
}

#[derive(Deserialize)]
struct Raw {
    bundle: String,
    version: String,
    kind: String,
    // Free text: kept (bounded) when a string, any other JSON value skipped.
    #[serde(default)]
    message: Option<BootMs>,
    #[serde(default)]
    stack: Option<BootMs>,
    // Any JSON value (`null` included) when the field is present, checked in `parse`.
    #[serde(default)]
    boot_ms: Option<BootMs>,
}

/// What `boot_ms` (or a text field) held: a whole number, a string, or something else
/// (described for the error). Read without building a JSON value: the routing wasm parses
/// reports, and stays small (one visitor for every field).
enum BootMs {
    Whole(u64),
    Text(String),
    Other(String),
}

impl<'de> Deserialize<'de> for BootMs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = BootMs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E>(self, v: u64) -> Result<BootMs, E> {
                Ok(BootMs::Whole(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<BootMs, E> {
                Ok(BootMs::Other(v.to_string()))
            }
            // Not formatted: float formatting would add its code to the routing wasm.
            fn visit_f64<E>(self, _: f64) -> Result<BootMs, E> {
                Ok(BootMs::Other("a number that is not whole".into()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<BootMs, E> {
                Ok(BootMs::Other(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<BootMs, E> {
                Ok(BootMs::Text(v.to_owned()))
            }
            fn visit_unit<E>(self) -> Result<BootMs, E> {
                Ok(BootMs::Other("null".into()))
            }
            fn visit_none<E>(self) -> Result<BootMs, E> {
                Ok(BootMs::Other("null".into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<BootMs, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(BootMs::Other("an array".into()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<BootMs, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(BootMs::Other("an object".into()))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Parses and checks a report body.
pub fn parse(body: &[u8]) -> Result<Report, ReportError> {
    if body.len() > MAX_REPORT_BYTES {
        return Err(ReportError::TooLarge);
    }
    // From text, as the config is parsed: one instance of the JSON reader in the routing
    // wasm, not two (`from_slice` would add its own: 4 KB).
    let text = std::str::from_utf8(body)
        .map_err(|e| ReportError::Malformed(format!("bad JSON: not UTF-8: {e}")))?;
    let raw: Raw =
        serde_json::from_str(text).map_err(|e| ReportError::Malformed(format!("bad JSON: {e}")))?;
    let bundle = BundleName::parse(&raw.bundle).map_err(ReportError::Malformed)?;
    let version = Version::parse(&raw.version).map_err(ReportError::Malformed)?;
    let kind_ok = !raw.kind.is_empty()
        && raw.kind.len() <= 32
        && raw
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !kind_ok {
        return Err(ReportError::Malformed(
            "kind must be 1-32 characters of a-z, 0-9 or '_'".into(),
        ));
    }
    let boot_ms = match raw.boot_ms {
        None => None,
        Some(BootMs::Whole(ms)) if ms <= u64::from(MAX_BOOT_MS) => Some(ms as u32),
        Some(v) => {
            let got = match v {
                BootMs::Whole(ms) => ms.to_string(),
                BootMs::Text(text) => format!("{text:?}"),
                BootMs::Other(text) => text,
            };
            return Err(ReportError::Malformed(format!(
                "boot_ms must be an integer from 0 to {MAX_BOOT_MS} (milliseconds), got {got}"
            )));
        }
    };
    match (raw.kind == BOOT_KIND, boot_ms.is_some()) {
        (true, false) => {
            return Err(ReportError::Malformed(format!(
                "boot_ms is required: kind \"{BOOT_KIND}\" is reserved for boot signals"
            )))
        }
        (false, true) => {
            return Err(ReportError::Malformed(format!(
                "boot_ms is only for boot signals (kind \"{BOOT_KIND}\"), not kind {:?}",
                raw.kind
            )))
        }
        _ => {}
    }
    // A boot signal carries no text.
    let text = |t: Option<BootMs>, max| match t {
        Some(BootMs::Text(t)) if boot_ms.is_none() => Some(bounded(t, max)),
        _ => None,
    };
    Ok(Report {
        bundle,
        version,
        kind: raw.kind,
        boot_ms,
        message: text(raw.message, MESSAGE_MAX_BYTES),
        stack: text(raw.stack, STACK_MAX_BYTES),
    })
}

/// Why a report was not counted; answered as `{"counted": false, "reason": ...}` with a
/// 2xx status (a beacon must not retry) or, for `RateLimited`, 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCounted {
    /// No cohort cookie: the edge never served this client (or it drops cookies).
    NoCookie,
    /// A cohort cookie that does not verify: forged, tampered, another deployment's.
    BadCookie,
    /// A valid cookie of the previous format (no client id); the next script load
    /// upgrades it.
    OldCookie,
    /// The version is neither the stable nor a canary that serves anyone.
    VersionNotLive,
    /// The client's cohort is served the other channel by the live config.
    NotServedThisVersion,
    /// Over the per-client or per-IP limit.
    RateLimited,
    /// `health.origins` is set and the report's `Origin` is not one of them (or absent).
    OriginNotListed,
}

impl NotCounted {
    pub fn as_str(self) -> &'static str {
        match self {
            NotCounted::NoCookie => "no_cookie",
            NotCounted::BadCookie => "bad_cookie",
            NotCounted::OldCookie => "old_cookie",
            NotCounted::VersionNotLive => "version_not_live",
            NotCounted::NotServedThisVersion => "not_served_this_version",
            NotCounted::RateLimited => "rate_limited",
            NotCounted::OriginNotListed => "origin_not_listed",
        }
    }
}

/// What the edge knows about the reporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reporter {
    /// `None`: no cohort cookie at all; `Some(None)`: one that does not verify.
    pub cookie: Option<Option<Verified>>,
    /// A valid signed override's channel, and the client id it stands for.
    pub override_holder: Option<(Channel, u64)>,
}

/// Whether a report counts, and as whose: only a client that the live config serves the
/// reported version (its signed cohort maps to that channel), or that holds a signed
/// override for it, can move the counts, and only as one client (its id).
pub fn admit(
    report: &Report,
    prepared: &PreparedRollout,
    router: &Router,
    reporter: &Reporter,
) -> Result<(Channel, u64), NotCounted> {
    let rollout = &prepared.rollout;
    let cohorts = router.bucketer().cohorts();
    let channel = if report.version == rollout.stable {
        Channel::Stable
    } else if rollout.serving_canary(cohorts) == Some(&report.version) {
        Channel::Canary
    } else {
        return Err(NotCounted::VersionNotLive);
    };
    if let Some((held, id)) = reporter.override_holder {
        if held == channel {
            return Ok((channel, id));
        }
    }
    match reporter.cookie {
        None => Err(NotCounted::NoCookie),
        Some(None) => Err(NotCounted::BadCookie),
        Some(Some(Verified { client: None, .. })) => Err(NotCounted::OldCookie),
        Some(Some(Verified {
            cohort,
            client: Some(id),
            ..
        })) => {
            if router.served_channel(prepared, cohort) == channel {
                Ok((channel, id))
            } else {
                Err(NotCounted::NotServedThisVersion)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        let ok = parse(br#"{"bundle":"demo","version":"1.1.0","kind":"chunk_load","message":"x"}"#)
            .unwrap();
        assert_eq!(ok.kind, "chunk_load");
        assert_eq!(ok.boot_ms, None);
        assert!(!ok.is_boot());
        let body = |rest: &str| format!(r#"{{"bundle":"demo","version":"1.1.0",{rest}}}"#);
        for (rest, ms) in [
            (r#""kind":"boot","boot_ms":0"#, 0),
            (r#""kind":"boot","boot_ms":412"#, 412),
            (r#""kind":"boot","boot_ms":600000"#, 600_000),
            (r#""boot_ms":7,"kind":"boot","message":"x""#, 7),
        ] {
            let boot = parse(body(rest).as_bytes()).unwrap();
            assert!(boot.is_boot(), "{rest}");
            assert_eq!(boot.boot_ms, Some(ms));
        }
        // Malformed, and the message names the field at fault.
        for (rest, field) in [
            (r#""kind":"boot","boot_ms":-1"#, "boot_ms"),
            (r#""kind":"boot","boot_ms":600001"#, "boot_ms"),
            (r#""kind":"boot","boot_ms":4294967296"#, "boot_ms"),
            (r#""kind":"boot","boot_ms":1.5"#, "boot_ms"),
            (r#""kind":"boot","boot_ms":12.0"#, "boot_ms"),
            (r#""kind":"boot","boot_ms":1e3"#, "boot_ms"),
            (r#""kind":"boot","boot_ms":"12""#, "boot_ms"),
            (r#""kind":"boot","boot_ms":null"#, "boot_ms"),
            (r#""kind":"boot","boot_ms":true"#, "boot_ms"),
            (r#""kind":"boot","boot_ms":[1]"#, "boot_ms"),
            // `boot` is reserved: a boot signal carries boot_ms, and only a boot signal does.
            (r#""kind":"boot""#, "boot_ms"),
            (r#""kind":"boot","message":"x""#, "boot_ms"),
            (r#""kind":"uncaught","boot_ms":5"#, "boot_ms"),
            (r#""kind":"boot_x","boot_ms":5"#, "boot_ms"),
            (r#""kind":"Boot","boot_ms":5"#, "kind"),
        ] {
            match parse(body(rest).as_bytes()) {
                Err(ReportError::Malformed(m)) => assert!(m.contains(field), "{m}: not {field}"),
                other => panic!("{rest}: {other:?}"),
            }
        }
        for bad in [
            &br#"{"bundle":"demo","version":"1.1.0"}"#[..],
            br#"{"bundle":"Demo","version":"1.1.0","kind":"x"}"#,
            br#"{"bundle":"demo","version":"../x","kind":"x"}"#,
            br#"{"bundle":"demo","version":"1.1.0","kind":"Bad Kind"}"#,
            br#"not json"#,
            br#"[]"#,
        ] {
            assert!(
                matches!(parse(bad), Err(ReportError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = format!(
            r#"{{"bundle":"demo","version":"1.1.0","kind":"x","message":"{}"}}"#,
            "a".repeat(5000)
        );
        assert_eq!(parse(big.as_bytes()), Err(ReportError::TooLarge));
    }

    #[test]
    fn messages_and_stacks_are_kept_bounded_on_a_character_boundary() {
        let body = |rest: &str| format!(r#"{{"bundle":"demo","version":"1.1.0",{rest}}}"#);
        let r = parse(
            body(r#""kind":"uncaught","message":"boom <b>","stack":"at f (x.js:1:2)""#).as_bytes(),
        )
        .unwrap();
        assert_eq!(r.message.as_deref(), Some("boom <b>"));
        assert_eq!(r.stack.as_deref(), Some("at f (x.js:1:2)"));
        // Any other JSON value is skipped, never a malformed report.
        for v in ["5", "null", "true", "[1]", r#"{"a":1}"#] {
            let r = parse(body(&format!(r#""kind":"x","message":{v},"stack":{v}"#)).as_bytes())
                .unwrap();
            assert_eq!((r.message, r.stack), (None, None), "{v}");
        }
        // "é" is two bytes: 299 ASCII bytes then "é" would end at 301, so it is dropped.
        let long = format!("{}é{}", "a".repeat(MESSAGE_MAX_BYTES - 1), "b".repeat(10));
        let r = parse(body(&format!(r#""kind":"x","message":"{long}""#)).as_bytes()).unwrap();
        assert_eq!(r.message.unwrap(), "a".repeat(MESSAGE_MAX_BYTES - 1));
        let stack = "s".repeat(3000);
        let r = parse(body(&format!(r#""kind":"x","stack":"{stack}""#)).as_bytes()).unwrap();
        assert_eq!(r.stack.unwrap().len(), STACK_MAX_BYTES);
        // A boot signal's text is not kept.
        let r = parse(body(r#""kind":"boot","boot_ms":3,"message":"m""#).as_bytes()).unwrap();
        assert_eq!(r.message, None);
        assert_eq!(bounded("ab".into(), 5), "ab");
        assert_eq!(bounded("aé".into(), 2), "a");
    }
}

#[cfg(test)]
mod admission_tests {
    use super::*;
    use crate::config::Rollout;
    use crate::settings::Settings;

    fn router() -> Router {
        Router::new(&Settings {
            cohorts: 10,
            salt: "t".into(),
            ..Settings::default()
        })
    }

    fn report(version: &str) -> Report {
        Report {
            bundle: BundleName::parse("demo").unwrap(),
            version: Version::parse(version).unwrap(),
            kind: "uncaught".into(),
            boot_ms: None,
            message: None,
            stack: None,
        }
    }

    #[test]
    fn only_clients_served_the_version_count() {
        let r = router();
        let prepared = |weight: u64| {
            let json = format!(
                r#"{{"stable":"1.0.0","canary":"1.1.0","weight":{weight},"cohort_offset":0}}"#
            );
            r.prepare(
                BundleName::parse("demo").unwrap(),
                Rollout::parse(&json).unwrap(),
            )
        };
        // Offset 0, weight 30: cohorts 0-2 are canary.
        let valid = |cohort| {
            Some(Some(Verified {
                cohort,
                client: Some(77),
                issued: Some(1_800_000_000),
            }))
        };
        let none = |cookie| Reporter {
            cookie,
            override_holder: None,
        };
        use Channel::*;
        use NotCounted::*;
        for (weight, version, reporter, expected) in [
            (30, "1.1.0", none(valid(1)), Ok((Canary, 77))),
            (30, "1.0.0", none(valid(5)), Ok((Stable, 77))),
            (30, "1.1.0", none(valid(5)), Err(NotServedThisVersion)),
            (30, "1.0.0", none(valid(1)), Err(NotServedThisVersion)),
            (30, "1.1.0", none(None), Err(NoCookie)),
            (30, "1.1.0", none(Some(None)), Err(BadCookie)),
            (
                30,
                "1.1.0",
                none(Some(Some(Verified {
                    cohort: 1,
                    client: None,
                    issued: None,
                }))),
                Err(OldCookie),
            ),
            (30, "9.9.9", none(valid(1)), Err(VersionNotLive)),
            (0, "1.1.0", none(valid(1)), Err(VersionNotLive)),
            (5, "1.1.0", none(valid(0)), Err(VersionNotLive)),
            (
                0,
                "1.1.0",
                Reporter {
                    cookie: None,
                    override_holder: Some((Canary, 9)),
                },
                Err(VersionNotLive),
            ),
            (
                30,
                "1.1.0",
                Reporter {
                    cookie: None,
                    override_holder: Some((Canary, 9)),
                },
                Ok((Canary, 9)),
            ),
            (
                30,
                "1.1.0",
                Reporter {
                    cookie: None,
                    override_holder: Some((Stable, 9)),
                },
                Err(NoCookie),
            ),
        ] {
            assert_eq!(
                admit(&report(version), &prepared(weight), &r, &reporter),
                expected,
                "weight {weight}, {version}, {reporter:?}"
            );
        }
    }
}
