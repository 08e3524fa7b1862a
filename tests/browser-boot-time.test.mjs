// The boot-time guard with real browsers: shoppers open the demo merchant page
// (/merchant/index.html, which loads the floating /demo/sdk.js) in headless Chromium
// (Debian's), each in a fresh browser context on a network of its own (CF-Connecting-IP).
// The canary, demo 1.2.0, is the fixture 1.1.0 whose SDK waits 1.5 s more before it is ready
// (a blocking call at start): it works, errs nowhere and boots on every page, only later.
// The edge learns each page's boot time from the SDK's boot signal (`boot_ms`, from the entry
// script's Resource Timing start). The health policy is the deployment's default throughout.
//
// By default (~25 s on a quiet machine): a dozen or so shoppers, at least SHORT_PER_CHANNEL on
// each channel. Every page's boot signal carries boot_ms measured from its entry script's
// Resource Timing start; the canary's median boot_ms shows the 1.5 s delay against stable's;
// and the control plane's status (`monitor.verdict.boot_time`) counts exactly those pages'
// first boots, one per client, with the browsers' own medians. That the guard then cuts such
// a canary is proven end to end with simulated clients by tests/boot-time.test.mjs (the same
// report path, batch wire, aggregators and monitor).
//
// Knob: BROWSER_FULL=1 also runs the whole rollout with real browsers until the guard cuts
// the canary, with the slowdown in the reason (~70 shoppers with the default policy on a
// quiet machine, up to ~160 on a busy one, whose noisier boot times blur the medians: 3 to 4
// minutes on 2 cores).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isBoot, launchChromium } from "./support/chromium.mjs";
import { ROOT, putManifests, sleep, startWorker, until } from "./support/harness.mjs";

const TOKEN = "browser-boot-time-admin-token-0123456789";
/** Browser contexts open at once (2 cores run workerd and Chromium too). */
const CONCURRENCY = 4;
/**
 * Most shoppers before the cut must have come. With the default policy (hostile_networks 10:
 * the 10 slowest canary values and the 10 fastest stable ones are left out) the guard needs
 * about 36 stable boots to bound stable's median at every look and some 25 canary boots
 * slower than 1.25x that bound: ~70 shoppers at weight 50.
 */
const MAX_SHOPPERS = 200;
const DELAY_MS = 1500;
/** BROWSER_FULL=1: the whole rollout to the guard's cut (see the header). */
const FULL = process.env.BROWSER_FULL === "1";
/** The short run: shoppers until each channel has this many, at most SHORT_MAX_SHOPPERS. */
const SHORT_PER_CHANNEL = 5;
const SHORT_MAX_SHOPPERS = 40;

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

