//! The `HealthMonitor` Durable Object, one per bundle: the single consistent place that
//! holds the canary's health counts, decides rollbacks and rollout steps, and writes the
//! bundle's KV config. The edge keeps reading KV; only this object (and the operator's CLI)
//! writes it.

use std::cell::RefCell;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, Context, DurableObject, Env, Headers, Method, Request, RequestInit, Response,
    State,
};

use super::{brief, log_event, now_ms, Isolate, HEALTH_BINDING, KV_BINDING};
use crate::admin::{parse_command, Command};
use crate::config::{kv_key, BundleName, Rollout, Weight};
use crate::decide::{Channel, PreparedRollout};
use crate::health::{AlarmAction, Batch, HealthPolicy, Monitor, Pending, ProgressState, Verdict};

const BUNDLE_HEADER: &str = "x-canary-bundle";
const STORAGE_KEY: &str = "monitor";
const BUNDLE_KEY: &str = "bundle";

/// What the edge sends with a batch: the counts and the thresholds it read from the config.
#[derive(Serialize, Deserialize)]
struct Ingest {
    batch: Batch,
    policy: HealthPolicy,
}

#[derive(Serialize, Deserialize)]
struct CommandMessage {
    action: String,
    body: String,
}

// ---------------------------------------------------------------- edge side

fn stub_request(
    bundle: &BundleName,
    path: &str,
    method: Method,
    body: Option<String>,
) -> worker::Result<Request> {
    let headers = Headers::new();
    headers.set(BUNDLE_HEADER, bundle.as_str())?;
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(b) = body {
        init.with_body(Some(JsValue::from_str(&b)));
    }
    Request::new_with_init(&format!("https://monitor.canary-edge{path}"), &init)
}

async fn call(
    env: &Env,
    bundle: &BundleName,
    path: &str,
    method: Method,
    body: Option<String>,
) -> worker::Result<Response> {
    let namespace = env.durable_object(HEALTH_BINDING)?;
    let stub = namespace.id_from_name(bundle.as_str())?.get_stub()?;
    stub.fetch_with_request(stub_request(bundle, path, method, body)?)
        .await
}

/// Adds `requests` and `errors` to the bundle's pending counts for `channel`, and sends
/// them to the monitor when due (see `Pending::due`).
pub(super) fn tally(
    env: &Env,
    ctx: &Context,
    iso: &Isolate,
    prepared: &PreparedRollout,
    channel: Channel,
    requests: u64,
    errors: u64,
) {
    let now = now_ms();
    let stable = &prepared.rollout.stable;
    let canary = prepared.rollout.live_canary();
    let batch = {
        let mut pending = iso.pending.borrow_mut();
        let entry = pending
            .entry(prepared.bundle.clone())
            .or_insert_with(|| Pending::new(stable.clone(), canary.cloned(), now));
        // New versions, new counts: one release's errors never count against the next.
        if !entry.is_for(stable, canary) {
            *entry = Pending::new(stable.clone(), canary.cloned(), now);
        }
        let counts = match channel {
            Channel::Canary => &mut entry.counts.canary,
            Channel::Stable => &mut entry.counts.stable,
        };
        counts.requests += requests;
        counts.errors += errors;
        entry.due(iso.settings.flush, now).then(|| entry.take(now))
    };
    if let Some(batch) = batch {
        send_batch(
            env,
            ctx,
            &prepared.bundle,
            batch,
            prepared.rollout.health_policy(),
        );
    }
}

/// Sends a batch of counts to the bundle's monitor, after the response (`wait_until`).
/// Without a `HEALTH` binding, health monitoring is off and counts are dropped.
fn send_batch(env: &Env, ctx: &Context, bundle: &BundleName, batch: Batch, policy: HealthPolicy) {
    if env.durable_object(HEALTH_BINDING).is_err() {
        return;
    }
    let env = env.clone();
    let bundle = bundle.clone();
    ctx.wait_until(async move {
        let body = serde_json::to_string(&Ingest { batch, policy }).unwrap_or_default();
        if let Err(e) = call(&env, &bundle, "/ingest", Method::Post, Some(body)).await {
            log_event(
                "health_send_failed",
                json!({ "bundle": bundle.as_str(), "detail": brief(e) }),
            );
        }
    });
}

/// The monitor's view of a bundle (counts, rollout step, rollback history).
pub(super) async fn status(env: &Env, bundle: &BundleName) -> worker::Result<serde_json::Value> {
    if env.durable_object(HEALTH_BINDING).is_err() {
        return Ok(json!(null));
    }
    let mut resp = call(env, bundle, "/status", Method::Get, None).await?;
    resp.json().await
}

