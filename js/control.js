// The control Worker's entry (wrangler.control.toml): the bundles' control plane, the admin
// API and the console, reached only through the edge Worker's bindings (its service
// binding CONTROL forwards `/__canary/...` but reports; its Durable Object bindings name
// this script). Nothing here loads in an isolate that serves SDK files.
//
// - `default` (fetch) and `HealthMonitor`: the operations module (Rust, the `worker`
//   crate, `src/`): health, status, the admin API, console sessions, and the object that
//   runs a bundle's rollout.
// - `HealthAggregator`: the objects that merge the edge isolates' health batches before
//   the bundle's HealthMonitor (js/health-aggregator.js, around `aggregator/`).
//
// Each module loads on its first use, not when the isolate starts: an isolate that only
// runs aggregators (every edge isolate's batches and revision checks) never instantiates
// the 1 MB operations module, one that only serves the API never loads the aggregators,
// and where both Workers share one workerd (wrangler dev, Miniflare) the edge's start does
// not wait for either (bench/README.md, "Two Workers in one workerd").

let operations;
const loadOperations = () => (operations ??= import("./ops/index.js"));
let aggregators;
const loadAggregators = () => (aggregators ??= import("./health-aggregator.js"));

export default {
  async fetch(request, env, ctx) {
    const { default: Operations } = await loadOperations();
    return new Operations(ctx, env).fetch(request);
  },
};

/**
 * A Durable Object class whose implementation (`name` in the module `load` imports) is
 * made at the object's first event, once: concurrent first events share it.
 */
function loadedOnFirstUse(load, name) {
  return class {
    constructor(state, env) {
      this.state = state;
      this.env = env;
      this.made = null;
    }

    object() {
      this.made ??= load()
        .then((module) => new module[name](this.state, this.env))
        .catch((e) => {
          // Not kept: the next event tries again (as a restarted object would).
          this.made = null;
          throw e;
        });
      return this.made;
    }

    async fetch(request) {
      return (await this.object()).fetch(request);
    }

    async alarm(info) {
      return (await this.object()).alarm(info);
    }
  };
}

export const HealthMonitor = loadedOnFirstUse(loadOperations, "HealthMonitor");
export const HealthAggregator = loadedOnFirstUse(loadAggregators, "HealthAggregator");