async function adminStatus(w) {
  const r = await w.get("/__canary/api/demo", { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

/** One shopper on network `ip`: opens the checkout page, waits for the SDK to show its
 * version, and for its boot signal to reach the edge. */
async function shop(w, ip) {
  const context = await browser.newContext({ extraHTTPHeaders: { "cf-connecting-ip": ip } });
  try {
    // Whether the SDK's canaryBootStart() found its script's Resource Timing entry when it ran
    // (the entry script's first line): recorded around the page's own getEntriesByName.
    await context.addInitScript(() => {
      const own = performance.getEntriesByName.bind(performance);
      window.__timingLookups = [];
      performance.getEntriesByName = (name, type) => {
        const found = own(name, type);
        window.__timingLookups.push({ name, type, startTimes: found.map((e) => e.startTime) });
        return found;
      };
    });
    const page = await context.newPage();
    const boots = [];
    page.on("request", (r) => {
      if (isBoot(r)) boots.push(r);
    });
    const sdk = page.waitForResponse((r) => r.request().method() === "GET" && new URL(r.url()).pathname === "/demo/sdk.js", { timeout: 15_000 });
    await page.goto(new URL("/merchant/index.html", w.url).href, { waitUntil: "load", timeout: 15_000 });
    const loaded = await sdk;
    const settled = await page.waitForFunction(() => {
      const s = document.getElementById("status").dataset;
      return s.version ? { version: s.version } : s.error ? { error: s.error } : null;
    }, null, { timeout: 15_000, polling: 50 }).then((h) => h.jsonValue());
    await until(() => boots.length > 0, "the boot signal", 5_000).catch(() => {});
    await Promise.all(boots.map((b) => Promise.race([b.response(), sleep(5_000)]).catch(() => {})));
    const lookups = await page.evaluate(() => window.__timingLookups);
    return {
      lookups,
      channel: loaded.headers()["x-canary-channel"],
      version: loaded.headers()["x-canary-version"],
      settled,
      boots: boots.map((b) => JSON.parse(b.postData())),
    };
  } finally {
    await context.close();
  }
}

/** Publishes demo 1.2.0 as `scripts/canary publish` does (files, manifest, then the config
 * at weight 50): the fixture 1.1.0 whose SDK resolves ready DELAY_MS later. */
async function publishSlowCanary(w) {
  const chunk = readFileSync(join(ROOT, "fixtures/demo/1.1.0/chunk.js"), "utf8").replaceAll("1.1.0", "1.2.0");
  const fixture = readFileSync(join(ROOT, "fixtures/demo/1.1.0/sdk.js"), "utf8");
  assert.ok(fixture.includes("      resolve(impl);\n"), "the fixture resolves ready once its chunk checks out");
  const slow = fixture.replaceAll("1.1.0", "1.2.0")
    .replace("      resolve(impl);\n", `      setTimeout(function () { resolve(impl); }, ${DELAY_MS});\n`);
  const files = [["demo/1.2.0/sdk.js", slow], ["demo/1.2.0/chunk.js", chunk]];
  for (const [key, text] of files) {
    await w.r2.put(key, text, { httpMetadata: { contentType: "text/javascript; charset=utf-8" } });
  }
  await putManifests(w.r2, files.map(([key]) => key));
  await w.setRollout({ stable: "1.0.0", canary: "1.2.0", weight: 50 });
}

/**
 * Shoppers, CONCURRENCY at a time, each on network `${net}.<n>`, until `done(results)` or
 * `max` have started; returns every shopper's result.
 */
async function shoppersUntil(w, { net, max, done }) {
  const results = [];
  let started = 0;
  const lane = async () => {
    while (!done(results) && started < max) {
      const n = ++started;
      results.push(await shop(w, `${net}.${n >> 8}.${n & 255}`));
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return results;
}

/** Every page worked (the canary was only slow), and every SDK started its boot at its entry
 * script's Resource Timing entry (a cross-origin-isolated page is not needed: the entry and
 * its startTime are there when the script runs), and sent one boot signal with its boot_ms. */
function assertPages(results) {
  for (const s of results) {
    const own = s.lookups.filter((l) => new URL(l.name).pathname === "/demo/sdk.js" && l.type === "resource");
    assert.ok(own.length === 1 && own[0].startTimes.length >= 1 && own[0].startTimes[0] > 0, JSON.stringify(s.lookups));
    assert.equal(s.settled.version, s.version, JSON.stringify(s));
    assert.deepEqual(s.boots.map((b) => [b.kind, b.version]), [["boot", s.version]]);
    assert.ok(Number.isInteger(s.boots[0].boot_ms) && s.boots[0].boot_ms > 0, JSON.stringify(s.boots[0]));
  }
}

/** The median boot_ms of `shoppers`, as the verdict takes it (the mean of the two middle
 * values of an even count). */
const median = (shoppers) => {
  const v = shoppers.map((s) => s.boots[0].boot_ms).sort((a, b) => a - b);
  return (v[(v.length - 1) >> 1] + v[v.length >> 1]) / 2;
};

test("real browsers' boot times reach the verdict: the canary's median shows its 1.5 s delay", async () => {
  const w = await startWorker({ listen: true, rollout: null, vars: { ADMIN_TOKEN: TOKEN } });
  try {
    await publishSlowCanary(w);
    const on = (results, channel) => results.filter((s) => s.channel === channel);
    const results = await shoppersUntil(w, {
      net: "198.21",
      max: SHORT_MAX_SHOPPERS,
      done: (rs) => on(rs, "canary").length >= SHORT_PER_CHANNEL && on(rs, "stable").length >= SHORT_PER_CHANNEL,
    });
    const canary = on(results, "canary");
    const stable = on(results, "stable");
    assert.ok(canary.length >= SHORT_PER_CHANNEL && stable.length >= SHORT_PER_CHANNEL,
      `${canary.length} canary and ${stable.length} stable of ${results.length} shoppers`);
    assertPages(results);
    assert.ok(canary.every((s) => s.version === "1.2.0") && stable.every((s) => s.version === "1.0.0"));
    // Every canary page waited the delay after its script's start; the medians show it
    // (give or take the load of a busy machine on stable's side).
    assert.ok(canary.every((s) => s.boots[0].boot_ms >= DELAY_MS), JSON.stringify(canary.map((s) => s.boots[0].boot_ms)));
    assert.ok(median(canary) - median(stable) >= DELAY_MS / 2,
      `boot_ms medians: canary ${median(canary)}, stable ${median(stable)}`);

    // The control plane's verdict has those pages' first boots, one value per client: the
    // same counts and the same medians as the browsers measured.
    const b = await until(async () => {
      const bt = (await adminStatus(w)).monitor.verdict.boot_time;
      return bt && bt.canary.clients === canary.length && bt.stable.clients === stable.length ? bt : null;
    }, `the verdict's boot times of ${canary.length} canary and ${stable.length} stable pages`, 30_000)
      .catch(async (e) => assert.fail(`${e.message}; last: ${JSON.stringify((await adminStatus(w)).monitor.verdict.boot_time)}`));
    assert.equal(b.canary.median_ms, median(canary), JSON.stringify(b));
    assert.equal(b.stable.median_ms, median(stable), JSON.stringify(b));
    // Its slowdown is the ratio of those medians, above what the default policy tolerates.
    assert.equal(b.max_slowdown, 0.25, "the default policy's tolerated slowdown");
    assert.ok(Math.abs(b.slowdown - (median(canary) / median(stable) - 1)) < 1e-9 && b.slowdown > b.max_slowdown, JSON.stringify(b));
    console.log(`# a canary ${DELAY_MS} ms slower to boot, ${results.length} real pages (${canary.length} canary, ${stable.length} stable): ` +
      `boot_ms medians canary ${median(canary)} ms, stable ${median(stable)} ms; the verdict's slowdown ${(b.slowdown * 100).toFixed(0)}% ` +
      `(interval ${JSON.stringify([b.slowdown_low, b.slowdown_high])})`);
  } finally {
    await w.dispose();
  }
});

test("a canary whose SDK waits 1.5 s more before booting is cut by the boot-time guard", {
  skip: !FULL && "BROWSER_FULL=1 runs it (70+ real shoppers); tests/boot-time.test.mjs proves the cut with simulated clients",
}, async () => {
  const w = await startWorker({ listen: true, rollout: null, vars: { ADMIN_TOKEN: TOKEN } });
  try {
    await publishSlowCanary(w);
    let cut = null;
    const shopping = { done: false };
    const poller = (async () => {
      while (!cut && !shopping.done) {
        const s = await adminStatus(w);
        if (s.config.weight === 0 && s.config.rollback) cut = s;
        else await sleep(500);
      }
    })();
    const results = await shoppersUntil(w, { net: "198.20", max: MAX_SHOPPERS, done: () => cut });
    shopping.done = true;
    await poller;
    cut ??= await until(async () => {
      const s = await adminStatus(w);
      return s.config.weight === 0 && s.config.rollback ? s : null;
    }, "the cut after the last shopper", 20_000).catch(() => null);
    const canary = results.filter((s) => s.channel === "canary");
    const stable = results.filter((s) => s.channel === "stable");
    assert.ok(cut, `no cut after ${results.length} shoppers (${canary.length} on the canary); last status ${JSON.stringify((await adminStatus(w)).monitor.verdict)}`);

    assertPages(results);
    // Medians of a few dozen pages on a busy machine: the delay shows, give or take the load.
    assert.ok(median(canary) >= DELAY_MS && median(canary) - median(stable) >= DELAY_MS / 2,
      `boot_ms medians: canary ${median(canary)}, stable ${median(stable)}`);

    // The cut: the guard's, by the automatic rule, its reason naming the slowdown.
    const { config, monitor } = cut;
    assert.equal(config.rollback.by, "auto");
    assert.match(config.rollback.reason, /^canary boots \d+% slower than stable on the median \(99% interval of the slowdown \d+% to \d+%\)/, config.rollback.reason);
    assert.equal(monitor.cut.verdict.family, "boot_time");
    const b = monitor.cut.verdict.boot_time;
    assert.ok(b.canary.median_ms >= DELAY_MS && b.slowdown_low > 0.25, JSON.stringify(b));
    assert.deepEqual(monitor.cut.verdict.silence.canary.errors, 0, "no canary client counted silent");
    console.log(`# a canary ${DELAY_MS} ms slower to boot: cut by the boot-time guard after ${canary.length} canary and ${stable.length} stable shoppers ` +
      `(${results.length} in all); browsers' boot_ms medians canary ${median(canary)} ms, stable ${median(stable)} ms; reason: ${config.rollback.reason}`);
  } finally {
    await w.dispose();
  }
});
