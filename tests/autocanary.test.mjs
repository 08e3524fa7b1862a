// Auto canary end to end, with the real HealthMonitor Durable Object, KV and R2 simulators:
// error reports trip an automatic rollback, a progressive rollout advances on its alarm,
// the report endpoint and the admin API refuse bad input, signed overrides reach the canary.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  bodyVersion, cookiesByChannel, cookiesForEveryCohort, copyDemoFiles, newClients, sendReport, sleep, startShoppers, startWorker, until,
} from "./support/harness.mjs";

const TOKEN = "test-admin-token-0123456789abcdef";
// A handful of clients drive the control plane's mechanics here: no discount for hostile
// networks (tests/attacks.test.mjs covers those), and boot_grace_secs 10 (default 30): a
// step lasts seconds here, so a shopper whose boot is late (a busy machine: seconds behind
// its load) must still count, and one that never boots must resolve within the test (1 s
// made booting shoppers silent when other tests ran beside this file).
const HEALTH = { window_secs: 60, min_requests: 20, max_error_rate: 0.1, max_relative: 2, auto_rollback: true, hostile_networks: 0, boot_grace_secs: 10 };
const BASE = { stable: "1.0.0", canary: "1.1.0", weight: 50, health: HEALTH };

let w;
let cookies;
let canaryCookies;
let stableCookies;
// Each test uses a bundle of its own so monitors and histories do not mix.
let bundle;
let n = 0;

before(async () => {
  w = await startWorker({
    rollout: BASE,
    vars: {
      ADMIN_TOKEN: TOKEN,
      OVERRIDE_SECRET: "override-secret",
      // HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: every load and report reaches the monitor
      // as it is served, so that counts and cuts are asserted request by request (the flush
      // timer: browser-canary.test.mjs, verdicts.test.mjs).
      HEALTH_FLUSH_MS: "0",
      HEALTH_FLUSH_REQUESTS: "1",
      // CONFIG_TTL_MS 0: tests rewrite their bundle's config and act on it at once (a dark
      // canary, a promote, a cut that puts everyone on stable); how long the edge takes to
      // see a write is tested in cli.test.mjs and console-cut.test.mjs.
      CONFIG_TTL_MS: "0",
    },
  });
  cookies = await cookiesForEveryCohort(w);
});
after(() => w.dispose());

beforeEach(async () => {
  bundle = `auto${++n}`;
  await copyDemoFiles(w, bundle);
  await w.setRollout(BASE, bundle);
  // Sort the cohort cookies by channel at weight 50 for this bundle.
  ({ canary: canaryCookies, stable: stableCookies } = await cookiesByChannel(w, bundle, cookies));
  assert.equal(canaryCookies.length, 5);
});

