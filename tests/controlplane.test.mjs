// The control plane end to end, with the real HealthMonitor Durable Object (SQLite), KV and
// R2: a rollout is bound to its canary, an operator's KV write wins, concurrent events lose
// nothing, failed and rate-limited KV writes leave state and KV consistent and are retried,
// a stale KV read never undoes a newer write, and no key is written twice in a second.
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  copyDemoFiles, newClients, sendBoot, sendReport, sleep, startShoppers, startWorker, until,
} from "./support/harness.mjs";

const TOKEN = "test-admin-token-0123456789abcdef";
// Steps advance on evidence only: a lenient rule (3 clean canary clients under a 50% floor)
// and background shoppers make a step pass in seconds, so these tests are about the
// control plane, not the statistics.
// A handful of clients drive the control plane's mechanics here: no discount for hostile
// networks (tests/attacks.test.mjs covers those), and a boot grace that outlasts a burst of
// 50 first visits made one after another before they boot.
const MECHANICS = { hostile_networks: 0, boot_grace_secs: 10 };
const BASE = { stable: "1.0.0", canary: "1.1.0", weight: 0, health: { min_clients: 3, min_error_rate: 0.5, ...MECHANICS } };

let w;
let bundle;
let shoppers;
let n = 0;

before(async () => {
  w = await startWorker({
    rollout: BASE,
    // HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: every load and report reaches the monitor
    // as served, so that a step passes in seconds and the tests can count every client
    // ("parallel loads ... lose nothing"); the flush timer: browser-canary.test.mjs.
    vars: { ADMIN_TOKEN: TOKEN, HEALTH_FLUSH_MS: "0", HEALTH_FLUSH_REQUESTS: "1" },
  });
});
// dispose() also fails the suite if any key was written twice within a second.
after(() => w.dispose());

beforeEach(async () => {
  bundle = `cp${++n}`;
  await w.clearFaults();
  await copyDemoFiles(w, bundle);
  await w.setRollout(BASE, bundle);
  shoppers = startShoppers(w, bundle, { perTick: 3, everyMs: 50 });
});
afterEach(() => shoppers.stop());

async function api(path, { method = "GET", body } = {}) {
  const r = await w.get(`/__canary/api/${bundle}${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}` }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try { json = JSON.parse(r.text); } catch { /* text errors */ }
  return { ...r, json };
}

const kvConfig = async () => JSON.parse(await w.kv.get(`rollout/${bundle}`));
const monitor = async () => (await api("")).json.monitor;

describe("a rollout is bound to its canary", () => {
  test("publishing a new canary by a KV write while a rollout runs: the new one stays dark", async () => {
    const started = await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 1 } });
    assert.equal(started.status, 200, started.text);
    // `scripts/canary publish` without the admin API: files, then the config in KV.
    await w.setRollout({ ...(await kvConfig()), canary: "1.2.0", weight: 0, revision: undefined }, bundle);
    await sleep(3000); // three bake times: the old rollout would have stepped twice by now
    const config = await kvConfig();
    assert.deepEqual([config.canary, config.weight], ["1.2.0", 0], "the new canary stays dark");
    const m = await monitor();
    assert.equal(m.progress.state, "superseded");
    assert.equal(m.progress.canary, "1.1.0");
    assert.match(m.progress.reason, /1\.1\.0 to 1\.2\.0/);
    assert.equal(m.events[0].kind, "kv_adopted");
  });

  test("publishing through the admin API supersedes the rollout; the files must exist", async () => {
    await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 1 } });
    const missing = await api("/publish", { method: "POST", body: { version: "9.9.9" } });
    assert.equal(missing.status, 409);
    assert.match(missing.text, /no files under/);
    for (const [key, value] of [["sdk.js", "/* DemoPay SDK 1.2.0 */"], ["chunk.js", "//"]]) {
      await w.r2.put(`${bundle}/1.2.0/${key}`, value);
    }
    const published = await api("/publish", { method: "POST", body: { version: "1.2.0" } });
    assert.equal(published.status, 200, published.text);
    assert.deepEqual([published.json.config.canary, published.json.config.weight], ["1.2.0", 0]);
    assert.equal(published.json.monitor.progress.state, "superseded");
    await sleep(2500);
    assert.equal((await kvConfig()).weight, 0, "no step of the old rollout reached the new canary");
    const again = await api("/publish", { method: "POST", body: { version: "1.2.0" } });
    assert.equal(again.status, 409);
    assert.match(again.text, /immutable/);
  });

  test("a command naming another canary is refused", async () => {
    const r = await api("/weight", { method: "POST", body: { weight: 50, canary: "1.0.9" } });
    assert.equal(r.status, 409);
    assert.match(r.text, /about canary 1\.0\.9, but the canary is now 1\.1\.0/);
    assert.equal((await kvConfig()).weight, 0);
  });
});

