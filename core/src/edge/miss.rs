//! Version manifests at the edge: the per-isolate cache of those read, and the miss rule.
//!
//! A floating canary request whose file could not be loaded is served stable's copy (the
//! plan's fallback). Whether that counts against the canary is the miss rule
//! ([`judge_miss`]): an origin failure does; an absent file does only when the canary's
//! manifest lists it (it was published and is gone). A file the canary never published
//! (anyone can ask a canary client's URL for a file only stable has), or a canary without a
//! readable manifest, is a plain fallback: logged, not counted, so nobody can fail a canary
//! with requests for files it never had.
//!
//! A manifest never changes (versions are immutable), so one read is kept per isolate
//! ([`Manifests`]: successful parses only, at most [`MANIFESTS_KEPT`], the oldest dropped
//! first); a missing or unreadable one is read again when next needed.

use crate::config::{BundleName, Version};
use crate::kv::KvRead;
use crate::manifest::Manifest;

/// Parsed manifests one isolate keeps.
pub const MANIFESTS_KEPT: usize = 64;

/// What an isolate knows of a version's manifest after reading it, as the entry module
/// hands it back to the plan (one line: `known`, `missing`, or `failed <detail>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestState {
    /// Read and kept.
    Known,
    /// R2 has no manifest for the version: it was never published (or before manifests).
    Missing,
    /// R2 failed, or the object is not this version's manifest.
    Failed(String),
}

impl ManifestState {
    const KNOWN: &'static str = "known";
    const MISSING: &'static str = "missing";
    const FAILED: &'static str = "failed ";

    /// The state as one line (a detail's line breaks become spaces).
    pub fn line(&self) -> String {
        match self {
            ManifestState::Known => Self::KNOWN.into(),
            ManifestState::Missing => Self::MISSING.into(),
            ManifestState::Failed(detail) => {
                let mut line = String::from(Self::FAILED);
                line.extend(detail.chars().map(|c| if c.is_control() { ' ' } else { c }));
                line
            }
        }
    }

    /// Reads [`line`](Self::line)'s text; anything else is `None`.
    pub fn from_line(line: &str) -> Option<Self> {
        match line {
            Self::KNOWN => Some(ManifestState::Known),
            Self::MISSING => Some(ManifestState::Missing),
            _ => line
                .strip_prefix(Self::FAILED)
                .map(|d| ManifestState::Failed(d.to_owned())),
        }
    }
}

/// The manifests an isolate has read: each version's file paths. A few dozen at most,
/// looked up only on a miss or a pinned old version: lists, searched in order (no hash
/// table's or sort's code in the routing wasm for this rare path).
#[derive(Debug, Default)]
pub struct Manifests {
    /// `(bundle@version, files)`, in the order they were kept: the oldest goes first.
    kept: Vec<(String, Files)>,
}

/// A manifest's file paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files(Vec<String>);

impl Files {
    /// Whether the manifest lists `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.0.iter().any(|p| p == path)
    }
}

fn id(bundle: &BundleName, version: &Version) -> String {
    format!("{bundle}@{version}")
}

impl Manifests {
    /// The files of `version`'s manifest, if this isolate has read it.
    pub fn files(&self, bundle: &BundleName, version: &Version) -> Option<&Files> {
        let id = id(bundle, version);
        self.kept.iter().find(|(k, _)| *k == id).map(|(_, f)| f)
    }

    /// Records a read of `version`'s manifest (a successful parse is kept).
    pub fn record(
        &mut self,
        bundle: &BundleName,
        version: &Version,
        read: KvRead,
    ) -> ManifestState {
        let text = match read {
            KvRead::Value(text) => text,
            KvRead::Missing => return ManifestState::Missing,
            KvRead::Failed(detail) => return ManifestState::Failed(detail),
        };
        let manifest = match Manifest::parse(&text, bundle, version) {
            Ok(m) => m,
            Err(e) => {
                let key = crate::manifest::manifest_key(bundle, version);
                return ManifestState::Failed(format!("{key}: {e}"));
            }
        };
        let id = id(bundle, version);
        self.kept.retain(|(k, _)| *k != id);
        if self.kept.len() >= MANIFESTS_KEPT {
            self.kept.remove(0);
        }
        self.kept.push((id, Files(manifest.files)));
        ManifestState::Known
    }
}

/// Whether a canary miss counts against the canary, and why (the `canary_fallback` log
/// line's `counted`, `reason` and `detail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissRule {
    pub counted: bool,
    pub reason: &'static str,
    pub detail: Option<String>,
}

