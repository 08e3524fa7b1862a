//! canary-edge: user-based canary releases of versioned static bundles on Cloudflare
//! Workers, served from R2, steered by a weight in KV.
//!
//! The pure core (everything but `edge`) has no runtime dependency and is tested natively:
//! - [`route`] parses request paths into assets and R2 keys;
//! - [`config`] parses and validates the KV rollout config;
//! - [`cohort`] buckets identities into cohorts and picks the canary cohorts;
//! - [`cookie`] signs and verifies the sticky cohort cookie;
//! - [`decide`] makes the routing decision;
//! - [`rollouts`] keeps the per-isolate copy of configs (TTL, last good config);
//! - [`http`] holds content types, cache policies and conditional requests;
//! - [`settings`] reads the deployment vars; [`error`] maps failures to statuses.
//!
//! `edge` is the only module that touches the `worker` crate; the events below hand off to
//! it at once.

pub mod admin;
pub mod cohort;
pub mod config;
pub mod cookie;
pub mod decide;
pub mod error;
pub mod health;
pub mod http;
pub mod override_token;
pub mod report;
pub mod rollouts;
pub mod route;
pub mod settings;

#[cfg(target_arch = "wasm32")]
mod edge;

#[cfg(target_arch = "wasm32")]
pub use edge::HealthMonitor;

#[cfg(target_arch = "wasm32")]
#[worker::event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[cfg(target_arch = "wasm32")]
#[worker::event(fetch)]
async fn fetch(
    req: worker::Request,
    env: worker::Env,
    ctx: worker::Context,
) -> worker::Result<worker::Response> {
    Ok(edge::fetch(req, env, ctx).await)
}