/// Runs an admin write in the monitor; returns its status and answer.
pub(super) async fn command(
    env: &Env,
    bundle: &BundleName,
    action: &str,
    body: &str,
) -> worker::Result<(u16, serde_json::Value)> {
    let message = serde_json::to_string(&CommandMessage {
        action: action.to_owned(),
        body: body.to_owned(),
    })
    .unwrap_or_default();
    let mut resp = call(env, bundle, "/command", Method::Post, Some(message)).await?;
    let status = resp.status_code();
    Ok((status, resp.json().await?))
}

// ---------------------------------------------------------------- KV config writes

/// Reads, changes and writes `rollout/<bundle>`. The change sees the current config, so
/// fields written by others (operator notes, later features) survive.
async fn update_config(
    env: &Env,
    bundle: &BundleName,
    change: impl FnOnce(&mut Rollout) -> Result<(), String>,
) -> Result<Rollout, (u16, String)> {
    let kv = env
        .kv(KV_BINDING)
        .map_err(|e| (503, format!("KV binding: {e}")))?;
    let key = kv_key(bundle);
    let text = kv
        .get(&key)
        .text()
        .await
        .map_err(|e| (503, format!("KV read failed: {}", brief(e))))?
        .ok_or((404, format!("no rollout config for bundle `{bundle}`")))?;
    let mut rollout = Rollout::parse(&text).map_err(|e| (409, e.to_string()))?;
    change(&mut rollout).map_err(|m| (409, m))?;
    // Validate what is about to be written exactly as the edge will read it.
    let json = rollout.to_json();
    Rollout::parse(&json).map_err(|e| (400, e.to_string()))?;
    kv.put(&key, json)
        .map_err(|e| (503, format!("KV write failed: {e}")))?
        .execute()
        .await
        .map_err(|e| (503, format!("KV write failed: {}", brief(e))))?;
    Ok(rollout)
}

fn iso_time(ms: f64) -> String {
    js_sys::Date::new(&JsValue::from_f64(ms))
        .to_iso_string()
        .as_string()
        .unwrap_or_default()
}

// ---------------------------------------------------------------- the Durable Object

#[durable_object]
pub struct HealthMonitor {
    state: State,
    env: Env,
    monitor: RefCell<Option<Monitor>>,
}

impl HealthMonitor {
    async fn load(&self) -> Monitor {
        if let Some(m) = self.monitor.borrow().as_ref() {
            return m.clone();
        }
        let stored: Option<String> = self.state.storage().get(STORAGE_KEY).await.ok().flatten();
        let m = stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        *self.monitor.borrow_mut() = Some(Monitor::clone(&m));
        m
    }

    async fn save(&self, m: &Monitor) -> worker::Result<()> {
        *self.monitor.borrow_mut() = Some(m.clone());
        let text = serde_json::to_string(m).map_err(|e| worker::Error::RustError(e.to_string()))?;
        self.state.storage().put(STORAGE_KEY, text).await
    }

    async fn bundle(&self, req: Option<&Request>) -> Option<BundleName> {
        if let Some(name) = req.and_then(|r| r.headers().get(BUNDLE_HEADER).ok().flatten()) {
            let bundle = BundleName::parse(&name).ok()?;
            let _ = self
                .state
                .storage()
                .put(BUNDLE_KEY, bundle.as_str().to_owned())
                .await;
            return Some(bundle);
        }
        let stored: Option<String> = self.state.storage().get(BUNDLE_KEY).await.ok().flatten();
        stored.and_then(|s| BundleName::parse(&s).ok())
    }

    async fn schedule(&self, m: &Monitor) -> worker::Result<()> {
        if let Some(due) = m.next_alarm_ms() {
            let wait = (due - now_ms()).max(0.0) as u64;
            self.state
                .storage()
                .set_alarm(Duration::from_millis(wait))
                .await?;
        }
        Ok(())
    }

    /// Cuts the canary: weight 0 in KV with the reason, and a history record.
    async fn roll_back(
        &self,
        bundle: &BundleName,
        m: &mut Monitor,
        reason: String,
        by: &str,
        window_secs: u32,
    ) -> Result<Rollout, (u16, String)> {
        let now = now_ms();
        let record_reason = reason.clone();
        let by_owned = by.to_owned();
        let rollout = update_config(&self.env, bundle, move |r| {
            r.weight = Weight::ZERO;
            r.extra.insert(
                "rollback".into(),
                json!({ "at": iso_time(now), "reason": record_reason, "by": by_owned }),
            );
            Ok(())
        })
        .await?;
        m.record_rollback(reason.clone(), by, window_secs, now);
        log_event(
            "rollback",
            json!({ "bundle": bundle.as_str(), "canary": m.canary, "reason": reason, "by": by }),
        );
        Ok(rollout)
    }

