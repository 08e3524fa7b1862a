//! Webhook notifications: what the machine tells a team (`Effect::Notify`), and the two
//! formats a receiver gets (Slack-compatible, and generic JSON signed with HMAC-SHA256).
//!
//! The machine derives every notification in one place ([`Control::notifications`], run by
//! `machine::step` after each event): from the history entries the event added (their
//! kind says which notify), and from the rollout's state where it changed without an entry
//! of its own (superseded, paused by a weight or a KV write, waiting for evidence). Pure;
//! the host keeps them in a durable outbox and delivers them (retries: [`retry_delay_ms`]).

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::history::Entry;
use super::machine::{Control, Effect, Out};
use super::progress::ProgressState;
use super::verdict::{Estimate, Family, Judgement};
use crate::config::Version;
use crate::settings::Format;
use crate::time::iso_time;

/// The JSON format's signature header: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Canary-Signature";
/// The idempotency key of a delivery (also the body's `id`): retries send the same one.
pub const DELIVERY_HEADER: &str = "X-Canary-Delivery";
/// Waits before the 2nd, 3rd, … attempt of a delivery; after the last, it is given up.
pub const RETRY_DELAYS_MS: [f64; 5] = [1_000.0, 5_000.0, 30_000.0, 120_000.0, 600_000.0];
/// Most deliveries kept waiting in the outbox (the oldest are dropped).
pub const OUTBOX_CAP: usize = 500;
/// Longest wait for a receiver's answer.
pub const DELIVERY_TIMEOUT_MS: u64 = 5_000;

/// The wait after `failed` failed attempts before the next one; `None`: give up.
pub fn retry_delay_ms(failed: u32) -> Option<f64> {
    let i = usize::try_from(failed.checked_sub(1)?).ok()?;
    RETRY_DELAYS_MS.get(i).copied()
}

/// One side of the evidence: distinct clients, those with failures, and the failure rate's
/// interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub clients: u64,
    pub failed: u64,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl From<&Estimate> for Side {
    fn from(e: &Estimate) -> Self {
        Self {
            clients: e.clients,
            failed: e.errors,
            rate: e.rate,
            low: e.low,
            high: e.high,
        }
    }
}

/// The evidence behind a notification: the verdict, in a word and in words, with the
/// counts of the family it is about (`errors`: clients that ran the SDK and those with an
/// error; `silence`: resolved clients and those that never booted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    pub verdict: String,
    pub family: Family,
    pub canary: Side,
    pub stable: Side,
    pub summary: String,
    /// The boot-time guard's figures (medians with intervals, the slowdown), when it judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<super::verdict::boot_time::BootJudgement>,
}

impl From<&Judgement> for Evidence {
    fn from(j: &Judgement) -> Self {
        Self {
            verdict: serde_json::to_value(j.verdict)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            family: j.family,
            canary: Side::from(j.deciding().0),
            stable: Side::from(j.deciding().1),
            summary: j.reason.clone(),
            boot_time: j.boot_time,
        }
    }
}

/// What a team is told about one event of a bundle's rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The idempotency key: `<bundle>-<seq>-<event>` (`seq`: the history entry's).
    pub id: String,
    /// `rollback`, `step_advanced`, `waiting_for_evidence`, `paused`, `done`, `superseded`,
    /// `publish`, `promote`, `awaiting_approval`, `approved`, `frozen`.
    pub event: &'static str,
    pub bundle: String,
    pub stable: Option<Version>,
    pub canary: Option<Version>,
    /// The canary's weight now, in percent.
    pub weight: Option<u8>,
    /// The weight the rollout holds before (awaiting approval, frozen), in percent.
    pub next_weight: Option<u8>,
    /// Who acted: an operator, `auto` (the health rule), `rollout`, `kv`.
    pub by: String,
    /// A rollback decided by the edge (`auto`, `rollout`), not a person.
    pub automatic: bool,
    pub reason: String,
    pub evidence: Option<Evidence>,
    /// A rollback's top error signature new in the canary (`signatures`), if any.
    pub new_error: Option<super::signatures::Signature>,
    pub at_ms: f64,
    /// Until when it holds (waiting for evidence: when the rollout pauses; frozen: the
    /// window's end).
    pub until_ms: Option<f64>,
}

/// Who decides by rule, not by hand.
fn is_automatic(by: &str) -> bool {
    matches!(by, "auto" | "rollout")
}

/// The event a history entry's kind notifies, if any.
fn event_of(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "rollback" => "rollback",
        "step_advance" => "step_advanced",
        "rollout_paused" => "paused",
        "rollout_done" => "done",
        "publish" => "publish",
        "promote" => "promote",
        "awaiting_approval" => "awaiting_approval",
        "approved" => "approved",
        "frozen" => "frozen",
        "policy_changed" => "policy_changed",
        _ => return None,
    })
}

/// The rollout's state before an event (what [`Control::notifications`] compares).
pub(super) type ProgressBefore = Option<(ProgressState, Version)>;

impl Control {
    pub(super) fn progress_before(&self) -> ProgressBefore {
        self.progress.as_ref().map(|p| (p.state, p.canary.clone()))
    }

