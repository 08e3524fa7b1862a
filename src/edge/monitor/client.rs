//! The edge side of the control plane: batching health counts to the bundle's Durable
//! Object, and calling it for status and admin commands.

use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{Context, Env, Headers, Method, Request, RequestInit, Response};

use super::{CommandMessage, BUNDLE_HEADER};
use crate::config::BundleName;
use crate::control::batching::Tally;
use crate::control::tracker::Signal;
use crate::control::Batch;
use crate::decide::{Channel, PreparedRollout};
use crate::edge::{brief, log_event, now_ms, Isolate, HEALTH_BINDING};

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

/// Records a signal of `client` on `channel` (an admitted error report or boot signal) in
/// the bundle's pending batch, and sends what is due to the control plane (see
/// `Pending::due`).
pub(in crate::edge) fn tally(
    env: &Env,
    ctx: &Context,
    iso: &Isolate,
    prepared: &PreparedRollout,
    channel: Channel,
    client: u64,
    signal: Signal,
) {
    let rollout = &prepared.rollout;
    let tally = Tally {
        bundle: &prepared.bundle,
        stable: &rollout.stable,
        canary: rollout.live_canary(),
        weight: rollout.weight,
        on_canary: channel == Channel::Canary,
        client,
        // The tracker takes a client's network from its load.
        network: 0,
        signal,
    };
    let batches = iso
        .outbox
        .borrow_mut()
        .record(tally, iso.settings.flush, now_ms());
    for batch in batches {
        send_batch(env, ctx, &prepared.bundle, batch);
    }
}

/// Sends a batch of counts to the bundle's control plane, after the response
/// (`wait_until`). Without a `HEALTH` binding, health monitoring is off and counts are
/// dropped.
fn send_batch(env: &Env, ctx: &Context, bundle: &BundleName, batch: Batch) {
    if env.durable_object(HEALTH_BINDING).is_err() {
        return;
    }
    let env = env.clone();
    let bundle = bundle.clone();
    ctx.wait_until(async move {
        let body = serde_json::to_string(&batch).unwrap_or_default();
        let detail = match call(&env, &bundle, "/ingest", Method::Post, Some(body)).await {
            Ok(resp) if resp.status_code() < 300 => return,
            Ok(resp) => format!("the monitor answered {}", resp.status_code()),
            Err(e) => brief(e),
        };
        log_event(
            "health_send_failed",
            json!({ "bundle": bundle.as_str(), "detail": detail }),
        );
    });
}

/// The control plane's view of a bundle: `{config, monitor}`, or `null` without a
/// `HEALTH` binding.
pub(in crate::edge) async fn status(
    env: &Env,
    bundle: &BundleName,
) -> worker::Result<serde_json::Value> {
    if env.durable_object(HEALTH_BINDING).is_err() {
        return Ok(json!(null));
    }
    let mut resp = call(env, bundle, "/status", Method::Get, None).await?;
    resp.json().await
}

/// The bundle's per-minute counts from the Unix minute `since` on: `{bundle, minutes}`,
/// or `null` without a `HEALTH` binding.
pub(in crate::edge) async fn minutes(
    env: &Env,
    bundle: &BundleName,
    since: u64,
) -> worker::Result<serde_json::Value> {
    if env.durable_object(HEALTH_BINDING).is_err() {
        return Ok(json!(null));
    }
    let path = format!("/minutes?since={since}");
    let mut resp = call(env, bundle, &path, Method::Get, None).await?;
    resp.json().await
}

/// Runs an admin write in the control plane as `by` (who the history and logs name);
/// returns its status and answer.
pub(in crate::edge) async fn command(
    env: &Env,
    bundle: &BundleName,
    action: &str,
    body: &str,
    by: &str,
) -> worker::Result<(u16, serde_json::Value)> {
    let message = serde_json::to_string(&CommandMessage {
        action: action.to_owned(),
        body: body.to_owned(),
        by: by.to_owned(),
    })
    .unwrap_or_default();
    let mut resp = call(env, bundle, "/command", Method::Post, Some(message)).await?;
    let status = resp.status_code();
    Ok((status, resp.json().await?))
}
