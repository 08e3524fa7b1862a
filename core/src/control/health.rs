//! Health: batches from the edge become the step's evidence (the tracker, the windows,
//! the minutes), the verdict is asked at every flush, and a canary found worse than
//! tolerated is cut.

use serde_json::json;

use super::counts::Batch;
use super::machine::{
    Control, Out, Pending, BOOTING_VERSIONS_KEPT, BOOTS_TO_KNOW, MISMATCH_READ_GAP_MS,
    STABLE_PER_CANARY,
};
use super::tracker::{BootRule, Resolved};
use super::verdict::{Evidence, Exposure, Judgement, TestPolicy, Verdict};
use super::writes::Origin;

/// The share of stable's clients a step tracks at effective weight `w` (a fraction): all of
/// them from 10% on; below, about `STABLE_PER_CANARY` per canary client.
pub fn stable_sample(w: f64) -> f64 {
    if w <= 0.0 || w >= 1.0 {
        return 1.0;
    }
    (STABLE_PER_CANARY * w / (1.0 - w)).min(1.0)
}

/// The canary's share of a step's tracked clients at effective weight `w`.
pub fn tracked_canary_share(w: f64) -> f64 {
    if w <= 0.0 {
        return 0.0;
    }
    w / (w + (1.0 - w) * stable_sample(w))
}

impl Control {
    /// How silence is judged in this step.
    pub fn boot_rule(&self) -> BootRule {
        let (expected, stable_present) = match &self.config {
            Some(c) => (
                self.booting.contains(&c.stable),
                c.weight.canary_cohorts(self.cohorts) < self.cohorts,
            ),
            None => (false, true),
        };
        BootRule {
            expected,
            stable_present,
            grace_ms: f64::from(self.policy().boot_grace_secs) * 1000.0,
            stable_sample: self.stable_sample(),
        }
    }

    /// The effective weight: the share of clients the edge serves the canary.
    fn weight_share(&self) -> f64 {
        self.config.as_ref().map_or(0.0, |c| {
            f64::from(c.weight.canary_cohorts(self.cohorts)) / f64::from(self.cohorts.max(1))
        })
    }

    /// The share of stable's clients a step tracks: all of them from 10% on; below, about
    /// `STABLE_PER_CANARY` per canary client, so that the step's table (`MAX_TRACKED`) holds
    /// enough canary clients at 1%.
    fn stable_sample(&self) -> f64 {
        stable_sample(self.weight_share())
    }

    /// The canary's share of the step's tracked clients: the effective weight, corrected for
    /// the stable sample.
    pub fn exposure(&self) -> Exposure {
        Exposure {
            canary_share: tracked_canary_share(self.weight_share()),
            judge_silence: self.boot_rule().expected,
        }
    }

    /// Applies tracked clients' new counts to the evidence, and learns which versions boot.
    pub(super) fn count(&mut self, new: Resolved) {
        self.evidence.add(new);
        let Some(config) = self.config.as_ref() else {
            return;
        };
        let versions = [Some(&config.stable), config.live_canary()];
        for (i, version) in versions.into_iter().enumerate() {
            let Some(version) = version else { continue };
            if self.tracker.boots[i] >= BOOTS_TO_KNOW && !self.booting.contains(version) {
                self.booting.push(version.clone());
                if self.booting.len() > BOOTING_VERSIONS_KEPT {
                    self.booting.remove(0);
                }
            }
        }
    }

    /// Resolves the clients whose boot grace is over.
    pub(super) fn sweep(&mut self, now_ms: f64) {
        let live = self
            .config
            .as_ref()
            .is_some_and(|c| self.health.is_for(&c.stable, c.live_canary()));
        if live {
            let rule = self.boot_rule();
            let new = self.tracker.sweep(rule, now_ms);
            self.count(new);
        }
    }

    pub(super) fn policy(&self) -> crate::config::HealthPolicy {
        self.config
            .as_ref()
            .map(|c| c.health_policy())
            .unwrap_or_default()
    }

