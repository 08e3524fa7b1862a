// Test-only: wraps the built Workers' handlers (tests/support/edge-entry.mjs wraps the edge
// Worker's fetch, tests/support/restarter.mjs the control Worker's fetch and HealthMonitor)
// and, when a test asks for it through the FAULTS KV namespace, makes their KV or R2
// bindings or the edge cache fail the way production ones can. With no fault set it passes
// everything through untouched.
//
// The fault spec (`worker.setFaults({...})`, JSON under FAULTS `spec`) is read once per
// request by the edge and on every KV call by the Durable Object, never cached: a fault set
// (or cleared) applies to the next request, and one set before the worker's first request
// applies from the start of the run. Fields compose (a KV fault and an R2 fault at once):
// - `kv`: "throw", "timeout" (after `kvDelayMs`, default 30 s), "invalid" (a config that
//   does not parse): every ROLLOUTS get fails so;
// - `kvStale`: true (every reader) or "edge" / "monitor" (only that one): a get of a key
//   returns its previous write, as a KV location that missed the last one would;
// - `kvPutFail` n (with `kvPutError` "429" or "500"): the next n ROLLOUTS writes fail;
// - `kvLagMs` n: the ROLLOUTS binding caches reads like production KV (which may serve a
//   value up to ~60 s after it was overwritten): per isolate and per reader (the edge's
//   fetches and the HealthMonitor keep a cache each, "edge" and "monitor", since the
//   Durable Object runs in the same isolate in workerd but elsewhere in production), a get
//   of a key answers with the value that reader last fetched while that fetch is younger
//   than n ms; only then does it read the namespace again. So another's write is seen only
//   after up to n ms (plus the edge's CONFIG_TTL_MS). (The two Workers are two isolates,
//   and each has caches of its own: the control Worker's fetches read as "edge" too.) A reader's own write counts as its
//   fetch (Workers KV: a write is usually visible at once where it was made); with
//   `kvLagOwnWrites: false` it does not, and the writer too sees it only after the lag.
//   Applied after the faults above (a stale, failing or invalid read wins); text and json
//   gets only (others, getWithMetadata and list are not lagged). `{ kvLagMs: 0 }` or no
//   field: no lag;
// - `r2`: "throw" or "missing" for R2 keys containing `match` (every key without it);
// - `cache`: "throw", "throw-match", "throw-put" or "miss" (the edge cache);
// - `noKvBinding`: the edge has no ROLLOUTS binding.
/**
 * The HealthMonitor class `Inner` with the same faulty bindings as the edge, so that its KV
 * writes can fail and are logged (the spec read on every call: an object outlives the
 * request that set it).
 */
