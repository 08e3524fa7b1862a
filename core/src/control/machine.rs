//! The control plane of one bundle as one state machine:
//! `step(state, event, now) -> (state, effects)`.
//!
//! Events are what happens to a bundle (a health batch from the edge, an operator's
//! command, the alarm, a KV read, the outcome of a KV write); effects are what the Durable
//! Object must do (write the config to KV, set the alarm, log, answer). Nothing here does
//! I/O or reads a clock, so every path, including failed writes, 429s, stale reads and
//! races, is a table test.
//!
//! A decision that changes the config is not applied when it is made: it waits as
//! `inflight` with its `WriteConfig` effect, and is applied only by `Written(Ok)`. A failed
//! write drops it (commands answer 503, automatic decisions retry from the alarm), so the
//! state never runs ahead of KV and a failed write never skips a step.

use serde_json::json;

use super::counts::{Batch, ChannelCounts};
use super::history::{History, NewEntry};
use super::progress::{Progress, ProgressState};
use super::projection::{Projection, Provenance};
use super::tracker::{BootRule, Resolved, Tracker};
use super::verdict::{Evidence, Exposure, Judgement, TestPolicy, Verdict};
use crate::admin::Command;
use crate::config::{BundleName, Rollout, Version, Weight};
use crate::log::LogLine;
use crate::rollouts::KvRead;

/// Writes retried in place (1 s apart) before a write counts as failed.
pub const WRITE_ATTEMPTS: u32 = 2;
/// Shortest gap between two KV reads made only because a batch named other versions.
pub const MISMATCH_READ_GAP_MS: f64 = 1_000.0;
/// How often a rollout waiting for evidence is looked at again by the alarm (batches look
/// at it too, as they arrive).
pub const RECHECK_MS: f64 = 30_000.0;

/// Distinct tracked clients of a version that must have booted before its SDK is known to
/// send boot signals (one stray signal does not make silence count as failure).
pub const BOOTS_TO_KNOW: u64 = 3;
/// Shortest gap between two alarms that only resolve clients past their boot grace (each
/// alarm reads KV; under traffic the batches resolve them anyway).
pub const BOOT_SWEEP_MS: f64 = 5_000.0;
/// Stable clients a step tracks per canary client at weights below 10% (a sample).
pub const STABLE_PER_CANARY: f64 = 10.0;
/// Why nothing automatic happens without `COHORT_SECRET`.
pub const UNSIGNED: &str = "auto canary is off: the COHORT_SECRET secret is not set, so cohort cookies are signed with the public salt and anyone can forge them; set it with `wrangler secret put COHORT_SECRET`";
/// Versions remembered as sending boot signals.
pub const BOOTING_VERSIONS_KEPT: usize = 32;

/// The state of one bundle's control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub bundle: BundleName,
    /// The deployment's cohort count (a setting, not state).
    pub cohorts: u16,
    /// The authoritative config, without its `revision` (kept in `kv`).
    pub config: Option<Rollout>,
    pub kv: Projection,
    pub health: super::counts::HealthWindows,
    /// The sequential tests' evidence about the live canary (reset with `health`).
    pub evidence: Evidence,
    /// The current step's clients one by one (not persisted: after a restart the clients
    /// still pending are not counted, neither as fine nor as failed).
    pub tracker: Tracker,
    /// Versions seen sending boot signals (newest last, bounded): when stable's is among
    /// them, a client that sends none counts as a failure.
    pub booting: Vec<Version>,
    /// `COHORT_SECRET` is set (a setting): without it anyone can forge cookies offline, so
    /// nothing automatic acts.
    pub signed: bool,
    pub progress: Option<Progress>,
    pub history: History,
    /// Per-minute counts of the last 24 hours, across versions (for charts).
    pub minutes: super::minutes::Minutes,
    /// When KV was last read (not persisted).
    pub last_kv_read_ms: Option<f64>,
    /// A change waiting for its KV write (never persisted: the Durable Object settles it
    /// before it commits).
    pub inflight: Option<Inflight>,
}

