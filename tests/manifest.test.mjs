// Canary fallbacks and version manifests, end to end against the built wasm in workerd. A
// floating canary request whose file is missing is served stable's copy either way; it
// counts against the canary only when R2 failed or the canary published the file (its
// manifest `<bundle>/.manifests/<version>.json`, written by `scripts/canary publish`,
// lists it). A file the canary never had is a plain fallback: logged, counted neither as a
// load nor as an error, so nobody can fail a canary by asking canary clients' URLs for
// files only stable has. Faults come from tests/support/faults.mjs.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { bodyVersion, copyDemoFiles, sleep, startWorker, until } from "./support/harness.mjs";

const TOKEN = "manifest-admin-token-0123456789abcdef";
// Every cohort on the canary; no automatic rollback, so counts only ever add up.
const ROLLOUT = { stable: "1.0.0", canary: "1.1.0", weight: 100, health: { auto_rollback: false } };

let w;
let bundle;
let n = 0;
let client = 0;

before(async () => {
  w = await startWorker({
    captureLogs: true,
    // HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: each load and fallback reaches the monitor
    // as served, so that the totals are checked request by request (the flush timer:
    // browser-canary.test.mjs, verdicts.test.mjs).
    vars: { ADMIN_TOKEN: TOKEN, HEALTH_FLUSH_MS: "0", HEALTH_FLUSH_REQUESTS: "1" },
  });
});
after(() => w?.dispose());

// A bundle per test (its own files, manifests, monitor and cache keys), published the way
// scripts/canary does: files, then manifests, then the config.
beforeEach(async () => {
  bundle = `manifest${++n}`;
  await w.setFaults({});
  await copyDemoFiles(w, bundle);
  await w.setRollout(ROLLOUT, bundle);
});

/** A first visit (a new client: its own user key and address) of the floating `file`. */
async function load(file) {
  const id = ++client;
  return w.get(`/${bundle}/${file}`, { userKey: `manifest-client-${id}`, ip: `198.19.${id >> 8}.${id & 255}` });
}

/** Stable's copy, served in place of the canary's. */
function assertStableFallback(r) {
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get("x-canary-fallback"), "stable");
  assert.equal(r.headers.get("x-canary-channel"), "stable");
  assert.equal(r.headers.get("x-canary-version"), "1.0.0");
  assert.equal(bodyVersion(r.text), "1.0.0");
}

/** The `canary_fallback` log line of `file` in this test's bundle. */
function fallbackLog(file) {
  const key = `${bundle}/1.1.0/${file}`;
  return until(() => w.logLines().find((l) => l.event === "canary_fallback" && l.key === key), `canary_fallback for ${key}`);
}

/** The bundle's monitor totals, through the admin API. */
async function totals() {
  const r = await w.get(`/__canary/api/${bundle}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text).monitor.totals;
}

describe("a canary miss counts only when the canary published the file or R2 failed", () => {
  test("a file the manifest lists, gone from R2: stable is served, counted as a canary error", async () => {
    await w.r2.delete(`${bundle}/1.1.0/chunk.js`);
    const r = await load("chunk.js");
    assertStableFallback(r);
    const line = await fallbackLog("chunk.js");
    assert.deepEqual([line.counted, line.reason], [true, "missing_published_file"]);
    assert.deepEqual([line.canary, line.stable], ["1.1.0", "1.0.0"]);
    await until(async () => (await totals()).canary.errors === 1, "the canary error at the monitor");
  });

  test("a file only stable has: stable is served, logged and not counted (not even as a load)", async () => {
    await w.r2.put(`${bundle}/1.0.0/stable-only.js`, "/* DemoPay SDK 1.0.0 stable-only */\n");
    const start = await totals();
    // An attacker's run of first visits, each a new canary client asking for it.
    for (let i = 0; i < 5; i++) assertStableFallback(await load("stable-only.js"));
    const line = await fallbackLog("stable-only.js");
    assert.deepEqual([line.counted, line.reason], [false, "not_in_canary"]);
    // One real canary load afterwards: once it is at the monitor, the five would be too.
    const real = await load("sdk.js");
    assert.equal(real.headers.get("x-canary-version"), "1.1.0");
    await until(async () => (await totals()).canary.clients > start.canary.clients, "the real load at the monitor");
    await sleep(300);
    const end = await totals();
    assert.equal(end.canary.clients, start.canary.clients + 1, "the fallbacks added no canary client");
    assert.equal(end.canary.errors, start.canary.errors, "and no canary error");
  });

  test("a canary without a manifest: a plain fallback, not counted", async () => {
    await w.r2.delete(`${bundle}/.manifests/1.1.0.json`);
    await w.r2.delete(`${bundle}/1.1.0/chunk.js`);
    const r = await load("chunk.js");
    assertStableFallback(r);
    const line = await fallbackLog("chunk.js");
    assert.deepEqual([line.counted, line.reason], [false, "no_manifest"]);
  });

  test("an unreadable manifest: a plain fallback, not counted, and read again next time", async () => {
    await w.r2.put(`${bundle}/.manifests/1.1.0.json`, "{not json");
    await w.r2.delete(`${bundle}/1.1.0/chunk.js`);
    assertStableFallback(await load("chunk.js"));
    const line = await fallbackLog("chunk.js");
    assert.deepEqual([line.counted, line.reason], [false, "manifest_read_failed"]);
    // Not cached: a good manifest written since is read on the next miss.
    await w.r2.put(`${bundle}/.manifests/1.1.0.json`, JSON.stringify({ bundle, version: "1.1.0", files: ["chunk.js", "sdk.js"] }));
    const before = w.logLines().length;
    assertStableFallback(await load("chunk.js"));
    const next = await until(
      () => w.logLines().slice(before).find((l) => l.event === "canary_fallback" && l.key === `${bundle}/1.1.0/chunk.js`),
      "the second fallback's log line",
    );
    assert.deepEqual([next.counted, next.reason], [true, "missing_published_file"]);
  });

  test("an R2 error on the canary file: stable is served, counted as a canary error", async () => {
    await w.setFaults({ r2: "throw", match: `${bundle}/1.1.0/` });
    const r = await load("sdk.js");
    assertStableFallback(r);
    const line = await fallbackLog("sdk.js");
    assert.deepEqual([line.counted, line.reason], [true, "r2_error"]);
    await until(async () => (await totals()).canary.errors === 1, "the canary error at the monitor");
  });

  test("the manifest itself is out of reach of every route", async () => {
    for (const path of [
      `/${bundle}/.manifests/1.1.0.json`,
      `/${bundle}@1.1.0/%2e%2e/.manifests/1.1.0.json`,
      `/${bundle}@.manifests/1.1.0.json`,
      `/${bundle}/%2e%2e/.manifests/1.1.0.json`,
    ]) {
      const r = await w.get(path);
      assert.ok([400, 404].includes(r.status), `${path}: ${r.status}`);
      assert.ok(!r.text.includes('"files"'), `${path} served the manifest`);
    }
  });
});
