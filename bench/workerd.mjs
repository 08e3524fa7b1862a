// What the workerd benchmarks share: the three workers, starting one in its own Miniflare
// (its own workerd process) on 127.0.0.1 with seeded KV and R2, the workerd process's CPU
// time, and wrk. Used by throughput.mjs, batch-cost.mjs and profile.mjs.

import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { workerModules } from "../tests/support/modules.mjs";

export const ROOT = resolve(fileURLToPath(import.meta.url), "../..");
export const ROLLOUT = { stable: "1.0.0", canary: "1.1.0", weight: 30 };
export const VARS = { COHORTS: "10", COHORT_SALT: "bench-salt", COHORT_SECRET: "bench-secret", CONFIG_TTL_MS: "5000" };
/** Every request carries a client address: canary-edge hashes the network with the fingerprint. */
export const CLIENT = { "cf-connecting-ip": "203.0.113.77", "user-agent": "bench" };

/** The control Worker's name, as wrangler.control.toml deploys it and the edge binds it. */
export const CONTROL_NAME = "canary-edge-control";

/**
 * canary-edge's Durable Object bindings as wrangler.toml deploys them (and
 * tests/support/harness.mjs binds them): the bundle's HealthMonitor, and the aggregators
 * its isolates send their health batches to (which merge them and forward to the monitor),
 * both classes of the control Worker.
 */
export const HEALTH_BINDINGS = {
  HEALTH: { className: "HealthMonitor", scriptName: CONTROL_NAME, useSQLite: true },
  HEALTH_AGGREGATORS: { className: "HealthAggregator", scriptName: CONTROL_NAME, useSQLite: true },
};
/** The path before the aggregators: HEALTH only, so isolates send straight to the monitor. */
export const HEALTH_ONLY = { HEALTH: HEALTH_BINDINGS.HEALTH };

/**
 * The control Worker of `buildDir` (Miniflare options; `start` runs it beside the edge when
 * the edge's def has it as `control`): its classes and its fetch (the edge's CONTROL).
 */
export function controlWorker(buildDir = join(ROOT, "build")) {
  const dir = join(buildDir, "control");
  return {
    name: CONTROL_NAME,
    modules: workerModules(dir),
    modulesRoot: dir,
    compatibilityDate: "2026-11-01",
    kvNamespaces: { ROLLOUTS: "rollouts" },
    r2Buckets: { BUNDLES: "bundles" },
    durableObjects: {
      HEALTH: { className: "HealthMonitor", useSQLite: true },
      HEALTH_AGGREGATORS: { className: "HealthAggregator", useSQLite: true },
    },
  };
}

/** The workers compared, by name. `buildDir`: canary-edge's build (default build/). */
export function workers(buildDir = join(ROOT, "build")) {
  const dir = join(buildDir, "edge");
  const edge = { modules: workerModules(dir), modulesRoot: dir };
  const control = controlWorker(buildDir);
  const health = HEALTH_BINDINGS;
  return {
    "canary-edge": { ...edge, durableObjects: health, control },
    "canary-edge (edge Worker alone)": { ...edge, only: ["hot"] },
    // Attribution of the health counting cost (run with --explore only).
    "canary-edge (HEALTH, flush every 100k requests / 10 min)": {
      ...edge,
      durableObjects: health,
      control,
      vars: { HEALTH_FLUSH_REQUESTS: "100000", HEALTH_FLUSH_MS: "600000" },
      only: ["hot"],
      explore: true,
    },
    // Cold start only (bench/throughput.mjs): its first request reads the bundle's status.
    "control Worker (alone)": { ...control, urlPath: "/__canary/status/demo", startOnly: true },
    "JS same logic": { modules: [{ type: "ESModule", path: join(ROOT, "bench/workers/js-same-logic.mjs") }], modulesRoot: ROOT },
    "JS floor": { modules: [{ type: "ESModule", path: join(ROOT, "bench/workers/floor.mjs") }], modulesRoot: ROOT },
  };
}

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

