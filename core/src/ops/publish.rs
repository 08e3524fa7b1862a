//! What publishing a version writes to R2 besides its files, and why a publish is refused.
//!
//! Versions are immutable: a pinned URL (`/<bundle>@<version>/...`) is cached for a year,
//! so files uploaded again under a version would never reach the clients that have them,
//! and a mix of old and new files could be served. A publish therefore first **claims** its
//! version: a conditional put (only if absent) of [`claim_key`], made by the worker through
//! the admin API, before a byte is uploaded. Two publishes of one version: exactly one
//! claim is written, the other is refused. A version with files or a manifest from before
//! claims existed (or put by hand) is refused too.
//!
//! The claim and the manifest live beside the bundle's versions under dot-prefixed folders,
//! which no version can be named (`Version::parse`), so no pinned URL reaches them.

use serde::{Deserialize, Serialize};

use crate::config::{BundleName, Version};

/// R2 key of a version's manifest (the files its publish uploaded, written after them), and
/// the prefix of its files.
pub use crate::manifest::{manifest_key, version_prefix};

/// R2 key of a version's claim: written, only if absent, before any of its files.
pub fn claim_key(bundle: &BundleName, version: &Version) -> String {
    format!("{bundle}/.claims/{version}.json")
}

/// `POST /__canary/api/<bundle>/claim`: the version a publish is about to upload.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub version: Version,
}

impl ClaimRequest {
    pub fn parse(body: &str) -> Result<Self, String> {
        serde_json::from_str(body).map_err(|e| format!("bad claim: {e}"))
    }
}

/// The claim object's contents: who started the publish, and when.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Claim {
    pub bundle: String,
    pub version: String,
    /// The operator whose credential made the claim.
    pub by: String,
    /// ISO 8601, UTC.
    pub at: String,
}

/// Why a version cannot be published.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// R2 already has these keys of the version (files under its prefix, or its manifest).
    Uploaded(Vec<String>),
    /// Another publish claimed the version first (`None`: its claim could not be read).
    Claimed(Option<Claim>),
}

/// How many of the keys found a refusal names (the rest are counted).
const SHOWN_KEYS: usize = 3;

impl Refusal {
    /// The operator's message, the same from the worker and from the CLI's own check.
    pub fn message(&self, bundle: &BundleName, version: &Version) -> String {
        let what = match self {
            Refusal::Uploaded(keys) => {
                let mut shown = keys
                    .iter()
                    .take(SHOWN_KEYS)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if keys.len() > SHOWN_KEYS {
                    shown.push_str(&format!(" and {} more", keys.len() - SHOWN_KEYS));
                }
                format!("was already uploaded: R2 has {shown}")
            }
            Refusal::Claimed(Some(claim)) => format!(
                "was already claimed by a publish of {} at {}",
                claim.by, claim.at
            ),
            Refusal::Claimed(None) => "was already claimed by another publish".to_owned(),
        };
        format!(
            "{bundle} {version} {what}; versions are immutable (pinned URLs under {} are \
             cached for a year): publish a new version",
            version_prefix(bundle, version)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (BundleName, Version) {
        (
            BundleName::parse("demo").unwrap(),
            Version::parse("1.2.0").unwrap(),
        )
    }

    #[test]
    fn keys_sit_beside_the_versions_where_no_pinned_url_reaches() {
        let (bundle, version) = names();
        assert_eq!(
            manifest_key(&bundle, &version),
            "demo/.manifests/1.2.0.json"
        );
        assert_eq!(claim_key(&bundle, &version), "demo/.claims/1.2.0.json");
        assert_eq!(version_prefix(&bundle, &version), "demo/1.2.0/");
        for folder in [".manifests", ".claims"] {
            assert!(Version::parse(folder).is_err(), "{folder} is no version");
        }
    }

    #[test]
    fn a_claim_request_names_one_valid_version() {
        let table: [(&str, Result<&str, &str>); 5] = [
            (r#"{"version":"1.2.0"}"#, Ok("1.2.0")),
            (r#"{"version":"../x"}"#, Err("bad claim")),
            (r#"{"version":"1.2.0","by":"me"}"#, Err("unknown field")),
            (r#"{}"#, Err("missing field `version`")),
            ("not json", Err("bad claim")),
        ];
        for (body, expected) in table {
            match (ClaimRequest::parse(body), expected) {
                (Ok(r), Ok(v)) => assert_eq!(r.version.as_str(), v, "{body}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{body}: {e}"),
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn refusals_name_what_r2_has_or_who_claimed_it() {
        let (bundle, version) = names();
        let tail = "; versions are immutable (pinned URLs under demo/1.2.0/ are cached for a \
                    year): publish a new version";
        let keys = |n: usize| (0..n).map(|i| format!("demo/1.2.0/f{i}.js")).collect();
        let table = [
            (
                Refusal::Uploaded(keys(1)),
                "demo 1.2.0 was already uploaded: R2 has demo/1.2.0/f0.js".to_owned(),
            ),
            (
                Refusal::Uploaded(keys(5)),
                "demo 1.2.0 was already uploaded: R2 has demo/1.2.0/f0.js, demo/1.2.0/f1.js, \
                 demo/1.2.0/f2.js and 2 more"
                    .to_owned(),
            ),
            (
                Refusal::Claimed(Some(Claim {
                    bundle: "demo".into(),
                    version: "1.2.0".into(),
                    by: "ci".into(),
                    at: "2026-12-06T18:00:00.000Z".into(),
                })),
                "demo 1.2.0 was already claimed by a publish of ci at 2026-12-06T18:00:00.000Z"
                    .to_owned(),
            ),
            (
                Refusal::Claimed(None),
                "demo 1.2.0 was already claimed by another publish".to_owned(),
            ),
        ];
        for (refusal, head) in table {
            assert_eq!(refusal.message(&bundle, &version), format!("{head}{tail}"));
        }
    }
}
