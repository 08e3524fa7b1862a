// Every row of SPEC.md's failure table, end to end. Faults come from tests/support/faults.mjs.
import { after, beforeEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { bodyVersion, cookiesForEveryCohort, startWorker } from "./support/harness.mjs";

const GOOD = { stable: "1.0.0", canary: "1.1.0", weight: 100 };

function assertClearError(r, status, ...needles) {
  assert.equal(r.status, status, r.text);
  assert.ok(r.text.trim().length > 0, "never an empty error body");
  assert.match(r.headers.get("content-type"), /text\/plain/);
  for (const n of needles) assert.ok(r.text.includes(n), `${JSON.stringify(r.text)} should name ${n}`);
}

describe("rollout config faults", () => {
  let w;
  before(async () => {
    // CONFIG_TTL_MS 0: each config fault must be met by the very next request (with a 5 s
    // copy it would be served from the copy and prove nothing; the copy's TTL is tested in
    // cli.test.mjs). KV_TIMEOUT_MS: the worker's default, 1,500 ms (300 here made a busy
    // machine's ordinary reads time out).
    w = await startWorker({ rollout: null, vars: { CONFIG_TTL_MS: "0" } });
  });
  after(() => w.dispose());
  beforeEach(() => w.setFaults({}));

  test("no rollout config for the bundle: 404 naming the bundle", async () => {
    assertClearError(await w.get("/demo/sdk.js"), 404, "demo");
    assertClearError(await w.get("/other-bundle/sdk.js"), 404, "other-bundle");
    assertClearError(await w.get("/demo@1.0.0/sdk.js"), 404, "demo");
  });

  test("invalid config and no good one: 503 naming the bad field", async () => {
    for (const [config, field] of [
      [{ stable: "1.0.0", canary: "1.1.0", weight: 250 }, "weight"],
      [{ canary: "1.1.0", weight: 5 }, "stable"],
      [{ stable: "../../etc", weight: 5 }, "stable"],
      ["{not json", "JSON"],
    ]) {
      await w.kv.delete("rollout/broken");
      await w.setRollout(config, "broken");
      const r = await w.get("/broken/sdk.js");
      assertClearError(r, 503, "broken", field);
    }
  });

  test("invalid config after a good one: the last good config keeps serving", async () => {
    await w.setRollout(GOOD);
    const first = await w.get("/demo/sdk.js", { userKey: "u1" });
    assert.equal(first.headers.get("x-canary-version"), "1.1.0");
    await w.setRollout({ ...GOOD, weight: "lots" });
    const r = await w.get("/demo/sdk.js", { userKey: "u1" });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-canary-version"), "1.1.0");
    await w.setFaults({ kv: "invalid" });
    assert.equal((await w.get("/demo/sdk.js", { userKey: "u1" })).headers.get("x-canary-version"), "1.1.0");
  });

  test("KV unavailable: last good config; a bundle never seen gets 503", async () => {
    await w.setRollout(GOOD);
    await w.setRollout(GOOD, "fresh");
    assert.equal((await w.get("/demo/sdk.js")).status, 200);
    await w.setFaults({ kv: "throw" });
    for (let i = 0; i < 3; i++) {
      const r = await w.get("/demo/sdk.js", { userKey: `kv-down-${i}` });
      assert.equal(r.status, 200);
      assert.equal(bodyVersion(r.text), r.headers.get("x-canary-version"));
    }
    assertClearError(await w.get("/fresh/sdk.js"), 503, "fresh");
  });

  test("KV timing out: the last good config after KV_TIMEOUT_MS, not a hung request", async () => {
    await w.setRollout(GOOD);
    assert.equal((await w.get("/demo/sdk.js")).status, 200);
    await w.setFaults({ kv: "timeout", kvDelayMs: 5000 });
    const started = Date.now();
    const r = await w.get("/demo/sdk.js", { userKey: "slow-kv" });
    const took = Date.now() - started;
    assert.equal(r.status, 200);
    assert.equal(bodyVersion(r.text), "1.1.0");
    // After KV_TIMEOUT_MS (the default, 1,500 ms), well before the read's 5 s.
    assert.ok(took >= 1400 && took < 4000, `answered in ${took} ms`);
    await w.setRollout(GOOD, "slow-unseen");
    const unseen = await w.get("/slow-unseen/sdk.js");
    assertClearError(unseen, 503, "slow-unseen");
  });

  test("KV binding missing: 503, not a crash", async () => {
    await w.setFaults({ noKvBinding: true });
    assertClearError(await w.get("/unseen/sdk.js"), 503, "unseen");
  });

  test("a deleted config is a deliberate removal: 404", async () => {
    await w.setRollout(GOOD);
    assert.equal((await w.get("/demo/sdk.js")).status, 200);
    await w.kv.delete("rollout/demo");
    assertClearError(await w.get("/demo/sdk.js"), 404, "demo");
  });
});

describe("origin faults", () => {
  let w;
  let cookies;
  before(async () => {
    // CONFIG_TTL_MS 0: every test writes its config and is served with it at once.
    w = await startWorker({ rollout: GOOD, vars: { CONFIG_TTL_MS: "0" } });
    cookies = await cookiesForEveryCohort(w);
  });
  after(() => w.dispose());
  beforeEach(async () => {
    await w.setFaults({});
    await w.setRollout(GOOD);
  });

  test("canary object missing: stable is served with X-Canary-Fallback", async () => {
    await w.setRollout({ stable: "1.0.0", canary: "1.9.9", weight: 100 });
    for (const cookie of cookies.values()) {
      const r = await w.get("/demo/sdk.js", { cookie });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("x-canary-fallback"), "stable");
      assert.equal(r.headers.get("x-canary-channel"), "stable");
      assert.equal(r.headers.get("x-canary-version"), "1.0.0");
      assert.equal(bodyVersion(r.text), "1.0.0");
    }
  });

  test("R2 error on canary: stable is served with X-Canary-Fallback", async () => {
    // A file not in the edge cache yet, so the request reaches R2.
    await w.r2.put("demo/1.0.0/uncached.js", "/* DemoPay SDK 1.0.0 */");
    await w.r2.put("demo/1.1.0/uncached.js", "/* DemoPay SDK 1.1.0 */");
    await w.setFaults({ r2: "throw", match: "demo/1.1.0/" });
    const r = await w.get("/demo/uncached.js", { cookie: cookies.get(0) });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-canary-fallback"), "stable");
    assert.equal(bodyVersion(r.text), "1.0.0");
  });

  test("canary objects vanishing mid-rollout: every client keeps getting a working file", async () => {
    await w.setFaults({ r2: "missing", match: "demo/1.1.0/" });
    // The edge cache may still hold canary copies; either answer is whole and consistent.
    for (const cookie of cookies.values()) {
      const r = await w.get("/demo/sdk.js", { cookie });
      assert.equal(r.status, 200);
      assert.equal(bodyVersion(r.text), r.headers.get("x-canary-version"));
    }
  });

  test("stable object missing: 404", async () => {
    await w.setRollout({ stable: "1.0.0", canary: null, weight: 0 });
    assertClearError(await w.get("/demo/missing.js"), 404, "missing.js");
    assertClearError(await w.get("/demo@1.0.0/missing.js"), 404, "missing.js");
  });

  test("R2 error on stable: 502 with a clear message and no internal detail", async () => {
    await w.setRollout({ stable: "1.0.0", canary: null, weight: 0 });
    await w.setFaults({ r2: "throw", match: "demo/1.0.0/never-cached" });
    const r = await w.get("/demo/never-cached.js");
    assertClearError(r, 502, "never-cached.js");
    assert.ok(!r.text.includes("injected"), "internal error text is not leaked");
  });

  test("both canary and stable failing: a clear 502, not a blank 500", async () => {
    await w.setFaults({ r2: "throw", match: "/nowhere.js" });
    assertClearError(await w.get("/demo/nowhere.js", { cookie: cookies.get(0) }), 502, "nowhere.js");
  });
});

