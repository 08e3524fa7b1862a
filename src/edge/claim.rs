//! `POST /__canary/api/<bundle>/claim {"version": "1.2.0"}`: a publish claims its version
//! before it uploads a byte (`core::publish`). R2's conditional put makes the claim atomic:
//! of two publishes of one version, exactly one gets it.

use serde_json::json;
use worker::{Bucket, Conditional, Env, HttpMetadata, Request};

use super::{body, json_response, log_event, now_ms, Failure, Outcome, R2_BINDING};
use canary_core::config::{BundleName, Version};
use canary_core::error::EdgeError;
use canary_core::ops::body::MAX_ADMIN_BODY;
use canary_core::ops::publish::{
    claim_key, manifest_key, version_prefix, Claim, ClaimRequest, Refusal,
};
use canary_core::time::iso_time;

/// How many keys of an already uploaded version a refusal lists.
const LISTED_KEYS: u32 = 4;

pub(super) async fn claim(req: &mut Request, env: &Env, bundle: &BundleName, by: &str) -> Outcome {
    let text = body::read(req, MAX_ADMIN_BODY, "an admin request").await?;
    let ClaimRequest { version } = ClaimRequest::parse(&text).map_err(EdgeError::BadRequest)?;
    let bucket = env.bucket(R2_BINDING)?;
    // Files from before claims existed, or put by hand, make the version as taken as a claim.
    let uploaded = uploaded_keys(&bucket, bundle, &version, LISTED_KEYS).await?;
    if !uploaded.is_empty() {
        return refuse(bundle, &version, Refusal::Uploaded(uploaded));
    }
    let claim = Claim {
        bundle: bundle.to_string(),
        version: version.to_string(),
        by: by.to_owned(),
        at: iso_time(now_ms()),
    };
    let key = claim_key(bundle, &version);
    let written = bucket
        .put(
            key.clone(),
            serde_json::to_string(&claim).map_err(worker::Error::from)?,
        )
        .http_metadata(HttpMetadata {
            content_type: Some("application/json".into()),
            ..Default::default()
        })
        // Only if absent: R2 decides, once, which of two publishes holds the version.
        .only_if(Conditional {
            etag_does_not_match: Some("*".into()),
            ..Default::default()
        })
        .execute()
        .await?;
    if written.is_none() {
        return refuse(
            bundle,
            &version,
            Refusal::Claimed(read_claim(&bucket, &key).await),
        );
    }
    log_event(
        "version_claimed",
        json!({ "bundle": bundle.as_str(), "version": version.as_str(), "by": by }),
    );
    json_response(200, &json!({ "claimed": claim, "key": key }))
}

/// Up to `limit` keys of `version` already in R2: its files, then its manifest.
pub(super) async fn uploaded_keys(
    bucket: &Bucket,
    bundle: &BundleName,
    version: &Version,
    limit: u32,
) -> Result<Vec<String>, Failure> {
    let page = bucket
        .list()
        .prefix(version_prefix(bundle, version))
        .limit(limit)
        .execute()
        .await?;
    let mut keys: Vec<String> = page.objects().iter().map(|o| o.key()).collect();
    let manifest = manifest_key(bundle, version);
    if bucket.head(manifest.clone()).await?.is_some() {
        keys.push(manifest);
    }
    Ok(keys)
}

/// The claim that won, for the refusal's message; `None` if it cannot be read.
async fn read_claim(bucket: &Bucket, key: &str) -> Option<Claim> {
    let object = bucket.get(key).execute().await.ok()??;
    let text = object.body()?.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

fn refuse(bundle: &BundleName, version: &Version, refusal: Refusal) -> Outcome {
    let message = refusal.message(bundle, version);
    log_event(
        "claim_refused",
        json!({ "bundle": bundle.as_str(), "version": version.as_str(), "reason": message }),
    );
    Err(EdgeError::Conflict(message).into())
}
