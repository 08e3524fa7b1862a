//! Canary health: error counting per channel in time windows, the rollback rule, and the
//! progressive rollout's steps. Pure: time is an argument, so the rules are tested natively;
//! the Durable Object (`monitor_do`) only stores this state and acts on the verdicts.
//!
//! The rule is deliberately conservative: once the canary has enough traffic, an error rate
//! above the absolute threshold *and* well above stable's cuts the canary at once, even if
//! the cause might lie elsewhere. Equal rates (a shared backend failing) do not trip it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Version, Weight};

/// Thresholds of the automatic rollback, from the rollout config's `health` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthPolicy {
    /// Length of one counting window; the rule looks at the current and previous window.
    pub window_secs: u32,
    /// Canary requests needed in the looked-at windows before the rule may trip.
    pub min_requests: u64,
    /// Canary error rate (errors / requests, 0..1) above which the canary is unhealthy...
    pub max_error_rate: f64,
    /// ...provided it is also at least this many times stable's rate (when stable has
    /// `min_requests` too).
    pub max_relative: f64,
    /// Cut the canary automatically; with `false` the verdict is only reported.
    pub auto_rollback: bool,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            window_secs: 60,
            min_requests: 200,
            max_error_rate: 0.02,
            max_relative: 2.0,
            auto_rollback: true,
        }
    }
}

impl HealthPolicy {
    pub fn from_value(v: serde_json::Value) -> Result<Self, ConfigError> {
        let p: HealthPolicy = serde_json::from_value(v).map_err(|e| ConfigError {
            field: "health",
            message: e.to_string(),
        })?;
        let bad = |field: &'static str, message: &str| {
            Err(ConfigError {
                field,
                message: message.to_owned(),
            })
        };
        if !(10..=86_400).contains(&p.window_secs) {
            return bad("health.window_secs", "must be from 10 to 86400");
        }
        if p.min_requests == 0 {
            return bad("health.min_requests", "must be at least 1");
        }
        if !(p.max_error_rate > 0.0 && p.max_error_rate <= 1.0) {
            return bad("health.max_error_rate", "must be a rate in (0, 1]");
        }
        if !(p.max_relative >= 1.0 && p.max_relative.is_finite()) {
            return bad("health.max_relative", "must be a finite number >= 1");
        }
        Ok(p)
    }
}

/// The progressive rollout plan: weights in increasing order, each held for `bake_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progression {
    pub steps: Vec<Weight>,
    pub bake_secs: u32,
}

impl Progression {
    pub fn from_value(v: serde_json::Value) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            steps: Vec<u64>,
            #[serde(default = "default_bake")]
            bake_secs: u32,
        }
        fn default_bake() -> u32 {
            300
        }
        let raw: Raw = serde_json::from_value(v).map_err(|e| ConfigError {
            field: "progression",
            message: e.to_string(),
        })?;
        let err = |field: &'static str, message: String| ConfigError { field, message };
        if raw.steps.is_empty() || raw.steps.len() > 20 {
            return Err(err("progression.steps", "must list 1 to 20 weights".into()));
        }
        let mut steps = Vec::with_capacity(raw.steps.len());
        for w in raw.steps {
            let weight = Weight::new(w).map_err(|m| err("progression.steps", m))?;
            if steps.last().is_some_and(|prev| *prev >= weight) || weight == Weight::ZERO {
                return Err(err(
                    "progression.steps",
                    "weights must be above 0 and strictly increasing".into(),
                ));
            }
            steps.push(weight);
        }
        if !(1..=7 * 86_400).contains(&raw.bake_secs) {
            return Err(err(
                "progression.bake_secs",
                "must be from 1 to 604800".into(),
            ));
        }
        Ok(Self {
            steps,
            bake_secs: raw.bake_secs,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
    }

    pub fn rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.errors == 0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCounts {
    pub stable: Counts,
    pub canary: Counts,
}

impl ChannelCounts {
    pub fn add(&mut self, other: &ChannelCounts) {
        self.stable.add(other.stable);
        self.canary.add(other.canary);
    }

    pub fn is_empty(&self) -> bool {
        self.stable.is_empty() && self.canary.is_empty()
    }
}

/// Counts sent from an edge isolate to the bundle's monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub stable: Version,
    pub canary: Option<Version>,
    pub counts: ChannelCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: f64,
    pub counts: ChannelCounts,
}

