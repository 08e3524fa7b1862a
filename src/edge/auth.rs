//! Who is asking, for the admin API and the console: a bearer token (any host), or, on
//! the console host only, a console session or a Cloudflare Access identity. Also the two
//! pieces of state behind them that live outside the request: the revoked sessions (KV,
//! listed at most once per `CONFIG_TTL_MS`) and Access's signing keys (fetched once per
//! hour, or when a token names a key not seen yet).

use std::rc::Rc;

use serde_json::json;
use worker::{Env, Fetch, Method, Request};

use super::{brief, log_event, now_ms, Failure, Isolate, KV_BINDING};
use crate::access::{self, Jwks};
use crate::error::EdgeError;
use crate::operators::{Operators, Principal, Scope};
use crate::revocation::{self, Revocations};
use crate::route;
use crate::session::{self, from_console_page, RequestSource, Session, CSRF_HEADER};

/// The header Cloudflare Access adds to requests it let through.
pub(super) const ACCESS_JWT_HEADER: &str = "cf-access-jwt-assertion";
/// Rate limiting binding for console logins and failed bearer tokens, by client IP.
const LOGIN_LIMIT: &str = "LOGIN_LIMIT_PER_IP";
/// How long Access's keys are trusted before they are fetched again.
const JWKS_TTL_MS: f64 = 3_600_000.0;
/// At most one fetch of Access's keys per this long, whatever tokens arrive.
const JWKS_MIN_REFETCH_MS: f64 = 60_000.0;

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// The configured tokens, or why the admin API is off or refused.
pub(super) fn operators(iso: &Isolate) -> Result<&Operators, Failure> {
    match &iso.operators {
        Ok(Some(ops)) => Ok(ops),
        Ok(None) => Err(EdgeError::NotFound(
            "the admin API is disabled (ADMIN_TOKEN is not set)".into(),
        )
        .into()),
        Err(e) => Err(EdgeError::Misconfigured(e.clone()).into()),
    }
}

/// The request's host as the URL has it (with a port, if any).
pub(super) fn host_of(req: &Request) -> String {
    route::host_of(&req.inner().url()).to_owned()
}

/// `scheme://host[:port]` of the request.
pub(super) fn origin_of(req: &Request) -> String {
    route::origin_of(&req.inner().url()).to_owned()
}

pub(super) fn on_console_host(req: &Request, iso: &Isolate) -> bool {
    iso.edge().settings.is_console_host(&host_of(req))
}

/// Where the request says it comes from (Fetch Metadata, `Origin`, `Referer`).
pub(super) fn check_console_page(req: &Request) -> Result<(), Failure> {
    let site = header(req, "sec-fetch-site");
    let dest = header(req, "sec-fetch-dest");
    let origin = header(req, "origin");
    let referer = header(req, "referer");
    let src = RequestSource {
        sec_fetch_site: site.as_deref(),
        sec_fetch_dest: dest.as_deref(),
        origin: origin.as_deref(),
        referer: referer.as_deref(),
    };
    from_console_page(&src, &origin_of(req)).map_err(|why| {
        EdgeError::Forbidden(format!("only the console's own pages may: {why}")).into()
    })
}

/// Who makes an admin API request, refused unless it may do what it asks (`write`).
/// - `Authorization: Bearer <token>` works on any host: a page cannot borrow a token it
///   does not have. A wrong one counts against the address's login limit.
/// - On the console host only: the console session (writes also need its CSRF token, from
///   a console page), or a verified Access identity (writes from a browser must use the
///   session, which carries the CSRF token).
pub(super) async fn api_caller(
    req: &Request,
    env: &Env,
    iso: &Isolate,
    write: bool,
) -> Result<Principal, Failure> {
    let ops = operators(iso)?;
    let authorization = header(req, "authorization");
    if let Some(principal) = ops.by_bearer(authorization.as_deref()) {
        return allowed(principal, write);
    }
    if authorization.is_some() {
        limit_guessing(req, env).await?;
        return Err(EdgeError::Unauthorized.into());
    }
    if !on_console_host(req, iso) {
        return Err(EdgeError::Unauthorized.into());
    }
    if let Some(session) = session(req, env, iso).await? {
        if write {
            check_console_page(req)?;
            if !session.csrf_matches(header(req, CSRF_HEADER).as_deref()) {
                return Err(EdgeError::Forbidden(format!(
                    "a write with a console session needs its {CSRF_HEADER} header"
                ))
                .into());
            }
        }
        return allowed(session.principal, write);
    }
    if let Some(principal) = access_identity(req, iso).await? {
        if write && header(req, "sec-fetch-site").is_some() {
            return Err(EdgeError::Forbidden(
                "a browser writes through the console's session (GET /__canary/ui/session first)"
                    .into(),
            )
            .into());
        }
        return allowed(principal, write);
    }
    Err(EdgeError::Unauthorized.into())
}

