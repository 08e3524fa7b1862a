//! A progressive rollout: the plan, the step it is on, and which canary it is about. A
//! rollout is bound to the canary it was started for; if the canary changes under it, it
//! ends (`superseded`) instead of stepping the new version forward. Its stages as a release
//! timeline: [`timeline`](super::timeline).

use serde::{Deserialize, Serialize};

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

    /// The rollout moved on to its next step at `now_ms` (an advance, or an approval).
    pub fn advanced(&self, now_ms: f64) -> Progress {
        Progress {
            step: self.step + 1,
            step_started_ms: now_ms,
            state: ProgressState::Running,
            reason: None,
            ..self.clone()
        }
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
}
