//! The admin view of a bundle's control plane: counts, verdict, rollout, history and the
//! state of the KV projection. Thresholds, counts and history are for operators only: the
//! public status endpoint shows none of this.

use serde_json::{json, Value};

use super::health::Cut;
use super::machine::{iso_time, Control};
use super::outlook::outlook;
use super::progress::ProgressState;
use super::timeline::{timeline, Stage};
use super::verdict::Judgement;
use crate::health::counts::ChannelCounts;

/// A verdict with the numbers behind it: estimates with intervals, the log e-values against
/// their log thresholds, and the silence family's counts.
fn verdict_json(j: &Judgement, silence: &ChannelCounts, min_clients: u64) -> Value {
    json!({
        "state": j.verdict,
        "reason": j.reason,
        "canary": j.canary,
        "stable": j.stable,
        "step_clients": j.step_clients,
        "min_clients": min_clients,
        "hostile_clients_discounted": j.discount,
        // Resolved clients and the silent ones (no_boot), per channel: tested apart.
        "silence": silence,
        "cut": { "relative": j.worse_relative, "absolute": j.worse_absolute, "threshold": j.cut_threshold },
        "pass": { "relative": j.better_relative, "absolute": j.better_absolute, "combined": j.better, "threshold": j.pass_threshold },
        // The family the reason is about (errors, silence, boot_time).
        "family": j.family,
        // The boot-time guard (null until stable's boot times arrive): each channel's median
        // boot time with its interval, the slowdown with its interval, the log e-values
        // (compared with the cut and pass thresholds above) and the thresholds tested (ms).
        "boot_time": j.boot_time,
    })
}

/// A kept cut: when, which canary at which weight, who and why, and the verdict as it stood
/// (the shape of the live `verdict`, without the live step's `tracked` clients).
pub fn cut_json(cut: &Cut) -> Value {
    let b = &cut.basis;
    json!({
        "at": iso_time(cut.at_ms),
        "canary": cut.canary,
        "weight": cut.weight,
        "by": cut.by,
        "reason": cut.reason,
        "verdict": verdict_json(&cut.judge(), &b.evidence.silence, b.policy.min_clients),
    })
}

/// The current canary's release (or, after a promote, the promoted one's rollout) as
/// stages, oldest first; `null` when there is none.
fn timeline_json(c: &Control) -> Value {
    let canary = c
        .config
        .as_ref()
        .and_then(|r| r.canary.as_ref())
        .or(c.progress.as_ref().map(|p| &p.canary));
    let Some(canary) = canary else {
        return Value::Null;
    };
    let progress = c.progress.as_ref().filter(|p| &p.canary == canary);
    let stage = |s: &Stage| {
        json!({
            "kind": s.kind,
            "step": s.step,
            "weight": s.weight,
            "state": s.state,
            "started_at": s.started_ms.map(iso_time),
            "started_by": s.started_by,
            "ended_at": s.ended_ms.map(iso_time),
            "ended_by": s.ended_by,
            "reason": s.reason,
        })
    };
    json!({
        "canary": canary,
        "rollout": progress.map(|p| json!({
            "state": p.state,
            "steps": p.plan.steps,
            "bake_secs": p.plan.bake_secs,
        })),
        "stages": timeline(canary, progress, &c.history).iter().map(stage).collect::<Vec<_>>(),
    })
}

/// Whether the bundle's SDK sends boot signals, per version, in words for the operator.
fn boot_signals(c: &Control) -> Value {
    let Some(config) = &c.config else {
        return Value::Null;
    };
    let stable = c.booting.contains(&config.stable);
    let canary = config.live_canary().is_some_and(|v| c.booting.contains(v));
    let note = match (stable, canary) {
        (true, _) => "stable sends boot signals: a client that loads and sends none within the grace counts as a failure (no_boot)",
        (false, true) => "boot signals from the canary only: silence is not judged until stable's SDK sends them too",
        (false, false) => "no boot signals from either channel: the SDK does not send them, so only errors are judged (see sdk/)",
    };
    json!({ "stable": stable, "canary": canary, "note": note })
}

/// Whose evidence counts: the pages of `health.origins`, or, without them, any page's, with
/// a warning for the operator (a third-party page can recruit its visitors as evidence).
fn evidence_json(c: &Control) -> Value {
    let origins = c.config.as_ref().and_then(|r| r.page_origins());
    json!({
        "origins": origins,
        "warning": origins.is_none().then_some(ANY_PAGE),
    })
}

/// The warning of a config without `health.origins`.
pub const ANY_PAGE: &str = "evidence is accepted from any page: without health.origins, a third-party page that embeds the SDK's floating URL can recruit its visitors to load the canary and report failures for it (or boots); list the merchant's page origins in health.origins";

/// The approval gate: whether the rollout awaits a person now, and the step that waits (or
/// will wait) for one; the config's gated weights.
fn gate_json(c: &Control) -> Value {
    let approve = c
        .config
        .as_ref()
        .and_then(|r| r.progression.as_ref())
        .map(|p| p.approve.clone())
        .unwrap_or_default();
    let progress = c.progress.as_ref().filter(|p| p.state.is_active());
    let awaiting = progress.is_some_and(|p| p.state == ProgressState::AwaitingApproval);
    // The next gated step of the rollout (the one awaiting approval, when it does).
    let next = progress.and_then(|p| {
        p.plan
            .steps
            .iter()
            .enumerate()
            .skip(p.step + 1)
            .find(|(_, w)| approve.contains(w))
            .map(|(i, w)| (i + 1, *w))
    });
    json!({
        "awaiting_approval": awaiting,
        "step": next.map(|(n, _)| n),
        "weight": next.map(|(_, w)| w),
        "canary": progress.map(|p| &p.canary),
        "approve": approve,
    })
}

