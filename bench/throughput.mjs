// Throughput and start-up in workerd: canary-edge (build/) against two reference workers
// (bench/workers/), each in its own Miniflare 5 on a fixed 127.0.0.1 port, loaded by wrk.
//
//   node bench/throughput.mjs [--quick] [--duration 8] [--out file.json]
//
// Scenarios (same for every worker):
//   hot    GET /demo/sdk.js with a valid cohort cookie, object in the edge cache;
//   miss   the same request with the Cache API off, so every request reads R2;
//   first  GET /demo/sdk.js without a cookie: the cohort is derived and Set-Cookie sent.
// Start: a fresh Miniflare (workerd process + isolate) per worker, timed to `ready` and to
// its first response.

import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";

const ROOT = resolve(fileURLToPath(import.meta.url), "../..");
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
const ROLLOUT = { stable: "1.0.0", canary: "1.1.0", weight: 30 };
const VARS = { COHORTS: "10", COHORT_SALT: "bench-salt", COHORT_SECRET: "bench-secret", CONFIG_TTL_MS: "5000" };

const WORKERS = {
  "canary-edge": {
    modules: [
      { type: "ESModule", path: join(ROOT, "build/index.js") },
      { type: "CompiledWasm", path: join(ROOT, "build/index_bg.wasm") },
    ],
    durableObjects: { HEALTH: "HealthMonitor" },
  },
  "canary-edge (no HEALTH binding)": {
    modules: [
      { type: "ESModule", path: join(ROOT, "build/index.js") },
      { type: "CompiledWasm", path: join(ROOT, "build/index_bg.wasm") },
    ],
    only: ["hot"],
  },
  // Attribution of the health counting cost (run with --explore only).
  "canary-edge (HEALTH, flush every 100k requests / 10 min)": {
    modules: [
      { type: "ESModule", path: join(ROOT, "build/index.js") },
      { type: "CompiledWasm", path: join(ROOT, "build/index_bg.wasm") },
    ],
    durableObjects: { HEALTH: "HealthMonitor" },
    vars: { HEALTH_FLUSH_REQUESTS: "100000", HEALTH_FLUSH_MS: "600000" },
    only: ["hot"],
    explore: true,
  },
  "JS same logic": { modules: [{ type: "ESModule", path: join(ROOT, "bench/workers/js-same-logic.mjs") }] },
  "JS floor": { modules: [{ type: "ESModule", path: join(ROOT, "bench/workers/floor.mjs") }] },
};

function fixtures() {
  const out = [];
  const base = join(ROOT, "fixtures");
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith(".js")) out.push([relative(base, p).split("\\").join("/"), readFileSync(p)]);
    }
  };
  walk(join(base, "demo"));
  return out;
}

async function start(name, { cache = true } = {}) {
  const w = WORKERS[name];
  const options = convertV4MiniflareOptions({
    modules: w.modules,
    modulesRoot: ROOT,
    compatibilityDate: "2026-11-01",
    kvNamespaces: { ROLLOUTS: "rollouts" },
    r2Buckets: { BUNDLES: "bundles" },
    durableObjects: w.durableObjects,
    bindings: { ...VARS, ...(w.vars ?? {}) },
    cache,
  });
  options.logRequests = false;
  options.host = "127.0.0.1";
  options.port = PORT;
  // Keep CF-Connecting-IP: canary-edge hashes the client's network with the fingerprint.
  for (const wk of options.workers) wk.dev = { ...(wk.dev ?? {}), stripCfConnectingIp: false };
  const t0 = performance.now();
  const mf = new Miniflare(options);
  const url = await mf.ready;
  const tReady = performance.now();
  const kv = await mf.getKVNamespace("ROLLOUTS");
  const r2 = await mf.getR2Bucket("BUNDLES");
  for (const [key, bytes] of fixtures()) {
    await r2.put(key, bytes, { httpMetadata: { contentType: "text/javascript; charset=utf-8" } });
  }
  await kv.put("rollout/demo", JSON.stringify(ROLLOUT));
  return { mf, url: new URL("/demo/sdk.js", url).href, readyMs: tReady - t0 };
}

