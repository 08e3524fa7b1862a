//! One error type for everything a request can fail with, and its one mapping to an HTTP
//! status and a message safe to show. Internal detail goes to the log, not the body.

use crate::config::ConfigError;
use crate::settings::SettingsError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeError {
    /// A path that names nothing served here.
    NotFound(String),
    /// A malformed path or request.
    BadRequest(String),
    /// A method other than GET/HEAD on an asset route; carries the `Allow` value.
    MethodNotAllowed(&'static str),
    /// No `rollout/<bundle>` key in KV.
    NoRollout(String),
    /// The KV config is invalid and no earlier good config is known.
    ConfigInvalid { bundle: String, error: ConfigError },
    /// KV failed and no earlier good config is known.
    ConfigUnavailable { bundle: String, detail: String },
    /// The stable object is missing in R2.
    ObjectMissing(String),
    /// R2 failed for the stable version.
    Origin { key: String, detail: String },
    /// A pinned version the config does not name and no manifest shows published:
    /// `<bundle>@<version>`.
    NotPublished(String),
    /// A pinned version the config does not name is served only once published, and R2
    /// could not say (its manifest could not be read): `version` is `<bundle>@<version>`.
    PublicationUnknown { version: String, detail: String },
    /// Bad deployment settings.
    Misconfigured(SettingsError),
    /// Missing or wrong admin token. Says nothing more.
    Unauthorized,
    /// Authenticated, but the request may not do this (e.g. a session write without its
    /// CSRF token, or from another site).
    Forbidden(String),
    /// A request body over its limit.
    TooLarge(String),
    /// Over a rate limit (console logins); retry after the limiter's period.
    TooManyRequests(String),
    /// A valid request that the current state does not allow (e.g. no canary to promote).
    Conflict(String),
}

impl EdgeError {
    pub fn status(&self) -> u16 {
        match self {
            EdgeError::NotFound(_)
            | EdgeError::NoRollout(_)
            | EdgeError::ObjectMissing(_)
            | EdgeError::NotPublished(_) => 404,
            EdgeError::BadRequest(_) => 400,
            EdgeError::Unauthorized => 401,
            EdgeError::Forbidden(_) => 403,
            EdgeError::TooLarge(_) => 413,
            EdgeError::TooManyRequests(_) => 429,
            EdgeError::Conflict(_) => 409,
            EdgeError::MethodNotAllowed(_) => 405,
            EdgeError::Origin { .. } => 502,
            EdgeError::ConfigInvalid { .. }
            | EdgeError::ConfigUnavailable { .. }
            | EdgeError::PublicationUnknown { .. }
            | EdgeError::Misconfigured(_) => 503,
        }
    }

    /// The body sent to the client: says what is wrong without internal detail.
    pub fn public_message(&self) -> String {
        match self {
            EdgeError::NotFound(m) => format!("not found: {m}"),
            EdgeError::BadRequest(m) => format!("bad request: {m}"),
            EdgeError::MethodNotAllowed(allow) => format!("method not allowed; use {allow}"),
            EdgeError::NoRollout(b) => format!("no rollout config for bundle `{b}`"),
            EdgeError::ConfigInvalid { bundle, error } => {
                format!("bundle `{bundle}` unavailable: {error}")
            }
            EdgeError::ConfigUnavailable { bundle, .. } => {
                format!("bundle `{bundle}` unavailable: rollout config cannot be read right now")
            }
            EdgeError::ObjectMissing(key) => format!("no such file: {key}"),
            EdgeError::Origin { key, .. } => {
                format!("origin storage failed for {key}; try again shortly")
            }
            EdgeError::NotPublished(version) => format!("{version} is not a published version"),
            EdgeError::PublicationUnknown { version, .. } => {
                format!("could not check that {version} was published; try again")
            }
            // Which secret is wrong, and how, is for the operator's log: an anonymous caller
            // learns neither token lengths nor operator names.
            EdgeError::Misconfigured(e) => {
                format!("{} is misconfigured; see the worker's log", e.component())
            }
            EdgeError::Unauthorized => "unauthorized".into(),
            EdgeError::Forbidden(m) => format!("forbidden: {m}"),
            EdgeError::TooLarge(m) => format!("payload too large: {m}"),
            EdgeError::TooManyRequests(m) => format!("too many requests: {m}"),
            EdgeError::Conflict(m) => format!("conflict: {m}"),
        }
    }

    /// The header an error answer carries besides its body: `Allow` with a 405,
    /// `WWW-Authenticate` with a 401.
    pub fn extra_header(&self) -> Option<(&'static str, &'static str)> {
        match self {
            EdgeError::MethodNotAllowed(allow) => Some(("allow", allow)),
            EdgeError::Unauthorized => Some(("www-authenticate", "Bearer")),
            // The login limiter's period (wrangler.toml, LOGIN_LIMIT_PER_IP).
            EdgeError::TooManyRequests(_) => Some(("retry-after", "60")),
            _ => None,
        }
    }

    /// Detail for the log line (may include internals).
    pub fn log_detail(&self) -> String {
        match self {
            EdgeError::ConfigUnavailable { detail, .. }
            | EdgeError::Origin { detail, .. }
            | EdgeError::PublicationUnknown { detail, .. } => {
                format!("{}: {detail}", self.public_message())
            }
            EdgeError::Misconfigured(e) => e.to_string(),
            _ => self.public_message(),
        }
    }
}

impl std::fmt::Display for EdgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.public_message())
    }
}