    /// The notifications of one event: one per history entry it added of a kind that
    /// notifies, and one per change of the rollout's state that has no entry of its own.
    /// Run before `keep_cut`, while a change's `decided` basis (the evidence it was decided
    /// on, before its new step emptied it) is still kept.
    pub(super) fn notifications(
        &self,
        first_seq: u64,
        before: ProgressBefore,
        now_ms: f64,
        out: &mut Out,
    ) {
        let added: Vec<&Entry> = self
            .history
            .entries
            .iter()
            .filter(|e| e.seq >= first_seq)
            .collect();
        for e in &added {
            if let Some(event) = event_of(&e.kind) {
                let n =
                    self.notification(event, e.seq, e.canary.clone(), &e.by, &e.reason, e.at_ms);
                out.0.push(Effect::Notify(Box::new(n)));
            }
        }
        let Some(p) = &self.progress else { return };
        let changed = before
            .as_ref()
            .is_none_or(|(s, c)| *s != p.state || *c != p.canary);
        if !changed {
            return;
        }
        let was = before.map(|(s, _)| s);
        let event = match p.state {
            ProgressState::Superseded => "superseded",
            ProgressState::Paused if !added.iter().any(|e| e.kind == "rollout_paused") => "paused",
            ProgressState::WaitingForEvidence if was == Some(ProgressState::Running) => {
                "waiting_for_evidence"
            }
            _ => return,
        };
        let by = added.last().map_or("rollout", |e| e.by.as_str());
        let reason = p.reason.clone().unwrap_or_default();
        let mut n = self.notification(
            event,
            self.history.next_seq,
            Some(p.canary.clone()),
            by,
            &reason,
            now_ms,
        );
        if event == "waiting_for_evidence" {
            let hold_ms = f64::from(self.policy().max_hold_secs) * 1000.0;
            n.until_ms = Some(p.due_ms() + hold_ms);
        }
        out.0.push(Effect::Notify(Box::new(n)));
    }

    fn notification(
        &self,
        event: &'static str,
        seq: u64,
        canary: Option<Version>,
        by: &str,
        reason: &str,
        at_ms: f64,
    ) -> Notification {
        let config = self.config.as_ref();
        // A change applied from its write was decided on `decided` (its new step has
        // emptied the evidence since); anything else, on the evidence as it stands.
        let judgement = match &self.decided {
            Some(d) => d.basis.judge(),
            None => self.judge(),
        };
        let evidence = match event {
            "publish" | "promote" | "policy_changed" => None,
            _ => Some(Evidence::from(&judgement)),
        };
        let next_weight = match event {
            "awaiting_approval" | "frozen" => self
                .progress
                .as_ref()
                .and_then(|p| p.next_weight())
                .map(|w| w.percent()),
            _ => None,
        };
        let until_ms = match event {
            "frozen" => self.freeze(at_ms).map(|(until, _)| until),
            _ => None,
        };
        Notification {
            id: format!("{}-{seq}-{event}", self.bundle),
            event,
            bundle: self.bundle.as_str().to_owned(),
            stable: config.map(|c| c.stable.clone()),
            canary: canary.or_else(|| config.and_then(|c| c.canary.clone())),
            weight: config.map(|c| c.weight.percent()),
            next_weight,
            by: by.to_owned(),
            automatic: event == "rollback" && is_automatic(by),
            reason: reason.to_owned(),
            evidence,
            // The step just cut is the previous one once the rollback's step has begun.
            new_error: (event == "rollback")
                .then(|| self.signatures.top_new())
                .flatten(),
            at_ms,
            until_ms,
        }
    }
}

/// The console's view of `bundle` on `console_host` (as the console addresses it:
/// `#/b/<bundle>`).
pub fn console_link(console_host: Option<&str>, bundle: &str) -> Option<String> {
    console_host
        .filter(|h| !h.is_empty())
        .map(|h| format!("https://{h}/__canary/ui/#/b/{bundle}"))
}

