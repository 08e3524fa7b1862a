//! Revoked console sessions, as KV keeps them and the edge checks them.
//!
//! Logout must end a session on the server, not only in the browser, without a KV or
//! Durable Object read on every console poll. So each revocation is a KV key under
//! [`KV_PREFIX`], and an isolate reads them all with one `list` (names and metadata, no
//! value reads) at most once per `CONFIG_TTL_MS`, like a rollout config:
//!
//! - `auth/revoked-session/<id>`: one logged-out session, expiring with the session, so
//!   the list never outgrows the sessions alive (one key per logout: two logouts at once
//!   cannot overwrite each other);
//! - `auth/sessions-not-before/<ms>`: "log out everywhere", the generation of sessions:
//!   every session issued before `ms` is void. One key per revocation (KV takes one write
//!   per second per key), expiring when every session it voids has expired anyway.

use std::collections::BTreeSet;

/// Every key of this module starts with this (never a `rollout/` key).
pub const KV_PREFIX: &str = "auth/";
const REVOKED_SESSION_PREFIX: &str = "auth/revoked-session/";
const SESSIONS_NOT_BEFORE_PREFIX: &str = "auth/sessions-not-before/";

/// The KV key that revokes session `id`.
pub fn revoked_session_key(id: &str) -> String {
    format!("{REVOKED_SESSION_PREFIX}{id}")
}

/// The KV key that voids every session issued before `ms`.
pub fn sessions_not_before_key(ms: u64) -> String {
    format!("{SESSIONS_NOT_BEFORE_PREFIX}{ms}")
}

/// What is revoked, as one isolate last read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    sessions_not_before_ms: u64,
    sessions: BTreeSet<String>,
}

impl Revocations {
    /// From the key names of a listing of [`KV_PREFIX`]. Unknown keys are skipped (a newer
    /// edge may write more kinds).
    pub fn from_listing<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self::default();
        for name in names {
            if let Some(id) = name.strip_prefix(REVOKED_SESSION_PREFIX) {
                out.sessions.insert(id.to_owned());
            } else if let Some(ms) = name
                .strip_prefix(SESSIONS_NOT_BEFORE_PREFIX)
                .and_then(|ms| ms.parse::<u64>().ok())
            {
                out.sessions_not_before_ms = out.sessions_not_before_ms.max(ms);
            }
        }
        out
    }

    /// Whether the session `id`, issued at `issued_ms`, was logged out or predates the
    /// last "log out everywhere".
    pub fn session_revoked(&self, id: &str, issued_ms: u64) -> bool {
        issued_ms < self.sessions_not_before_ms || self.sessions.contains(id)
    }

    /// Records a revocation this isolate just wrote, so it holds here at once (other
    /// isolates see it at their next listing).
    pub fn revoke_session(&mut self, id: &str) {
        self.sessions.insert(id.to_owned());
    }

    pub fn revoke_all_sessions(&mut self, now_ms: u64) {
        self.sessions_not_before_ms = self.sessions_not_before_ms.max(now_ms);
    }

    pub fn sessions_not_before_ms(&self) -> u64 {
        self.sessions_not_before_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_revokes_named_sessions_and_older_generations() {
        let key = revoked_session_key("ab12");
        let (older, newer) = (
            sessions_not_before_key(4_000),
            sessions_not_before_key(5_000),
        );
        let r = Revocations::from_listing([
            key.as_str(),
            newer.as_str(),
            older.as_str(),
            "auth/sessions-not-before/soon",
            "auth/something-newer",
        ]);
        for (id, issued, revoked) in [
            ("ab12", 9_000, true),
            ("cd34", 9_000, false),
            ("cd34", 4_999, true),
            ("cd34", 5_000, false),
        ] {
            assert_eq!(r.session_revoked(id, issued), revoked, "{id} {issued}");
        }
        let skipped = Revocations::from_listing(["auth/sessions-not-before/x", "rollout/demo"]);
        assert_eq!(skipped, Revocations::default());
    }

    #[test]
    fn local_revocations_hold_at_once_and_never_go_back() {
        let mut r = Revocations::default();
        assert!(!r.session_revoked("x", 1));
        r.revoke_session("x");
        assert!(r.session_revoked("x", u64::MAX));
        r.revoke_all_sessions(100);
        r.revoke_all_sessions(50);
        assert_eq!(r.sessions_not_before_ms(), 100);
        assert!(r.session_revoked("y", 99));
    }
}
