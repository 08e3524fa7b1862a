//! Asset routes: `/<bundle>/<path>` (canary-routed) and `/<bundle>@<version>/<path>`.

use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{Cache, Context, Env, Headers, Request, Response, ResponseBody};

use super::js::{cached_etag_and_type, HeaderLines, RequestFacts};
use super::{brief, log_event, monitor, now_ms, rollout, Failure, Isolate, Outcome, R2_BINDING};
use crate::config::Version;
use crate::decide::{Channel, ClientFacts, PreparedRollout};
use crate::error::EdgeError;
use crate::http::{content_type_for, etag_matches, pinned_cache_control};
use crate::override_token::{OverrideKey, OVERRIDE_HEADER};
use crate::route::{self, AssetRoute};

/// An object found in the edge cache or R2, ready to become a response.
struct Found {
    body: ResponseBody,
    etag: String,
    content_type: String,
    from_cache: bool,
}

/// Why an object could not be served.
enum Miss {
    Absent,
    Failed(String),
}

/// The identities other than the cookie, read only when the cookie does not decide.
struct OtherFacts {
    user_key: Option<String>,
    ja4: Option<String>,
    ja3: Option<String>,
    ip: Option<String>,
}

impl OtherFacts {
    fn read(req: &Request, user_key_header: &str) -> Self {
        let headers = req.headers();
        let get = |name: &str| headers.get(name).ok().flatten();
        let bot = bot_management(req);
        let field = |name: &str| {
            let bot = bot.as_ref()?;
            js_sys::Reflect::get(bot, &JsValue::from_str(name))
                .ok()?
                .as_string()
        };
        Self {
            user_key: get(user_key_header),
            ip: get("cf-connecting-ip"),
            ja4: field("ja4"),
            ja3: field("ja3Hash"),
        }
    }

    fn facts<'a>(&'a self, cookie: Option<&'a str>) -> ClientFacts<'a> {
        ClientFacts {
            cookie_header: cookie,
            user_key: self.user_key.as_deref(),
            ja4: self.ja4.as_deref(),
            ja3_hash: self.ja3.as_deref(),
            client_ip: self.ip.as_deref(),
        }
    }
}