    pub(super) fn test_policy(&self) -> TestPolicy {
        TestPolicy::from_health(&self.policy())
    }

    /// The sequential verdict on the live canary, with the numbers behind it.
    pub fn judge(&self) -> Judgement {
        let policy = self.test_policy();
        let live = self
            .config
            .as_ref()
            .filter(|c| self.health.is_for(&c.stable, c.live_canary()));
        let evidence = if live.is_some() {
            &self.evidence
        } else {
            &Evidence::default()
        };
        evidence.judge(self.exposure(), &policy)
    }

    pub(super) fn on_batch(&mut self, batch: Batch, now_ms: f64, out: &mut Out) {
        // A batch about other versions than the config's (or with no config yet): KV may
        // have changed (a publish by KV write, a new bundle), so the batch waits for a read,
        // at most once a second, and is taken on what it finds.
        let live_now = self
            .config
            .as_ref()
            .is_some_and(|c| batch.stable == c.stable && batch.canary.as_ref() == c.live_canary());
        let recently = self
            .last_kv_read_ms
            .is_some_and(|t| now_ms - t < MISMATCH_READ_GAP_MS);
        if !live_now && !self.read_fresh && !recently && self.pending.is_none() {
            return self.wait_for_read(Pending::Batch(batch), out);
        }
        let Some(config) = &self.config else {
            out.log(
                "batch_ignored",
                json!({ "bundle": self.bundle.as_str(), "reason": "no config", "batch_canary": batch.canary }),
            );
            return;
        };
        let live = config.live_canary().cloned();
        if batch.stable != config.stable || batch.canary != live {
            // Counts about versions that are no longer live (a stale isolate, a batch from
            // before a rollback or publish) must never judge the current canary.
            out.log(
                "batch_ignored",
                json!({
                    "bundle": self.bundle.as_str(),
                    "reason": "versions are not the live ones",
                    "batch_stable": batch.stable, "batch_canary": batch.canary,
                    "stable": config.stable, "canary": live,
                }),
            );
            return;
        }
        let window = config.health_policy().window_secs;
        let (stable, current_weight) = (config.stable.clone(), config.weight);
        if !self.health.is_for(&stable, live.as_ref()) {
            self.health.reset(&stable, live.as_ref());
            self.new_step();
        }
        self.health.add(&batch.clients, window, now_ms);
        self.minutes
            .add(&stable, live.as_ref(), &batch.clients, now_ms);
        // Evidence about the current step only from clients served at its weight.
        if batch.weight.is_none_or(|w| w == current_weight) {
            let rule = self.boot_rule();
            let new = self.tracker.apply(&batch.events, rule, now_ms);
            self.count(new);
        }
        // Evaluated at every flush: a cut at once, a waiting step as soon as it passes.
        self.evaluate(now_ms, out);
    }

    /// A cut if the verdict says so, else the step if it is due and has passed.
    pub(super) fn evaluate(&mut self, now_ms: f64, out: &mut Out) {
        if !self.maybe_cut(now_ms, out) {
            self.step_if_due(now_ms, out);
        }
    }

    /// Cuts a serving canary the verdict finds worse than tolerated (unless automatic
    /// rollback is off), by `rollout` while one moves, else `auto`.
    pub(super) fn maybe_cut(&mut self, now_ms: f64, out: &mut Out) -> bool {
        let by = if self.progress.as_ref().is_some_and(|p| p.state.is_moving()) {
            "rollout"
        } else {
            "auto"
        };
        let Some(config) = &self.config else {
            return false;
        };
        if self.inflight.is_some()
            || !self.signed
            || !config.health_policy().auto_rollback
            || config.serving_canary(self.cohorts).is_none()
        {
            return false;
        }
        let judgement = self.judge();
        if judgement.verdict != Verdict::Cut {
            return false;
        }
        self.propose_rollback(judgement.reason, by, Origin::Automatic, now_ms, out);
        true
    }
}
