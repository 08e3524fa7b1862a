//! The control plane of one bundle as one state machine:
//! `step(state, event, now) -> (state, effects)`.
//!
//! Events are what happens to a bundle (a health batch from the edge, an operator's
//! command, the alarm, a KV read, the outcome of a KV write); effects are what the host
//! must do (read KV, write the config to KV, set the alarm, log, answer). Nothing here does
//! I/O or reads a clock, so every path, including failed writes, 429s, stale reads and
//! races, is a table test; `driver::run` carries the effects out, for the Durable Object
//! and for the tests alike.
//!
//! A decision that changes the config is not applied when it is made: it is one
//! [`Change`](super::writes::Change), waiting as `inflight` with its `WriteConfig` effect,
//! applied only by `Written(Ok)`. A failed write drops it (commands answer 503, automatic
//! decisions retry from the alarm), so the state never runs ahead of KV and a failed write
//! never skips a step. Nothing writes without a KV read first: a command or the alarm waits
//! for one (`Effect::ReadKv`), and so does a change a batch decides, so an operator's write
//! to KV is adopted before anything acts on the config.
//!
//! The machine's concerns, one file each: `adoption` (KV reads, an operator's write wins),
//! `health` (batches, evidence, the cut), `stepping` (the alarm, steps, holds), `commands`
//! (the admin API's writes), `writes` (one shape for a change, and its write).

use super::health::{Cut, Decided};
use super::history::History;
use super::progress::{Progress, ProgressState};
use super::projection::Projection;
use super::tracker::Tracker;
use super::verdict::Evidence;
use super::writes::Inflight;
use crate::config::{BundleName, Rollout, Version};
use crate::health::counts::Batch;
use crate::kv::KvRead;
use crate::log::LogLine;
use crate::ops::admin::Command;

pub use super::health::{stable_sample, tracked_canary_share};
pub use crate::time::iso_time;

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
    pub health: super::windows::HealthWindows,
    /// The sequential tests' evidence about the live canary (reset with `health`).
    pub evidence: Evidence,
    /// The current step's clients one by one (stored as it changes: a restart mid-step
    /// forgets no client, network or waiting signal).
    pub tracker: Tracker,
    /// The step's error signatures (and the previous step's), stored as they change: they
    /// explain the verdict, never change it.
    pub signatures: super::signatures::Signatures,
    /// The signatures' HMAC key, derived from `COHORT_SECRET` (a setting, not state).
    pub signature_key: super::signatures::SignatureKey,
    /// The health policy the running step started with, while the config's has changed
    /// since: a policy change applies from the next step (the step's tests were sized on
    /// the policy it started with).
    pub step_health: Option<crate::config::HealthPolicy>,
    /// Versions seen sending boot signals (newest last, bounded): when stable's is among
    /// them, a client that sends none counts as a failure.
    pub booting: Vec<Version>,
    /// `COHORT_SECRET` is set (a setting): without it anyone can forge cookies offline, so
    /// nothing automatic acts.
    pub signed: bool,
    pub progress: Option<Progress>,
    /// The verdict as it stood when the canary was cut, while that canary stays dark.
    pub cut: Option<Cut>,
    pub history: History,
    /// Per-minute counts of the last 24 hours, across versions (for charts).
    pub minutes: super::minutes::Minutes,
    /// When KV was last read (not persisted).
    pub last_kv_read_ms: Option<f64>,
    /// A change waiting for its KV write (never persisted: the driver settles it before
    /// the Durable Object commits).
    pub inflight: Option<Inflight>,
    /// What waits for the KV read asked for by `Effect::ReadKv` (never persisted either).
    pub pending: Option<Pending>,
    /// The verdict's basis when `inflight` was decided (kept with it, so never persisted).
    pub(super) decided: Option<Decided>,
    /// This step runs on the result of a KV read: a change may be written now.
    pub(super) read_fresh: bool,
}

/// What a KV read holds back, run again once its result is in.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Command(CommandRequest),
    /// A batch about other versions than the config's: taken once KV is read.
    Batch(Batch),
    Alarm,
    /// A batch's decision (a cut, a step): decided again on the fresh config.
    Evaluate,
}

impl Pending {
    /// What waits, in a word (for logs: a batch may carry thousands of events).
    pub fn kind(&self) -> &'static str {
        match self {
            Pending::Command(_) => "command",
            Pending::Batch(_) => "batch",
            Pending::Alarm => "alarm",
            Pending::Evaluate => "evaluate",
        }
    }
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
    /// Read the bundle's config from KV and step `KvRead` with what it holds.
    ReadKv,
    WriteConfig(ConfigWrite),
    SetAlarm(f64),
    Log(LogLine),
    Reply(Reply),
    /// Tell the team (webhooks): the host keeps it in its outbox and delivers it after the
    /// state is committed.
    Notify(Box<super::notify::Notification>),
}