/// The freeze: whether one holds now, until when (windows that touch join), which window,
/// and the config's windows.
fn freeze_json(c: &Control, now_ms: f64) -> Value {
    let windows = c
        .config
        .as_ref()
        .and_then(|r| r.progression.as_ref())
        .map(|p| p.freeze.clone())
        .unwrap_or_default();
    let now = c.freeze(now_ms);
    json!({
        "active": now.is_some(),
        "until": now.as_ref().map(|(until, _)| iso_time(*until)),
        "window": now.map(|(_, w)| w),
        "windows": windows,
    })
}

pub fn admin_json(c: &Control, now_ms: f64) -> Value {
    let policy = c.policy();
    let recent = c.health.recent(policy.window_secs, now_ms);
    let rule = c.boot_rule();
    let t = &c.tracker;
    let mut verdict = verdict_json(&c.judge(), &c.evidence.silence, policy.min_clients);
    // The step's clients one by one: who booted, who went silent, who was refused.
    verdict["tracked"] = json!({
        "pending": t.pending(),
        "boots": { "stable": t.boots[0], "canary": t.boots[1] },
        "no_boot": { "stable": t.no_boot[0], "canary": t.no_boot[1] },
        "left_out_without_boot": t.left_out,
        "refused": t.refused,
        "silence_counts_as_failure": rule.expected && rule.stable_present,
    });
    json!({
        // Nothing automatic acts without COHORT_SECRET: say so first.
        "error": (!c.signed).then_some(super::machine::UNSIGNED),
        "boot_signals": boot_signals(c),
        // Which pages' loads and reports count (`health.origins`), or a warning.
        "evidence": evidence_json(c),
        "stable": c.health.stable,
        "canary": c.health.canary,
        "recent": recent,
        "recent_error_rate": { "stable": recent.stable.rate(), "canary": recent.canary.rate() },
        "totals": c.health.totals.counts(),
        // The sequential verdict with the numbers behind it: estimates with intervals
        // (since the canary went live), the log e-values against their log thresholds.
        "verdict": verdict,
        // Which errors the step's clients report, and which are new in the canary
        // (`signatures::SignaturesStatus`): they explain the verdict.
        "error_signatures": c.signatures.status(),
        // The verdict as it stood when the canary was cut, kept while it stays dark.
        "cut": c.cut.as_ref().map(cut_json),
        // The steps of the current (or last) canary's release, from the history.
        "timeline": timeline_json(c),
        // The running step's health policy; `next_policy` when a change waits for the next step.
        "policy": policy,
        "next_policy": c.step_health.as_ref().and(c.config.as_ref()).map(|r| r.health_policy()),
        // Approval gates and freeze windows (`progression.approve`, `progression.freeze`).
        "gate": gate_json(c),
        "freeze": freeze_json(c, now_ms),
        "progress": c.progress.as_ref().map(|p| json!({
            "canary": p.canary,
            "state": p.state,
            "reason": p.reason,
            "step": p.step,
            "steps": p.plan.steps,
            "bake_secs": p.plan.bake_secs,
            "weight": p.current_weight(),
            "next_step_at": iso_time(p.due_ms()),
            "hold_until": iso_time(p.due_ms() + f64::from(policy.max_hold_secs) * 1000.0),
            // While a step waits (or bakes): the clients it still needs and when, at its
            // traffic so far, it will decide; `below_needed_traffic` ahead of a pause.
            "outlook": matches!(p.state, ProgressState::Running | ProgressState::WaitingForEvidence)
                .then(|| {
                    let b = c.basis();
                    let hold_until = p.due_ms() + f64::from(policy.max_hold_secs) * 1000.0;
                    outlook(&b.evidence, b.exposure, &b.policy, p.step_started_ms, hold_until, now_ms)
                })
                .flatten(),
        })),
        // Rollbacks, oldest first, with the counts that caused them.
        "history": c.history.of_kind("rollback").map(|e| json!({
            "at": iso_time(e.at_ms),
            "canary": e.canary,
            "reason": e.reason,
            "by": e.by,
            "canary_counts": e.counts.map(|x| x.canary).unwrap_or_default(),
            "stable_counts": e.counts.map(|x| x.stable).unwrap_or_default(),
        })).collect::<Vec<_>>(),
        // Everything that happened, newest first.
        "events": c.history.entries.iter().rev().map(|e| json!({
            "seq": e.seq,
            "at": iso_time(e.at_ms),
            "kind": e.kind,
            "canary": e.canary,
            "weight": e.weight,
            "by": e.by,
            "reason": e.reason,
        })).collect::<Vec<_>>(),
        "kv": {
            "revision": c.kv.revision,
            "last_write_at": c.kv.last_write_ms.map(iso_time),
            "retry_at": c.kv.retry_at_ms.map(iso_time),
            "failed_writes": c.kv.failures,
        },
    })
}