describe("bad paths", () => {
  let w;
  before(async () => {
    w = await startWorker({ rollout: GOOD });
    // A file outside every version prefix that a traversal would reach.
    await w.r2.put("secret.txt", "top secret");
    await w.r2.put("demo/secret.txt", "bundle-level secret");
  });
  after(() => w.dispose());

  test("traversal, empty segments, over-long paths and bad versions: 400 or 404, never a read outside the version", async () => {
    const paths = [
      "/demo/%2e%2e/secret.txt",
      "/demo/%2e%2e/%2e%2e/secret.txt",
      "/demo/..%2fsecret.txt",
      "/demo/..%5csecret.txt",
      "/demo/a//b.js",
      "/demo/%00.js",
      "/demo/" + "a".repeat(2000),
      "/demo@../secret.txt",
      "/demo@..%2f..%2fsecret.txt/x",
      "/demo@1.0.0%2f..%2f../secret.txt",
      "/demo@/sdk.js",
      "/demo/",
      "/demo",
      "/",
      "/DEMO/sdk.js",
      "/demo%2f..%2fsecret.txt",
    ];
    for (const p of paths) {
      const r = await w.get(p);
      assert.ok([400, 404].includes(r.status), `${p}: ${r.status}`);
      assert.ok(!/top secret|bundle-level secret/.test(r.text), `${p} leaked ${r.text}`);
      assert.ok(r.text.length > 0);
    }
  });
});
