// Rollback in seconds (issue 25, item 3): with KV reads lagging 60 s in every isolate, a cut
// reaches every isolate that serves at least one request a second within 5 s (p99), on the
// config the control plane pushes: on the answers to health batches, and on the revision
// check an isolate makes while it serves a canary (core/src/edge/rollouts.rs has the order;
// docs/operating.md, "Propagation", the figures).
//
// Real routing isolates: several copies of the edge Worker in one workerd, each its own
// isolate, wrapped by the fault injector (a KV that lags 60 s per isolate), bound to the main
// worker's HealthMonitor and HealthAggregator classes (tests/support/edges.mjs). Each copy
// serves one request a second from canary-cohort cookies, with production's timeline
// (CONFIG_TTL_MS 5 s, HEALTH_FLUSH_MS 10 s). Two more copies have no control plane bindings:
// the KV path only, which must still serve the canary well after the cut (the lag is real,
// and the push is what did it). `bench/propagation.mjs` gives the full figures, KV path
// included.
//
// Two cuts: an operator's rollback through the admin API, and an automatic one from canary
// error reports. For each, per isolate: the time from the cut (the rollback's history entry)
// to its first answer serving stable, and no canary answer after it (an isolate never goes
// back to the older config its lagging KV still returns).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { cookiesByChannel, cookiesForEveryCohort, copyDemoFiles, newClients, sendReport, sleep, startWorker, until } from "./support/harness.mjs";
import { edgeCopies, propagation, startTraffic, summary } from "./support/edges.mjs";

const TOKEN = "test-admin-token-0123456789abcdef";
const LAG_MS = 60_000;
const TARGET_MS = 5_000;
const PUSH = ["edge-1", "edge-2", "edge-3", "edge-4", "edge-5", "edge-6"];
const KV_ONLY = ["kv-1", "kv-2"];
// The automatic cut: a small sample suffices (autocanary.test.mjs's policy); boots are not
// asked for (boot_grace_secs 1: shoppers here do not boot).
const HEALTH = { window_secs: 60, min_requests: 20, max_error_rate: 0.1, max_relative: 2, auto_rollback: true, hostile_networks: 0, boot_grace_secs: 1 };

let w;
let fetchers;
let cookies;
const samples = [];

before(async () => {
  w = await startWorker({
    rollout: { stable: "1.0.0", canary: "1.1.0", weight: 50 },
    vars: {
      ADMIN_TOKEN: TOKEN,
      // The main worker plays the reporting shoppers of the automatic cut: its counts reach
      // the monitor as they are made (the copies keep production's 10 s flush).
      HEALTH_FLUSH_MS: "0",
      HEALTH_FLUSH_REQUESTS: "1",
    },
    extraWorkers: [...edgeCopies(PUSH), ...edgeCopies(KV_ONLY, { push: false })],
  });
  // Every isolate's KV lags from its first read on.
  await w.setFaults({ kvLagMs: LAG_MS });
  fetchers = {};
  for (const name of [...PUSH, ...KV_ONLY]) fetchers[name] = await w.mf.getWorker(name);
  cookies = await cookiesForEveryCohort(w);
});

after(async () => {
  if (samples.length) console.log(`# propagation over both cuts, ${samples.length} isolates: ${JSON.stringify(summary(samples))}`);
  await w?.dispose();
});

async function api(bundle, path, body) {
  const r = await w.get(`/__canary/api/${bundle}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

/** When `bundle`'s last rollback was recorded (its history entry), in ms. */
async function cutAt(bundle) {
  const rollback = (await api(bundle, "")).monitor.history.at(-1);
  assert.ok(rollback, "a rollback in the history");
  return Date.parse(rollback.at);
}

/**
 * Traffic on every copy from `bundle`'s canary cookies until each serves the canary and has
 * for `warmMs`; then `cut()`, the cut's time from the history, and the answers until every
 * push copy served stable and `watchMs` passed. Returns the figures per copy.
 */
async function measure(bundle, cut, { warmMs = 6_000, watchMs = 10_000 } = {}) {
  const { canary } = await cookiesByChannel(w, bundle, cookies);
  const traffic = startTraffic(fetchers, { bundle, cookies: canary, everyMs: 1000 });
  try {
    await until(() => traffic.allCanary([...PUSH, ...KV_ONLY]), "every copy serving the canary", 15_000);
    const warm = Date.now();
    await sleep(warmMs);
    await cut();
    const at = await cutAt(bundle);
    await until(() => traffic.allStable(PUSH, at), "every push copy serving stable", 20_000);
    await sleep(Math.max(0, at + watchMs - Date.now()));
    await traffic.stop();
    return { at, push: propagation(traffic.log, PUSH, at, { sinceMs: warm }), kvOnly: propagation(traffic.log, KV_ONLY, at) };
  } finally {
    await traffic.stop();
  }
}

function check(name, { push, kvOnly }) {
  const ms = push.map((c) => c.ms);
  const figures = summary(ms);
  console.log(`# ${name}: push + revision check, ${JSON.stringify(figures)} ms; per isolate ${JSON.stringify(push.map((c) => [c.name, c.ms]))}`);
  for (const c of push) {
    assert.ok(c.rate >= 0.9, `${c.name} served ${c.rate.toFixed(2)} requests a second before the cut`);
    assert.equal(c.wentBack, 0, `${c.name} served the canary again after it switched: ${JSON.stringify(c)}`);
  }
  assert.ok(figures.p99 <= TARGET_MS, `p99 ${figures.p99} ms > ${TARGET_MS} ms: ${JSON.stringify(push)}`);
  // The control: KV lags, so the KV-only isolates still serve the canary (for up to 60 s
  // plus the config TTL; bench/propagation.mjs measures it).
  for (const c of kvOnly) assert.equal(c.ms, null, `${c.name} (KV path only) switched after ${c.ms} ms: is KV lagging?`);
  samples.push(...ms);
}

test("an operator's rollback reaches every serving isolate within 5 s though KV lags 60 s", async () => {
  const figures = await measure("demo", async () => {
    const answer = await api("demo", "/rollback", { reason: "propagation test" });
    assert.equal(answer.config.weight, 0);
  });
  check("operator rollback", figures);
});

test("an automatic cut from canary error reports reaches them as fast", async () => {
  const bundle = "auto";
  await copyDemoFiles(w, bundle);
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50, health: HEALTH }, bundle);
  const figures = await measure(bundle, async () => {
    // New shoppers through the main worker; the canary ones report an error each until the
    // control plane cuts.
    const shoppers = await newClients(w, bundle, 60, "propagation");
    for (const client of shoppers.canary) {
      const r = await sendReport(w, bundle, "1.1.0", client);
      assert.equal(r.status, 202, r.text);
      if (!r.json.counted) break; // the main worker already serves stable
      const cuts = (await api(bundle, "")).monitor.history;
      if (cuts.length) break;
      await sleep(20);
    }
    await until(async () => (await api(bundle, "")).monitor.history.length > 0, "the automatic cut", 20_000);
    const rollback = (await api(bundle, "")).monitor.history.at(-1);
    assert.equal(rollback.by, "auto");
  });
  check("automatic cut", figures);
});
