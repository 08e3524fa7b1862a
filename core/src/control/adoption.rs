//! KV reads: what KV holds is compared with the control plane's own writes. A stale read
//! of its own is ignored (it never undoes a newer write); anything else was written by
//! someone else and is adopted: the operator wins.
//!
//! An adopted config gets a revision above every one the control plane wrote or adopted
//! before ([`adopted_revision`]), though its text in KV carries none (or the operator's
//! own): the edge takes a pushed config only above the highest revision it has seen
//! (`crate::rollouts`), so the operator's write, once adopted, reaches isolates that hold
//! a newer-numbered config of the control plane's, and the control plane's next write
//! outranks it.

use serde_json::json;

use super::machine::{Control, Out};
use super::progress::ProgressState;
use super::projection::Provenance;
use super::writes::Record;
use crate::config::Rollout;
use crate::rollouts::KvRead;

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
                match self.kv.provenance(&text, now_ms) {
                    Provenance::Current => {}
                    Provenance::Stale => out.log(
                        "kv_stale_read_ignored",
                        json!({ "bundle": bundle, "read_revision": revision, "revision": self.kv.revision }),
                    ),
                    Provenance::Foreign => {
                        let adopted = self.adopted_revision(revision);
                        self.kv.record_adopted(adopted, &text, now_ms);
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
        self.kv.revision = self.adopted_revision(revision);
        let before = self.config.take();
        let first = before.is_none() && self.history.entries.is_empty();
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
        if before.as_ref().map(|c| c.weight) != config.as_ref().map(|c| c.weight) {
            self.new_step();
        }
        self.config = config;
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
    /// The revision of a config adopted from KV, whose text carries `read` (an operator's
    /// raw write: none): above every revision held before, so that the edge takes it when
    /// pushed and the next write outranks it; the text's own when that is higher still.
    /// The first read of a control plane that holds nothing yet (the seed, or a control
    /// plane whose storage was lost) outranks nothing: it keeps what the text says (0 for a
    /// seed), and a control plane that started over goes on from KV's revision.
    pub(super) fn adopted_revision(&self, read: Option<u64>) -> u64 {
        let fresh = self.config.is_none() && self.history.entries.is_empty();
        let above = if fresh {
            self.kv.revision
        } else {
            self.kv.revision + 1
        };
        above.max(read.unwrap_or(0))
    }
}

fn versions(config: Option<&Rollout>) -> serde_json::Value {
    match config {
        Some(c) => json!({ "stable": c.stable, "canary": c.canary, "weight": c.weight }),
        None => json!(null),
    }
}

#[cfg(test)]
mod tests {
    use super::super::machine::{step, Event};
    use super::*;
    use crate::config::BundleName;

    const WRITTEN: &str = r#"{"stable":"1.0.0","canary":"1.1.0","weight":30,"revision":6}"#;

    /// A control plane that wrote revision 6 (`wrote`), or a fresh one.
    fn control(wrote: bool) -> Control {
        let mut c = Control::new(BundleName::parse("demo").unwrap(), 10);
        if wrote {
            let mut config = Rollout::parse(WRITTEN).unwrap();
            config.revision = None;
            c.config = Some(config);
            c.kv.record_write(5, "an older write", 0.0);
            c.kv.record_write(6, WRITTEN, 1_000.0);
        }
        c
    }

    #[test]
    fn an_adopted_config_outranks_everything_held_before() {
        // (what the control plane holds, what KV holds, the adopted revision, adopted?)
        let raw = r#"{"stable":"1.0.0","canary":"1.1.0","weight":0}"#;
        let copied = r#"{"stable":"1.0.0","canary":"1.1.0","weight":0,"revision":3}"#;
        let ahead = r#"{"stable":"1.0.0","canary":"1.1.0","weight":0,"revision":40}"#;
        let cases: &[(&str, bool, Option<&str>, u64, bool)] = &[
            (
                "a seed: nothing held, nothing to outrank",
                false,
                Some(raw),
                0,
                true,
            ),
            (
                "a control plane that started over goes on from KV's",
                false,
                Some(ahead),
                40,
                true,
            ),
            (
                "an operator's raw write, after writes up to 6",
                true,
                Some(raw),
                7,
                true,
            ),
            (
                "a raw write with an old revision copied along",
                true,
                Some(copied),
                7,
                true,
            ),
            (
                "a write carrying a revision above ours keeps it",
                true,
                Some(ahead),
                40,
                true,
            ),
            ("a deleted key", true, None, 7, true),
            (
                "our own write is not adopted",
                true,
                Some(WRITTEN),
                6,
                false,
            ),
        ];
        for &(name, wrote, kv, revision, adopted) in cases {
            let read = kv.map_or(KvRead::Missing, |t| KvRead::Value(t.into()));
            let (state, effects) = step(control(wrote), Event::KvRead(read), 10_000.0);
            assert_eq!(state.kv.revision, revision, "{name}");
            let logged = effects.iter().any(
                |e| matches!(e, super::super::machine::Effect::Log(l) if l.event == "kv_adopted"),
            );
            assert_eq!(logged, adopted && wrote, "{name}: logged as adopted");
            if let Some(text) = kv.filter(|_| adopted) {
                // Held under that revision, so that a lagging read of it is known as stale.
                let last = state.kv.own_writes.last().unwrap();
                assert_eq!(
                    (last.revision, &last.digest),
                    (revision, &super::super::projection::digest(text)),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn the_next_write_outranks_an_adopted_config() {
        let raw = r#"{"stable":"1.0.0","canary":"1.1.0","weight":0}"#;
        let (state, _) = step(
            control(true),
            Event::KvRead(KvRead::Value(raw.into())),
            10_000.0,
        );
        assert_eq!(state.kv.revision, 7);
        let (state, effects) = step(
            state,
            Event::Command(super::super::CommandRequest {
                command: crate::admin::Command::SetWeight(crate::config::Weight::new(20).unwrap()),
                expect_canary: None,
                by: "ops".into(),
            }),
            12_000.0,
        );
        assert!(effects.contains(&super::super::machine::Effect::ReadKv));
        let (_, effects) = step(state, Event::KvRead(KvRead::Value(raw.into())), 12_000.0);
        let written = effects.iter().find_map(|e| match e {
            super::super::machine::Effect::WriteConfig(w) => Some(w.revision),
            _ => None,
        });
        assert_eq!(written, Some(8));
    }
}