/// `request.cf.botManagement`, read through `Reflect` so that a field of an unexpected type
/// is simply absent (the typed `Cf` accessors assume strings and trap otherwise).
fn bot_management(req: &Request) -> Option<JsValue> {
    let cf = js_sys::Reflect::get(req.inner(), &JsValue::from_str("cf")).ok()?;
    if !cf.is_object() {
        return None;
    }
    let bot = js_sys::Reflect::get(&cf, &JsValue::from_str("botManagement")).ok()?;
    bot.is_object().then_some(bot)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // getrandom on Workers is crypto.getRandomValues, which does not fail; if it ever did,
    // a zeroed value still yields a valid cohort.
    let _ = getrandom::getrandom(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// The channel a signed override token grants, from the header or the cookie.
fn override_channel(
    facts: &RequestFacts,
    iso: &Isolate,
    prepared: &PreparedRollout,
) -> Option<Channel> {
    let key = iso.override_key.as_ref()?;
    let now = (now_ms() / 1000.0) as u64;
    let from_header = facts.override_token.clone();
    let from_cookie = facts
        .cookie
        .as_deref()
        .and_then(OverrideKey::from_cookie_header)
        .map(str::to_owned);
    [from_header, from_cookie]
        .into_iter()
        .flatten()
        .find_map(|token| key.verify(&token, &prepared.bundle, now))
}

pub(super) async fn serve(
    req: &Request,
    env: &Env,
    ctx: &Context,
    iso: &Isolate,
    asset: AssetRoute,
    started_ms: f64,
) -> Outcome {
    // The method as the runtime has it: workers-rs maps methods it does not know (PURGE,
    // PROPFIND, ...) to GET.
    let facts = RequestFacts::read(req.inner(), OVERRIDE_HEADER);
    let head = match facts.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(EdgeError::MethodNotAllowed("GET, HEAD").into()),
    };
    let prepared = rollout(env, iso, &asset.bundle).await?;
    let origin = route::origin_of(&facts.url);
    let cookie = facts.cookie.as_deref();
    let mut overridden = None;
    let (version, channel, decision) = match &asset.pin {
        Some(pinned) => (pinned, prepared.channel_of(pinned), None),
        None => {
            let returning =
                cookie.and_then(|c| iso.router.decide_returning(&prepared, c, random_u64));
            let d = match returning {
                Some(d) => d,
                None => {
                    let others = OtherFacts::read(req, &iso.settings.user_key_header);
                    iso.router
                        .decide(&prepared, &others.facts(cookie), random_u64)
                }
            };
            // A signed override (QA, probes) picks the channel; the cohort stays as it is.
            let forced = override_channel(&facts, iso, &prepared).map(|ch| {
                let v = match (ch, prepared.rollout.canary.as_ref()) {
                    (Channel::Canary, Some(canary)) => (Channel::Canary, canary),
                    _ => (Channel::Stable, &prepared.rollout.stable),
                };
                overridden = Some(v.0);
                v
            });
            let (ch, v) = forced.unwrap_or((d.channel, d.version));
            (v, Some(ch), Some(d))
        }
    };

    let mut served_version = version;
    let mut served_channel = channel;
    let mut fallback = false;
    let found = match load(env, ctx, origin, &asset, version, head).await {
        Ok(found) => found,
        // Floating canary requests fall back to stable rather than break a page.
        Err(miss) if asset.pin.is_none() && channel == Some(Channel::Canary) => {
            served_version = &prepared.rollout.stable;
            served_channel = Some(Channel::Stable);
            fallback = true;
            let stable = load(env, ctx, origin, &asset, served_version, head)
                .await
                .map_err(|m| miss_error(&asset, served_version, m))?;
            // Logged only when stable has the file: a path missing from both versions is a
            // plain 404 (scanners), not a broken canary.
            log_event(
                "canary_fallback",
                json!({
                    "bundle": asset.bundle.as_str(),
                    "canary": version.as_str(),
                    "stable": prepared.rollout.stable.as_str(),
                    "key": asset.object_key(version),
                    "reason": match &miss { Miss::Absent => "missing".to_owned(), Miss::Failed(d) => d.clone() },
                }),
            );
            stable
        }
        Err(miss) => return Err(miss_error(&asset, version, miss)),
    };

    // Real script loads of the floating URL feed the canary's health; HEAD requests,
    // overrides (QA, probes) and pinned chunk loads do not.
    if let (Some(d), None, false) = (&decision, overridden, head) {
        let meant = if fallback {
            Channel::Canary
        } else {
            served_channel.unwrap_or(Channel::Stable)
        };
        monitor::tally(env, ctx, iso, &prepared, meant, d.client, false);
        if fallback {
            // The canary failed this client at the origin: an error of the canary's.
            monitor::tally(env, ctx, iso, &prepared, meant, d.client, true);
        }
    }

    let mut headers = HeaderLines::default();
    headers.set("content-type", &found.content_type);
    headers.set("etag", &found.etag);
    let cache_control = match (asset.pin.is_some(), overridden.is_some()) {
        (_, true) => "private, no-store",
        (true, false) => &iso.pinned_cache_control,
        (false, false) => &iso.floating_cache_control,
    };
    headers.set("cache-control", cache_control);
    headers.set("x-canary-version", served_version.as_str());
    if let Some(ch) = served_channel {
        headers.set("x-canary-channel", ch.as_str());
    }
    if fallback {
        headers.set("x-canary-fallback", "stable");
    }
    if let Some(ch) = overridden {
        headers.set("x-canary-override", ch.as_str());
    }
    if let Some(d) = &decision {
        headers.set(&iso.settings.cohort_header, &d.cohort.to_string());
        if let Some(cookie) = &d.set_cookie {
            headers.set("set-cookie", cookie);
        }
    }
    headers.set("access-control-allow-origin", "*");
    headers.set(
        "access-control-expose-headers",
        "x-cohort, x-canary-channel, x-canary-version, x-canary-fallback",
    );
    headers.set("x-content-type-options", "nosniff");
    headers.set(
        "server-timing",
        &format!(
            "edge;dur={:.0}, cache;desc={}",
            now_ms() - started_ms,
            if found.from_cache { "hit" } else { "miss" }
        ),
    );

    let not_modified = facts
        .if_none_match
        .as_deref()
        .is_some_and(|inm| etag_matches(inm, &found.etag));
    let (status, body) = if not_modified {
        (304, ResponseBody::Empty)
    } else if head {
        (200, ResponseBody::Empty)
    } else {
        (200, found.body)
    };
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers.build())
        .body(body))
}

fn miss_error(asset: &AssetRoute, version: &Version, miss: Miss) -> Failure {
    let key = asset.object_key(version);
    match miss {
        Miss::Absent => EdgeError::ObjectMissing(key),
        Miss::Failed(detail) => EdgeError::Origin { key, detail },
    }
    .into()
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
            let (etag, content_type) = cached_etag_and_type(&hit.headers().0);
            if let Some(etag) = etag {
                return Ok(Found {
                    content_type: content_type
                        .unwrap_or_else(|| content_type_for(&asset.path).to_owned()),
                    etag,
                    body: hit.body().clone(),
                    from_cache: true,
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
            from_cache: false,
        });
    }

    // Store a copy in the edge cache without holding up the response. The copy carries
    // no cookie and no cohort: those are added per response, after the cache read.
    let headers = Headers::new();
    let stored = headers
        .set("content-type", &content_type)
        .and_then(|_| headers.set("etag", &etag))
        .and_then(|_| headers.set("cache-control", &pinned_cache_control(31_536_000)));
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
        from_cache: false,
    })
}