fn allowed(principal: Principal, write: bool) -> Result<Principal, Failure> {
    if write && !principal.may_write() {
        return Err(
            EdgeError::Forbidden(format!("{} may only read (READ_TOKEN)", principal.name)).into(),
        );
    }
    Ok(principal)
}

/// One attempt against the address's login limit: `429` with `Retry-After` past it.
pub(super) async fn limit_guessing(req: &Request, env: &Env) -> Result<(), Failure> {
    let ip = header(req, "cf-connecting-ip").unwrap_or_default();
    if super::within_limit(env, LOGIN_LIMIT, format!("login:{ip}")).await {
        return Ok(());
    }
    log_event("login_rate_limited", json!({ "ip": ip }));
    Err(EdgeError::TooManyRequests(
        "too many login attempts from this address; try again in a minute".into(),
    )
    .into())
}

// ---------------------------------------------------------------- sessions

/// The console session of the request's cookie, if it verifies and is not revoked.
pub(super) async fn session(
    req: &Request,
    env: &Env,
    iso: &Isolate,
) -> Result<Option<Session>, Failure> {
    let (Some(key), Some(cookie)) = (iso.session_key.as_ref(), header(req, "cookie")) else {
        return Ok(None);
    };
    if !cookie.contains(session::SESSION_COOKIE) {
        return Ok(None);
    }
    let revoked = revocations(env, iso).await?;
    Ok(key.from_cookie_header(Some(&cookie), now_ms() as u64, &revoked))
}

/// The revocations as this isolate knows them: listed from KV when older than the config
/// TTL. A failed listing keeps the last copy; with none, sessions are refused (503) rather
/// than trusted unchecked.
async fn revocations(env: &Env, iso: &Isolate) -> Result<Rc<Revocations>, Failure> {
    let now = now_ms();
    if let Some((known, at)) = iso.revocations.borrow().as_ref() {
        if now - at < iso.edge().settings.config_ttl_ms as f64 {
            return Ok(known.clone());
        }
    }
    match list_revocations(env).await {
        Ok(fresh) => {
            let fresh = Rc::new(fresh);
            *iso.revocations.borrow_mut() = Some((fresh.clone(), now));
            Ok(fresh)
        }
        Err(detail) => {
            log_event("revocations_unreadable", json!({ "detail": detail }));
            match iso.revocations.borrow().as_ref() {
                Some((known, _)) => Ok(known.clone()),
                None => Err(EdgeError::ConfigUnavailable {
                    bundle: "(console sessions)".into(),
                    detail,
                }
                .into()),
            }
        }
    }
}

/// Every key under `auth/`, in one listing (names only; a few pages at most).
async fn list_revocations(env: &Env) -> Result<Revocations, String> {
    let kv = env.kv(KV_BINDING).map_err(brief)?;
    let mut keys = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let mut list = kv.list().prefix(revocation::KV_PREFIX.to_owned());
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await.map_err(brief)?;
        keys.extend(page.keys);
        match (page.list_complete, page.cursor) {
            (false, Some(c)) => cursor = Some(c),
            _ => break,
        }
    }
    Ok(Revocations::from_listing(
        keys.iter().map(|k| k.name.as_str()),
    ))
}

/// Revokes one session (logout): a KV key that expires with the session.
pub(super) async fn revoke_session(env: &Env, iso: &Isolate, s: &Session) -> Result<(), Failure> {
    let kv = env.kv(KV_BINDING)?;
    // KV wants an expiration at least 60 s ahead.
    let expires = s.expires_unix.max(now_ms() as u64 / 1000 + 120);
    kv.put(&revocation::revoked_session_key(&s.id), "")
        .map_err(|e| EdgeError::Conflict(format!("revocation: {e}")))?
        .expiration(expires)
        .execute()
        .await
        .map_err(|e| EdgeError::ConfigUnavailable {
            bundle: "(console sessions)".into(),
            detail: format!("the logout could not be recorded: {}", brief(e)),
        })?;
    update_local(iso, |r| r.revoke_session(&s.id));
    Ok(())
}

