//! The admin API's writes: each refuses what the state does not allow (with a status and
//! words), or proposes one change.

use serde_json::json;

use super::machine::{iso_time, CommandRequest, Control, Effect, Out, Reply, UNSIGNED};
use super::progress::{Progress, ProgressState};
use super::writes::{Change, Origin, Record};
use crate::config::patch::{self, PolicyPatch};
use crate::config::{Refusal, Rollout, Version, Weight};
use crate::ops::admin::Command;

impl Control {
    pub(super) fn on_command(&mut self, request: CommandRequest, now_ms: f64, out: &mut Out) {
        if self.inflight.is_some() {
            return out.refuse(409, "another change is being written; try again");
        }
        let CommandRequest {
            command,
            expect_canary,
            by,
        } = request;
        if let Command::Publish(version) = &command {
            return self.publish(version.clone(), &by, now_ms, out);
        }
        let Some(config) = self.config.clone() else {
            return out.refuse(
                404,
                format!("no rollout config for bundle `{}`", self.bundle),
            );
        };
        if let Some(expected) = &expect_canary {
            if config.canary.as_ref() != Some(expected) {
                return out.refuse(
                    409,
                    format!(
                        "this command is about canary {expected}, but the canary is now {}",
                        config
                            .canary
                            .as_ref()
                            .map_or("none".into(), |v| v.to_string())
                    ),
                );
            }
        }
        match command {
            Command::SetWeight(weight) => self.set_weight(config, weight, &by, now_ms, out),
            Command::StartRollout(plan) => self.start_rollout(config, plan, &by, now_ms, out),
            Command::Pause => self.pause(&by, now_ms, out),
            Command::Resume => self.resume(config, &by, now_ms, out),
            Command::Rollback(reason) => {
                self.propose_rollback(reason, &by, Origin::Command, now_ms, out)
            }
            Command::Promote => self.promote(config, &by, now_ms, out),
            Command::RevokeOverrides => self.revoke_overrides(config, &by, now_ms, out),
            Command::Approve => self.approve(config, &by, now_ms, out),
            Command::SetPolicy(patch) => self.set_policy(config, &patch, &by, now_ms, out),
            Command::Publish(_) => {}
        }
    }

    /// A policy change: written with the config, applied from the next step (the running
    /// step keeps the policy it started with: its tests were sized on it).
    fn set_policy(
        &mut self,
        config: Rollout,
        patch: &PolicyPatch,
        by: &str,
        now: f64,
        out: &mut Out,
    ) {
        let (next, changes) = match patch.apply(&config) {
            Ok(applied) => applied,
            Err(e) => {
                return out.refuse(
                    400,
                    format!("invalid command: field `{}`: {}", e.field, e.message),
                )
            }
        };
        if changes.is_empty() {
            return out.0.push(Effect::Reply(Reply::Done));
        }
        let fields: Vec<serde_json::Value> = changes
            .iter()
            .map(|c| json!({ "field": c.field, "before": c.before, "after": c.after }))
            .collect();
        let record = Record::new("policy_changed", by, patch::describe(&changes)).log(
            "policy_changed",
            json!({ "bundle": self.bundle.as_str(), "canary": config.canary, "changes": fields, "by": by }),
        );
        self.propose(
            Change::command(next, self.progress.clone(), record),
            now,
            out,
        );
    }

    fn set_weight(&mut self, config: Rollout, weight: Weight, by: &str, now: f64, out: &mut Out) {
        let next = match config.with_weight(weight, self.cohorts) {
            Ok(next) => next,
            Err(e @ Refusal::NoCohort { .. }) => {
                return out.refuse(400, format!("invalid command: field `weight`: {e}"))
            }
            Err(e) => return out.refuse(409, e.to_string()),
        };
        // An operator's hand on the weight pauses an automatic rollout.
        let mut progress = self.progress.clone();
        let mut record = Record::new(
            "set_weight",
            by,
            format!(
                "weight {}% -> {}%",
                config.weight.percent(),
                weight.percent()
            ),
        );
        if let Some(p) = progress.as_mut() {
            if p.state.is_moving() {
                p.end_or_pause(ProgressState::Paused, format!("{by} set the weight"));
                record = record.log(
                    "rollout_paused",
                    json!({ "bundle": self.bundle.as_str(), "canary": p.canary, "reason": "weight set by hand" }),
                );
            }
        }
        let record = record.log(
            "set_weight",
            json!({ "bundle": self.bundle.as_str(), "canary": config.canary, "weight": weight, "by": by }),
        );
        self.propose(Change::new_step(next, progress, record), now, out);
    }

