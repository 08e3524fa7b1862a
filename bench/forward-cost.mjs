// The cost of one aggregator forward's ingest in the HealthMonitor at a full step (issue 24):
// the step's tracker holds 100,000 clients, persisted row by row in the object's SQLite, and
// a forward of `--events` signals (boots and failures of tracked clients, which change their
// rows, and loads of new clients) arrives. Measured in workerd against the same forwards at
// a small step (1,000 tracked), in the same run, and the cost of a restart: the first
// forward after the runtime restarts on the same state loads the step's rows.
//
//   node bench/forward-cost.mjs [--quick] [--forwards 20] [--events 100] [--build dir] [--out file.json]
//
// Forwards are posted from Node straight to the monitor's `/ingest` (the route and body an
// aggregator uses: health::coalesce::IngestMessage), one at a time, each waited for; CPU is
// the workerd process's user+system time over the forward, read once the process is quiet
// (bench/workerd.mjs `settle`), so work after the answer (none expected) is counted too.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ROOT, cpuMs, settle, start, workers } from "./workerd.mjs";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const FORWARDS = Number(opt("--forwards", quick ? 3 : 50));
const EVENTS = Number(opt("--events", 100));
const FULL = quick ? 10_000 : 100_000;
const SMALL = 1_000;
const FILL_PER_FORWARD = 2_000;
const PORT = Number(opt("--port", 8795));
/** Another build of canary-edge to measure (default build/). */
const BUILD = opt("--build") ? resolve(opt("--build")) : undefined;
// Automatic rollback off: one signal in ten is a failure, and a cut would end the step (and
// the tracking this bench measures).
const ROLLOUT = { stable: "1.0.0", canary: "1.1.0", weight: 50, health: { auto_rollback: false } };
const MONITOR = "https://monitor.canary-edge/ingest";

const hex = (n) => n.toString(16).padStart(16, "0");
// An exact client set (control/clients.rs: at most EXACT_CAP, 64, ids; a real forward's sets
// are sketches past that): the windows' sets are not what this bench is about.
const set = (ids) => "01" + [...ids].sort((a, b) => a - b).slice(0, 64).map(hex).join("");

/** One forward: `loads` new clients (each its own network), `signals` boots/failures of tracked ones. */
function forward(loads, signals) {
  const events = [];
  const sets = { stable: { loaded: [], errored: [] }, canary: { loaded: [], errored: [] } };
  for (const id of loads) {
    const canary = id % 2 === 1;
    sets[canary ? "canary" : "stable"].loaded.push(id);
    events.push({ client: id.toString(16), network: id.toString(16), canary, signal: "load" });
  }
  for (const [i, id] of signals.entries()) {
    const canary = id % 2 === 1;
    const signal = i % 10 === 0 ? "failure" : "boot";
    if (signal === "failure") sets[canary ? "canary" : "stable"].errored.push(id);
    events.push({ client: id.toString(16), network: "0", canary, signal });
  }
  const clients = {};
  for (const ch of ["stable", "canary"]) clients[ch] = { loaded: set(sets[ch].loaded), errored: set(sets[ch].errored) };
  const { stable, canary, weight } = ROLLOUT;
  return { batches: [{ stable, canary, weight, clients, events }], merged: 1 };
}

/** Where a forward goes: the HealthMonitor's `/ingest`, or the floor's minimal JS object. */
const MONITOR_TARGET = { binding: "HEALTH", url: MONITOR, body: (m) => JSON.stringify(m) };
// The floor takes the forward's batch (its JSON parse, one INSERT of it as a row).
const FLOOR_TARGET = { binding: "BATCHES", url: "https://batches.floor/ingest", body: (m) => JSON.stringify(m.batches[0]) };

