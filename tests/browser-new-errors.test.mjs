// An error new in the canary, from real browsers to the console: shoppers open the demo
// merchant page (/merchant/index.html, the floating /demo/sdk.js) in headless Chromium
// (Debian's), each in a fresh context on a network of its own. The canary (demo 1.2.0, the
// fixture 1.1.0 plus one bug) throws an uncaught error once booted; the demo SDK's own
// snippet reports it (kind "uncaught", the browser's message) like any error. Stable throws
// nothing. The admin status lists the error's signature as new in the canary, and the
// console shows it, with the message as text: the message carries `<img onerror>` markup,
// which must render as characters and run nothing. Screenshot: build/console-new-errors.png.
//
// The deployment's defaults throughout (health policy, flush timers, report limits); the
// canary serves 50% (set in the config: no rollout needed to show signatures).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { launchChromium } from "./support/chromium.mjs";
import { ROOT, putManifests, sleep, startWorker, until } from "./support/harness.mjs";

const TOKEN = "browser-new-errors-admin-token-0123456789";
const SHOPPERS = 16;
const CONCURRENCY = 4;
/** What the canary throws: markup, and a number that differs on every page. */
const BUG = 'DemoPay: total is NaN for <img src=x onerror="window.__pwned=1"> cart ';

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

/** One shopper on network `ip`: opens the checkout page, waits until it settled and any error report left. */
async function shop(w, ip) {
  const context = await browser.newContext({ extraHTTPHeaders: { "cf-connecting-ip": ip } });
  try {
    const page = await context.newPage();
    const beacons = [];
    const pageErrors = [];
    page.on("request", (r) => {
      if (r.method() === "POST" && r.url().endsWith("/__canary/report")) beacons.push(r);
    });
    page.on("pageerror", (e) => pageErrors.push(e.message));
    const sdk = page.waitForResponse((r) => new URL(r.url()).pathname === "/demo/sdk.js", { timeout: 15_000 });
    await page.goto(new URL("/merchant/index.html", w.url).href, { waitUntil: "load", timeout: 15_000 });
    const loaded = await sdk;
    await page.waitForFunction(() => document.getElementById("status").dataset.version, null, { timeout: 15_000, polling: 50 });
    const version = loaded.headers()["x-canary-version"];
    // The canary's bug fires just after boot: wait for its report to leave.
    if (version === "1.2.0") await until(async () => beacons.length >= 2, "the canary's error report", 5_000);
    await Promise.all(beacons.map((b) => Promise.race([b.response(), sleep(5_000)]).catch(() => {})));
    return { ip, version, pageErrors, bodies: beacons.map((b) => JSON.parse(b.postData())) };
  } finally {
    await context.close();
  }
}

