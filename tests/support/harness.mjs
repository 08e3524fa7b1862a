// One Miniflare set-up for every end-to-end test: the built wasm worker (build/) in workerd,
// with real local KV and R2 simulators, seeded from fixtures/, and a thin fault-injecting
// wrapper (tests/support/faults.mjs) that tests switch on through a control KV namespace.

import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { workerModules } from "./modules.mjs";
import { manifestKey, manifestOf } from "../../scripts/canary.mjs";

export const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
const BUILD = join(ROOT, "build");

export const CHROME_JA4 = "t13d1516h2_8daaf6152771_02713d6af862";
export const FIREFOX_JA4 = "t13d1715h2_5b57614c22b0_3d5424432f57";

const CONTENT_TYPES = { js: "text/javascript; charset=utf-8", html: "text/html; charset=utf-8" };

/** Files of fixtures/<bundle>/<version>/ as [key, bytes, contentType]. */
export function fixtureObjects() {
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/^(demo|merchant)\//.test(relative(join(ROOT, "fixtures"), p))) {
        const key = relative(join(ROOT, "fixtures"), p).split("\\").join("/");
        out.push([key, readFileSync(p), CONTENT_TYPES[p.split(".").pop()]]);
      }
    }
  };
  walk(join(ROOT, "fixtures"));
  return out;
}

/**
 * Writes the manifest of each `<bundle>/<version>/` among `keys` to `r2`, as
 * `scripts/canary publish` does after the files: the worker reads it on a canary miss to
 * tell a published file that is gone (counted) from one the canary never had (not counted).
 */
export async function putManifests(r2, keys) {
  const versions = new Map();
  for (const key of keys) {
    const [bundle, version, ...rest] = key.split("/");
    const id = `${bundle}/${version}`;
    if (!versions.has(id)) versions.set(id, { bundle, version, paths: [] });
    versions.get(id).paths.push(rest.join("/"));
  }
  for (const { bundle, version, paths } of versions.values()) {
    await r2.put(manifestKey(bundle, version), JSON.stringify(manifestOf(bundle, version, paths)), {
      httpMetadata: { contentType: "application/json; charset=utf-8" },
    });
  }
}

/**
 * Starts the worker. `vars` override wrangler.toml-style vars; `persist` shares state with
 * `wrangler ... --persist-to <persist>`; `rollout` seeds `rollout/demo` (null: no config);
 * `captureLogs` keeps the worker's log lines for `worker.logLines()` instead of printing them.
 * `extraWorkers`: test-only workers (Miniflare v4 options each) beside the edge, which is then
 * named "canary-edge" so that they can bind its Durable Object classes.
 */
