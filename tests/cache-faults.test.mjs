// Faults of the edge cache, R2 and KV while a rollout runs, end to end against the built wasm
// in workerd. Faults come from tests/support/faults.mjs (`w.setFaults(spec)`):
//   cache: "throw" | "throw-match" | "throw-put" | "miss"     (the Cache API failing or empty)
//   r2: "throw" | "missing" (+ match: "<key part>")           (R2 failing or objects gone)
//   kv: "throw" | "timeout" | "invalid", noKvBinding: true    (the rollout config unreadable)
// and objects really deleted from R2 mid-rollout. Each is served per SPEC.md's failure table:
// from R2 when the cache fails, stable (with X-Canary-Fallback) when a canary file goes, the
// last good config when KV misbehaves, and never a 500 or an error without a body.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { bodyVersion, cookiePair, cookiesForEveryCohort, startWorker, sleep } from "./support/harness.mjs";

// The monitor's automatic rollback would rewrite the config when canary files vanish; these
// tests look at the edge's own answers, so it is off (tests/autocanary.test.mjs covers it).
const HALF = { stable: "1.0.0", canary: "1.1.0", weight: 50, health: { auto_rollback: false } };
// How long a KV read may take before the last good config serves: the worker's default
// (KV_TIMEOUT_MS, core/src/settings.rs). A shorter one (this file had 100 ms) turns the
// ordinary reads of a busy machine into timeouts: a test then sees last good configs it did
// not cause.
const KV_TIMEOUT_MS = 1500;

let w;
let cookies; // cohort -> cookie
let canaryCookie;
let stableCookie;
before(async () => {
  // CONFIG_TTL_MS 0: every request reads KV, so that each KV fault is met by the request
  // that follows it, and a config written mid-test serves at once (the TTL's own tests:
  // cli.test.mjs, soak.test.mjs).
  w = await startWorker({ rollout: HALF, vars: { CONFIG_TTL_MS: "0" } });
  cookies = await cookiesForEveryCohort(w);
  for (const cookie of cookies.values()) {
    const r = await w.get("/demo/sdk.js", { cookie });
    if (r.headers.get("x-canary-channel") === "canary") canaryCookie ??= cookie;
    else stableCookie ??= cookie;
  }
});
after(() => w?.dispose());
beforeEach(async () => {
  await w.setFaults({});
  await w.setRollout(HALF);
});

/** Puts `<file>` in both versions, saying its version, so it starts out of the edge cache. */
async function publish(file, versions = ["1.0.0", "1.1.0"]) {
  for (const v of versions) {
    await w.r2.put(`demo/${v}/${file}`, `/* DemoPay SDK ${v} ${file} */\n`, { httpMetadata: { contentType: "text/javascript" } });
  }
}

/** Never a 5xx other than the table's, never an error without a body. */
function assertAnswered(r, statuses, label, { head = false } = {}) {
  assert.notEqual(r.status, 500, `${label}: 500 ${r.text}`);
  assert.ok(statuses.includes(r.status), `${label}: ${r.status} not in ${statuses}: ${r.text.slice(0, 200)}`);
  if (r.status >= 400 && !head) {
    assert.ok(r.text.trim().length > 0, `${label}: empty error body`);
    assert.match(r.headers.get("content-type") ?? "", /text\/plain|application\/json/, label);
  }
  if (r.status === 200 && !head && bodyVersion(r.text)) {
    assert.equal(bodyVersion(r.text), r.headers.get("x-canary-version"), `${label}: header and body agree`);
  }
}

const SAME_HEADERS = ["content-type", "etag", "cache-control", "x-cohort", "x-canary-channel", "x-canary-version", "x-canary-fallback", "set-cookie", "access-control-allow-origin", "x-content-type-options"];

