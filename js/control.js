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
export { default, HealthMonitor } from "./ops/index.js";
export { HealthAggregator } from "./health-aggregator.js";
