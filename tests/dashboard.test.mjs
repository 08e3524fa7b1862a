// The operator console (/__canary/ui/) in headless Chromium (Debian's), against the built
// worker with its Durable Object, KV, R2 and static assets: login, the session cookie,
// a rollout advancing on screen, an automatic rollback appearing without a reload, manual
// rollback and promote in the history, and no data without a session. Saves screenshots
// of the overview and of a bundle during a rollback (build/, or docs/: see SHOTS).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { ROOT, copyDemoFiles, startShoppers, startWorker } from "./support/harness.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// Screenshots go to build/ on every run; to refresh the README's, run this file with
// CONSOLE_SCREENSHOTS=docs.
const SHOTS = join(ROOT, process.env.CONSOLE_SCREENSHOTS ?? "build");
const TOKEN = "console-admin-token-0123456789abcdef";
// A lenient rule, so that steps pass and a broken canary is cut within seconds.
// A handful of clients drive the control plane's mechanics here: no discount for hostile
// networks (tests/attacks.test.mjs covers those), and boot_grace_secs 10 (default 30): a
// step lasts seconds here, so a shopper whose boot is late (a busy machine: seconds behind
// its load) must still count, and one that never boots must resolve within the test (1 s
// made booting shoppers silent when other tests ran beside this file).
const HEALTH = { min_requests: 5, max_error_rate: 0.5, hostile_networks: 0, boot_grace_secs: 10 };

let w;
let browser;
let page;
let context;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: scripts/test installs Debian's chromium`);
  w = await startWorker({
    listen: true,
    // HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: loads reach the monitor as served, so that
    // steps pass and the cut comes within seconds (the flush timer: browser-canary.test.mjs).
    vars: { ADMIN_TOKEN: TOKEN, CONSOLE_HOST: "localhost", HEALTH_FLUSH_MS: "0", HEALTH_FLUSH_REQUESTS: "1" },
    rollout: { stable: "1.0.0", canary: "1.1.0", weight: 0, health: HEALTH },
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  page = await context.newPage();
  page.on("dialog", (d) => d.accept());
});
after(async () => {
  await browser?.close();
  await w?.dispose();
});

// The console answers on its own host (CONSOLE_HOST=localhost); bundles on 127.0.0.1.
const ui = (hash = "") => `http://localhost:${w.url.port}/__canary/ui/${hash}`;
const status = (path) => page.evaluate(async (p) => (await fetch(p, { cache: "no-store" })).status, path);

test("no session: the page shows only the login, and the API answers 401", async () => {
  await page.goto(ui());
  await page.locator("#login").waitFor({ state: "visible" });
  assert.equal(await page.locator("#overview").isVisible(), false);
  assert.equal(await page.locator("#bundle").isVisible(), false);
  assert.equal(await status("/__canary/api"), 401);
  assert.equal(await status("/__canary/api/demo"), 401);
  const csp = (await page.request.get(ui())).headers()["content-security-policy"];
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
});

test("a wrong token is refused; the right one gives a host-bound session cookie (__Host-, HttpOnly, Secure, SameSite=Strict)", async () => {
  await page.fill("#token", "not-the-token");
  await page.click("#login-form button");
  await page.locator("#login-error").filter({ hasText: "Wrong token" }).waitFor();
  assert.equal((await context.cookies()).some((c) => c.name === "__Host-canary_session"), false);

  await page.fill("#token", TOKEN);
  await page.click("#login-form button");
  await page.locator("#overview").waitFor({ state: "visible" });
  await page.locator("#bundles tr", { hasText: "demo" }).waitFor();
  const session = (await context.cookies()).find((c) => c.name === "__Host-canary_session");
  assert.ok(session, "the session cookie is set");
  assert.equal(session.domain, "localhost", "bound to the console host");
  assert.equal(session.httpOnly, true);
  assert.equal(session.secure, true);
  assert.equal(session.sameSite, "Strict");
  assert.equal(session.path, "/");
  assert.equal(await page.locator("#who").textContent(), "operator");
  assert.ok(session.expires > Date.now() / 1000 && session.expires < Date.now() / 1000 + 9 * 3600, "short-lived");
  assert.equal(await page.evaluate(() => document.cookie.includes("canary_session")), false, "not readable by scripts");
  assert.equal(await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage)), "{}{}");
  assert.equal(page.url().includes(TOKEN), false);
  // A write with the session but without its CSRF token is refused.
  const forged = await page.evaluate(async () => (await fetch("/__canary/api/demo/pause", { method: "POST", body: "{}" })).status);
  assert.equal(forged, 403);
});