async function timedFetch(url, headers = {}) {
  const t = performance.now();
  const res = await fetch(url, { headers });
  await res.arrayBuffer();
  return { ms: performance.now() - t, res };
}

function toMs(v) {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v);
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
}

function wrk(url, headers) {
  const hargs = Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
  const out = execFileSync("wrk", ["-t", String(THREADS), "-c", String(CONNECTIONS), "-d", `${DURATION}s`, "--latency", ...hargs, url], {
    encoding: "utf8",
    timeout: (DURATION + 30) * 1000,
  });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = toMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? "");
  const p99 = toMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? "");
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const errors = /Socket errors:.*/.exec(out)?.[0] ?? "";
  return { rps, p50, p99, non2xx, errors };
}

const CLIENT = { "cf-connecting-ip": "203.0.113.77", "user-agent": "bench" };

async function runScenarios(name) {
  const only = WORKERS[name].only ?? ["hot", "first", "miss"];
  const results = {};
  // Cached (hot) and first visit: one Miniflare with the Cache API on.
  if (only.includes("hot") || only.includes("first")) {
    const w = await start(name);
    try {
      const first = await timedFetch(w.url, CLIENT);
      if (first.res.status !== 200) throw new Error(`${name}: first response ${first.res.status}`);
      const cookie = (first.res.headers.get("set-cookie") ?? "").split(";")[0];
      const hotHeaders = { ...CLIENT, ...(cookie ? { cookie } : {}) };
      for (let i = 0; i < 20; i++) await timedFetch(w.url, hotHeaders); // warm the cache
      const check = await timedFetch(w.url, hotHeaders);
      if (check.res.status !== 200 || (name.startsWith("canary-edge") && check.res.headers.get("set-cookie"))) {
        throw new Error(`${name}: hot path check failed (${check.res.status})`);
      }
      if (only.includes("hot")) results.hot = wrk(w.url, hotHeaders);
      if (only.includes("first")) results.first = wrk(w.url, CLIENT);
    } finally {
      await w.mf.dispose();
    }
  }
  if (only.includes("miss")) {
    const w = await start(name, { cache: false });
    try {
      const first = await timedFetch(w.url, CLIENT);
      const cookie = (first.res.headers.get("set-cookie") ?? "").split(";")[0];
      results.miss = wrk(w.url, { ...CLIENT, ...(cookie ? { cookie } : {}) });
    } finally {
      await w.mf.dispose();
    }
  }
  return results;
}

async function startTimes(name) {
  const w = await start(name);
  try {
    const first = await timedFetch(w.url, CLIENT);
    const second = await timedFetch(w.url, CLIENT);
    return { readyMs: w.readyMs, firstMs: first.ms, secondMs: second.ms };
  } finally {
    await w.mf.dispose();
  }
}

// Rounds interleave the workers (A B C D, A B C D, ...) so that drift and other load on the
// machine hit them alike; each figure is the round with the median req/s.
const ROUNDS = Number(opt("--rounds", quick ? 1 : 3));
const report = { duration_s: DURATION, threads: THREADS, connections: CONNECTIONS, rounds: ROUNDS, workers: {}, start: {} };
const names = Object.keys(WORKERS).filter(
  (name) =>
    !(quick && name.includes("no HEALTH")) &&
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
for (const name of explore ? [] : ["canary-edge", "JS same logic", "JS floor"]) {
  // Median of three fresh starts (one in quick mode).
  const runs = [];
  for (let i = 0; i < (quick ? 1 : 3); i++) runs.push(await startTimes(name));
  const med = (k) => runs.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
  report.start[name] = { readyMs: med("readyMs"), firstMs: med("firstMs"), secondMs: med("secondMs") };
}
const json = JSON.stringify(report, null, 2);
const out = opt("--out");
if (out) writeFileSync(out, json);
console.log(json);
