//! canary-core's rules for the operator CLI (`scripts/canary.mjs`), built for Node with
//! `wasm-bindgen --target nodejs` into `build/cli/` (scripts/lib.sh, `build_cli`).
//!
//! Every function is a thin call of the core's own code, so the CLI refuses exactly what the
//! worker and its control plane refuse, in their words, and its KV path makes the control
//! plane's transitions (`Rollout::published`, `promoted`, `with_weight`, `rolled_back`, the
//! policy change): one
//! command gives one config with or without the admin API. Configs cross as JSON text (the
//! config the core writes: `Rollout::to_json`), errors as `Error`s with the core's message.

use canary_core::config::patch::describe;
use canary_core::config::{kv_key, BundleName, Rollout, Version, Weight};
use canary_core::edge::http::content_type_for;
use canary_core::edge::route::{self, AssetRoute, Route, RouteError};
use canary_core::ops::admin::{parse_command, Command};
use canary_core::ops::operators::{
    token_hash, valid_name, Operators, ADMIN_NAME, MAX_NAME_CHARS, READ_ONLY_NAME,
};
use canary_core::ops::publish;
use canary_core::settings::{Settings, VAR_COHORTS};
use canary_core::time::iso_time;
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

/// A refusal, with the core's message; thrown in JS as an `Error`.
#[derive(Debug, PartialEq)]
pub struct Refused(pub String);

impl<E: std::fmt::Display> From<E> for Refused {
    fn from(e: E) -> Self {
        Refused(e.to_string())
    }
}

impl From<Refused> for JsValue {
    fn from(e: Refused) -> JsValue {
        JsError::new(&e.0).into()
    }
}

type Out<T> = Result<T, Refused>;

/// The bundle name, if valid (`BundleName::parse`).
#[wasm_bindgen(js_name = bundleName)]
pub fn bundle_name(bundle: &str) -> Out<String> {
    Ok(BundleName::parse(bundle)?.as_str().to_owned())
}

/// The KV key of `bundle`'s config (`kv_key`).
#[wasm_bindgen(js_name = kvKey)]
pub fn kv_key_of(bundle: &str) -> Out<String> {
    Ok(kv_key(&BundleName::parse(bundle)?))
}

/// The version, if valid (`Version::parse`).
#[wasm_bindgen]
pub fn version(version: &str) -> Out<String> {
    Ok(Version::parse(version)?.as_str().to_owned())
}

/// A weight argument, read as the config's `weight` field is (`Weight::from_value`).
#[wasm_bindgen]
pub fn weight(text: &str) -> Out<u8> {
    let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    Ok(Weight::from_value(&value)?.percent())
}

/// The weight, unless it puts no cohort on the canary (`Weight::serving`).
#[wasm_bindgen(js_name = weightServing)]
pub fn weight_serving(weight: u8, cohorts: u16) -> Out<u8> {
    Ok(Weight::new(weight.into())?.serving(cohorts)?.percent())
}

/// `COHORTS` as the worker reads it (`None`: unset, the default).
#[wasm_bindgen]
pub fn cohorts(text: Option<String>) -> Out<u16> {
    let settings = Settings::from_lookup(|var| {
        if var == VAR_COHORTS {
            text.clone()
        } else {
            None
        }
    })?;
    Ok(settings.cohorts)
}

/// How many cohorts `weight` puts on the canary, the percent served, and whether it is
/// rounded (`Weight::canary_cohorts`, `effective_percent`, `is_rounded`), as JSON.
#[wasm_bindgen(js_name = effectiveWeight)]
pub fn effective_weight(weight: u32, cohorts: u16) -> Out<String> {
    let w = Weight::new(weight.into())?;
    Ok(json!({
        "cohortsOnCanary": w.canary_cohorts(cohorts),
        "percent": w.effective_percent(cohorts),
        "rounded": w.is_rounded(cohorts),
    })
    .to_string())
}

/// The R2 key of `path` in `bundle` `version`, if the worker serves it: its pinned URL
/// (`AssetRoute::pinned_path`) must route (`route::parse`) back to this very file.
#[wasm_bindgen(js_name = assetKey)]
pub fn asset_key(bundle: &str, version: &str, path: &str) -> Out<String> {
    let asset = AssetRoute {
        bundle: BundleName::parse(bundle)?,
        pin: None,
        path: path.to_owned(),
    };
    let version = Version::parse(version)?;
    match route::parse(&asset.pinned_path(&version)) {
        Ok(Route::Asset(back))
            if back.pin.as_ref() == Some(&version)
                && back.bundle == asset.bundle
                && back.path == asset.path =>
        {
            Ok(asset.object_key(&version))
        }
        Ok(_) => Err(Refused("its pinned URL names another file".into())),
        Err(RouteError::BadRequest(m) | RouteError::NotFound(m)) => Err(Refused(m)),
    }
}