    async fn ingest(&self, bundle: &BundleName, msg: Ingest) -> worker::Result<Response> {
        let now = now_ms();
        let mut m = self.load().await;
        m.ingest(&msg.batch, msg.policy.window_secs, now);
        let verdict = m.evaluate(&msg.policy, now);
        let window_ms = f64::from(msg.policy.window_secs) * 1000.0;
        let recently_cut = m
            .history
            .last()
            .is_some_and(|r| r.canary == m.canary && now - r.at_ms < window_ms);
        if let Verdict::Unhealthy(reason) = &verdict {
            if msg.policy.auto_rollback && m.canary.is_some() && !recently_cut {
                if let Err((_, e)) = self
                    .roll_back(
                        bundle,
                        &mut m,
                        reason.clone(),
                        "auto",
                        msg.policy.window_secs,
                    )
                    .await
                {
                    log_event(
                        "rollback_failed",
                        json!({ "bundle": bundle.as_str(), "detail": e }),
                    );
                }
            }
        }
        self.save(&m).await?;
        Response::from_json(&json!({ "verdict": verdict_str(&verdict) }))
    }

    async fn command(&self, bundle: &BundleName, msg: CommandMessage) -> worker::Result<Response> {
        let command = match parse_command(&msg.action, &msg.body) {
            Ok(c) => c,
            Err(e) => {
                return Response::from_json(&json!({ "error": e.to_string() }))
                    .map(|r| r.with_status(400))
            }
        };
        let now = now_ms();
        let mut m = self.load().await;
        let policy_of = |r: &Rollout| r.health_policy();
        let result: Result<Rollout, (u16, String)> = match command {
            Command::SetWeight(w) => {
                let r = update_config(&self.env, bundle, move |r| {
                    if r.canary.is_none() && w > Weight::ZERO {
                        return Err("no canary to weigh; publish one first".into());
                    }
                    r.weight = w;
                    Ok(())
                })
                .await;
                // An operator's hand on the weight pauses an automatic rollout.
                if let (Ok(_), Some(p)) = (&r, m.progress.as_mut()) {
                    if p.state == ProgressState::Running {
                        p.state = ProgressState::Paused;
                    }
                }
                r
            }
            Command::StartRollout(plan) => {
                let current = update_config(&self.env, bundle, |_| Ok(())).await;
                match current {
                    Err(e) => Err(e),
                    Ok(r) if r.canary.is_none() => Err((409, "no canary to roll out; publish one first".into())),
                    Ok(r) => match plan.or(r.progression.clone()) {
                        None => Err((400, "no steps: send {\"steps\": [...], \"bake_secs\": n} or set `progression` in the config".into())),
                        Some(plan) => {
                            let first = m.start(plan, now);
                            let out = update_config(&self.env, bundle, move |r| {
                                r.weight = first;
                                Ok(())
                            })
                            .await;
                            log_event("rollout_started", json!({ "bundle": bundle.as_str(), "weight": first.percent() }));
                            out
                        }
                    },
                }
            }
            Command::Pause | Command::Resume => {
                let resume = command == Command::Resume;
                match m.progress.as_mut() {
                    Some(p) if !resume && p.state == ProgressState::Running => {
                        p.state = ProgressState::Paused
                    }
                    Some(p) if resume && p.state == ProgressState::Paused => {
                        p.state = ProgressState::Running;
                        p.step_started_ms = now;
                    }
                    _ => {
                        let what = if resume {
                            "no paused rollout to resume"
                        } else {
                            "no running rollout to pause"
                        };
                        return Response::from_json(&json!({ "error": what }))
                            .map(|r| r.with_status(409));
                    }
                }
                update_config(&self.env, bundle, |_| Ok(())).await
            }
            Command::Rollback(reason) => {
                let window = match update_config(&self.env, bundle, |_| Ok(())).await {
                    Ok(r) => policy_of(&r).window_secs,
                    Err(e) => {
                        return Response::from_json(&json!({ "error": e.1 }))
                            .map(|r| r.with_status(e.0));
                    }
                };
                self.roll_back(bundle, &mut m, reason, "operator", window)
                    .await
            }
            Command::Promote => {
                let r = update_config(&self.env, bundle, |r| {
                    let Some(canary) = r.canary.take() else {
                        return Err("no canary to promote".into());
                    };
                    r.stable = canary;
                    r.weight = Weight::ZERO;
                    Ok(())
                })
                .await;
                if r.is_ok() {
                    if let Some(p) = m.progress.as_mut() {
                        p.state = ProgressState::Done;
                    }
                    log_event("promote", json!({ "bundle": bundle.as_str() }));
                }
                r
            }
        };
        self.save(&m).await?;
        self.schedule(&m).await?;
        match result {
            Ok(rollout) => Response::from_json(
                &json!({ "config": rollout, "monitor": monitor_json(&m, &rollout.health_policy(), now) }),
            ),
            Err((status, message)) => {
                Response::from_json(&json!({ "error": message })).map(|r| r.with_status(status))
            }
        }
    }
}