/// An operator's command, with the canary it is about (when the caller named one).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub command: Command,
    pub expect_canary: Option<Version>,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// What KV holds for the bundle now.
    KvRead(KvRead),
    /// Counts from an edge isolate.
    Batch(Batch),
    Command(CommandRequest),
    Alarm,
    /// The outcome of the last `WriteConfig`.
    Written(WriteOutcome),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    Ok,
    /// KV answered 429: the key was written less than a second ago.
    RateLimited(String),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigWrite {
    pub revision: u64,
    /// The exact KV value.
    pub text: String,
    /// The canary this write is about (the config's canary before the change).
    pub expect_canary: Option<Version>,
    /// Do not write before this time (one write per second per key).
    pub not_before_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The command was applied; answer with the config and status.
    Done,
    Refused {
        status: u16,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    WriteConfig(ConfigWrite),
    SetAlarm(f64),
    Log(LogLine),
    Reply(Reply),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Command,
    Automatic,
}

/// A decided change, applied when its write succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Inflight {
    write: ConfigWrite,
    attempts: u32,
    /// The change starts a step (rollout start, step advance, resume): its pass evidence
    /// starts afresh once applied.
    new_step: bool,
    origin: Origin,
    config: Rollout,
    progress: Option<Progress>,
    entry: OwnedEntry,
    logs: Vec<LogLine>,
}

#[derive(Debug, Clone, PartialEq)]
struct OwnedEntry {
    kind: &'static str,
    by: String,
    reason: String,
    counts: Option<ChannelCounts>,
}

/// Effects collected by one step.
#[derive(Default)]
struct Out(Vec<Effect>);

impl Out {
    fn log(&mut self, event: &'static str, fields: serde_json::Value) {
        self.0.push(Effect::Log(LogLine { event, fields }));
    }
    fn refuse(&mut self, status: u16, message: impl Into<String>) {
        self.0.push(Effect::Reply(Reply::Refused {
            status,
            message: message.into(),
        }));
    }
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

/// Runs one event. Pure: the same state, event and time give the same result.
pub fn step(mut state: Control, event: Event, now_ms: f64) -> (Control, Vec<Effect>) {
    let mut out = Out::default();
    match event {
        Event::KvRead(read) => state.observe_kv(read, now_ms, &mut out),
        Event::Batch(batch) => state.on_batch(batch, now_ms, &mut out),
        Event::Command(request) => state.on_command(request, now_ms, &mut out),
        Event::Alarm => state.on_alarm(now_ms, &mut out),
        Event::Written(outcome) => state.on_written(outcome, now_ms, &mut out),
    }
    if state.inflight.is_none() {
        if let Some(at) = state.next_alarm_ms(now_ms) {
            out.0.push(Effect::SetAlarm(at));
        }
    }
    (state, out.0)
}

fn versions(config: Option<&Rollout>) -> serde_json::Value {
    match config {
        Some(c) => json!({ "stable": c.stable, "canary": c.canary, "weight": c.weight }),
        None => json!(null),
    }
}

impl Control {
    pub fn new(bundle: BundleName, cohorts: u16) -> Self {
        Self {
            bundle,
            cohorts,
            config: None,
            kv: Projection::default(),
            health: Default::default(),
            evidence: Evidence::default(),
            tracker: Tracker::default(),
            booting: Vec::new(),
            signed: true,
            progress: None,
            history: History::default(),
            minutes: Default::default(),
            last_kv_read_ms: None,
            inflight: None,
        }
    }

    /// Whether the Durable Object should read KV (and step `KvRead`) before `event`:
    /// before every command and alarm, and before a batch that would write the config, so
    /// an operator's KV write is seen before anything acts on the config; and when a batch
    /// names versions other than the config's (at most once a second), which is how a
    /// publish by KV write shows up between alarms.
    pub fn wants_kv_read(&self, event: &Event, now_ms: f64) -> bool {
        let recently = |gap: f64| self.last_kv_read_ms.is_some_and(|t| now_ms - t < gap);
        match event {
            Event::Command(_) | Event::Alarm => true,
            Event::Batch(b) => {
                let matches = self
                    .config
                    .as_ref()
                    .is_some_and(|c| b.stable == c.stable && b.canary.as_ref() == c.live_canary());
                if !matches {
                    return !recently(MISMATCH_READ_GAP_MS);
                }
                // A batch that would write the config (a cut, a step) reads KV first, like a
                // command or the alarm: an operator's write since is adopted, never undone.
                let (_, effects) = step(self.clone(), event.clone(), now_ms);
                effects.iter().any(|e| matches!(e, Effect::WriteConfig(_)))
            }
            Event::KvRead(_) | Event::Written(_) => false,
        }
    }