describe("the Cache API failing", () => {
  test("match and put throwing: every answer comes from R2 with the headers of a healthy one", async () => {
    const requests = [
      ...[...cookies.values()].map((cookie) => ["/demo/sdk.js", { cookie }]),
      ["/demo@1.0.0/sdk.js", {}],
      ["/demo@1.1.0/chunk.js", {}],
      ["/demo/sdk.js", { cookie: canaryCookie, method: "HEAD" }],
    ];
    const healthy = [];
    for (const [path, opts] of requests) healthy.push(await w.get(path, opts));
    await w.setFaults({ cache: "throw" });
    for (const [i, [path, opts]] of requests.entries()) {
      const r = await w.get(path, opts);
      const label = `${opts.method ?? "GET"} ${path} ${opts.cookie ?? ""}`;
      assertAnswered(r, [200], label, { head: opts.method === "HEAD" });
      assert.equal(r.text, healthy[i].text, label);
      for (const h of SAME_HEADERS) assert.equal(r.headers.get(h), healthy[i].headers.get(h), `${label}: ${h}`);
      assert.match(r.headers.get("server-timing"), /cache;desc=miss/, `${label}: served from R2`);
    }
    // Conditional requests and new clients work the same.
    const etag = healthy[0].headers.get("etag");
    const cond = await w.get("/demo/sdk.js", { cookie: [...cookies.values()][0], headers: { "if-none-match": etag } });
    assert.equal(cond.status, 304);
    const fresh = await w.get("/demo/sdk.js", { userKey: "cache-down-new-client" });
    assertAnswered(fresh, [200], "new client");
    assert.ok(cookiePair(fresh.headers), "a new client still gets its cookie");
  });

  test("a file never cached is served while the cache throws, and cached once it recovers", async () => {
    await publish("cold.js");
    const cache = (await w.mf.getCaches()).default;
    await w.setFaults({ cache: "throw" });
    for (const [cookie, want] of [[canaryCookie, "1.1.0"], [stableCookie, "1.0.0"]]) {
      const r = await w.get("/demo/cold.js", { cookie });
      assertAnswered(r, [200], `cold ${want}`);
      assert.equal(bodyVersion(r.text), want);
    }
    await sleep(50);
    assert.equal(await cache.match("http://edge.test/demo@1.0.0/cold.js"), undefined, "the failed put stored nothing");
    await w.setFaults({});
    assert.match((await w.get("/demo/cold.js", { cookie: stableCookie })).headers.get("server-timing"), /cache;desc=miss/);
    await sleep(50);
    assert.match((await w.get("/demo/cold.js", { cookie: stableCookie })).headers.get("server-timing"), /cache;desc=hit/);
  });

  test("only put failing, only match failing, or a cache that keeps nothing: answers unchanged", async () => {
    for (const mode of ["throw-put", "throw-match", "miss"]) {
      const file = `mode-${mode}.js`;
      await publish(file);
      await w.get(`/demo@1.0.0/${file}`); // warm the stable copy while the cache works
      await sleep(30);
      await w.setFaults({ cache: mode });
      for (let i = 0; i < 3; i++) {
        for (const [cookie, want] of [[canaryCookie, "1.1.0"], [stableCookie, "1.0.0"]]) {
          const r = await w.get(`/demo/${file}`, { cookie });
          assertAnswered(r, [200], `${mode} ${want}`);
          assert.equal(bodyVersion(r.text), want, mode);
          assert.equal(r.headers.get("x-canary-fallback"), null, mode);
          const timing = r.headers.get("server-timing");
          if (mode !== "throw-put") assert.match(timing, /cache;desc=miss/, `${mode}: nothing is read from the cache`);
          else if (want === "1.0.0") assert.match(timing, /cache;desc=hit/, `${mode}: the warm copy is still read`);
        }
      }
      await w.setFaults({});
    }
  });

  test("120 concurrent requests with the cache throwing: all served, all consistent", async () => {
    await w.setFaults({ cache: "throw" });
    const all = [...cookies.values()];
    const rs = await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        i % 5 === 0 ? w.get(`/demo@1.${i % 2}.0/chunk.js`) : w.get("/demo/sdk.js", i % 7 ? { cookie: all[i % all.length] } : { userKey: `burst-${i}` }),
      ),
    );
    rs.forEach((r, i) => assertAnswered(r, [200], `burst ${i}`));
  });

  test("the cache and R2 failing together: fallback, 404 or 502 with a message, never a 500", async () => {
    await publish("both.js");
    await w.setFaults({ cache: "throw", r2: "throw", match: "demo/1.1.0/" });
    const fb = await w.get("/demo/both.js", { cookie: canaryCookie });
    assertAnswered(fb, [200], "canary R2 error");
    assert.equal(fb.headers.get("x-canary-fallback"), "stable");
    assert.equal(bodyVersion(fb.text), "1.0.0");
    const pinned = await w.get("/demo@1.1.0/both.js");
    assertAnswered(pinned, [502], "pinned canary R2 error");
    assert.match(pinned.text, /both\.js/);

    await w.setFaults({ cache: "throw", r2: "throw", match: "demo/1.0.0/" });
    const st = await w.get("/demo/both.js", { cookie: stableCookie });
    assertAnswered(st, [502], "stable R2 error");
    assert.match(st.text, /both\.js/);
    assert.ok(!st.text.includes("injected"), "no internal detail");

    await w.setFaults({ cache: "throw", r2: "missing", match: "demo/1.0.0/both.js" });
    const gone = await w.get("/demo/both.js", { cookie: stableCookie });
    assertAnswered(gone, [404], "stable missing");
    assert.match(gone.text, /both\.js/);
  });
});

