// Throughput, CPU per request and cold start in workerd: canary-edge (build/) against two
// reference workers (bench/workers/), each in its own Miniflare 5 on a fixed 127.0.0.1
// port, loaded by wrk.
//
//   node bench/throughput.mjs [--quick] [--duration 5] [--rounds 3] [--build dir] [--out file.json]
//
// CPU per request: the workerd process's user+system time over a wrk run (/proc/<pid>/stat)
// divided by the requests wrk completed. wrk and workerd share the CPUs, so req/s depends
// on how the machine is shared; CPU time per request much less (and it is what Workers bill).
//
// Scenarios (same for every worker):
//   hot    GET /demo/sdk.js with a valid cohort cookie, object in the edge cache;
//   miss   the same request with the Cache API off, so every request reads R2;
//   first  GET /demo/sdk.js without a cookie: the cohort is derived and Set-Cookie sent.
// Start: a fresh Miniflare (workerd process + isolate) per worker, timed to `ready` and to
// its first response.

import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { CLIENT, cpuMs, scenarioHeaders, start, timedFetch, workers, wrk } from "./workerd.mjs";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const explore = args.includes("--explore");
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const DURATION = Number(opt("--duration", quick ? 1 : 5));
const THREADS = 2;
const CONNECTIONS = quick ? 8 : 32;
const PORT = Number(opt("--port", 8791));
const BUILD = opt("--build") ? resolve(opt("--build")) : undefined;
const WORKERS = workers(BUILD);
const load = (w) => ({ threads: THREADS, connections: CONNECTIONS, duration: DURATION, pid: w.pid });
// Load before the measured run, not counted: each run starts a fresh workerd, and its first
// second is the JIT's and wasm tier-up's (an A/B of live processes in
// bench/README.md, canary-edge's first 4-s round after start 0.98x the JS worker's req/s,
// later rounds 1.15-1.22x). Cold start is measured on its own (below); this is steady state.
const WARMUP_S = quick ? 0 : 1;
function measured(w, headers) {
  if (WARMUP_S) wrk(w.url, headers, { ...load(w), duration: WARMUP_S });
  return wrk(w.url, headers, load(w));
}

async function runScenarios(name) {
  const only = WORKERS[name].only ?? ["hot", "first", "miss"];
  const results = {};
  // Cached (hot) and first visit: one Miniflare with the Cache API on.
  if (only.includes("hot") || only.includes("first")) {
    const w = await start(WORKERS[name], { port: PORT });
    try {
      for (const scen of ["hot", "first"].filter((s) => only.includes(s))) {
        results[scen] = measured(w, await scenarioHeaders(name, w, scen));
      }
    } finally {
      await w.mf.dispose();
    }
  }
  if (only.includes("miss")) {
    const w = await start(WORKERS[name], { cache: false, port: PORT });
    try {
      results.miss = measured(w, await scenarioHeaders(name, w, "miss"));
    } finally {
      await w.mf.dispose();
    }
  }
  return results;
}

/**
 * A cold start: a fresh Miniflare (new workerd process and isolate: modules compiled and
 * instantiated), then the first request (the isolate's first config read, R2 read and cache
 * write) and a second one. `coldMs` = ready + first response; `cpuMs`: the workerd
 * process's CPU time up to the first response.
 */
async function startTimes(name) {
  const w = await start(WORKERS[name], { port: PORT });
  try {
    const first = await timedFetch(w.url, CLIENT);
    const cpuToFirst = cpuMs(w.pid);
    const second = await timedFetch(w.url, CLIENT);
    return { readyMs: w.readyMs, firstMs: first.ms, secondMs: second.ms, coldMs: w.readyMs + first.ms, cpuMs: cpuToFirst };
  } finally {
    await w.mf.dispose();
  }
}

// Rounds interleave the workers (A B C D, A B C D, ...) so that drift and other load on the
// machine hit them alike; each figure is the round with the median req/s.
const ROUNDS = Number(opt("--rounds", quick ? 1 : 3));
const report = { duration_s: DURATION, warmup_s: WARMUP_S, threads: THREADS, connections: CONNECTIONS, rounds: ROUNDS, workers: {}, start: {} };
const names = Object.keys(WORKERS).filter(
  (name) =>
    !(quick && name.includes("alone")) &&
    !WORKERS[name].startOnly &&
    !(WORKERS[name].explore && !explore) &&
    !(explore && !WORKERS[name].explore && !name.startsWith("canary-edge")),
);
const all = Object.fromEntries(names.map((n) => [n, []]));
for (let round = 1; round <= ROUNDS; round++) {
  for (const name of names) {
    process.stderr.write(`throughput: round ${round}/${ROUNDS}: ${name}\n`);
    all[name].push(await runScenarios(name));
  }
}
for (const name of names) {
  report.workers[name] = {};
  for (const scen of Object.keys(all[name][0])) {
    const runs = all[name].map((r) => r[scen]).sort((a, b) => a.rps - b.rps);
    report.workers[name][scen] = { ...runs[Math.floor(runs.length / 2)], all_rps: runs.map((r) => r.rps) };
  }
}
// Fresh starts, interleaved like the rounds; the median of each figure (one in quick mode).
// Nine: a start's `ready` moves ±15 ms run to run, more than the targets' margins.
const STARTS = quick ? 1 : 9;
// The edge Worker alone (the reference workers' bindings: in production its isolates start
// apart from the control Worker's), the two Workers in one process as the tests run them,
// and the control Worker alone (its first request a status read: its module, its object).
const startNames = explore ? [] : ["canary-edge (edge Worker alone)", "canary-edge", "control Worker (alone)", "JS same logic", "JS floor"];
const starts = Object.fromEntries(startNames.map((n) => [n, []]));
for (let i = 0; i < STARTS; i++) {
  for (const name of startNames) starts[name].push(await startTimes(name));
}
for (const name of startNames) {
  const runs = starts[name];
  const med = (k) => runs.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
  report.start[name] = Object.fromEntries(["readyMs", "firstMs", "secondMs", "coldMs", "cpuMs"].map((k) => [k, med(k)]));
  report.start[name].runs = STARTS;
}
const json = JSON.stringify(report, null, 2);
const out = opt("--out");
if (out) writeFileSync(out, json);
console.log(json);
