//! The alarm and the steps of a progressive rollout: a baked step advances only when the
//! canary has passed, waits for evidence short of that, and pauses after the longest hold.
//! Never a step on silence.

use serde_json::json;

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
                let mut next = config.clone();
                next.weight = weight;
                let mut progress = p.clone();
                progress.step += 1;
                progress.step_started_ms = now_ms;
                progress.state = ProgressState::Running;
                progress.reason = None;
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