async function api(path, { method = "GET", body, token = TOKEN } = {}) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const r = await w.get(`/__canary/api/${bundle}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let json = null;
  try { json = JSON.parse(r.text); } catch { /* text errors */ }
  return { ...r, json };
}

async function kvConfig() {
  return JSON.parse(await w.kv.get(`rollout/${bundle}`));
}

async function traffic(cookieList, requests) {
  for (let i = 0; i < requests; i++) {
    const r = await w.get(`/${bundle}/sdk.js`, { cookie: cookieList[i % cookieList.length] });
    assert.equal(r.status, 200);
  }
}

/** A report from `client` ({ cookie, ip }); without one, from an anonymous client. */
async function report(version, client = {}, kind = "chunk_load") {
  return sendReport(w, bundle, version, client, kind);
}

async function monitorTotals() {
  return (await api("")).json.monitor.totals;
}

describe("automatic rollback", () => {
  test("a burst of canary error reports cuts the canary: KV weight 0, everyone on stable, history says why", async () => {
    const shoppers = await newClients(w, bundle, 60);
    const started = Date.now();
    let reports = 0;
    for (const client of shoppers.canary) {
      if ((await kvConfig()).weight === 0) break;
      const r = await report("1.1.0", client);
      assert.equal(r.status, 202, r.text);
      if (!r.json.counted) break; // the edge already sees the canary as not live
      reports++;
      await sleep(20);
    }
    await until(async () => (await kvConfig()).weight === 0, "weight 0 in KV");
    const tookMs = Date.now() - started;
    const config = await kvConfig();
    assert.equal(config.canary, "1.1.0", "the canary stays named, dark");
    assert.match(config.rollback.reason, /canary error rate/);
    assert.equal(config.rollback.by, "auto");
    assert.ok(config.rollback.at);
    console.log(`# auto rollback after ${reports} canary clients reported an error (of ${shoppers.canary.length} canary clients), ${tookMs} ms after the first report`);

    for (const cookie of [...canaryCookies, ...stableCookies]) {
      const r = await w.get(`/${bundle}/sdk.js`, { cookie });
      assert.equal(r.headers.get("x-canary-version"), "1.0.0", "sticky clients are on stable");
      assert.equal(bodyVersion(r.text), "1.0.0");
    }
    const fresh = await w.get(`/${bundle}/sdk.js`, { userKey: "brand-new-client" });
    assert.equal(fresh.headers.get("x-canary-version"), "1.0.0");

    const status = (await api("")).json;
    assert.equal(status.monitor.history.length, 1);
    assert.match(status.monitor.history[0].reason, /above 10\.00%/);
    assert.equal(status.monitor.history[0].by, "auto");
    assert.ok(status.monitor.history[0].canary_counts.errors >= 3);
    const judged = status.monitor.history[0].canary_counts;
    assert.ok(judged.clients >= judged.errors, "the step's evidence: distinct clients, and those with an error");
  });

  test("canary origin faults count as canary errors too", async () => {
    await w.setFaults({ r2: "missing", match: `${bundle}/1.1.0/` });
    // Canary requests fall back to stable (users are fine) but the canary is judged.
    await newClients(w, bundle, 60);
    await until(async () => (await kvConfig()).weight === 0, "rollback on origin faults");
    await w.setFaults({});
    const config = await kvConfig();
    // Each client is a load, then an error: the cut may come before the last error lands.
    assert.match(config.rollback.reason, /canary error rate (9\d|100)\.\d\d% \(\d+\/\d+,/);
    assert.equal(config.rollback.by, "auto");
  });

  test("errors below the minimum sample size do not trip it", async () => {
    const shoppers = await newClients(w, bundle, 14);
    const few = shoppers.canary.slice(0, 4);
    for (const client of few) assert.equal((await report("1.1.0", client)).json.counted, true);
    await until(async () => (await monitorTotals()).canary.errors === few.length, "the reports counted");
    assert.equal((await kvConfig()).weight, 50);
    const totals = await monitorTotals();
    assert.equal(totals.canary.clients, shoppers.canary.length);
    assert.ok(totals.canary.clients < HEALTH.min_requests);
  });

  test("equal error rates on stable and canary do not trip it (the cause is shared)", async () => {
    const shoppers = await newClients(w, bundle, 80);
    const perSide = Math.floor(Math.min(shoppers.canary.length, shoppers.stable.length) / 5);
    for (let i = 0; i < perSide; i++) {
      assert.equal((await report("1.1.0", shoppers.canary[i])).json.counted, true);
      assert.equal((await report("1.0.0", shoppers.stable[i])).json.counted, true);
    }
    await until(async () => {
      const t = await monitorTotals();
      return t.canary.errors === perSide && t.stable.errors === perSide;
    }, "every report counted");
    assert.equal((await kvConfig()).weight, 50, "20% on both sides is not the canary's fault");
    const verdict = (await api("")).json.monitor.verdict;
    assert.notEqual(verdict.state, "cut", JSON.stringify(verdict));
  });
});

describe("progressive rollout", () => {
  test("a healthy rollout advances one step per bake time on the alarm and stops at 100", async () => {
    // Steps advance on evidence only: shoppers keep coming, and a lenient rule (5 clean
    // canary clients under a 50% floor) makes a step pass in seconds.
    await w.setRollout({ ...BASE, weight: 0, health: { ...HEALTH, min_requests: 5, max_error_rate: 0.5 } }, bundle);
    const shoppers = startShoppers(w, bundle, { perTick: 4, everyMs: 50 });
    const started = Date.now();
    try {
      const r = await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 1 } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.config.weight, 10);
      assert.equal(r.json.monitor.progress.state, "running");
      const seen = [10];
      // About 10 s on an idle machine (130 shoppers for 13 canary clients at 10%); on a busy
      // one (other files beside this one) it can take many times that.
      await until(async () => {
        const w8 = (await kvConfig()).weight;
        if (seen.at(-1) !== w8) seen.push(w8);
        return w8 === 100;
      }, "weight 100", 120_000).catch(async (e) => {
        throw new Error(`${e.message}: weights ${seen}; ${shoppers.describe()}; ${JSON.stringify((await api("")).json.monitor.verdict)}`);
      });
      assert.deepEqual(seen, [10, 50, 100], "one step at a time");
      await until(async () => (await api("")).json.monitor.progress.state === "done", "rollout done", 15000);
    } finally {
      await shoppers.stop();
    }
    console.log(`# rollout 10 -> 50 -> 100 with 1 s bake took ${Date.now() - started} ms`);
    await sleep(1200);
    assert.equal((await kvConfig()).weight, 100, "stays at 100");
  });

  test("an unhealthy canary during a rollout rolls back and the rollout stops", async () => {
    await w.setRollout({ ...BASE, weight: 0 }, bundle);
    await api("/rollout", { method: "POST", body: { steps: [50, 100], bake_secs: 2 } });
    const shoppers = await newClients(w, bundle, 60);
    for (const client of shoppers.canary) {
      if ((await kvConfig()).weight === 0) break;
      await report("1.1.0", client);
    }
    await until(async () => (await kvConfig()).weight === 0, "rollback");
    await sleep(2500);
    assert.equal((await kvConfig()).weight, 0, "the alarm does not advance a rolled-back rollout");
    const status = (await api("")).json.monitor;
    assert.equal(status.progress.state, "rolled_back");
  });

  test("pause holds the step; an operator's weight write pauses it too", async () => {
    await w.setRollout({ ...BASE, weight: 0 }, bundle);
    await api("/rollout", { method: "POST", body: { steps: [10, 20, 30], bake_secs: 1 } });
    assert.equal((await api("/pause", { method: "POST" })).status, 200);
    await sleep(1500);
    assert.equal((await kvConfig()).weight, 10);
    assert.equal((await api("/pause", { method: "POST" })).status, 409, "nothing running to pause");
    assert.equal((await api("/resume", { method: "POST" })).status, 200);
    const set = await api("/weight", { method: "POST", body: { weight: 40 } });
    assert.equal(set.json.config.weight, 40);
    assert.equal(set.json.monitor.progress.state, "paused");
  });
});

