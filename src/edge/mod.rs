//! The operations module's runtime adapter (the control Worker's): the only code that
//! touches the `worker` crate. The edge Worker's entry (`js/index.js`) serves asset requests
//! and reports with the small routing module (`router/`) and forwards every other
//! `/__canary/` request to the control Worker through its service binding; the edge's
//! isolates send their health batches to this Worker's Durable Objects.
//!
//! - `mod.rs`: per-isolate state (a `canary_core::edge::serve::Edge`, as the routing module
//!   holds, and the operators' keys), the fetch entry, config reads, responses, logging;
//! - `ops.rs`: `/__canary/...`: health, status, error reports, the admin API;
//! - `console.rs`: `/__canary/ui/`: the operator console's files and session;
//! - `auth.rs`: who is asking and whether they may (`canary_core::ops::authz`); with
//!   `revocations.rs` (logged-out sessions in KV) and `access_jwt.rs` (Cloudflare Access);
//! - `body.rs`: request bodies read with a cap;
//! - `monitor/`: the `HealthMonitor` Durable Object (runs the control plane, owns the
//!   rollout state in SQLite, projects the config to KV) and the edge's calls to it.

mod access_jwt;
mod auth;
mod body;
mod claim;
mod console;
mod monitor;
mod ops;
mod revocations;

use std::cell::{Ref, RefCell, RefMut};
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use serde_json::json;
use worker::{console_log, Context, Date, Delay, Env, Headers, Request, Response};

pub use monitor::HealthMonitor;

use canary_core::config::{kv_key, BundleName};
use canary_core::edge::decide::PreparedRollout;
use canary_core::edge::route::{self, Route, RouteError};
use canary_core::edge::serve::Edge;
use canary_core::error::EdgeError;
use canary_core::kv::KvRead;
use canary_core::log::LogLine;
use canary_core::ops::access::{AccessPolicy, Jwks};
use canary_core::ops::operators::Operators;
use canary_core::ops::revocation::Revocations;
use canary_core::ops::session::SessionKey;
use canary_core::settings::{Settings, SettingsError};

/// Binding names; must match `wrangler.toml`.
const KV_BINDING: &str = "ROLLOUTS";
const R2_BINDING: &str = "BUNDLES";
const HEALTH_BINDING: &str = "HEALTH";

/// Per-isolate state, built on the first request.
struct Isolate {
    /// Settings, router, rollout configs and override key: the routing module's state,
    /// built the same way (its outbox stays empty here: counts go through the entry
    /// module). Borrowed between awaits only, never across one.
    edge: RefCell<Edge>,
    /// The API's tokens: `Ok(None)` when the admin API is off, `Err` when a token is
    /// unusable (too short: the admin API refuses to start).
    operators: Result<Option<Operators>, SettingsError>,
    /// Signs console sessions; present exactly when the admin API is on.
    session_key: Option<SessionKey>,
    /// Revoked sessions as last listed from KV, and when (see `auth`).
    revocations: RefCell<Option<(Rc<Revocations>, f64)>>,
    /// Cloudflare Access in front of the console host, when configured.
    access: Option<AccessPolicy>,
    /// Access's signing keys, and when they were fetched.
    jwks: RefCell<Option<(Rc<Jwks>, f64)>>,
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
                Ok(Rc::new(Isolate::new(settings)))
            })
            .clone()
    })
}

impl Isolate {
    fn new(settings: Settings) -> Self {
        Isolate {
            operators: Operators::from_secrets(
                settings.admin_token.as_deref(),
                settings.read_token.as_deref(),
                settings.operator_tokens.as_deref(),
            ),
            session_key: settings.admin_token.as_deref().map(SessionKey::new),
            revocations: RefCell::new(None),
            access: settings.access.as_ref().map(|(team, aud)| AccessPolicy {
                team_domain: team.clone(),
                audience: aud.clone(),
            }),
            jwks: RefCell::new(None),
            edge: RefCell::new(Edge::new(settings)),
        }
    }

    /// The asset path's state, to read: drop it before the next await.
    fn edge(&self) -> Ref<'_, Edge> {
        self.edge.borrow()
    }

    /// The asset path's state, to record in: drop it before the next await.
    fn edge_mut(&self) -> RefMut<'_, Edge> {
        self.edge.borrow_mut()
    }
}

/// Milliseconds since the epoch (advances across I/O; frozen within one CPU slice).
fn now_ms() -> f64 {
    Date::now().as_millis() as f64
}

/// The first line of a runtime error, bounded: JS errors carry whole stacks.
fn brief(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.chars().take(240).collect()
}

