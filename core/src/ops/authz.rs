//! What an operations request needs before it runs, whoever makes it: the scope its action
//! takes, the checks its kind of credential brings (the console-page check, the CSRF
//! token), and whether its bundle must already exist. One table for every route and every
//! credential, so that no path (bearer, session, Access) skips a check another applies.
//!
//! - A credential a browser sends by itself (the console's session cookie, Access's
//!   `CF_Authorization` cookie) is ambient: any page the browser opens can make it travel.
//!   Every request it authorises, reads too, must come from a console page
//!   (`session::from_console_page`), and a session's state changes need its CSRF token.
//! - A credential the client has to hold (a bearer token, an Access JWT in a header with no
//!   cookie and no Fetch Metadata: a service token for CI, or `cloudflared`) cannot be
//!   borrowed by a page: API only, no page check.

use crate::ops::operators::Scope;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer <token>` (any host).
    Bearer,
    /// The console's session cookie (console host only).
    Session,
    /// A Cloudflare Access JWT that came with the browser's `CF_Authorization` cookie or
    /// with Fetch Metadata: ambient, like the session.
    AccessBrowser,
    /// A Cloudflare Access JWT in its header alone (a service token, `cloudflared`): no
    /// browser sends it by itself. API only: it starts no console session.
    AccessApi,
}

/// What a request does, which sets the scope it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Status, minutes, files, the bundle list, the session's answer.
    Read,
    /// Anything that changes state: every admin command (weight, rollout, pause, resume,
    /// approve, rollback, promote, publish, revoke-overrides), overrides, and "log out
    /// everywhere".
    Write,
    /// A session ending itself (logout): any scope may, with the session's CSRF token.
    EndOwnSession,
}

impl Action {
    /// The scope the action takes.
    pub fn scope(self) -> Scope {
        match self {
            Action::Write => Scope::Write,
            Action::Read | Action::EndOwnSession => Scope::Read,
        }
    }

    fn changes_state(self) -> bool {
        !matches!(self, Action::Read)
    }
}

/// The checks a request must pass beyond its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checks {
    /// It must come from one of the console's own pages (Fetch Metadata, `Origin`, `Referer`).
    pub console_page: bool,
    /// It must carry the session's CSRF token.
    pub csrf: bool,
}

/// Why a credential may not do what it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A read-only principal asked for a write.
    ReadOnly,
    /// A browser asked for a write with its Access identity alone: it must use the
    /// console's session, which carries the CSRF token.
    BrowserAccessWrite,
}

impl Refusal {
    /// The answer's message, naming who was refused.
    pub fn message(self, who: &str) -> String {
        match self {
            Refusal::ReadOnly => format!("{who} may only read (READ_TOKEN)"),
            Refusal::BrowserAccessWrite => {
                "a browser writes through the console's session (GET /__canary/ui/session first)"
                    .into()
            }
        }
    }
}

/// Whether a principal holding `held`, proved by `credential`, may take `action`, and the
/// checks it must pass then.
pub fn authorise(credential: Credential, held: Scope, action: Action) -> Result<Checks, Refusal> {
    if action.scope() == Scope::Write && held != Scope::Write {
        return Err(Refusal::ReadOnly);
    }
    match credential {
        Credential::Bearer | Credential::AccessApi => Ok(Checks::default()),
        Credential::Session => Ok(Checks {
            console_page: true,
            csrf: action.changes_state(),
        }),
        Credential::AccessBrowser if action.changes_state() => Err(Refusal::BrowserAccessWrite),
        Credential::AccessBrowser => Ok(Checks {
            console_page: true,
            csrf: false,
        }),
    }
}

/// The kind of an Access JWT: a browser's when the request carries Access's cookie or
/// `Sec-Fetch-Site` (every current browser sends it), else an API client's.
pub fn access_credential(access_cookie: bool, fetch_metadata: bool) -> Credential {
    if access_cookie || fetch_metadata {
        Credential::AccessBrowser
    } else {
        Credential::AccessApi
    }
}

/// Whether a route's bundle must already have a rollout config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleNeed {
    /// No bundle (the bundle list).
    None,
    /// The bundle must have a config: without one the route answers 404 and no Durable
    /// Object is asked (asking one creates its state).
    Existing,
    /// Publishing: a new bundle's first version creates it.
    ExistingOrNew,
}

/// An admin API request (`/__canary/api[/<bundle>[/...]]`): what it does and what its
/// bundle must be. `path` is what follows `/__canary/api/`, split on `/` (empty for the list).
pub fn api_route(method: &str, path: &[&str]) -> (Action, BundleNeed) {
    let action = if matches!(method, "GET" | "HEAD") {
        Action::Read
    } else {
        Action::Write
    };
    let need = match path {
        [] | [""] => BundleNeed::None,
        // A new bundle's first version: claimed, then published.
        [_, "publish" | "claim"] if method == "POST" => BundleNeed::ExistingOrNew,
        _ => BundleNeed::Existing,
    };
    (action, need)
}

/// `POST /__canary/ui/logout`: ending every session is a write; ending one's own is not.
pub fn logout_action(everywhere: bool) -> Action {
    if everywhere {
        Action::Write
    } else {
        Action::EndOwnSession
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Credential::*;
    use Scope::{Read as R, Write as W};

    const PAGE: Checks = Checks {
        console_page: true,
        csrf: false,
    };
    const PAGE_CSRF: Checks = Checks {
        console_page: true,
        csrf: true,
    };
    const NONE: Checks = Checks {
        console_page: false,
        csrf: false,
    };

    #[test]
    fn every_credential_scope_and_action() {
        use Refusal::*;
        let table: [(Credential, Scope, Action, Result<Checks, Refusal>); 24] = [
            (Bearer, W, Read, Ok(NONE)),
            (Bearer, W, Write, Ok(NONE)),
            (Bearer, W, EndOwnSession, Ok(NONE)),
            (Bearer, R, Read, Ok(NONE)),
            (Bearer, R, Write, Err(ReadOnly)),
            (Bearer, R, EndOwnSession, Ok(NONE)),
            (Session, W, Read, Ok(PAGE)),
            (Session, W, Write, Ok(PAGE_CSRF)),
            (Session, W, EndOwnSession, Ok(PAGE_CSRF)),
            (Session, R, Read, Ok(PAGE)),
            (Session, R, Write, Err(ReadOnly)),
            (Session, R, EndOwnSession, Ok(PAGE_CSRF)),
            (AccessBrowser, W, Read, Ok(PAGE)),
            (AccessBrowser, W, Write, Err(BrowserAccessWrite)),
            (AccessBrowser, W, EndOwnSession, Err(BrowserAccessWrite)),
            (AccessBrowser, R, Read, Ok(PAGE)),
            (AccessBrowser, R, Write, Err(ReadOnly)),
            (AccessBrowser, R, EndOwnSession, Err(BrowserAccessWrite)),
            (AccessApi, W, Read, Ok(NONE)),
            (AccessApi, W, Write, Ok(NONE)),
            (AccessApi, W, EndOwnSession, Ok(NONE)),
            (AccessApi, R, Read, Ok(NONE)),
            (AccessApi, R, Write, Err(ReadOnly)),
            (AccessApi, R, EndOwnSession, Ok(NONE)),
        ];
        for (credential, held, action, expected) in table {
            assert_eq!(
                authorise(credential, held, action),
                expected,
                "{credential:?} {held:?} {action:?}"
            );
        }
    }

    #[test]
    fn every_admin_route() {
        use BundleNeed::*;
        for (method, path, expected) in [
            ("GET", &[][..], (Read, None)),
            ("GET", &[""][..], (Read, None)),
            ("GET", &["demo"][..], (Read, Existing)),
            ("HEAD", &["demo"][..], (Read, Existing)),
            ("GET", &["demo", "minutes"][..], (Read, Existing)),
            ("GET", &["demo", "files", "1.0.0"][..], (Read, Existing)),
            ("POST", &["demo", "weight"][..], (Write, Existing)),
            ("POST", &["demo", "rollout"][..], (Write, Existing)),
            ("POST", &["demo", "pause"][..], (Write, Existing)),
            ("POST", &["demo", "resume"][..], (Write, Existing)),
            ("POST", &["demo", "approve"][..], (Write, Existing)),
            ("POST", &["demo", "rollback"][..], (Write, Existing)),
            ("POST", &["demo", "promote"][..], (Write, Existing)),
            ("POST", &["demo", "revoke-overrides"][..], (Write, Existing)),
            ("POST", &["demo", "override"][..], (Write, Existing)),
            ("POST", &["demo", "publish"][..], (Write, ExistingOrNew)),
            ("POST", &["demo", "claim"][..], (Write, ExistingOrNew)),
            ("POST", &["demo", "policy"][..], (Write, Existing)),
            ("GET", &["demo", "publish"][..], (Read, Existing)),
            ("PUT", &["demo", "weight"][..], (Write, Existing)),
            ("DELETE", &["demo"][..], (Write, Existing)),
            ("POST", &["demo", "unknown"][..], (Write, Existing)),
        ] {
            assert_eq!(api_route(method, path), expected, "{method} {path:?}");
        }
        assert_eq!(logout_action(true), Write);
        assert_eq!(logout_action(false), EndOwnSession);
    }

    #[test]
    fn an_access_jwt_is_a_browsers_when_it_comes_with_a_cookie_or_fetch_metadata() {
        for (cookie, metadata, expected) in [
            (true, true, AccessBrowser),
            (true, false, AccessBrowser),
            (false, true, AccessBrowser),
            (false, false, AccessApi),
        ] {
            assert_eq!(access_credential(cookie, metadata), expected);
        }
    }

    #[test]
    fn refusals_say_why() {
        assert!(Refusal::ReadOnly
            .message("read-only")
            .contains("may only read"));
        assert!(Refusal::BrowserAccessWrite
            .message("a@b")
            .contains("console's session"));
    }
}
