//! The rollout config stored in KV under `rollout/<bundle>`: parsing, validation and the
//! names it is built from (bundle, version, weight).
//!
//! Validation happens once, at the boundary: everything past `Rollout::parse` can trust the
//! values. Fields this version does not know are kept, so a later feature (or an operator's
//! note) survives a read-modify-write by the CLI or the admin API.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod freeze;
pub mod origins;
pub mod patch;
mod policy;

pub use freeze::FreezeWindow;
pub use origins::PageOrigins;
pub use policy::{HealthPolicy, Progression, DEFAULT_PASS_CONFIDENCE};

/// KV key prefix of a bundle's rollout config (`scripts/canary` uses [`kv_key`] through cli-core).
pub const KV_PREFIX: &str = "rollout/";

/// The KV key that holds `bundle`'s config.
pub fn kv_key(bundle: &BundleName) -> String {
    format!("{KV_PREFIX}{}", bundle.as_str())
}

/// Longest bundle name or version accepted; keeps R2 keys and cookies short.
pub const MAX_NAME_LEN: usize = 64;

/// A config error names the field at fault, so an operator can fix it without guessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid rollout config: field `{}`: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// A bundle name: `[a-z0-9][a-z0-9_-]*`, at most 64 bytes. It is the first segment of every
/// R2 key, so it must never contain `/`, `@`, `.` or anything that needs escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleName(String);