/// Why the canary was cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub at_ms: f64,
    pub canary: Option<Version>,
    pub reason: String,
    pub canary_counts: Counts,
    pub stable_counts: Counts,
    /// `auto` (the rule), `operator` (API/CLI) or `rollout` (a failed step).
    pub by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressState {
    Running,
    Paused,
    Done,
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub plan: Progression,
    pub step: usize,
    pub step_started_ms: f64,
    pub state: ProgressState,
}

impl Progress {
    pub fn current_weight(&self) -> Weight {
        self.plan
            .steps
            .get(self.step)
            .copied()
            .unwrap_or(Weight::ZERO)
    }

    /// When the current step's bake time ends.
    pub fn due_ms(&self) -> f64 {
        self.step_started_ms + f64::from(self.plan.bake_secs) * 1000.0
    }
}

/// The verdict of the rollback rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough canary traffic to judge.
    TooFewSamples,
    Healthy,
    Unhealthy(String),
}

/// What the alarm should do.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmAction {
    /// Nothing to do (no rollout running, or not due).
    Idle,
    /// Set the weight to the next step.
    Advance(Weight),
    /// The last step has baked: the rollout is done.
    Finish,
    /// The canary is unhealthy: cut it.
    Rollback(String),
}

/// Most rollback records kept.
pub const MAX_HISTORY: usize = 50;

/// The monitor of one bundle: what its Durable Object stores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Monitor {
    pub stable: Option<Version>,
    pub canary: Option<Version>,
    /// The last two windows (previous, current).
    pub windows: VecDeque<Window>,
    /// Counts since the current canary started.
    pub totals: ChannelCounts,
    pub history: Vec<RollbackRecord>,
    pub progress: Option<Progress>,
}

impl Monitor {
    /// Adds a batch of counts. A batch naming another canary than the one counted so far
    /// starts the counts afresh: one release's errors never count against the next.
    pub fn ingest(&mut self, batch: &Batch, window_secs: u32, now_ms: f64) {
        if batch.canary != self.canary || Some(&batch.stable) != self.stable.as_ref() {
            self.windows.clear();
            self.totals = ChannelCounts::default();
            self.canary = batch.canary.clone();
            self.stable = Some(batch.stable.clone());
        }
        let window_ms = f64::from(window_secs) * 1000.0;
        let current_start = (now_ms / window_ms).floor() * window_ms;
        match self.windows.back_mut() {
            Some(w) if w.start_ms == current_start => w.counts.add(&batch.counts),
            _ => {
                self.windows.push_back(Window {
                    start_ms: current_start,
                    counts: batch.counts,
                });
            }
        }
        // Keep the current window and the one right before it.
        self.windows
            .retain(|w| w.start_ms >= current_start - window_ms && w.start_ms <= current_start);
        self.totals.add(&batch.counts);
    }

    /// Counts in the current and previous window, as seen at `now_ms`.
    pub fn recent(&self, window_secs: u32, now_ms: f64) -> ChannelCounts {
        let window_ms = f64::from(window_secs) * 1000.0;
        let current_start = (now_ms / window_ms).floor() * window_ms;
        let mut sum = ChannelCounts::default();
        for w in &self.windows {
            if w.start_ms >= current_start - window_ms && w.start_ms <= current_start {
                sum.add(&w.counts);
            }
        }
        sum
    }

    /// The rollback rule over the recent windows.
    pub fn evaluate(&self, policy: &HealthPolicy, now_ms: f64) -> Verdict {
        let recent = self.recent(policy.window_secs, now_ms);
        let canary = recent.canary;
        if canary.requests < policy.min_requests {
            return Verdict::TooFewSamples;
        }
        let canary_rate = canary.rate();
        if canary_rate <= policy.max_error_rate {
            return Verdict::Healthy;
        }
        let stable = recent.stable;
        let stable_known = stable.requests >= policy.min_requests;
        if stable_known && canary_rate < stable.rate() * policy.max_relative {
            // Stable fails about as much: the cause is likely shared, not the release.
            return Verdict::Healthy;
        }
        let stable_part = if stable_known {
            format!(
                ", stable {:.2}% ({}/{}), limit {}x stable",
                stable.rate() * 100.0,
                stable.errors,
                stable.requests,
                policy.max_relative
            )
        } else {
            ", stable has too little traffic to compare".to_owned()
        };
        Verdict::Unhealthy(format!(
            "canary error rate {:.2}% ({}/{}) above {:.2}%{}",
            canary_rate * 100.0,
            canary.errors,
            canary.requests,
            policy.max_error_rate * 100.0,
            stable_part
        ))
    }

