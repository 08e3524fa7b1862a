//! `/__canary/ui/`: the operator console. Its files are Workers Static Assets (`[assets]` in
//! wrangler.toml, binding `ASSETS`), served through here so that the console exists exactly
//! when the admin API does, with a strict Content-Security-Policy. The session routes
//! exchange the admin token for a signed cookie (`crate::session`).

use serde_json::json;
use worker::{Env, Headers, Request, Response};

use super::{json_response, now_ms, Isolate, Outcome};
use crate::admin::bearer_matches;
use crate::error::EdgeError;
use crate::session::{self, fetch_site_allows, Session};

/// Binding of the console's static files; must match `wrangler.toml`.
const ASSETS_BINDING: &str = "ASSETS";

/// Scripts, styles and data from this origin only; no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn now_unix() -> u64 {
    (now_ms() / 1000.0) as u64
}

/// The session a request's cookie carries, if the admin API is on and it verifies.
pub(super) fn session(req: &Request, iso: &Isolate) -> Option<Session> {
    let key = iso.session_key.as_ref()?;
    let cookie = req.headers().get("cookie").ok().flatten();
    key.from_cookie_header(cookie.as_deref(), now_unix())
}

pub(super) async fn serve(req: &mut Request, env: &Env, iso: &Isolate, path: &[&str]) -> Outcome {
    let (Some(token), Some(key)) = (
        iso.settings.admin_token.as_deref(),
        iso.session_key.as_ref(),
    ) else {
        return Err(EdgeError::NotFound(
            "the operator console is disabled (ADMIN_TOKEN is not set)".into(),
        )
        .into());
    };
    let method = req.inner().method();
    let site = req.headers().get("sec-fetch-site").ok().flatten();
    match (path, method.as_str()) {
        (["login"], "POST") => {
            if !fetch_site_allows(site.as_deref()) {
                return Err(
                    EdgeError::Forbidden("log in from the console's own page".into()).into(),
                );
            }
            #[derive(serde::Deserialize)]
            struct Login {
                token: String,
            }
            let body = req.text().await?;
            if body.len() > 4096 {
                return Err(EdgeError::TooLarge("a login is limited to 4 KiB".into()).into());
            }
            let login: Login = serde_json::from_str(&body)
                .map_err(|e| EdgeError::BadRequest(format!("login body: {e}")))?;
            if !bearer_matches(Some(&format!("Bearer {}", login.token)), token) {
                return json_response(401, &json!({ "error": "wrong admin token" }));
            }
            let mut nonce = [0u8; 16];
            getrandom::getrandom(&mut nonce)
                .map_err(|e| EdgeError::Forbidden(format!("no randomness for a session: {e}")))?;
            let (value, session) = key.issue(nonce, now_unix());
            with_cookie(session_json(&session), &session::set_cookie(&value))
        }
        (["session"], "GET") => match session(req, iso) {
            Some(s) => json_response(200, &session_json(&s)),
            None => json_response(401, &json!({ "error": "no session" })),
        },
        (["logout"], "POST") => with_cookie(json!({ "ok": true }), &session::clear_cookie()),
        (["login" | "session" | "logout"], _) => {
            Err(EdgeError::MethodNotAllowed("GET, POST").into())
        }
        (_, "GET" | "HEAD") => static_file(req, env).await,
        _ => Err(EdgeError::MethodNotAllowed("GET, HEAD").into()),
    }
}

fn session_json(s: &Session) -> serde_json::Value {
    json!({ "csrf": s.csrf, "expires_unix": s.expires_unix })
}

fn with_cookie(body: serde_json::Value, cookie: &str) -> Outcome {
    let mut resp = json_response(200, &body)?;
    resp.headers_mut().set("set-cookie", cookie)?;
    Ok(resp)
}

/// A console file from the static assets, with the console's security headers.
async fn static_file(req: &Request, env: &Env) -> Outcome {
    let assets = env.assets(ASSETS_BINDING)?;
    let found = assets.fetch_request(req.clone()?).await?;
    let status = found.status_code();
    let headers = Headers::new();
    for (name, value) in found.headers().entries() {
        headers.set(&name, &value)?;
    }
    headers.set("content-security-policy", CSP)?;
    headers.set("x-frame-options", "DENY")?;
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("referrer-policy", "no-referrer")?;
    headers.set("cache-control", "no-cache")?;
    let body = found.body().clone();
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .body(body))
}