/// Effects collected by one step.
#[derive(Default)]
pub(super) struct Out(pub(super) Vec<Effect>);

impl Out {
    pub(super) fn log(&mut self, event: &'static str, fields: serde_json::Value) {
        self.0.push(Effect::Log(LogLine { event, fields }));
    }
    pub(super) fn refuse(&mut self, status: u16, message: impl Into<String>) {
        self.0.push(Effect::Reply(Reply::Refused {
            status,
            message: message.into(),
        }));
    }
}

/// Runs one event. Pure: the same state, event and time give the same result.
pub fn step(mut state: Control, event: Event, now_ms: f64) -> (Control, Vec<Effect>) {
    let mut out = Out::default();
    let before = state.before_event(&event);
    let progress_before = state.progress_before();
    let first_seq = state.history.next_seq;
    state.read_fresh = matches!(event, Event::KvRead(_));
    match event {
        Event::KvRead(read) => {
            state.observe_kv(read, now_ms, &mut out);
            if let Some(pending) = state.pending.take() {
                state.run_pending(pending, now_ms, &mut out);
            }
        }
        Event::Batch(batch) => state.on_batch(batch, now_ms, &mut out),
        // Commands and the alarm act on the config: KV is read first.
        Event::Command(request) => state.wait_for_read(Pending::Command(request), &mut out),
        Event::Alarm => state.wait_for_read(Pending::Alarm, &mut out),
        Event::Written(outcome) => state.on_written(outcome, now_ms, &mut out),
    }
    state.read_fresh = false;
    state.notifications(first_seq, progress_before, now_ms, &mut out);
    state.keep_cut(before);
    if state.inflight.is_none() && state.pending.is_none() {
        if let Some(at) = state.next_alarm_ms(now_ms) {
            out.0.push(Effect::SetAlarm(at));
        }
    }
    (state, out.0)
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
            signatures: Default::default(),
            signature_key: Default::default(),
            step_health: None,
            booting: Vec::new(),
            signed: true,
            progress: None,
            cut: None,
            history: History::default(),
            minutes: Default::default(),
            last_kv_read_ms: None,
            inflight: None,
            pending: None,
            decided: None,
            read_fresh: false,
        }
    }

    /// Holds `what` back until KV is read (`Effect::ReadKv`); a second ask while one read is
    /// pending keeps the first (the read serves both: the later is dropped and logged).
    pub(super) fn wait_for_read(&mut self, what: Pending, out: &mut Out) {
        if let Some(waiting) = &self.pending {
            out.log(
                "event_dropped",
                serde_json::json!({ "bundle": self.bundle.as_str(), "reason": "a KV read is pending", "waiting": waiting.kind() }),
            );
            if let Pending::Command(_) = what {
                out.refuse(409, "another change is being read; try again");
            }
            return;
        }
        self.pending = Some(what);
        out.0.push(Effect::ReadKv);
    }

    /// Runs what waited for the KV read just observed.
    fn run_pending(&mut self, pending: Pending, now_ms: f64, out: &mut Out) {
        match pending {
            Pending::Command(request) => self.on_command(request, now_ms, out),
            Pending::Alarm => self.on_alarm(now_ms, out),
            Pending::Batch(batch) => self.on_batch(batch, now_ms, out),
            Pending::Evaluate => self.evaluate(now_ms, out),
        }
    }

    /// Starts a step's evidence afresh (a new step, a new weight, a new canary).
    pub(super) fn new_step(&mut self) {
        self.evidence.new_step();
        self.tracker.reset();
        self.signatures.reset();
        self.step_health = None;
    }

    /// Takes `next` as the authoritative config. A change that starts no step keeps the
    /// running step on the health policy it started with.
    pub(super) fn replace_config(&mut self, next: Option<Rollout>, starts_step: bool) {
        if starts_step {
            self.new_step();
        } else {
            let running = self.policy();
            let next_policy = next.as_ref().map(|c| c.health_policy()).unwrap_or_default();
            self.step_health = (running != next_policy).then_some(running);
        }
        self.config = next;
    }

    /// When the alarm should next fire: a failed write's retry, else the running step's
    /// end, else (waiting for evidence) the next look or the end of the longest hold, else
    /// (frozen) the freeze's end.
    pub fn next_alarm_ms(&self, now_ms: f64) -> Option<f64> {
        let hold_secs = self.policy().max_hold_secs;
        let due = self.progress.as_ref().and_then(|p| match p.state {
            ProgressState::Running => Some(p.due_ms()),
            ProgressState::WaitingForEvidence => {
                let hold_end = p.due_ms() + f64::from(hold_secs) * 1000.0;
                Some(hold_end.min(now_ms + RECHECK_MS))
            }
            // At the freeze's end (at once if it is over); an approval needs no alarm.
            ProgressState::Frozen => Some(self.freeze(now_ms).map_or(now_ms, |(until, _)| until)),
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
}