test("start a rollout and watch the step advance on screen without reloading", async () => {
  await page.goto(ui("#/b/demo"));
  await page.locator("#bundle").waitFor({ state: "visible" });
  const shoppers = startShoppers(w, "demo", { perTick: 4, everyMs: 50 });
  try {
    await page.fill("#rollout-steps", "10, 50, 100");
    // Each step bakes 5 s, so the page (polling every 2 s) sees every step.
    await page.fill("#rollout-bake", "5");
    await page.click("#rollout-form button");
    await page.locator("#action-result", { hasText: "Start rollout: done." }).waitFor();
    await page.locator("#steps li.current", { hasText: "10%" }).waitFor();
    const navigations = [];
    page.on("framenavigated", (f) => navigations.push(f.url()));
    // The first step reaches the edge up to CONFIG_TTL_MS (5 s) after it was written.
    await page.locator("#steps li.current", { hasText: "50%" }).waitFor({ timeout: 60_000 });
    await page.locator("#history li", { hasText: "step_advance" }).first().waitFor();
    assert.deepEqual(navigations, [], "no reload");
    await page.locator("#split", { hasText: "5 of 10 cohorts" }).waitFor({ timeout: 10_000 }).catch(() => {});
    assert.equal(await page.locator("#cohort-map .cell").count(), 10);
  } finally {
    await shoppers.stop();
  }
  await page.click("#pause");
  await page.locator("#rollout-state", { hasText: "paused" }).waitFor();
});

test("a failing canary: the automatic rollback appears in the view and the history without reloading", async () => {
  await copyDemoFiles(w, "broken");
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50, health: HEALTH }, "broken");
  await page.goto(ui("#/b/broken"));
  await page.locator("#bundle-title", { hasText: "broken" }).waitFor();
  const navigations = [];
  page.on("framenavigated", (f) => navigations.push(f.url()));
  const shoppers = startShoppers(w, "broken", { perTick: 4, everyMs: 50, canaryErrors: 1 });
  try {
    const rollback = page.locator("#history li", { hasText: "rollback" }).first();
    await rollback.waitFor({ timeout: 60_000 });
    assert.match(await rollback.textContent(), /by (auto|rollout)/);
    await page.locator("#bundle-summary", { hasText: "weight 0%" }).waitFor();
  } finally {
    await shoppers.stop();
  }
  assert.deepEqual(navigations, [], "no reload");
  // The per-minute chart has the canary's clients (it refreshes every 10 s).
  await page.locator("#chart-note", { hasText: /[1-9]\d* canary clients/ }).waitFor({ timeout: 25_000 });
  await page.screenshot({ path: join(SHOTS, "console-rollback.png"), fullPage: true });
  // The overview: the rolled-back bundle stands out.
  await page.goto(ui());
  const row = page.locator("#bundles tr", { hasText: "broken" });
  await row.waitFor();
  assert.match(await row.getAttribute("class"), /trouble/);
  await page.screenshot({ path: join(SHOTS, "console-overview.png") });
});

test("roll back by hand with a reason, then promote: each in the history", async () => {
  await page.goto(ui("#/b/demo"));
  await page.locator("#bundle").waitFor({ state: "visible" });
  await page.fill("#rollback-reason", "checkout spinner hangs on Safari");
  await page.click("#rollback-form button");
  await page.locator("#history li", { hasText: "checkout spinner hangs on Safari" }).waitFor();
  assert.match(await page.locator("#history li").first().textContent(), /rollback by operator/);
  await page.fill("#weight", "30");
  await page.click("#weight-form button");
  await page.locator("#action-result", { hasText: "Set weight 30%: done." }).waitFor();
  await page.click("#promote");
  await page.locator("#history li", { hasText: "promote" }).first().waitFor();
  await page.locator("#bundle-summary", { hasText: "stable 1.1.0" }).waitFor();
  // An action the state does not allow says why, in words.
  await page.click("#promote");
  await page.locator("#action-result.error", { hasText: "Promote failed:" }).waitFor();
});

test("usable at 390 px, and logout ends the session", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(ui());
  await page.locator("#overview").waitFor({ state: "visible" });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no horizontal scroll at 390 px (overflow ${overflow} px)`);
  await page.click("#logout");
  await page.locator("#login").waitFor({ state: "visible" });
  assert.equal((await context.cookies()).some((c) => c.name === "__Host-canary_session" && c.value), false);
  assert.equal(await status("/__canary/api"), 401);
});
