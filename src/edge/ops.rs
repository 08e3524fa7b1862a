//! Operations endpoints under `/__canary/`: health, status and the admin API (enabled only
//! when the `ADMIN_TOKEN` secret is set). SDK error reports and boot signals are not here:
//! they are the count path's (`core::serve::report`, through the entry module).

use futures_util::future::join_all;
use serde_json::json;
use worker::{Context, Env, Request};

use super::{
    auth, body, brief, claim, json_response, log_event, monitor, now_ms, rollout, Failure, Isolate,
    Outcome, R2_BINDING,
};
use canary_core::config::{BundleName, Version};
use canary_core::control::wire::{CommandAnswer, StatusAnswer};
use canary_core::edge::decide::{Channel, PreparedRollout};
use canary_core::edge::override_token::MAX_TTL_SECS;
use canary_core::edge::serve::Edge;
use canary_core::error::EdgeError;
use canary_core::ops::admin::{parse_request, Command};
use canary_core::ops::authz::{self, Action, BundleNeed};
use canary_core::ops::body::MAX_ADMIN_BODY;

pub(super) async fn serve(
    mut req: Request,
    env: &Env,
    _ctx: &Context,
    iso: &Isolate,
    rest: &str,
) -> Outcome {
    let segments: Vec<&str> = rest.split('/').collect();
    // The runtime's method string: workers-rs maps unknown methods to GET.
    let method = req.inner().method();
    match (segments.as_slice(), method.as_str()) {
        (["health"], "GET" | "HEAD") => {
            let cohorts = iso.edge().settings.cohorts;
            json_response(
                200,
                &json!({ "status": "ok", "service": "canary-edge", "cohorts": cohorts }),
            )
        }
        (["status", bundle], "GET" | "HEAD") if !bundle.is_empty() => {
            let bundle = BundleName::parse(bundle).map_err(EdgeError::NotFound)?;
            let prepared = rollout(env, iso, &bundle).await?;
            json_response(200, &public_status(&iso.edge(), &prepared))
        }
        (["api"] | ["api", ""], "GET") => bundles(&req, env, iso).await,
        (["api", ..], _) => admin(&mut req, env, iso, &segments[1..]).await,
        (["ui", ..], _) => super::console::serve(&mut req, env, iso, &segments[1..]).await,
        _ => Err(EdgeError::NotFound(format!("no operations endpoint /__canary/{rest}")).into()),
    }
}

/// The split of a bundle as a client may know it: versions, weight, effective weight and
/// which cohorts are on the canary. Thresholds, counts, rollback reasons and history are
/// for operators (the admin API).
fn public_status(edge: &Edge, p: &PreparedRollout) -> serde_json::Value {
    let r = &p.rollout;
    let mut v = split_json(edge, p);
    v["stable"] = json!(r.stable);
    v["canary"] = json!(r.live_canary());
    v
}

/// Weight, effective weight and canary cohorts of a rollout.
fn split_json(edge: &Edge, p: &PreparedRollout) -> serde_json::Value {
    let cohorts = edge.settings.cohorts;
    let weight = p.rollout.weight;
    let live = p.rollout.live_canary().is_some();
    let canary_cohorts: Vec<u16> = if live {
        (0..cohorts)
            .filter(|&c| edge.router.bucketer().is_canary(c, weight, p.rotation))
            .collect()
    } else {
        Vec::new()
    };
    let mut v = json!({
        "bundle": p.bundle.as_str(),
        "cohorts": cohorts,
        "weight": weight.percent(),
        "effective_weight": if live { weight.effective_percent(cohorts) } else { 0.0 },
        "canary_cohorts": canary_cohorts,
    });
    if live && weight.canary_cohorts(cohorts) == 0 {
        v["note"] = json!(format!(
            "weight {}% puts no cohort on the canary with {cohorts} cohorts: nobody gets it",
            weight.percent()
        ));
    } else if weight.is_rounded(cohorts) {
        v["note"] = json!(format!(
            "weight {}% is not a multiple of {}% with {cohorts} cohorts; {}% is served",
            weight.percent(),
            100.0 / f64::from(cohorts),
            weight.effective_percent(cohorts)
        ));
    }
    v
}

/// The admin view: the control plane's authoritative config with its split, and the
/// monitor's counts, verdict, rollout and history.
fn admin_status(edge: &Edge, bundle: &BundleName, answer: StatusAnswer) -> serde_json::Value {
    let mut body = match answer.config {
        Some(c) => {
            let prepared = edge.router.prepare(bundle.clone(), c);
            let mut v = split_json(edge, &prepared);
            v["config"] = json!(prepared.rollout);
            v
        }
        None => {
            json!({ "bundle": bundle.as_str(), "config": null, "cohorts": edge.settings.cohorts })
        }
    };
    body["monitor"] = answer.monitor.unwrap_or(json!(null));
    if let Some(intake) = answer.intake {
        body["intake"] = json!(intake);
    }
    body
}

