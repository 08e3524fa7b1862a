// Several copies of the edge Worker in one workerd, for measuring how fast a config change
// reaches the isolates that serve traffic (tests/propagation.test.mjs, bench/propagation.mjs).
//
// Each copy is a worker of its own in the harness's Miniflare (`extraWorkers`), so its own
// isolate: its own routing wasm, config copies, outbox, aggregator shard and revision-check
// clock. Each is the built edge Worker wrapped by the fault injector
// (tests/support/edge-entry.mjs), as the main one is, so `worker.setFaults({ kvLagMs })`
// gives every copy a KV that lags per isolate. A copy with `push` is bound to the control
// Worker's HealthMonitor and HealthAggregator classes, as production's edge is: it sends
// batches and checks revisions, and takes the config on their answers.
// A copy without is the KV path only: no control plane bindings, so nothing but KV (and its
// lag) tells it of a change.
//
// `startTraffic` plays shoppers on the copies: each copy gets one request every `everyMs`
// (from a random phase), from canary-cohort cookies, and records when each answer came and
// which channel it served. `propagation` reads, per copy, how long after the cut its first
// stable answer came, and whether it ever served the canary again after that.

import { join } from "node:path";
import { CONTROL_NAME, DEFAULT_VARS, ROOT, builtModules, controlObjects, sleep } from "./harness.mjs";

/** The harness's `extraWorkers` entries for the copies named `names` (see the header). */
export function edgeCopies(names, { push = true, vars = {} } = {}) {
  return names.map((name) => ({
    name,
    // The fault injector's wrapper as the entry (it imports ../../build/edge/index.js).
    modules: [
      { type: "ESModule", path: join(ROOT, "tests/support/edge-entry.mjs") },
      { type: "ESModule", path: join(ROOT, "tests/support/faults.mjs") },
      ...builtModules("edge"),
    ],
    modulesRoot: ROOT,
    compatibilityDate: "2026-11-01",
    // The main worker's namespaces and bucket, by the same ids (tests/support/harness.mjs).
    kvNamespaces: { ROLLOUTS: "00000000000000000000000000000000", FAULTS: "faults" },
    r2Buckets: { BUNDLES: "canary-edge-bundles" },
    durableObjects: push ? controlObjects({ scriptName: CONTROL_NAME }) : {},
    bindings: { ...DEFAULT_VARS, ...vars },
  }));
}

/**
 * Requests on every copy of `fetchers` (`{ name: fetcher }`, from `mf.getWorker`) until
 * `stop()`: one every `everyMs` per copy, from a random phase (`startAfterMs`: `{ name: ms }`
 * delays a copy's first request), each `GET /<bundle>/sdk.js` with the next of `cookies`.
 * `log` holds each copy's answers: `{ at, channel, status }` (`at`: when the answer came,
 * Date.now()).
 */
export function startTraffic(fetchers, { bundle, cookies, everyMs = 1000, startAfterMs = {} }) {
  let running = true;
  const log = new Map();
  let n = 0;
  const loops = Object.entries(fetchers).map(async ([name, fetcher]) => {
    const answers = [];
    log.set(name, answers);
    await sleep((startAfterMs[name] ?? 0) + Math.random() * everyMs);
    let next = Date.now();
    while (running) {
      const cookie = cookies[n++ % cookies.length];
      try {
        const r = await fetcher.fetch(`http://edge.test/${bundle}/sdk.js`, { headers: { cookie } });
        await r.arrayBuffer();
        answers.push({ at: Date.now(), channel: r.headers.get("x-canary-channel"), status: r.status });
      } catch (e) {
        answers.push({ at: Date.now(), channel: null, status: 0, error: String(e) });
      }
      next += everyMs;
      await sleep(Math.max(0, next - Date.now()));
    }
  });
  return {
    log,
    /** Whether every copy of `names` served stable at least once since `sinceMs`. */
    allStable(names, sinceMs) {
      return names.every((name) => (log.get(name) ?? []).some((a) => a.at >= sinceMs && a.channel === "stable"));
    },
    /** Whether every copy of `names` served its last answer from the canary. */
    allCanary(names) {
      return names.every((name) => (log.get(name) ?? []).at(-1)?.channel === "canary");
    },
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/**
 * Per copy of `names`: `ms` from `cutAtMs` to its first stable answer (null: none yet),
 * `wentBack`: canary answers after that one (an isolate that went back to an older config),
 * and the copies' answers per second before the cut (`rate`, from `sinceMs`).
 */
export function propagation(log, names, cutAtMs, { sinceMs } = {}) {
  return names.map((name) => {
    const answers = log.get(name) ?? [];
    const first = answers.find((a) => a.at >= cutAtMs && a.channel === "stable");
    const before = answers.filter((a) => a.at < cutAtMs && (sinceMs === undefined || a.at >= sinceMs));
    const span = before.length > 1 ? (before.at(-1).at - before[0].at) / 1000 : 0;
    return {
      name,
      ms: first ? first.at - cutAtMs : null,
      wentBack: first ? answers.filter((a) => a.at > first.at && a.channel !== "stable").length : 0,
      rate: span > 0 ? (before.length - 1) / span : 0,
    };
  });
}

/** The nearest-rank percentile `p` (0-100) of `values`. */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** p50, p99 and max of `values` (ms), rounded. */
export function summary(values) {
  const r = (v) => Math.round(v);
  return { n: values.length, p50: r(percentile(values, 50)), p99: r(percentile(values, 99)), max: r(Math.max(...values)) };
}
