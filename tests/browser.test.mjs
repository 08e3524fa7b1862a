// What a shopper sees: the demo merchant page in headless Chromium (Debian's), loading the
// SDK through the worker in workerd. The cohort cookie keeps the visitor on one version,
// the SDK's chunk always matches its entry (no version skew), and a KV write moves the
// visitor to the canary on their next visit.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";
import { startWorker, until } from "./support/harness.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let w;
let browser;
before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: scripts/test installs Debian's chromium`);
  w = await startWorker({ listen: true, rollout: { stable: "1.0.0", canary: "1.1.0", weight: 0 } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  await w?.dispose();
});

/** Whether `request` is the SDK's boot signal (its beacon to the edge's report endpoint). */
const isBoot = (request) => request.method() === "POST" && request.url().endsWith("/__canary/report") &&
  (request.postData() ?? "").includes('"kind":"boot"');

/** One visit in a fresh browser context holding `cookies`; returns what the page showed. */
async function visit(cookies = []) {
  const context = await browser.newContext();
  if (cookies.length) await context.addCookies(cookies);
  const page = await context.newPage();
  const failures = [];
  page.on("response", (r) => { if (r.status() >= 400) failures.push(`${r.status()} ${r.url()}`); });
  page.on("pageerror", (e) => failures.push(`pageerror ${e.message}`));
  const boot = page.waitForRequest(isBoot, { timeout: 10_000 });
  await page.goto(new URL("/merchant/index.html", w.url).href);
  const button = page.locator("#demopay-button");
  await button.waitFor({ timeout: 10_000 });
  const status = page.locator("#status");
  await page.waitForFunction(() => document.getElementById("status").dataset.version);
  const shown = {
    buttonVersion: await button.getAttribute("data-version"),
    sdkVersion: await page.evaluate(() => window.DemoPay.version),
    status: await status.textContent(),
    cookies: await context.cookies(),
    boot: JSON.parse((await boot).postData()),
    failures,
  };
  await page.screenshot({ path: "build/browser-checkout.png" });
  await context.close();
  return shown;
}

/**
 * Waits until the edge serves the visitor's floating URL from `version` (a HEAD, which counts
 * nothing): after the TTL, the edge's next KV read must also complete in time, which on a busy
 * machine may take a few tries (meanwhile the last good copy serves, as in production).
 */
function untilVisitorGets(version, cohort) {
  return until(async () => (await w.get("/demo/sdk.js", { method: "HEAD", cookie: `cohort=${cohort.value}` })).headers.get("x-canary-version") === version,
    `the edge serving ${version} to the visitor`, 30_000);
}

test("a visitor stays on one version, sees no skew, and moves to the canary after a KV write", async () => {
  const first = await visit();
  assert.deepEqual(first.failures, []);
  assert.equal(first.sdkVersion, "1.0.0");
  assert.equal(first.buttonVersion, "1.0.0", "the chunk matches the entry");
  assert.equal(first.boot.kind, "boot", "the SDK sent its boot signal");
  assert.equal(first.boot.version, "1.0.0");
  assert.ok(Number.isInteger(first.boot.boot_ms) && first.boot.boot_ms >= 0, `boot_ms: ${first.boot.boot_ms}`);
  const cohort = first.cookies.find((c) => c.name === "cohort");
  assert.ok(cohort, "the cohort cookie was stored by the browser");
  assert.ok(cohort.httpOnly && cohort.secure && cohort.sameSite === "None");
  const cohortNumber = cohort.value.split(".")[0];
  assert.match(first.status, new RegExp(`cohort ${cohortNumber}\\b`));

  const again = await visit(first.cookies);
  assert.equal(again.sdkVersion, "1.0.0");
  assert.match(again.status, new RegExp(`cohort ${cohortNumber}\\b`), "same cohort on return");

  // Served once the edge's copy has expired (wrangler.toml's CONFIG_TTL_MS, 5 s).
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 100 }, "demo", { served: true });
  await untilVisitorGets("1.1.0", cohort);
  const moved = await visit(first.cookies);
  assert.deepEqual(moved.failures, []);
  assert.equal(moved.sdkVersion, "1.1.0");
  assert.equal(moved.buttonVersion, "1.1.0", "the canary entry loads the canary chunk");
  assert.deepEqual([moved.boot.kind, moved.boot.version], ["boot", "1.1.0"]);
  assert.match(moved.status, /channel canary/);

  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 0 }, "demo", { served: true });
  await untilVisitorGets("1.0.0", cohort);
  const back = await visit(first.cookies);
  assert.equal(back.sdkVersion, "1.0.0", "weight 0 is a complete rollback");
  assert.equal(back.buttonVersion, "1.0.0");
});

test("a broken canary in a real browser: the SDK reports its error and the edge counts it", async () => {
  const broken = await startWorker({
    listen: true,
    rollout: { stable: "1.0.0", canary: "1.1.0", weight: 100 },
    // wrangler.toml's flush: this one page is the worker's only traffic, so its error
    // report reaches the monitor on the isolate's flush timer (within 3 s), with no next
    // request to carry it.
    vars: { ADMIN_TOKEN: "browser-admin-token-0123456789abcdef" },
  });
  try {
    // The canary's chunk never made it to R2: the entry loads, its pinned chunk 404s.
    await broken.r2.delete("demo/1.1.0/chunk.js");
    const context = await browser.newContext();
    const page = await context.newPage();
    const boots = [];
    page.on("request", (r) => { if (isBoot(r)) boots.push(r.postData()); });
    await page.goto(new URL("/merchant/index.html", broken.url).href);
    await page.waitForFunction(() => document.getElementById("status").dataset.error);
    assert.deepEqual(boots, [], "an SDK that did not initialise sends no boot signal");
    assert.match(await page.locator("#status").textContent(), /could not load .*\/demo@1\.1\.0\/chunk\.js/);
    await page.screenshot({ path: "build/browser-broken-canary.png" });
    await context.close();
    // sendBeacon is fire-and-forget: poll the monitor through the admin API (a lone report
    // is sent by the isolate's timer within 3 s; 15 s for a busy machine).
    let totals;
    await until(async () => {
      const r = await broken.get("/__canary/api/demo", { headers: { authorization: "Bearer browser-admin-token-0123456789abcdef" } });
      totals = JSON.parse(r.text).monitor.totals;
      return totals.canary.errors >= 1;
    }, "the canary error at the monitor", 15_000).catch(() => {});
    assert.ok(totals.canary.errors >= 1, `canary errors counted: ${JSON.stringify(totals)}`);
    assert.equal(totals.stable.errors, 0);
  } finally {
    await broken.dispose();
  }
});
