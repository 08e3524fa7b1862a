// A V8 CPU profile of one worker under load in workerd, in the `.cpuprofile` format Chrome
// DevTools opens, and where its time goes.
//
//   node bench/profile.mjs [--worker canary-edge|js|floor|floor-do] [--scenario hot|miss|first]
//                          [--build dir] [--seconds 8] [--out target/profiles] [--top 25]
//                          [--var NAME=VALUE ...] [--weight 30] [--warmup 0] [--health-only]
//                          [--frames name,name@file:line,...]
//
// It starts the worker alone in Miniflare with workerd's inspector on, samples the user
// worker's isolate every 100 µs while wrk loads it (same scenarios as throughput.mjs),
// writes <out>/<worker>-<scenario>.cpuprofile and prints the top frames by self time and a
// breakdown by category, the top frames by inclusive time (a frame and everything it
// called, each sample counted once per frame), and with `--frames`, the inclusive time of
// the frames named (a function name, or `name@file:line` for one of several of that name;
// `(anonymous)@index.js:516` for an arrow; an async function's time counts only up to
// each await: what follows runs from the microtask queue, on a stack of its own). Frames of a wasm module are named only when its name section was
// kept: build with `KEEP_WASM_NAMES=1 scripts/build` to profile (and rebuild without it
// before measuring size).
//
// `--var` sets a worker variable (repeatable), `--weight` the rollout's weight, `--warmup`
// first-visit requests before sampling. canary-edge has its production Durable Object
// bindings (HEALTH and HEALTH_AGGREGATORS: batches go through the aggregators); with
// `--health-only`, HEALTH alone (batches straight to the monitor). The cost of a health
// batch (bench/batch-cost.mjs), with and without batches (HEALTH_FLUSH_REQUESTS=100000):
//   node bench/profile.mjs --scenario first --var HEALTH_FLUSH_REQUESTS=1 --weight 50 --warmup 50
//   node bench/profile.mjs --scenario first --var HEALTH_FLUSH_REQUESTS=1 --weight 50 --warmup 50 --health-only
//   node bench/profile.mjs --worker floor-do --scenario first --warmup 50   (SEND_BATCH=1)
// Durable Objects run in their worker's isolate, so their time is in the same profile.

import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CLIENT, HEALTH_ONLY, ROLLOUT, ROOT, scenarioHeaders, start, timedFetch, workers, wrk } from "./workerd.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const NAMES = { "canary-edge": "canary-edge", js: "JS same logic", floor: "JS floor", "floor-do": "JS floor + DO, a batch per request" };
const worker = opt("--worker", "canary-edge");
const scenario = opt("--scenario", "hot");
const seconds = Number(opt("--seconds", 8));
const outDir = resolve(opt("--out", join(ROOT, "target/profiles")));
const top = Number(opt("--top", 25));
const port = Number(opt("--port", 8792));
const inspectorPort = Number(opt("--inspector-port", 9329));
const build = opt("--build") ? resolve(opt("--build")) : undefined;
const label = opt("--label", worker);
const weight = opt("--weight");
const warmup = Number(opt("--warmup", 0));
const healthOnly = args.includes("--health-only");
const named = (opt("--frames") ?? "").split(",").filter(Boolean);
const vars = Object.fromEntries(
  args.flatMap((a, i) => (a === "--var" ? [args[i + 1].split(/=(.*)/s).slice(0, 2)] : [])),
);
if (!NAMES[worker]) throw new Error(`--worker must be one of ${Object.keys(NAMES).join(", ")}`);

