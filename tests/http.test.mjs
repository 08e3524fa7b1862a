// HTTP behaviour of asset responses: pinned URLs, caching headers, ETag/304, HEAD, 405,
// content types, and the edge cache keyed by bundle/version/path.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { bodyVersion, cookiesForEveryCohort, putManifests, startWorker, until } from "./support/harness.mjs";

let w;
let cookies;
before(async () => {
  // CONFIG_TTL_MS 0: tests switch the weight and at once look at what each cohort gets
  // and what lands in the edge cache; the TTL is tested in cli.test.mjs and soak.test.mjs.
  w = await startWorker({ rollout: { stable: "1.0.0", canary: "1.1.0", weight: 50 }, vars: { CONFIG_TTL_MS: "0" } });
  cookies = await cookiesForEveryCohort(w);
});
after(() => w.dispose());

describe("floating and pinned URLs", () => {
  test("floating URL: private, short cache, cohort headers, cookie only for new clients", async () => {
    const r = await w.get("/demo/sdk.js", { userKey: "new-client" });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("cache-control"), "private, max-age=60");
    assert.equal(r.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.match(r.headers.get("x-cohort"), /^[0-9]$/);
    assert.match(r.headers.get("x-canary-channel"), /^(stable|canary)$/);
    const cookie = r.headers.get("set-cookie");
    for (const attr of ["Secure", "HttpOnly", "SameSite=None", "Partitioned", "Path=/", "Max-Age=31536000"]) {
      assert.ok(cookie.includes(attr), `${attr} in ${cookie}`);
    }
    assert.ok(r.headers.get("etag"));
  });

  test("pinned URL: public, immutable, the named version whatever the cohort, no cookie", async () => {
    for (const version of ["1.0.0", "1.1.0"]) {
      for (const cookie of cookies.values()) {
        const r = await w.get(`/demo@${version}/chunk.js`, { cookie });
        assert.equal(r.status, 200);
        assert.equal(r.headers.get("cache-control"), "public, max-age=31536000, immutable");
        assert.equal(r.headers.get("x-canary-version"), version);
        assert.equal(r.headers.get("set-cookie"), null);
        assert.equal(r.headers.get("x-cohort"), null, "pinned bodies are the same for everyone");
        assert.match(r.text, new RegExp(`version: "${version.replace(/\./g, "\\.")}"`));
      }
    }
    const r = await w.get("/demo@1.1.0/sdk.js");
    assert.equal(r.headers.get("x-canary-channel"), "canary");
  });

  test("the entry loads a chunk pinned to its own version, so a page never mixes versions", async () => {
    for (const cookie of cookies.values()) {
      const entry = await w.get("/demo/sdk.js", { cookie });
      const version = bodyVersion(entry.text);
      assert.ok(entry.text.includes('"/demo@" + VERSION + "/"'));
      const chunk = await w.get(`/demo@${version}/chunk.js`, { cookie });
      assert.match(chunk.text, new RegExp(`version: "${version.replace(/\./g, "\\.")}"`));
    }
  });

  test("a pinned version that is neither stable nor canary is served once it was published", async () => {
    await w.r2.put("demo/0.9.0/chunk.js", "old", { httpMetadata: { contentType: "text/javascript" } });
    assert.equal((await w.get("/demo@0.9.0/chunk.js")).status, 404, "uploaded, never published");
    await putManifests(w.r2, ["demo/0.9.0/chunk.js"]);
    const r = await w.get("/demo@0.9.0/chunk.js");
    assert.equal(r.status, 200);
    assert.equal(r.text, "old");
    assert.equal(r.headers.get("x-canary-channel"), null);
    assert.equal((await w.get("/demo@0.8.0/chunk.js")).status, 404);
  });
});

