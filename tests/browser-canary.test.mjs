// Auto canary with real browsers: shoppers open the demo merchant page
// (/merchant/index.html, which loads the floating /demo/sdk.js) in headless Chromium
// (Debian's), each in a fresh browser context on a network of its own (its own
// CF-Connecting-IP), while a progressive rollout runs through the admin API. The edge learns
// everything from what the browsers do: loads of the floating URL, the SDK's boot signal
// (POST /__canary/report, kind "boot"), error reports, and silence.
//
//   1. A canary whose sdk.js does not parse: it can send neither a boot signal nor an error
//      report. Its shoppers' silence past `boot_grace_secs` counts as failures (no_boot), and
//      the rollout must cut it at its first step without ever advancing.
//   2. A healthy canary (the fixture 1.1.0): the rollout's first step (50%) passes on the
//      shoppers' boots and the rollout advances to 100% (~65 real shoppers). With
//      BROWSER_FULL=1 it goes on at 100% until the rollout finishes (`done`; some 20 more
//      shoppers, all on the canary: the step at 100% is judged on errors alone, with no stable
//      to compare with, and tests/autocanary.test.mjs runs a rollout on to `done` with
//      simulated shoppers).
//
// Knob: BROWSER_FULL=1, the healthy rollout on to `done` (see 2).
//
// Only documented interfaces: fixtures, `rollout/<bundle>` with `health`, the admin API's
// `rollout` and its status (GET /__canary/api/<bundle>).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isBoot, launchChromium } from "./support/chromium.mjs";
import { ROOT, putManifests, sleep, startWorker, until } from "./support/harness.mjs";

const TOKEN = "browser-canary-admin-token-0123456789";
const STEPS = [50, 100];
/** Browser contexts open at once (2 cores run workerd and Chromium too). */
const CONCURRENCY = 4;
/** Most shoppers a scenario may send before its outcome must have happened. */
const MAX_SHOPPERS = 160;

// The rollout's `health`: defaults (confidence 0.99, max_increase 1.0, hostile_networks 10,
// window_secs 60, max_hold_secs 3600, auto_rollback) except where a test of a few dozen real
// browsers forces otherwise:
const HEALTH = {
  // A shopper that loaded the SDK and sent no boot signal after 5 s counts as no_boot (default
  // 30 s): a booting SDK here signals within a few hundred ms of its load, and the test
  // should not wait half a minute for each silent shopper.
  boot_grace_secs: 5,
  // Canary clients a step needs before it may pass (default 200): a few dozen browsers per
  // step is what the file can afford. With 10 hostile networks discounted on each side, the
  // pass test itself needs more than this (see min_error_rate), so this does not decide.
  min_clients: 10,
  // The error rate accepted anyway (default 2%): proving "below 2%" at 99% takes hundreds of
  // clean clients; "below 50%" takes about a dozen beyond the 10 possibly hostile ones, so a
  // pass needs roughly 20+ clean canary clients per step. A canary that never boots fails
  // 100% of its clients, far above it, so the cut is not made easier than with the default.
  min_error_rate: 0.5,
  // The boot time the canary may lose against stable's median (default 25%), at its largest
  // (10: 11x): proving "within 25%" is a sign test on each canary page, which takes hundreds
  // of pages (docs/verdict.md, the boot-time guard), and with a few dozen noisy pages stable's
  // median is bounded from below only by one of its fastest. Both channels run the same SDK
  // code here; tests/browser-boot-time.test.mjs has the guard at its default.
  max_boot_slowdown: 10,
};
/** health.hostile_networks, left at its default: clients discounted on each side. */
const HEALTH_HOSTILE = 10;
/** Seconds each step bakes before it may advance (production: minutes). */
const BAKE_SECS = 2;
/** BROWSER_FULL=1: the healthy rollout on to `done`, not only past its first step. */
const FULL = process.env.BROWSER_FULL === "1";

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

