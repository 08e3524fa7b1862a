//! Revoked console sessions, as KV keeps them and the edge checks them.
//!
//! Logout must end a session on the server, not only in the browser, without a KV or
//! Durable Object read on every console poll. So each revocation is a KV key, and an
//! isolate lists them (names and metadata, no value reads) at most once per
//! `CONFIG_TTL_MS`, like a rollout config. Two prefixes, listed in this order, each its own
//! listing:
//!
//! 1. [`NOT_BEFORE_PREFIX`]: generations, few and decisive, so nothing can crowd them out:
//!    - `auth/not-before/all/<16 hex of u64::MAX - ms>`: "log out everywhere" voids every
//!      session issued before `ms`. One key per revocation (KV takes one write per second
//!      per key), named so that the newest sorts first;
//!    - `auth/not-before/op/<name>`: every session of operator `name` issued before the
//!      `ms` in its metadata (`{"ms": n}`); one key per operator, overwritten.
//! 2. [`REVOKED_PREFIX`]: `auth/revoked/<name>/<id>`, one logged-out session, until the
//!    operator has [`MAX_SESSION_KEYS_PER_OPERATOR`] of them: past that, a logout moves the
//!    operator's not-before instead (ending its other sessions too), so the state stays
//!    bounded by the operators, not by the logouts.
//!
//! Every key expires with the last session it voids, so expired keys are never listed (and
//! one listed past its expiration is skipped). A listing cut short (more pages than an
//! isolate reads) vouches only for the keys it reached: KV lists in key order, so a session
//! whose keys would sort after the last key listed is refused, never trusted unchecked.
//!
//! Before sessions named their operator, the keys were `auth/revoked-session/<id>` and
//! `auth/sessions-not-before/<ms>`; they revoke only `v2` sessions, which no longer verify
//! (`crate::ops::session`), so they are not read, and expire within 8 hours.

use std::collections::{BTreeMap, BTreeSet};

use crate::ops::session::SESSION_SECS;

/// Generations: listed first, on their own.
pub const NOT_BEFORE_PREFIX: &str = "auth/not-before/";
/// One key per logged-out session.
pub const REVOKED_PREFIX: &str = "auth/revoked/";
const ALL_PREFIX: &str = "auth/not-before/all/";
const OPERATOR_PREFIX: &str = "auth/not-before/op/";
/// Logged-out sessions kept one key each per operator; past this, its not-before moves.
pub const MAX_SESSION_KEYS_PER_OPERATOR: usize = 32;
/// KV wants an expiration at least 60 s ahead.
const MIN_EXPIRY_AHEAD_SECS: u64 = 120;

/// The key of a "log out everywhere" at `ms`: newer ones sort first.
pub fn everywhere_key(ms: u64) -> String {
    format!("{ALL_PREFIX}{:016x}", u64::MAX - ms)
}

/// The key of operator `name`'s not-before.
pub fn operator_key(name: &str) -> String {
    format!("{OPERATOR_PREFIX}{name}")
}

/// The key that revokes session `id` of operator `name`.
pub fn session_key(name: &str, id: &str) -> String {
    format!("{REVOKED_PREFIX}{name}/{id}")
}

/// One key of a listing: its name, its expiration (Unix seconds) and, for an operator's
/// not-before, the `ms` of its metadata (`None` when absent or unreadable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed<'a> {
    pub name: &'a str,
    pub expiration: Option<u64>,
    pub ms: Option<u64>,
}

impl<'a> Listed<'a> {
    pub fn named(name: &'a str) -> Self {
        Self {
            name,
            expiration: None,
            ms: None,
        }
    }
}

/// A KV write that records a revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: String,
    /// Unix seconds: when every session it voids has expired anyway.
    pub expiration: u64,
    /// The metadata's `ms` (an operator's not-before), else none.
    pub ms: Option<u64>,
}

/// What the revocations say of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Valid,
    Revoked,
    /// A listing was cut short before the keys that would say: refused.
    Unvouched,
}

/// What is revoked, as one isolate last listed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    everywhere_ms: u64,
    operators: BTreeMap<String, u64>,
    /// `session_key`s.
    sessions: BTreeSet<String>,
    /// Logged-out sessions per operator (what decides the next logout's write).
    per_operator: BTreeMap<String, usize>,
    /// The last key of a listing that was cut short: keys after it are unknown.
    not_before_cut: Option<String>,
    sessions_cut: Option<String>,
}