export async function startWorker({
  vars = {},
  persist,
  rollout = { stable: "1.0.0", canary: "1.1.0", weight: 0 },
  seed = true,
  listen = false,
  captureLogs = false,
  extraWorkers = [],
} = {}) {
  if (!existsSync(join(BUILD, "index.js"))) {
    throw new Error("build/index.js missing: run scripts/build (scripts/test does) first");
  }
  const options = convertV4MiniflareOptions({
    // Named only when other workers bind its classes (a name changes where state persists).
    ...(extraWorkers.length ? { name: "canary-edge" } : {}),
    modules: [{ type: "ESModule", path: join(ROOT, "tests/support/faults.mjs") }, ...workerModules(BUILD)],
    modulesRoot: ROOT,
    compatibilityDate: "2026-11-01",
    kvNamespaces: { ROLLOUTS: "00000000000000000000000000000000", FAULTS: "faults" },
    r2Buckets: { BUNDLES: "canary-edge-bundles" },
    durableObjects: {
      HEALTH: { className: "HealthMonitor", useSQLite: true },
      HEALTH_AGGREGATORS: { className: "HealthAggregator", useSQLite: true },
    },
    // As in wrangler.toml.
    ratelimits: {
      REPORT_LIMIT_PER_CLIENT: { namespace_id: "1001", simple: { limit: 10, period: 60 } },
      REPORT_LIMIT_PER_IP: { namespace_id: "1002", simple: { limit: 100, period: 60 } },
      LOGIN_LIMIT_PER_IP: { namespace_id: "1003", simple: { limit: 10, period: 60 } },
    },
    // A COHORT_SECRET as in production (scripts/dev writes one too): without it auto canary
    // refuses to act. A test of that passes COHORT_SECRET: "".
    bindings: { COHORT_SALT: "canary-edge-test", COHORT_SECRET: "test-cohort-secret", CONFIG_TTL_MS: "0", ...vars },
    // As in wrangler.toml: the operator console's static files.
    assets: {
      directory: join(ROOT, "dashboard/public"),
      binding: "ASSETS",
      run_worker_first: ["/__canary/*"],
      routerConfig: { has_user_worker: true },
    },
  });
  // Test-only workers beside the edge (`extraWorkers`: Miniflare v4 options each), e.g. a
  // load generator bound to the edge's Durable Object classes (scriptName "canary-edge").
  for (const extra of extraWorkers) options.workers.push(...convertV4MiniflareOptions(extra).workers);
  // The harness rewrites module names so the wrapper can import "./build/index.js".
  options.logRequests = false;
  if (persist) options.resourcePersistencePath = join(persist, "v3");
  // Keep the CF-Connecting-IP the tests send: it is part of the client's identity.
  for (const w of options.workers) w.dev = { ...(w.dev ?? {}), stripCfConnectingIp: false };
  if (listen) Object.assign(options, { host: "127.0.0.1", port: 0 });
  const logs = [];
  if (captureLogs) {
    options.handleStructuredLogs = ({ level, message }) => {
      logs.push(message);
      if (level === "error" || level === "warn") console.error(message);
    };
  }
  const mf = new Miniflare(options);
  const url = await mf.ready;
  const kv = await mf.getKVNamespace("ROLLOUTS");
  const faults = await mf.getKVNamespace("FAULTS");
  const r2 = await mf.getR2Bucket("BUNDLES");
  if (seed) {
    const objects = fixtureObjects();
    for (const [key, bytes, contentType] of objects) {
      await r2.put(key, bytes, { httpMetadata: { contentType } });
    }
    await putManifests(r2, objects.map(([key]) => key));
    await kv.put("rollout/merchant", JSON.stringify({ stable: "1", weight: 0 }));
    if (rollout) await kv.put("rollout/demo", JSON.stringify(rollout));
  }
  const worker = new Worker(mf, kv, faults, r2);
  worker.url = url;
  worker.logs = logs;
  return worker;
}

export class Worker {
  constructor(mf, kv, faults, r2) {
    this.mf = mf;
    this.kv = kv;
    this.faults = faults;
    this.r2 = r2;
  }

  /**
   * A request like production's: `cookie`, `userKey`, `ip` (CF-Connecting-IP), `ja4`/`ja3`
   * (in `cf.botManagement`), plus any `headers` and `method`.
   */
  async get(path, { cookie, userKey, ip, ja4, ja3, headers = {}, method = "GET", body } = {}) {
    const h = { ...headers };
    if (cookie) h.cookie = cookie;
    if (userKey) h["x-user-key"] = userKey;
    if (ip) h["cf-connecting-ip"] = ip;
    const cf = { colo: "ICN", country: "KR", httpProtocol: "HTTP/2", tlsVersion: "TLSv1.3" };
    // Always set botManagement: Miniflare's placeholder cf has one with a JA3 of its own.
    cf.botManagement = { score: 99, ...(ja4 ? { ja4 } : {}), ...(ja3 ? { ja3Hash: ja3 } : {}) };
    const res = await this.mf.dispatchFetch(`http://edge.test${path}`, { method, headers: h, cf, body, redirect: "manual" });
    const text = method === "HEAD" ? "" : await res.text();
    return { status: res.status, headers: res.headers, text, res };
  }

  async setRollout(config, bundle = "demo") {
    await this.kv.put(`rollout/${bundle}`, typeof config === "string" ? config : JSON.stringify(config));
  }

