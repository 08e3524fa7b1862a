//! `/__canary/ui/`: the operator console, on the console host (`CONSOLE_HOST`) only. Its
//! files are Workers Static Assets (`[assets]` in wrangler.toml, binding `ASSETS`), served
//! through here so that the console exists exactly when the admin API does, with a strict
//! Content-Security-Policy. The session routes exchange a token (or an Access identity)
//! for a signed cookie (`canary_core::ops::session`) and end it on the server.

use serde_json::json;
use worker::{Env, Headers, Request, Response};

use super::auth::{self, check_console_page, on_console_host};
use super::{access_jwt, body, json_response, log_event, now_ms, revocations};
use super::{Failure, Isolate, Outcome};
use canary_core::error::EdgeError;
use canary_core::ops::authz::{self, Credential};
use canary_core::ops::credential::Bound;
use canary_core::ops::operators::{token_digest, Principal};
use canary_core::ops::session::{self, Session};

/// Binding of the console's static files; must match `wrangler.toml`.
const ASSETS_BINDING: &str = "ASSETS";

/// Scripts, styles and data from this origin only; no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(super) async fn serve(req: &mut Request, env: &Env, iso: &Isolate, path: &[&str]) -> Outcome {
    let ops = auth::operators(iso)?;
    let method = req.inner().method();
    if !on_console_host(req, iso) {
        return elsewhere(req, iso, &method);
    }
    let Some(key) = iso.session_key.as_ref() else {
        return Err(EdgeError::NotFound("the operator console is disabled".into()).into());
    };
    match (path, method.as_str()) {
        (["login"], "POST") => {
            check_console_page(req)?;
            // Every attempt counts, right or wrong: past the limit even the right token
            // waits, so the limit cannot be used to tell a right guess from a wrong one.
            auth::limit_guessing(req, env, iso).await?;
            #[derive(serde::Deserialize)]
            struct Login {
                token: String,
            }
            let body = body::read(req, 4096, "a login").await?;
            let login: Login = serde_json::from_str(&body)
                .map_err(|e| EdgeError::BadRequest(format!("login body: {e}")))?;
            let Some(principal) = ops.by_token(&login.token) else {
                log_event("console_login_failed", json!({ "ip": client_ip(req) }));
                return json_response(401, &json!({ "error": "wrong token" }));
            };
            // The session names its token (a keyed hash), so that it ends with the token.
            let bound = Bound::token(key, &token_digest(&login.token));
            start_session(key, &principal, bound, "token")
        }
        (["session"], "GET") => {
            check_console_page(req)?;
            if let Some(s) = auth::session(req, env, iso).await? {
                return json_response(200, &session_json(&s));
            }
            // Behind Cloudflare Access, the identity a browser carries signs in by itself.
            match access_jwt::identity(req, iso).await? {
                Some((principal, Credential::AccessBrowser)) => {
                    start_session(key, &principal, Bound::Access, "access")
                }
                Some(_) => Err(EdgeError::Forbidden(
                    "an Access token without the browser's cookie is for the API only; \
                     a console session starts in a browser"
                        .into(),
                )
                .into()),
                None => json_response(
                    401,
                    &json!({ "error": "no session", "access": iso.access.is_some() }),
                ),
            }
        }
        (["logout"], "POST") => logout(req, env, iso).await,
        (["login" | "session" | "logout"], _) => {
            Err(EdgeError::MethodNotAllowed("GET, POST").into())
        }
        (_, "GET" | "HEAD") => static_file(req, env).await,
        _ => Err(EdgeError::MethodNotAllowed("GET, HEAD").into()),
    }
}