/// The R2 key of `version`'s manifest (`manifest::manifest_key`).
#[wasm_bindgen(js_name = manifestKey)]
pub fn manifest_key_of(bundle: &str, version: &str) -> Out<String> {
    Ok(canary_core::manifest::manifest_key(
        &BundleName::parse(bundle)?,
        &Version::parse(version)?,
    ))
}

/// The manifest of `version` with these files (their paths relative to the version), as
/// the JSON written to its key: the format the worker reads (`manifest::Manifest`).
#[wasm_bindgen(js_name = manifestText)]
pub fn manifest_text(bundle: &str, version: &str, files: Vec<String>) -> Out<String> {
    Ok(canary_core::manifest::Manifest::of(
        &BundleName::parse(bundle)?,
        &Version::parse(version)?,
        files,
    )
    .to_json())
}

/// Why `version` cannot be published when R2 already has `keys` of it: the worker's words
/// (`publish::Refusal::Uploaded`), for the CLI's own check without the admin API.
#[wasm_bindgen(js_name = uploadedRefusal)]
pub fn uploaded_refusal(bundle: &str, version: &str, keys: Vec<String>) -> Out<String> {
    Ok(publish::Refusal::Uploaded(keys)
        .message(&BundleName::parse(bundle)?, &Version::parse(version)?))
}

/// The content type the worker gives `path` (`content_type_for`).
#[wasm_bindgen(js_name = contentType)]
pub fn content_type(path: &str) -> String {
    content_type_for(path).to_owned()
}

/// A config, validated as the worker reads it (`Rollout::parse`), as the core writes it.
#[wasm_bindgen]
pub fn config(json: &str) -> Out<String> {
    Ok(Rollout::parse(json)?.to_json())
}

/// The config after publishing `version` (`current`: `None` for a new bundle).
#[wasm_bindgen]
pub fn published(current: Option<String>, version: &str) -> Out<String> {
    let current = current.as_deref().map(Rollout::parse).transpose()?;
    Ok(Rollout::published(current.as_ref(), Version::parse(version)?)?.to_json())
}

/// The config after a promote.
#[wasm_bindgen]
pub fn promoted(current: &str) -> Out<String> {
    Ok(Rollout::parse(current)?.promoted()?.to_json())
}

/// The config at `weight`.
#[wasm_bindgen(js_name = withWeight)]
pub fn with_weight(current: &str, weight: u8, cohorts: u16) -> Out<String> {
    let weight = Weight::new(weight.into())?;
    Ok(Rollout::parse(current)?
        .with_weight(weight, cohorts)?
        .to_json())
}

/// The config after a policy change (`body`: the admin API's `POST …/policy` body), and the
/// change in words (`health.min_clients: 200 -> 300`), as `{"config": …, "changes": "…"}`.
#[wasm_bindgen(js_name = withPolicy)]
pub fn with_policy(current: &str, body: &str) -> Out<String> {
    let Command::SetPolicy(patch) = parse_command("policy", body)? else {
        unreachable!("the policy action parses as a policy change");
    };
    let (next, changes) = patch.apply(&Rollout::parse(current)?)?;
    let config: Value = serde_json::from_str(&next.to_json())?;
    Ok(json!({ "config": config, "changes": describe(&changes) }).to_string())
}

/// The config after a rollback at `now_ms` by `ADMIN_TOKEN`'s name, its reason as the
/// admin API takes it (`parse_command`).
#[wasm_bindgen(js_name = rolledBack)]
pub fn rolled_back(current: &str, reason: &str, now_ms: f64) -> Out<String> {
    let body = json!({ "reason": reason }).to_string();
    let Command::Rollback(reason) = parse_command("rollback", &body)? else {
        unreachable!("the rollback action parses as a rollback");
    };
    let next = Rollout::parse(current)?.rolled_back(&iso_time(now_ms), &reason, ADMIN_NAME)?;
    Ok(next.to_json())
}

