//! Verdicts: whole progressive rollouts, simulated, under the sequential rule the control
//! plane runs (`canary_core::control::verdict`) and under the fixed-threshold rule it
//! replaced, side by side.
//!
//! `cargo bench --bench verdict_sim -- [--quick] [--out results.csv]`
//!
//! A rollout: steps 1, 5, 25, 50, 100 (% of clients on the canary), bake 5 min each. Canary
//! traffic: N new canary clients per minute at every step (N = 5, 50, 500, 5,000); stable gets
//! N·(100 − w)/w a minute at weight w. Stable's error rate is 1% of its clients; the canary's
//! 1% (healthy), 1.5%, 3%, 10% or 100% (total failure). Each client is one Bernoulli trial.
//! Both rules look every 2 s (errors reach the control plane within a second) and at each
//! step's end.
//!
//! - **sequential** (today's): defaults of `HealthPolicy` (99% confidence, canary tolerated up
//!   to 2x stable, floor 2%, 200 clients a step, longest hold 60 min). A step advances only on
//!   a pass; short of one it waits, re-checked at every flush, and pauses after the hold.
//! - **fixed** (the rule before, src/health.rs at commit 6501b78): over the current and
//!   previous 60 s window, once the canary has 200 loads it is cut when its error rate is
//!   above 2% and at least 2x stable's (when stable has 200 too); a step advances at the end
//!   of its bake unless the verdict is unhealthy — too few samples counted as healthy.
//!
//! Per cell (≥ 1,000 seeded runs; `--quick`: 40): false rollbacks per 100 healthy rollouts;
//! runs in which a bad (≥ 3x) canary reached a later step than the first; median and 95th
//! percentile canary clients exposed and minutes until the cut; minutes a healthy rollout
//! takes (median) and how many paused.

#[path = "common.rs"]
#[allow(dead_code)] // only the PRNG is used here
mod common;

use std::io::Write;

use canary_core::config::HealthPolicy;
use canary_core::control::counts::{ChannelCounts, Counts};
use canary_core::control::verdict::{Evidence, Increment, TestPolicy, Verdict};
use common::Rng;

const STEPS: [u32; 5] = [1, 5, 25, 50, 100];
/// Seconds between looks: errors reach the control plane within a second of a flush, so
/// at any real traffic it looks about every second; 2 s keeps the full run short.
const TICK_SECS: u32 = 2;
const BAKE_TICKS: u32 = 300 / TICK_SECS; // 5 min
const TICK_MIN: f64 = TICK_SECS as f64 / 60.0;
const STABLE_RATE: f64 = 0.01;
const TRAFFIC: [f64; 4] = [5.0, 50.0, 500.0, 5_000.0];
const FACTORS: [f64; 5] = [1.0, 1.5, 3.0, 10.0, 100.0];

#[derive(Clone, Copy, PartialEq)]
enum Rule {
    Sequential,
    Fixed,
}

#[derive(Default, Clone)]
struct Outcome {
    cut: bool,
    paused: bool,
    done: bool,
    /// Highest step index reached (0 = the first).
    max_step: usize,
    canary_clients_at_cut: f64,
    minutes_at_cut: f64,
    minutes: f64,
}