fn or_none(v: Option<&Version>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

impl Notification {
    /// One line: what happened to which bundle.
    pub fn title(&self) -> String {
        let canary = or_none(self.canary.as_ref());
        let weight = self.weight.unwrap_or(0);
        let what = match self.event {
            "rollback" if self.automatic => {
                format!("canary {canary} was rolled back automatically")
            }
            "rollback" => format!("canary {canary} was rolled back by {}", self.by),
            "step_advanced" => format!("canary {canary} advanced to {weight}%"),
            "waiting_for_evidence" => format!(
                "canary {canary} waits for evidence at {weight}%{}",
                self.until_ms
                    .map(|t| format!(" (pauses at {})", iso_time(t)))
                    .unwrap_or_default()
            ),
            "paused" => format!("the rollout of {canary} was paused by {}", self.by),
            "done" => format!("the rollout of {canary} is done at {weight}%"),
            "superseded" => format!("the rollout of {canary} was superseded"),
            "publish" => format!("{} published by {}", self.reason, self.by),
            "promote" => format!(
                "{} promoted to stable by {}",
                or_none(self.stable.as_ref()),
                self.by
            ),
            "awaiting_approval" => format!(
                "canary {canary} awaits approval for {}%",
                self.next_weight.unwrap_or(100)
            ),
            "approved" => format!("canary {canary} approved to {weight}% by {}", self.by),
            "policy_changed" => format!(
                "the policy was changed by {} (from the next step): {}",
                self.by, self.reason
            ),
            "frozen" => format!(
                "the rollout of {canary} is frozen{}",
                self.until_ms
                    .map(|t| format!(" until {}", iso_time(t)))
                    .unwrap_or_default()
            ),
            other => other.to_owned(),
        };
        format!("{}: {what}", self.bundle)
    }

    /// The generic JSON format (signed by the host with [`signature`]).
    pub fn json(&self, console_host: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "event": self.event,
            "bundle": self.bundle,
            "stable": self.stable,
            "canary": self.canary,
            "weight": self.weight,
            "next_weight": self.next_weight,
            "by": self.by,
            "automatic": self.automatic,
            "reason": self.reason,
            "evidence": self.evidence,
            "new_error": self.new_error,
            "at": iso_time(self.at_ms),
            "at_ms": self.at_ms,
            "until": self.until_ms.map(iso_time),
            "text": self.title(),
            "url": console_link(console_host, &self.bundle),
        })
    }

    /// The Slack-compatible format: `text` (the title), and `blocks`: the title, then one
    /// section per fact.
    pub fn slack(&self, console_host: Option<&str>) -> Value {
        let mut facts: Vec<(&str, String)> = vec![
            ("Event", self.event.to_owned()),
            ("Bundle", self.bundle.clone()),
            ("Stable", or_none(self.stable.as_ref())),
            ("Canary", or_none(self.canary.as_ref())),
        ];
        if let Some(w) = self.weight {
            facts.push(("Weight", format!("{w}%")));
        }
        if let Some(w) = self.next_weight {
            facts.push(("Next step", format!("{w}%")));
        }
        facts.push(("By", self.by.clone()));
        facts.push(("Reason", self.reason.clone()));
        if let Some(e) = &self.evidence {
            let failed = match e.family {
                Family::Errors | Family::BootTime => "with failures",
                Family::Silence => "never booted",
            };
            facts.push((
                "Evidence",
                format!(
                    "{}: canary {} clients, {} {failed} ({}); stable {} clients, {} {failed} ({})",
                    e.verdict,
                    e.canary.clients,
                    e.canary.failed,
                    interval(&e.canary),
                    e.stable.clients,
                    e.stable.failed,
                    interval(&e.stable)
                ),
            ));
        }
        if let Some(s) = &self.new_error {
            facts.push((
                "New error",
                format!(
                    "{}: {} ({} canary clients, none on stable)",
                    s.kind, s.sample, s.clients.canary
                ),
            ));
        }
        if let Some(b) = self.evidence.as_ref().and_then(|e| e.boot_time) {
            facts.push((
                "Boot time",
                format!(
                    "canary median {:.0} ms ({} clients), stable {:.0} ms ({}): {:+.0}% (interval {:+.0}% to {:+.0}%, tolerated +{:.0}%)",
                    b.canary.median_ms,
                    b.canary.clients,
                    b.stable.median_ms,
                    b.stable.clients,
                    b.slowdown * 100.0,
                    b.slowdown_low * 100.0,
                    b.slowdown_high * 100.0,
                    b.max_slowdown * 100.0
                ),
            ));
        }
        if let Some(until) = self.until_ms {
            facts.push(("Until", iso_time(until)));
        }
        facts.push(("Time", iso_time(self.at_ms)));
        if let Some(link) = console_link(console_host, &self.bundle) {
            facts.push(("Console", format!("<{link}|{}>", self.bundle)));
        }
        let title = self.title();
        let mut blocks = vec![json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!("*{}*", escape(&title)) },
        })];
        blocks.extend(facts.into_iter().map(|(name, value)| {
            // A link is already mrkdwn; everything else is escaped.
            let value = if name == "Console" {
                value
            } else {
                escape(&value)
            };
            json!({
                "type": "section",
                "text": { "type": "mrkdwn", "text": format!("*{name}:* {value}") },
            })
        }));
        json!({ "text": title, "blocks": blocks })
    }

    /// The body sent to a receiver of `format`.
    pub fn body(&self, format: Format, console_host: Option<&str>) -> String {
        match format {
            Format::Slack => self.slack(console_host),
            Format::Json => self.json(console_host),
        }
        .to_string()
    }
}

/// `0.40%–2.10%`: a failure rate's interval.
fn interval(s: &Side) -> String {
    format!("interval {:.2}–{:.2}%", s.low * 100.0, s.high * 100.0)
}

/// Slack's mrkdwn control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`: the `X-Canary-Signature` value.
pub fn signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The headers of one delivery (besides `Content-Type: application/json`).
pub fn headers(
    format: Format,
    id: &str,
    body: &str,
    secret: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![(DELIVERY_HEADER, id.to_owned())];
    if let (Format::Json, Some(secret)) = (format, secret) {
        headers.push((SIGNATURE_HEADER, signature(secret, body)));
    }
    headers
}

#[cfg(test)]
mod tests;
