//! The runtime adapter: the one module that touches the `worker` crate. It gathers request
//! facts, does the KV, R2 and cache I/O, and turns core decisions into responses.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};

use serde_json::json;
use worker::{
    console_log, Cache, Context, Date, Delay, Env, Headers, Method, Request, Response, ResponseBody,
};

use crate::config::{kv_key, BundleName, Version};
use crate::decide::{Channel, ClientFacts, Decision, PreparedRollout, Router};
use crate::error::EdgeError;
use crate::http::{content_type_for, etag_matches, floating_cache_control, pinned_cache_control};
use crate::rollouts::{KvRead, RolloutCache, Staleness};
use crate::route::{self, AssetRoute, Route, RouteError};
use crate::settings::{Settings, SettingsError};

/// Binding names; must match `wrangler.toml`.
const KV_BINDING: &str = "ROLLOUTS";
const R2_BINDING: &str = "BUNDLES";

/// Per-isolate state, built on the first request.
struct Isolate {
    settings: Settings,
    router: Router,
    rollouts: RefCell<RolloutCache>,
    floating_cache_control: String,
    pinned_cache_control: String,
}

thread_local! {
    static ISOLATE: RefCell<Option<Result<Rc<Isolate>, SettingsError>>> = const { RefCell::new(None) };
}

fn isolate(env: &Env) -> Result<Rc<Isolate>, SettingsError> {
    ISOLATE.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| {
                let settings = Settings::from_lookup(|name| {
                    env.var(name)
                        .map(|v| v.to_string())
                        .or_else(|_| env.secret(name).map(|v| v.to_string()))
                        .ok()
                })?;
                Ok(Rc::new(Isolate {
                    router: Router::new(&settings),
                    rollouts: RefCell::new(RolloutCache::new(settings.config_ttl_ms)),
                    floating_cache_control: floating_cache_control(settings.floating_max_age),
                    pinned_cache_control: pinned_cache_control(settings.pinned_max_age),
                    settings,
                }))
            })
            .clone()
    })
}

/// The first line of a runtime error, bounded: JS errors carry whole stacks.
fn brief(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.chars().take(240).collect()
}

/// One structured log line.
fn log_event(event: &str, fields: serde_json::Value) {
    let mut line = json!({ "event": event, "service": "canary-edge" });
    if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    console_log!("{line}");
}

/// Entry point of the fetch event. Never returns `Err`: every failure becomes a response
/// with a status and a message.
pub async fn fetch(req: Request, env: Env, ctx: Context) -> Response {
    let outcome = match isolate(&env) {
        Ok(iso) => handle(&req, &env, &ctx, &iso).await,
        Err(e) => Err(EdgeError::Misconfigured(e).into()),
    };
    match outcome {
        Ok(resp) => resp,
        Err(Failure::Edge(e)) => {
            if e.status() >= 500 {
                log_event(
                    "error",
                    json!({ "status": e.status(), "detail": e.log_detail() }),
                );
            }
            error_response(&e)
        }
        Err(Failure::Runtime(e)) => {
            log_event("internal_error", json!({ "detail": brief(e) }));
            text_response(500, "internal error; the request was not served")
        }
    }
}

/// A failure: either one of ours (mapped by `EdgeError`) or a runtime error.
enum Failure {
    Edge(EdgeError),
    Runtime(worker::Error),
}

impl From<EdgeError> for Failure {
    fn from(e: EdgeError) -> Self {
        Failure::Edge(e)
    }
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Self {
        Failure::Runtime(e)
    }
}

type Outcome = Result<Response, Failure>;

async fn handle(req: &Request, env: &Env, ctx: &Context, iso: &Isolate) -> Outcome {
    let url = req.url()?;
    match route::parse(url.path()) {
        Ok(Route::Asset(asset)) => serve_asset(req, env, ctx, iso, &url, asset).await,
        Ok(Route::Ops(rest)) => serve_ops(req, env, iso, &rest).await,
        Err(RouteError::NotFound(m)) => Err(EdgeError::NotFound(m).into()),
        Err(RouteError::BadRequest(m)) => Err(EdgeError::BadRequest(m).into()),
    }
}