/// Ends every session issued until now ("log out everywhere"): a key of its own, expiring
/// when the last session it voids would have.
pub(super) async fn revoke_all_sessions(env: &Env, iso: &Isolate) -> Result<u64, Failure> {
    let kv = env.kv(KV_BINDING)?;
    let now = now_ms() as u64;
    kv.put(&revocation::sessions_not_before_key(now), "")
        .map_err(|e| EdgeError::Conflict(format!("revocation: {e}")))?
        .expiration(now / 1000 + session::SESSION_SECS + 120)
        .execute()
        .await
        .map_err(|e| EdgeError::ConfigUnavailable {
            bundle: "(console sessions)".into(),
            detail: format!("the revocation could not be recorded: {}", brief(e)),
        })?;
    update_local(iso, |r| r.revoke_all_sessions(now));
    Ok(now)
}

fn update_local(iso: &Isolate, change: impl FnOnce(&mut Revocations)) {
    let mut slot = iso.revocations.borrow_mut();
    let (known, at) = slot.take().unwrap_or_default();
    let mut copy = (*known).clone();
    change(&mut copy);
    *slot = Some((Rc::new(copy), at));
}

// ---------------------------------------------------------------- Cloudflare Access

/// The identity Cloudflare Access vouches for, when Access is configured and the request
/// carries a token that verifies (on the console host only: see `api_caller`). A token
/// that does not verify is logged and ignored.
pub(super) async fn access_identity(
    req: &Request,
    iso: &Isolate,
) -> Result<Option<Principal>, Failure> {
    let (Some(policy), Some(token)) = (iso.access.as_ref(), header(req, ACCESS_JWT_HEADER)) else {
        return Ok(None);
    };
    let now = now_ms();
    let kid = access::header_kid(&token);
    let keys = match jwks(iso, kid.as_deref(), now).await {
        Ok(keys) => keys,
        Err(detail) => {
            log_event("access_keys_unavailable", json!({ "detail": detail }));
            return Err(EdgeError::ConfigUnavailable {
                bundle: "(Cloudflare Access keys)".into(),
                detail,
            }
            .into());
        }
    };
    match access::verify(&token, &keys, policy, (now / 1000.0) as u64) {
        Ok(identity) => Ok(Some(Principal {
            name: identity.email,
            scope: Scope::Write,
        })),
        Err(e) => {
            log_event("access_token_refused", json!({ "reason": e.to_string() }));
            Ok(None)
        }
    }
}

/// Access's signing keys: cached for an hour, fetched again early when a token names a key
/// not in the cache (a key rotation), at most once a minute.
async fn jwks(iso: &Isolate, kid: Option<&str>, now: f64) -> Result<Rc<Jwks>, String> {
    let policy = iso.access.as_ref().ok_or("Access is not configured")?;
    if let Some((keys, at)) = iso.jwks.borrow().as_ref() {
        let fresh = now - at < JWKS_TTL_MS;
        let knows = kid.is_none_or(|k| keys.has_kid(k));
        if fresh && (knows || now - at < JWKS_MIN_REFETCH_MS) {
            return Ok(keys.clone());
        }
    }
    let url = policy.certs_url();
    let parsed = async {
        // A Request from the string, not `Fetch::Url`: that links the `url` crate's IDNA
        // tables into the module (see docs/operating.md, "What it costs").
        let request = Request::new(&url, Method::Get).map_err(brief)?;
        let mut resp = Fetch::Request(request).send().await.map_err(brief)?;
        if resp.status_code() != 200 {
            return Err(format!(
                "{} answered {}",
                policy.certs_url(),
                resp.status_code()
            ));
        }
        let text = resp.text().await.map_err(brief)?;
        Jwks::parse(&text).map_err(|e| e.to_string())
    }
    .await;
    match parsed {
        Ok(keys) => {
            let keys = Rc::new(keys);
            *iso.jwks.borrow_mut() = Some((keys.clone(), now));
            Ok(keys)
        }
        // A failed refresh keeps serving the keys known, if any.
        Err(detail) => match iso.jwks.borrow().as_ref() {
            Some((keys, _)) => {
                log_event("access_keys_refresh_failed", json!({ "detail": detail }));
                Ok(keys.clone())
            }
            None => Err(detail),
        },
    }
}
