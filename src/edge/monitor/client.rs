//! The edge side of the control plane: batching health counts to the bundle's Durable
//! Object, and calling it for status and admin commands.

use serde::de::DeserializeOwned;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{Context, Env, Headers, Method, Request, RequestInit, Response};

use crate::config::BundleName;
use crate::control::coalesce;
use crate::control::tracker::Signal;
use crate::control::wire::{
    self, CommandAnswer, CommandMessage, IngestMessage, MinutesAnswer, Route, StatusAnswer,
};
use crate::control::Batch;
use crate::decide::{Channel, PreparedRollout};
use crate::edge::{brief, log_event, now_ms, Isolate, AGGREGATOR_BINDING, HEALTH_BINDING};

/// A request to the object on `route`; `path` is the route's path, with its query if any.
fn stub_request(
    bundle: &BundleName,
    route: Route,
    path: &str,
    body: Option<String>,
) -> worker::Result<Request> {
    let headers = Headers::new();
    headers.set(wire::BUNDLE_HEADER, bundle.as_str())?;
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::from(route.method().to_owned()))
        .with_headers(headers);
    if let Some(b) = body {
        init.with_body(Some(JsValue::from_str(&b)));
    }
    Request::new_with_init(&format!("{}{path}", wire::ORIGIN), &init)
}

async fn call(
    env: &Env,
    bundle: &BundleName,
    route: Route,
    path: &str,
    body: Option<String>,
) -> worker::Result<Response> {
    let namespace = env.durable_object(HEALTH_BINDING)?;
    let stub = namespace.id_from_name(bundle.as_str())?.get_stub()?;
    stub.fetch_with_request(stub_request(bundle, route, path, body)?)
        .await
}

/// A GET of `route`, its answer decoded; `None` without a `HEALTH` binding.
async fn get<T: DeserializeOwned>(
    env: &Env,
    bundle: &BundleName,
    route: Route,
    path: &str,
) -> worker::Result<Option<T>> {
    if env.durable_object(HEALTH_BINDING).is_err() {
        return Ok(None);
    }
    let mut resp = call(env, bundle, route, path, None).await?;
    let status = resp.status_code();
    let text = resp.text().await?;
    if status != 200 {
        return Err(worker::Error::RustError(format!(
            "the monitor answered {status} to {path}: {}",
            text.trim()
        )));
    }
    Ok(Some(serde_json::from_str(&text)?))
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
    let batches = iso
        .edge_mut()
        .reported(prepared, channel, client, signal, now_ms());
    for batch in batches {
        send_batch(env, ctx, &prepared.bundle, batch);
    }
}

/// Sends a batch of counts to the bundle's control plane, after the response
/// (`wait_until`): to this isolate's aggregator of the bundle (`control::coalesce`), or,
/// without a `HEALTH_AGGREGATORS` binding, straight to the bundle's object. Without a
/// `HEALTH` binding, health monitoring is off and counts are dropped.
fn send_batch(env: &Env, ctx: &Context, bundle: &BundleName, batch: Batch) {
    if env.durable_object(HEALTH_BINDING).is_err() {
        return;
    }
    let env = env.clone();
    let bundle = bundle.clone();
    ctx.wait_until(async move {
        let detail = match send(&env, &bundle, batch).await {
            Ok(status) if status < 300 => return,
            Ok(status) => format!("the monitor answered {status}"),
            Err(e) => brief(e),
        };
        log_event(
            "health_send_failed",
            json!({ "bundle": bundle.as_str(), "detail": detail }),
        );
    });
}

async fn send(env: &Env, bundle: &BundleName, batch: Batch) -> worker::Result<u16> {
    let Ok(aggregators) = env.durable_object(AGGREGATOR_BINDING) else {
        let message = IngestMessage {
            batches: vec![batch],
            merged: 1,
        };
        let body = serde_json::to_string(&message)?;
        let resp = call(env, bundle, Route::Ingest, wire::INGEST, Some(body)).await?;
        return Ok(resp.status_code());
    };
    let name = coalesce::aggregator_name(bundle, shard());
    let stub = aggregators.id_from_name(&name)?.get_stub()?;
    let headers = Headers::new();
    headers.set(wire::BUNDLE_HEADER, bundle.as_str())?;
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&serde_json::to_string(&batch)?)));
    let req = Request::new_with_init(&format!("{}{}", wire::ORIGIN, wire::AGGREGATE), &init)?;
    Ok(stub.fetch_with_request(req).await?.status_code())
}

thread_local! {
    /// This isolate's aggregator shard, drawn once: isolates spread over the aggregators.
    static SHARD: u32 = {
        let mut bytes = [0u8; 4];
        // Without randomness every isolate uses shard 0: still correct, less spread.
        let _ = getrandom::getrandom(&mut bytes);
        u32::from_le_bytes(bytes) % coalesce::AGGREGATORS
    };
}

fn shard() -> u32 {
    SHARD.with(|s| *s)
}

/// The control plane's view of a bundle, after it adopts an operator's KV write (under the
/// object's lock); `None` without a `HEALTH` binding.
pub(in crate::edge) async fn status(
    env: &Env,
    bundle: &BundleName,
) -> worker::Result<Option<StatusAnswer>> {
    get(env, bundle, Route::Status, wire::STATUS).await
}

/// The control plane's committed view of a bundle, read-only: no KV read, no wait for the
/// object's lock (the overview); `None` without a `HEALTH` binding.
pub(in crate::edge) async fn summary(
    env: &Env,
    bundle: &BundleName,
) -> worker::Result<Option<StatusAnswer>> {
    get(env, bundle, Route::Summary, wire::SUMMARY).await
}

/// The bundle's per-minute counts from the Unix minute `since` on; `None` without a
/// `HEALTH` binding.
pub(in crate::edge) async fn minutes(
    env: &Env,
    bundle: &BundleName,
    since: u64,
) -> worker::Result<Option<MinutesAnswer>> {
    get(env, bundle, Route::Minutes, &wire::minutes_path(since)).await
}

/// Runs an admin write in the control plane as `by` (who the history and logs name);
/// returns its status and answer.
pub(in crate::edge) async fn command(
    env: &Env,
    bundle: &BundleName,
    action: &str,
    body: &str,
    by: &str,
) -> worker::Result<CommandAnswer> {
    let message = serde_json::to_string(&CommandMessage {
        action: action.to_owned(),
        body: body.to_owned(),
        by: by.to_owned(),
    })?;
    let mut resp = call(env, bundle, Route::Command, wire::COMMAND, Some(message)).await?;
    let status = resp.status_code();
    Ok(CommandAnswer::decode(status, &resp.text().await?)?)
}