/// One structured log line per event worth knowing about (`event` names it).
fn log_event(event: &'static str, fields: serde_json::Value) {
    console_log!("{}", LogLine { event, fields }.to_json());
}

/// Entry point of the fetch event. Never returns `Err`: every failure becomes a response
/// with a status and a message.
pub async fn fetch(req: Request, env: Env, ctx: Context) -> Response {
    let outcome = match isolate(&env) {
        Ok(iso) => handle(req, &env, &ctx, &iso).await,
        Err(e) => Err(EdgeError::Misconfigured(e).into()),
    };
    match outcome {
        Ok(resp) => resp,
        Err(Failure::Edge(e)) => {
            if let Some(line) = LogLine::for_error(&e) {
                log_event(line.event, line.fields);
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

async fn handle(req: Request, env: &Env, ctx: &Context, iso: &Isolate) -> Outcome {
    let path = req.path();
    match route::parse(&path) {
        Ok(Route::Ops(rest)) => ops::serve(req, env, ctx, iso, &rest).await,
        // The entry module serves assets itself; nothing sends them here.
        Ok(Route::Asset(_)) => {
            Err(EdgeError::NotFound("asset routes are served by the entry module".into()).into())
        }
        Err(RouteError::NotFound(m)) => Err(EdgeError::NotFound(m).into()),
        Err(RouteError::BadRequest(m)) => Err(EdgeError::BadRequest(m).into()),
    }
}

// ---------------------------------------------------------------- rollout config

/// The bundle's rollout: from the isolate's copy while fresh, else from KV (bounded by
/// `KV_TIMEOUT_MS`; on failure the last good config).
async fn rollout(
    env: &Env,
    iso: &Isolate,
    bundle: &BundleName,
) -> Result<Rc<PreparedRollout>, EdgeError> {
    let now = now_ms();
    let timeout_ms = {
        let edge = iso.edge();
        if let Some(answer) = edge.config(bundle, now) {
            return answer;
        }
        edge.settings.kv_timeout_ms
    };
    let read = read_kv(env, bundle, timeout_ms).await;
    let (answer, log) = iso.edge_mut().read_config(bundle, read, now);
    if let Some(line) = log {
        log_event(line.event, line.fields);
    }
    answer
}

/// One KV read of `rollout/<bundle>`, failing after `timeout_ms`.
async fn read_kv(env: &Env, bundle: &BundleName, timeout_ms: u64) -> KvRead {
    let kv = match env.kv(KV_BINDING) {
        Ok(kv) => kv,
        Err(e) => return KvRead::Failed(format!("binding {KV_BINDING}: {e}")),
    };
    let key = kv_key(bundle);
    let get = std::pin::pin!(kv.get(&key).text());
    let timeout = Delay::from(Duration::from_millis(timeout_ms));
    match select(get, timeout).await {
        Either::Left((Ok(Some(text)), _)) => KvRead::Value(text),
        Either::Left((Ok(None), _)) => KvRead::Missing,
        Either::Left((Err(e), _)) => KvRead::Failed(brief(e)),
        Either::Right(_) => KvRead::Failed(format!("KV read timed out after {timeout_ms} ms")),
    }
}

/// Whether `key` is within the limit of the rate limiting binding `name`. Without the
/// binding there is no limit at the door (distinct-client counting still weighs each
/// client once); a failing limiter lets the report through (logged).
async fn within_limit(env: &Env, name: &str, key: String) -> bool {
    let Ok(limiter) = env.rate_limiter(name) else {
        return true;
    };
    match limiter.limit(key).await {
        Ok(outcome) => outcome.success,
        Err(e) => {
            log_event(
                "rate_limit_failed",
                json!({ "binding": name, "detail": brief(e) }),
            );
            true
        }
    }
}

// ---------------------------------------------------------------- responses

fn text_response(status: u16, message: &str) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "text/plain; charset=utf-8");
    let _ = headers.set("cache-control", "no-store");
    let _ = headers.set("x-content-type-options", "nosniff");
    Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(format!("{status} {message}\n").into_bytes())
}

fn error_response(e: &EdgeError) -> Response {
    let mut resp = text_response(e.status(), &e.public_message());
    if let Some((name, value)) = e.extra_header() {
        let _ = resp.headers_mut().set(name, value);
    }
    resp
}

fn json_response(status: u16, value: &serde_json::Value) -> Outcome {
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    headers.set("x-content-type-options", "nosniff")?;
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(value.to_string().into_bytes()))
}
