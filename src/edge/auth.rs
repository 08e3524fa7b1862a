//! Who is asking, for the admin API and the console, and whether they may: a bearer token
//! (any host), or, on the console host only, a console session or a Cloudflare Access
//! identity. What each credential and action needs is `canary_core::ops::authz`'s one table;
//! this applies it. A session also stands only while it is not revoked (`revocations`) and
//! its credential still verifies (`canary_core::ops::credential`).

use serde_json::json;
use worker::{Env, Request};

use super::{access_jwt, log_event, now_ms, revocations, Failure, Isolate};
use canary_core::edge::route;
use canary_core::error::EdgeError;
use canary_core::ops::authz::{self, Action, Credential};
use canary_core::ops::credential::{self, Bound};
use canary_core::ops::operators::{Operators, Principal};
use canary_core::ops::revocation::Standing;
use canary_core::ops::session::{from_console_page, RequestSource, Session, CSRF_HEADER};

/// Rate limiting binding for console logins and failed bearer tokens, by client network.
const LOGIN_LIMIT: &str = "LOGIN_LIMIT_PER_IP";

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

/// Who makes an operations request, refused unless it may take `action`:
/// - `Authorization: Bearer <token>` works on any host: a page cannot borrow a token it
///   does not have. A wrong one counts against the network's login limit.
/// - On the console host only: the console session, else a verified Access identity.
pub(super) async fn caller(
    req: &Request,
    env: &Env,
    iso: &Isolate,
    action: Action,
) -> Result<Principal, Failure> {
    let ops = operators(iso)?;
    let authorization = header(req, "authorization");
    if let Some(principal) = ops.by_bearer(authorization.as_deref()) {
        return admit(req, Credential::Bearer, principal, None, action);
    }
    if authorization.is_some() {
        limit_guessing(req, env, iso).await?;
        return Err(EdgeError::Unauthorized.into());
    }
    if !on_console_host(req, iso) {
        return Err(EdgeError::Unauthorized.into());
    }
    if let Some(session) = session(req, env, iso).await? {
        let principal = session.principal.clone();
        return admit(req, Credential::Session, principal, Some(&session), action);
    }
    if let Some((principal, credential)) = access_jwt::identity(req, iso).await? {
        return admit(req, credential, principal, None, action);
    }
    Err(EdgeError::Unauthorized.into())
}

/// `authz::authorise`'s verdict for this request, with its checks applied.
fn admit(
    req: &Request,
    credential: Credential,
    principal: Principal,
    session: Option<&Session>,
    action: Action,
) -> Result<Principal, Failure> {
    let checks = authz::authorise(credential, principal.scope, action)
        .map_err(|why| EdgeError::Forbidden(why.message(&principal.name)))?;
    if checks.console_page {
        check_console_page(req)?;
    }
    if checks.csrf {
        let sent = header(req, CSRF_HEADER);
        if !session.is_some_and(|s| s.csrf_matches(sent.as_deref())) {
            return Err(EdgeError::Forbidden(format!(
                "a write or logout with a console session needs its {CSRF_HEADER} header"
            ))
            .into());
        }
    }
    Ok(principal)
}

/// One attempt against the network's login limit (an IPv4 address, an IPv6 /48: one
/// home's many addresses share it): `429` with `Retry-After` past it.
pub(super) async fn limit_guessing(req: &Request, env: &Env, iso: &Isolate) -> Result<(), Failure> {
    let ip = header(req, "cf-connecting-ip");
    let key = iso.edge().network_limit_key(ip.as_deref());
    if super::within_limit(env, LOGIN_LIMIT, format!("login:{key}")).await {
        return Ok(());
    }
    log_event(
        "login_rate_limited",
        json!({ "ip": ip.unwrap_or_default(), "network": key }),
    );
    Err(EdgeError::TooManyRequests(
        "too many login attempts from this network; try again in a minute".into(),
    )
    .into())
}

/// The console session of the request's cookie, if it verifies, is not revoked, and its
/// credential still verifies against the current secrets (an Access session: against the
/// request's own valid Access JWT).
pub(super) async fn session(
    req: &Request,
    env: &Env,
    iso: &Isolate,
) -> Result<Option<Session>, Failure> {
    let (Some(key), Some(cookie)) = (iso.session_key.as_ref(), header(req, "cookie")) else {
        return Ok(None);
    };
    let Some(session) = key.from_cookie_header(Some(&cookie), now_ms() as u64) else {
        return Ok(None);
    };
    let by = session.principal.name.as_str();
    let revoked = revocations::current(env, iso).await?;
    match revoked.standing(by, &session.id, session.issued_ms) {
        Standing::Valid => {}
        Standing::Revoked => return Ok(None),
        Standing::Unvouched => {
            log_event(
                "session_refused",
                json!({ "by": by, "reason": "unvouched" }),
            );
            return Ok(None);
        }
    }
    let access = match session.bound {
        Bound::Access => access_jwt::identity(req, iso).await?.map(|(p, _)| p.name),
        Bound::Token(_) => None,
    };
    let ops = operators(iso)?;
    if let Err(why) = credential::still_holds(
        key,
        &session.principal,
        &session.bound,
        ops,
        access.as_deref(),
    ) {
        log_event(
            "session_refused",
            json!({ "by": by, "reason": why.as_str() }),
        );
        return Ok(None);
    }
    Ok(Some(session))
}