    /// Starts a step's evidence afresh (a new step, a new weight, a new canary).
    fn new_step(&mut self) {
        self.evidence.new_step();
        self.tracker = Tracker::default();
    }

    /// When the alarm should next fire: a failed write's retry, else the running step's
    /// end, else (waiting for evidence) the next look or the end of the longest hold.
    pub fn next_alarm_ms(&self, now_ms: f64) -> Option<f64> {
        let hold_secs = self.policy().max_hold_secs;
        let due = self.progress.as_ref().and_then(|p| match p.state {
            ProgressState::Running => Some(p.due_ms()),
            ProgressState::WaitingForEvidence => {
                let hold_end = p.due_ms() + f64::from(hold_secs) * 1000.0;
                Some(hold_end.min(now_ms + RECHECK_MS))
            }
            _ => None,
        });
        // Clients waiting for their boot signal are resolved when their grace ends.
        let grace_ms = f64::from(self.policy().boot_grace_secs) * 1000.0;
        let boot_due = self
            .tracker
            .next_due_ms(grace_ms)
            .map(|t| t.max(now_ms + BOOT_SWEEP_MS));
        let due = match (due, boot_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // A failed write waits out its backoff before anything automatic is tried again
        // (a due step would otherwise fire the alarm at once, again and again).
        self.kv.retry_at_ms.or(due)
    }

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
    fn count(&mut self, new: Resolved) {
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
    fn sweep(&mut self, now_ms: f64) {
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

    fn policy(&self) -> crate::config::HealthPolicy {
        self.config
            .as_ref()
            .map(|c| c.health_policy())
            .unwrap_or_default()
    }

    fn test_policy(&self) -> TestPolicy {
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

    // ------------------------------------------------------------ KV reads

    fn observe_kv(&mut self, read: KvRead, now_ms: f64, out: &mut Out) {
        self.last_kv_read_ms = Some(now_ms);
        let bundle = self.bundle.as_str().to_owned();
        match read {
            KvRead::Failed(detail) => {
                out.log(
                    "kv_read_failed",
                    json!({ "bundle": bundle, "detail": detail }),
                );
            }
            KvRead::Missing => {
                if self.config.is_none() {
                    return;
                }
                let own_recent =
                    self.kv.own_writes.last().is_some_and(|w| {
                        now_ms - w.written_ms < super::projection::STALE_HORIZON_MS
                    }) && self.kv.own_writes.len() == 1;
                if own_recent {
                    // Our first write has not reached this KV location yet.
                    out.log(
                        "kv_stale_read_ignored",
                        json!({ "bundle": bundle, "read": "missing" }),
                    );
                    return;
                }
                self.adopt(None, None, now_ms, out);
            }
            KvRead::Value(text) => {
                let observed = match Rollout::parse(&text) {
                    Ok(r) => r,
                    Err(e) => {
                        // The edge keeps its last good config; so does the control plane.
                        out.log(
                            "config_invalid_in_kv",
                            json!({ "bundle": bundle, "field": e.field, "detail": e.to_string() }),
                        );
                        return;
                    }
                };
                let revision = observed.revision;
                let mut content = observed;
                content.revision = None;
                if self.config.as_ref() == Some(&content) {
                    return;
                }
                match self.kv.provenance(&text, now_ms) {
                    Provenance::Current => {}
                    Provenance::Stale => out.log(
                        "kv_stale_read_ignored",
                        json!({ "bundle": bundle, "read_revision": revision, "revision": self.kv.revision }),
                    ),
                    Provenance::Foreign => self.adopt(Some(content), revision, now_ms, out),
                }
            }
        }
    }

    /// Adopts a config written to KV by someone else: the operator wins. A rollout pauses
    /// when the weight moved under it, and ends when the canary changed.
    fn adopt(
        &mut self,
        config: Option<Rollout>,
        revision: Option<u64>,
        now_ms: f64,
        out: &mut Out,
    ) {
        let before = self.config.take();
        let first = before.is_none() && self.history.entries.is_empty();
        self.kv.revision = self.kv.revision.max(revision.unwrap_or(0));
        let canary_now = config.as_ref().and_then(|c| c.canary.clone());
        if let Some(p) = self.progress.as_mut() {
            if p.state.is_active() {
                let (state, event, reason) = if Some(&p.canary) != canary_now.as_ref() {
                    (
                        ProgressState::Superseded,
                        "rollout_superseded",
                        format!(
                            "the canary changed from {} to {} by a write to KV",
                            p.canary,
                            canary_now.as_ref().map_or("none".into(), |v| v.to_string())
                        ),
                    )
                } else {
                    (
                        ProgressState::Paused,
                        "rollout_paused",
                        "an operator wrote the config to KV".to_owned(),
                    )
                };
                p.end_or_pause(state, reason.clone());
                out.log(
                    event,
                    json!({ "bundle": self.bundle.as_str(), "rollout_canary": p.canary, "canary": canary_now, "reason": reason }),
                );
            }
        }
        if before.as_ref().map(|c| c.weight) != config.as_ref().map(|c| c.weight) {
            self.new_step();
        }
        self.config = config;
        if first {
            return;
        }
        let reason = format!(
            "adopted a config written to KV by someone else: {} -> {}",
            versions(before.as_ref()),
            versions(self.config.as_ref())
        );
        out.log(
            "kv_adopted",
            json!({ "bundle": self.bundle.as_str(), "before": versions(before.as_ref()), "after": versions(self.config.as_ref()) }),
        );
        self.history.push(
            NewEntry {
                kind: "kv_adopted",
                canary: canary_now.as_ref(),
                weight: self.config.as_ref().map(|c| c.weight),
                by: "kv",
                reason,
                counts: None,
            },
            now_ms,
        );
    }

    // ------------------------------------------------------------ health batches

    fn on_batch(&mut self, batch: Batch, now_ms: f64, out: &mut Out) {
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
        if !self.maybe_cut(now_ms, out) {
            self.step_if_due(now_ms, out);
        }
    }

    /// Cuts a serving canary the verdict finds worse than tolerated (unless automatic
    /// rollback is off), by `rollout` while one moves, else `auto`.
    fn maybe_cut(&mut self, now_ms: f64, out: &mut Out) -> bool {
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

    // ------------------------------------------------------------ alarm

    fn on_alarm(&mut self, now_ms: f64, out: &mut Out) {
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
    fn step_if_due(&mut self, now_ms: f64, out: &mut Out) {
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
                self.history.push(
                    NewEntry {
                        kind: "rollout_done",
                        canary: Some(&p.canary),
                        weight: Some(config.weight),
                        by: "rollout",
                        reason: passed,
                        counts: None,
                    },
                    now_ms,
                );
                out.log(
                    "rollout_done",
                    json!({ "bundle": self.bundle.as_str(), "canary": p.canary, "weight": config.weight }),
                );
            }
            Some(weight) => {
                let mut next = config.clone();
                next.weight = weight;
                let mut progress = p.clone();
                progress.step += 1;
                progress.step_started_ms = now_ms;
                progress.state = ProgressState::Running;
                progress.reason = None;
                let log = LogLine {
                    event: "step_advance",
                    fields: json!({
                        "bundle": self.bundle.as_str(), "canary": p.canary, "weight": weight,
                        "step": progress.step, "steps": p.plan.steps,
                        "canary_clients": judgement.canary.clients, "canary_errors": judgement.canary.errors,
                    }),
                };
                self.propose(
                    next,
                    Some(progress),
                    OwnedEntry {
                        kind: "step_advance",
                        by: "rollout".into(),
                        reason: passed,
                        counts: None,
                    },
                    vec![log],
                    Origin::Automatic,
                    now_ms,
                    out,
                );
                if let Some(inflight) = self.inflight.as_mut() {
                    inflight.new_step = true;
                }
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
            out.log(
                "rollout_paused",
                json!({ "bundle": bundle, "canary": p.canary, "reason": reason }),
            );
            self.history.push(
                NewEntry {
                    kind: "rollout_paused",
                    canary: Some(&p.canary),
                    weight: None,
                    by: "rollout",
                    reason,
                    counts: None,
                },
                now_ms,
            );
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

    // ------------------------------------------------------------ commands

    fn on_command(&mut self, request: CommandRequest, now_ms: f64, out: &mut Out) {
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
                if config.canary.is_none() {
                    return out.refuse(409, "no canary to roll back");
                }
                self.propose_rollback(reason, &by, Origin::Command, now_ms, out);
            }
            Command::Promote => self.promote(config, &by, now_ms, out),
            Command::RevokeOverrides => self.revoke_overrides(config, &by, now_ms, out),
            Command::Publish(_) => {}
        }
    }

    fn set_weight(&mut self, config: Rollout, weight: Weight, by: &str, now: f64, out: &mut Out) {
        if config.canary.is_none() && weight > Weight::ZERO {
            return out.refuse(409, "no canary to weigh; publish one first");
        }
        if weight > Weight::ZERO && weight.canary_cohorts(self.cohorts) == 0 {
            return out.refuse(
                400,
                format!(
                    "invalid command: field `weight`: {}% puts no cohort on the canary with COHORTS={} (one cohort is {}%)",
                    weight.percent(),
                    self.cohorts,
                    100.0 / f64::from(self.cohorts)
                ),
            );
        }
        let mut next = config.clone();
        next.weight = weight;
        // An operator's hand on the weight pauses an automatic rollout.
        let mut progress = self.progress.clone();
        let mut logs = vec![];
        if let Some(p) = progress.as_mut() {
            if p.state.is_moving() {
                p.end_or_pause(ProgressState::Paused, format!("{by} set the weight"));
                logs.push(LogLine {
                    event: "rollout_paused",
                    fields: json!({ "bundle": self.bundle.as_str(), "canary": p.canary, "reason": "weight set by hand" }),
                });
            }
        }
        logs.push(LogLine {
            event: "set_weight",
            fields: json!({ "bundle": self.bundle.as_str(), "canary": config.canary, "weight": weight, "by": by }),
        });
        let entry = OwnedEntry {
            kind: "set_weight",
            by: by.into(),
            reason: format!(
                "weight {}% -> {}%",
                config.weight.percent(),
                weight.percent()
            ),
            counts: None,
        };
        self.propose(next, progress, entry, logs, Origin::Command, now, out);
        // A new weight, a new exposure ratio: the tests start afresh.
        if let Some(inflight) = self.inflight.as_mut() {
            inflight.new_step = true;
        }
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
        let progress = Progress::start(canary.clone(), plan, now);
        let mut next = config;
        next.weight = progress.current_weight();
        let logs = vec![LogLine {
            event: "rollout_started",
            fields: json!({
                "bundle": self.bundle.as_str(), "canary": canary, "weight": next.weight,
                "steps": progress.plan.steps, "bake_secs": progress.plan.bake_secs, "by": by,
            }),
        }];
        let entry = OwnedEntry {
            kind: "rollout_started",
            by: by.into(),
            reason: format!(
                "steps {:?}, {} s each",
                progress
                    .plan
                    .steps
                    .iter()
                    .map(|w| w.percent())
                    .collect::<Vec<_>>(),
                progress.plan.bake_secs
            ),
            counts: None,
        };
        self.propose(next, Some(progress), entry, logs, Origin::Command, now, out);
        if let Some(inflight) = self.inflight.as_mut() {
            inflight.new_step = true;
        }
    }

    fn pause(&mut self, by: &str, now: f64, out: &mut Out) {
        let Some(p) = self.progress.as_mut().filter(|p| p.state.is_moving()) else {
            return out.refuse(409, "no running rollout to pause");
        };
        p.end_or_pause(ProgressState::Paused, format!("paused by {by}"));
        let canary = p.canary.clone();
        out.log(
            "rollout_paused",
            json!({ "bundle": self.bundle.as_str(), "canary": canary, "by": by }),
        );
        self.history.push(
            NewEntry {
                kind: "rollout_paused",
                canary: Some(&canary),
                weight: None,
                by,
                reason: "paused".into(),
                counts: None,
            },
            now,
        );
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
        let log = LogLine {
            event: "rollout_resumed",
            fields: json!({ "bundle": self.bundle.as_str(), "canary": p.canary, "weight": p.current_weight(), "by": by }),
        };
        let entry = OwnedEntry {
            kind: "rollout_resumed",
            by: by.into(),
            reason: format!("resumed at step {}/{}", p.step + 1, p.plan.steps.len()),
            counts: None,
        };
        if config.weight == p.current_weight() {
            // Nothing to write: the step's weight is the live one.
            self.progress = Some(resumed);
            self.new_step();
            self.apply_entry(&entry, Some(&p.canary), Some(config.weight), now);
            out.0.push(Effect::Log(log));
            out.0.push(Effect::Reply(Reply::Done));
            return;
        }
        let mut next = config;
        next.weight = p.current_weight();
        self.propose(
            next,
            Some(resumed),
            entry,
            vec![log],
            Origin::Command,
            now,
            out,
        );
        // The step's weight is written: its evidence starts afresh once applied (set after
        // `propose`, which creates the inflight change).
        if let Some(inflight) = self.inflight.as_mut() {
            inflight.new_step = true;
        }
    }

    fn promote(&mut self, config: Rollout, by: &str, now: f64, out: &mut Out) {
        let Some(canary) = config.canary.clone() else {
            return out.refuse(409, "no canary to promote");
        };
        let mut next = config.clone();
        next.stable = canary.clone();
        next.canary = None;
        next.weight = Weight::ZERO;
        next.extra.remove("rollback");
        let progress = self.progress.clone().map(|mut p| {
            if p.state.is_active() {
                p.state = ProgressState::Done;
                p.reason = Some("promoted".into());
            }
            p
        });
        let logs = vec![LogLine {
            event: "promote",
            fields: json!({ "bundle": self.bundle.as_str(), "canary": canary, "previous_stable": config.stable, "by": by }),
        }];
        let entry = OwnedEntry {
            kind: "promote",
            by: by.into(),
            reason: format!("{canary} replaces {} as stable", config.stable),
            counts: None,
        };
        self.propose(next, progress, entry, logs, Origin::Command, now, out);
    }

    /// Voids every override token of the bundle issued until now: the config says so, and
    /// the edge reads it with the config (no other state to keep or check).
    fn revoke_overrides(&mut self, config: Rollout, by: &str, now: f64, out: &mut Out) {
        let at = (now / 1000.0) as u64;
        let mut next = config;
        next.overrides_not_before = Some(at);
        let logs = vec![LogLine {
            event: "overrides_revoked",
            fields: json!({ "bundle": self.bundle.as_str(), "not_before": at, "by": by }),
        }];
        let entry = OwnedEntry {
            kind: "overrides_revoked",
            by: by.into(),
            reason: format!("override tokens issued before {} are void", iso_time(now)),
            counts: None,
        };
        let progress = self.progress.clone();
        self.propose(next, progress, entry, logs, Origin::Command, now, out);
    }

    fn publish(&mut self, version: Version, by: &str, now: f64, out: &mut Out) {
        let (next, reason) = match self.config.clone() {
            None => (
                Rollout {
                    stable: version.clone(),
                    canary: None,
                    weight: Weight::ZERO,
                    cohort_offset: None,
                    overrides_not_before: None,
                    health: None,
                    progression: None,
                    revision: None,
                    extra: Default::default(),
                },
                format!("{version} published as stable (new bundle)"),
            ),
            Some(c) if c.stable == version || c.canary.as_ref() == Some(&version) => {
                return out.refuse(
                    409,
                    format!(
                        "{} {version} is already live; versions are immutable: publish a new version",
                        self.bundle
                    ),
                );
            }
            Some(c) => {
                let mut next = c.clone();
                next.canary = Some(version.clone());
                next.weight = Weight::ZERO;
                next.cohort_offset = None;
                next.extra.remove("rollback");
                (
                    next,
                    format!("{version} published as the canary, dark (weight 0)"),
                )
            }
        };
        let mut logs = vec![];
        let progress = self.progress.clone().map(|mut p| {
            if p.end_or_pause(
                ProgressState::Superseded,
                format!("canary {version} was published"),
            ) {
                logs.push(LogLine {
                    event: "rollout_superseded",
                    fields: json!({ "bundle": self.bundle.as_str(), "rollout_canary": p.canary, "canary": version }),
                });
            }
            p
        });
        logs.push(LogLine {
            event: "publish",
            fields: json!({ "bundle": self.bundle.as_str(), "version": version, "by": by }),
        });
        let entry = OwnedEntry {
            kind: "publish",
            by: by.into(),
            reason,
            counts: None,
        };
        self.propose(next, progress, entry, logs, Origin::Command, now, out);
    }

    fn propose_rollback(
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
        let mut next = config.clone();
        next.weight = Weight::ZERO;
        next.extra.insert(
            "rollback".into(),
            json!({ "at": iso_time(now), "reason": reason, "by": by }),
        );
        let progress = self.progress.clone().map(|mut p| {
            if p.state.is_active() {
                p.state = ProgressState::RolledBack;
                p.reason = Some(reason.clone());
            }
            p
        });
        let logs = vec![LogLine {
            event: "rollback",
            fields: json!({ "bundle": self.bundle.as_str(), "canary": config.canary, "reason": reason, "by": by }),
        }];
        let entry = OwnedEntry {
            kind: "rollback",
            by: by.into(),
            reason,
            // The step's evidence, `no_boot` failures included (the windows' sketches see
            // traffic, not silence).
            counts: Some(self.evidence.seen),
        };
        self.propose(next, progress, entry, logs, origin, now, out);
    }

    // ------------------------------------------------------------ writes

    #[allow(clippy::too_many_arguments)]
    fn propose(
        &mut self,
        config: Rollout,
        progress: Option<Progress>,
        entry: OwnedEntry,
        logs: Vec<LogLine>,
        origin: Origin,
        now: f64,
        out: &mut Out,
    ) {
        let revision = self.kv.revision + 1;
        let mut stamped = config.clone();
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
            new_step: false,
            origin,
            config,
            progress,
            entry,
            logs,
        });
    }

    fn on_written(&mut self, outcome: WriteOutcome, now: f64, out: &mut Out) {
        let Some(mut inflight) = self.inflight.take() else {
            return;
        };
        let detail = match outcome {
            WriteOutcome::Ok => return self.apply(inflight, now, out),
            WriteOutcome::RateLimited(d) | WriteOutcome::Failed(d) => d,
        };
        let rate_limited = detail.contains("429");
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
                "canary": inflight.write.expect_canary, "change": inflight.entry.kind,
                "attempts": inflight.attempts, "detail": detail,
            }),
        );
        match inflight.origin {
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
        let Inflight {
            write,
            origin,
            config,
            progress,
            entry,
            logs,
            new_step,
            ..
        } = inflight;
        if new_step {
            self.new_step();
        }
        self.kv.record_write(write.revision, &write.text, now);
        let canary = config.canary.clone();
        let weight = config.weight;
        self.config = Some(config);
        self.progress = progress;
        self.apply_entry(&entry, canary.as_ref(), Some(weight), now);
        out.0.extend(logs.into_iter().map(Effect::Log));
        if origin == Origin::Command {
            out.0.push(Effect::Reply(Reply::Done));
        }
    }

    fn apply_entry(
        &mut self,
        entry: &OwnedEntry,
        canary: Option<&Version>,
        weight: Option<Weight>,
        now: f64,
    ) {
        self.history.push(
            NewEntry {
                kind: entry.kind,
                canary,
                weight,
                by: &entry.by,
                reason: entry.reason.clone(),
                counts: entry.counts,
            },
            now,
        );
    }
}

/// `2026-11-23T10:13:01.738Z` for milliseconds since the epoch (UTC; the civil-date
/// conversion of Howard Hinnant's `civil_from_days`).
pub fn iso_time(ms: f64) -> String {
    let total_ms = if ms.is_finite() {
        ms.max(0.0) as i64
    } else {
        0
    };
    let (days, rest) = (
        total_ms.div_euclid(86_400_000),
        total_ms.rem_euclid(86_400_000),
    );
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}
