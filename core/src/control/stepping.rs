//! The alarm and the steps of a progressive rollout: a baked step advances only when the
//! canary has passed, waits for evidence short of that, and pauses after the longest hold.
//! Never a step on silence. A passed step is held, not advanced, during a freeze window
//! (`frozen`, until the window ends) and before a gated step (`awaiting_approval`, until a
//! person approves: `commands`).

use serde_json::json;

use crate::config::freeze::frozen_until;
use crate::config::Weight;
use crate::time::iso_time;

use super::machine::{Control, Out};
use super::progress::{Progress, ProgressState};
use super::verdict::{Judgement, Verdict};
use super::writes::{Change, Origin, Record};

impl Control {
    pub(super) fn on_alarm(&mut self, now_ms: f64, out: &mut Out) {
        if self.kv.retry_at_ms.is_some_and(|t| t <= now_ms) {
            self.kv.retry_at_ms = None;
        }
        if self.inflight.is_some() || self.config.is_none() {
            return;
        }
        self.sweep(now_ms);
        if self.maybe_cut(now_ms, out) {
            return;
        }
        self.step_if_due(now_ms, out);
    }

    /// A step whose bake time is over advances only when the canary has passed; short of
    /// that it waits for evidence, and after `max_hold_secs` the rollout pauses. Never a
    /// step on silence.
    pub(super) fn step_if_due(&mut self, now_ms: f64, out: &mut Out) {
        // After a failed write, steps wait for the retry (a batch must not hammer KV).
        if self.inflight.is_some() || self.kv.retry_at_ms.is_some_and(|t| t > now_ms) {
            return;
        }
        let (Some(p), Some(config)) = (self.progress.clone(), self.config.clone()) else {
            return;
        };
        if !p.state.is_moving() || now_ms < p.due_ms() || !self.signed {
            return;
        }
        // Held for a person while the gate stands (taken out of the config: it goes on).
        if p.state == ProgressState::AwaitingApproval && self.gated(p.next_weight()) {
            return;
        }
        // A passed step stays frozen, not judged again, until the window ends.
        if p.state == ProgressState::Frozen && self.freeze(now_ms).is_some() {
            return;
        }
        if config.canary.as_ref() != Some(&p.canary) {
            // Adoption ends such a rollout; this is the belt to its braces.
            if let Some(p) = self.progress.as_mut() {
                p.end_or_pause(ProgressState::Superseded, "the canary changed");
            }
            return;
        }
        let judgement = self.judge();
        if judgement.verdict != Verdict::Pass {
            return self.hold(&p, &judgement, now_ms, out);
        }
        let passed = format!(
            "step {}/{} ({}%) passed after {} s: {}",
            p.step + 1,
            p.plan.steps.len(),
            p.current_weight().percent(),
            ((now_ms - p.step_started_ms) / 1000.0).round(),
            judgement.reason
        );
        match p.next_weight() {
            None => {
                let mut done = p.clone();
                done.state = ProgressState::Done;
                done.reason = Some(passed.clone());
                self.progress = Some(done);
                let record = Record::new("rollout_done", "rollout", passed).log(
                    "rollout_done",
                    json!({ "bundle": self.bundle.as_str(), "canary": p.canary, "weight": config.weight }),
                );
                self.record(record, Some(&p.canary), Some(config.weight), now_ms, out);
            }
            Some(weight) => {
                if let Some((until, window)) = self.freeze(now_ms) {
                    return self.hold_frozen(&p, weight, until, window, &passed, now_ms, out);
                }
                if self.gated(Some(weight)) {
                    return self.await_approval(&p, weight, &passed, now_ms, out);
                }
                let mut next = config.clone();
                next.weight = weight;
                let progress = p.advanced(now_ms);
                let record = Record::new("step_advance", "rollout", passed).log(
                    "step_advance",
                    json!({
                        "bundle": self.bundle.as_str(), "canary": p.canary, "weight": weight,
                        "step": progress.step, "steps": p.plan.steps,
                        "canary_clients": judgement.canary.clients, "canary_errors": judgement.canary.errors,
                    }),
                );
                let change = Change {
                    config: next,
                    progress: Some(progress),
                    record,
                    origin: Origin::Automatic,
                    new_step: true,
                };
                self.propose(change, now_ms, out);
            }
        }
    }

    /// The freeze that holds at `now_ms` (from the config's `progression.freeze`): when it
    /// ends, and the window in words.
    pub fn freeze(&self, now_ms: f64) -> Option<(f64, String)> {
        let windows = &self.config.as_ref()?.progression.as_ref()?.freeze;
        frozen_until(windows, now_ms).map(|(until, w)| (until, w.describe()))
    }