describe("R2 objects vanishing mid-rollout", () => {
  test("canary files deleted during a run: copies in the edge cache keep serving the canary", async () => {
    await publish("warm.js");
    for (const cookie of cookies.values()) await w.get("/demo/warm.js", { cookie });
    await sleep(50);
    await w.r2.delete(["demo/1.1.0/warm.js"]);
    for (const cookie of cookies.values()) {
      const r = await w.get("/demo/warm.js", { cookie });
      assertAnswered(r, [200], "warm");
      assert.equal(r.headers.get("x-canary-fallback"), null, "the cached canary copy is whole and current");
    }
  });

  test("canary files deleted while clients load them (cache down): each answer whole, then stable with X-Canary-Fallback", async () => {
    await publish("vanish.js");
    await publish("vanish-chunk.js");
    await w.setFaults({ cache: "miss" });
    const all = [...cookies.values()];
    let deleted = false;
    const answers = [];
    const load = async (round) => {
      const results = await Promise.all(
        all.flatMap((cookie) => {
          // Whether the delete had finished when the request was sent.
          const sentAfter = deleted;
          return [
            w.get("/demo/vanish.js", { cookie }).then((r) => ({ r, kind: "floating", sentAfter })),
            w.get("/demo@1.1.0/vanish-chunk.js", { cookie }).then((r) => ({ r, kind: "pinned", sentAfter })),
          ];
        }),
      );
      answers.push(...results.map((x) => ({ ...x, round })));
    };
    const rounds = [];
    for (let round = 0; round < 8; round++) {
      rounds.push(load(round));
      if (round === 3) {
        await w.r2.delete(["demo/1.1.0/vanish.js", "demo/1.1.0/vanish-chunk.js"]);
        deleted = true;
      }
      await sleep(5);
    }
    await Promise.all(rounds);
    let fallbacks = 0;
    for (const { r, kind, sentAfter: after } of answers) {
      if (kind === "floating") {
        assertAnswered(r, [200], "floating vanish");
        if (r.headers.get("x-canary-fallback")) {
          fallbacks++;
          assert.equal(r.headers.get("x-canary-channel"), "stable");
          assert.equal(bodyVersion(r.text), "1.0.0");
        }
        if (after) assert.ok(r.headers.get("x-canary-version") === "1.0.0", "after the delete, stable only");
      } else {
        // A pinned URL names one version: it is never silently swapped for another.
        assertAnswered(r, [200, 404], "pinned vanish");
        if (r.status === 200) assert.equal(bodyVersion(r.text), "1.1.0");
        if (after) assert.equal(r.status, 404);
      }
    }
    assert.ok(fallbacks > 0, "canary clients were served stable once the files were gone");
    // Once republished, canary clients get the canary again: no fallback was remembered.
    await publish("vanish.js", ["1.1.0"]);
    const back = await w.get("/demo/vanish.js", { cookie: canaryCookie });
    assert.equal(bodyVersion(back.text), "1.1.0");
  });

  test("a whole canary version deleted: every canary client falls back, stable clients unaffected", async () => {
    const files = ["demo/1.2.0/sdk.js", "demo/1.2.0/chunk.js"];
    for (const key of files) await w.r2.put(key, "/* DemoPay SDK 1.2.0 */\n");
    await w.setRollout({ ...HALF, canary: "1.2.0", weight: 100 });
    await w.setFaults({ cache: "miss" });
    assert.equal(bodyVersion((await w.get("/demo/sdk.js", { cookie: stableCookie })).text), "1.2.0");
    await w.r2.delete(files);
    for (const cookie of cookies.values()) {
      const r = await w.get("/demo/sdk.js", { cookie });
      assertAnswered(r, [200], "version gone");
      assert.equal(r.headers.get("x-canary-fallback"), "stable");
      assert.equal(bodyVersion(r.text), "1.0.0");
    }
  });

  test("a stable file deleted (cache down): 404 naming it, and served again once restored", async () => {
    await publish("stable-gone.js");
    await w.setFaults({ cache: "miss" });
    await w.r2.delete("demo/1.0.0/stable-gone.js");
    const r = await w.get("/demo/stable-gone.js", { cookie: stableCookie });
    assertAnswered(r, [404], "stable gone");
    assert.match(r.text, /stable-gone\.js/);
    const c = await w.get("/demo/stable-gone.js", { cookie: canaryCookie });
    assertAnswered(c, [200], "canary still there");
    assert.equal(bodyVersion(c.text), "1.1.0");
    await publish("stable-gone.js", ["1.0.0"]);
    assert.equal((await w.get("/demo/stable-gone.js", { cookie: stableCookie })).status, 200, "no negative caching");
  });
});