// ---------------------------------------------------------------- rollout config

/// The bundle's rollout: from the isolate's copy while fresh, else from KV.
async fn rollout(
    env: &Env,
    iso: &Isolate,
    bundle: &BundleName,
) -> Result<Rc<PreparedRollout>, EdgeError> {
    let now = Date::now().as_millis() as f64;
    if let Some(answer) = iso.rollouts.borrow().fresh(bundle, now) {
        return answer;
    }
    let read = match env.kv(KV_BINDING) {
        Ok(kv) => {
            let key = kv_key(bundle);
            let get = std::pin::pin!(kv.get(&key).text());
            let timeout = Delay::from(Duration::from_millis(iso.settings.kv_timeout_ms));
            match select(get, timeout).await {
                Either::Left((Ok(Some(text)), _)) => KvRead::Value(text),
                Either::Left((Ok(None), _)) => KvRead::Missing,
                Either::Left((Err(e), _)) => KvRead::Failed(brief(e)),
                Either::Right(_) => KvRead::Failed(format!(
                    "KV read timed out after {} ms",
                    iso.settings.kv_timeout_ms
                )),
            }
        }
        Err(e) => KvRead::Failed(format!("binding {KV_BINDING}: {e}")),
    };
    let (answer, staleness) = iso
        .rollouts
        .borrow_mut()
        .record(&iso.router, bundle, read, now);
    match staleness {
        Some(Staleness::InvalidInKv(detail)) => log_event(
            "config_invalid_kept_last_good",
            json!({ "bundle": bundle.as_str(), "detail": detail }),
        ),
        Some(Staleness::KvFailed(detail)) => log_event(
            "kv_failed_kept_last_good",
            json!({ "bundle": bundle.as_str(), "detail": detail }),
        ),
        None => {}
    }
    answer
}

// ---------------------------------------------------------------- assets

/// An object found in the edge cache or R2, ready to become a response.
struct Found {
    body: ResponseBody,
    etag: String,
    content_type: String,
}

/// Why an object could not be served.
enum Miss {
    Absent,
    Failed(String),
}

fn client_facts<'a>(
    req: &Request,
    iso: &Isolate,
    store: &'a mut [Option<String>; 5],
) -> ClientFacts<'a> {
    let headers = req.headers();
    store[0] = headers.get("cookie").ok().flatten();
    store[1] = headers.get(&iso.settings.user_key_header).ok().flatten();
    store[4] = headers.get("cf-connecting-ip").ok().flatten();
    if let Some(bot) = req.cf().and_then(|cf| cf.bot_management()) {
        store[2] = bot.ja4();
        store[3] = bot.ja3_hash();
    }
    let [cookie, user_key, ja4, ja3, ip] = store;
    ClientFacts {
        cookie_header: cookie.as_deref(),
        user_key: user_key.as_deref(),
        ja4: ja4.as_deref(),
        ja3_hash: ja3.as_deref(),
        client_ip: ip.as_deref(),
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // getrandom on Workers is crypto.getRandomValues, which does not fail; if it ever did,
    // a zeroed value still yields a valid cohort.
    let _ = getrandom::getrandom(&mut bytes);
    u64::from_le_bytes(bytes)
}

