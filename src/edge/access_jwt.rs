//! Cloudflare Access on the console host: the identity of a request's Access JWT (its
//! `Cf-Access-Jwt-Assertion` header, else the browser's `CF_Authorization` cookie), and
//! whether a browser carried it (`authz::access_credential`). Access's signing keys are
//! fetched once per hour, or when a token names a key not seen yet.

use std::rc::Rc;

use serde_json::json;
use worker::{Fetch, Method, Request};

use super::{brief, log_event, now_ms, Failure, Isolate};
use canary_core::error::EdgeError;
use canary_core::ops::access::{self, Jwks};
use canary_core::ops::authz::{self, Credential};
use canary_core::ops::operators::{Principal, Scope};

/// The header Cloudflare Access adds to requests it let through.
const ACCESS_JWT_HEADER: &str = "cf-access-jwt-assertion";
/// The cookie Access sets in the browser: ambient, like the console's session.
const ACCESS_COOKIE: &str = "CF_Authorization";
/// How long Access's keys are trusted before they are fetched again.
const JWKS_TTL_MS: f64 = 3_600_000.0;
/// At most one fetch of Access's keys per this long, whatever tokens arrive.
const JWKS_MIN_REFETCH_MS: f64 = 60_000.0;

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// The identity Cloudflare Access vouches for, and the kind of credential it came as, when
/// Access is configured and the request carries a token that verifies (the caller checks
/// the host). A token that does not verify is logged and ignored.
pub(super) async fn identity(
    req: &Request,
    iso: &Isolate,
) -> Result<Option<(Principal, Credential)>, Failure> {
    let Some(policy) = iso.access.as_ref() else {
        return Ok(None);
    };
    let cookies = header(req, "cookie");
    let from_cookie = cookies
        .as_deref()
        .and_then(|c| canary_core::edge::http::cookie_values(c, ACCESS_COOKIE).next())
        .map(str::to_owned);
    let Some(token) = header(req, ACCESS_JWT_HEADER).or_else(|| from_cookie.clone()) else {
        return Ok(None);
    };
    // `Sec-Fetch-Site` only: every browser sends it, while HTTP clients such as Node's fetch
    // send `Sec-Fetch-Mode` too and are no browser.
    let fetch_metadata = header(req, "sec-fetch-site").is_some();
    let credential = authz::access_credential(from_cookie.is_some(), fetch_metadata);
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
        Ok(identity) => Ok(Some((
            Principal {
                name: identity.email,
                scope: Scope::Write,
            },
            credential,
        ))),
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