describe("report endpoint", () => {
  test("bad JSON, unknown bundle or version, oversized body, wrong method: a clear 4xx and nothing counted", async () => {
    const before = await monitorTotals();
    const cases = [
      [{ method: "POST", body: "{not json" }, 400, /bad JSON/],
      [{ method: "POST", body: JSON.stringify({ bundle, version: "1.1.0" }) }, 400, /kind/],
      [{ method: "POST", body: JSON.stringify({ bundle, version: "1.1.0", kind: "Bad Kind!" }) }, 400, /kind/],
      [{ method: "POST", body: JSON.stringify({ bundle: "nope", version: "1.1.0", kind: "x" }) }, 404, /nope/],
      [{ method: "POST", body: JSON.stringify({ bundle, version: "9.9.9", kind: "x" }) }, 202, /"counted":false,"reason":"version_not_live"/],
      [{ method: "POST", body: JSON.stringify({ bundle, version: "../1.0.0", kind: "x" }) }, 400, /version/],
      [{ method: "POST", body: JSON.stringify({ bundle, version: "1.1.0", kind: "x", message: "m".repeat(5000) }) }, 413, /4096/],
      [{ method: "GET" }, 405, /POST/],
      [{ method: "PUT", body: "{}" }, 405, /POST/],
    ];
    for (const [init, status, pattern] of cases) {
      const r = await w.get("/__canary/report", init);
      assert.equal(r.status, status, `${JSON.stringify(init).slice(0, 80)}: ${r.text}`);
      assert.match(r.text, pattern);
    }
    await w.setRollout({ ...BASE, weight: 0 }, bundle);
    const dark = await report("1.1.0", { cookie: canaryCookies[0] });
    assert.equal(dark.json.reason, "version_not_live", "a dark canary is not live");
    await sleep(200);
    assert.deepEqual(await monitorTotals(), before, "nothing counted");
  });

  test("sendBeacon-style text/plain reports are accepted with CORS", async () => {
    const r = await report("1.0.0", { cookie: stableCookies[0] });
    assert.equal(r.status, 202);
    assert.equal(r.headers.get("access-control-allow-origin"), "*");
    assert.deepEqual(r.json, { counted: true, channel: "stable", kind: "chunk_load" });
  });
});

