// A V8 CPU profile of one worker under load in workerd, in the `.cpuprofile` format Chrome
// DevTools opens, and where its time goes.
//
//   node bench/profile.mjs [--worker canary-edge|js|floor] [--scenario hot|miss|first]
//                          [--build dir] [--seconds 8] [--out target/profiles] [--top 25]
//
// It starts the worker alone in Miniflare with workerd's inspector on, samples the user
// worker's isolate every 100 µs while wrk loads it (same scenarios as throughput.mjs),
// writes <out>/<worker>-<scenario>.cpuprofile and prints the top frames by self time and a
// breakdown by category. Frames of a wasm module are named only when its name section was
// kept: build with `KEEP_WASM_NAMES=1 scripts/build` to profile (and rebuild without it
// before measuring size).

import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ROOT, scenarioHeaders, start, workers, wrk } from "./workerd.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const NAMES = { "canary-edge": "canary-edge", js: "JS same logic", floor: "JS floor" };
const worker = opt("--worker", "canary-edge");
const scenario = opt("--scenario", "hot");
const seconds = Number(opt("--seconds", 8));
const outDir = resolve(opt("--out", join(ROOT, "target/profiles")));
const top = Number(opt("--top", 25));
const port = Number(opt("--port", 8792));
const inspectorPort = Number(opt("--inspector-port", 9329));
const build = opt("--build") ? resolve(opt("--build")) : undefined;
const label = opt("--label", worker);
if (!NAMES[worker]) throw new Error(`--worker must be one of ${Object.keys(NAMES).join(", ")}`);

/** A minimal Chrome DevTools Protocol client over the inspector's WebSocket. */
async function devtools(wsUrl) {
  const ws = new WebSocket(wsUrl);
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
  if (/^__wbg|^__wbindgen/.test(fn) || /router\/router\.js$|control\/index\.js$/.test(url)) return "wasm-bindgen glue";
  if (url === "") return "runtime / builtins";
  return "the worker's own JS";
}

const def = workers(build)[NAMES[worker]];
const w = await start(def, { cache: scenario !== "miss", port, inspectorPort });
let result;
try {
  const headers = await scenarioHeaders(NAMES[worker], w, scenario);
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  const target = targets.find((t) => /core:user/.test(t.title));
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