describe("KV misbehaving mid-run", () => {
  /** Which channel each cohort gets now (one request per cohort, concurrently, `n` rounds). */
  async function split(rounds = 3) {
    const seen = new Map();
    for (let i = 0; i < rounds; i++) {
      const rs = await Promise.all([...cookies].map(([c, cookie]) => w.get("/demo/sdk.js", { cookie }).then((r) => [c, r])));
      for (const [c, r] of rs) {
        assertAnswered(r, [200], `cohort ${c}`);
        const prev = seen.get(c);
        const ch = r.headers.get("x-canary-channel");
        assert.ok(prev === undefined || prev === ch, `cohort ${c} moved ${prev} -> ${ch} within one config`);
        seen.set(c, ch);
      }
    }
    return [...seen].sort((a, b) => a[0] - b[0]).map(([, ch]) => ch).join(",");
  }

  test("invalid JSON from KV mid-run keeps the last good config; a good read applies again", async () => {
    const before = await split();
    assert.equal(before.split(",").filter((x) => x === "canary").length, 5);
    await w.setFaults({ kv: "invalid" });
    assert.equal(await split(), before, "the last good config keeps serving");
    // A new good config written meanwhile is not seen through the fault ...
    await w.setRollout({ ...HALF, weight: 100 });
    assert.equal(await split(), before);
    // ... and applies as soon as KV reads are good again.
    await w.setFaults({});
    assert.equal(await split(1), Array(10).fill("canary").join(","));
  });

  test("invalid values written to KV mid-run: last good config, the next good one applies", async () => {
    const before = await split();
    for (const bad of ["{not json", JSON.stringify({ ...HALF, weight: 250 }), JSON.stringify({ ...HALF, stable: "../x" }), "", "null", "[]", JSON.stringify({ ...HALF, canary: 5 })]) {
      await w.setRollout(bad);
      assert.equal(await split(1), before, `after writing ${bad}`);
    }
    await w.setRollout({ ...HALF, weight: 0 });
    assert.equal(await split(1), Array(10).fill("stable").join(","));
  });

  test("KV throwing or timing out under concurrent load: the last good config, answered promptly", async () => {
    const before = await split();
    for (const spec of [{ kv: "throw" }, { kv: "timeout", kvDelayMs: 5000 }]) {
      await w.setFaults(spec);
      const started = Date.now();
      assert.equal(await split(2), before, JSON.stringify(spec));
      const took = Date.now() - started;
      assert.ok(took < 4 * KV_TIMEOUT_MS + 2000, `${JSON.stringify(spec)}: two rounds took ${took} ms`);
    }
  });

  test("KV failing before any good read: 503 naming the bundle, with a body", async () => {
    for (const [i, spec] of [{ kv: "throw" }, { kv: "invalid" }, { kv: "timeout", kvDelayMs: 2 * KV_TIMEOUT_MS }, { noKvBinding: true }].entries()) {
      const bundle = `unseen-${i}`;
      await w.setRollout(HALF, bundle);
      await w.setFaults(spec);
      const r = await w.get(`/${bundle}/sdk.js`);
      assertAnswered(r, [503], JSON.stringify(spec));
      assert.match(r.text, new RegExp(bundle));
    }
  });
});