describe("the operator wins", () => {
  test("a KV write during a rollout is adopted and pauses it", async () => {
    await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 1 } });
    // `wrangler kv key put` of a hand-edited config, revision and all.
    const mine = { ...(await kvConfig()), weight: 30 };
    await w.setRollout(mine, bundle);
    await sleep(2500);
    assert.equal((await kvConfig()).weight, 30, "the operator's weight stands");
    const m = await monitor();
    assert.equal(m.progress.state, "paused");
    assert.match(m.progress.reason, /operator wrote the config to KV/);
    assert.ok(m.events.some((e) => e.kind === "kv_adopted" && e.by === "kv"));
    // The admin API's next write outranks the hand-written revision.
    const set = await api("/weight", { method: "POST", body: { weight: 40 } });
    assert.ok((await kvConfig()).revision > mine.revision, JSON.stringify(set.json.config));
  });

  test("a stale KV read of an older own write is ignored, not adopted", async () => {
    await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 1 } });
    // Seconds on an idle machine; the first step reaches the edge up to CONFIG_TTL_MS (5 s)
    // after it was written, and a busy machine (other files beside this one) is slower.
    await until(async () => (await kvConfig()).weight === 50, "step 2", 45000);
    // From now on the control plane's KV reads return the write before the latest (rev 1,
    // weight 10), as a KV location that has not caught up would.
    await w.setFaults({ kvStale: "monitor" });
    await until(async () => (await w.kvWrites(`rollout/${bundle}`)).length === 3, "step 3 written", 45000);
    await w.clearFaults();
    const writes = (await w.kvWrites(`rollout/${bundle}`)).map((x) => JSON.parse(x.value).weight);
    assert.deepEqual(writes, [10, 50, 100], "the rollout went on: the stale weight 10 was never adopted");
    const m = await monitor();
    assert.ok(!m.events.some((e) => e.kind === "kv_adopted"), JSON.stringify(m.events));
  });
});

describe("concurrency", () => {
  test("parallel loads, reports and commands lose nothing", async () => {
    await shoppers.stop();
    bundle = `${bundle}-quiet`; // no background shoppers ever saw this one
    await copyDemoFiles(w, bundle);
    await w.setRollout({ ...BASE, weight: 50 }, bundle);
    const loads = 60;
    const weights = [50, 60, 70, 80, 90];
    const jobs = [];
    for (let i = 0; i < loads; i++) {
      // Each a new client (its own id): 60 distinct clients, all loading at once.
      jobs.push(w.get(`/${bundle}/sdk.js`, { userKey: `parallel-${bundle}-${i}` }));
    }
    for (const weight of weights) jobs.push(api("/weight", { method: "POST", body: { weight } }));
    const results = await Promise.all(jobs);
    assert.ok(results.every((r) => r.status === 200), results.map((r) => r.status).join(","));
    const totals = await until(async () => {
      const t = (await monitor()).totals;
      return t.stable.clients + t.canary.clients === loads ? t : null;
    }, `all ${loads} clients counted`, 8000);
    assert.ok(totals.canary.clients > 0 && totals.stable.clients > 0);
    const events = (await monitor()).events.filter((e) => e.kind === "set_weight");
    assert.equal(events.length, weights.length, "every command in the history");
    const final = (await kvConfig()).weight;
    assert.equal(events[0].weight, final, "KV holds the last command applied");
  });

  test("two failing batches at once cut the canary once", async () => {
    await shoppers.stop();
    // Served: the edge's copy (weight 0, read by the shoppers) has expired (CONFIG_TTL_MS).
    await w.setRollout({ ...BASE, weight: 50, health: { window_secs: 60, min_requests: 5, max_error_rate: 0.1, max_relative: 2, ...MECHANICS } }, bundle, { served: true });
    // The control plane adopts the KV write when it next reads KV (an admin read does).
    await until(async () => (await api("")).json.config.weight === 50, "the new weight adopted");
    const { canary, stable } = await newClients(w, bundle, 50);
    // The background shoppers booted stable's SDK: silent stable clients would count as
    // no_boot failures, so the stable ones boot, as their SDK does.
    await Promise.all(stable.map((client) => sendBoot(w, bundle, client)));
    await Promise.all(canary.map((client) => sendReport(w, bundle, "1.1.0", client)));
    await until(async () => (await kvConfig()).weight === 0, "rollback");
    await sleep(300);
    const m = await monitor();
    assert.equal(m.history.length, 1, JSON.stringify(m.history));
  });
});