    fn start_rollout(
        &mut self,
        config: Rollout,
        plan: Option<crate::config::Progression>,
        by: &str,
        now: f64,
        out: &mut Out,
    ) {
        if !self.signed {
            out.log(
                "auto_canary_refused",
                json!({ "bundle": self.bundle.as_str(), "reason": UNSIGNED }),
            );
            return out.refuse(503, UNSIGNED);
        }
        let Some(canary) = config.canary.clone() else {
            return out.refuse(409, "no canary to roll out; publish one first");
        };
        let Some(plan) = plan.or_else(|| config.progression.clone()) else {
            return out.refuse(
                400,
                "no steps: send {\"steps\": [...], \"bake_secs\": n} or set `progression` in the config",
            );
        };
        if let Err(e) = plan.check_cohorts(self.cohorts) {
            return out.refuse(
                400,
                format!("invalid command: field `{}`: {}", e.field, e.message),
            );
        }
        // The rollout keeps its steps and bake; gates and freezes are read from the config.
        let progress = Progress::start(canary.clone(), plan.steps_only(), now);
        let mut next = config;
        next.weight = progress.current_weight();
        let steps: Vec<u8> = progress.plan.steps.iter().map(|w| w.percent()).collect();
        let record = Record::new(
            "rollout_started",
            by,
            format!("steps {steps:?}, {} s each", progress.plan.bake_secs),
        )
        .log(
            "rollout_started",
            json!({
                "bundle": self.bundle.as_str(), "canary": canary, "weight": next.weight,
                "steps": progress.plan.steps, "bake_secs": progress.plan.bake_secs, "by": by,
            }),
        );
        self.propose(Change::new_step(next, Some(progress), record), now, out);
    }

    fn pause(&mut self, by: &str, now: f64, out: &mut Out) {
        let Some(p) = self.progress.as_mut().filter(|p| p.state.is_moving()) else {
            return out.refuse(409, "no running rollout to pause");
        };
        p.end_or_pause(ProgressState::Paused, format!("paused by {by}"));
        let canary = p.canary.clone();
        let record = Record::new("rollout_paused", by, "paused").log(
            "rollout_paused",
            json!({ "bundle": self.bundle.as_str(), "canary": canary, "by": by }),
        );
        self.record(record, Some(&canary), None, now, out);
        out.0.push(Effect::Reply(Reply::Done));
    }

    fn resume(&mut self, config: Rollout, by: &str, now: f64, out: &mut Out) {
        let Some(p) = self
            .progress
            .clone()
            .filter(|p| p.state == ProgressState::Paused)
        else {
            return out.refuse(409, "no paused rollout to resume");
        };
        if config.canary.as_ref() != Some(&p.canary) {
            return out.refuse(
                409,
                format!(
                    "the paused rollout was for canary {}; start a new one",
                    p.canary
                ),
            );
        }
        let mut resumed = p.clone();
        resumed.state = ProgressState::Running;
        resumed.reason = None;
        resumed.step_started_ms = now;
        let record = Record::new(
            "rollout_resumed",
            by,
            format!("resumed at step {}/{}", p.step + 1, p.plan.steps.len()),
        )
        .log(
            "rollout_resumed",
            json!({ "bundle": self.bundle.as_str(), "canary": p.canary, "weight": p.current_weight(), "by": by }),
        );
        if config.weight == p.current_weight() {
            // Nothing to write: the step's weight is the live one.
            self.progress = Some(resumed);
            self.new_step();
            self.record(record, Some(&p.canary), Some(config.weight), now, out);
            out.0.push(Effect::Reply(Reply::Done));
            return;
        }
        let mut next = config;
        next.weight = p.current_weight();
        self.propose(Change::new_step(next, Some(resumed), record), now, out);
    }

    /// A person lets a rollout that awaits approval take its gated step, at once. Nothing
    /// is kept: an approval is for the canary and step awaiting it now, and one sent before
    /// the gate is reached, or about another canary, is refused.
    fn approve(&mut self, config: Rollout, by: &str, now: f64, out: &mut Out) {
        let awaiting = self
            .progress
            .clone()
            .filter(|p| p.state == ProgressState::AwaitingApproval);
        let Some((p, weight)) = awaiting
            .filter(|p| config.canary.as_ref() == Some(&p.canary))
            .and_then(|p| p.next_weight().map(|w| (p, w)))
        else {
            let now_state = match &self.progress {
                Some(p) if p.state.is_active() => format!(
                    "the rollout of {} is {} at step {}/{}",
                    p.canary,
                    p.state.as_str(),
                    p.step + 1,
                    p.plan.steps.len()
                ),
                Some(p) => format!("the rollout of {} is {}", p.canary, p.state.as_str()),
                None => "no rollout".into(),
            };
            return out.refuse(409, format!("nothing awaits approval ({now_state})"));
        };
        let mut next = config;
        next.weight = weight;
        let progress = p.advanced(now);
        let record = Record::new(
            "approved",
            by,
            format!(
                "step {}/{} ({}%) approved by {by}",
                progress.step + 1,
                p.plan.steps.len(),
                weight.percent()
            ),
        )
        .log(
            "approved",
            json!({
                "bundle": self.bundle.as_str(), "canary": p.canary, "weight": weight,
                "step": progress.step, "by": by,
            }),
        )
        .log(
            "step_advance",
            json!({
                "bundle": self.bundle.as_str(), "canary": p.canary, "weight": weight,
                "step": progress.step, "steps": p.plan.steps, "approved_by": by,
            }),
        );
        self.propose(Change::new_step(next, Some(progress), record), now, out);
    }