fn verdict_str(v: &Verdict) -> serde_json::Value {
    match v {
        Verdict::TooFewSamples => json!({ "state": "too_few_samples" }),
        Verdict::Healthy => json!({ "state": "healthy" }),
        Verdict::Unhealthy(reason) => json!({ "state": "unhealthy", "reason": reason }),
    }
}

fn monitor_json(m: &Monitor, policy: &HealthPolicy, now: f64) -> serde_json::Value {
    let recent = m.recent(policy.window_secs, now);
    json!({
        "stable": m.stable,
        "canary": m.canary,
        "recent": recent,
        "recent_error_rate": { "stable": recent.stable.rate(), "canary": recent.canary.rate() },
        "totals": m.totals,
        "verdict": verdict_str(&m.evaluate(policy, now)),
        "policy": policy,
        "progress": m.progress.as_ref().map(|p| json!({
            "state": p.state,
            "step": p.step,
            "steps": p.plan.steps,
            "bake_secs": p.plan.bake_secs,
            "weight": p.current_weight(),
            "next_step_at": iso_time(p.due_ms()),
        })),
        "history": m.history.iter().map(|r| json!({
            "at": iso_time(r.at_ms),
            "canary": r.canary,
            "reason": r.reason,
            "by": r.by,
            "canary_counts": r.canary_counts,
            "stable_counts": r.stable_counts,
        })).collect::<Vec<_>>(),
    })
}

impl DurableObject for HealthMonitor {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            monitor: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Some(bundle) = self.bundle(Some(&req)).await else {
            return Response::error("missing bundle", 400);
        };
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/ingest") => {
                let msg: Ingest = req.json().await?;
                self.ingest(&bundle, msg).await
            }
            (Method::Post, "/command") => {
                let msg: CommandMessage = req.json().await?;
                self.command(&bundle, msg).await
            }
            (Method::Get, "/status") => {
                let m = self.load().await;
                let policy = match super::read_kv(&self.env, &bundle, 2_000).await {
                    crate::rollouts::KvRead::Value(t) => Rollout::parse(&t)
                        .map(|r| r.health_policy())
                        .unwrap_or_default(),
                    _ => HealthPolicy::default(),
                };
                Response::from_json(&monitor_json(&m, &policy, now_ms()))
            }
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let Some(bundle) = self.bundle(None).await else {
            return Response::ok("no bundle");
        };
        let now = now_ms();
        let mut m = self.load().await;
        let policy = match super::read_kv(&self.env, &bundle, 5_000).await {
            crate::rollouts::KvRead::Value(t) => match Rollout::parse(&t) {
                Ok(r) => r.health_policy(),
                Err(_) => {
                    // Never step a rollout forward on a config we cannot read; retry soon.
                    self.state
                        .storage()
                        .set_alarm(Duration::from_secs(30))
                        .await?;
                    return Response::ok("config unreadable");
                }
            },
            _ => {
                self.state
                    .storage()
                    .set_alarm(Duration::from_secs(30))
                    .await?;
                return Response::ok("config unavailable");
            }
        };
        match m.on_alarm(&policy, now) {
            AlarmAction::Idle => {}
            AlarmAction::Advance(w) => {
                match update_config(&self.env, &bundle, move |r| {
                    r.weight = w;
                    Ok(())
                })
                .await
                {
                    Ok(_) => log_event(
                        "step_advance",
                        json!({ "bundle": bundle.as_str(), "canary": m.canary, "weight": w.percent(), "step": m.progress.as_ref().map(|p| p.step) }),
                    ),
                    Err((_, e)) => log_event(
                        "step_advance_failed",
                        json!({ "bundle": bundle.as_str(), "detail": e }),
                    ),
                }
            }
            AlarmAction::Finish => log_event(
                "rollout_done",
                json!({ "bundle": bundle.as_str(), "canary": m.canary }),
            ),
            AlarmAction::Rollback(reason) => {
                if let Err((_, e)) = self
                    .roll_back(&bundle, &mut m, reason, "rollout", policy.window_secs)
                    .await
                {
                    log_event(
                        "rollback_failed",
                        json!({ "bundle": bundle.as_str(), "detail": e }),
                    );
                }
            }
        }
        self.save(&m).await?;
        self.schedule(&m).await?;
        Response::ok("ok")
    }
}