describe("conditional requests, HEAD and methods", () => {
  test("ETag and If-None-Match give 304 with no body, on floating and pinned URLs", async () => {
    const cookie = cookies.get(3);
    for (const path of ["/demo/sdk.js", "/demo@1.0.0/sdk.js"]) {
      const r = await w.get(path, { cookie });
      const etag = r.headers.get("etag");
      assert.match(etag, /^"[0-9a-f]+"$/);
      const again = await w.get(path, { cookie, headers: { "if-none-match": etag } });
      assert.equal(again.status, 304);
      assert.equal(again.text, "");
      assert.equal(again.headers.get("etag"), etag);
      assert.equal(again.headers.get("cache-control"), r.headers.get("cache-control"));
      const weak = await w.get(path, { cookie, headers: { "if-none-match": `"nope", W/${etag}` } });
      assert.equal(weak.status, 304);
      const miss = await w.get(path, { cookie, headers: { "if-none-match": '"other"' } });
      assert.equal(miss.status, 200);
    }
  });

  test("stable and canary copies have different ETags, so a moved client gets the new body", async () => {
    const a = await w.get("/demo@1.0.0/sdk.js");
    const b = await w.get("/demo@1.1.0/sdk.js");
    assert.notEqual(a.headers.get("etag"), b.headers.get("etag"));
  });

  test("HEAD: the GET headers, no body", async () => {
    const cookie = cookies.get(1);
    const get = await w.get("/demo/sdk.js", { cookie });
    const head = await w.get("/demo/sdk.js", { cookie, method: "HEAD" });
    assert.equal(head.status, 200);
    for (const h of ["etag", "content-type", "cache-control", "x-cohort", "x-canary-version", "x-canary-channel"]) {
      assert.equal(head.headers.get(h), get.headers.get(h), h);
    }
    const body = await head.res.arrayBuffer();
    assert.equal(body.byteLength, 0);
  });

  test("other methods on asset routes: 405 with Allow", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      for (const path of ["/demo/sdk.js", "/demo@1.0.0/sdk.js"]) {
        const r = await w.get(path, { method, body: method === "OPTIONS" ? undefined : "x" });
        assert.equal(r.status, 405, `${method} ${path}`);
        assert.equal(r.headers.get("allow"), "GET, HEAD");
        assert.ok(r.text.includes("GET, HEAD"));
      }
    }
  });

  test("content types come from R2 metadata, else the file extension", async () => {
    await w.r2.put("types/1.0.0/style.css", "a{}");
    await w.r2.put("types/1.0.0/data.json", "{}");
    await w.r2.put("types/1.0.0/typed.bin", "x", { httpMetadata: { contentType: "application/x-custom" } });
    // A bundle of its own, stable only: `demo` keeps its split for the tests after this one
    // (raw KV writes to it would reach the control plane on its own timeline).
    await w.setRollout({ stable: "1.0.0", canary: null, weight: 0 }, "types");
    for (const [path, ct] of [
      ["/types/style.css", "text/css; charset=utf-8"],
      ["/types/data.json", "application/json; charset=utf-8"],
      ["/types/typed.bin", "application/x-custom"],
      ["/merchant/index.html", "text/html; charset=utf-8"],
    ]) {
      assert.equal((await w.get(path)).headers.get("content-type"), ct, path);
    }
  });
});

describe("edge cache", () => {
  test("keyed by bundle/version/path: shared by every cohort, survives origin loss, no purge on weight change", async () => {
    await w.r2.put("demo/1.0.0/cached.js", "/* DemoPay SDK 1.0.0 cached */", { httpMetadata: { contentType: "text/javascript" } });
    await w.r2.put("demo/1.1.0/cached.js", "/* DemoPay SDK 1.1.0 cached */", { httpMetadata: { contentType: "text/javascript" } });
    // Warm both versions through floating requests from every cohort (each copy is written
    // under ctx.waitUntil, after its response: waited for).
    for (const cookie of cookies.values()) await w.get("/demo/cached.js", { cookie });
    const cache = (await w.mf.getCaches()).default;
    for (const v of ["1.0.0", "1.1.0"]) {
      const hit = await until(() => cache.match(`http://edge.test/demo@${v}/cached.js`), `the edge cache holding ${v} under its pinned URL`);
      assert.match(hit.headers.get("cache-control"), /public/);
      assert.equal(hit.headers.get("set-cookie"), null, "cookies never go into the shared cache");
      assert.equal(hit.headers.get("x-cohort"), null, "cohorts never go into the shared cache");
      await hit.text();
    }
    // With R2 gone, both versions still come from the edge cache, for any weight.
    await w.r2.delete(["demo/1.0.0/cached.js", "demo/1.1.0/cached.js"]);
    for (const weight of [0, 100]) {
      await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight });
      for (const cookie of cookies.values()) {
        const r = await w.get("/demo/cached.js", { cookie });
        assert.equal(r.status, 200);
        assert.equal(bodyVersion(r.text), weight === 100 ? "1.1.0" : "1.0.0");
        assert.equal(r.headers.get("cache-control"), "private, max-age=60", "floating policy applied on hits");
      }
    }
    await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50 });
  });

  test("a client-chosen X-Cohort or query string cannot put a canary body under the stable key", async () => {
    await w.r2.put("demo/1.0.0/poison.js", "/* DemoPay SDK 1.0.0 */");
    await w.r2.put("demo/1.1.0/poison.js", "/* DemoPay SDK 1.1.0 */");
    await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 100 });
    await w.get("/demo/poison.js?v=1.0.0", { cookie: cookies.get(0), headers: { "x-cohort": "0", "x-canary-version": "1.0.0" } });
    const cache = (await w.mf.getCaches()).default;
    const stable = await cache.match("http://edge.test/demo@1.0.0/poison.js");
    assert.equal(stable, undefined, "nothing was stored under the stable key by a canary request");
    const canary = await cache.match("http://edge.test/demo@1.1.0/poison.js");
    assert.equal(bodyVersion(await canary.text()), "1.1.0");
    await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50 });
  });
});

describe("operations endpoints", () => {
  test("health", async () => {
    const r = await w.get("/__canary/health");
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.text).status, "ok");
  });

  test("unknown operations paths are 404", async () => {
    assert.equal((await w.get("/__canary/nope")).status, 404);
    assert.equal((await w.get("/__canary/status/")).status, 404);
    assert.equal((await w.get("/__canary/status/Bad!")).status, 404);
  });
});