/// The last key of a listing cut short (`""` when it reached none), or `None` when complete.
fn cut(keys: &[Listed<'_>], complete: bool) -> Option<String> {
    (!complete).then(|| keys.last().map_or(String::new(), |k| k.name.to_owned()))
}

impl Revocations {
    /// From the two listings (each with whether it was complete) at `now_unix`. Unknown
    /// keys are skipped (a newer edge may write more kinds); an operator's not-before
    /// without a readable `ms` voids all of its sessions (what it voids is unknown).
    pub fn from_listings(
        not_before: &[Listed<'_>],
        not_before_complete: bool,
        sessions: &[Listed<'_>],
        sessions_complete: bool,
        now_unix: u64,
    ) -> Self {
        let live = |k: &&Listed<'_>| k.expiration.is_none_or(|e| e > now_unix);
        let mut out = Self {
            not_before_cut: cut(not_before, not_before_complete),
            sessions_cut: cut(sessions, sessions_complete),
            ..Self::default()
        };
        for key in not_before.iter().filter(live) {
            if let Some(rest) = key.name.strip_prefix(ALL_PREFIX) {
                if let Ok(reversed) = u64::from_str_radix(rest, 16) {
                    if rest.len() == 16 {
                        out.everywhere_ms = out.everywhere_ms.max(u64::MAX - reversed);
                    }
                }
            } else if let Some(name) = key.name.strip_prefix(OPERATOR_PREFIX) {
                let ms = key.ms.unwrap_or(u64::MAX);
                let slot = out.operators.entry(name.to_owned()).or_default();
                *slot = (*slot).max(ms);
            }
        }
        for key in sessions.iter().filter(live) {
            let Some((name, _id)) = key
                .name
                .strip_prefix(REVOKED_PREFIX)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if out.sessions.insert(key.name.to_owned()) {
                *out.per_operator.entry(name.to_owned()).or_default() += 1;
            }
        }
        out
    }

    /// Whether session `id` of operator `name`, issued at `issued_ms`, may still be used.
    pub fn standing(&self, name: &str, id: &str, issued_ms: u64) -> Standing {
        let operator_not_before = self.operators.get(name).copied().unwrap_or(0);
        let key = session_key(name, id);
        if issued_ms < self.everywhere_ms
            || issued_ms < operator_not_before
            || self.sessions.contains(&key)
        {
            return Standing::Revoked;
        }
        // Listed in key order: a key after the cut was not reached. The newest "everywhere"
        // is the first key after `ALL_PREFIX`, so it is known once the cut is past that.
        let unreached = |cut: &Option<String>, key: &str| cut.as_deref().is_some_and(|c| key > c);
        if unreached(&self.not_before_cut, ALL_PREFIX)
            || unreached(&self.not_before_cut, &operator_key(name))
            || unreached(&self.sessions_cut, &key)
        {
            return Standing::Unvouched;
        }
        Standing::Valid
    }

    /// The write that logs out session `id` of `name` (expiring at `expires_unix`) at
    /// `now_ms`: its own key, or, once the operator has
    /// [`MAX_SESSION_KEYS_PER_OPERATOR`] of them, the operator's not-before.
    pub fn logout(&self, name: &str, id: &str, expires_unix: u64, now_ms: u64) -> Write {
        let now_unix = now_ms / 1000;
        let kept = self.per_operator.get(name).copied().unwrap_or(0);
        if kept < MAX_SESSION_KEYS_PER_OPERATOR {
            return Write {
                key: session_key(name, id),
                expiration: expires_unix.max(now_unix + MIN_EXPIRY_AHEAD_SECS),
                ms: None,
            };
        }
        let known = self.operators.get(name).copied().unwrap_or(0);
        Write {
            key: operator_key(name),
            expiration: now_unix + SESSION_SECS + MIN_EXPIRY_AHEAD_SECS,
            // Never back: the key is overwritten, and an earlier one may be newer.
            ms: Some(now_ms.max(known)),
        }
    }

    /// The write that ends every session issued before `now_ms` ("log out everywhere").
    pub fn everywhere(now_ms: u64) -> Write {
        Write {
            key: everywhere_key(now_ms),
            expiration: now_ms / 1000 + SESSION_SECS + MIN_EXPIRY_AHEAD_SECS,
            ms: None,
        }
    }

    /// Records a write this isolate just made, so that it holds here at once (other
    /// isolates see it at their next listing).
    pub fn record(&mut self, write: &Write, now_unix: u64) {
        let listed = Listed {
            name: &write.key,
            expiration: Some(write.expiration),
            ms: write.ms,
        };
        let (not_before, sessions): (&[Listed<'_>], &[Listed<'_>]) =
            if write.key.starts_with(NOT_BEFORE_PREFIX) {
                (&[listed], &[])
            } else {
                (&[], &[listed])
            };
        let one = Self::from_listings(not_before, true, sessions, true, now_unix);
        self.everywhere_ms = self.everywhere_ms.max(one.everywhere_ms);
        for (name, ms) in one.operators {
            let slot = self.operators.entry(name).or_default();
            *slot = (*slot).max(ms);
        }
        for key in one.sessions {
            if let Some(name) = key
                .strip_prefix(REVOKED_PREFIX)
                .and_then(|rest| rest.split_once('/'))
                .map(|(name, _)| name.to_owned())
            {
                if self.sessions.insert(key) {
                    *self.per_operator.entry(name).or_default() += 1;
                }
            }
        }
    }

    /// Whether a listing was cut short (logged: some sessions are refused unvouched).
    pub fn truncated(&self) -> bool {
        self.not_before_cut.is_some() || self.sessions_cut.is_some()
    }

    /// How many keys this copy holds (listed and recorded).
    pub fn len(&self) -> usize {
        usize::from(self.everywhere_ms > 0) + self.operators.len() + self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;
    const NOW: u64 = NOW_MS / 1000;
    const ID1: &str = "11111111111111111111111111111111";
    const ID2: &str = "22222222222222222222222222222222";
    const ID9: &str = "99999999999999999999999999999999";

    fn listed(names: &[String]) -> Vec<Listed<'_>> {
        names.iter().map(|n| Listed::named(n)).collect()
    }

    #[test]
    fn keys_sort_as_the_listing_needs() {
        // The newest "everywhere" first; generations before sessions' keys are irrelevant
        // (their own listing), but "all" sorts before any operator.
        assert!(everywhere_key(5_000) < everywhere_key(4_000));
        assert!(everywhere_key(u64::MAX) < operator_key("a"));
        assert!(everywhere_key(0) < operator_key("-"));
        assert!(everywhere_key(0).starts_with(NOT_BEFORE_PREFIX));
        assert!(operator_key("alice").starts_with(NOT_BEFORE_PREFIX));
        assert!(session_key("alice", ID1).starts_with(REVOKED_PREFIX));
        assert!(!"auth/revoked-session/x".starts_with(REVOKED_PREFIX));
        assert!(!"auth/sessions-not-before/1".starts_with(NOT_BEFORE_PREFIX));
    }

    #[test]
    fn a_listing_revokes_sessions_operators_and_generations() {
        let not_before = [
            everywhere_key(5_000),
            everywhere_key(4_000),
            format!("{ALL_PREFIX}soon"),
            "auth/not-before/something-newer".to_owned(),
        ];
        let mut nb = listed(&not_before);
        nb.push(Listed {
            name: "auth/not-before/op/bob",
            expiration: Some(NOW + 10),
            ms: Some(7_000),
        });
        nb.push(Listed {
            name: "auth/not-before/op/carol",
            expiration: None,
            ms: None,
        });
        nb.push(Listed {
            name: "auth/not-before/op/dave",
            expiration: Some(NOW),
            ms: Some(u64::MAX),
        });
        let sessions = [
            session_key("alice", ID1),
            "auth/revoked/no-id".to_owned(),
            "auth/revoked-session/x".to_owned(),
        ];
        let r = Revocations::from_listings(&nb, true, &listed(&sessions), true, NOW);
        use Standing::*;
        for (name, id, issued, expected) in [
            ("alice", ID1, 9_000, Revoked),
            ("alice", ID2, 9_000, Valid),
            ("alice", ID2, 4_999, Revoked),
            ("alice", ID2, 5_000, Valid),
            ("bob", ID2, 6_999, Revoked),
            ("bob", ID2, 7_000, Valid),
            ("carol", ID2, NOW_MS, Revoked),
            ("dave", ID2, 6_000, Valid),
        ] {
            assert_eq!(
                r.standing(name, id, issued),
                expected,
                "{name} {id} {issued}"
            );
        }
        assert!(!r.truncated());
        let skipped = Revocations::from_listings(
            &listed(&[format!("{ALL_PREFIX}x"), "rollout/demo".to_owned()]),
            true,
            &[],
            true,
            NOW,
        );
        assert_eq!(skipped, Revocations::default());
    }

    #[test]
    fn a_listing_cut_short_refuses_what_it_did_not_reach() {
        use Standing::*;
        // 10,000 logouts of one operator, listed 1,000 a page for 10 pages: cut after
        // 10,000 keys, with more to come.
        let ids: Vec<String> = (0..10_000u32).map(|i| format!("{i:032x}")).collect();
        let keys: Vec<String> = ids.iter().map(|id| session_key("mallory", id)).collect();
        let everywhere = [everywhere_key(NOW_MS - 1_000)];
        let r = Revocations::from_listings(&listed(&everywhere), true, &listed(&keys), false, NOW);
        assert!(r.truncated());
        // The "log out everywhere" was listed first, on its own: every older session ends.
        for name in ["alice", "mallory", "zed"] {
            assert_eq!(r.standing(name, ID9, NOW_MS - 2_000), Revoked, "{name}");
        }
        // Newer sessions: vouched for only up to the cut.
        for (name, id, expected) in [
            ("alice", ID9, Valid),
            ("mallory", &ids[5] as &str, Revoked),
            ("mallory", "00000000000000000000000000000000", Revoked),
            ("mallory", "0000000000000000000000000000ffff", Unvouched),
            ("zed", ID9, Unvouched),
        ] {
            assert_eq!(r.standing(name, id, NOW_MS), expected, "{name} {id}");
        }
        // Generations cut short: the newest "everywhere" is first, so known once reached;
        // operators after the cut are not.
        let nb = [
            everywhere_key(NOW_MS - 1_000),
            everywhere_key(NOW_MS - 2_000),
        ];
        let r = Revocations::from_listings(&listed(&nb), false, &[], true, NOW);
        assert_eq!(r.standing("alice", ID1, NOW_MS - 1_500), Revoked);
        assert_eq!(r.standing("alice", ID1, NOW_MS), Unvouched);
        let nothing = Revocations::from_listings(&[], false, &[], true, NOW);
        assert_eq!(nothing.standing("alice", ID1, NOW_MS), Unvouched);
        let op_nb = [operator_key("bob")];
        let r = Revocations::from_listings(&listed(&op_nb), false, &[], true, NOW);
        assert_eq!(
            r.standing("alice", ID1, 1),
            Valid,
            "alice sorts before the cut"
        );
        assert_eq!(r.standing("bob", ID1, NOW_MS), Revoked, "no readable ms");
        assert_eq!(r.standing("carol", ID1, NOW_MS), Unvouched);
    }

    #[test]
    fn logouts_are_bounded_per_operator() {
        let mut r = Revocations::default();
        let mut writes = Vec::new();
        for i in 0..(MAX_SESSION_KEYS_PER_OPERATOR + 3) {
            let id = format!("{i:032x}");
            let w = r.logout("alice", &id, NOW + 3600, NOW_MS + i as u64);
            r.record(&w, NOW);
            assert_eq!(r.standing("alice", &id, NOW_MS), Standing::Revoked, "{i}");
            writes.push(w);
        }
        let (own, operator): (Vec<&Write>, Vec<&Write>) = writes
            .iter()
            .partition(|w| w.key.starts_with(REVOKED_PREFIX));
        assert_eq!(own.len(), MAX_SESSION_KEYS_PER_OPERATOR);
        assert_eq!(operator.len(), 3);
        assert!(operator.iter().all(|w| w.key == operator_key("alice")));
        assert_eq!(own[0].expiration, NOW + 3600, "with the session");
        assert_eq!(
            operator[2].expiration,
            NOW + SESSION_SECS + MIN_EXPIRY_AHEAD_SECS,
            "with every session it voids"
        );
        // The operator's not-before ends its other sessions, and nobody else's.
        let later = NOW_MS + 100;
        assert_eq!(r.standing("alice", ID9, NOW_MS), Standing::Revoked);
        assert_eq!(r.standing("alice", ID9, later), Standing::Valid);
        assert_eq!(r.standing("bob", ID9, NOW_MS), Standing::Valid);
        // 10,000 logouts: the state is bounded by the operators, not the logouts.
        for i in 0..10_000u64 {
            let w = r.logout("alice", &format!("{i:032x}"), NOW + 3600, NOW_MS + i);
            r.record(&w, NOW);
        }
        assert_eq!(r.len(), MAX_SESSION_KEYS_PER_OPERATOR + 1);
        // A not-before never goes back, even from a slower clock.
        let back = r.logout("alice", ID1, NOW + 3600, NOW_MS);
        assert!(back.ms >= Some(NOW_MS + 9_999));
        // The keys a logout expires soon after are still at least 2 minutes ahead.
        let soon = Revocations::default().logout("bob", ID1, NOW, NOW_MS);
        assert_eq!(soon.expiration, NOW + MIN_EXPIRY_AHEAD_SECS);
    }

    #[test]
    fn log_out_everywhere_holds_at_once_and_never_goes_back() {
        let mut r = Revocations::default();
        assert_eq!(r.standing("x", ID1, 1), Standing::Valid);
        r.record(&Revocations::everywhere(NOW_MS + 100), NOW);
        r.record(&Revocations::everywhere(NOW_MS + 50), NOW);
        assert_eq!(r.standing("x", ID1, NOW_MS + 99), Standing::Revoked);
        assert_eq!(r.standing("x", ID1, NOW_MS + 100), Standing::Valid);
        let w = Revocations::everywhere(NOW_MS);
        assert_eq!(w.expiration, NOW + SESSION_SECS + MIN_EXPIRY_AHEAD_SECS);
        assert!(w.key.starts_with(NOT_BEFORE_PREFIX));
    }
}
