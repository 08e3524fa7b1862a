// The CPU cost of one health batch (send + ingest) in workerd: canary-edge (build/) against
// a minimal JS Durable Object batch, measured in the same run (issue 18, item 6: one batch
// ≤ 1.25x the floor's).
//
//   node bench/batch-cost.mjs [--quick] [--duration 5] [--rounds 5] [--connections 32]
//                             [--warmup 50] [--build dir] [--out file.json]
//
// Six configurations, each in its own fresh Miniflare (bench/workerd.mjs), loaded by wrk
// with first-visit requests (no cookie: every request is a new client's counted load of the
// floating URL of the demo bundle, rollout {stable 1.0.0, canary 1.1.0, weight 50}):
//   1. canary-edge through aggregators (production: HEALTH and HEALTH_AGGREGATORS bound, as
//      wrangler.toml deploys it), batching as large as it goes (HEALTH_FLUSH_REQUESTS=100000,
//      HEALTH_FLUSH_MS=600000): while a canary is live a load is urgent (core's
//      batching::URGENT_FLUSH_MS), so an isolate still sends one batch a second: about one
//      per thousand requests here, a cost the subtraction below leaves in the baseline;
//   2. the same with HEALTH_FLUSH_REQUESTS=1: one batch per request, sent to this isolate's
//      HealthAggregator (same workerd process), which merges the batches and forwards them
//      to the bundle's HealthMonitor at most 4 times a second (health::coalesce);
//   3. and 4. the same two with HEALTH only (the path before the aggregators): each batch
//      straight to the HealthMonitor and ingested there;
//   5. bench/workers/floor-do.mjs: the floor (cached asset, no logic) with a Durable Object
//      binding, sending nothing;
//   6. the same with SEND_BATCH=1: per request, one batch of the same shape and size
//      (`ctx.waitUntil(stub.fetch(...))`) to a minimal SQLite Durable Object (JSON parse,
//      one INSERT).
// Batch cost = CPU per request of (2) − (1) (production), of (4) − (3) (straight to the
// monitor), and of (6) − (5) (the floor). CPU per request: the workerd process's user+system
// time from the start of wrk until the process is quiet again (so the batches still queued
// when wrk stops, and an aggregator's last forward, are counted), over the requests served:
// those wrk completed and the one in flight on each connection when it stopped.
// Before the timed runs, `WARMUP` first-visit requests per run (the operations module and
// the aggregators' merge are compiled and the Durable Objects started before wrk, not during
// it).
//
// Rounds alternate the order (1 2 3 4 5 6, 6 5 4 3 2 1, ...) against drift; each figure is
// the median over rounds, with the range; a batch cost is taken within a round.
//
// Checks (not timed, first): every Durable Object binding pointed at a counting object
// (bench/workers/ingest-counter.mjs), N first-visit requests: canary-edge with
// HEALTH_FLUSH_REQUESTS=1 must post exactly N batches (to the aggregators' /aggregate, or,
// with HEALTH only, to the monitor's /ingest) and with the large batching none; the
// floor's batches go to the same counter (each path's first batch kept as a sample). Then
// with the real objects, N first visits: the monitor's `/summary` `intake.isolate_batches`
// (isolate batches merged into what it took in) must be exactly N on both paths. In the
// timed runs, the monitor's intake and the floor's row count are read after each run and
// checked against the requests served.

import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CLIENT, HEALTH_BINDINGS, HEALTH_ONLY, ROOT, settle, start, timedFetch, workers, wrk } from "./workerd.mjs";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const DURATION = Number(opt("--duration", quick ? 1 : 5));
const ROUNDS = Number(opt("--rounds", quick ? 1 : 5));
const CONNECTIONS = Number(opt("--connections", quick ? 8 : 32));
const THREADS = 2;
const WARMUP = Number(opt("--warmup", quick ? 10 : 50));
const CHECK_REQUESTS = quick ? 20 : 100;
const PORT = Number(opt("--port", 8793));
const BUILD = opt("--build") ? resolve(opt("--build")) : undefined;
const BATCH_ROLLOUT = { stable: "1.0.0", canary: "1.1.0", weight: 50 };
// No new CPU tick for this long ends a run: longer than an aggregator's wait before its
// next forward (FORWARD_EVERY_MS, 250 ms), so the last forward is in the run.
const QUIET_MS = 600;