/// What this isolate reads from KV for `bundle`, with its split, and `monitor`.
async fn edge_view(
    env: &Env,
    iso: &Isolate,
    bundle: &BundleName,
    monitor: serde_json::Value,
) -> Result<serde_json::Value, Failure> {
    let prepared = rollout(env, iso, bundle).await?;
    let mut body = split_json(&iso.edge(), &prepared);
    body["config"] = json!(prepared.rollout);
    body["monitor"] = monitor;
    Ok(body)
}

// ---------------------------------------------------------------- admin API

/// `/__canary/api/<bundle>[/<action>]`: who may is `authz`'s table (`auth::caller`).
async fn admin(req: &mut Request, env: &Env, iso: &Isolate, path: &[&str]) -> Outcome {
    let method = req.inner().method();
    let (action, need) = authz::api_route(&method, path);
    let caller = auth::caller(req, env, iso, action).await?;
    let bundle_text = path.first().copied().unwrap_or_default();
    let bundle = BundleName::parse(bundle_text).map_err(EdgeError::NotFound)?;
    if need == BundleNeed::Existing {
        require_config(env, iso, &bundle).await?;
    }
    match (path.get(1..).unwrap_or_default(), method.as_str()) {
        ([], "GET") => {
            let Some(answer) = monitor::status(env, &bundle).await? else {
                // No control plane bound: what this isolate reads from KV.
                iso.edge_mut().forget_config(&bundle);
                return json_response(200, &edge_view(env, iso, &bundle, json!(null)).await?);
            };
            json_response(200, &admin_status(&iso.edge(), &bundle, answer))
        }
        (["minutes"], "GET") => {
            // `?since=<Unix minute>`; by default the whole 24 hours kept.
            let url = req.inner().url();
            let since = canary_core::edge::route::query_param(&url, "since")
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        EdgeError::BadRequest(format!(
                            "since must be a Unix minute (an integer), got {v:?}"
                        ))
                    })
                })
                .transpose()?
                .unwrap_or(0);
            let Some(answer) = monitor::minutes(env, &bundle, since).await? else {
                return json_response(
                    200,
                    &json!({ "bundle": bundle.as_str(), "minutes": null,
                             "note": "no HEALTH binding: health monitoring is off" }),
                );
            };
            json_response(
                200,
                &serde_json::to_value(&answer).map_err(worker::Error::from)?,
            )
        }
        (["files", version], "GET") => {
            let version = Version::parse(version).map_err(EdgeError::BadRequest)?;
            list_files(env, &bundle, &version).await
        }
        (["override"], "POST") => issue_override(req, iso, &bundle).await,
        (["claim"], "POST") => claim::claim(req, env, &bundle, &caller.name).await,
        ([action], "POST") => {
            let body = body::read(req, MAX_ADMIN_BODY, "an admin request").await?;
            // Validate here for a clear 400; the control plane applies it as the single writer.
            let (command, _) =
                parse_request(action, &body).map_err(|e| EdgeError::BadRequest(e.to_string()))?;
            if let Command::Publish(version) = &command {
                require_files(env, &bundle, version).await?;
            }
            let answer = monitor::command(env, &bundle, action, &body, &caller.name).await?;
            iso.edge_mut().forget_config(&bundle);
            match answer {
                CommandAnswer::Done(answer) => {
                    json_response(200, &admin_status(&iso.edge(), &bundle, *answer))
                }
                CommandAnswer::Refused { status, answer } => json_response(
                    status,
                    &serde_json::to_value(&answer).map_err(worker::Error::from)?,
                ),
            }
        }
        (_, "GET" | "POST") => Err(EdgeError::NotFound(format!(
            "no admin endpoint /__canary/api/{}",
            path.join("/")
        ))
        .into()),
        _ => Err(EdgeError::MethodNotAllowed("GET, POST").into()),
    }
}

/// `GET /__canary/api`: every bundle with a config in KV (`rollout/` keys), with its
/// control plane's view, for the console's overview. Each bundle's object is asked for its
/// committed summary (no KV read, no wait for its lock), all at once.
async fn bundles(req: &Request, env: &Env, iso: &Isolate) -> Outcome {
    auth::caller(req, env, iso, Action::Read).await?;
    let kv = env.kv(super::KV_BINDING)?;
    let listed = kv
        .list()
        .prefix(canary_core::config::KV_PREFIX.to_owned())
        .limit(MAX_LISTED_BUNDLES)
        .execute()
        .await
        .map_err(|e| EdgeError::ConfigUnavailable {
            bundle: "*".into(),
            detail: super::brief(e),
        })?;
    let names = listed.keys.iter().filter_map(|key| {
        let name = key.name.strip_prefix(canary_core::config::KV_PREFIX)?;
        BundleName::parse(name).ok()
    });
    let out = join_all(names.map(|bundle| overview_entry(env, iso, bundle))).await;
    json_response(
        200,
        &json!({ "bundles": out, "truncated": !listed.list_complete }),
    )
}