    /// Records a rollback (keeping the newest `MAX_HISTORY`), and stops any rollout.
    pub fn record_rollback(&mut self, reason: String, by: &str, window_secs: u32, now_ms: f64) {
        let recent = self.recent(window_secs, now_ms);
        self.history.push(RollbackRecord {
            at_ms: now_ms,
            canary: self.canary.clone(),
            reason,
            canary_counts: recent.canary,
            stable_counts: recent.stable,
            by: by.to_owned(),
        });
        if self.history.len() > MAX_HISTORY {
            let excess = self.history.len() - MAX_HISTORY;
            self.history.drain(..excess);
        }
        if let Some(p) = &mut self.progress {
            if p.state == ProgressState::Running || p.state == ProgressState::Paused {
                p.state = ProgressState::RolledBack;
            }
        }
    }

    /// Starts a progressive rollout at its first step; returns the weight to set.
    pub fn start(&mut self, plan: Progression, now_ms: f64) -> Weight {
        let progress = Progress {
            plan,
            step: 0,
            step_started_ms: now_ms,
            state: ProgressState::Running,
        };
        let w = progress.current_weight();
        self.progress = Some(progress);
        w
    }

    /// The alarm's decision: advance one step when the current one has baked and the canary
    /// is not unhealthy; finish after the last; roll back when unhealthy.
    pub fn on_alarm(&mut self, policy: &HealthPolicy, now_ms: f64) -> AlarmAction {
        let verdict = self.evaluate(policy, now_ms);
        let Some(p) = &mut self.progress else {
            return AlarmAction::Idle;
        };
        if p.state != ProgressState::Running {
            return AlarmAction::Idle;
        }
        if let Verdict::Unhealthy(reason) = verdict {
            return AlarmAction::Rollback(reason);
        }
        if now_ms < p.due_ms() {
            return AlarmAction::Idle;
        }
        if p.step + 1 >= p.plan.steps.len() {
            p.state = ProgressState::Done;
            return AlarmAction::Finish;
        }
        p.step += 1;
        p.step_started_ms = now_ms;
        AlarmAction::Advance(p.current_weight())
    }

