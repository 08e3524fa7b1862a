// Test-only entry module: wraps the built worker (build/index.js) and, when a test asks for
// it through the FAULTS KV namespace, makes its KV or R2 bindings or the edge cache fail the
// way production ones can. With no fault set it passes everything through untouched.
import Inner, { HealthMonitor as InnerMonitor } from "../../build/index.js";

export { HealthAggregator } from "../../build/index.js";

// The Durable Object class must be exported by the main module. It gets the same faulty
// bindings as the edge, so its KV writes can fail and are logged.
export class HealthMonitor extends InnerMonitor {
  constructor(state, env) {
    super(state, wrapEnv(env, null, "monitor"));
  }
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
      return real.get(key, options);
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
      await logWrite(faults, key, value);
    },
    async list(options, ...rest) {
      // Listings of the session revocations are counted: the console's polls must not list.
      if (options?.prefix === "auth/") await faults.put(`lists/auth/${Date.now()}-${Math.random()}`, role);
      return real.list(options, ...rest);
    },
    delete: (...a) => real.delete(...a),
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

export default {
  async fetch(request, env, ctx) {
    const spec = await readSpec(env);
    cacheSpec = spec;
    patchCache();
    return Inner.fetch(request, wrapEnv(env, spec), ctx);
  },
};