/// The `OPERATOR_TOKENS` entry `name:<sha256 hex>` of `token` (`token_hash`), if `name` may
/// operate (`valid_name`, not a reserved name) and the worker reads the entry as `name`'s.
#[wasm_bindgen(js_name = operatorEntry)]
pub fn operator_entry(name: &str, token: &str) -> Out<String> {
    if !valid_name(name) || name == ADMIN_NAME || name == READ_ONLY_NAME {
        // The words of `Operators::from_secrets`.
        return Err(Refused(format!(
            "operator name {name:?}: 1-{MAX_NAME_CHARS} of A-Z a-z 0-9 . _ @ + -, not {ADMIN_NAME:?} or {READ_ONLY_NAME:?}"
        )));
    }
    let entry = format!("{name}:{}", token_hash(token));
    let admin = "0".repeat(64);
    let read = Operators::from_secrets(Some(&admin), None, Some(&entry))?
        .and_then(|operators| operators.by_token(token));
    match read {
        Some(p) if p.name == name && p.may_write() => Ok(entry),
        _ => Err(Refused(format!(
            "the worker would not read {entry:?} as {name:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":30,"cohort_offset":3}"#;

    fn refused<T: std::fmt::Debug>(r: Out<T>) -> String {
        r.unwrap_err().0
    }

    #[test]
    fn names_and_paths() {
        assert_eq!(bundle_name("demo").unwrap(), "demo");
        assert!(refused(bundle_name("Demo!")).starts_with("bundle name must be 1-64"));
        assert_eq!(kv_key_of("demo").unwrap(), "rollout/demo");
        assert!(refused(version("../1")).starts_with("version must be"));
        assert_eq!(
            asset_key("demo", "1.0.0", "a/b c.js").unwrap(),
            "demo/1.0.0/a/b c.js"
        );
        assert_eq!(
            asset_key("demo", "1.0.0", "%41.js").unwrap(),
            "demo/1.0.0/%41.js"
        );
        assert_eq!(
            refused(asset_key("demo", "1.0.0", "a\\b.js")),
            "bad file path: slash, backslash or control character in a segment"
        );
        assert_eq!(
            refused(asset_key("demo", "1.0.0", "a/../b.js")),
            "bad file path: dot segment"
        );
        assert_eq!(
            refused(asset_key("demo", "1.0.0", &"x/".repeat(40))),
            "bad file path: too many segments"
        );
        assert_eq!(
            content_type("demo/1.0.0/sdk.JS"),
            "text/javascript; charset=utf-8"
        );
    }

    #[test]
    fn weights_and_cohorts() {
        assert_eq!(weight("30").unwrap(), 30);
        for bad in ["101", "-5", "ten", "2.5", ""] {
            assert!(
                refused(weight(bad)).contains("must be an integer from 0 to 100"),
                "{bad}"
            );
        }
        assert_eq!(weight_serving(10, 10).unwrap(), 10);
        assert!(refused(weight_serving(5, 10)).starts_with("5% puts no cohort"));
        assert_eq!(cohorts(None).unwrap(), 10);
        assert_eq!(cohorts(Some("100".into())).unwrap(), 100);
        assert!(refused(cohorts(Some("0".into()))).contains("COHORTS"));
        assert_eq!(
            effective_weight(35, 10).unwrap(),
            r#"{"cohortsOnCanary":3,"percent":30.0,"rounded":true}"#
        );
    }

    #[test]
    fn transitions_are_the_core_s() {
        assert_eq!(
            config(r#"{"stable":"1.0.0"}"#).unwrap(),
            r#"{"stable":"1.0.0","canary":null,"weight":0}"#
        );
        assert!(refused(config(r#"{"stable":"1.0.0","weight":250}"#))
            .starts_with("invalid rollout config: field `weight`"));
        assert_eq!(
            published(None, "1.0.0").unwrap(),
            r#"{"stable":"1.0.0","canary":null,"weight":0}"#
        );
        assert_eq!(
            published(Some(LIVE.into()), "1.2.0").unwrap(),
            r#"{"stable":"1.0.0","canary":"1.2.0","weight":0}"#
        );
        assert!(refused(published(Some(LIVE.into()), "1.1.0")).contains("already live"));
        assert_eq!(
            promoted(LIVE).unwrap(),
            r#"{"stable":"1.1.0","canary":null,"weight":0,"cohort_offset":3}"#
        );
        assert_eq!(
            with_weight(LIVE, 50, 10).unwrap(),
            r#"{"stable":"1.0.0","canary":"1.1.0","weight":50,"cohort_offset":3}"#
        );
        let long = "x".repeat(300);
        let back: Value = serde_json::from_str(&rolled_back(LIVE, &long, 0.0).unwrap()).unwrap();
        assert_eq!(back["weight"], 0);
        assert_eq!(back["rollback"]["at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(back["rollback"]["by"], "operator");
        assert_eq!(back["rollback"]["reason"].as_str().unwrap().len(), 200);
        let changed: Value = serde_json::from_str(
            &with_policy(LIVE, r#"{"health": {"min_clients": 300}}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(changed["config"]["health"]["min_clients"], 300);
        assert_eq!(changed["changes"], "health.min_clients: 200 -> 300");
        assert!(
            refused(with_policy(LIVE, r#"{"health": {"min_clients": 0}}"#))
                .contains("health.min_clients")
        );
    }

    #[test]
    fn operator_entries() {
        let token = "a".repeat(64);
        assert_eq!(
            operator_entry("alice", &token).unwrap(),
            format!("alice:{}", token_hash(&token))
        );
        for bad in ["operator", "read-only", "", "a b", " alice", "a,b", "a:b"] {
            assert!(
                refused(operator_entry(bad, &token)).starts_with("operator name"),
                "{bad}"
            );
        }
    }
}
