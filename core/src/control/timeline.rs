//! A release's timeline: its stages (its steps, and weights set by hand) with when each
//! started and how it ended, from the history and the rollout's state.

use serde::Serialize;

use super::history::{Entry, History};
use super::progress::{Progress, ProgressState};
use crate::config::{Progression, Version, Weight};

/// What a stage of a release is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Published as the canary, dark (weight 0).
    Published,
    /// A step of a progressive rollout.
    Step,
    /// A weight set by hand: an operator's command, or a write to KV.
    Weight,
}

/// How a stage ended, or where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// The canary passed the step.
    Passed,
    /// The canary was rolled back during it.
    Cut,
    /// The rollout was paused during it (and resumed: the next stage is the same step).
    Paused,
    /// Left without a verdict: another weight, another rollout, another canary.
    Ended,
    /// The canary was promoted during it.
    Promoted,
    /// The current step, baking.
    Running,
    /// The current step, baked, waiting for the canary to pass.
    WaitingForEvidence,
    /// The current step, passed, the next one waiting for a person's approval.
    AwaitingApproval,
    /// The current step, passed during a freeze window, held until it ends.
    Frozen,
    /// The current weight, set by hand, serving the canary.
    Serving,
    /// The current stage, at weight 0.
    Dark,
    /// A later step of a rollout that may still get there.
    Pending,
    /// A later step of a rollout that ended before it (cut, superseded).
    NotReached,
}

/// One stage of a release: a step, or a weight, from when it started to how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub kind: StageKind,
    /// The step's number in its rollout, from 1.
    pub step: Option<usize>,
    /// `None` when the history no longer says.
    pub weight: Option<Weight>,
    pub state: StageState,
    pub started_ms: Option<f64>,
    pub started_by: Option<String>,
    pub ended_ms: Option<f64>,
    pub ended_by: Option<String>,
    /// Why it ended (a pass's or a cut's verdict, the change that ended it), or why it is
    /// where it is (paused, waiting).
    pub reason: Option<String>,
}

impl Stage {
    /// Still the canary's stage (a paused step too, until it is resumed or ended).
    fn is_open(&self) -> bool {
        self.ended_ms.is_none()
            && matches!(
                self.state,
                StageState::Running | StageState::Serving | StageState::Paused
            )
    }
}

/// Builds a timeline from the history, one entry at a time.
struct Walk<'a> {
    stages: Vec<Stage>,
    /// The rollout's plan, when the release has one (for its steps' numbers).
    plan: Option<&'a Progression>,
    /// The weight after the entries walked so far (when one said).
    weight: Option<Weight>,
}

impl Walk<'_> {
    fn open_stage(&mut self) -> Option<&mut Stage> {
        self.stages.last_mut().filter(|s| s.is_open())
    }

    /// The number of the step at `weight` in the plan, else the step after the last one.
    fn step_at(&self, weight: Option<Weight>) -> Option<usize> {
        let planned = self
            .plan
            .zip(weight)
            .and_then(|(p, w)| p.steps.iter().position(|s| *s == w));
        match planned {
            Some(i) => Some(i + 1),
            None => Some(
                self.stages
                    .iter()
                    .rev()
                    .find_map(|s| s.step.filter(|_| s.kind == StageKind::Step))
                    .map_or(1, |n| n + 1),
            ),
        }
    }

    fn open(&mut self, kind: StageKind, step: Option<usize>, e: &Entry) {
        self.stages.push(Stage {
            kind,
            step,
            weight: e.weight,
            state: StageState::Running,
            started_ms: Some(e.at_ms),
            started_by: Some(e.by.clone()),
            ended_ms: None,
            ended_by: None,
            reason: None,
        });
    }

    /// Ends the open stage as `state` at entry `e`; a pass or a cut the history shows
    /// without its stage's start still gets a stage (its start unknown).
    fn close(&mut self, e: &Entry, state: StageState) {
        if self.open_stage().is_none() {
            if !matches!(state, StageState::Passed | StageState::Cut) {
                return;
            }
            // The step before the one `e` starts (a step_advance names the next weight).
            let (step, weight) = match (e.kind.as_str(), self.plan) {
                ("step_advance" | "approved", Some(plan)) => {
                    let next = e
                        .weight
                        .and_then(|w| plan.steps.iter().position(|s| *s == w));
                    match next {
                        Some(i) if i > 0 => (Some(i), plan.steps.get(i - 1).copied()),
                        _ => (None, None),
                    }
                }
                _ => (None, None),
            };
            self.stages.push(Stage {
                kind: if step.is_some() {
                    StageKind::Step
                } else {
                    StageKind::Weight
                },
                step,
                weight,
                state,
                started_ms: None,
                started_by: None,
                ended_ms: None,
                ended_by: None,
                reason: None,
            });
        }
        let Some(stage) = self.stages.last_mut() else {
            return;
        };
        // A paused stage stays paused, with the pause's reason, when it is resumed or
        // left; a cut or a promote says so.
        if stage.state != StageState::Paused {
            stage.reason = Some(e.reason.clone());
        }
        if !matches!(state, StageState::Ended | StageState::Paused) {
            stage.state = state;
            stage.reason = Some(e.reason.clone());
        } else if stage.state != StageState::Paused {
            stage.state = state;
        }
        stage.ended_ms = Some(e.at_ms);
        stage.ended_by = Some(e.by.clone());
    }

    fn entry(&mut self, e: &Entry) {
        self.apply(e);
        if e.weight.is_some() {
            self.weight = e.weight;
        }
    }

    fn apply(&mut self, e: &Entry) {
        match e.kind.as_str() {
            "publish" => {
                self.close(e, StageState::Ended);
                self.open(StageKind::Published, None, e);
            }
            "rollout_started" => {
                self.close(e, StageState::Ended);
                self.open(StageKind::Step, Some(1), e);
            }
            // An approval advances to the gated step, as a pass does.
            "step_advance" | "approved" => {
                self.close(e, StageState::Passed);
                let step = self.step_at(e.weight);
                self.open(StageKind::Step, step, e);
            }
            "rollout_done" => self.close(e, StageState::Passed),
            "rollback" => self.close(e, StageState::Cut),
            "rollout_paused" => {
                if let Some(stage) = self.open_stage() {
                    stage.state = StageState::Paused;
                    stage.reason = Some(e.reason.clone());
                }
            }
            "rollout_resumed" => {
                let step = self.open_stage().and_then(|s| s.step);
                self.close(e, StageState::Paused);
                let step = step.or_else(|| self.step_at(e.weight));
                self.open(StageKind::Step, step, e);
            }
            "set_weight" | "kv_adopted" => {
                if self.weight.is_some() && e.weight == self.weight {
                    return; // the weight did not change
                }
                // A canary first seen in a write to KV, dark: published there.
                let kind = if self.stages.is_empty()
                    && e.kind == "kv_adopted"
                    && e.weight == Some(Weight::ZERO)
                {
                    StageKind::Published
                } else {
                    StageKind::Weight
                };
                self.close(e, StageState::Ended);
                self.open(kind, None, e);
            }
            _ => {}
        }
    }
}

