//! A version's manifest: the list of the files its publish uploaded, written to R2 after
//! them (`scripts/canary publish`, through cli-core) and read by the edge, which serves a
//! pinned version the config does not name only once it is published, and tells a canary
//! file that is gone (an error of the canary's) from one the canary never had.
//!
//! It lives beside the bundle's versions under a dot-prefixed folder, which no version can
//! be named (`Version::parse`), so no pinned URL reaches it.

use serde::Serialize;
use serde_json::Value;

use crate::config::{BundleName, Version};

/// R2 key of a version's manifest.
pub fn manifest_key(bundle: &BundleName, version: &Version) -> String {
    format!("{bundle}/.manifests/{version}.json")
}

/// The prefix of a version's files in R2 (a manifest lists paths relative to it).
pub fn version_prefix(bundle: &BundleName, version: &Version) -> String {
    format!("{bundle}/{version}/")
}

/// A manifest's contents: `{"bundle", "version", "files"}` (in that order), the files
/// relative to the version, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub bundle: String,
    pub version: String,
    pub files: Vec<String>,
}

impl Manifest {
    /// The manifest of `version` with these files (sorted, each once).
    pub fn of(bundle: &BundleName, version: &Version, mut files: Vec<String>) -> Self {
        files.sort();
        files.dedup();
        Self {
            bundle: bundle.as_str().to_owned(),
            version: version.as_str().to_owned(),
            files,
        }
    }

    /// The JSON written to [`manifest_key`].
    pub fn to_json(&self) -> String {
        // Strings and a list of strings: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a manifest, which must be `bundle`'s `version`'s (a manifest copied from
    /// another version, or any other JSON, is refused: it would vouch for files it does not
    /// describe). Read through `serde_json::Value`, as the rollout config is: no parser of
    /// its own in the routing wasm.
    pub fn parse(text: &str, bundle: &BundleName, version: &Version) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let field = |name| value.get(name).and_then(Value::as_str);
        if field("bundle") != Some(bundle.as_str()) || field("version") != Some(version.as_str()) {
            return Err("not a manifest of this version".into());
        }
        let files = value
            .get("files")
            .and_then(Value::as_array)
            .and_then(|files| {
                files
                    .iter()
                    .map(|f| f.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or("not a manifest of this version: `files` must be a list of paths")?;
        Ok(Self {
            bundle: bundle.as_str().to_owned(),
            version: version.as_str().to_owned(),
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (BundleName, Version) {
        (
            BundleName::parse("demo").unwrap(),
            Version::parse("1.1.0").unwrap(),
        )
    }

    #[test]
    fn the_key_is_under_the_dot_folder_beside_the_versions() {
        let (b, v) = names();
        assert_eq!(manifest_key(&b, &v), "demo/.manifests/1.1.0.json");
    }

    #[test]
    fn a_manifest_round_trips_sorted_and_once_each() {
        let (b, v) = names();
        let m = Manifest::of(
            &b,
            &v,
            vec!["sdk.js".into(), "a/b.js".into(), "sdk.js".into()],
        );
        assert_eq!(m.files, ["a/b.js", "sdk.js"]);
        assert_eq!(
            m.to_json(),
            r#"{"bundle":"demo","version":"1.1.0","files":["a/b.js","sdk.js"]}"#
        );
        assert_eq!(Manifest::parse(&m.to_json(), &b, &v), Ok(m));
    }

    #[test]
    fn only_this_versions_manifest_is_read() {
        let (b, v) = names();
        let cases = [
            ("not json", "not JSON"),
            ("[]", "not a manifest of this version"),
            (
                r#"{"bundle":"demo","version":"1.0.0","files":[]}"#,
                "not a manifest",
            ),
            (
                r#"{"bundle":"other","version":"1.1.0","files":[]}"#,
                "not a manifest",
            ),
            (r#"{"bundle":"demo","version":"1.1.0"}"#, "`files`"),
            (
                r#"{"bundle":"demo","version":"1.1.0","files":"sdk.js"}"#,
                "`files`",
            ),
            (
                r#"{"bundle":"demo","version":"1.1.0","files":[1]}"#,
                "`files`",
            ),
        ];
        for (text, why) in cases {
            let err = Manifest::parse(text, &b, &v).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