/** A minimal Chrome DevTools Protocol client over the inspector's WebSocket. */
async function devtools(wsUrl) {
  // Node 22 has a global WebSocket; Node 20 without --experimental-websocket does not.
  const Socket = globalThis.WebSocket ?? (await import("ws")).WebSocket;
  const ws = new Socket(wsUrl);
  await new Promise((ok, fail) => {
    ws.onopen = ok;
    ws.onerror = fail;
  });
  let next = 1;
  const pending = new Map();
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.id && pending.has(msg.id)) {
      const { ok, fail } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) fail(new Error(JSON.stringify(msg.error)));
      else ok(msg.result);
    }
  };
  return {
    send: (method, params = {}) =>
      new Promise((ok, fail) => {
        const id = next++;
        pending.set(id, { ok, fail });
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

/** Which part of the worker a frame belongs to. */
function category(frame) {
  const { functionName: fn, url } = frame;
  if (fn === "(idle)") return "(idle)";
  if (fn === "(program)") return "(program)";
  if (fn === "(garbage collector)") return "(garbage collector)";
  if (fn === "(root)") return "(root)";
  if (url.startsWith("wasm://") || /^(\$|wasm-function\[)/.test(fn)) return "wasm code";
  if (/^__wbg|^__wbindgen/.test(fn) || /router\/router\.js$|control\/index\.js$|aggregator\/aggregator\.js$/.test(url)) {
    return "wasm-bindgen glue";
  }
  if (url === "") return "runtime / builtins";
  return "the worker's own JS";
}

const all = {
  ...workers(build),
  [NAMES["floor-do"]]: {
    modules: [{ type: "ESModule", path: join(ROOT, "bench/workers/floor-do.mjs") }],
    modulesRoot: ROOT,
    durableObjects: { BATCHES: { className: "Batches", useSQLite: true } },
    vars: { SEND_BATCH: "1" },
  },
};
const base = all[NAMES[worker]];
const def = { ...base, vars: { ...(base.vars ?? {}), ...vars } };
if (healthOnly) {
  if (!base.durableObjects?.HEALTH) throw new Error("--health-only: the worker has no HEALTH binding");
  def.durableObjects = HEALTH_ONLY;
}
const rollout = weight === undefined ? ROLLOUT : { ...ROLLOUT, weight: Number(weight) };
const w = await start(def, { cache: scenario !== "miss", port, inspectorPort, rollout });
let result;
try {
  const headers = await scenarioHeaders(NAMES[worker], w, scenario);
  for (let i = 0; i < warmup; i++) await timedFetch(w.url, CLIENT);
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  console.error(targets.map((t) => t.title).join(" | ")); const target = targets.find((t) => (process.env.TARGET ? t.title.includes(process.env.TARGET) : /core:user/.test(t.title)));
  if (!target) throw new Error(`no user worker among the inspector's targets: ${targets.map((t) => t.title).join(", ")}`);
  const cdp = await devtools(target.webSocketDebuggerUrl);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
  await cdp.send("Profiler.start");
  const load = wrk(w.url, headers, { threads: 2, connections: 16, duration: seconds, pid: w.pid });
  const { profile } = await cdp.send("Profiler.stop");
  cdp.close();
  result = { profile, load };
} finally {
  await w.mf.dispose();
}

const { profile, load } = result;
mkdirSync(outDir, { recursive: true });
const file = join(outDir, `${label}-${scenario}.cpuprofile`);
writeFileSync(file, JSON.stringify(profile));

// Self time per node: each sample's time delta goes to the node it hit.
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const frames = new Map();
const cats = new Map();
let busy = 0;
for (const [id, us] of self) {
  const f = byId.get(id).callFrame;
  const key = `${f.functionName || "(anonymous)"}\t${f.url.replace(/^.*\//, "")}:${f.lineNumber + 1}`;
  frames.set(key, (frames.get(key) ?? 0) + us);
  const c = category(f);
  cats.set(c, (cats.get(c) ?? 0) + us);
  if (c !== "(idle)" && c !== "(root)") busy += us;
}
const pct = (us) => ((100 * us) / busy).toFixed(1).padStart(5);
console.log(`${label} ${scenario}: ${load.requests} requests at ${load.rps.toFixed(0)} req/s; workerd CPU ${load.cpu_us_per_req.toFixed(0)} µs/request`);
console.log(`profile: ${file}`);
console.log(`sampled isolate time, not idle: ${(busy / 1000).toFixed(0)} ms = ${(busy / load.requests).toFixed(1)} µs/request\n`);
console.log("category                    self ms   % busy   µs/request");
for (const [c, us] of [...cats].sort((a, b) => b[1] - a[1])) {
  if (c === "(idle)" || c === "(root)") continue;
  console.log(`${c.padEnd(26)} ${(us / 1000).toFixed(0).padStart(8)} ${pct(us)}%  ${(us / load.requests).toFixed(2).padStart(10)}`);
}
console.log(`\ntop ${top} frames by self time (not idle)      self ms   % busy`);
for (const [k, us] of [...frames].filter(([k]) => !/^\((idle|root)\)/.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top)) {
  const [fn, where] = k.split("\t");
  console.log(`${fn.slice(0, 48).padEnd(48)} ${where.slice(0, 28).padEnd(28)} ${(us / 1000).toFixed(1).padStart(7)} ${pct(us)}%`);
}

// Inclusive time: each sample counted once for every distinct frame on its stack.
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const frameKey = (f) => `${f.functionName || "(anonymous)"}\t${f.url.replace(/^.*\//, "")}:${f.lineNumber + 1}`;
const stackKeys = new Map();
const keysOf = (id) => {
  let keys = stackKeys.get(id);
  if (!keys) {
    keys = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) keys.add(frameKey(byId.get(at).callFrame));
    stackKeys.set(id, keys);
  }
  return keys;
};
const inclusive = new Map();
profile.samples.forEach((id, i) => {
  const c = category(byId.get(id).callFrame);
  if (c === "(idle)" || c === "(root)") return;
  for (const k of keysOf(id)) inclusive.set(k, (inclusive.get(k) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const perReq = (us) => (us / load.requests).toFixed(1).padStart(9);
console.log(`\ntop ${top} frames by inclusive time (not idle)   where                         µs/request   % busy`);
for (const [k, us] of [...inclusive].filter(([k]) => !/^\((root|program|idle|garbage collector)\)/.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top)) {
  const [fn, where] = k.split("\t");
  console.log(`${fn.slice(0, 46).padEnd(46)} ${where.slice(0, 28).padEnd(28)} ${perReq(us)} ${pct(us)}%`);
}
if (named.length) {
  console.log(`\nframes asked for (--frames), inclusive              µs/request   % busy`);
  for (const want of named) {
    const [fn, where] = want.split("@");
    // Every frame of that name (at that place), each sample counted once.
    const keys = [...inclusive.keys()].filter((k) => {
      const [kf, kw] = k.split("\t");
      return kf === fn && (!where || kw === where);
    });
    let us = 0;
    profile.samples.forEach((id, i) => {
      const c = category(byId.get(id).callFrame);
      if (c === "(idle)" || c === "(root)") return;
      const on = keysOf(id);
      if (keys.some((k) => on.has(k))) us += profile.timeDeltas[i] ?? 0;
    });
    console.log(`${want.slice(0, 50).padEnd(50)} ${perReq(us)} ${pct(us)}%`);
  }
}