    /// When the alarm should next fire, if a rollout is running.
    pub fn next_alarm_ms(&self) -> Option<f64> {
        self.progress
            .as_ref()
            .filter(|p| p.state == ProgressState::Running)
            .map(Progress::due_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn batch(canary: &str, stable: (u64, u64), canary_counts: (u64, u64)) -> Batch {
        Batch {
            stable: v("1.0.0"),
            canary: Some(v(canary)),
            counts: ChannelCounts {
                stable: Counts {
                    requests: stable.0,
                    errors: stable.1,
                },
                canary: Counts {
                    requests: canary_counts.0,
                    errors: canary_counts.1,
                },
            },
        }
    }

    fn policy() -> HealthPolicy {
        HealthPolicy {
            window_secs: 60,
            min_requests: 100,
            max_error_rate: 0.05,
            max_relative: 2.0,
            auto_rollback: true,
        }
    }

    #[test]
    fn policy_validation_names_the_field() {
        assert_eq!(
            HealthPolicy::from_value(json!({})).unwrap(),
            HealthPolicy::default()
        );
        for (value, field) in [
            (json!({"window_secs": 1}), "health.window_secs"),
            (json!({"min_requests": 0}), "health.min_requests"),
            (json!({"max_error_rate": 0}), "health.max_error_rate"),
            (json!({"max_error_rate": 1.5}), "health.max_error_rate"),
            (json!({"max_relative": 0.5}), "health.max_relative"),
            (json!({"surprise": 1}), "health"),
            (json!({"min_requests": "many"}), "health"),
        ] {
            assert_eq!(
                HealthPolicy::from_value(value.clone()).unwrap_err().field,
                field,
                "{value}"
            );
        }
    }

    #[test]
    fn progression_validation() {
        let p = Progression::from_value(json!({"steps": [1, 5, 25, 50, 100], "bake_secs": 60}))
            .unwrap();
        assert_eq!(p.steps.len(), 5);
        for bad in [
            json!({"steps": []}),
            json!({"steps": [5, 5]}),
            json!({"steps": [10, 5]}),
            json!({"steps": [0, 5]}),
            json!({"steps": [5, 101]}),
            json!({"steps": [5], "bake_secs": 0}),
            json!({"steps": "fast"}),
        ] {
            assert!(Progression::from_value(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_of_canary_errors_trips_the_rule() {
        let mut m = Monitor::default();
        m.ingest(&batch("1.1.0", (1000, 5), (200, 40)), 60, 1_000.0);
        match m.evaluate(&policy(), 1_000.0) {
            Verdict::Unhealthy(reason) => assert!(reason.contains("20.00%"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_few_samples_or_equal_rates_do_not_trip() {
        let mut m = Monitor::default();
        m.ingest(&batch("1.1.0", (1000, 0), (20, 10)), 60, 0.0);
        assert_eq!(m.evaluate(&policy(), 0.0), Verdict::TooFewSamples);

        let mut m = Monitor::default();
        m.ingest(&batch("1.1.0", (1000, 300), (300, 90)), 60, 0.0);
        assert_eq!(
            m.evaluate(&policy(), 0.0),
            Verdict::Healthy,
            "equal 30% rates"
        );

        let mut m = Monitor::default();
        m.ingest(&batch("1.1.0", (1000, 10), (300, 3)), 60, 0.0);
        assert_eq!(
            m.evaluate(&policy(), 0.0),
            Verdict::Healthy,
            "1% is under 5%"
        );
    }

    #[test]
    fn without_stable_traffic_the_absolute_threshold_decides() {
        let mut m = Monitor::default();
        m.ingest(&batch("1.1.0", (0, 0), (500, 50)), 60, 0.0);
        assert!(
            matches!(m.evaluate(&policy(), 0.0), Verdict::Unhealthy(r) if r.contains("too little traffic"))
        );
    }

    #[test]
    fn old_windows_age_out_and_a_new_canary_starts_afresh() {
        let mut m = Monitor::default();
        m.ingest(&batch("1.1.0", (1000, 0), (500, 100)), 60, 0.0);
        assert!(matches!(m.evaluate(&policy(), 0.0), Verdict::Unhealthy(_)));
        assert!(
            matches!(m.evaluate(&policy(), 61_000.0), Verdict::Unhealthy(_)),
            "previous window still counts"
        );
        assert_eq!(
            m.evaluate(&policy(), 121_000.0),
            Verdict::TooFewSamples,
            "two windows later it is gone"
        );
        m.ingest(&batch("1.2.0", (10, 0), (10, 0)), 60, 1_000.0);
        assert_eq!(m.totals.canary.requests, 10, "new canary, new counts");
        assert_eq!(m.canary, Some(v("1.2.0")));
    }

    #[test]
    fn a_healthy_rollout_advances_step_by_step_and_finishes() {
        let mut m = Monitor::default();
        let plan = Progression::from_value(json!({"steps": [1, 5, 25, 50, 100], "bake_secs": 10}))
            .unwrap();
        assert_eq!(m.start(plan, 0.0).percent(), 1);
        assert_eq!(
            m.on_alarm(&policy(), 5_000.0),
            AlarmAction::Idle,
            "not baked yet"
        );
        let mut seen = vec![];
        let mut now = 0.0;
        loop {
            now += 10_000.0;
            m.ingest(&batch("1.1.0", (500, 1), (500, 1)), 60, now);
            match m.on_alarm(&policy(), now) {
                AlarmAction::Advance(w) => seen.push(w.percent()),
                AlarmAction::Finish => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, vec![5, 25, 50, 100]);
        assert_eq!(m.progress.as_ref().unwrap().state, ProgressState::Done);
        assert_eq!(m.next_alarm_ms(), None);
        assert_eq!(m.on_alarm(&policy(), now + 100_000.0), AlarmAction::Idle);
    }

    #[test]
    fn an_unhealthy_rollout_rolls_back_and_stops() {
        let mut m = Monitor::default();
        let plan =
            Progression::from_value(json!({"steps": [10, 50, 100], "bake_secs": 10})).unwrap();
        m.start(plan, 0.0);
        m.ingest(&batch("1.1.0", (900, 0), (300, 60)), 60, 10_000.0);
        let AlarmAction::Rollback(reason) = m.on_alarm(&policy(), 10_000.0) else {
            panic!("should roll back")
        };
        m.record_rollback(reason, "rollout", 60, 10_000.0);
        assert_eq!(
            m.progress.as_ref().unwrap().state,
            ProgressState::RolledBack
        );
        assert_eq!(m.history.len(), 1);
        assert_eq!(m.history[0].canary_counts.errors, 60);
        assert_eq!(m.on_alarm(&policy(), 20_000.0), AlarmAction::Idle);
    }

    #[test]
    fn history_is_bounded() {
        let mut m = Monitor::default();
        for i in 0..(MAX_HISTORY + 10) {
            m.record_rollback(format!("r{i}"), "operator", 60, i as f64);
        }
        assert_eq!(m.history.len(), MAX_HISTORY);
        assert_eq!(m.history[0].reason, "r10");
    }
}

/// Counts an edge isolate has not yet sent to the monitor, for one bundle. Sending on every
/// request would put a Durable Object call on the hot path; instead counts are batched and
/// flushed when an error is pending (errors matter at once), when enough requests piled up,
/// or when enough time passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub stable: Version,
    pub canary: Option<Version>,
    pub counts: ChannelCounts,
    pub last_flush_ms: f64,
}

/// Longest an error waits in an isolate before it is sent to the monitor.
pub const ERROR_FLUSH_MS: u64 = 1_000;

/// When an isolate flushes its counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlushPolicy {
    pub every_ms: u64,
    pub every_requests: u64,
}

impl Pending {
    pub fn new(stable: Version, canary: Option<Version>, now_ms: f64) -> Self {
        Self {
            stable,
            canary,
            counts: ChannelCounts::default(),
            last_flush_ms: now_ms,
        }
    }

    /// Whether these counts belong to the given live versions.
    pub fn is_for(&self, stable: &Version, canary: Option<&Version>) -> bool {
        &self.stable == stable && self.canary.as_ref() == canary
    }

    /// Errors go out within a second (or `every_ms`, if shorter), so that a failing canary
    /// is judged at once without turning every error into a Durable Object call.
    pub fn due(&self, policy: FlushPolicy, now_ms: f64) -> bool {
        let c = &self.counts;
        let since = now_ms - self.last_flush_ms;
        let error_wait = policy.every_ms.min(ERROR_FLUSH_MS) as f64;
        !c.is_empty()
            && ((c.stable.errors + c.canary.errors > 0 && since >= error_wait)
                || c.stable.requests + c.canary.requests >= policy.every_requests
                || since >= policy.every_ms as f64)
    }

    /// Takes the counts as a batch and starts afresh.
    pub fn take(&mut self, now_ms: f64) -> Batch {
        self.last_flush_ms = now_ms;
        Batch {
            stable: self.stable.clone(),
            canary: self.canary.clone(),
            counts: std::mem::take(&mut self.counts),
        }
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    #[test]
    fn flushes_on_errors_volume_or_time() {
        let policy = FlushPolicy {
            every_ms: 10_000,
            every_requests: 100,
        };
        let v = |s| Version::parse(s).unwrap();
        let mut p = Pending::new(v("1.0.0"), Some(v("1.1.0")), 0.0);
        assert!(!p.due(policy, 1e9), "nothing to send");
        p.counts.stable.requests = 5;
        assert!(!p.due(policy, 5_000.0));
        assert!(p.due(policy, 10_000.0), "time");
        p.counts.canary.errors = 1;
        assert!(!p.due(policy, 500.0), "errors wait at most a second...");
        assert!(p.due(policy, 1_000.0), "...then go");
        let at_once = FlushPolicy {
            every_ms: 0,
            every_requests: 100,
        };
        assert!(
            p.due(at_once, 1.0),
            "with every_ms 0 everything goes at once"
        );
        let batch = p.take(2.0);
        assert_eq!(batch.counts.canary.errors, 1);
        assert!(p.counts.is_empty());
        p.counts.canary.requests = 100;
        assert!(p.due(policy, 3.0), "volume");
        assert!(p.is_for(&v("1.0.0"), Some(&v("1.1.0"))));
        assert!(!p.is_for(&v("1.0.0"), Some(&v("1.2.0"))));
    }
}