export function faultyMonitor(Inner) {
  return class HealthMonitor extends Inner {
    constructor(state, env) {
      super(state, wrapEnv(env, null, "monitor"));
    }
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function matches(spec, key) {
  return !spec.match || String(key).includes(spec.match);
}

async function readSpec(env) {
  const raw = await env.FAULTS.get("spec");
  return raw ? JSON.parse(raw) : {};
}

// Every successful KV write made by the worker or its Durable Object, as
// `writes/<key>/<ms>-<random>` in the FAULTS namespace (value: what was written), so tests
// can check that no key is written twice within a second, and replay an older value.
async function logWrite(faults, key, value) {
  const at = String(Date.now()).padStart(15, "0");
  await faults.put(`writes/${key}/${at}-${Math.random().toString(36).slice(2, 8)}`, String(value));
}

async function previousWrite(faults, key) {
  const { keys } = await faults.list({ prefix: `writes/${key}/` });
  const names = keys.map((k) => k.name).sort();
  return names.length >= 2 ? faults.get(names[names.length - 2]) : null;
}

// kvLagMs: what each reader ("edge", "monitor") last fetched, per key and type:
// `${type}\n${key}` -> { value, at }. Module state: per isolate, as production KV's caches
// are per location. Every text or json get and every write of the reader is recorded, lag
// or not, so a lag switched on mid-run starts from what the reader last saw.
const lagCaches = { edge: new Map(), monitor: new Map() };

/** How a KV get's `options` ask for the value: "text" (the default), "json", ... */
function getType(options) {
  return (typeof options === "string" ? options : options?.type) ?? "text";
}

/** `real.get(key, options)` through the reader's cache: the value it last fetched while younger than `lagMs`. */
async function laggedGet(real, role, lagMs, key, options) {
  const type = getType(options);
  if (type !== "text" && type !== "json") return real.get(key, options);
  const cache = lagCaches[role];
  const id = `${type}\n${key}`;
  const hit = cache.get(id);
  // The age runs from when the fetch was issued, as the worker's own config TTL does.
  const issued = Date.now();
  if (lagMs > 0 && hit && issued - hit.at < lagMs) return type === "json" ? structuredClone(hit.value) : hit.value;
  const value = await real.get(key, options);
  cache.set(id, { value: type === "json" ? structuredClone(value) : value, at: issued });
  return value;
}

/** A reader's own write: seen at once where it was made (unless `kvLagOwnWrites: false`). */
function recordOwnWrite(role, spec, key, value) {
  // Not seen at once: what the writer fetched before stays until it is older than the lag.
  if (spec.kvLagOwnWrites === false) return;
  const cache = lagCaches[role];
  // The next json get fetches (and so sees the write); a text one answers with it.
  cache.delete(`json\n${key}`);
  // (A delete is a write of null.)
  if (typeof value === "string" || value === null) cache.set(`text\n${key}`, { value, at: Date.now() });
  else cache.delete(`text\n${key}`);
}

// `spec` is null for the Durable Object's env: it reads the spec on every call, because
// an object outlives the request that set it.
// `role` is "edge" or "monitor" (the Durable Object): `{ kvStale: "monitor" }` makes only
// the control plane's reads stale, `{ kvStale: true }` everyone's.
function faultyKv(real, fixedSpec, faults, role) {
  const specNow = async () => fixedSpec ?? (await readSpec({ FAULTS: faults }));
  return {
    async get(key, options) {
      const spec = await specNow();
      if (spec.kvStale === true || spec.kvStale === role) {
        const old = await previousWrite(faults, key);
        if (old !== null) return old;
      }
      if (spec.kv === "throw") throw new Error("injected: KV GET failed");
      if (spec.kv === "timeout") {
        await sleep(spec.kvDelayMs ?? 30000);
        throw new Error("injected: KV GET timed out");
      }
      if (spec.kv === "invalid") return "{\"stable\": ";
      return laggedGet(real, role, Number(spec.kvLagMs ?? 0), key, options);
    },
    async put(key, value, options) {
      const spec = await specNow();
      // { kvPutFail: n, kvPutError: "429" }: the next n writes fail like Workers KV's.
      if (spec.kvPutFail) {
        const failed = Number((await faults.get("kv-put-failed")) ?? 0);
        if (failed < spec.kvPutFail) {
          await faults.put("kv-put-failed", String(failed + 1));
          throw new Error(spec.kvPutError === "500" ? "injected: KV PUT failed: 500" : "KV PUT failed: 429 Too Many Requests");
        }
      }
      await real.put(key, value, options);
      recordOwnWrite(role, spec, key, value);
      await logWrite(faults, key, value);
    },
    async list(options, ...rest) {
      // Refreshes of the session revocations are counted (each starts with the first page of
      // the generations, `auth/not-before/`): the console's polls must not list.
      if (options?.prefix === "auth/not-before/" && !options.cursor) await faults.put(`lists/auth/${Date.now()}-${Math.random()}`, role);
      return real.list(options, ...rest);
    },
    async delete(key, ...rest) {
      await real.delete(key, ...rest);
      recordOwnWrite(role, await specNow(), key, null);
    },
    getWithMetadata: (...a) => real.getWithMetadata(...a),
  };
}

// Named R2Bucket: workers-rs checks the binding's constructor name.
class R2Bucket {
  constructor(real, spec) {
    this.real = real;
    this.spec = spec;
  }
  async #maybeFail(key) {
    if (!matches(this.spec, key)) return false;
    if (this.spec.r2 === "throw") throw new Error("injected: R2 request failed");
    if (this.spec.r2 === "missing") return true;
    return false;
  }
  async get(key, options) {
    return (await this.#maybeFail(key)) ? null : this.real.get(key, options);
  }
  async head(key) {
    return (await this.#maybeFail(key)) ? null : this.real.head(key);
  }
  put(...a) { return this.real.put(...a); }
  delete(...a) { return this.real.delete(...a); }
  list(...a) { return this.real.list(...a); }
}

let cachePatched = false;
let cacheSpec = {};
function patchCache() {
  if (cachePatched) return;
  cachePatched = true;
  const cache = caches.default;
  const match = cache.match.bind(cache);
  const put = cache.put.bind(cache);
  // cache: "throw" (match and put throw), "throw-match", "throw-put", or "miss" (a cache
  // that stores nothing and finds nothing, like the Cache API on workers.dev).
  cache.match = async (...a) => {
    if (cacheSpec.cache === "throw" || cacheSpec.cache === "throw-match") throw new Error("injected: cache match failed");
    if (cacheSpec.cache === "miss") return undefined;
    return match(...a);
  };
  cache.put = async (...a) => {
    if (cacheSpec.cache === "throw" || cacheSpec.cache === "throw-put") throw new Error("injected: cache put failed");
    if (cacheSpec.cache === "miss") return undefined;
    return put(...a);
  };
}

function wrapEnv(env, spec, role = "edge") {
  const wrapped = Object.create(env);
  // KV always goes through the wrapper: it logs writes.
  wrapped.ROLLOUTS = faultyKv(env.ROLLOUTS, spec, env.FAULTS, role);
  if (spec?.r2) wrapped.BUNDLES = new R2Bucket(env.BUNDLES, spec);
  if (spec?.noKvBinding) wrapped.ROLLOUTS = undefined;
  return wrapped;
}

/** A fetch handler around `inner`'s, with this request's faults (read once, at its start). */
export function faultyFetch(inner) {
  return async (request, env, ctx) => {
    const spec = await readSpec(env);
    cacheSpec = spec;
    patchCache();
    return inner.fetch(request, wrapEnv(env, spec), ctx);
  };
}
