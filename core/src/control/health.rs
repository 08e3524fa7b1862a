//! Health: batches from the edge become the step's evidence (the tracker, the windows,
//! the minutes), the verdict is asked at every flush, and a canary found worse than
//! tolerated is cut. The verdict as it stood at the cut is kept with the rollback ([`Cut`]):
//! once the canary is dark there is nothing left to judge, and the evidence is what the
//! operator needs to see.

use serde_json::json;

use super::history::Entry;
use super::machine::{
    Control, Event, Out, Pending, BOOTING_VERSIONS_KEPT, BOOTS_TO_KNOW, MISMATCH_READ_GAP_MS,
    STABLE_PER_CANARY,
};
use super::tracker::{BootRule, Resolved};
use super::verdict::{Evidence, Exposure, Judgement, TestPolicy, Verdict};
use super::writes::Origin;
use crate::config::{Rollout, Version, Weight};
use crate::health::counts::Batch;

/// What a verdict is computed from: the step's evidence, the canary's exposure and the
/// tests' knobs. The verdict is a pure function of it, so keeping these numbers keeps the
/// verdict (its estimates, intervals, e-values and words).
#[derive(Debug, Clone, PartialEq)]
pub struct Basis {
    pub evidence: Evidence,
    pub exposure: Exposure,
    pub policy: TestPolicy,
}

impl Basis {
    pub fn judge(&self) -> Judgement {
        self.evidence.judge(self.exposure, &self.policy)
    }
}

/// A verdict's basis as a change was decided, with the weight the canary served then: kept
/// while the change waits for its write (never stored: the driver settles every write
/// before the state is committed).
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub basis: Basis,
    pub weight: Weight,
}

/// The verdict as it stood when the canary was cut, kept with the rollback: the evidence
/// (clients, clients with a failure, per channel, and the silence family), how it was
/// judged, who cut and why. Kept (and stored) while the cut canary stays the config's dark
/// canary: a new canary, a promote, or the canary serving again (a new rollout, a weight)
/// drops it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// When the rollback took effect (its history entry's time).
    pub at_ms: f64,
    pub canary: Version,
    /// The weight the canary served when it was cut.
    pub weight: Weight,
    /// Who cut it (`auto`, `rollout`, an operator, `kv`) and why, as in the history.
    pub by: String,
    pub reason: String,
    pub basis: Basis,
}

impl Cut {
    /// The verdict at the cut, with the numbers behind it.
    pub fn judge(&self) -> Judgement {
        self.basis.judge()
    }

    /// Whether the cut is still the canary's last word: its canary is the config's, dark.
    pub fn is_current(&self, config: Option<&Rollout>) -> bool {
        config.is_some_and(|c| c.canary.as_ref() == Some(&self.canary) && c.weight == Weight::ZERO)
    }
}

/// What [`Control::keep_cut`] compares after an event.
pub(super) struct BeforeEvent {
    /// The first history entry the event may add.
    first_seq: u64,
    /// No change was waiting for its write.
    idle: bool,
    /// Before a KV read while the canary serves: the canary and the verdict's basis, in
    /// case the read adopts an operator's rollback written to KV (the adoption starts a new
    /// step, which empties the evidence).
    serving: Option<(Version, Decided)>,
}

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
            self.refresh_early(rule, now_ms);
        }
    }

    /// The early silence test's data as the tracker sees it now, and the boot-time guard's
    /// (only while silence is judged).
    fn refresh_early(&mut self, rule: BootRule, now_ms: f64) {
        let judged = rule.expected && rule.stable_present;
        self.evidence.early = if judged {
            self.tracker.early_silence(now_ms, rule.grace_ms)
        } else {
            Default::default()
        };
        if judged {
            self.evidence.boot.clone_from(self.tracker.boot_times());
        } else {
            self.evidence.boot = Default::default();
        }
    }

    /// The running step's health policy: the one it started with (a change applies from
    /// the next step).
    pub fn policy(&self) -> crate::config::HealthPolicy {
        if let Some(pinned) = &self.step_health {
            return pinned.clone();
        }
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
        self.basis().judge()
    }

    /// What the verdict on the live canary is computed from (no evidence while no canary
    /// is live, or the counts are about other versions).
    pub fn basis(&self) -> Basis {
        let live = self
            .config
            .as_ref()
            .is_some_and(|c| self.health.is_for(&c.stable, c.live_canary()));
        Basis {
            evidence: if live {
                self.evidence.clone()
            } else {
                Evidence::default()
            },
            exposure: self.exposure(),
            policy: self.test_policy(),
        }
    }

    /// What `keep_cut` needs to know of the state before `event`.
    pub(super) fn before_event(&self, event: &Event) -> BeforeEvent {
        let serving = match event {
            Event::KvRead(_) => self.config.as_ref().and_then(|c| {
                let canary = c.serving_canary(self.cohorts)?.clone();
                let decided = Decided {
                    basis: self.basis(),
                    weight: c.weight,
                };
                Some((canary, decided))
            }),
            _ => None,
        };
        BeforeEvent {
            first_seq: self.history.next_seq,
            idle: self.inflight.is_none(),
            serving,
        }
    }

    /// Keeps the verdict of a cut with it, after every event: a change's basis as it is
    /// proposed (the config and the evidence stay as they are until its write is applied),
    /// a rollback's once applied, an operator's rollback to KV once adopted; and drops a
    /// kept cut once its canary is no longer the dark canary.
    pub(super) fn keep_cut(&mut self, before: BeforeEvent) {
        if before.idle && self.inflight.is_some() {
            self.decided = self.config.as_ref().map(|c| Decided {
                basis: self.basis(),
                weight: c.weight,
            });
        }
        // The entries this event added (an event adds a few at most), newest first.
        let mut serving = before.serving;
        let added = self
            .history
            .entries
            .iter()
            .rev()
            .take_while(|e| e.seq >= before.first_seq);
        for e in added {
            let decided = match e.kind.as_str() {
                "rollback" => self.decided.take(),
                // Weight 0 for the canary that served: a rollback by a write to KV.
                "kv_adopted" if e.weight == Some(Weight::ZERO) => serving
                    .take_if(|(canary, _)| e.canary.as_ref() == Some(canary))
                    .map(|(_, d)| d),
                _ => None,
            };
            if let (Some(decided), Some(canary)) = (decided, &e.canary) {
                self.cut = Some(cut_of(e, canary, decided, self.config.as_ref()));
                break;
            }
        }
        if self.inflight.is_none() {
            self.decided = None;
        }
        if self
            .cut
            .as_ref()
            .is_some_and(|c| !c.is_current(self.config.as_ref()))
        {
            self.cut = None;
        }
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
        let window = self.policy().window_secs;
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
            self.refresh_early(rule, now_ms);
            self.signatures
                .apply(&batch.reports, &self.signature_key, live.as_ref());
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
            || !self.policy().auto_rollback
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

/// The cut recorded by history entry `e` (a rollback, or a rollback written to KV: then its
/// `rollback` record says who and why, when it has one).
fn cut_of(e: &Entry, canary: &Version, decided: Decided, config: Option<&Rollout>) -> Cut {
    let record = (e.kind == "kv_adopted")
        .then(|| config.and_then(|c| c.extra.get("rollback")))
        .flatten();
    let field = |name: &str| {
        record
            .and_then(|r| r.get(name))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Cut {
        at_ms: e.at_ms,
        canary: canary.clone(),
        weight: decided.weight,
        by: field("by").unwrap_or_else(|| e.by.clone()),
        reason: field("reason").unwrap_or_else(|| e.reason.clone()),
        basis: decided.basis,
    }
}
