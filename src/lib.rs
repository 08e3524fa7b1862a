//! canary-edge: user-based canary releases of versioned static bundles on Cloudflare
//! Workers, served from R2, steered by a weight in KV.
//!
//! This crate is the control Worker's runtime adapter only (wrangler.control.toml): every
//! decision lives in `canary-core` (the `core/` folder, named by its crate name here), which
//! has no `worker` dependency. `edge` is the only module that touches the `worker` crate;
//! the events below hand off to it at once.

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