/** The admin view of `demo`: config, effective weight and the monitor. */
async function adminStatus(w) {
  const r = await w.get("/__canary/api/demo", { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

/** Starts the progressive rollout through the admin API; returns when it started. */
async function startRollout(w) {
  const r = await w.get("/__canary/api/demo/rollout", {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ steps: STEPS, bake_secs: BAKE_SECS }),
  });
  assert.equal(r.status, 200, r.text);
  const body = JSON.parse(r.text);
  assert.equal(body.config.weight, STEPS[0]);
  assert.equal(body.monitor.progress.state, "running");
  return Date.parse(body.monitor.events.find((e) => e.kind === "rollout_started").at);
}

/** The weights the control plane wrote to `rollout/demo`, in order, with their canary. */
async function writtenConfigs(w) {
  return (await w.kvWrites("rollout/demo")).map(({ at, value }) => ({ at, ...JSON.parse(value) }));
}

/**
 * One shopper: a fresh browser context on network `ip` opens the checkout page and waits
 * for it to settle (a healthy SDK shows its version in #status; a broken one shows an error
 * or nothing: at most until load + 1 s). Returns what it loaded, whether it booted, and the
 * CF-Connecting-IP each of its requests to the edge carried.
 */
async function shop(w, ip, { film } = {}) {
  const context = await browser.newContext({ extraHTTPHeaders: { "cf-connecting-ip": ip } });
  try {
    const page = await context.newPage();
    const sentIps = [];
    const boots = [];
    const pageErrors = [];
    page.on("request", (r) => {
      sentIps.push(r.allHeaders().then((h) => [r.url(), h["cf-connecting-ip"]], () => [r.url(), "(gone)"]));
      if (isBoot(r)) boots.push(r);
    });
    page.on("pageerror", (e) => pageErrors.push(e.message));
    // When the edge answered the SDK's floating URL: this shopper's load.
    let loadedAt;
    const sdk = page.waitForResponse((r) => {
      const hit = r.request().method() === "GET" && new URL(r.url()).pathname === "/demo/sdk.js";
      if (hit) loadedAt = Date.now();
      return hit;
    }, { timeout: 15_000 });
    await page.goto(new URL("/merchant/index.html", w.url).href, { waitUntil: "load", timeout: 15_000 });
    const loaded = await sdk;
    // Settled: the SDK shows its version (or the page its failure); an SDK that never
    // defined itself gets until load + 1 s to show anything.
    const settled = await page.waitForFunction(() => {
      const s = document.getElementById("status").dataset;
      if (s.version) return { version: s.version };
      if (s.error) return { error: s.error };
      const [nav] = performance.getEntriesByType("navigation");
      return !window.DemoPay && nav?.loadEventEnd > 0 && performance.now() > nav.loadEventEnd + 1_000 ? { nothing: true } : null;
    }, null, { timeout: 15_000, polling: 50 }).then((h) => h.jsonValue());
    // sendBeacon is fire-and-forget: let the boot signal reach the edge before the context
    // (and any request it still has in flight) goes away.
    await Promise.all(boots.map((b) => Promise.race([b.response(), sleep(5_000)]).catch(() => {})));
    const channel = loaded.headers()["x-canary-channel"];
    if (film && !film.taken && channel === film.channel) {
      film.taken = true;
      await page.screenshot({ path: film.path });
    }
    const shown = (await page.locator("#status").textContent()).trim();
    return {
      ip,
      loadedAt,
      channel,
      version: loaded.headers()["x-canary-version"],
      settled,
      shown,
      booted: boots.length > 0,
      bootBodies: boots.map((b) => JSON.parse(b.postData())),
      pageErrors,
      sentIps: await Promise.all(sentIps),
    };
  } finally {
    await context.close();
  }
}

/**
 * Shoppers, `CONCURRENCY` at a time, each on a network of its own, until `done()` (polled
 * every 500 ms) returns something truthy or `MAX_SHOPPERS` have come. `film`: a screenshot
 * of the first shopper on `film.channel`.
 */
async function shoppersUntil(w, { net, done, film }) {
  const results = [];
  let started = 0;
  let outcome = null;
  let failure = null;
  const poller = (async () => {
    while (!outcome && !failure && (started < MAX_SHOPPERS || results.length < started)) {
      outcome = await done().catch((e) => { failure = e; });
      if (!outcome) await sleep(500);
    }
  })();
  const lane = async () => {
    while (!outcome && !failure && started < MAX_SHOPPERS) {
      const n = ++started;
      // Distinct IPv4 addresses: one network, and so one client, per shopper.
      const ip = `${net}.${n >> 8}.${n & 255}`;
      try {
        results.push(await shop(w, ip, { film }));
      } catch (e) {
        failure = e;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  if (failure) throw failure;
  await poller;
  return { results, outcome };
}

/** Every request of every shopper carried that shopper's CF-Connecting-IP, beacons included. */
function assertOwnNetworks(results) {
  const ips = new Set(results.map((s) => s.ip));
  assert.equal(ips.size, results.length, "one network per shopper");
  let beacons = 0;
  for (const s of results) {
    for (const [url, sent] of s.sentIps) {
      assert.equal(sent, s.ip, `${url} of shopper ${s.ip} carried CF-Connecting-IP ${sent}`);
      if (url.endsWith("/__canary/report")) beacons++;
    }
  }
  return beacons;
}

test("a canary whose sdk.js does not parse is cut at its first step by its shoppers' silence", async () => {
  const w = await startWorker({ listen: true, rollout: null, vars: { ADMIN_TOKEN: TOKEN } });
  try {
    // Publish demo 1.2.0 as `scripts/canary publish` does: files, then the manifest, config
    // last (dark). Its entry script is cut off mid-object: a syntax error, so nothing of it
    // runs (no error handler, no report, no boot signal). Its chunk is fine.
    const chunk = readFileSync(join(ROOT, "fixtures/demo/1.1.0/chunk.js"), "utf8").replaceAll("1.1.0", "1.2.0");
    const broken = readFileSync(join(ROOT, "fixtures/demo/1.1.0/sdk.js"), "utf8")
      .replaceAll("1.1.0", "1.2.0")
      .split("window.DemoPay = {")[0] + "window.DemoPay = {\n    version: VERSION,\n    ready: ready,\n";
    const files = [
      ["demo/1.2.0/sdk.js", broken],
      ["demo/1.2.0/chunk.js", chunk],
    ];
    for (const [key, text] of files) {
      await w.r2.put(key, text, { httpMetadata: { contentType: "text/javascript; charset=utf-8" } });
    }
    await putManifests(w.r2, files.map(([key]) => key));
    await w.setRollout({ stable: "1.0.0", canary: "1.2.0", weight: 0, health: HEALTH });

    const started = await startRollout(w);
    let last = null;
    let step1Tracked = null; // the step's tracked clients, as last seen before the cut
    let networkCap = 0; // loads refused over the per-network cap, at most
    // One broken-canary checkout on film: the first canary shopper's page.
    const film = { channel: "canary", path: join(ROOT, "build/browser-canary-broken.png"), taken: false };
    const { results, outcome } = await shoppersUntil(w, {
      net: "198.18",
      film,
      done: async () => {
        last = await adminStatus(w);
        const tracked = last.monitor.verdict.tracked;
        networkCap = Math.max(networkCap, tracked.refused.network_cap);
        if (last.config.weight === 0 && last.config.rollback) return last;
        step1Tracked = tracked;
        return null;
      },
    });
    const finalStatus = outcome ?? (await until(async () => {
      const s = await adminStatus(w);
      return s.config.weight === 0 && s.config.rollback ? s : null;
    }, "the cut after the last shopper", 15_000).catch(() => null));
    const canaryShoppers = results.filter((s) => s.channel === "canary");
    const stableShoppers = results.filter((s) => s.channel === "stable");
    assert.ok(finalStatus, `no cut after ${results.length} shoppers (${canaryShoppers.length} on the canary); ` +
      `last monitor status: ${JSON.stringify(last?.monitor)}; config ${JSON.stringify(last?.config)}`);

    // The cut: weight 0, the canary kept named, a rollback by the rollout, on the failures.
    const { config, monitor } = finalStatus;
    assert.equal(config.canary, "1.2.0");
    assert.equal(config.weight, 0);
    assert.equal(config.rollback.by, "rollout", JSON.stringify(config.rollback));
    assert.match(config.rollback.reason, /canary clients that never booted: 100\.00%/);
    assert.equal(monitor.progress.state, "rolled_back", JSON.stringify(monitor.progress));
    assert.equal(monitor.progress.step, 0, "cut at its first step");
    assert.equal(monitor.history.length, 1, JSON.stringify(monitor.history));
    assert.equal(monitor.history[0].by, "rollout");
    assert.equal(monitor.history[0].canary, "1.2.0");
    // The verdict's own counts (the step's tracked clients, silence included), from its reason.
    const [, failing, judged] = /canary clients that never booted: [\d.]+% \((\d+)\/(\d+),/.exec(config.rollback.reason).map(Number);
    const [, stableFailing, stableJudged] = /stable's [\d.]+% \((\d+)\/(\d+),/.exec(config.rollback.reason).map(Number);
    assert.equal(failing, judged, "every judged canary client failed");
    assert.ok(failing > HEALTH_HOSTILE, `more failing canary clients than the hostile discount: ${config.rollback.reason}`);
    assert.equal(stableFailing, 0, "stable's clients all booted");
    // Never past its first step: no step_advance event, and KV never saw more than 50%.
    assert.deepEqual(monitor.events.filter((e) => e.kind === "step_advance" || e.kind === "rollout_done"), []);
    const writes = await writtenConfigs(w);
    assert.deepEqual(writes.map((c) => c.weight), [STEPS[0], 0], JSON.stringify(writes));
    assert.ok(writes.every((c) => c.canary === "1.2.0"));

    // What the browsers did: canary pages never parsed the SDK and sent nothing; stable
    // pages booted 1.0.0 and said so; every request, beacons included, carried the
    // shopper's own CF-Connecting-IP.
    const cutAt = Date.parse(config.rollback.at);
    const beforeCut = results.filter((s) => s.loadedAt <= cutAt);
    const canaryBeforeCut = beforeCut.filter((s) => s.channel === "canary");
    for (const s of canaryShoppers) {
      assert.equal(s.version, "1.2.0");
      assert.equal(s.booted, false, `canary shopper ${s.ip} sent a boot signal`);
      assert.ok(s.pageErrors.some((m) => /Unexpected end of input/.test(m)),
        `canary shopper ${s.ip}: the SDK should not parse (page errors: ${JSON.stringify(s.pageErrors)})`);
      assert.ok(s.settled.error || s.settled.nothing, `canary shopper ${s.ip}: ${JSON.stringify(s.settled)}`);
    }
    for (const s of stableShoppers) {
      assert.equal(s.version, "1.0.0");
      assert.equal(s.settled.version, "1.0.0", `stable shopper ${s.ip}: ${s.shown}`);
      assert.equal(s.booted, true, `stable shopper ${s.ip} booted`);
      assert.deepEqual(s.bootBodies.map((b) => [b.kind, b.version]), [["boot", "1.0.0"]]);
    }
    const beacons = assertOwnNetworks(results);
    assert.ok(beacons >= stableShoppers.length, `${beacons} beacons`);
    assert.ok(canaryBeforeCut.length > HEALTH_HOSTILE, "the cut came from more canary shoppers than hostile networks");
    // The monitor counted each shopper's network once (nothing over the per-network cap),
    // saw stable boot and the canary never, and counted the canary's silence as no_boot.
    assert.equal(networkCap, 0, "loads refused over the per-network cap");
    assert.ok(step1Tracked.boots.stable >= 3 && step1Tracked.boots.canary === 0, JSON.stringify(step1Tracked));
    assert.ok(step1Tracked.silence_counts_as_failure, JSON.stringify(step1Tracked));

    // After the cut, a new shopper gets stable.
    const after = await shop(w, "198.19.0.1");
    assert.equal(after.version, "1.0.0");
    assert.equal(after.settled.version, "1.0.0");
    assert.ok(film.taken, "a broken-canary checkout on film");

    const seconds = ((cutAt - started) / 1000).toFixed(1);
    console.log(`# broken canary (sdk.js does not parse), rollout ${STEPS.join(" -> ")}: cut at step 1 after ${canaryBeforeCut.length} canary shoppers ` +
      `(${beforeCut.length} shoppers in all, ${results.length} sent), ${seconds} s after the rollout started; ` +
      `judged: canary ${failing}/${judged} failing vs stable ${stableFailing}/${stableJudged} ` +
      `(last seen before the cut: no_boot ${step1Tracked.no_boot.canary} canary, boots ${step1Tracked.boots.stable} stable); ` +
      `screenshot ${film.path}`);
  } finally {
    await w.dispose();
  }
});

test(FULL ? "a healthy canary advances on its shoppers' boots to 100% and finishes"
  : "a healthy canary passes its first step on its shoppers' boots and advances to 100%", async () => {
  const w = await startWorker({ listen: true, rollout: { stable: "1.0.0", canary: "1.1.0", weight: 0, health: HEALTH }, vars: { ADMIN_TOKEN: TOKEN } });
  try {
    const started = await startRollout(w);
    // The outcome waited for: the first step passed (weight 100), or with BROWSER_FULL the
    // rollout done.
    const reached = (s) => (FULL ? s.monitor.progress?.state === "done" : s.config.weight === STEPS[1]);
    const goal = FULL ? "done" : `advanced to ${STEPS[1]}%`;
    let last = null;
    let networkCap = 0; // loads refused over the per-network cap, at most
    let noBoot = 0; // clients counted as silent in a step, at most
    const { results, outcome } = await shoppersUntil(w, {
      net: "198.51",
      done: async () => {
        last = await adminStatus(w);
        const tracked = last.monitor.verdict.tracked;
        networkCap = Math.max(networkCap, tracked.refused.network_cap);
        noBoot = Math.max(noBoot, tracked.no_boot.canary + tracked.no_boot.stable);
        return reached(last) ? last : null;
      },
    });
    const finalStatus = outcome ?? (await until(async () => {
      const s = await adminStatus(w);
      return reached(s) ? s : null;
    }, `the rollout ${goal} after the last shopper`, 15_000).catch(() => null));
    const canaryShoppers = results.filter((s) => s.channel === "canary");
    assert.ok(finalStatus, `not ${goal} after ${results.length} shoppers (${canaryShoppers.length} on the canary); ` +
      `last monitor status: ${JSON.stringify(last?.monitor)}; config ${JSON.stringify(last?.config)}`);

    const { config, monitor } = finalStatus;
    assert.equal(config.canary, "1.1.0");
    assert.equal(config.weight, 100);
    assert.equal(config.rollback, undefined);
    assert.deepEqual(monitor.history, [], "no rollback");
    const kinds = monitor.events.map((e) => e.kind);
    assert.ok(kinds.includes("step_advance"), kinds.join(", "));
    if (FULL) assert.ok(kinds.includes("rollout_done"), kinds.join(", "));
    else assert.equal(monitor.progress.step, 1, JSON.stringify(monitor.progress));
    const writes = await writtenConfigs(w);
    assert.deepEqual(writes.map((c) => c.weight), STEPS, JSON.stringify(writes));

    // Every page booted its version and said so, from its own network; the monitor counted
    // each shopper once and none of them as silent.
    for (const s of results) {
      assert.deepEqual(s.pageErrors, [], `shopper ${s.ip}`);
      assert.equal(s.settled.version, s.version, `shopper ${s.ip} shows ${s.shown}`);
      assert.equal(s.booted, true, `shopper ${s.ip} booted`);
      assert.deepEqual(s.bootBodies.map((b) => [b.kind, b.version]), [["boot", s.version]]);
    }
    const beacons = assertOwnNetworks(results);
    assert.ok(beacons >= results.length);
    assert.equal(networkCap, 0, "loads refused over the per-network cap");
    assert.equal(noBoot, 0, "no booting shopper counted as silent");

    // The step passed on the canary's real shoppers: more of them, before it passed, than the
    // hostile networks discounted.
    const advancedAt = Date.parse(monitor.events.find((e) => e.kind === "step_advance").at);
    const step1 = results.filter((s) => s.loadedAt <= advancedAt);
    const step1Canary = step1.filter((s) => s.channel === "canary").length;
    assert.ok(step1Canary > HEALTH_HOSTILE, `${step1Canary} canary shoppers before the step passed`);
    assert.ok(step1.some((s) => s.channel === "stable"), "stable shoppers beside them");
    const doneAt = FULL ? Date.parse(monitor.events.find((e) => e.kind === "rollout_done").at) : null;
    const beforeDone = FULL ? results.filter((s) => s.loadedAt <= doneAt) : [];
    console.log(`# healthy canary, rollout ${STEPS.join(" -> ")}: step 1 passed after ${((advancedAt - started) / 1000).toFixed(1)} s ` +
      `(${step1Canary} canary of ${step1.length} shoppers)` +
      (FULL ? `, done after ${((doneAt - started) / 1000).toFixed(1)} s (${beforeDone.filter((s) => s.channel === "canary").length} canary of ${beforeDone.length} shoppers)` : "") +
      `; ${results.length} sent`);
  } finally {
    await w.dispose();
  }
});
