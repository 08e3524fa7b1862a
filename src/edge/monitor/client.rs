//! The operations module's calls to the bundle's Durable Object: status, summary, minutes
//! and admin commands. (Health counts go from the entry module: `js/index.js`.)

use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;
use worker::{Env, Headers, Method, Request, RequestInit, Response};

use crate::edge::HEALTH_BINDING;
use canary_core::config::BundleName;
use canary_core::control::wire::{
    self, CommandAnswer, CommandMessage, MinutesAnswer, Route, StatusAnswer,
};

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
