// Verdicts you can trust, end to end with the real HealthMonitor, KV and R2: the
// walkthrough's (docs/operating.md) bad canary never passes step 1 and is cut once the evidence suffices; a
// healthy canary with too little traffic waits for evidence and then pauses, never
// advancing on silence; the status explains itself.
import { after, before, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import { copyDemoFiles, sleep, startShoppers, startWorker, until } from "./support/harness.mjs";

const TOKEN = "verdict-admin-token-0123456789abcdef";
let w;
let bundle;
let n = 0;

before(async () => {
  w = await startWorker({
    rollout: { stable: "1.0.0", canary: "1.1.0", weight: 0 },
    // HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: the hold and explain tests read the verdict
    // right after a few seconds of light traffic, which must have reached the monitor; the
    // walkthrough's test runs on a worker with wrangler.toml's values.
    vars: { ADMIN_TOKEN: TOKEN, HEALTH_FLUSH_MS: "0", HEALTH_FLUSH_REQUESTS: "1" },
  });
});
after(() => w.dispose());

beforeEach(async () => {
  bundle = `ver${++n}`;
  await copyDemoFiles(w, bundle);
});

async function api(path = "", { method = "GET", body } = {}) {
  const r = await w.get(`/__canary/api/${bundle}${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}` }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { ...r, json: JSON.parse(r.text) };
}
const kvWeight = async () => JSON.parse(await w.kv.get(`rollout/${bundle}`)).weight;

test("the walkthrough's bad canary (30% of its clients fail) never passes step 1 and is cut", async () => {
  // The README's defaults (no `health` field at all), on a worker with wrangler.toml's vars:
  // each isolate flushes its loads every 10 s or 1,000 requests, its boots and errors within
  // a second; the edge sees each step up to 5 s after it was written.
  const deployed = await startWorker({ rollout: null, vars: { ADMIN_TOKEN: TOKEN } });
  try {
    await walkthrough(deployed);
  } finally {
    await deployed.dispose();
  }
});

async function walkthrough(w) {
  const api = async (path = "", { method = "GET", body } = {}) => {
    const r = await w.get(`/__canary/api/${bundle}${path}`, {
      method, headers: { authorization: `Bearer ${TOKEN}` }, body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { ...r, json: JSON.parse(r.text) };
  };
  const kvWeight = async () => JSON.parse(await w.kv.get(`rollout/${bundle}`)).weight;
  await copyDemoFiles(w, bundle);
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 0 }, bundle);
  assert.equal((await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 2 } })).status, 200);
  // With the default hostile_networks (10), a cut needs 10 failing canary clients beyond
  // what the tests need: about 50 canary clients at 10%, some 500 shoppers.
  const shoppers = startShoppers(w, bundle, { perTick: 4, everyMs: 20, canaryErrors: 0.3 });
  const weights = new Set();
  try {
    await until(async () => {
      const weight = await kvWeight();
      weights.add(weight);
      return weight === 0;
    }, "the cut", 90000);
  } finally {
    await shoppers.stop();
  }
  assert.deepEqual([...weights].filter((x) => x > 10), [], "never past step 1 (10%)");
  const m = (await api()).json.monitor;
  assert.equal(m.progress.state, "rolled_back");
  assert.equal(m.history.at(-1).by, "rollout");
  assert.match(m.history.at(-1).reason, /canary error rate .* is above 2x stable's .* with 99% confidence/);
  assert.ok(m.history.at(-1).canary_counts.clients < 200, `cut after ${m.history.at(-1).canary_counts.clients} canary clients`);
  console.log(`# bad canary cut after ${m.history.at(-1).canary_counts.clients} canary clients: ${m.history.at(-1).reason}`);
}

test("a healthy canary with too little traffic waits for evidence, then pauses; it never advances on silence", async () => {
  // A 20 s hold (not the default hour): long enough for the step's outlook (its traffic is
  // a rate after 15 s), short enough for the pause to come within the test.
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 0, health: { max_hold_secs: 20 } }, bundle);
  await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 1 } });
  const shoppers = startShoppers(w, bundle, { perTick: 1, everyMs: 200 });
  try {
    const waiting = await until(async () => {
      const m = (await api()).json.monitor;
      return m.progress.state === "waiting_for_evidence" ? m : null;
    }, "waiting_for_evidence", 8000);
    assert.match(waiting.progress.reason, /of the 200 canary clients a step needs/);
    assert.equal(waiting.verdict.state, "inconclusive");
    // Ahead of the pause, the status says the step is below the traffic it needs: ~0.5
    // canary clients a second against the 200-odd it needs.
    const ahead = await until(async () => {
      const m = (await api()).json.monitor;
      return m.progress.outlook ? m : null;
    }, "the step's outlook", 20000);
    const o = ahead.progress.outlook;
    assert.equal(ahead.progress.state, "waiting_for_evidence");
    assert.equal(o.below_needed_traffic, true, JSON.stringify(o));
    assert.ok(o.clients_needed > 100 && o.clients_per_min > 0, JSON.stringify(o));
    assert.match(o.message, /^below the traffic this step needs: about \d+ more canary clients/);
    const paused = await until(async () => {
      const m = (await api()).json.monitor;
      return m.progress.state === "paused" ? m : null;
    }, "paused after the longest hold", 30000);
    assert.match(paused.progress.reason, /^no evidence 20 s after step 1 baked/);
    assert.ok(paused.events.some((e) => e.kind === "rollout_paused" && e.by === "rollout"));
  } finally {
    await shoppers.stop();
  }
  await sleep(1500);
  assert.equal(await kvWeight(), 10, "held at step 1 throughout");
});

test("the admin status explains the verdict: clients, errors, estimates with intervals, statistics and thresholds", async () => {
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50 }, bundle);
  const shoppers = startShoppers(w, bundle, { perTick: 3, everyMs: 50, canaryErrors: 0.1 });
  await sleep(2000);
  await shoppers.stop();
  const v = (await api()).json.monitor.verdict;
  for (const ch of ["canary", "stable"]) {
    assert.ok(v[ch].clients > 0, ch);
    assert.ok(v[ch].low <= v[ch].rate && v[ch].rate <= v[ch].high, JSON.stringify(v[ch]));
  }
  assert.ok(Number.isFinite(v.cut.relative) && Number.isFinite(v.cut.absolute));
  // Four cut tests (errors; silence after the grace, early silence and boot time, once
  // stable's SDK is known to boot) share α: each at α/4.
  const cutAlpha = v.tracked.silence_counts_as_failure ? 0.01 / 4 : 0.01;
  assert.equal(v.cut.threshold.toFixed(3), Math.log(1 / cutAlpha).toFixed(3), "ln(1/α) at 99%, α split between errors, silence, early silence and boot time");
  assert.equal(v.pass.threshold.toFixed(3), Math.log(1 / 0.05).toFixed(3), "ln(1/β), β = 1 − pass_confidence (0.95 by default): the mean of the two e-values against 1/β");
  const mean = Math.log((Math.exp(v.pass.relative) + Math.exp(v.pass.absolute)) / 2);
  assert.ok(Math.abs(v.pass.combined - mean) < 1e-6, `combined ${v.pass.combined} is the log of the mean, ${mean}`);
  assert.match(v.reason, /canary \d/);
  assert.ok(["cut", "pass", "inconclusive"].includes(v.state));
});