/** The workerd process Miniflare started for us: our newest child called workerd. */
function workerdPid() {
  let best = null;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue;
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ppid = Number(fields[1]);
    const started = Number(fields[19]);
    if (comm === "workerd" && ppid === process.pid && (!best || started > best.started)) best = { pid: Number(name), started };
  }
  return best?.pid ?? null;
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** User + system CPU time of a process, in ms (resolution 1000 / CLK_TCK ms). */
export function cpuMs(pid) {
  if (!pid) return NaN;
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/**
 * Starts one worker alone in a fresh Miniflare on 127.0.0.1:`port`, seeded with the demo
 * bundle and `rollout`. Returns { mf, url (the floating SDK URL), readyMs, pid }.
 * `def.sidecars`: more workers (Miniflare options) in the same workerd process, after the
 * one served, e.g. one whose Durable Object class `def.durableObjects` names by `scriptName`.
 * `def.control`: canary-edge's control Worker (`controlWorker`), run beside it and bound as
 * production binds it (its classes, and the service binding CONTROL), with the same vars.
 */
export async function start(def, { cache = true, port = 8791, inspectorPort, rollout = ROLLOUT, persist, seed = true } = {}) {
  const worker = {
    modules: def.modules,
    modulesRoot: def.modulesRoot,
    compatibilityDate: "2026-11-01",
    kvNamespaces: { ROLLOUTS: "rollouts" },
    r2Buckets: { BUNDLES: "bundles" },
    durableObjects: def.durableObjects,
    bindings: { ...VARS, ...(def.vars ?? {}) },
    cache,
  };
  const sidecars = [...(def.sidecars ?? [])];
  if (def.control) {
    worker.serviceBindings = { CONTROL: def.control.name };
    sidecars.push({ ...def.control, bindings: worker.bindings });
  }
  const options = convertV4MiniflareOptions(
    sidecars.length ? { workers: [{ name: "main", ...worker }, ...sidecars] } : worker,
  );
  options.logRequests = false;
  options.host = "127.0.0.1";
  options.port = port;
  if (inspectorPort) options.inspectorPort = inspectorPort;
  // `persist`: KV, R2 and Durable Object storage in that directory, so that a second start on
  // it is a restart (`seed: false` then leaves KV and R2 as they are).
  if (persist) options.resourcePersistencePath = join(persist, "v3");
  // Keep CF-Connecting-IP: canary-edge hashes the client's network with the fingerprint.
  for (const wk of options.workers) wk.dev = { ...(wk.dev ?? {}), stripCfConnectingIp: false };
  const t0 = performance.now();
  const mf = new Miniflare(options);
  const url = await mf.ready;
  const readyMs = performance.now() - t0;
  const pid = workerdPid();
  const kv = await mf.getKVNamespace("ROLLOUTS");
  const r2 = await mf.getR2Bucket("BUNDLES");
  if (seed) {
    for (const [key, bytes] of fixtures()) {
      await r2.put(key, bytes, { httpMetadata: { contentType: "text/javascript; charset=utf-8" } });
    }
    await kv.put("rollout/demo", JSON.stringify(rollout));
  }
  return { mf, url: new URL(def.urlPath ?? "/demo/sdk.js", url).href, readyMs, pid, t0 };
}

export async function timedFetch(url, headers = {}) {
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

/**
 * Waits until the process's CPU time stops growing (no new tick over `quietMs`, at most
 * `maxMs`): work the load left behind (`waitUntil` tasks, a Durable Object's queue) done.
 */
export function settle(pid, { quietMs = 300, maxMs = 15_000 } = {}) {
  const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  const t0 = performance.now();
  let last = cpuMs(pid);
  let quietSince = performance.now();
  while (performance.now() - t0 < maxMs) {
    sleep(50);
    const now = cpuMs(pid);
    if (now !== last) {
      last = now;
      quietSince = performance.now();
    } else if (performance.now() - quietSince >= quietMs) break;
  }
  return last;
}

/**
 * One wrk run; with `pid`, also the workerd CPU time per request it served. With `settle`,
 * the CPU time is read once the process is quiet again (see `settle`; an object: its
 * options), so that work the requests queued (a batch a Durable Object has not ingested
 * yet, an aggregator's last forward) is counted too.
 */
export function wrk(url, headers, { threads = 2, connections = 32, duration = 5, pid, settle: wait = false } = {}) {
  const hargs = Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
  const cpu0 = cpuMs(pid);
  const out = execFileSync("wrk", ["-t", String(threads), "-c", String(connections), "-d", `${duration}s`, "--latency", ...hargs, url], {
    encoding: "utf8",
    timeout: (duration + 30) * 1000,
  });
  const cpu = (wait ? settle(pid, typeof wait === "object" ? wait : {}) : cpuMs(pid)) - cpu0;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
    p50: toMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ""),
    p99: toMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ""),
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0),
    errors: /Socket errors:.*/.exec(out)?.[0] ?? "",
    requests,
    cpu_ms: cpu,
    cpu_us_per_req: (cpu * 1000) / requests,
  };
}

/**
 * The request headers of a scenario, after a first request (for its cookie) and, for the
 * cached scenario, 20 warm-up requests. hot: cached asset with the cohort cookie; miss: the
 * same with the Cache API off; first: no cookie (the cohort is derived, Set-Cookie sent).
 */
export async function scenarioHeaders(name, w, scenario) {
  const first = await timedFetch(w.url, CLIENT);
  if (first.res.status !== 200) throw new Error(`${name}: first response ${first.res.status}`);
  const cookie = (first.res.headers.get("set-cookie") ?? "").split(";")[0];
  if (scenario === "first") return CLIENT;
  const headers = { ...CLIENT, ...(cookie ? { cookie } : {}) };
  if (scenario === "hot") {
    for (let i = 0; i < 20; i++) await timedFetch(w.url, headers); // warm the cache
    const check = await timedFetch(w.url, headers);
    if (check.res.status !== 200 || (name.startsWith("canary-edge") && check.res.headers.get("set-cookie"))) {
      throw new Error(`${name}: hot path check failed (${check.res.status})`);
    }
  }
  return headers;
}
