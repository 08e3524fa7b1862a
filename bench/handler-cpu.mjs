// The worker's own CPU per request, without the network and Miniflare's Cache API simulator:
// one request runs the worker's fetch handler N times in a loop inside workerd, against an
// in-memory Cache API, and the workerd process's CPU time over that request is divided by N.
//
//   node bench/handler-cpu.mjs [--scenario hot|first|miss] [--rounds 7] [--n 15000]
//                              [--build dir[=label] ...] [--out file.json]
//
// Why: with wrk, each request also pays the HTTP server, wrk's share of the 2 CPUs and the
// cache simulator (a Worker of its own, with SQLite), ~1,000 µs in all, and req/s moves 10-20%
// between runs; a worker's own cost (~150-200 µs here) drowns in it. Here the only costs are
// the handler's: its JS, its wasm, and the runtime objects it makes (Request, Response,
// Headers), which is where two ways of writing the same worker differ. Rounds interleave
// the workers; each prints its minimum and median, and the median of its per-round ratio to
// the JS worker (same round: the machine's drift cancels).
//
// Workers: canary-edge's edge Worker (build/edge; `--build dir[=label]` adds or replaces
// builds, e.g. a variant to compare), the hand-written JS worker (bench/workers/js-same-logic.mjs)
// and the floor. The edge Worker runs alone (no Durable Object bindings: counted loads are
// dropped after the router's outbox, as without HEALTH).
//
// hot: a returning client (cookie) and the file in the (in-memory) cache; first: no cookie
// (cohort derived, Set-Cookie); miss: every request reads R2 (the cache keeps nothing).

import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { ROOT, cpuMs, scenarioHeaders, start } from "./workerd.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const scenario = opt("--scenario", "hot");
const ROUNDS = Number(opt("--rounds", 7));
const N = Number(opt("--n", 15000));
const PORT = Number(opt("--port", 8797));
const builds = args.flatMap((a, i) => (a === "--build" ? [args[i + 1]] : []));

// The wrapper: the handler in a loop, the Cache API in memory. `TARGET` is the worker's
// main module. A Response is kept as bytes and headers, a match makes a new one (as the
// real cache does: each match a fresh Response with a body stream).
const WRAPPER = `import target from "./TARGET";
const store = new Map();
const memoryCache = {
  async match(key) {
    const e = store.get(typeof key === "string" ? key : key.url);
    return e ? new Response(e.body, { headers: e.headers }) : undefined;
  },
  async put(key, resp) {
    const body = await resp.arrayBuffer();
    if (!globalThis.NO_CACHE) store.set(typeof key === "string" ? key : key.url, { body, headers: [...resp.headers] });
  },
};
Object.defineProperty(globalThis, "caches", { value: { default: memoryCache }, configurable: true });
export default {
  async fetch(req, env, ctx) {
    const u = new URL(req.url);
    if (u.pathname !== "/__handler_loop") return target.fetch(req, env, ctx);
    globalThis.NO_CACHE = u.searchParams.get("cache") === "0";
    if (globalThis.NO_CACHE) store.clear();
    const n = Number(u.searchParams.get("n"));
    const url = u.searchParams.get("url");
    const headers = JSON.parse(u.searchParams.get("h"));
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const r = await target.fetch(new Request(url, { headers }), env, ctx);
      if (r.status !== 200) bad++;
      await r.arrayBuffer();
    }
    return new Response(String(bad));
  },
};
`;

/** A worker def whose main module is the loop wrapper around `main` (a file in `dir`). */
function looped(dir, main, work) {
  cpSync(dir, work, { recursive: true });
  writeFileSync(join(work, "__handler_loop.mjs"), WRAPPER.replace("TARGET", main));
  const modules = [{ type: "ESModule", path: join(work, "__handler_loop.mjs") }];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name !== "__handler_loop.mjs") modules.push({ type: p.endsWith(".wasm") ? "CompiledWasm" : "ESModule", path: p });
    }
  };
  walk(work);
  return { modules, modulesRoot: work };
}

const scratch = mkdtempSync(join(tmpdir(), "handler-cpu-"));
const candidates = {};
for (const spec of builds.length ? builds : [join(ROOT, "build")]) {
  const [dir, label] = spec.split("=");
  const name = label ?? (builds.length > 1 ? `canary-edge (${basename(resolve(dir))})` : "canary-edge");
  candidates[name] = { def: looped(join(resolve(dir), "edge"), "index.js", join(scratch, `${Object.keys(candidates).length}`)), kind: "canary-edge" };
}
const reference = (file, name) => {
  const work = join(scratch, name.replace(/\W/g, "_"));
  cpSync(join(ROOT, "bench/workers", file), join(work, file));
  writeFileSync(join(work, "__handler_loop.mjs"), WRAPPER.replace("TARGET", file));
  return { modules: [{ type: "ESModule", path: join(work, "__handler_loop.mjs") }, { type: "ESModule", path: join(work, file) }], modulesRoot: work };
};
candidates["JS same logic"] = { def: reference("js-same-logic.mjs", "JS same logic"), kind: "js" };
candidates["JS floor"] = { def: reference("floor.mjs", "JS floor"), kind: "floor" };

const perRound = Object.fromEntries(Object.keys(candidates).map((n) => [n, []]));
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [name, { def, kind }] of Object.entries(candidates)) {
      if (kind === "floor" && scenario !== "hot") continue;
      process.stderr.write(`handler-cpu: ${scenario} round ${round}/${ROUNDS}: ${name}\n`);
      const w = await start(def, { port: PORT });
      try {
        const h = await scenarioHeaders(kind === "canary-edge" ? "canary-edge" : kind, w, scenario);
        const loop = (n) => new URL(`/__handler_loop?n=${n}&cache=${scenario === "miss" ? 0 : 1}&url=${encodeURIComponent(w.url)}&h=${encodeURIComponent(JSON.stringify(h))}`, w.url);
        await (await fetch(loop(500))).text(); // warm: JIT, the config, the cache
        const before = cpuMs(w.pid);
        const bad = await (await fetch(loop(N))).text();
        const used = cpuMs(w.pid) - before;
        if (bad !== "0") throw new Error(`${name}: ${bad} of ${N} responses were not 200`);
        perRound[name].push((used * 1000) / N);
      } finally {
        await w.mf.dispose();
      }
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const js = perRound["JS same logic"];
const report = { scenario, rounds: ROUNDS, n: N, workers: {} };
console.log(`${scenario}: µs of workerd CPU per handler call (${N} calls a round, ${ROUNDS} rounds)`);
for (const [name, xs] of Object.entries(perRound)) {
  if (!xs.length) continue;
  const ratio = median(xs.map((x, i) => x / js[i]));
  report.workers[name] = { min_us: Math.min(...xs), median_us: median(xs), rounds_us: xs, vs_js_median_ratio: ratio };
  console.log(`${name.padEnd(28)} min ${Math.min(...xs).toFixed(1).padStart(6)}  median ${median(xs).toFixed(1).padStart(6)}  vs JS (per round, median) ${ratio.toFixed(3)}x  [${xs.map((x) => x.toFixed(0)).join(" ")}]`);
}
const out = opt("--out");
if (out) writeFileSync(out, JSON.stringify(report, null, 2));
