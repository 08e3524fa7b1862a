//! A progressive rollout: the plan, the step it is on, and which canary it is about. A
//! rollout is bound to the canary it was started for; if the canary changes under it, it
//! ends (`superseded`) instead of stepping the new version forward. [`timeline`]: a
//! release's stages (its steps, and weights set by hand) with when each started and how it
//! ended, from the history.

use serde::{Deserialize, Serialize};

use super::history::{Entry, History};
use crate::config::{Progression, Version, Weight};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressState {
    Running,
    /// The step has baked but the canary has not passed yet: held, not advanced.
    WaitingForEvidence,
    /// The step passed; the next one is gated (`progression.approve`): it waits for a person.
    AwaitingApproval,
    /// The step passed during a freeze window (`progression.freeze`): held until it ends.
    Frozen,
    Paused,
    Done,
    RolledBack,
    /// The canary changed (a publish, a promote, an operator's KV write) while it ran.
    Superseded,
}

impl ProgressState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressState::Running => "running",
            ProgressState::WaitingForEvidence => "waiting_for_evidence",
            ProgressState::AwaitingApproval => "awaiting_approval",
            ProgressState::Frozen => "frozen",
            ProgressState::Paused => "paused",
            ProgressState::Done => "done",
            ProgressState::RolledBack => "rolled_back",
            ProgressState::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ProgressState::Running,
            ProgressState::WaitingForEvidence,
            ProgressState::AwaitingApproval,
            ProgressState::Frozen,
            ProgressState::Paused,
            ProgressState::Done,
            ProgressState::RolledBack,
            ProgressState::Superseded,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    /// Running, waiting (for evidence, an approval or a freeze's end) or paused: the
    /// rollout may still move.
    pub fn is_active(self) -> bool {
        self.is_moving() || self == ProgressState::Paused
    }

    /// Running, or held (waiting for evidence, an approval or a freeze's end): not paused
    /// by anyone, so an operator's weight or pause stops it.
    pub fn is_moving(self) -> bool {
        matches!(
            self,
            ProgressState::Running
                | ProgressState::WaitingForEvidence
                | ProgressState::AwaitingApproval
                | ProgressState::Frozen
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The canary this rollout is about.
    pub canary: Version,
    pub plan: Progression,
    pub step: usize,
    pub step_started_ms: f64,
    pub state: ProgressState,
    /// Why it is in its state, when not obvious (paused by whom, superseded by what).
    pub reason: Option<String>,
}

impl Progress {
    pub fn start(canary: Version, plan: Progression, now_ms: f64) -> Self {
        Self {
            canary,
            plan,
            step: 0,
            step_started_ms: now_ms,
            state: ProgressState::Running,
            reason: None,
        }
    }

    pub fn current_weight(&self) -> Weight {
        self.plan
            .steps
            .get(self.step)
            .copied()
            .unwrap_or(Weight::ZERO)
    }

    /// The weight of the step after this one, if any.
    pub fn next_weight(&self) -> Option<Weight> {
        self.plan.steps.get(self.step + 1).copied()
    }

    /// When the current step's bake time ends.
    pub fn due_ms(&self) -> f64 {
        self.step_started_ms + f64::from(self.plan.bake_secs) * 1000.0
    }

    /// Moves to `state` (with a reason) if the rollout is still active.
    pub fn end_or_pause(&mut self, state: ProgressState, reason: impl Into<String>) -> bool {
        if !self.state.is_active() {
            return false;
        }
        self.state = state;
        self.reason = Some(reason.into());
        true
    }
}

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
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_and_states() {
        let plan =
            Progression::from_value(json!({"steps": [10, 50, 100], "bake_secs": 10})).unwrap();
        let mut p = Progress::start(Version::parse("1.1.0").unwrap(), plan, 1_000.0);
        assert_eq!(p.current_weight().percent(), 10);
        assert_eq!(p.next_weight().map(Weight::percent), Some(50));
        assert_eq!(p.due_ms(), 11_000.0);
        p.step = 2;
        assert_eq!(p.next_weight(), None);
        assert!(p.end_or_pause(ProgressState::Paused, "operator"));
        assert!(p.end_or_pause(ProgressState::Superseded, "new canary"));
        assert!(!p.end_or_pause(ProgressState::Paused, "too late"));
        assert_eq!(p.state, ProgressState::Superseded);
        for s in [
            "running",
            "waiting_for_evidence",
            "awaiting_approval",
            "frozen",
            "paused",
            "done",
            "rolled_back",
            "superseded",
        ] {
            assert_eq!(ProgressState::parse(s).map(ProgressState::as_str), Some(s));
        }
        assert_eq!(ProgressState::parse("exploded"), None);
    }

    use super::super::history::NewEntry;
    use StageKind::{Published, Step, Weight as Set};
    use StageState::*;

    /// A history of (kind, canary, weight, by), one entry a second from t = 1 s.
    fn history(entries: &[(&str, Option<&str>, Option<u64>, &str)]) -> History {
        let mut h = History::default();
        for (i, (kind, canary, weight, by)) in entries.iter().enumerate() {
            let canary = canary.map(|c| Version::parse(c).unwrap());
            h.push(
                NewEntry {
                    kind,
                    canary: canary.as_ref(),
                    weight: weight.map(|w| Weight::new(w).unwrap()),
                    by,
                    reason: format!("{kind} #{i}"),
                    counts: None,
                },
                (i as f64 + 1.0) * 1000.0,
            );
        }
        h
    }

    fn rollout(steps: &[u64], step: usize, state: ProgressState) -> Progress {
        let plan = Progression::from_value(json!({"steps": steps, "bake_secs": 10})).unwrap();
        let mut p = Progress::start(Version::parse("1.1.0").unwrap(), plan, 0.0);
        p.step = step;
        p.state = state;
        p.reason = (state != ProgressState::Running).then(|| state.as_str().to_owned());
        p
    }

    /// (kind, step, weight, state, started, ended): a stage in short.
    type Short = (StageKind, Option<usize>, Option<u8>, StageState, bool, bool);
    /// (name, history, progress, canary, the stages expected).
    type Case = (
        &'static str,
        History,
        Option<Progress>,
        &'static str,
        Vec<Short>,
    );

    fn short(s: &Stage) -> Short {
        (
            s.kind,
            s.step,
            s.weight.map(Weight::percent),
            s.state,
            s.started_ms.is_some(),
            s.ended_ms.is_some(),
        )
    }

    #[test]
    fn a_release_timeline_from_the_history() {
        use ProgressState as P;
        let c = Some("1.1.0");
        let cases: Vec<Case> = vec![
            (
                "a rollout cut at its second step (from the rollout's start, not the publish)",
                history(&[
                    ("publish", c, Some(0), "operator"),
                    ("rollout_started", c, Some(10), "operator"),
                    ("step_advance", c, Some(50), "rollout"),
                    ("rollback", c, Some(0), "rollout"),
                ]),
                Some(rollout(&[10, 50, 100], 1, P::RolledBack)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(10), Passed, true, true),
                    (Step, Some(2), Some(50), Cut, true, true),
                    (Step, Some(3), Some(100), NotReached, false, false),
                ],
            ),
            (
                "a rollout baking its second step",
                history(&[
                    ("rollout_started", c, Some(10), "operator"),
                    ("step_advance", c, Some(50), "rollout"),
                ]),
                Some(rollout(&[10, 50, 100], 1, P::Running)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(10), Passed, true, true),
                    (Step, Some(2), Some(50), Running, true, false),
                    (Step, Some(3), Some(100), Pending, false, false),
                ],
            ),
            (
                "waiting for evidence",
                history(&[("rollout_started", c, Some(10), "operator")]),
                Some(rollout(&[10, 50], 0, P::WaitingForEvidence)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(10), WaitingForEvidence, true, false),
                    (Step, Some(2), Some(50), Pending, false, false),
                ],
            ),
            (
                "awaiting approval, then approved: the gated step",
                history(&[
                    ("rollout_started", c, Some(10), "operator"),
                    ("step_advance", c, Some(50), "rollout"),
                    ("awaiting_approval", c, None, "rollout"),
                    ("approved", c, Some(100), "alice"),
                ]),
                Some(rollout(&[10, 50, 100], 2, P::Running)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(10), Passed, true, true),
                    (Step, Some(2), Some(50), Passed, true, true),
                    (Step, Some(3), Some(100), Running, true, false),
                ],
            ),
            (
                "awaiting approval now",
                history(&[
                    ("rollout_started", c, Some(50), "operator"),
                    ("awaiting_approval", c, None, "rollout"),
                ]),
                Some(rollout(&[50, 100], 0, P::AwaitingApproval)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(50), AwaitingApproval, true, false),
                    (Step, Some(2), Some(100), Pending, false, false),
                ],
            ),
            (
                "frozen now",
                history(&[
                    ("rollout_started", c, Some(10), "operator"),
                    ("frozen", c, None, "rollout"),
                ]),
                Some(rollout(&[10, 50], 0, P::Frozen)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(10), Frozen, true, false),
                    (Step, Some(2), Some(50), Pending, false, false),
                ],
            ),
            (
                "paused, then resumed: the step again",
                history(&[
                    ("rollout_started", c, Some(10), "operator"),
                    ("rollout_paused", c, None, "operator"),
                    ("rollout_resumed", c, Some(10), "operator"),
                ]),
                Some(rollout(&[10, 50], 0, P::Running)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(10), Paused, true, true),
                    (Step, Some(1), Some(10), Running, true, false),
                    (Step, Some(2), Some(50), Pending, false, false),
                ],
            ),
            (
                "paused now",
                history(&[
                    ("rollout_started", c, Some(10), "operator"),
                    ("rollout_paused", c, None, "rollout"),
                ]),
                Some(rollout(&[10, 50], 0, P::Paused)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(10), Paused, true, false),
                    (Step, Some(2), Some(50), Pending, false, false),
                ],
            ),
            (
                "done, then promoted (the canary is gone from the config)",
                history(&[
                    ("rollout_started", c, Some(50), "operator"),
                    ("step_advance", c, Some(100), "rollout"),
                    ("rollout_done", c, Some(100), "rollout"),
                    ("promote", None, Some(0), "operator"),
                ]),
                Some(rollout(&[50, 100], 1, P::Done)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(50), Passed, true, true),
                    (Step, Some(2), Some(100), Passed, true, true),
                ],
            ),
            (
                "a weight set by hand, cut automatically",
                history(&[
                    ("publish", c, Some(0), "operator"),
                    ("set_weight", c, Some(30), "operator"),
                    ("rollback", c, Some(0), "auto"),
                ]),
                None,
                "1.1.0",
                vec![
                    (Published, None, Some(0), Ended, true, true),
                    (Set, None, Some(30), Cut, true, true),
                ],
            ),
            (
                "a rollout paused by a weight set by hand",
                history(&[
                    ("rollout_started", c, Some(10), "operator"),
                    ("set_weight", c, Some(30), "operator"),
                ]),
                Some(rollout(&[10, 50], 0, P::Paused)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(10), Ended, true, true),
                    (Set, None, Some(30), Serving, true, false),
                    (Step, Some(2), Some(50), Pending, false, false),
                ],
            ),
            (
                "a history that lost the rollout's start",
                history(&[
                    ("step_advance", c, Some(50), "rollout"),
                    ("rollback", c, Some(0), "operator"),
                ]),
                Some(rollout(&[10, 50, 100], 1, P::RolledBack)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(10), Passed, false, true),
                    (Step, Some(2), Some(50), Cut, true, true),
                    (Step, Some(3), Some(100), NotReached, false, false),
                ],
            ),
            (
                "the previous canary's stages are not the new one's",
                history(&[
                    ("set_weight", c, Some(50), "operator"),
                    ("rollback", c, Some(0), "auto"),
                    ("publish", Some("1.2.0"), Some(0), "operator"),
                ]),
                None,
                "1.2.0",
                vec![(Published, None, Some(0), Dark, true, false)],
            ),
            (
                "writes to KV: published there, then weights (another field alone is no stage)",
                history(&[
                    ("kv_adopted", c, Some(0), "kv"),
                    ("kv_adopted", c, Some(10), "kv"),
                    ("kv_adopted", c, Some(10), "kv"),
                    ("kv_adopted", c, Some(40), "kv"),
                ]),
                None,
                "1.1.0",
                vec![
                    (Published, None, Some(0), Ended, true, true),
                    (Set, None, Some(10), Ended, true, true),
                    (Set, None, Some(40), Serving, true, false),
                ],
            ),
            (
                "nothing in the history: the rollout's current step",
                History::default(),
                Some(rollout(&[10, 50], 0, P::Running)),
                "1.1.0",
                vec![
                    (Step, Some(1), Some(10), Running, true, false),
                    (Step, Some(2), Some(50), Pending, false, false),
                ],
            ),
        ];
        for (name, history, progress, canary, expected) in cases {
            let canary = Version::parse(canary).unwrap();
            let stages = timeline(&canary, progress.as_ref(), &history);
            let got: Vec<Short> = stages.iter().map(short).collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn a_stage_says_who_started_and_ended_it_when_and_why() {
        let c = Some("1.1.0");
        let h = history(&[
            ("rollout_started", c, Some(10), "alice"),
            ("step_advance", c, Some(50), "rollout"),
            ("rollback", c, Some(0), "auto"),
        ]);
        let p = rollout(&[10, 50, 100], 1, ProgressState::RolledBack);
        let stages = timeline(&p.canary, Some(&p), &h);
        let first = &stages[0];
        assert_eq!(first.started_ms, Some(1000.0));
        assert_eq!(first.started_by.as_deref(), Some("alice"));
        assert_eq!(first.ended_ms, Some(2000.0));
        assert_eq!(first.ended_by.as_deref(), Some("rollout"));
        assert_eq!(
            first.reason.as_deref(),
            Some("step_advance #1"),
            "the pass's words"
        );
        let cut = &stages[1];
        assert_eq!(cut.ended_ms, Some(3000.0));
        assert_eq!(cut.ended_by.as_deref(), Some("auto"));
        assert_eq!(
            cut.reason.as_deref(),
            Some("rollback #2"),
            "the cut's words"
        );
        // Paused stages keep the pause's reason when they are resumed.
        let h = history(&[
            ("rollout_started", c, Some(10), "alice"),
            ("rollout_paused", c, None, "bob"),
            ("rollout_resumed", c, Some(10), "carol"),
        ]);
        let p = rollout(&[10, 50], 0, ProgressState::Running);
        let stages = timeline(&p.canary, Some(&p), &h);
        assert_eq!(stages[0].reason.as_deref(), Some("rollout_paused #1"));
        assert_eq!(stages[0].ended_by.as_deref(), Some("carol"));
        assert_eq!(stages[1].started_by.as_deref(), Some("carol"));
        assert_eq!(stages[1].reason, None);
    }
}
