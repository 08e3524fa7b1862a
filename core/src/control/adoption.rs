//! KV reads: what KV holds is compared with the control plane's own writes. A stale read
//! of its own is ignored (it never undoes a newer write); anything else was written by
//! someone else and is adopted: the operator wins.
//!
//! One stale-looking read is adopted: a raw text (no `revision`, so not one of our own
//! writes, but one we adopted before, such as the seed) that serves fewer canary cohorts of
//! the same canary than what we hold. An operator writing the seed's exact bytes back (a
//! rollback) and a location still caching the seed look alike; the lower exposure wins the
//! ambiguity, as at the edge (an isolate's `rollouts`). The price: a lagging read of the seed
//! during a ramp pauses the rollout at the seed's weight (Workers KV shows a write at once
//! where it was made, so the object's own reads rarely lag behind its writes).

use serde_json::json;

use super::machine::{Control, Out};
use super::progress::ProgressState;
use super::projection::Provenance;
use super::writes::Record;
use crate::config::Rollout;
use crate::kv::{exposure, KvRead};

impl Control {
    pub(super) fn observe_kv(&mut self, read: KvRead, now_ms: f64, out: &mut Out) {
        self.last_kv_read_ms = Some(now_ms);
        let bundle = self.bundle.as_str().to_owned();
        match read {
            KvRead::Failed(detail) => {
                out.log(
                    "kv_read_failed",
                    json!({ "bundle": bundle, "detail": detail }),
                );
            }
            KvRead::Missing => {
                if self.config.is_none() {
                    return;
                }
                let own_recent =
                    self.kv.own_writes.last().is_some_and(|w| {
                        now_ms - w.written_ms < super::projection::STALE_HORIZON_MS
                    }) && self.kv.own_writes.len() == 1;
                if own_recent {
                    // Our first write has not reached this KV location yet.
                    out.log(
                        "kv_stale_read_ignored",
                        json!({ "bundle": bundle, "read": "missing" }),
                    );
                    return;
                }
                self.adopt(None, None, now_ms, out);
            }
            KvRead::Value(text) => {
                let observed = match Rollout::parse(&text) {
                    Ok(r) => r,
                    Err(e) => {
                        // The edge keeps its last good config; so does the control plane.
                        out.log(
                            "config_invalid_in_kv",
                            json!({ "bundle": bundle, "field": e.field, "detail": e.to_string() }),
                        );
                        return;
                    }
                };
                let revision = observed.revision;
                let mut content = observed;
                content.revision = None;
                if self.config.as_ref() == Some(&content) {
                    return;
                }
                let mut provenance = self.kv.provenance(&text, now_ms);
                if provenance == Provenance::Stale && self.lowers_exposure(&content, revision) {
                    // A raw text (no revision: never one of our own writes) we adopted
                    // before: a lagging read of it and an operator writing those bytes again
                    // (a rollback to the seed's text) look alike. The lower exposure wins,
                    // as at the edge (an isolate's `rollouts`): adopted.
                    provenance = Provenance::Foreign;
                }
                match provenance {
                    Provenance::Current => {}
                    Provenance::Stale => out.log(
                        "kv_stale_read_ignored",
                        json!({ "bundle": bundle, "read_revision": revision, "revision": self.kv.revision }),
                    ),
                    Provenance::Foreign => {
                        self.kv
                            .record_adopted(revision, &text, now_ms);
                        self.adopt(Some(content), revision, now_ms, out)
                    }
                }
            }
        }
    }

    /// Adopts a config written to KV by someone else: the operator wins. A rollout pauses
    /// when the weight moved under it, and ends when the canary changed.
    fn adopt(
        &mut self,
        config: Option<Rollout>,
        revision: Option<u64>,
        now_ms: f64,
        out: &mut Out,
    ) {
        let before = self.config.take();
        let first = before.is_none() && self.history.entries.is_empty();
        self.kv.revision = self.kv.revision.max(revision.unwrap_or(0));
        let canary_now = config.as_ref().and_then(|c| c.canary.clone());
        if let Some(p) = self.progress.as_mut() {
            if p.state.is_active() {
                let (state, event, reason) = if Some(&p.canary) != canary_now.as_ref() {
                    (
                        ProgressState::Superseded,
                        "rollout_superseded",
                        format!(
                            "the canary changed from {} to {} by a write to KV",
                            p.canary,
                            canary_now.as_ref().map_or("none".into(), |v| v.to_string())
                        ),
                    )
                } else {
                    (
                        ProgressState::Paused,
                        "rollout_paused",
                        "an operator wrote the config to KV".to_owned(),
                    )
                };
                p.end_or_pause(state, reason.clone());
                out.log(
                    event,
                    json!({ "bundle": self.bundle.as_str(), "rollout_canary": p.canary, "canary": canary_now, "reason": reason }),
                );
            }
        }
        let starts_step = before.as_ref().map(|c| c.weight) != config.as_ref().map(|c| c.weight);
        // `policy()` reads the config: put the one the step ran on back for the comparison.
        self.config = before.clone();
        self.replace_config(config, starts_step);
        if first {
            return;
        }
        let reason = format!(
            "adopted a config written to KV by someone else: {} -> {}",
            versions(before.as_ref()),
            versions(self.config.as_ref())
        );
        let record = Record::new("kv_adopted", "kv", reason).log(
            "kv_adopted",
            json!({ "bundle": self.bundle.as_str(), "before": versions(before.as_ref()), "after": versions(self.config.as_ref()) }),
        );
        let weight = self.config.as_ref().map(|c| c.weight);
        self.record(record, canary_now.as_ref(), weight, now_ms, out);
    }
}

impl Control {
    /// Whether a KV value (`content`, carrying `revision`) is a raw text serving fewer
    /// canary cohorts of the same canary than the config held: the one kind of stale-looking
    /// read that is adopted (the module's doc). A different canary is not (a location still
    /// caching the value read before a publish must not undo the publish).
    fn lowers_exposure(&self, content: &Rollout, revision: Option<u64>) -> bool {
        let Some(held) = self.config.as_ref() else {
            return false;
        };
        revision.is_none()
            && content
                .canary
                .as_ref()
                .is_none_or(|c| Some(c) == held.canary.as_ref())
            && exposure(content) < exposure(held)
    }
}

fn versions(config: Option<&Rollout>) -> serde_json::Value {
    match config {
        Some(c) => json!({ "stable": c.stable, "canary": c.canary, "weight": c.weight }),
        None => json!(null),
    }
}
