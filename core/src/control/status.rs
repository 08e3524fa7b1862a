//! The admin view of a bundle's control plane: counts, verdict, rollout, history and the
//! state of the KV projection. Thresholds, counts and history are for operators only: the
//! public status endpoint shows none of this.

use serde_json::{json, Value};

use super::machine::{iso_time, Control};

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

pub fn admin_json(c: &Control, now_ms: f64) -> Value {
    let policy = c
        .config
        .as_ref()
        .map(|r| r.health_policy())
        .unwrap_or_default();
    let recent = c.health.recent(policy.window_secs, now_ms);
    let j = c.judge();
    let rule = c.boot_rule();
    let t = &c.tracker;
    json!({
        // Nothing automatic acts without COHORT_SECRET: say so first.
        "error": (!c.signed).then_some(super::machine::UNSIGNED),
        "boot_signals": boot_signals(c),
        "stable": c.health.stable,
        "canary": c.health.canary,
        "recent": recent,
        "recent_error_rate": { "stable": recent.stable.rate(), "canary": recent.canary.rate() },
        "totals": c.health.totals.counts(),
        // The sequential verdict with the numbers behind it: estimates with intervals
        // (since the canary went live), the log e-values against their log thresholds.
        "verdict": {
            "state": j.verdict,
            "reason": j.reason,
            "canary": j.canary,
            "stable": j.stable,
            "step_clients": j.step_clients,
            "min_clients": policy.min_clients,
            "hostile_clients_discounted": j.discount,
            // Resolved clients and the silent ones (no_boot), per channel: tested apart.
            "silence": c.evidence.silence,
            // The step's clients one by one: who booted, who went silent, who was refused.
            "tracked": {
                "pending": t.pending(),
                "boots": { "stable": t.boots[0], "canary": t.boots[1] },
                "no_boot": { "stable": t.no_boot[0], "canary": t.no_boot[1] },
                "left_out_without_boot": t.left_out,
                "refused": t.refused,
                "silence_counts_as_failure": rule.expected && rule.stable_present,
            },
            "cut": { "relative": j.worse_relative, "absolute": j.worse_absolute, "threshold": j.cut_threshold },
            "pass": { "relative": j.better_relative, "absolute": j.better_absolute, "combined": j.better, "threshold": j.pass_threshold },
        },
        "policy": policy,
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