impl BundleName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_first = s
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let ok_rest = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if s.is_empty() || s.len() > MAX_NAME_LEN || !ok_first || !ok_rest {
            return Err(format!(
                "bundle name must be 1-{MAX_NAME_LEN} characters of a-z, 0-9, '-' or '_', starting with a letter or digit, got {s:?}"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BundleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version label such as `1.5.0` or `2.0.0-rc.1+build.7`: ASCII letters, digits and
/// `.`, `-`, `+`, `_`, starting with a letter or digit, no `..`, at most 64 bytes.
/// It is the second segment of every R2 key, so it can never climb out of its bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_first = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        let ok_rest = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_'));
        if s.is_empty()
            || s.len() > MAX_NAME_LEN
            || !ok_first
            || !ok_rest
            || s.as_bytes().windows(2).any(|w| w == b"..")
        {
            return Err(format!(
                "version must be 1-{MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '.', '-', '+' or '_', starting with a letter or digit, without '..', got {s:?}"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Canary weight in whole percent, 0..=100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(transparent)]
pub struct Weight(u8);

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Weight::new(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Weight {
    pub const ZERO: Weight = Weight(0);
    pub const FULL: Weight = Weight(100);

    pub fn new(percent: u64) -> Result<Self, String> {
        if percent > 100 {
            return Err(format!(
                "weight must be an integer from 0 to 100, got {percent}"
            ));
        }
        Ok(Self(percent as u8))
    }

    /// A weight as JSON gives it (the config's `weight`, a CLI argument): a whole number
    /// from 0 to 100.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Number(n) => match n.as_u64() {
                Some(p) => Weight::new(p),
                None => Err(format!("must be an integer from 0 to 100, got {n}")),
            },
            other => Err(format!("must be an integer from 0 to 100, got {other}")),
        }
    }

    pub fn percent(self) -> u8 {
        self.0
    }

    /// This weight, unless it is above 0 and puts none of `cohorts` cohorts on the canary
    /// (1-9% with 10 cohorts): such a weight serves nobody, so it is refused.
    pub fn serving(self, cohorts: u16) -> Result<Self, Refusal> {
        if self > Weight::ZERO && self.canary_cohorts(cohorts) == 0 {
            return Err(Refusal::NoCohort {
                weight: self,
                cohorts,
            });
        }
        Ok(self)
    }

    /// How many of `cohorts` cohorts are on canary: exactly `floor(weight * cohorts / 100)`.
    pub fn canary_cohorts(self, cohorts: u16) -> u16 {
        (u32::from(self.0) * u32::from(cohorts) / 100) as u16
    }

    /// The weight actually served with `cohorts` cohorts, in percent (may be fractional with
    /// 1000 cohorts, so it is a float for display only).
    pub fn effective_percent(self, cohorts: u16) -> f64 {
        f64::from(self.canary_cohorts(cohorts)) * 100.0 / f64::from(cohorts)
    }

    /// True when `weight` cannot be served exactly with `cohorts` cohorts.
    pub fn is_rounded(self, cohorts: u16) -> bool {
        u32::from(self.0) * u32::from(cohorts) % 100 != 0
    }
}

/// A transition the config does not allow, in the words the admin API answers with. The
/// control plane (`control::commands`) and the CLI's KV path (`cli-core`) make the same
/// transitions, so one command gives one config either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The version is already the stable or the canary: versions are immutable.
    AlreadyLive(Version),
    /// The transition needs a canary and there is none (the whole message).
    NoCanary(&'static str),
    /// A weight above 0 that puts no cohort on the canary.
    NoCohort { weight: Weight, cohorts: u16 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::AlreadyLive(v) => write!(
                f,
                "{v} is already live; versions are immutable: publish a new version"
            ),
            Refusal::NoCanary(message) => f.write_str(message),
            Refusal::NoCohort { weight, cohorts } => write!(
                f,
                "{}% puts no cohort on the canary with COHORTS={cohorts} (one cohort is {}%)",
                weight.percent(),
                100.0 / f64::from(*cohorts)
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// A bundle's rollout: which version is stable, which (if any) is the canary, and its weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    pub stable: Version,
    pub canary: Option<Version>,
    pub weight: Weight,
    /// Pins which cohort goes first for this canary; derived from the canary version when
    /// absent, so the same users are not the first to meet every release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cohort_offset: Option<u32>,
    /// Thresholds of the automatic rollback (defaults apply when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthPolicy>,
    /// The progressive rollout plan, if one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progression: Option<Progression>,
    /// Stamped by the bundle's control plane on every config it writes, so that it can tell
    /// its own (possibly stale) writes from an operator's. The edge ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Unix seconds: override tokens for this bundle issued before this are void (the
    /// `revoke-overrides` command sets it; the edge reads it with the config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrides_not_before: Option<u64>,
    /// Fields this version does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Rollout {
    /// Parses and validates a KV value. Errors name the first field at fault.
    pub fn parse(json: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| ConfigError::new("(document)", format!("not valid JSON: {e}")))?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, ConfigError> {
        let Value::Object(mut map) = value else {
            return Err(ConfigError::new("(document)", "must be a JSON object"));
        };
        let stable = match map.remove("stable") {
            Some(Value::String(s)) => {
                Version::parse(&s).map_err(|m| ConfigError::new("stable", m))?
            }
            Some(other) => {
                return Err(ConfigError::new(
                    "stable",
                    format!("must be a version string, got {other}"),
                ))
            }
            None => return Err(ConfigError::new("stable", "is required")),
        };
        let canary = match map.remove("canary") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(Version::parse(&s).map_err(|m| ConfigError::new("canary", m))?)
            }
            Some(other) => {
                return Err(ConfigError::new(
                    "canary",
                    format!("must be a version string or null, got {other}"),
                ))
            }
        };
        if canary.as_ref() == Some(&stable) {
            return Err(ConfigError::new(
                "canary",
                format!("equals `stable` ({stable}); set it to null when no canary runs"),
            ));
        }
        let weight = match map.remove("weight") {
            None => Weight::ZERO,
            Some(v) => Weight::from_value(&v).map_err(|m| ConfigError::new("weight", m))?,
        };
        let cohort_offset = match map.remove("cohort_offset") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64().and_then(|v| u32::try_from(v).ok()) {
                Some(v) => Some(v),
                None => {
                    return Err(ConfigError::new(
                        "cohort_offset",
                        format!("must be a non-negative integer, got {n}"),
                    ))
                }
            },
            Some(other) => {
                return Err(ConfigError::new(
                    "cohort_offset",
                    format!("must be a non-negative integer or null, got {other}"),
                ))
            }
        };
        let health = match map.remove("health") {
            None | Some(Value::Null) => None,
            Some(v) => Some(HealthPolicy::from_value(v)?),
        };
        let progression = match map.remove("progression") {
            None | Some(Value::Null) => None,
            Some(v) => Some(Progression::from_value(v)?),
        };
        let revision = match map.remove("revision") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            Some(other) => {
                return Err(ConfigError::new(
                    "revision",
                    format!("must be a non-negative integer, got {other}"),
                ))
            }
        };
        let overrides_not_before = match map.remove("overrides_not_before") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            Some(other) => {
                return Err(ConfigError::new(
                    "overrides_not_before",
                    format!("must be Unix seconds (a non-negative integer), got {other}"),
                ))
            }
        };
        Ok(Self {
            stable,
            canary,
            weight,
            cohort_offset,
            health,
            progression,
            revision,
            overrides_not_before,
            extra: map,
        })
    }

    /// The JSON written back to KV (unknown fields included).
    pub fn to_json(&self) -> String {
        // Serializing plain strings, integers and a JSON map cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The config after publishing `version`: a new bundle's stable (`current` is `None`),
    /// else the canary, dark (weight 0). `cohort_offset` and the `rollback` record belong to
    /// the previous canary: a kept offset would give the new one the same first cohorts.
    pub fn published(current: Option<&Rollout>, version: Version) -> Result<Rollout, Refusal> {
        let Some(current) = current else {
            return Ok(Rollout {
                stable: version,
                canary: None,
                weight: Weight::ZERO,
                cohort_offset: None,
                health: None,
                progression: None,
                revision: None,
                overrides_not_before: None,
                extra: Map::new(),
            });
        };
        if current.stable == version || current.canary.as_ref() == Some(&version) {
            return Err(Refusal::AlreadyLive(version));
        }
        let mut next = current.clone();
        next.canary = Some(version);
        next.weight = Weight::ZERO;
        next.cohort_offset = None;
        next.extra.remove("rollback");
        Ok(next)
    }

    /// The canary becomes the stable; no canary, weight 0, no rollback record.
    pub fn promoted(&self) -> Result<Rollout, Refusal> {
        let Some(canary) = self.canary.clone() else {
            return Err(Refusal::NoCanary("no canary to promote"));
        };
        let mut next = self.clone();
        next.stable = canary;
        next.canary = None;
        next.weight = Weight::ZERO;
        next.extra.remove("rollback");
        Ok(next)
    }

    /// The canary at `weight`, which must put a cohort on it (see [`Weight::serving`]).
    pub fn with_weight(&self, weight: Weight, cohorts: u16) -> Result<Rollout, Refusal> {
        if self.canary.is_none() && weight > Weight::ZERO {
            return Err(Refusal::NoCanary("no canary to weigh; publish one first"));
        }
        let mut next = self.clone();
        next.weight = weight.serving(cohorts)?;
        Ok(next)
    }

    /// Weight 0, the canary kept (dark), with the record of when (`at`, ISO 8601), why
    /// and by whom.
    pub fn rolled_back(&self, at: &str, reason: &str, by: &str) -> Result<Rollout, Refusal> {
        if self.canary.is_none() {
            return Err(Refusal::NoCanary("no canary to roll back"));
        }
        let mut next = self.clone();
        next.weight = Weight::ZERO;
        next.extra.insert(
            "rollback".into(),
            serde_json::json!({ "at": at, "reason": reason, "by": by }),
        );
        Ok(next)
    }

    /// Override tokens issued before this (Unix seconds) are void.
    pub fn overrides_not_before(&self) -> u64 {
        self.overrides_not_before.unwrap_or(0)
    }

    /// The rollback thresholds in force.
    pub fn health_policy(&self) -> HealthPolicy {
        self.health.clone().unwrap_or_default()
    }

    /// The pages whose evidence counts (`health.origins`); `None`: any page's.
    pub fn page_origins(&self) -> Option<&PageOrigins> {
        self.health.as_ref()?.origins.as_ref()
    }

    /// The version served to canary cohorts, if a canary is running with a weight above 0.
    pub fn live_canary(&self) -> Option<&Version> {
        self.canary.as_ref().filter(|_| self.weight > Weight::ZERO)
    }

    /// The canary, if its weight puts at least one of `cohorts` cohorts on it. A weight
    /// below one cohort (1-9% with 10 cohorts) serves nobody, so nothing may be counted
    /// against it either.
    pub fn serving_canary(&self, cohorts: u16) -> Option<&Version> {
        self.canary
            .as_ref()
            .filter(|_| self.weight.canary_cohorts(cohorts) > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let r =
            Rollout::parse(r#"{ "stable": "1.4.2", "canary": "1.5.0", "weight": 30 }"#).unwrap();
        assert_eq!(r.stable.as_str(), "1.4.2");
        assert_eq!(r.canary.as_ref().map(Version::as_str), Some("1.5.0"));
        assert_eq!(r.weight.percent(), 30);
        assert!(r.extra.is_empty());
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let cases = [
            (r#"{"canary":"1.5.0","weight":30}"#, "stable"),
            (r#"{"stable":1,"weight":30}"#, "stable"),
            (r#"{"stable":"../x","weight":30}"#, "stable"),
            (r#"{"stable":"1.0.0","canary":"a/b","weight":30}"#, "canary"),
            (r#"{"stable":"1.0.0","canary":7,"weight":30}"#, "canary"),
            (
                r#"{"stable":"1.0.0","canary":"1.0.0","weight":30}"#,
                "canary",
            ),
            (
                r#"{"stable":"1.0.0","canary":"1.1.0","weight":101}"#,
                "weight",
            ),
            (
                r#"{"stable":"1.0.0","canary":"1.1.0","weight":-1}"#,
                "weight",
            ),
            (
                r#"{"stable":"1.0.0","canary":"1.1.0","weight":12.5}"#,
                "weight",
            ),
            (
                r#"{"stable":"1.0.0","canary":"1.1.0","weight":"30"}"#,
                "weight",
            ),
            (r#"{"stable":"1.0.0","cohort_offset":-3}"#, "cohort_offset"),
            (
                r#"{"stable":"1.0.0","overrides_not_before":"now"}"#,
                "overrides_not_before",
            ),
            (
                r#"{"stable":"1.0.0","health":{"max_error_rate":2}}"#,
                "health.max_error_rate",
            ),
            (
                r#"{"stable":"1.0.0","progression":{"steps":[50,10]}}"#,
                "progression.steps",
            ),
            (r#"[1,2]"#, "(document)"),
            (r#"{"stable":"1.0.0","#, "(document)"),
        ];
        for (json, field) in cases {
            let err = Rollout::parse(json).expect_err(json);
            assert_eq!(err.field, field, "{json}: {err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn keeps_unknown_fields_through_a_round_trip() {
        let json = r#"{"stable":"1.0.0","canary":"1.1.0","weight":20,"note":"ticket 42","steps":[1,5],"overrides_not_before":1800000000}"#;
        let r = Rollout::parse(json).unwrap();
        assert_eq!(r.extra["note"], "ticket 42");
        assert_eq!(r.overrides_not_before(), 1_800_000_000);
        let again = Rollout::parse(&r.to_json()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn numbers_survive_a_round_trip_exactly() {
        // Found by fuzz/rollout_config: without serde_json's float_roundtrip, 17-digit
        // decimals came back one bit off, so a read-modify-write changed the config.
        for json in [
            r#"{"stable":"1.0.0","health":{"max_error_rate":0.091109319140219417}}"#,
            r#"{"stable":"1.0.0","note":2.2250738585072011e-186}"#,
        ] {
            let r = Rollout::parse(json).unwrap();
            assert_eq!(Rollout::parse(&r.to_json()).unwrap(), r, "{json}");
        }
    }

    #[test]
    fn canary_may_be_absent_or_null_and_weight_defaults_to_zero() {
        for json in [
            r#"{"stable":"1.0.0"}"#,
            r#"{"stable":"1.0.0","canary":null}"#,
        ] {
            let r = Rollout::parse(json).unwrap();
            assert_eq!(r.canary, None, "{json}");
            assert_eq!(r.weight, Weight::ZERO, "{json}");
            assert_eq!(r.live_canary(), None);
        }
    }

    #[test]
    fn names_are_validated() {
        for ok in ["demo", "payments-sdk", "a", "v2_widget"] {
            assert!(BundleName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Demo",
            "-x",
            "a/b",
            "a@1",
            "a.b",
            "__canary",
            &"x".repeat(65),
        ] {
            assert!(BundleName::parse(bad).is_err(), "{bad}");
        }
        for ok in ["1.0.0", "2.0.0-rc.1+build.7", "v3", "2026_11_23"] {
            assert!(Version::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".1",
            "1..0",
            "1/0",
            "1.0.0 ",
            "%2e",
            "1\\0",
            &"9".repeat(65),
        ] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn canary_cohort_count_is_floor_of_weight_times_cohorts() {
        let cases = [
            (0, 10, 0),
            (9, 10, 0),
            (10, 10, 1),
            (30, 10, 3),
            (35, 10, 3),
            (99, 10, 9),
            (100, 10, 10),
            (1, 100, 1),
            (55, 100, 55),
        ];
        for (w, cohorts, expected) in cases {
            let weight = Weight::new(w).unwrap();
            assert_eq!(
                weight.canary_cohorts(cohorts),
                expected,
                "{w}% of {cohorts}"
            );
            assert_eq!(
                weight.is_rounded(cohorts),
                w * u64::from(cohorts) % 100 != 0
            );
        }
        assert_eq!(Weight::new(35).unwrap().effective_percent(10), 30.0);
    }

    #[test]
    fn transitions() {
        let v = |s: &str| Version::parse(s).unwrap();
        let first = Rollout::published(None, v("1.0.0")).unwrap();
        assert_eq!(
            first.to_json(),
            r#"{"stable":"1.0.0","canary":null,"weight":0}"#
        );
        let live = Rollout::parse(
            r#"{"stable":"1.0.0","canary":"1.1.0","weight":30,"cohort_offset":3,"rollback":{"by":"x"},"note":1}"#,
        )
        .unwrap();
        // A new canary: dark, without the previous one's offset and rollback record.
        assert_eq!(
            Rollout::published(Some(&live), v("1.2.0"))
                .unwrap()
                .to_json(),
            r#"{"stable":"1.0.0","canary":"1.2.0","weight":0,"note":1}"#
        );
        for again in ["1.0.0", "1.1.0"] {
            assert_eq!(
                Rollout::published(Some(&live), v(again)).unwrap_err(),
                Refusal::AlreadyLive(v(again))
            );
        }
        assert_eq!(
            live.promoted().unwrap().to_json(),
            r#"{"stable":"1.1.0","canary":null,"weight":0,"cohort_offset":3,"note":1}"#
        );
        assert_eq!(
            first.promoted().unwrap_err().to_string(),
            "no canary to promote"
        );
        let back = live.rolled_back("2026-11-30T00:00:00.000Z", "why", "operator");
        assert_eq!(
            back.unwrap().to_json(),
            r#"{"stable":"1.0.0","canary":"1.1.0","weight":0,"cohort_offset":3,"note":1,"rollback":{"at":"2026-11-30T00:00:00.000Z","by":"operator","reason":"why"}}"#
        );
        assert!(first.rolled_back("", "", "").is_err());
        let w = |p| Weight::new(p).unwrap();
        assert_eq!(live.with_weight(w(50), 10).unwrap().weight, w(50));
        assert_eq!(
            live.with_weight(w(5), 10).unwrap_err().to_string(),
            "5% puts no cohort on the canary with COHORTS=10 (one cohort is 10%)"
        );
        assert_eq!(live.with_weight(w(5), 20).unwrap().weight, w(5));
        assert_eq!(
            first.with_weight(w(10), 10).unwrap_err().to_string(),
            "no canary to weigh; publish one first"
        );
        assert_eq!(first.with_weight(Weight::ZERO, 10).unwrap(), first);
    }

    #[test]
    fn weights_from_json() {
        let parse = |t: &str| Weight::from_value(&serde_json::from_str(t).unwrap());
        assert_eq!(parse("30"), Ok(Weight::new(30).unwrap()));
        for bad in ["101", "-5", "2.5", "\"ten\"", "null"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