    /// The config's `progression.approve` gates `weight`: the rollout waits for a person
    /// before it.
    pub fn gated(&self, weight: Option<Weight>) -> bool {
        let approve = self
            .config
            .as_ref()
            .and_then(|c| c.progression.as_ref())
            .map(|p| p.approve.as_slice())
            .unwrap_or_default();
        weight.is_some_and(|w| approve.contains(&w))
    }

    /// Holds a passed step during a freeze window, until it ends (the alarm fires then).
    #[allow(clippy::too_many_arguments)]
    fn hold_frozen(
        &mut self,
        p: &Progress,
        next: Weight,
        until: f64,
        window: String,
        passed: &str,
        now_ms: f64,
        out: &mut Out,
    ) {
        let reason = format!(
            "frozen until {} (freeze {window}): {} waits for the window's end",
            iso_time(until),
            passed_then_next(p, next, ",")
        );
        let fields = json!({ "window": window, "until": iso_time(until) });
        self.hold_passed(
            p,
            next,
            ProgressState::Frozen,
            reason,
            fields,
            passed,
            now_ms,
            out,
        );
    }

    /// Holds a passed step before a gated one, until a person approves (`POST …/approve`).
    fn await_approval(
        &mut self,
        p: &Progress,
        next: Weight,
        passed: &str,
        now_ms: f64,
        out: &mut Out,
    ) {
        let reason = format!("{} waits for approval", passed_then_next(p, next, ";"));
        let state = ProgressState::AwaitingApproval;
        self.hold_passed(p, next, state, reason, json!({}), passed, now_ms, out);
    }

    /// Holds a step that passed before `next` in `state` (its history entry and log line
    /// are named after it), with `fields` added to the log line.
    #[allow(clippy::too_many_arguments)]
    fn hold_passed(
        &mut self,
        p: &Progress,
        next: Weight,
        state: ProgressState,
        reason: String,
        mut fields: serde_json::Value,
        passed: &str,
        now_ms: f64,
        out: &mut Out,
    ) {
        let Some(progress) = self.progress.as_mut() else {
            return;
        };
        progress.state = state;
        progress.reason = Some(reason.clone());
        let kind = state.as_str();
        let common = json!({
            "bundle": self.bundle.as_str(), "canary": p.canary, "step": p.step,
            "weight": p.current_weight(), "next_weight": next, "passed": passed,
        });
        if let (Some(fields), Some(common)) = (fields.as_object_mut(), common.as_object()) {
            fields.extend(common.clone());
        }
        let record = Record::new(kind, "rollout", reason).log(kind, fields);
        self.record(record, Some(&p.canary), None, now_ms, out);
    }

    /// Holds a baked step that has not passed: waiting for evidence, then paused.
    fn hold(&mut self, p: &Progress, judgement: &Judgement, now_ms: f64, out: &mut Out) {
        let max_hold_ms = f64::from(self.policy().max_hold_secs) * 1000.0;
        let bundle = self.bundle.as_str().to_owned();
        let Some(progress) = self.progress.as_mut() else {
            return;
        };
        if now_ms >= p.due_ms() + max_hold_ms {
            let reason = format!(
                "no evidence {} s after step {} baked: {}",
                (max_hold_ms / 1000.0).round(),
                p.step + 1,
                judgement.reason
            );
            progress.end_or_pause(ProgressState::Paused, reason.clone());
            let record = Record::new("rollout_paused", "rollout", reason.clone()).log(
                "rollout_paused",
                json!({ "bundle": bundle, "canary": p.canary, "reason": reason }),
            );
            self.record(record, Some(&p.canary), None, now_ms, out);
            return;
        }
        let first = progress.state == ProgressState::Running;
        progress.state = ProgressState::WaitingForEvidence;
        progress.reason = Some(judgement.reason.clone());
        if first {
            out.log(
                "waiting_for_evidence",
                json!({
                    "bundle": bundle, "canary": p.canary, "step": p.step,
                    "weight": p.current_weight(), "reason": judgement.reason,
                    "hold_until_ms": p.due_ms() + max_hold_ms,
                }),
            );
        }
    }
}

/// `step 2/3 (50%) passed, step 3 (100%)` (with `separator` after `passed`): a passed step
/// and the one it holds before.
fn passed_then_next(p: &Progress, next: Weight, separator: &str) -> String {
    format!(
        "step {}/{} ({}%) passed{separator} step {} ({}%)",
        p.step + 1,
        p.plan.steps.len(),
        p.current_weight().percent(),
        p.step + 2,
        next.percent()
    )
}
