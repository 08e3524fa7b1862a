// One Miniflare set-up for every end-to-end test: the built wasm worker (build/) in workerd,
// with real local KV and R2 simulators, seeded from fixtures/, and a thin fault-injecting
// wrapper (tests/support/faults.mjs) that tests switch on through a control KV namespace.
//
// Production's timeline by default: the worker's vars are wrangler.toml's [vars]
// (CONFIG_TTL_MS 5000: an isolate trusts its copy of a config for 5 s; HEALTH_FLUSH_MS
// 10000 and HEALTH_FLUSH_REQUESTS 1000: an isolate holds its loads until 10 s or 1,000
// requests have passed, errors and boots for up to 1 s), plus the test secrets below. A
// test that shortens one of these (or a health policy's timer, such as `boot_grace_secs`)
// says why where it does. Its state is always persisted (in a temp dir removed by
// dispose() unless the test gave `persist`), so that a test can restart what production
// restarts:
// - `worker.restart()`: a deploy, or workerd restarting: the whole runtime (every isolate,
//   every Durable Object) is disposed of and started again on the same persisted KV, R2
//   and Durable Object storage, with the same options (and, with `listen`, the same port
//   when it is free again; else `worker.url` changes).
// - `worker.restartObjects({ bundle })`: Durable Objects evicted while the edge keeps
//   running (idle eviction, an object moved): the HealthMonitor and HealthAggregator
//   objects (of `bundle` only, or all of them) lose their in-memory state and start again
//   from their SQLite storage on their next request; the edge isolates, and what they hold
//   (their config copies, their unsent counts), are untouched. Graceful: workerd's
//   `evict()` waits for the requests an object is serving, so no batch in flight is lost
//   (tests/support/restarter.mjs).

