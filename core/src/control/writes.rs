//! Changes to the config, in one shape: a [`Change`] carries everything a transition
//! decides (the config, the rollout, what to record, who asked, whether a step starts), so
//! no caller can forget a part. It is proposed (a `WriteConfig` effect), waits as
//! `inflight`, and is applied only once its KV write succeeded. A [`Record`] is the history
//! entry and the log lines of a transition, written together.

use serde_json::json;

use super::history::NewEntry;
use super::machine::{
    ConfigWrite, Control, Effect, Out, Pending, Reply, WriteOutcome, WRITE_ATTEMPTS,
};
use super::progress::Progress;
use crate::config::{Rollout, Version, Weight};
use crate::health::counts::ChannelCounts;
use crate::log::LogLine;

/// Who decided a change: an operator waits for the answer; the machine retries later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Command,
    Automatic,
}

/// What a transition leaves behind: one history entry and its log lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    kind: &'static str,
    by: String,
    reason: String,
    counts: Option<ChannelCounts>,
    logs: Vec<LogLine>,
}

impl Record {
    pub fn new(kind: &'static str, by: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind,
            by: by.into(),
            reason: reason.into(),
            counts: None,
            logs: Vec::new(),
        }
    }

    /// Adds a log line.
    pub fn log(mut self, event: &'static str, fields: serde_json::Value) -> Self {
        self.logs.push(LogLine { event, fields });
        self
    }

    /// The evidence behind the entry (a rollback's).
    pub fn counts(mut self, counts: ChannelCounts) -> Self {
        self.counts = Some(counts);
        self
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// A decided change of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub config: Rollout,
    pub progress: Option<Progress>,
    pub record: Record,
    pub origin: Origin,
    /// The change starts a step (a rollout's start or next step, a resume that writes the
    /// step's weight, a new weight): the step's evidence starts afresh once applied.
    pub new_step: bool,
}

impl Change {
    /// An operator's change that starts no step (publish, promote, revoke-overrides).
    pub fn command(config: Rollout, progress: Option<Progress>, record: Record) -> Self {
        Self {
            config,
            progress,
            record,
            origin: Origin::Command,
            new_step: false,
        }
    }

    /// An operator's change that writes a new weight (a weight, a rollout started, resumed
    /// or approved): a new exposure ratio, so the step's evidence starts afresh once
    /// applied.
    pub fn new_step(config: Rollout, progress: Option<Progress>, record: Record) -> Self {
        Self {
            new_step: true,
            ..Self::command(config, progress, record)
        }
    }
}

/// A change waiting for its write.
#[derive(Debug, Clone, PartialEq)]
pub struct Inflight {
    write: ConfigWrite,
    attempts: u32,
    change: Change,
}

impl Control {
    /// Writes `change` to KV, to be applied when the write succeeds. Nothing is written
    /// without a KV read first: a change decided on an older read (a batch's) waits for one,
    /// and is decided again on what it finds.
    pub(super) fn propose(&mut self, change: Change, now: f64, out: &mut Out) {
        if !self.read_fresh {
            debug_assert_eq!(change.origin, Origin::Automatic, "commands wait for a read");
            return self.wait_for_read(Pending::Evaluate, out);
        }
        let revision = self.kv.revision + 1;
        let mut stamped = change.config.clone();
        stamped.revision = Some(revision);
        let write = ConfigWrite {
            revision,
            text: stamped.to_json(),
            expect_canary: self.config.as_ref().and_then(|c| c.canary.clone()),
            not_before_ms: self.kv.next_write_at(now),
        };
        out.0.push(Effect::WriteConfig(write.clone()));
        self.inflight = Some(Inflight {
            write,
            attempts: 1,
            change,
        });
    }

    pub(super) fn on_written(&mut self, outcome: WriteOutcome, now: f64, out: &mut Out) {
        let Some(mut inflight) = self.inflight.take() else {
            return;
        };
        let (detail, rate_limited) = match outcome {
            WriteOutcome::Ok => return self.apply(inflight, now, out),
            WriteOutcome::RateLimited(d) => (d, true),
            WriteOutcome::Failed(d) => (d, false),
        };
        if inflight.attempts < WRITE_ATTEMPTS {
            inflight.attempts += 1;
            inflight.write.not_before_ms = now + super::projection::MIN_WRITE_GAP_MS;
            out.0.push(Effect::WriteConfig(inflight.write.clone()));
            self.inflight = Some(inflight);
            return;
        }
        out.log(
            "kv_write_failed",
            json!({
                "bundle": self.bundle.as_str(), "revision": inflight.write.revision,
                "canary": inflight.write.expect_canary, "change": inflight.change.record.kind,
                "attempts": inflight.attempts, "detail": detail,
            }),
        );
        match inflight.change.origin {
            Origin::Command => {
                if rate_limited {
                    self.kv.last_write_ms = Some(now);
                }
                out.refuse(
                    503,
                    format!("KV write failed ({detail}); nothing was changed, try again"),
                );
            }
            Origin::Automatic => self.kv.record_failure(now, rate_limited),
        }
    }

    fn apply(&mut self, inflight: Inflight, now: f64, out: &mut Out) {
        let Inflight { write, change, .. } = inflight;
        self.kv.record_write(write.revision, &write.text, now);
        let canary = change.config.canary.clone();
        let weight = change.config.weight;
        self.replace_config(Some(change.config), change.new_step);
        self.progress = change.progress;
        self.record(change.record, canary.as_ref(), Some(weight), now, out);
        if change.origin == Origin::Command {
            out.0.push(Effect::Reply(Reply::Done));
        }
    }

    /// Writes a record: its history entry (about `canary`, at `weight` when the weight
    /// changed) and its log lines, together.
    pub(super) fn record(
        &mut self,
        record: Record,
        canary: Option<&Version>,
        weight: Option<Weight>,
        now: f64,
        out: &mut Out,
    ) {
        self.history.push(
            NewEntry {
                kind: record.kind,
                canary,
                weight,
                by: &record.by,
                reason: record.reason,
                counts: record.counts,
            },
            now,
        );
        out.0.extend(record.logs.into_iter().map(Effect::Log));
    }
}