async fn serve_asset(
    req: &Request,
    env: &Env,
    ctx: &Context,
    iso: &Isolate,
    url: &worker::Url,
    asset: AssetRoute,
) -> Outcome {
    let head = match req.method() {
        Method::Get => false,
        Method::Head => true,
        _ => return Err(EdgeError::MethodNotAllowed("GET, HEAD").into()),
    };
    let prepared = rollout(env, iso, &asset.bundle).await?;
    let origin = url.origin().ascii_serialization();

    let mut store: [Option<String>; 5] = Default::default();
    let (version, channel, decision): (&Version, Option<Channel>, Option<Decision>) =
        match &asset.pin {
            Some(pinned) => (pinned, prepared.channel_of(pinned), None),
            None => {
                let facts = client_facts(req, iso, &mut store);
                let d = iso.router.decide(&prepared, &facts, random_u64);
                (d.version, Some(d.channel), Some(d))
            }
        };

    let mut served_version = version;
    let mut served_channel = channel;
    let mut fallback = false;
    let found = match load(env, ctx, &origin, &asset, version, head).await {
        Ok(found) => found,
        // Floating canary requests fall back to stable rather than fail a page.
        Err(miss) if asset.pin.is_none() && channel == Some(Channel::Canary) => {
            let key = asset.object_key(version);
            log_event(
                "canary_fallback",
                json!({
                    "bundle": asset.bundle.as_str(),
                    "canary": version.as_str(),
                    "stable": prepared.rollout.stable.as_str(),
                    "key": key,
                    "reason": match &miss { Miss::Absent => "missing".to_owned(), Miss::Failed(d) => d.clone() },
                }),
            );
            served_version = &prepared.rollout.stable;
            served_channel = Some(Channel::Stable);
            fallback = true;
            load(env, ctx, &origin, &asset, served_version, head)
                .await
                .map_err(|m| miss_error(&asset, served_version, m))?
        }
        Err(miss) => return Err(miss_error(&asset, version, miss).into()),
    };

    let headers = Headers::new();
    headers.set("content-type", &found.content_type)?;
    headers.set("etag", &found.etag)?;
    let cache_control = match asset.pin {
        Some(_) => &iso.pinned_cache_control,
        None => &iso.floating_cache_control,
    };
    headers.set("cache-control", cache_control)?;
    headers.set("x-canary-version", served_version.as_str())?;
    if let Some(ch) = served_channel {
        headers.set("x-canary-channel", ch.as_str())?;
    }
    if fallback {
        headers.set("x-canary-fallback", "stable")?;
    }
    if let Some(d) = &decision {
        headers.set(&iso.settings.cohort_header, &d.cohort.to_string())?;
        if let Some(cookie) = &d.set_cookie {
            headers.set("set-cookie", cookie)?;
        }
    }
    headers.set("access-control-allow-origin", "*")?;
    headers.set("x-content-type-options", "nosniff")?;

    let not_modified = req
        .headers()
        .get("if-none-match")
        .ok()
        .flatten()
        .is_some_and(|inm| etag_matches(&inm, &found.etag));
    let (status, body) = if not_modified {
        (304, ResponseBody::Empty)
    } else if head {
        (200, ResponseBody::Empty)
    } else {
        (200, found.body)
    };
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .body(body))
}

fn miss_error(asset: &AssetRoute, version: &Version, miss: Miss) -> EdgeError {
    let key = asset.object_key(version);
    match miss {
        Miss::Absent => EdgeError::ObjectMissing(key),
        Miss::Failed(detail) => EdgeError::Origin { key, detail },
    }
}