/// One bundle of the overview: its admin view from the object's summary. An object that
/// has adopted no config yet (nothing has asked it since the bundle was created) shows the
/// config as this isolate reads it; a bundle whose summary or config cannot be read shows
/// `config: null` and `monitor: null` (the overview itself still answers), with the error.
async fn overview_entry(env: &Env, iso: &Isolate, bundle: BundleName) -> serde_json::Value {
    let answer = match monitor::summary(env, &bundle).await {
        Ok(None) => return json!({ "bundle": bundle.as_str(), "monitor": null }),
        Ok(Some(answer)) if answer.config.is_some() => {
            return admin_status(&iso.edge(), &bundle, answer)
        }
        Ok(Some(answer)) => answer,
        Err(e) => {
            let detail = brief(e);
            log_event(
                "overview_summary_failed",
                json!({ "bundle": bundle.as_str(), "detail": detail }),
            );
            let mut body = admin_status(
                &iso.edge(),
                &bundle,
                StatusAnswer {
                    config: None,
                    monitor: None,
                    intake: None,
                },
            );
            body["error"] = json!(format!("the health monitor did not answer: {detail}"));
            return body;
        }
    };
    let monitor = answer.monitor.clone().unwrap_or(json!(null));
    match edge_view(env, iso, &bundle, monitor).await {
        Ok(body) => body,
        Err(_) => admin_status(&iso.edge(), &bundle, answer),
    }
}

/// A bundle with no config does not exist: its routes answer 404 before any Durable Object
/// is asked (asking one creates its state). A config KV cannot give right now (unreadable,
/// invalid) still names a bundle someone made: its control plane answers.
async fn require_config(env: &Env, iso: &Isolate, bundle: &BundleName) -> Result<(), Failure> {
    match rollout(env, iso, bundle).await {
        Err(missing @ EdgeError::NoRollout(_)) => Err(missing.into()),
        Ok(_) | Err(_) => Ok(()),
    }
}

/// Most bundles the overview lists (one control-plane call each, made together).
const MAX_LISTED_BUNDLES: u64 = 100;

/// Publishing a version with no files would send its canary cohorts to 404s (or, with the
/// fallback, hide that nothing was uploaded): refuse it.
async fn require_files(env: &Env, bundle: &BundleName, version: &Version) -> Result<(), Failure> {
    let bucket = env.bucket(R2_BINDING)?;
    let page = bucket
        .list()
        .prefix(format!("{bundle}/{version}/"))
        .limit(1)
        .execute()
        .await?;
    if page.objects().is_empty() {
        return Err(EdgeError::Conflict(format!(
            "no files under {bundle}/{version}/ in R2: upload them before publishing"
        ))
        .into());
    }
    Ok(())
}

/// The files of one version, for `scripts/canary probe`.
async fn list_files(env: &Env, bundle: &BundleName, version: &Version) -> Outcome {
    let bucket = env.bucket(R2_BINDING)?;
    let prefix = format!("{bundle}/{version}/");
    let mut files = Vec::new();
    let mut cursor = None;
    loop {
        let mut list = bucket.list().prefix(prefix.clone()).limit(1000);
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await?;
        for o in page.objects() {
            let key = o.key();
            files.push(json!({
                "path": key.strip_prefix(&prefix).unwrap_or(&key),
                "size": o.size(),
                "etag": o.http_etag(),
            }));
        }
        match (page.truncated(), page.cursor()) {
            (true, Some(c)) if files.len() < 10_000 => cursor = Some(c),
            _ => break,
        }
    }
    json_response(
        200,
        &json!({ "bundle": bundle.as_str(), "version": version.as_str(), "files": files }),
    )
}

/// `POST /__canary/api/<bundle>/override {"channel": "canary", "ttl_secs": 600}`.
async fn issue_override(req: &mut Request, iso: &Isolate, bundle: &BundleName) -> Outcome {
    // A copy: the isolate's state is not borrowed across the body's read.
    let Some(key) = iso.edge().override_key().cloned() else {
        return Err(EdgeError::Conflict(
            "overrides are disabled (OVERRIDE_SECRET is not set)".into(),
        )
        .into());
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        channel: String,
        #[serde(default)]
        ttl_secs: Option<u64>,
    }
    let text = body::read(req, MAX_ADMIN_BODY, "an admin request").await?;
    let ask: Ask = serde_json::from_str(&text)
        .map_err(|e| EdgeError::BadRequest(format!("bad override request: {e}")))?;
    let channel = match ask.channel.as_str() {
        "canary" => Channel::Canary,
        "stable" => Channel::Stable,
        other => {
            return Err(EdgeError::BadRequest(format!(
                "channel must be canary or stable, got {other:?}"
            ))
            .into())
        }
    };
    let ttl = ask.ttl_secs.unwrap_or(900).clamp(1, MAX_TTL_SECS);
    let issued = (now_ms() / 1000.0) as u64;
    let expires = issued + ttl;
    json_response(
        200,
        &json!({
            "token": key.issue(bundle, channel, issued, expires),
            "header": canary_core::edge::override_token::OVERRIDE_HEADER,
            "cookie": canary_core::edge::override_token::OVERRIDE_COOKIE,
            "expires_unix": expires,
        }),
    )
}