describe("admin API", () => {
  test("no token or a wrong token: 401 with no detail", async () => {
    for (const token of [null, "wrong", `${TOKEN}x`, TOKEN.slice(0, -1)]) {
      for (const [path, method] of [["", "GET"], ["/weight", "POST"], ["/rollback", "POST"]]) {
        const r = await api(path, { method, token, body: method === "POST" ? { weight: 0 } : undefined });
        assert.equal(r.status, 401, `${token} ${path}`);
        assert.equal(r.text.trim(), "401 unauthorized");
        assert.equal(r.headers.get("www-authenticate"), "Bearer");
      }
    }
    const basic = await w.get(`/__canary/api/${bundle}`, { headers: { authorization: `Basic ${TOKEN}` } });
    assert.equal(basic.status, 401);
    assert.equal((await kvConfig()).weight, 50, "nothing written");
  });

  test("status shows per-channel counts, the step and the history", async () => {
    await traffic(canaryCookies, 3);
    await traffic(stableCookies, 4);
    const s = (await api("")).json;
    assert.equal(s.config.weight, 50);
    assert.equal(s.effective_weight, 50);
    assert.deepEqual(s.monitor.totals, { stable: { clients: 4, errors: 0 }, canary: { clients: 3, errors: 0 } });
    assert.deepEqual(s.monitor.history, []);
    assert.equal(s.monitor.progress, null);
  });

  test("every write is validated and answers with the new config", async () => {
    const bad = [
      ["/weight", { weight: 101 }, 400, /weight/],
      ["/weight", { weight: "50" }, 400, /body/],
      ["/weight", { weight: 5, extra: 1 }, 400, /body/],
      ["/rollout", { steps: [50, 10] }, 400, /progression\.steps/],
      ["/explode", {}, 400, /unknown action/],
    ];
    for (const [path, body, status, pattern] of bad) {
      const r = await api(path, { method: "POST", body });
      assert.equal(r.status, status, `${path} ${JSON.stringify(body)}: ${r.text}`);
      assert.match(r.text, pattern);
    }
    assert.equal((await kvConfig()).weight, 50, "nothing written by invalid requests");
    const ok = await api("/weight", { method: "POST", body: { weight: 20 } });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.config.weight, 20);
    assert.equal((await kvConfig()).weight, 20);
    const rb = await api("/rollback", { method: "POST", body: { reason: "manual test" } });
    assert.equal(rb.json.config.weight, 0);
    assert.equal(rb.json.config.rollback.reason, "manual test");
    assert.equal(rb.json.monitor.history.at(-1).by, "operator");
    const promote = await api("/promote", { method: "POST" });
    assert.deepEqual([promote.json.config.stable, promote.json.config.canary], ["1.1.0", null]);
    const again = await api("/promote", { method: "POST" });
    assert.equal(again.status, 409);
    assert.match(again.text, /no canary/);
    const weigh = await api("/weight", { method: "POST", body: { weight: 10 } });
    assert.equal(weigh.status, 409);
    assert.equal((await w.get(`/${bundle}/sdk.js`, { userKey: "x" })).headers.get("x-canary-version"), "1.1.0", "the edge sees the promote at once");
  });

  test("disabled without ADMIN_TOKEN", async () => {
    const plain = await startWorker();
    const r = await plain.get("/__canary/api/demo", { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 404);
    assert.match(r.text, /disabled/);
    await plain.dispose();
  });
});

describe("signed overrides and preflight", () => {
  test("a signed token reaches the canary at weight 0; forged, expired or foreign tokens do not", async () => {
    await w.setRollout({ ...BASE, weight: 0 }, bundle);
    const issued = (await api("/override", { method: "POST", body: { channel: "canary", ttl_secs: 60 } })).json;
    assert.match(issued.token, new RegExp(`^v2\\.${bundle}\\.canary\\.`));
    const viaHeader = await w.get(`/${bundle}/sdk.js`, { userKey: "qa", headers: { "x-canary-override": issued.token } });
    assert.equal(viaHeader.headers.get("x-canary-version"), "1.1.0");
    assert.equal(viaHeader.headers.get("x-canary-override"), "canary");
    assert.equal(viaHeader.headers.get("cache-control"), "private, no-store");
    assert.equal(bodyVersion(viaHeader.text), "1.1.0");
    const viaCookie = await w.get(`/${bundle}/sdk.js`, { cookie: `canary_override=${issued.token}` });
    assert.equal(viaCookie.headers.get("x-canary-version"), "1.1.0");

    const expired = issued.token.replace(/\.canary\.\d+\./, ".canary.1000.");
    for (const token of ["always", "canary", expired, issued.token.slice(0, -2) + "00", issued.token.replace(bundle, "demo")]) {
      const r = await w.get(`/${bundle}/sdk.js`, { userKey: "qa", headers: { "x-canary-override": token } });
      assert.equal(r.headers.get("x-canary-version"), "1.0.0", token);
      assert.equal(r.headers.get("x-canary-override"), null);
    }
    const before = await monitorTotals();
    await w.get(`/${bundle}/sdk.js`, { headers: { "x-canary-override": issued.token } });
    await sleep(100);
    assert.deepEqual(await monitorTotals(), before, "override traffic is not counted as real users");
  });

  test("the files of a version are listed for the probe", async () => {
    const r = await api("/files/1.1.0");
    assert.deepEqual(r.json.files.map((f) => f.path).sort(), ["chunk.js", "sdk.js"]);
    assert.ok(r.json.files.every((f) => f.etag && f.size > 0));
  });
});

test("responses carry Server-Timing", async () => {
  const r = await w.get(`/${bundle}/sdk.js`, { cookie: canaryCookies[0] });
  assert.match(r.headers.get("server-timing"), /^edge;dur=\d+, cache;desc=(hit|miss)$/);
});