import { mkdtempSync, readFileSync, readdirSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { workerModules } from "./modules.mjs";
import { manifestKey, manifestText } from "../../scripts/canary.mjs";

export const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
const BUILD = join(ROOT, "build");
// CANARY_TEST_BUILD=<dir>: run the worker built there (a copy of build/, which scripts/test
// makes after building), under build/'s module names; so that a rebuild of build/ while
// the tests run does not pull the modules from under a worker that starts meanwhile.
const BUILT = process.env.CANARY_TEST_BUILD ? resolve(ROOT, process.env.CANARY_TEST_BUILD) : BUILD;
/** Where the tests' built worker is read from: build/, or CANARY_TEST_BUILD. */
export const BUILT_DIR = BUILT;

/** The Workers' names: the edge's bindings name the control Worker's script. */
export const EDGE_NAME = "canary-edge";
export const CONTROL_NAME = "canary-edge-control";

/**
 * One built Worker's modules (`which`: "edge" or "control", under build/ or
 * CANARY_TEST_BUILD), read now, named as in build/.
 */
export function builtModules(which) {
  return workerModules(join(BUILT, which)).map(({ type, path }) => ({
    type,
    path: join(BUILD, relative(BUILT, path)),
    contents: type === "CompiledWasm" ? new Uint8Array(readFileSync(path)) : readFileSync(path, "utf8"),
  }));
}

/**
 * The control Worker's Durable Object classes, as a binding names them (`scriptName`: from
 * another Worker). `classesFrom`: the script whose classes a `transferred_classes` migration
 * moved here, with every object and its storage: in workerd the objects of a class live
 * under its namespace's unique key (`<script>-<class>`), so state persisted before the move
 * is found under that script's name ("" for the single Worker this harness ran before the
 * split, which had no name).
 */
export function controlObjects({ scriptName, classesFrom } = {}) {
  const one = (className) => ({
    className,
    useSQLite: true,
    ...(scriptName ? { scriptName } : {}),
    ...(classesFrom === undefined ? {} : { unsafeUniqueKey: `${classesFrom}-${className}` }),
  });
  return { HEALTH: one("HealthMonitor"), HEALTH_AGGREGATORS: one("HealthAggregator") };
}

export const CHROME_JA4 = "t13d1516h2_8daaf6152771_02713d6af862";
export const FIREFOX_JA4 = "t13d1715h2_5b57614c22b0_3d5424432f57";

const CONTENT_TYPES = { js: "text/javascript; charset=utf-8", html: "text/html; charset=utf-8" };

/**
 * wrangler.toml's `[vars]`: the values a deployment runs with. A minimal reader of that one
 * table (`NAME = "string"` lines, comments); anything else in it is an error, not a guess.
 */
export function wranglerVars(file = join(ROOT, "wrangler.toml")) {
  const vars = {};
  let inVars = false;
  for (const raw of readFileSync(file, "utf8").split("\n")) {
    const line = raw.trim();
    if (line.startsWith("[")) {
      inVars = line.replace(/\s+/g, "") === "[vars]";
      continue;
    }
    if (!inVars || line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(?:#.*)?$/.exec(line);
    if (!m) throw new Error(`wrangler.toml [vars]: not a string var: ${line}`);
    vars[m[1]] = m[3] ?? JSON.parse(`"${m[2]}"`);
  }
  for (const name of ["CONFIG_TTL_MS", "HEALTH_FLUSH_MS", "HEALTH_FLUSH_REQUESTS"]) {
    if (!(name in vars)) throw new Error(`wrangler.toml [vars] has no ${name}`);
  }
  return vars;
}

/** The bindings every test worker gets unless it passes its own `vars`. */
export const DEFAULT_VARS = Object.freeze({
  ...wranglerVars(),
  // Secrets (not in wrangler.toml), as a deployment sets them: a COHORT_SECRET as in
  // production (scripts/dev writes one too), without which auto canary refuses to act (a
  // test of that passes COHORT_SECRET: ""); the tests' own salt.
  COHORT_SALT: "canary-edge-test",
  COHORT_SECRET: "test-cohort-secret",
});

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
    await r2.put(manifestKey(bundle, version), manifestText(bundle, version, paths), {
      httpMetadata: { contentType: "application/json; charset=utf-8" },
    });
  }
}

/**
 * Starts the worker. `vars` override wrangler.toml's [vars] (DEFAULT_VARS); `persist`
 * shares state with `wrangler ... --persist-to <persist>` (without it, a temp dir that
 * dispose() removes); `rollout` seeds `rollout/demo` (null: no config); `captureLogs` keeps
 * the worker's log lines for `worker.logLines()` instead of printing them.
 * `extraWorkers`: test-only workers (Miniflare v4 options each) beside the two, e.g. bound to
 * the control Worker's classes (`controlObjects({ scriptName: CONTROL_NAME })`).
 * `classesFrom`: see `controlObjects` (a state persisted before the split into two Workers).
 *
 * Two Workers run, as wrangler.toml and wrangler.control.toml deploy them: the edge
 * (`canary-edge`, the first: `url` and `get()` reach it) and the control Worker
 * (`canary-edge-control`), reached through the edge's service binding and Durable Object
 * bindings. Both get the same vars.
 */
export async function startWorker({
  vars = {},
  persist,
  rollout = { stable: "1.0.0", canary: "1.1.0", weight: 0 },
  seed = true,
  listen = false,
  captureLogs = false,
  extraWorkers = [],
  classesFrom,
} = {}) {
  for (const entry of ["edge/index.js", "control/index.js"]) {
    if (!existsSync(join(BUILT, entry))) {
      throw new Error(`${relative(ROOT, BUILT)}/${entry} missing: run scripts/build (scripts/test does) first`);
    }
  }
  const scratch = persist ? null : mkdtempSync(join(tmpdir(), "canary-edge-test-"));
  const options = workerOptions({ vars, persist: persist ?? scratch, listen, extraWorkers, classesFrom });
  const logs = [];
  if (captureLogs) {
    options.handleStructuredLogs = ({ level, message }) => {
      logs.push(message);
      if (level === "error" || level === "warn") console.error(message);
    };
  }
  const worker = new Worker(options, scratch);
  worker.vars = { ...DEFAULT_VARS, ...vars };
  worker.logs = logs;
  try {
    await worker.start();
    if (seed) {
      const objects = fixtureObjects();
      for (const [key, bytes, contentType] of objects) {
        await worker.r2.put(key, bytes, { httpMetadata: { contentType } });
      }
      await putManifests(worker.r2, objects.map(([key]) => key));
      await worker.kv.put("rollout/merchant", JSON.stringify({ stable: "1", weight: 0 }));
      if (rollout) await worker.kv.put("rollout/demo", JSON.stringify(rollout));
    }
  } catch (e) {
    await worker.mf?.dispose().catch(() => {});
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    throw e;
  }
  return worker;
}

/** Miniflare's options for the two Workers (and `extraWorkers`), as their wrangler configs declare them. */
function workerOptions({ vars, persist, listen, extraWorkers, classesFrom }) {
  const shared = {
    modulesRoot: ROOT,
    compatibilityDate: "2026-11-01",
    kvNamespaces: { ROLLOUTS: "00000000000000000000000000000000", FAULTS: "faults" },
    r2Buckets: { BUNDLES: "canary-edge-bundles" },
    bindings: { ...DEFAULT_VARS, ...vars },
  };
  const options = convertV4MiniflareOptions({
    workers: [
      {
        ...shared,
        name: EDGE_NAME,
        // The entry is the fault injector's wrapper of the built edge (tests/support/edge-entry.mjs).
        modules: [
          { type: "ESModule", path: join(ROOT, "tests/support/edge-entry.mjs") },
          { type: "ESModule", path: join(ROOT, "tests/support/faults.mjs") },
          ...builtModules("edge"),
        ],
        // As in wrangler.toml.
        serviceBindings: { CONTROL: CONTROL_NAME },
        durableObjects: controlObjects({ scriptName: CONTROL_NAME, classesFrom }),
        ratelimits: {
          REPORT_LIMIT_PER_CLIENT: { namespace_id: "1001", simple: { limit: 10, period: 60 } },
          REPORT_LIMIT_PER_IP: { namespace_id: "1002", simple: { limit: 100, period: 60 } },
        },
      },
      {
        ...shared,
        name: CONTROL_NAME,
        // The entry is the test-only restarter (restartObjects), which wraps the built
        // control Worker behind the fault injector.
        modules: [
          { type: "ESModule", path: join(ROOT, "tests/support/restarter.mjs") },
          { type: "ESModule", path: join(ROOT, "tests/support/faults.mjs") },
          ...builtModules("control"),
        ],
        // workerd:unsafe (evict()), for the restarter only: the built Worker never imports it.
        compatibilityFlags: ["unsafe_module"],
        // As in wrangler.control.toml.
        durableObjects: controlObjects({ classesFrom }),
        ratelimits: { LOGIN_LIMIT_PER_IP: { namespace_id: "1003", simple: { limit: 10, period: 60 } } },
        // The operator console's static files.
        assets: {
          directory: join(ROOT, "dashboard/public"),
          binding: "ASSETS",
          run_worker_first: ["/__canary/*"],
          routerConfig: { has_user_worker: true },
        },
      },
    ],
  });
  // Test-only workers beside the two (`extraWorkers`: Miniflare v4 options each), e.g. a
  // load generator bound to the control Worker's Durable Object classes.
  for (const extra of extraWorkers) options.workers.push(...convertV4MiniflareOptions(extra).workers);
  // (builtModules names the modules as in build/, so the test entries import ../../build/<worker>/.)
  options.logRequests = false;
  options.resourcePersistencePath = join(persist, "v3");
  // Keep the CF-Connecting-IP the tests send: it is part of the client's identity.
  for (const w of options.workers) w.dev = { ...(w.dev ?? {}), stripCfConnectingIp: false };
  if (listen) Object.assign(options, { host: "127.0.0.1", port: 0 });
  return options;
}

export class Worker {
  /** `options`: Miniflare's; `scratch`: the temp dir holding its state, removed by dispose(). */
  constructor(options, scratch = null) {
    this.options = options;
    this.scratch = scratch;
    this.mf = null;
    this.restarts = 0;
  }

  /** Starts the runtime on the persisted state; `url`, `kv`, `faults`, `r2` are its. */
  async start() {
    this.mf = new Miniflare(this.options);
    this.url = await this.mf.ready;
    this.kv = await this.mf.getKVNamespace("ROLLOUTS");
    this.faults = await this.mf.getKVNamespace("FAULTS");
    this.r2 = await this.mf.getR2Bucket("BUNDLES");
  }

  /**
   * A deploy (or workerd restarting): disposes of the runtime and starts it again on the
   * same persisted state with the same options. Every isolate starts afresh (config
   * copies, unsent counts, module state: gone) and so does every Durable Object (from its
   * storage). With `listen`, the same port if it is free again, else a new one
   * (`worker.url`). `kv`, `faults`, `r2` and `mf` are replaced: read them from the worker
   * after a restart. `vars`: a deploy that changes vars or secrets (e.g. a rotated
   * READ_TOKEN, an operator removed from OPERATOR_TOKENS): the edge starts with them.
   */
  async restart({ vars } = {}) {
    const port = this.options.port === undefined ? undefined : Number(this.url.port);
    await this.mf.dispose();
    if (vars) {
      // The edge's bindings, as Miniflare holds them (the worker whose env has the vars).
      for (const w of this.options.workers) {
        const env = w.config?.env;
        if (!env || !("CONFIG_TTL_MS" in env)) continue;
        for (const [name, value] of Object.entries(vars)) env[name] = { type: "text", value };
      }
      Object.assign(this.vars, vars);
    }
    this.restarts++;
    if (port !== undefined) this.options.port = port;
    try {
      await this.start();
    } catch (e) {
      if (port === undefined) throw e;
      // The port was taken meanwhile: a new one.
      this.options.port = 0;
      await this.start();
    }
  }

  /**
   * Restarts the control plane's Durable Objects while the edge keeps running: the
   * HealthMonitor and HealthAggregator objects of `bundle` (all of them without one) are
   * evicted as workerd evicts an idle object, after the requests they are serving, and
   * start again from their storage on their next request. What lives only in an object's
   * memory is gone (the monitor's `intake` counters, for one); its SQLite storage and
   * alarms are kept. Returns how many objects were running and evicted.
   */
  async restartObjects({ bundle } = {}) {
    const control = await this.mf.getWorker(CONTROL_NAME);
    const r = await control.fetch("http://restarter.test/__test/restart-objects", {
      method: "POST",
      body: JSON.stringify(bundle === undefined ? {} : { bundle }),
    });
    const text = await r.text();
    if (r.status !== 200) throw new Error(`restartObjects: ${r.status} ${text}`);
    return JSON.parse(text);
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

  /** This worker's CONFIG_TTL_MS: how long an isolate serves its copy of a bundle's config. */
  get configTtlMs() {
    return Number(this.vars.CONFIG_TTL_MS);
  }

  /**
   * Writes `bundle`'s config to KV, as an operator's `wrangler kv key put` does. The edge
   * serves it once its copy expires (CONFIG_TTL_MS from when that copy was read) and a KV
   * read completes within KV_TIMEOUT_MS (on a busy machine one may not: the last good copy
   * serves meanwhile). With `served`, this waits until the public status, read through the
   * edge's copy, shows the new stable and weight (a JSON config only).
   */
  async setRollout(config, bundle = "demo", { served = false } = {}) {
    await this.kv.put(`rollout/${bundle}`, typeof config === "string" ? config : JSON.stringify(config));
    if (!served) return;
    await sleep(this.configTtlMs + 50);
    const want = typeof config === "string" ? JSON.parse(config) : config;
    await until(async () => {
      const r = await this.get(`/__canary/status/${bundle}`);
      if (r.status !== 200) return false;
      const s = JSON.parse(r.text);
      return s.stable === want.stable && s.weight === want.weight;
    }, `the edge serving ${bundle}'s new config`, 10_000);
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

  /** How many times the worker listed the session revocations (`auth/not-before/`, then `auth/revoked/`) in KV. */
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

  /**
   * Disposes of Miniflare, after checking that no KV key was written twice in a second;
   * removes the state's temp dir (unless the test gave `persist`).
   */
  async dispose() {
    this.disposed = true;
    try {
      await this.assertPacedWrites();
    } finally {
      await this.mf.dispose();
      if (this.scratch) rmSync(this.scratch, { recursive: true, force: true });
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

/** An SDK error report as the demo SDK's beacon sends it, from `client` ({ cookie, ip }; a
 * boot carries `client.bootMs`, else 120). */
export async function sendReport(worker, bundle, version, client = {}, kind = "uncaught") {
  const body = kind === "boot" ? { bundle, version, kind, boot_ms: client.bootMs ?? 120 } : { bundle, version, kind, message: "x" };
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
  const failed = { visits: 0, reports: 0, last: null };
  const failure = (what) => (e) => {
    failed[what]++;
    failed.last = String(e?.message ?? e).slice(0, 200);
    return { all: [] };
  };
  const report = async (sending) => {
    const r = await sending;
    if (r.status !== 202 || r.json?.counted === false) failure("reports")(`report ${r.status} ${r.text.trim().slice(0, 120)}`);
  };
  const loop = (async () => {
    // Also ends with its worker: a test that failed before stop() must not hang the file.
    while (running && !worker.disposed) {
      const { all } = await newClients(worker, bundle, perTick, prefix).catch(failure("visits"));
      for (const c of all) {
        seen++;
        if (boot && !noBoot[c.channel]) await report(sendBoot(worker, bundle, c)).catch(failure("reports"));
        const p = c.channel === "canary" ? canaryErrors : stableErrors;
        if (p > 0 && Math.random() < p) await report(sendReport(worker, bundle, c.version, c)).catch(failure("reports"));
      }
      await sleep(everyMs);
    }
  })();
  return {
    get seen() { return seen; },
    /** What went wrong, for a test's message: failed first visits and reports (not counted), the last. */
    get failed() { return failed; },
    /** One line for an assertion's message. */
    describe() { return `${seen} shoppers seen; ${failed.visits} first visits and ${failed.reports} reports failed or not counted${failed.last ? ` (last: ${failed.last})` : ""}`; },
    async stop() { running = false; await loop; },
  };
}

let canarySerial = 0;

/**
 * A first visit of `bundle` from `ip` that lands on the canary: user keys are tried with HEAD
 * (which counts nothing and mints no id) until one's cohort is on the canary, then that key
 * makes its counted first visit. Returns { cookie, ip, version } of the new client.
 */
export async function canaryVisit(worker, bundle, ip) {
  for (;;) {
    const key = `canary-visit-${++canarySerial}`;
    const head = await worker.get(`/${bundle}/sdk.js`, { method: "HEAD", userKey: key, ip });
    if (head.headers.get("x-canary-channel") !== "canary") continue;
    const r = await worker.get(`/${bundle}/sdk.js`, { userKey: key, ip });
    if (r.headers.get("x-canary-channel") !== "canary") throw new Error(`${key} was not served the canary: ${r.status}`);
    return { cookie: cookiePair(r.headers), ip, version: r.headers.get("x-canary-version") };
  }
}
