// Test-only entry module: wraps the built worker (build/index.js) and, when a test asks for
// it through the FAULTS KV namespace, makes its KV or R2 bindings or the edge cache fail the
// way production ones can. With no fault set it passes everything through untouched.
import Inner from "../../build/index.js";

// The Durable Object class must be exported by the main module.
export { HealthMonitor } from "../../build/index.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function matches(spec, key) {
  return !spec.match || String(key).includes(spec.match);
}

function faultyKv(real, spec) {
  return {
    async get(key, options) {
      if (spec.kv === "throw") throw new Error("injected: KV GET failed");
      if (spec.kv === "timeout") {
        await sleep(spec.kvDelayMs ?? 30000);
        throw new Error("injected: KV GET timed out");
      }
      if (spec.kv === "invalid") return "{\"stable\": ";
      return real.get(key, options);
    },
    put: (...a) => real.put(...a),
    list: (...a) => real.list(...a),
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

export default {
  async fetch(request, env, ctx) {
    const raw = await env.FAULTS.get("spec");
    const spec = raw ? JSON.parse(raw) : {};
    cacheSpec = spec;
    patchCache();
    const wrapped = Object.create(env);
    if (spec.kv) wrapped.ROLLOUTS = faultyKv(env.ROLLOUTS, spec);
    if (spec.r2) wrapped.BUNDLES = new R2Bucket(env.BUNDLES, spec);
    if (spec.noKvBinding) wrapped.ROLLOUTS = undefined;
    const worker = new Inner(ctx, wrapped);
    return worker.fetch(request);
  },
};