  /** Turns on a fault in the wrapper: e.g. { kv: "throw" }, { r2: "throw", match: "demo/1.1.0/" }. */
  async setFaults(spec) {
    await this.faults.put("spec", JSON.stringify(spec));
  }

  /** Turns every fault off (and resets the count of injected write failures). */
  async clearFaults() {
    await this.faults.delete("spec");
    await this.faults.delete("kv-put-failed");
  }

  /** Successful KV writes of `key` by the worker and its Durable Object: [{ at, value }]. */
  async kvWrites(key) {
    const out = [];
    let cursor;
    do {
      const page = await this.faults.list({ prefix: `writes/${key}/`, cursor });
      for (const k of page.keys) {
        out.push({ at: Number(k.name.slice(`writes/${key}/`.length).split("-")[0]), name: k.name });
      }
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
    out.sort((a, b) => a.at - b.at);
    return Promise.all(out.map(async ({ at, name }) => ({ at, value: await this.faults.get(name) })));
  }

  /** How many times the worker listed the session revocations (`auth/`) in KV. */
  async revocationListings() {
    const { keys } = await this.faults.list({ prefix: "lists/auth/" });
    return keys.length;
  }

  /** Workers KV allows one write per second per key: fails if any key was written faster. */
  async assertPacedWrites() {
    const keys = new Set();
    let cursor;
    do {
      const page = await this.faults.list({ prefix: "writes/", cursor });
      for (const k of page.keys) keys.add(k.name.slice("writes/".length).replace(/\/[^/]*$/, ""));
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
    for (const key of keys) {
      const writes = await this.kvWrites(key);
      for (let i = 1; i < writes.length; i++) {
        const gap = writes[i].at - writes[i - 1].at;
        if (gap < 1000) throw new Error(`${key} written twice within ${gap} ms (Workers KV allows one write per second per key)`);
      }
    }
    return keys.size;
  }

  /** The JSON log lines the worker wrote so far, parsed (with `captureLogs`). */
  logLines() {
    const out = [];
    for (const message of this.logs ?? []) {
      for (const line of message.split("\n")) {
        if (!line.startsWith("{")) continue;
        try {
          out.push(JSON.parse(line));
        } catch { /* not a JSON line */ }
      }
    }
    return out;
  }

  /** Disposes of Miniflare, after checking that no KV key was written twice in a second. */
  async dispose() {
    try {
      await this.assertPacedWrites();
    } finally {
      await this.mf.dispose();
    }
  }
}

/** The `cohort=<value>` pair of a response's Set-Cookie, or null. */
export function cookiePair(headers) {
  const set = headers.get("set-cookie");
  return set ? set.split(";")[0] : null;
}

/** The version a served SDK file says it is. */
export function bodyVersion(text) {
  return /DemoPay SDK ([0-9.]+)/.exec(text)?.[1] ?? null;
}

/** Valid cookies for every cohort, collected from first-visit responses. */
export async function cookiesForEveryCohort(worker, cohorts = 10) {
  const found = new Map();
  for (let i = 0; found.size < cohorts && i < cohorts * 50; i++) {
    const r = await worker.get("/demo/sdk.js", { userKey: `collector-${i}` });
    found.set(Number(r.headers.get("x-cohort")), cookiePair(r.headers));
  }
  if (found.size < cohorts) throw new Error(`only found ${found.size} cohorts`);
  return found;
}

/** The stderr+stdout of a command run that must fail (a rejected execFile promise). */
export async function failureOutput(running, what) {
  try {
    await running;
  } catch (e) {
    return `${e.stderr}${e.stdout}`;
  }
  throw new Error(`${what} should have failed`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `check` every 50 ms until it returns something truthy (returned), failing after
 * `timeoutMs` with `what`. Tests wait for what they expect, not for a fixed time.
 */
export async function until(check, what, timeoutMs = 5000) {
  const started = Date.now();
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Sorts cohort cookies (from `cookiesForEveryCohort`) by the channel `bundle` serves them. */
export async function cookiesByChannel(worker, bundle, cookies) {
  const byChannel = { canary: [], stable: [] };
  for (const cookie of cookies.values()) {
    const r = await worker.get(`/${bundle}/sdk.js`, { cookie, method: "HEAD" });
    byChannel[r.headers.get("x-canary-channel")].push(cookie);
  }
  return byChannel;
}

/** Copies the demo bundle's fixture files, and their manifests, to `bundle` in R2 (a bundle per test). */
export async function copyDemoFiles(worker, bundle) {
  const keys = [];
  for (const [key, bytes, contentType] of fixtureObjects()) {
    if (!key.startsWith("demo/")) continue;
    keys.push(key.replace(/^demo\//, `${bundle}/`));
    await worker.r2.put(keys.at(-1), bytes, { httpMetadata: { contentType } });
  }
  await putManifests(worker.r2, keys);
}

let clientSerial = 0;

/**
 * `n` new shoppers of `bundle`: each a first visit (its own user key and IP), so each gets
 * its own cohort cookie with a client id. Returns [{ cookie, channel, ip }], and the lists by
 * channel. Their first loads are counted like any real client's.
 */
export async function newClients(worker, bundle, n, prefix = "shopper") {
  const all = [];
  for (let i = 0; i < n; i++) {
    const id = ++clientSerial;
    const ip = `198.18.${(id >> 8) & 255}.${id & 255}`;
    const r = await worker.get(`/${bundle}/sdk.js`, { userKey: `${prefix}-${id}`, ip });
    if (r.status !== 200) throw new Error(`first visit ${r.status}: ${r.text}`);
    all.push({ cookie: cookiePair(r.headers), channel: r.headers.get("x-canary-channel"), version: r.headers.get("x-canary-version"), ip });
  }
  return { all, canary: all.filter((c) => c.channel === "canary"), stable: all.filter((c) => c.channel === "stable") };
}

/** The SDK's boot signal (sdk/), from `client` ({ cookie, ip, version }). */
export function sendBoot(worker, bundle, client) {
  return sendReport(worker, bundle, client.version, client, "boot");
}

/** An SDK error report as the demo SDK's beacon sends it, from `client` ({ cookie, ip }). */
export async function sendReport(worker, bundle, version, client = {}, kind = "uncaught") {
  const body = kind === "boot" ? { bundle, version, kind, boot_ms: 120 } : { bundle, version, kind, message: "x" };
  const r = await worker.get("/__canary/report", {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "text/plain;charset=UTF-8" },
    cookie: client.cookie,
    ip: client.ip,
  });
  let json = null;
  try { json = JSON.parse(r.text); } catch { /* text errors */ }
  return { ...r, json };
}

/**
 * Shoppers arriving in the background until `stop()`: every `everyMs`, `perTick` first
 * visits of `bundle`, each booting its SDK (the boot signal) unless `boot` is false or its
 * channel's `noBoot` says it never boots ({ canary: true }: a canary that does not parse);
 * a canary shopper reports an error with probability `canaryErrors` (a stable one with
 * `stableErrors`). Rollouts only advance on evidence, so tests that want a step to pass
 * keep shoppers coming, as production does.
 */
export function startShoppers(worker, bundle, { everyMs = 100, perTick = 2, canaryErrors = 0, stableErrors = 0, prefix = "bg", boot = true, noBoot = {} } = {}) {
  let running = true;
  let seen = 0;
  const loop = (async () => {
    while (running) {
      const { all } = await newClients(worker, bundle, perTick, prefix).catch(() => ({ all: [] }));
      for (const c of all) {
        seen++;
        if (boot && !noBoot[c.channel]) await sendBoot(worker, bundle, c).catch(() => {});
        const p = c.channel === "canary" ? canaryErrors : stableErrors;
        if (p > 0 && Math.random() < p) await sendReport(worker, bundle, c.version, c).catch(() => {});
      }
      await sleep(everyMs);
    }
  })();
  return {
    get seen() { return seen; },
    async stop() { running = false; await loop; },
  };
}