/// What the manifest says of a missing canary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing<'a> {
    /// The manifest was read: its files.
    Files(&'a Files),
    /// The version has no manifest.
    NoManifest,
    /// It could not be read (R2 failed, or it is not this version's): the detail.
    Unreadable(&'a str),
}

/// The miss rule (see the module's docs). `r2_detail`: the origin's failure, empty when R2
/// answered that the file is absent; `path`: the file, relative to the version. `None`
/// when the rule needs the manifest and it has not been read for this miss.
pub fn judge_miss(r2_detail: &str, path: &str, listing: Option<Listing<'_>>) -> Option<MissRule> {
    let rule = |counted, reason, detail: Option<&str>| MissRule {
        counted,
        reason,
        detail: detail.map(str::to_owned),
    };
    if !r2_detail.is_empty() {
        return Some(rule(true, "r2_error", Some(r2_detail)));
    }
    Some(match listing? {
        Listing::Files(files) if files.contains(path) => rule(true, "missing_published_file", None),
        Listing::Files(_) => rule(false, "not_in_canary", None),
        Listing::NoManifest => rule(false, "no_manifest", None),
        Listing::Unreadable(detail) => rule(false, "manifest_read_failed", Some(detail)),
    })
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

    fn manifest(files: &[&str]) -> String {
        let (b, v) = names();
        Manifest::of(&b, &v, files.iter().map(|f| f.to_string()).collect()).to_json()
    }

    #[test]
    fn the_miss_rule_counts_only_what_the_canary_published_or_an_origin_failure() {
        let files = Files(vec!["sdk.js".to_string()]);
        // (R2's failure, the file, what the manifest says, the rule: counted, reason, detail)
        type Want<'a> = Option<(bool, &'a str, Option<&'a str>)>;
        let cases: [(&str, &str, Option<Listing>, Want); 7] = [
            (
                "R2 500",
                "sdk.js",
                None,
                Some((true, "r2_error", Some("R2 500"))),
            ),
            (
                "R2 500",
                "x.js",
                Some(Listing::NoManifest),
                Some((true, "r2_error", Some("R2 500"))),
            ),
            ("", "sdk.js", None, None),
            (
                "",
                "sdk.js",
                Some(Listing::Files(&files)),
                Some((true, "missing_published_file", None)),
            ),
            (
                "",
                "stable-only.js",
                Some(Listing::Files(&files)),
                Some((false, "not_in_canary", None)),
            ),
            (
                "",
                "sdk.js",
                Some(Listing::NoManifest),
                Some((false, "no_manifest", None)),
            ),
            (
                "",
                "sdk.js",
                Some(Listing::Unreadable("R2 timeout")),
                Some((false, "manifest_read_failed", Some("R2 timeout"))),
            ),
        ];
        for (r2, path, listing, want) in cases {
            let got = judge_miss(r2, path, listing);
            let want = want.map(|(counted, reason, detail)| MissRule {
                counted,
                reason,
                detail: detail.map(str::to_owned),
            });
            assert_eq!(got, want, "{r2:?} {path} {listing:?}");
        }
    }

    #[test]
    fn a_read_manifest_is_kept_and_a_missing_or_bad_one_is_not() {
        let (b, v) = names();
        let mut m = Manifests::default();
        assert_eq!(m.record(&b, &v, KvRead::Missing), ManifestState::Missing);
        assert_eq!(
            m.record(&b, &v, KvRead::Failed("R2 down".into())),
            ManifestState::Failed("R2 down".into())
        );
        let other = r#"{"bundle":"demo","version":"1.0.0","files":[]}"#;
        let ManifestState::Failed(why) = m.record(&b, &v, KvRead::Value(other.into())) else {
            panic!("another version's manifest was taken");
        };
        assert!(
            why.starts_with("demo/.manifests/1.1.0.json: not a manifest"),
            "{why}"
        );
        assert!(m.files(&b, &v).is_none());
        assert_eq!(
            m.record(&b, &v, KvRead::Value(manifest(&["sdk.js", "a/b.js"]))),
            ManifestState::Known
        );
        let files = m.files(&b, &v).unwrap();
        assert!(files.contains("a/b.js") && files.contains("sdk.js") && !files.contains("c.js"));
    }

    #[test]
    fn at_most_the_newest_manifests_are_kept() {
        let b = BundleName::parse("demo").unwrap();
        let mut m = Manifests::default();
        let versions: Vec<Version> = (0..=MANIFESTS_KEPT)
            .map(|i| Version::parse(&format!("1.0.{i}")).unwrap())
            .collect();
        for v in &versions {
            let text = Manifest::of(&b, v, vec!["sdk.js".into()]).to_json();
            assert_eq!(m.record(&b, v, KvRead::Value(text)), ManifestState::Known);
        }
        assert!(m.files(&b, &versions[0]).is_none(), "the oldest went");
        assert!(versions[1..].iter().all(|v| m.files(&b, v).is_some()));
    }

    #[test]
    fn a_state_crosses_as_one_line() {
        for state in [
            ManifestState::Known,
            ManifestState::Missing,
            ManifestState::Failed("R2: timed out".into()),
        ] {
            assert_eq!(ManifestState::from_line(&state.line()), Some(state));
        }
        let two_lines = ManifestState::Failed("a\nb".into()).line();
        assert_eq!(two_lines, "failed a b");
        assert_eq!(ManifestState::from_line("something else"), None);
    }
}