const edge = workers(BUILD)["canary-edge"];
const LARGE = { HEALTH_FLUSH_REQUESTS: "100000", HEALTH_FLUSH_MS: "600000" };
/** The check's expectation for LARGE: no batch but the urgent flush's, one a second. */
const URGENT = "urgent";
/** The most batches the urgent flush sends from an isolate since `began` (one a second). */
const urgentBatchesSince = (began) => Math.ceil((Date.now() - began) / 1000) + 1;
const PER_REQUEST = { HEALTH_FLUSH_REQUESTS: "1", HEALTH_FLUSH_MS: "600000" };
const floorDo = { modules: [{ type: "ESModule", path: join(ROOT, "bench/workers/floor-do.mjs") }], modulesRoot: ROOT };
const BATCHES = { BATCHES: { className: "Batches", useSQLite: true } };

// `path`: where canary-edge's batches go (its Durable Object bindings), none for the floor.
const A0 = "canary-edge through aggregators, batching as large as it goes";
const A1 = "canary-edge through aggregators, a batch per request";
const D0 = "canary-edge straight to the monitor, batching as large as it goes";
const D1 = "canary-edge straight to the monitor, a batch per request";
const F0 = "JS floor + DO, no batch";
const F1 = "JS floor + DO, a batch per request";
const CONFIGS = {
  [A0]: { ...edge, durableObjects: HEALTH_BINDINGS, vars: LARGE, path: "aggregators" },
  [A1]: { ...edge, durableObjects: HEALTH_BINDINGS, vars: PER_REQUEST, path: "aggregators", batches: true },
  [D0]: { ...edge, durableObjects: HEALTH_ONLY, vars: LARGE, path: "monitor" },
  [D1]: { ...edge, durableObjects: HEALTH_ONLY, vars: PER_REQUEST, path: "monitor", batches: true },
  [F0]: { ...floorDo, durableObjects: BATCHES, vars: { SEND_BATCH: "0" } },
  [F1]: { ...floorDo, durableObjects: BATCHES, vars: { SEND_BATCH: "1" }, batches: true },
};
const NAMES = Object.keys(CONFIGS);
/** Where each path's batches go, the URL path the counter sees them at. */
const SENT_TO = { aggregators: "/aggregate", monitor: "/ingest", floor: "/ingest" };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `n` first-visit requests, `concurrency` at a time; throws unless every one is a 200. */
async function firstVisits(url, n, concurrency = 4) {
  let next = 0;
  const one = async () => {
    while (next < n) {
      next++;
      const { res } = await timedFetch(url, CLIENT);
      if (res.status !== 200) throw new Error(`first visit answered ${res.status}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, one));
}

/** GET on the Durable Object `binding` names `demo` by (Miniflare's proxy: not timed). */
async function askObject(w, binding, path, headers = {}) {
  const ns = await w.mf.getDurableObjectNamespace(binding);
  const res = await ns.get(ns.idFromName("demo")).fetch(`https://monitor.canary-edge${path}`, { headers });
  if (res.status !== 200) throw new Error(`${binding}${path}: ${res.status}`);
  return res.json();
}

/**
 * What the bundle's HealthMonitor took in (`/summary`: `intake`, and its distinct clients),
 * read until two reads 300 ms apart agree (an aggregator forwards within 250 ms).
 */
async function monitorIntake(w) {
  let last = null;
  for (let i = 0; i < 30; i++) {
    const s = await askObject(w, "HEALTH", "/summary", { "x-canary-bundle": "demo" });
    if (!s.intake) throw new Error("the monitor's /summary has no `intake` (a build from before the aggregators?)");
    const t = s.monitor?.totals;
    const now = { ...s.intake, clients: t ? t.stable.clients + t.canary.clients : 0 };
    if (last && now.messages === last.messages && now.isolate_batches === last.isolate_batches) return now;
    last = now;
    await sleep(300);
  }
  throw new Error("the monitor's intake did not settle");
}

/** What the run's Durable Objects took in: the monitor's intake, or the floor's rows. */
async function ingested(w, def) {
  if (def.path) return monitorIntake(w);
  return { rows: (await askObject(w, "BATCHES", "/")).rows };
}

async function run(name) {
  const def = CONFIGS[name];
  const w = await start(def, { port: PORT, rollout: BATCH_ROLLOUT });
  const began = Date.now();
  try {
    const first = await timedFetch(w.url, CLIENT);
    if (first.res.status !== 200) throw new Error(`${name}: first response ${first.res.status}`);
    if (def.path && !first.res.headers.get("set-cookie")) throw new Error(`${name}: a first visit got no cookie (not counted)`);
    await firstVisits(w.url, WARMUP);
    settle(w.pid, { quietMs: QUIET_MS });
    const r = wrk(w.url, CLIENT, { threads: THREADS, connections: CONNECTIONS, duration: DURATION, pid: w.pid, settle: { quietMs: QUIET_MS } });
    if (r.non2xx) throw new Error(`${name}: ${r.non2xx} non-2xx responses`);
    // When wrk stops, each connection has one request in flight: the worker serves it (and
    // sends its batch) but wrk does not count it. The floor's rows and the monitor's
    // isolate batches confirm it.
    const served = r.requests + CONNECTIONS;
    // Served before wrk: the first request and the warm-up.
    const total = served + 1 + WARMUP;
    const took = await ingested(w, def);
    // Batches taken in: exact on both sides (less any connection that had nothing in flight
    // when wrk stopped).
    const batches = def.path ? took.isolate_batches : took.rows;
    // Batching as large as it goes: nothing from the floor; from canary-edge, the urgent
    // flush's batch a second at most (loads are urgent while a canary is live).
    const urgentBound = urgentBatchesSince(began);
    if (!def.batches && (def.path ? batches > urgentBound : batches !== 0 || took.messages)) {
      throw new Error(`${name}: the Durable Object took in ${JSON.stringify(took)}, expected ${def.path ? `at most ${urgentBound} batches` : "nothing"}`);
    }
    if (def.batches) {
      if (batches > total || batches < total - CONNECTIONS) {
        throw new Error(`${name}: ${batches} isolate batches taken in for ${total} requests served`);
      }
      if (batches !== total) {
        process.stderr.write(`batch-cost: note: ${name}: ${batches} batches taken in for ${total} requests served (${total - batches} connections idle when wrk stopped)\n`);
      }
      // Straight to the monitor, every batch is a call of its own.
      if (def.path === "monitor" && took.messages !== took.isolate_batches) {
        throw new Error(`${name}: ${took.messages} monitor calls for ${took.isolate_batches} batches`);
      }
    }
    return { ...r, served, cpu_us_per_req: (r.cpu_ms * 1000) / served, served_before: 1 + WARMUP, total, took };
  } finally {
    await w.mf.dispose();
  }
}

/**
 * Batches posted per request: counted by bench/workers/ingest-counter.mjs standing in for
 * every Durable Object of the worker, then taken in by the real aggregator and monitor.
 */
async function check() {
  const counter = {
    name: "counter",
    modules: [{ type: "ESModule", path: join(ROOT, "bench/workers/ingest-counter.mjs") }],
    modulesRoot: ROOT,
    compatibilityDate: "2026-11-01",
    durableObjects: { COUNTER: "IngestCounter" },
  };
  // Every Durable Object binding of the worker points at the counter.
  const to = (bindings) =>
    Object.fromEntries(Object.keys(bindings).map((b) => [b, { className: "IngestCounter", scriptName: "counter" }]));
  const cases = [
    [A1, { ...edge, durableObjects: to(HEALTH_BINDINGS), vars: PER_REQUEST }, "aggregators", CHECK_REQUESTS],
    [A0, { ...edge, durableObjects: to(HEALTH_BINDINGS), vars: LARGE }, "aggregators", URGENT],
    [D1, { ...edge, durableObjects: to(HEALTH_ONLY), vars: PER_REQUEST }, "monitor", CHECK_REQUESTS],
    [D0, { ...edge, durableObjects: to(HEALTH_ONLY), vars: LARGE }, "monitor", URGENT],
    [F1, { ...floorDo, durableObjects: to(BATCHES), vars: { SEND_BATCH: "1" } }, "floor", CHECK_REQUESTS],
  ];
  const out = { counted: {}, taken_in: {} };
  for (const [name, def, path, expected] of cases) {
    const w = await start({ ...def, sidecars: [counter] }, { port: PORT, rollout: BATCH_ROLLOUT });
    try {
      const began = Date.now();
      await firstVisits(w.url, CHECK_REQUESTS);
      settle(w.pid, { quietMs: QUIET_MS });
      const allowed = expected === URGENT ? urgentBatchesSince(began) : expected;
      const ns = await w.mf.getDurableObjectNamespace("COUNTER", "counter");
      const got = await (await ns.get(ns.idFromName("demo")).fetch("http://counter/")).json();
      const sample = got.samples[0] ?? null;
      out.counted[name] = {
        requests: CHECK_REQUESTS,
        batches: got.ingests,
        by_path: got.by_path,
        objects: got.objects,
        sample: sample?.body ?? null,
        sample_path: sample?.path ?? null,
        sample_bytes: sample ? Buffer.byteLength(sample.body) : 0,
      };
      process.stderr.write(
        `batch-cost: check: ${name}: ${CHECK_REQUESTS} first visits, ${got.ingests} batches posted ${JSON.stringify(got.by_path)} to ${got.objects} object(s)\n`,
      );
      const at = got.by_path[SENT_TO[path]] ?? 0;
      const ok = expected === URGENT ? got.ingests <= allowed && at === got.ingests : got.ingests === expected && at === expected;
      if (!ok) {
        throw new Error(`batch-cost: ${name}: ${got.ingests} batches (${at} to ${SENT_TO[path]}) for ${CHECK_REQUESTS} requests (expected ${expected === URGENT ? `at most ${allowed}` : expected})`);
      }
    } finally {
      await w.mf.dispose();
    }
  }
  // The real objects: every isolate batch reaches the monitor, merged or not.
  for (const name of [A1, D1]) {
    const def = CONFIGS[name];
    const w = await start(def, { port: PORT, rollout: BATCH_ROLLOUT });
    try {
      await firstVisits(w.url, CHECK_REQUESTS);
      settle(w.pid, { quietMs: QUIET_MS });
      const intake = await monitorIntake(w);
      out.taken_in[name] = { requests: CHECK_REQUESTS, ...intake };
      process.stderr.write(
        `batch-cost: check: ${name}: ${CHECK_REQUESTS} first visits, the monitor took in ${intake.isolate_batches} isolate batches in ${intake.messages} calls\n`,
      );
      if (intake.isolate_batches !== CHECK_REQUESTS) {
        throw new Error(`batch-cost: ${name}: the monitor counted ${intake.isolate_batches} isolate batches for ${CHECK_REQUESTS} requests`);
      }
    } finally {
      await w.mf.dispose();
    }
  }
  return out;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const stats = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), all: xs });

const report = {
  duration_s: DURATION,
  threads: THREADS,
  connections: CONNECTIONS,
  rounds: ROUNDS,
  warmup: WARMUP,
  rollout: BATCH_ROLLOUT,
  check: await check(),
  configs: {},
};
const runs = Object.fromEntries(NAMES.map((n) => [n, []]));
for (let round = 1; round <= ROUNDS; round++) {
  const order = round % 2 ? NAMES : [...NAMES].reverse();
  for (const name of order) {
    process.stderr.write(`batch-cost: round ${round}/${ROUNDS}: ${name}\n`);
    runs[name].push(await run(name));
  }
}
for (const name of NAMES) {
  const rs = runs[name];
  const def = CONFIGS[name];
  report.configs[name] = {
    path: def.path ?? "floor",
    batches: Boolean(def.batches),
    cpu_us_per_req: stats(rs.map((r) => r.cpu_us_per_req)),
    rps: stats(rs.map((r) => r.rps)),
    requests: rs.map((r) => r.requests),
    served: rs.map((r) => r.total),
    // Isolate batches the monitor counted (`intake.isolate_batches`), or the floor's rows.
    ingested: rs.map((r) => (def.path ? r.took.isolate_batches : r.took.rows)),
    // The monitor's calls (`intake.messages`), and its busiest second.
    ...(def.path ? { monitor_calls: rs.map((r) => r.took.messages), peak_calls_per_second: rs.map((r) => r.took.peak_messages_per_second) } : {}),
  };
}
const cost = (a, b) => runs[b].map((r, i) => r.cpu_us_per_req - runs[a][i].cpu_us_per_req);
const floor = cost(F0, F1);
const against = (project) => ({
  project: stats(project),
  // Per round, and of the medians.
  ratio: { ...stats(project.map((p, i) => p / floor[i])), of_medians: median(project) / median(floor) },
});
const production = against(cost(A0, A1));
const straight = against(cost(D0, D1));
report.batch = {
  // The production path: through the aggregators.
  project: production.project,
  floor: stats(floor),
  ratio: production.ratio,
  target: 1.25,
  straight_to_monitor: straight,
};
const json = JSON.stringify(report, null, 2);
if (opt("--out")) writeFileSync(opt("--out"), json);
console.log(json);
const line = (label, b) =>
  `${label} ${b.project.median.toFixed(0)} µs (${b.project.min.toFixed(0)}–${b.project.max.toFixed(0)}), ratio ${b.ratio.of_medians.toFixed(2)}x`;
process.stderr.write(
  `batch-cost: one batch: floor ${report.batch.floor.median.toFixed(0)} µs (${report.batch.floor.min.toFixed(0)}–${report.batch.floor.max.toFixed(0)}); ` +
    `${line("canary-edge through aggregators", report.batch)} (target ≤ 1.25x); ${line("straight to the monitor", straight)}\n`,
);