test("a canary that throws a new error shows it as new in the console, as text", async () => {
  const w = await startWorker({ listen: true, rollout: null, vars: { ADMIN_TOKEN: TOKEN, CONSOLE_HOST: "localhost" } });
  try {
    // demo 1.2.0: the fixture 1.1.0, which throws once booted (from its own file, so its
    // error listener reports it).
    const chunk = readFileSync(join(ROOT, "fixtures/demo/1.1.0/chunk.js"), "utf8").replaceAll("1.1.0", "1.2.0");
    const sdk = readFileSync(join(ROOT, "fixtures/demo/1.1.0/sdk.js"), "utf8").replaceAll("1.1.0", "1.2.0")
      .replace("ready.then(function () { canaryBoot(origin, \"demo\", VERSION, START); }, function () {});",
        "ready.then(function () { canaryBoot(origin, \"demo\", VERSION, START); }, function () {});\n" +
        `  ready.then(function () { setTimeout(function () { throw new Error(${JSON.stringify(BUG)} + Math.floor(Math.random() * 1e6)); }, 0); });`);
    assert.ok(sdk.includes("throw new Error(\"DemoPay: total is NaN"), "the bug is in");
    const files = [["demo/1.2.0/sdk.js", sdk], ["demo/1.2.0/chunk.js", chunk]];
    for (const [key, text] of files) await w.r2.put(key, text, { httpMetadata: { contentType: "text/javascript; charset=utf-8" } });
    await putManifests(w.r2, files.map(([key]) => key));
    await w.setRollout({ stable: "1.0.0", canary: "1.2.0", weight: 50 });

    const results = [];
    let n = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (n < SHOPPERS) {
        const i = ++n;
        results.push(await shop(w, `198.18.7.${i}`));
      }
    }));
    const canary = results.filter((s) => s.version === "1.2.0");
    const stable = results.filter((s) => s.version === "1.0.0");
    assert.ok(canary.length >= 3 && stable.length >= 1, `${canary.length} canary, ${stable.length} stable shoppers`);
    for (const s of canary) {
      assert.ok(s.pageErrors.some((m) => m.includes("total is NaN")), JSON.stringify(s.pageErrors));
      assert.ok(s.bodies.some((b) => b.kind === "uncaught" && b.message.includes("total is NaN")), JSON.stringify(s.bodies));
    }
    for (const s of stable) assert.deepEqual(s.pageErrors, []);

    // The status: one signature, new in the canary, one client per canary shopper.
    const status = await until(async () => {
      const r = await w.get("/__canary/api/demo", { headers: { authorization: `Bearer ${TOKEN}` } });
      const top = JSON.parse(r.text).monitor?.error_signatures?.top_new;
      return top?.clients.canary === canary.length ? JSON.parse(r.text) : null;
    }, "the new error in the status", 20_000);
    const top = status.monitor.error_signatures.top_new;
    assert.equal(top.new, true);
    assert.equal(top.kind, "uncaught");
    assert.equal(top.clients.stable, 0);
    assert.ok(top.sample.includes('<img src=x onerror="window.__pwned=1">'), top.sample);

    // The console, logged in with the admin token.
    const context = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
    try {
      const page = await context.newPage();
      const ui = `http://localhost:${w.url.port}/__canary/ui/#/b/demo`;
      await page.goto(ui);
      await page.locator("#login:not([hidden]), #bundle:not([hidden])").first().waitFor();
      if (await page.locator("#login").isVisible()) {
        await page.fill("#token", TOKEN);
        await page.click("#login-form button");
      }
      await page.locator("#bundle-title", { hasText: "demo" }).waitFor();
      const row = page.locator(`#signatures-rows tr[data-signature="${top.id}"]`);
      await row.waitFor({ timeout: 10_000 });
      const cells = await row.locator("td").allTextContents();
      assert.ok(cells[0].includes(BUG.trim()), `shown as text: ${cells[0]}`);
      assert.equal(cells[1], "uncaught");
      assert.equal(cells[2], String(canary.length));
      assert.equal(cells[3], "0");
      assert.match(await page.locator("#signatures-note").textContent(), /1 error signature seen on canary clients and on no stable client/);
      // Text, not markup: no element was made of the message, and nothing ran.
      assert.equal(await page.locator("#signatures-card img").count(), 0);
      assert.equal(await page.evaluate(() => window.__pwned), undefined);
      // The same shoppers' boot times, per channel, in the verdict card (the boot-time guard).
      await page.locator("#boot-table:not([hidden])").waitFor({ timeout: 10_000 });
      const boots = await page.locator("#boot-rows tr").evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
      assert.deepEqual(boots.map((r) => r[0]).sort(), ["canary", "stable"], JSON.stringify(boots));
      for (const r of boots) assert.match(r[2], /^\d+ ms \(/, `a median boot time with its interval: ${JSON.stringify(r)}`);
      await page.locator("#signatures-card").scrollIntoViewIfNeeded();
      const shot = join(ROOT, "build/console-new-errors.png");
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`# new error in the canary: ${canary.length} canary shoppers threw it, ${stable.length} stable shoppers did not; ` +
        `console row: ${JSON.stringify(cells)}; screenshot ${shot}`);
    } finally {
      await context.close();
    }
  } finally {
    await w.dispose();
  }
});