    fn promote(&mut self, config: Rollout, by: &str, now: f64, out: &mut Out) {
        let next = match config.promoted() {
            Ok(next) => next,
            Err(e) => return out.refuse(409, e.to_string()),
        };
        let canary = next.stable.clone();
        let progress = self.progress.clone().map(|mut p| {
            if p.state.is_active() {
                p.state = ProgressState::Done;
                p.reason = Some("promoted".into());
            }
            p
        });
        let record = Record::new(
            "promote",
            by,
            format!("{canary} replaces {} as stable", config.stable),
        )
        .log(
            "promote",
            json!({ "bundle": self.bundle.as_str(), "canary": canary, "previous_stable": config.stable, "by": by }),
        );
        self.propose(Change::command(next, progress, record), now, out);
    }

    /// Voids every override token of the bundle issued until now: the config says so, and
    /// the edge reads it with the config (no other state to keep or check).
    fn revoke_overrides(&mut self, config: Rollout, by: &str, now: f64, out: &mut Out) {
        let at = (now / 1000.0) as u64;
        let mut next = config;
        next.overrides_not_before = Some(at);
        let record = Record::new(
            "overrides_revoked",
            by,
            format!("override tokens issued before {} are void", iso_time(now)),
        )
        .log(
            "overrides_revoked",
            json!({ "bundle": self.bundle.as_str(), "not_before": at, "by": by }),
        );
        self.propose(
            Change::command(next, self.progress.clone(), record),
            now,
            out,
        );
    }

    fn publish(&mut self, version: Version, by: &str, now: f64, out: &mut Out) {
        let next = match Rollout::published(self.config.as_ref(), version.clone()) {
            Ok(next) => next,
            Err(e) => return out.refuse(409, format!("{} {e}", self.bundle)),
        };
        let reason = if self.config.is_none() {
            format!("{version} published as stable (new bundle)")
        } else {
            format!("{version} published as the canary, dark (weight 0)")
        };
        let mut record = Record::new("publish", by, reason);
        let progress = self.progress.clone().map(|mut p| {
            if p.end_or_pause(
                ProgressState::Superseded,
                format!("canary {version} was published"),
            ) {
                record = record.clone().log(
                    "rollout_superseded",
                    json!({ "bundle": self.bundle.as_str(), "rollout_canary": p.canary, "canary": version }),
                );
            }
            p
        });
        let record = record.log(
            "publish",
            json!({ "bundle": self.bundle.as_str(), "version": version, "by": by }),
        );
        self.propose(Change::command(next, progress, record), now, out);
    }

    pub(super) fn propose_rollback(
        &mut self,
        reason: String,
        by: &str,
        origin: Origin,
        now: f64,
        out: &mut Out,
    ) {
        let Some(config) = self.config.clone() else {
            return;
        };
        let next = match config.rolled_back(&iso_time(now), &reason, by) {
            Ok(next) => next,
            // Only a command can meet this: a cut needs a serving canary.
            Err(e) => {
                if origin == Origin::Command {
                    out.refuse(409, e.to_string());
                }
                return;
            }
        };
        let progress = self.progress.clone().map(|mut p| {
            if p.state.is_active() {
                p.state = ProgressState::RolledBack;
                p.reason = Some(reason.clone());
            }
            p
        });
        let record = Record::new("rollback", by, reason.clone())
            // The step's evidence, `no_boot` failures included (the windows' sketches see
            // traffic, not silence).
            .counts(self.evidence.seen)
            .log(
                "rollback",
                json!({ "bundle": self.bundle.as_str(), "canary": config.canary, "reason": reason, "by": by }),
            );
        let change = Change {
            config: next,
            progress,
            record,
            origin,
            new_step: false,
        };
        self.propose(change, now, out);
    }
}