/// Loads one file of one version: from the edge cache, else from R2 (then cached). The
/// cache key is the file's pinned URL, shared by every cohort and by the floating URL, so
/// the split never lowers the hit rate and a weight change needs no purge.
async fn load(
    env: &Env,
    ctx: &Context,
    origin: &str,
    asset: &AssetRoute,
    version: &Version,
    head: bool,
) -> Result<Found, Miss> {
    let cache_key = format!("{origin}{}", asset.pinned_path(version));
    let cache = Cache::default();
    match cache.get(cache_key.as_str(), false).await {
        Ok(Some(hit)) => {
            let header = |name: &str| hit.headers().get(name).ok().flatten();
            if let Some(etag) = header("etag") {
                return Ok(Found {
                    content_type: header("content-type")
                        .unwrap_or_else(|| content_type_for(&asset.path).to_owned()),
                    etag,
                    body: hit.body().clone(),
                });
            }
        }
        Ok(None) => {}
        Err(e) => log_event(
            "cache_read_failed",
            json!({ "key": cache_key, "detail": brief(e) }),
        ),
    }

    let bucket = env
        .bucket(R2_BINDING)
        .map_err(|e| Miss::Failed(format!("binding {R2_BINDING}: {e}")))?;
    let key = asset.object_key(version);
    let object = if head {
        bucket.head(key).await
    } else {
        bucket.get(key).execute().await
    }
    .map_err(|e| Miss::Failed(brief(e)))?
    .ok_or(Miss::Absent)?;

    let etag = object.http_etag();
    let content_type = object
        .http_metadata()
        .content_type
        .filter(|ct| !ct.is_empty())
        .unwrap_or_else(|| content_type_for(&asset.path).to_owned());
    let body = match object.body() {
        Some(body) => body.response_body().map_err(|e| Miss::Failed(brief(e)))?,
        None => ResponseBody::Empty,
    };
    if head {
        return Ok(Found {
            body,
            etag,
            content_type,
        });
    }

    // Store a copy in the edge cache without holding up the response.
    let headers = Headers::new();
    let stored = headers
        .set("content-type", &content_type)
        .and_then(|_| headers.set("etag", &etag))
        .and_then(|_| headers.set("cache-control", "public, max-age=31536000, immutable"));
    let mut response = Response::builder().with_headers(headers).body(body);
    if stored.is_ok() {
        if let Ok(copy) = response.cloned() {
            ctx.wait_until(async move {
                if let Err(e) = cache.put(cache_key.as_str(), copy).await {
                    log_event(
                        "cache_write_failed",
                        json!({ "key": cache_key, "detail": brief(e) }),
                    );
                }
            });
        }
    }
    Ok(Found {
        body: response.body().clone(),
        etag,
        content_type,
    })
}

// ---------------------------------------------------------------- operations

async fn serve_ops(req: &Request, env: &Env, iso: &Isolate, rest: &str) -> Outcome {
    if !matches!(req.method(), Method::Get | Method::Head) {
        return Err(EdgeError::MethodNotAllowed("GET, HEAD").into());
    }
    match rest.split_once('/').unwrap_or((rest, "")) {
        ("health", "") => json_response(
            200,
            &json!({ "status": "ok", "service": "canary-edge", "cohorts": iso.settings.cohorts }),
        ),
        ("status", bundle) if !bundle.is_empty() => {
            let bundle = BundleName::parse(bundle).map_err(EdgeError::NotFound)?;
            let prepared = rollout(env, iso, &bundle).await?;
            json_response(200, &status_json(iso, &prepared))
        }
        _ => Err(EdgeError::NotFound(format!("no operations endpoint /__canary/{rest}")).into()),
    }
}

/// What an operator needs to see of a bundle's rollout, including the effective weight.
fn status_json(iso: &Isolate, p: &PreparedRollout) -> serde_json::Value {
    let cohorts = iso.settings.cohorts;
    let weight = p.rollout.weight;
    let canary_cohorts: Vec<u16> = match p.rollout.live_canary() {
        Some(_) => (0..cohorts)
            .filter(|&c| iso.router.bucketer().is_canary(c, weight, p.rotation))
            .collect(),
        None => Vec::new(),
    };
    let mut v = json!({
        "bundle": p.bundle.as_str(),
        "config": p.rollout,
        "cohorts": cohorts,
        "weight": weight.percent(),
        "effective_weight": if p.rollout.live_canary().is_some() { weight.effective_percent(cohorts) } else { 0.0 },
        "canary_cohorts": canary_cohorts,
    });
    if weight.is_rounded(cohorts) {
        v["note"] = json!(format!(
            "weight {}% is not a multiple of {}% with {cohorts} cohorts; {}% is served",
            weight.percent(),
            100.0 / f64::from(cohorts),
            weight.effective_percent(cohorts)
        ));
    }
    v
}

// ---------------------------------------------------------------- responses

fn text_response(status: u16, message: &str) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "text/plain; charset=utf-8");
    let _ = headers.set("cache-control", "no-store");
    Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(format!("{status} {message}\n").into_bytes())
}

fn error_response(e: &EdgeError) -> Response {
    let mut resp = text_response(e.status(), &e.public_message());
    if let EdgeError::MethodNotAllowed(allow) = e {
        let _ = resp.headers_mut().set("allow", allow);
    }
    resp
}

fn json_response(status: u16, value: &serde_json::Value) -> Outcome {
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(value.to_string().into_bytes()))
}