/// The release of `canary` as stages, oldest first: from the history (the newest run of
/// entries about the canary; with a rollout of it, from that rollout's start), then the
/// current stage's state from `progress`, then the rollout's steps not reached.
pub fn timeline(canary: &Version, progress: Option<&Progress>, history: &History) -> Vec<Stage> {
    let progress = progress.filter(|p| &p.canary == canary);
    let mut walk = Walk {
        stages: Vec::new(),
        plan: progress.map(|p| &p.plan),
        weight: None,
    };
    let entries = &history.entries;
    let about = |e: &Entry| e.canary.as_ref() == Some(canary);
    if let Some(last) = entries.iter().rposition(about) {
        let mut first = last;
        while first > 0 && about(&entries[first - 1]) {
            first -= 1;
        }
        if progress.is_some() {
            if let Some(i) = entries[first..=last]
                .iter()
                .rposition(|e| e.kind == "rollout_started")
            {
                first += i;
            }
        }
        for e in &entries[first..=last] {
            walk.entry(e);
        }
        // What ended the release: a promote, or another canary.
        if let Some(e) = entries.get(last + 1) {
            let state = if e.kind == "promote" {
                StageState::Promoted
            } else {
                StageState::Ended
            };
            walk.close(e, state);
        }
    }
    let mut stages = walk.stages;
    if let Some(p) = progress {
        let current = p.step + 1;
        let has_current = stages
            .iter()
            .any(|s| s.kind == StageKind::Step && s.step == Some(current));
        if !has_current {
            // The history no longer has the step's start: the rollout knows when.
            stages.push(Stage {
                kind: StageKind::Step,
                step: Some(current),
                weight: Some(p.current_weight()),
                state: StageState::Running,
                started_ms: Some(p.step_started_ms),
                started_by: None,
                ended_ms: None,
                ended_by: None,
                reason: None,
            });
        }
    }
    if let Some(stage) = stages.last_mut().filter(|s| s.is_open()) {
        let on_step =
            progress.filter(|p| stage.kind == StageKind::Step && stage.step == Some(p.step + 1));
        stage.state = match on_step.map(|p| p.state) {
            Some(ProgressState::Running) => StageState::Running,
            Some(ProgressState::WaitingForEvidence) => StageState::WaitingForEvidence,
            Some(ProgressState::AwaitingApproval) => StageState::AwaitingApproval,
            Some(ProgressState::Frozen) => StageState::Frozen,
            Some(ProgressState::Paused) => StageState::Paused,
            Some(ProgressState::Done) => StageState::Passed,
            Some(ProgressState::RolledBack) => StageState::Cut,
            Some(ProgressState::Superseded) => StageState::Ended,
            None if stage.weight.is_some_and(|w| w > Weight::ZERO) => StageState::Serving,
            None => StageState::Dark,
        };
        if let Some(p) = on_step.filter(|p| p.state != ProgressState::Running) {
            stage.reason = p.reason.clone().or(stage.reason.take());
        }
    }
    if let Some(p) = progress {
        let later = if p.state.is_active() {
            StageState::Pending
        } else {
            StageState::NotReached
        };
        for (i, weight) in p.plan.steps.iter().enumerate().skip(p.step + 1) {
            if !stages
                .iter()
                .any(|s| s.kind == StageKind::Step && s.step == Some(i + 1))
            {
                stages.push(Stage {
                    kind: StageKind::Step,
                    step: Some(i + 1),
                    weight: Some(*weight),
                    state: later,
                    started_ms: None,
                    started_by: None,
                    ended_ms: None,
                    ended_by: None,
                    reason: None,
                });
            }
        }
    }
    stages
}

#[cfg(test)]
mod tests;