/// A console route on any other host: a page there may be a bundle's, so nothing here
/// answers with or to a session. A browser going to the console is sent to its host.
fn elsewhere(req: &Request, iso: &Isolate, method: &str) -> Outcome {
    let edge = iso.edge();
    let Some(console) = edge.settings.console_host.as_deref() else {
        return Err(EdgeError::NotFound(
            "the operator console is off: set CONSOLE_HOST to a host that serves no bundle".into(),
        )
        .into());
    };
    let here = auth::host_of(req);
    let port = here
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map(|(_, p)| format!(":{p}"))
        .unwrap_or_default();
    let scheme = auth::origin_of(req)
        .split_once("://")
        .map_or("https", |(s, _)| s)
        .to_owned();
    let url = req.inner().url();
    let path = canary_core::edge::route::path_of(&url);
    let target = format!("{scheme}://{console}{port}{path}");
    if method == "GET" || method == "HEAD" {
        let headers = Headers::new();
        headers.set("location", &target)?;
        headers.set("cache-control", "no-store")?;
        return Ok(Response::empty()?.with_status(302).with_headers(headers));
    }
    Err(EdgeError::NotFound(format!("the operator console is at {target}")).into())
}

fn client_ip(req: &Request) -> String {
    req.headers()
        .get("cf-connecting-ip")
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn start_session(
    key: &session::SessionKey,
    principal: &Principal,
    bound: Bound,
    via: &str,
) -> Outcome {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|e| EdgeError::Forbidden(format!("no randomness for a session: {e}")))?;
    let Some((value, session)) = key.issue(principal, bound, id, now_ms() as u64) else {
        return Err(EdgeError::Forbidden(format!(
            "{:?} cannot be carried in a session",
            principal.name
        ))
        .into());
    };
    log_event(
        "console_login",
        json!({ "by": principal.name, "scope": principal.scope.as_str(), "via": via }),
    );
    with_cookie(session_json(&session), &session::set_cookie(&value))
}

/// `POST /__canary/ui/logout` ends the session on the server (any scope may end its own,
/// from a console page with its CSRF token); with `{"everywhere": true}` it ends every
/// session issued so far, a write: the write scope, by a session (same checks) or a
/// bearer token.
async fn logout(req: &mut Request, env: &Env, iso: &Isolate) -> Outcome {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Logout {
        #[serde(default)]
        everywhere: bool,
    }
    let body = body::read(req, 1024, "a logout").await?;
    let ask: Logout = if body.trim().is_empty() {
        Logout::default()
    } else {
        serde_json::from_str(&body)
            .map_err(|e| EdgeError::BadRequest(format!("logout body: {e}")))?
    };
    let session = auth::session(req, env, iso).await?;
    if session.is_none() && !ask.everywhere {
        return with_cookie(
            json!({ "ok": true, "revoked": 0 }),
            &session::clear_cookie(),
        );
    }
    let by = auth::caller(req, env, iso, authz::logout_action(ask.everywhere))
        .await?
        .name;
    let answer = match (&session, ask.everywhere) {
        (_, true) => {
            let at = revocations::revoke_all_sessions(env, iso).await?;
            log_event("sessions_revoked", json!({ "by": by, "not_before_ms": at }));
            json!({ "ok": true, "revoked": "all", "not_before_ms": at })
        }
        (Some(s), false) => {
            revocations::revoke_session(env, iso, s).await?;
            log_event("console_logout", json!({ "by": by }));
            json!({ "ok": true, "revoked": 1 })
        }
        (None, false) => json!({ "ok": true, "revoked": 0 }),
    };
    with_cookie(answer, &session::clear_cookie())
}

fn session_json(s: &Session) -> serde_json::Value {
    json!({
        "csrf": s.csrf,
        "expires_unix": s.expires_unix,
        "by": s.principal.name,
        "scope": s.principal.scope.as_str(),
    })
}

fn with_cookie(body: serde_json::Value, cookie: &str) -> Result<Response, Failure> {
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
    // The console's fetches carry their page (same origin only): the session routes
    // answer only requests from a console page.
    headers.set("referrer-policy", "same-origin")?;
    headers.set("cache-control", "no-cache")?;
    let body = found.body().clone();
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .body(body))
}
