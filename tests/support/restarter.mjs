// Test-only entry of the control Worker (tests/support/harness.mjs, `worker.restartObjects()`):
// the built control Worker (build/control/index.js) behind the fault injector
// (tests/support/faults.mjs), plus one route that restarts the control plane's Durable
// Objects while the edge keeps running, as production does when it evicts an idle object
// or moves one:
//
//   POST http://restarter.test/__test/restart-objects   {"bundle": "demo"} or {}
//
// With a bundle: its HealthMonitor (named by the bundle) and its 64 HealthAggregators
// (`<bundle>#<shard>`, health::coalesce::shard_suffix) are evicted with workerd's
// `evict(stub)`; without one, every Durable Object of this worker
// (`evictAllDurableObjects()`). Eviction is graceful: it waits for the requests the object
// is serving, then drops the instance; its SQLite storage and alarm stay, and the next
// request builds a new instance from them. Objects that were not running are skipped.
// Answers {"evicted": n, "not_running": m} (n of all: -1).
//
// `workerd:unsafe` needs the "unsafe_module" compatibility flag (set by the harness for
// tests only; the built worker never imports it). Only this module's service can evict its
// own objects, hence a wrapper of the entry rather than a worker beside it. Nothing else
// changes: every other request goes to the control Worker through the fault injector.
import unsafe from "workerd:unsafe";
import Control, { HealthMonitor as BuiltMonitor } from "../../build/control/index.js";
import { faultyFetch, faultyMonitor } from "./faults.mjs";

export { HealthAggregator } from "../../build/control/index.js";
export const HealthMonitor = faultyMonitor(BuiltMonitor);
// The control Worker's default export: a fetch handler (js/control.js).
const control = faultyFetch(Control);

const HOST = "restarter.test";
const PATH = "/__test/restart-objects";
/** health::coalesce::AGGREGATORS: a bundle's aggregator objects. */
const AGGREGATORS = 64;

async function restartObjects(request, env) {
  const { bundle } = await request.json();
  if (bundle === undefined) {
    await unsafe.evictAllDurableObjects();
    return Response.json({ evicted: -1, not_running: 0 });
  }
  const stubs = [env.HEALTH.get(env.HEALTH.idFromName(bundle))];
  const aggregators = env.HEALTH_AGGREGATORS;
  if (aggregators) {
    for (let i = 0; i < AGGREGATORS; i++) stubs.push(aggregators.get(aggregators.idFromName(`${bundle}#${i}`)));
  }
  let evicted = 0;
  let notRunning = 0;
  await Promise.all(stubs.map(async (stub) => {
    try {
      await unsafe.evict(stub);
      evicted++;
    } catch (e) {
      if (!/not currently running/.test(String(e?.message ?? e))) throw e;
      notRunning++;
    }
  }));
  return Response.json({ evicted, not_running: notRunning });
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.hostname === HOST && url.pathname === PATH && request.method === "POST") {
      try {
        return await restartObjects(request, env);
      } catch (e) {
        return new Response(`restart failed: ${e?.stack ?? e}`, { status: 500 });
      }
    }
    return control(request, env, ctx);
  },
};
