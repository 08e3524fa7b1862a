//! The console sessions' revocations in KV (`canary_core::ops::revocation`): listed at most
//! once per `CONFIG_TTL_MS` per isolate (generations first, each prefix its own listing),
//! and written by logouts.

use std::rc::Rc;
use std::time::Duration;

use serde_json::json;
use worker::kv::{Key, KvStore};
use worker::{Delay, Env};

use super::{brief, log_event, now_ms, Failure, Isolate, KV_BINDING};
use canary_core::error::EdgeError;
use canary_core::ops::revocation::{self, Listed, Revocations, Write};
use canary_core::ops::session::Session;

/// Pages (of up to 1,000 keys) read of each prefix per listing. Generations are a few keys;
/// logged-out sessions at most `MAX_SESSION_KEYS_PER_OPERATOR` per operator. Past these, the
/// sessions the listing did not reach are refused.
const NOT_BEFORE_PAGES: usize = 5;
const SESSION_PAGES: usize = 10;
/// KV takes one write per second per key: an operator's not-before written twice within a
/// second is retried once after this.
const RETRY_MS: u64 = 1_100;

/// The revocations as this isolate knows them: listed from KV when older than the config
/// TTL. A failed listing keeps the last copy; with none, sessions are refused (503) rather
/// than trusted unchecked.
pub(super) async fn current(env: &Env, iso: &Isolate) -> Result<Rc<Revocations>, Failure> {
    let now = now_ms();
    if let Some((known, at)) = iso.revocations.borrow().as_ref() {
        if now - at < iso.edge().settings.config_ttl_ms as f64 {
            return Ok(known.clone());
        }
    }
    match list(env, now).await {
        Ok(fresh) => {
            if fresh.truncated() {
                log_event(
                    "revocations_truncated",
                    json!({ "keys": fresh.len(), "detail": "sessions past the listing are refused" }),
                );
            }
            let fresh = Rc::new(fresh);
            *iso.revocations.borrow_mut() = Some((fresh.clone(), now));
            Ok(fresh)
        }
        Err(detail) => {
            log_event("revocations_unreadable", json!({ "detail": detail }));
            match iso.revocations.borrow().as_ref() {
                Some((known, _)) => Ok(known.clone()),
                None => Err(unavailable(detail)),
            }
        }
    }
}

fn unavailable(detail: String) -> Failure {
    EdgeError::ConfigUnavailable {
        bundle: "(console sessions)".into(),
        detail,
    }
    .into()
}

/// Both prefixes, generations first.
async fn list(env: &Env, now: f64) -> Result<Revocations, String> {
    let kv = env.kv(KV_BINDING).map_err(brief)?;
    let (not_before, not_before_complete) =
        pages(&kv, revocation::NOT_BEFORE_PREFIX, NOT_BEFORE_PAGES).await?;
    let (sessions, sessions_complete) =
        pages(&kv, revocation::REVOKED_PREFIX, SESSION_PAGES).await?;
    Ok(Revocations::from_listings(
        &listed(&not_before),
        not_before_complete,
        &listed(&sessions),
        sessions_complete,
        (now / 1000.0) as u64,
    ))
}

fn listed(keys: &[Key]) -> Vec<Listed<'_>> {
    keys.iter()
        .map(|k| Listed {
            name: &k.name,
            expiration: k.expiration,
            ms: k
                .metadata
                .as_ref()
                .and_then(|m| m.get("ms"))
                .and_then(|ms| ms.as_u64()),
        })
        .collect()
}

/// Up to `max` pages of `prefix`, and whether that was all of it.
async fn pages(kv: &KvStore, prefix: &str, max: usize) -> Result<(Vec<Key>, bool), String> {
    let mut keys = Vec::new();
    let mut cursor = None;
    for _ in 0..max {
        let mut list = kv.list().prefix(prefix.to_owned());
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await.map_err(brief)?;
        keys.extend(page.keys);
        match (page.list_complete, page.cursor) {
            (true, _) => return Ok((keys, true)),
            (false, Some(c)) => cursor = Some(c),
            // Incomplete without a way on: vouch only for what came.
            (false, None) => return Ok((keys, false)),
        }
    }
    Ok((keys, false))
}

/// Logs out one session: its own key, or past the operator's bound its not-before.
pub(super) async fn revoke_session(env: &Env, iso: &Isolate, s: &Session) -> Result<(), Failure> {
    let known = current(env, iso).await?;
    let write = known.logout(&s.principal.name, &s.id, s.expires_unix, now_ms() as u64);
    put(env, &write, "the logout").await?;
    record(iso, &write);
    Ok(())
}

/// Ends every session issued until now ("log out everywhere"); returns that time.
pub(super) async fn revoke_all_sessions(env: &Env, iso: &Isolate) -> Result<u64, Failure> {
    let now = now_ms() as u64;
    let write = Revocations::everywhere(now);
    put(env, &write, "the revocation").await?;
    record(iso, &write);
    Ok(now)
}

async fn put(env: &Env, write: &Write, what: &str) -> Result<(), Failure> {
    let kv = env.kv(KV_BINDING)?;
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            Delay::from(Duration::from_millis(RETRY_MS)).await;
        }
        let outcome = async {
            let mut put = kv.put(&write.key, "").map_err(brief)?;
            if let Some(ms) = write.ms {
                put = put.metadata(json!({ "ms": ms })).map_err(brief)?;
            }
            put.expiration(write.expiration)
                .execute()
                .await
                .map_err(brief)
        }
        .await;
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(unavailable(format!("{what} could not be recorded: {last}")))
}

/// A write this isolate made holds here at once; other isolates see it at their next
/// listing.
fn record(iso: &Isolate, write: &Write) {
    let mut slot = iso.revocations.borrow_mut();
    let (known, at) = slot.take().unwrap_or_default();
    let mut copy = (*known).clone();
    copy.record(write, now_ms() as u64 / 1000);
    *slot = Some((Rc::new(copy), at));
}