describe("no fault gives a 500 or an empty error", () => {
  test("every fault, alone and combined, on every kind of request", async () => {
    await publish("matrix.js");
    await w.setRollout(HALF, "never-read");
    const faults = [
      {},
      { kv: "throw" },
      { kv: "invalid" },
      { kv: "timeout", kvDelayMs: 2 * KV_TIMEOUT_MS },
      { noKvBinding: true },
      { r2: "throw" },
      { r2: "missing" },
      { r2: "throw", match: "1.1.0" },
      { r2: "missing", match: "1.1.0" },
      { cache: "throw" },
      { cache: "throw-match" },
      { cache: "throw-put" },
      { cache: "miss" },
      { kv: "throw", r2: "throw", cache: "throw" },
      { kv: "invalid", r2: "missing", cache: "miss" },
      { noKvBinding: true, r2: "throw", cache: "throw" },
    ];
    const report = JSON.stringify({ bundle: "demo", version: "1.0.0", kind: "error", message: "matrix" });
    const requests = [
      ["new client", "/demo/sdk.js", { userKey: "matrix-new" }],
      ["canary client", "/demo/matrix.js", { cookie: canaryCookie }],
      ["stable client", "/demo/matrix.js", { cookie: stableCookie }],
      ["HEAD", "/demo/sdk.js", { cookie: canaryCookie, method: "HEAD" }],
      ["conditional", "/demo/sdk.js", { cookie: stableCookie, headers: { "if-none-match": '"x", *' } }],
      ["pinned stable", "/demo@1.0.0/chunk.js", {}],
      ["pinned canary", "/demo@1.1.0/matrix.js", {}],
      ["missing file", "/demo/nope.js", { cookie: canaryCookie }],
      ["bundle never read", "/never-read/sdk.js", {}],
      ["no such bundle", "/nobundle/sdk.js", {}],
      ["status", "/__canary/status/demo", {}],
      ["health", "/__canary/health", {}],
      ["report", "/__canary/report", { method: "POST", body: report }],
      ["POST asset", "/demo/sdk.js", { method: "POST", body: "x" }],
    ];
    let checked = 0;
    for (const spec of faults) {
      await w.setFaults(spec);
      const answers = await Promise.all(requests.map(([, path, opts]) => w.get(path, opts)));
      answers.forEach((r, i) => {
        const [label, , opts] = requests[i];
        assertAnswered(r, [200, 202, 304, 400, 404, 405, 409, 502, 503], `${JSON.stringify(spec)} ${label}`, { head: opts.method === "HEAD" });
        checked++;
      });
    }
    assert.equal(checked, faults.length * requests.length);
  });
});
