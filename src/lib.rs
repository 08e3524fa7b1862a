//! canary-edge: user-based canary releases of versioned static bundles on Cloudflare
//! Workers, served from R2, steered by a weight in KV.
//!
//! This crate is the runtime adapter only: every decision lives in `canary-core` (the
//! `core/` folder), which has no `worker` dependency. `edge` is the only module that
//! touches the `worker` crate; the events below hand off to it at once.

#[cfg(target_arch = "wasm32")]
mod edge;

// The edge names the core's modules as `crate::config`, `crate::decide`, ...
#[cfg(target_arch = "wasm32")]
use canary_core::{
    access, admin, authz, body, config, control, credential, decide, error, http, log, operators,
    override_token, revocation, rollouts, route, serve, session, settings,
};

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