describe("KV write failures", () => {
  test("a 429 on a command is retried a second later and succeeds", async () => {
    await w.setFaults({ kvPutFail: 1, kvPutError: "429" });
    const started = Date.now();
    const r = await api("/weight", { method: "POST", body: { weight: 30 } });
    assert.equal(r.status, 200, r.text);
    assert.ok(Date.now() - started >= 1000, "waited before the retry");
    assert.equal((await kvConfig()).weight, 30);
  });

  test("a command whose writes keep failing answers 503 and changes nothing", async () => {
    const before = (await monitor()).kv.revision;
    await w.setFaults({ kvPutFail: 2, kvPutError: "429" });
    const r = await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 1 } });
    assert.equal(r.status, 503);
    assert.match(r.json.error, /nothing was changed/);
    assert.equal((await kvConfig()).weight, 0, "KV unchanged");
    const m = await monitor();
    assert.equal(m.progress, null, "no rollout was started behind KV's back");
    assert.equal(m.kv.revision, before, "no write landed");
  });

  test("a failed step is retried by the alarm and never skips a step", async () => {
    await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 1 } });
    await w.setFaults({ kvPutFail: 3, kvPutError: "500" });
    // A step waits for evidence at 10%, which the edge serves up to CONFIG_TTL_MS (5 s) after
    // the rollout wrote it.
    await until(async () => (await monitor()).kv.failed_writes > 0, "a failed step write", 30000);
    const m = await monitor();
    assert.equal(m.progress.step, 0, "the step did not advance without its write");
    assert.equal((await kvConfig()).weight, 10);
    await until(async () => (await kvConfig()).weight === 100, "the retried steps", 45000);
    const weights = (await w.kvWrites(`rollout/${bundle}`)).map((x) => JSON.parse(x.value).weight);
    assert.deepEqual(weights, [10, 50, 100], "every step written once, in order");
    const done = await until(async () => {
      const p = (await monitor()).progress;
      return p.state === "done" ? p : null;
    }, "rollout done");
    assert.equal(done.step, 2);
  });
});

describe("weights and steps that mean something", () => {
  test("a weight below one cohort is refused by the API and reported when written to KV", async () => {
    const r = await api("/weight", { method: "POST", body: { weight: 5 } });
    assert.equal(r.status, 400);
    assert.match(r.text, /puts no cohort on the canary/);
    const steps = await api("/rollout", { method: "POST", body: { steps: [5, 50, 100] } });
    assert.equal(steps.status, 400);
    assert.match(steps.text, /progression\.steps.*step 5%/);
    await w.setRollout({ ...BASE, weight: 5 }, bundle);
    const status = JSON.parse((await w.get(`/__canary/status/${bundle}`)).text);
    assert.equal(status.effective_weight, 0);
    assert.match(status.note, /nobody gets it/);
    const [client] = (await newClients(w, bundle, 1)).all;
    const report = await sendReport(w, bundle, "1.1.0", client);
    assert.deepEqual(report.json, { counted: false, reason: "version_not_live" }, "a canary that serves nobody counts nothing");
  });
});

test("the public status shows the split only; thresholds, counts and history need the token", async () => {
  await w.setRollout({ ...BASE, weight: 30, health: { min_requests: 50 }, rollback: { reason: "secret" } }, bundle);
  const status = JSON.parse((await w.get(`/__canary/status/${bundle}`)).text);
  assert.deepEqual(Object.keys(status).sort(), ["bundle", "canary", "canary_cohorts", "cohorts", "effective_weight", "stable", "weight"]);
  assert.doesNotMatch(JSON.stringify(status), /min_requests|secret|history/);
  const admin = (await api("")).json;
  assert.equal(admin.config.health.min_clients, 50, "the old name is read as the new one");
  assert.ok(Array.isArray(admin.monitor.events));
});
