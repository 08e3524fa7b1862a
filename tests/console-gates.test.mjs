// Gates and freezes in the console, in headless Chromium (Debian's), against the built worker:
// a rollout whose last step is gated (`progression.approve`) shows "Approve step N" once its
// step before passes, and the operator's click moves it on (recorded with the operator's
// name); a rollout inside a freeze window (`progression.freeze`) shows the freeze badge; the
// policy form changes a threshold, which the history names with its operator and the policy
// card shows waiting for the next step. Saves build/console-approve.png and
// build/console-policy.png.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { ROOT, copyDemoFiles, startShoppers, startWorker, until } from "./support/harness.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SHOTS = join(ROOT, process.env.CONSOLE_SCREENSHOTS ?? "build");
const TOKEN = "console-gates-admin-token-0123456789abcdef";
// A lenient rule, so that a step passes within seconds (as in tests/console-cut.test.mjs);
// boot_grace_secs 10 (default 30): a step lasts seconds here, so a shopper whose boot is
// late (a busy machine: seconds behind its load) must still count, and one that never
// boots must resolve within the test.
const HEALTH = { min_clients: 5, min_error_rate: 0.5, hostile_networks: 0, boot_grace_secs: 10 };
// HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: loads reach the monitor as served, so that a
// step passes within seconds (the flush timer: browser-canary.test.mjs, verdicts.test.mjs).
const VARS = { ADMIN_TOKEN: TOKEN, CONSOLE_HOST: "localhost", HEALTH_FLUSH_MS: "0", HEALTH_FLUSH_REQUESTS: "1" };

let w;
let browser;
let page;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: scripts/test installs Debian's chromium`);
  w = await startWorker({ listen: true, vars: VARS });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  page = await context.newPage();
  page.on("dialog", (d) => d.accept());
});
after(async () => {
  await browser?.close();
  await w?.dispose();
});

async function api(bundle, path = "", { method = "GET", body } = {}) {
  const r = await w.get(`/__canary/api/${bundle}${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}` }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(r.status, 200, `${method} ${path}: ${r.text}`);
  return JSON.parse(r.text);
}

/** Opens the bundle's page, logging in when the console asks. */
async function openBundle(bundle) {
  await page.goto(`http://localhost:${w.url.port}/__canary/ui/#/b/${bundle}`);
  await page.locator("#login:not([hidden]), #bundle:not([hidden])").first().waitFor();
  if (await page.locator("#login").isVisible()) {
    await page.fill("#token", TOKEN);
    await page.click("#login-form button");
  }
  await page.locator("#bundle-title", { hasText: bundle }).waitFor();
}

test("a gated step shows 'Approve step 2'; the operator's click takes the rollout to 100%", async () => {
  const bundle = "gated";
  await copyDemoFiles(w, bundle);
  await w.setRollout({
    stable: "1.0.0", canary: "1.1.0", weight: 0, health: HEALTH,
    progression: { steps: [50, 100], bake_secs: 1, approve: [100] },
  }, bundle);
  const shoppers = startShoppers(w, bundle, { perTick: 4, everyMs: 50, prefix: "gate" });
  try {
    await api(bundle, "/rollout", { method: "POST", body: {} });
    // The first step reaches the edge up to CONFIG_TTL_MS (5 s) after it was written; 60 s
    // for a busy machine.
    await until(async () => (await api(bundle)).monitor.gate?.awaiting_approval, "the gate", 60_000);
  } finally {
    await shoppers.stop();
  }
  await openBundle(bundle);
  const button = page.locator("#approve");
  await button.waitFor({ state: "visible" });
  assert.equal(await button.textContent(), "Approve step 2");
  await page.screenshot({ path: join(SHOTS, "console-approve.png"), fullPage: true });
  assert.equal((await api(bundle)).weight, 50, "nothing moves before the click");
  await button.click();
  await until(async () => (await api(bundle)).weight === 100, "weight 100 after the approval", 15_000);
  const m = (await api(bundle)).monitor;
  const approved = m.events.find((e) => e.kind === "approved");
  assert.equal(approved.by, "operator", "the approval names who gave it");
  assert.equal(m.gate.awaiting_approval, false);
  await page.locator("#gate").waitFor({ state: "hidden" });
});

test("a rollout inside a freeze window shows the freeze badge", async () => {
  const bundle = "frozen";
  await copyDemoFiles(w, bundle);
  const from = new Date(Date.now() - 60_000).toISOString();
  const to = new Date(Date.now() + 3_600_000).toISOString();
  await w.setRollout({
    stable: "1.0.0", canary: "1.1.0", weight: 0, health: HEALTH,
    progression: { steps: [50, 100], bake_secs: 1, freeze: [{ from, to }] },
  }, bundle);
  const shoppers = startShoppers(w, bundle, { perTick: 4, everyMs: 50, prefix: "freeze" });
  try {
    await api(bundle, "/rollout", { method: "POST", body: {} });
    await until(async () => (await api(bundle)).monitor.progress?.state === "frozen", "frozen", 60_000);
  } finally {
    await shoppers.stop();
  }
  await openBundle(bundle);
  const badge = page.locator("#freeze-badge");
  await badge.waitFor({ state: "visible" });
  assert.match(await badge.textContent(), /^Frozen until .*: no automatic step; cuts still happen$/);
  assert.equal((await api(bundle)).weight, 50, "held at step 1");
  // No gate here: no Approve button (a class's `display` once kept it on every page).
  assert.equal(await page.locator("#gate").isVisible(), false);
  assert.equal(await page.locator("#approve").isVisible(), false);
});

test("the policy form: a threshold changed from the console, named in the history, waiting for the next step", async () => {
  const bundle = "policied";
  await copyDemoFiles(w, bundle);
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 20, health: { min_clients: 200 } }, bundle);
  await openBundle(bundle);
  await page.selectOption("#policy-field", "health.min_clients");
  await page.fill("#policy-value", "300");
  await page.click("#policy-form button");
  await page.locator("#action-result", { hasText: "Set health.min_clients to 300: done." }).waitFor();
  // The history entry names who changed which field from what to what.
  const entry = page.locator("#history li", { hasText: "policy_changed" });
  await entry.waitFor();
  assert.match(await entry.textContent(), /policy_changed by operator .*health\.min_clients: 200 -> 300/);
  // The running step keeps 200; the card says 300 comes with the next step.
  const dd = page.locator("#policy dt:text-is('health.min_clients') + dd");
  assert.equal(await dd.textContent(), "200 → 300 from the next step");
  assert.match(await page.locator("#policy-note").textContent(), /this step keeps the policy it started with/);
  await page.screenshot({ path: join(SHOTS, "console-policy.png"), fullPage: true });
  assert.equal(JSON.parse(await w.kv.get(`rollout/${bundle}`)).health.min_clients, 300);
});