async function post(mf, message, target = MONITOR_TARGET) {
  const ns = await mf.getDurableObjectNamespace(target.binding);
  const res = await ns.get(ns.idFromName("demo")).fetch(target.url, {
    method: "POST",
    headers: { "x-canary-bundle": "demo", "content-type": "application/json" },
    body: target.body(message),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`ingest ${res.status}: ${text}`);
}

async function tracked(mf) {
  const ns = await mf.getDurableObjectNamespace("HEALTH");
  const res = await ns.get(ns.idFromName("demo")).fetch("https://monitor.canary-edge/summary", { headers: { "x-canary-bundle": "demo" } });
  const s = await res.json();
  const t = s.monitor?.verdict?.tracked ?? s.verdict?.tracked ?? null;
  return t;
}

/** Fills the step to `n` tracked clients (ids 1..n), `FILL_PER_FORWARD` loads a forward. */
async function fill(mf, n) {
  for (let first = 1; first <= n; first += FILL_PER_FORWARD) {
    const ids = [];
    for (let id = first; id < Math.min(first + FILL_PER_FORWARD, n + 1); id++) ids.push(id);
    await post(mf, forward(ids, []));
  }
}

/**
 * `FORWARDS` timed forwards of `EVENTS` events: half loads of new clients, half signals of
 * tracked ones. Wall time per forward; CPU over all of them (the process's clock ticks are
 * 10 ms: too coarse for one forward), per forward.
 */
async function timed(w, tracked, nextId, target = MONITOR_TARGET) {
  const wall = [];
  settle(w.pid, { quietMs: 300 });
  const c0 = cpuMs(w.pid);
  for (let f = 0; f < FORWARDS; f++) {
    const loads = Array.from({ length: EVENTS / 2 }, () => nextId++);
    const signals = Array.from({ length: EVENTS / 2 }, (_, i) => 1 + ((f * EVENTS + i * 7919) % tracked));
    const message = forward(loads, signals);
    const t0 = performance.now();
    await post(w.mf, message, target);
    wall.push(performance.now() - t0);
  }
  const cpuPerForward = (settle(w.pid, { quietMs: 300 }) - c0) / FORWARDS;
  return { cpuPerForward, wall, nextId };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

async function run(label, n, persist) {
  const def = { ...workers(BUILD)["canary-edge"], vars: { HEALTH_FLUSH_MS: "600000" } };
  let w = await start(def, { port: PORT, rollout: ROLLOUT, persist });
  try {
    await post(w.mf, forward([], [])); // the object started, the config read
    const t0 = performance.now();
    await fill(w.mf, n);
    const fillMs = performance.now() - t0;
    const before = await tracked(w.mf);
    const { cpuPerForward, wall, nextId } = await timed(w, n, 10_000_000);
    const result = { label, tracked: n, fill_ms: fillMs, tracked_status: before, cpu_ms_per_forward: cpuPerForward, wall_ms: summary(wall) };
    // A restart on the same state: the first forward loads the step's rows.
    await w.mf.dispose();
    w = await start(def, { port: PORT, rollout: ROLLOUT, persist, seed: false });
    const c0 = cpuMs(w.pid);
    const t1 = performance.now();
    await post(w.mf, forward([nextId], [1]));
    result.first_after_restart = { wall_ms: performance.now() - t1, cpu_ms: settle(w.pid, { quietMs: 200 }) - c0 };
    result.tracked_after_restart = await tracked(w.mf);
    return result;
  } finally {
    await w.mf.dispose();
  }
}

/** The floor: the same forwards to a minimal SQLite Durable Object in JS (bench/workers/floor-do.mjs). */
async function floor() {
  const def = { modules: [{ type: "ESModule", path: join(ROOT, "bench/workers/floor-do.mjs") }], modulesRoot: ROOT, durableObjects: { BATCHES: { className: "Batches", useSQLite: true } } };
  const w = await start(def, { port: PORT, rollout: ROLLOUT });
  try {
    await post(w.mf, forward([], []), FLOOR_TARGET);
    const { cpuPerForward, wall } = await timed(w, 1, 10_000_000, FLOOR_TARGET);
    return { label: "floor: minimal JS Durable Object", cpu_ms_per_forward: cpuPerForward, wall_ms: summary(wall) };
  } finally {
    await w.mf.dispose();
  }
}

const out = { date: new Date().toISOString(), forwards: FORWARDS, events: EVENTS, runs: [] };
const f = await floor();
out.runs.push(f);
console.log(`${f.label}: one forward of ${EVENTS} events: CPU ${f.cpu_ms_per_forward.toFixed(1)} ms (workerd, over ${FORWARDS}), wall ${f.wall_ms.median.toFixed(1)} ms (median)`);
for (const [label, n] of [["small step", SMALL], ["full step", FULL]]) {
  const persist = mkdtempSync(join(tmpdir(), "canary-forward-cost-"));
  try {
    const r = await run(label, n, persist);
    out.runs.push(r);
    console.log(`${label}: ${n} tracked clients; one forward of ${EVENTS} events: CPU ${r.cpu_ms_per_forward.toFixed(1)} ms ` +
      `(workerd, over ${FORWARDS}; ${(r.cpu_ms_per_forward / f.cpu_ms_per_forward).toFixed(2)}x the floor), wall ${r.wall_ms.median.toFixed(1)} ms (median; ${r.wall_ms.min.toFixed(1)}-${r.wall_ms.max.toFixed(1)}); ` +
      `first forward after a restart: wall ${r.first_after_restart.wall_ms.toFixed(0)} ms, CPU ${r.first_after_restart.cpu_ms.toFixed(0)} ms; ` +
      `pending before/after the restart ${r.tracked_status?.pending}/${r.tracked_after_restart?.pending}`);
  } finally {
    rmSync(persist, { recursive: true, force: true });
  }
}
const file = opt("--out");
if (file) writeFileSync(file, JSON.stringify(out, null, 2));