/// A Poisson draw (Knuth below 30, normal approximation above).
fn poisson(rng: &mut Rng, lambda: f64) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda < 30.0 {
        let l = (-lambda).exp();
        let (mut k, mut p) = (0u64, 1.0);
        loop {
            p *= rng.f64();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
    (lambda + lambda.sqrt() * normal(rng)).round().max(0.0) as u64
}

fn normal(rng: &mut Rng) -> f64 {
    let u1 = rng.f64().max(1e-300);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn binomial(rng: &mut Rng, n: u64, p: f64) -> u64 {
    if p >= 1.0 {
        return n;
    }
    if n < 50 {
        return (0..n).filter(|_| rng.f64() < p).count() as u64;
    }
    let mean = n as f64 * p;
    let sd = (mean * (1.0 - p)).sqrt();
    (mean + sd * normal(rng)).round().clamp(0.0, n as f64) as u64
}

fn rollout(rule: Rule, per_min: f64, canary_rate: f64, rng: &mut Rng) -> Outcome {
    let defaults = HealthPolicy::default();
    let policy = TestPolicy {
        confidence: defaults.confidence,
        max_increase: defaults.max_increase,
        min_error_rate: std::env::var("VERDICT_FLOOR")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.min_error_rate),
        min_clients: defaults.min_clients,
    };
    let max_hold_ticks = defaults.max_hold_secs / TICK_SECS;
    let mut out = Outcome::default();
    let mut exposed = 0.0;
    let mut tick = 0u32;
    for (step, &w) in STEPS.iter().enumerate() {
        out.max_step = step;
        let stable_per_min = per_min * f64::from(100 - w) / f64::from(w);
        let mut evidence = Evidence::default();
        // The fixed rule's two 60 s windows, as (canary n, canary x, stable n, stable x) per tick.
        let mut recent: Vec<[u64; 4]> = Vec::new();
        let mut step_ticks = 0u32;
        loop {
            tick += 1;
            step_ticks += 1;
            let nc = poisson(rng, per_min * TICK_MIN);
            let ns = poisson(rng, stable_per_min * TICK_MIN);
            let (xc, xs) = (
                binomial(rng, nc, canary_rate),
                binomial(rng, ns, STABLE_RATE),
            );
            exposed += nc as f64;
            let minutes = f64::from(tick) * TICK_MIN;
            let cut = match rule {
                Rule::Sequential => {
                    let new = ChannelCounts {
                        canary: Counts {
                            clients: nc,
                            errors: xc,
                        },
                        stable: Counts {
                            clients: ns,
                            errors: xs,
                        },
                    };
                    evidence.add(&Increment { new }, &policy);
                    evidence.judge(w < 100, &policy).verdict
                }
                Rule::Fixed => {
                    recent.push([nc, xc, ns, xs]);
                    if recent.len() > (120 / TICK_SECS) as usize {
                        recent.remove(0);
                    }
                    fixed_verdict(&recent)
                }
            };
            if cut == Verdict::Cut {
                out.cut = true;
                out.canary_clients_at_cut = exposed;
                out.minutes_at_cut = minutes;
                out.minutes = minutes;
                return out;
            }
            if step_ticks < BAKE_TICKS {
                continue;
            }
            let passed = match rule {
                Rule::Sequential => evidence.judge(w < 100, &policy).verdict == Verdict::Pass,
                // Advances on anything but unhealthy (which was handled above).
                Rule::Fixed => true,
            };
            if passed {
                break;
            }
            if step_ticks >= BAKE_TICKS + max_hold_ticks {
                out.paused = true;
                out.minutes = minutes;
                return out;
            }
        }
    }
    out.done = true;
    out.minutes = f64::from(tick) * TICK_MIN;
    out
}

/// The previous rule on the last two 60 s windows of ticks.
fn fixed_verdict(recent: &[[u64; 4]]) -> Verdict {
    let sum = |i: usize| recent.iter().map(|r| r[i]).sum::<u64>() as f64;
    let (nc, xc, ns, xs) = (sum(0), sum(1), sum(2), sum(3));
    if nc < 200.0 {
        return Verdict::Inconclusive;
    }
    let rate = xc / nc;
    if rate <= 0.02 {
        return Verdict::Pass;
    }
    if ns >= 200.0 && rate < (xs / ns) * 2.0 {
        return Verdict::Pass;
    }
    Verdict::Cut
}

fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[((v.len() - 1) as f64 * q).round() as usize])
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| {
        if x >= 100.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1).cloned());
    let runs = if quick { 40 } else { 1_000 };
    let started = std::time::Instant::now();
    let mut csv = String::from(
        "rule,per_min,factor,runs,cut,paused,done,bad_advanced,clients_p50,clients_p95,cut_min_p50,cut_min_p95,done_min_p50\n",
    );
    println!("verdicts: {runs} seeded rollouts per cell; steps 1,5,25,50,100 with 5 min bake; stable at 1%");
    println!();
    println!("| canary clients/min | canary error rate | rule | rolled back /100 | advanced past step 1 while ≥3x /100 | canary clients until cut (p50 / p95) | minutes until cut (p50 / p95) | healthy: minutes to done (p50) | paused /100 |");
    println!("|---:|---:|---|---:|---:|---|---|---:|---:|");
    for &per_min in &TRAFFIC {
        for &factor in &FACTORS {
            for rule in [Rule::Sequential, Rule::Fixed] {
                let mut rng = Rng::new(0x5eed ^ (per_min as u64) << 16 ^ (factor * 10.0) as u64);
                let outcomes: Vec<Outcome> = (0..runs)
                    .map(|_| rollout(rule, per_min, (STABLE_RATE * factor).min(1.0), &mut rng))
                    .collect();
                let count = |f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
                let cut = count(&|o| o.cut);
                let paused = count(&|o| o.paused);
                let done = count(&|o| o.done);
                let bad_advanced = if factor >= 3.0 {
                    count(&|o| o.max_step >= 1)
                } else {
                    0
                };
                let mut clients: Vec<f64> = outcomes
                    .iter()
                    .filter(|o| o.cut)
                    .map(|o| o.canary_clients_at_cut)
                    .collect();
                let mut minutes: Vec<f64> = outcomes
                    .iter()
                    .filter(|o| o.cut)
                    .map(|o| o.minutes_at_cut)
                    .collect();
                let mut done_min: Vec<f64> = outcomes
                    .iter()
                    .filter(|o| o.done)
                    .map(|o| o.minutes)
                    .collect();
                let per100 = |n: usize| 100.0 * n as f64 / runs as f64;
                let name = if rule == Rule::Sequential {
                    "sequential"
                } else {
                    "fixed (before)"
                };
                let (c50, c95) = (quantile(&mut clients, 0.5), quantile(&mut clients, 0.95));
                let (m50, m95) = (quantile(&mut minutes, 0.5), quantile(&mut minutes, 0.95));
                let d50 = quantile(&mut done_min, 0.5);
                println!(
                    "| {per_min} | {:.1}% | {name} | {:.1} | {} | {} / {} | {} / {} | {} | {:.1} |",
                    STABLE_RATE * factor * 100.0,
                    per100(cut),
                    if factor >= 3.0 {
                        format!("{:.1}", per100(bad_advanced))
                    } else {
                        "–".into()
                    },
                    fmt(c50),
                    fmt(c95),
                    fmt(m50),
                    fmt(m95),
                    if factor == 1.0 {
                        fmt(d50)
                    } else {
                        "–".into()
                    },
                    per100(paused),
                );
                csv.push_str(&format!(
                    "{},{per_min},{factor},{runs},{cut},{paused},{done},{bad_advanced},{},{},{},{},{}\n",
                    if rule == Rule::Sequential { "sequential" } else { "fixed" },
                    c50.unwrap_or(f64::NAN),
                    c95.unwrap_or(f64::NAN),
                    m50.unwrap_or(f64::NAN),
                    m95.unwrap_or(f64::NAN),
                    d50.unwrap_or(f64::NAN),
                ));
            }
        }
    }
    println!();
    println!(
        "verdicts: simulated in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = out {
        let mut f = std::fs::File::create(&path).expect("writable --out");
        f.write_all(csv.as_bytes()).expect("write --out");
    }
}