impl std::error::Error for EdgeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_failure_table() {
        let cfg = ConfigError {
            field: "weight",
            message: "must be an integer".into(),
        };
        let cases = [
            (EdgeError::NoRollout("demo".into()), 404, "demo"),
            (
                EdgeError::ConfigInvalid {
                    bundle: "demo".into(),
                    error: cfg,
                },
                503,
                "weight",
            ),
            (
                EdgeError::ConfigUnavailable {
                    bundle: "demo".into(),
                    detail: "kv secret detail".into(),
                },
                503,
                "demo",
            ),
            (
                EdgeError::ObjectMissing("demo/1.0.0/x.js".into()),
                404,
                "x.js",
            ),
            (
                EdgeError::Origin {
                    key: "demo/1.0.0/x.js".into(),
                    detail: "r2 secret detail".into(),
                },
                502,
                "x.js",
            ),
            (EdgeError::BadRequest("dot segment".into()), 400, "dot"),
            (EdgeError::MethodNotAllowed("GET, HEAD"), 405, "GET, HEAD"),
            (EdgeError::Unauthorized, 401, "unauthorized"),
            (EdgeError::TooLarge("4096 bytes".into()), 413, "4096"),
            (EdgeError::TooManyRequests("logins".into()), 429, "logins"),
            (EdgeError::Conflict("no canary".into()), 409, "no canary"),
        ];
        for (err, status, needle) in cases {
            assert_eq!(err.status(), status, "{err:?}");
            let body = err.public_message();
            assert!(body.contains(needle), "{body}");
            assert!(
                !body.contains("secret detail"),
                "internal detail leaked: {body}"
            );
        }
    }

    #[test]
    fn misconfiguration_is_named_in_the_log_only() {
        use crate::settings::{SECRET_ADMIN_TOKEN, SECRET_OPERATOR_TOKENS};
        for (var, message, public) in [
            (
                SECRET_ADMIN_TOKEN,
                "is 15 characters; at least 32 are required",
                "the admin API is misconfigured; see the worker's log",
            ),
            (
                SECRET_OPERATOR_TOKENS,
                "operator \"alice\" is listed twice",
                "the admin API is misconfigured; see the worker's log",
            ),
            (
                "COHORTS",
                "must be 1-1000",
                "the worker is misconfigured; see the worker's log",
            ),
        ] {
            let e = EdgeError::Misconfigured(SettingsError {
                var,
                message: message.into(),
            });
            assert_eq!(e.status(), 503);
            let body = e.public_message();
            assert!(body.ends_with(public), "{body}");
            for secret in [var, message, "15", "alice"] {
                assert!(!body.contains(secret), "{secret} in {body}");
            }
            let log = e.log_detail();
            assert!(log.contains(var) && log.contains(message), "{log}");
        }
    }
}
