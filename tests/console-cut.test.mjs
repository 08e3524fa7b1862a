// The console after a cut, in headless Chromium (Debian's), against the built worker with its
// Durable Object, KV, R2 and static assets, on a persisted state: a rollout passes its first
// step, its canary starts failing at the second and is cut. Then the verdict panel shows the
// evidence that caused the cut, kept and marked as such (not "0 of the 200 canary clients"),
// the per-minute chart is zoomed to the minutes with traffic (not 24 hours of nothing), and
// the release timeline lists the steps with the one that was cut. The kept verdict survives
// a restart of the worker (the object reloads it from its SQLite storage), and goes once the
// canary serves again. Saves build/console-after-cut.png (docs/console-after-cut.png is a copy).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { ROOT, copyDemoFiles, startShoppers, startWorker, until } from "./support/harness.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SHOTS = join(ROOT, process.env.CONSOLE_SCREENSHOTS ?? "build");
const TOKEN = "console-cut-admin-token-0123456789abcdef";
const BUNDLE = "cutme";
// A lenient rule, so that a step passes and a broken canary is cut within seconds (as in
// tests/dashboard.test.mjs).
// boot_grace_secs 10 (default 30): a step lasts seconds here, so a shopper whose boot is
// late (a busy machine: seconds behind its load) must still count, and one that never
// boots must resolve within the test.
const HEALTH = { min_clients: 5, min_error_rate: 0.5, hostile_networks: 0, boot_grace_secs: 10 };
// HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: loads reach the monitor as served, so that a
// step passes and the cut comes within seconds (the flush timer: browser-canary.test.mjs,
// verdicts.test.mjs). CONFIG_TTL_MS is wrangler.toml's: the console shows the cut at once
// (the control plane's view), the edge serves it within 5 s.
const VARS = { ADMIN_TOKEN: TOKEN, CONSOLE_HOST: "localhost", HEALTH_FLUSH_MS: "0", HEALTH_FLUSH_REQUESTS: "1" };
const DAY = 86400;

const state = mkdtempSync(join(tmpdir(), "canary-console-cut-"));
let w;
let browser;
let context;
let page;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: scripts/test installs Debian's chromium`);
  w = await startWorker({ listen: true, persist: state, vars: VARS });
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
  rmSync(state, { recursive: true, force: true });
});

const ui = (hash = "") => `http://localhost:${w.url.port}/__canary/ui/${hash}`;

async function api(path = "", { method = "GET", body } = {}) {
  const r = await w.get(`/__canary/api/${BUNDLE}${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}` }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(r.status, 200, `${method} ${path}: ${r.text}`);
  return JSON.parse(r.text);
}

/** Opens the bundle's page, logging in when the console asks. */
async function openBundle() {
  await page.goto(ui(`#/b/${BUNDLE}`));
  await page.locator("#login:not([hidden]), #bundle:not([hidden])").first().waitFor();
  if (await page.locator("#login").isVisible()) {
    await page.fill("#token", TOKEN);
    await page.click("#login-form button");
  }
  await page.locator("#bundle-title", { hasText: BUNDLE }).waitFor();
}

/** What the verdict panel shows: the kept mark, the title, and the canary row's numbers. */
async function verdictPanel() {
  return page.evaluate(() => {
    const cells = [...document.querySelectorAll('#verdict-rows tr[data-channel="canary"] td')].map((td) => td.textContent);
    return {
      kept: document.getElementById("verdict-card").classList.contains("kept"),
      banner: document.getElementById("verdict-cut").hidden ? null : document.getElementById("verdict-cut").textContent,
      title: document.getElementById("verdict-title").textContent,
      state: document.getElementById("verdict-state").textContent,
      clients: Number(cells[1]),
      errors: Number(cells[2]),
    };
  });
}

/** The chart's x range: as the page says it drew it, and as uPlot's scale has it. */
async function chartRange() {
  return page.evaluate(() => {
    const el = document.getElementById("chart");
    // `chart` is the console's uPlot (a global binding of app.js).
    // eslint-disable-next-line no-undef
    const scale = typeof chart !== "undefined" && chart ? chart.scales.x : null;
    return { from: Number(el.dataset.from), to: Number(el.dataset.to), range: el.dataset.range, scale: scale && [scale.min, scale.max] };
  });
}

let cut; // monitor.cut as the API answered after the cut

test("a rollout passes step 1 and is cut at step 2; the status keeps the verdict at the cut", async () => {
  await copyDemoFiles(w, BUNDLE);
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 0, health: HEALTH }, BUNDLE);
  await openBundle();
  // Healthy shoppers until the rollout reaches its second step.
  let shoppers = startShoppers(w, BUNDLE, { perTick: 4, everyMs: 50, prefix: "cut-ok" });
  try {
    await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 2 } });
    // The first step reaches the edge up to CONFIG_TTL_MS (5 s) after the rollout wrote it.
    await until(async () => (await api()).monitor.progress?.step === 1, "the rollout's second step", 60_000);
  } finally {
    await shoppers.stop();
  }
  // Then the canary fails every shopper: cut by the rollout.
  shoppers = startShoppers(w, BUNDLE, { perTick: 4, everyMs: 50, canaryErrors: 1, prefix: "cut-bad" });
  try {
    await until(async () => (await api()).monitor.cut, "the cut", 60_000);
  } finally {
    await shoppers.stop();
  }
  const s = await api();
  const m = s.monitor;
  cut = m.cut;
  assert.equal(s.weight, 0);
  assert.equal(m.progress.state, "rolled_back");
  assert.equal(cut.canary, "1.1.0");
  assert.equal(cut.weight, 50);
  assert.equal(cut.by, "rollout");
  const rollback = m.events.find((e) => e.kind === "rollback");
  assert.equal(cut.at, rollback.at, "when the rollback took effect");
  assert.equal(cut.reason, rollback.reason);
  assert.equal(cut.verdict.state, "cut");
  assert.equal(cut.verdict.reason, cut.reason, "the words that caused it");
  assert.ok(cut.verdict.canary.errors > 0 && cut.verdict.canary.clients >= cut.verdict.canary.errors, JSON.stringify(cut.verdict.canary));
  assert.ok(cut.verdict.cut.relative >= cut.verdict.cut.threshold && cut.verdict.cut.absolute >= cut.verdict.cut.threshold);
  assert.equal(m.verdict.canary.clients, 0, "the live verdict has nothing left to judge");
  // The timeline: step 1 passed, step 2 cut (when the rollback took effect), step 3 never reached.
  assert.deepEqual(m.timeline.stages.map((x) => [x.kind, x.step, x.weight, x.state]),
    [["step", 1, 10, "passed"], ["step", 2, 50, "cut"], ["step", 3, 100, "not_reached"]]);
  assert.equal(m.timeline.stages[1].ended_at, cut.at);
  assert.equal(m.timeline.rollout.state, "rolled_back");
});

test("the console shows the kept evidence, the chart zoomed to the traffic, and the timeline with the cut", async () => {
  // The page polls every 2 s and redraws the chart every 10 s.
  await page.locator("#verdict-cut:not([hidden])").waitFor({ timeout: 10_000 });
  const panel = await verdictPanel();
  assert.equal(panel.kept, true);
  assert.equal(panel.title, "Verdict at the cut");
  assert.match(panel.banner, /^Evidence of the cut, kept: 1\.1\.0 was cut at 50% on .+ by rollout\. Nothing is judged/);
  assert.equal(panel.state, `cut: ${cut.reason}`, "the words that caused it");
  assert.doesNotMatch(panel.state, /0 of the/);
  assert.equal(panel.clients, cut.verdict.canary.clients);
  assert.equal(panel.errors, cut.verdict.canary.errors);
  assert.ok(panel.errors > 0, "clients with failures");
  assert.match(await page.locator("#verdict-stats").textContent(), /in the step it was cut in/);

  // The chart: the minutes with traffic, with a margin, not 24 hours.
  const { minutes } = await api("/minutes");
  assert.ok(minutes.length >= 1);
  const first = minutes[0].minute * 60;
  const last = minutes.at(-1).minute * 60 + 60;
  const clients = minutes.reduce((n, m) => n + m.counts.canary.clients, 0);
  const zoomed = await until(async () => {
    const r = await chartRange();
    const note = await page.locator("#chart-note").textContent();
    // Drawn from minutes (a drawing from before they came says "0 minutes", the last hour).
    const drawn = /^[1-9]\d* minutes? with traffic/.test(note);
    return drawn && r.range === "traffic" && r.from <= first && r.to >= last && r.scale && note.includes(`${clients} canary clients`) ? r : null;
  }, "the chart drawn with every minute of traffic", 25_000);
  assert.ok(zoomed.to - zoomed.from < 2 * 3600, `zoomed: ${(zoomed.to - zoomed.from) / 60} minutes shown`);
  assert.ok(zoomed.from > first - 15 * 60 && zoomed.to < last + 15 * 60, `a little margin: ${JSON.stringify({ first, last, zoomed })}`);
  assert.ok(Math.abs(zoomed.scale[0] - zoomed.from) < 1 && Math.abs(zoomed.scale[1] - zoomed.to) < 1, `uPlot's scale ${zoomed.scale}`);
  assert.match(await page.locator("#chart-note").textContent(), /the minutes with traffic/);
  // The whole day is a click away, and back.
  await page.click("#chart-range");
  const day = await chartRange();
  assert.equal(day.range, "day");
  assert.ok(Math.abs(day.to - day.from - DAY - 60) < 5, `${day.to - day.from} s`);
  assert.ok(Math.abs(day.scale[1] - day.scale[0] - DAY - 60) < 5);
  assert.equal(await page.locator("#chart-range").getAttribute("aria-pressed"), "true");
  await page.click("#chart-range");
  assert.equal((await chartRange()).range, "traffic");

  // The release timeline: the steps, with when each started, passed or was cut.
  const stages = page.locator("#timeline li");
  assert.equal(await stages.count(), 3);
  assert.deepEqual(await stages.evaluateAll((lis) => lis.map((li) => li.dataset.state)), ["passed", "cut", "not_reached"]);
  const [passed, cutStage, unreached] = await stages.allTextContents();
  assert.match(passed, /step 1 of 3 · 10%passed started .+ by operator · passed .+ by rollout/);
  assert.match(cutStage, /step 2 of 3 · 50%cut started .+ by rollout · cut .+ by rollout/);
  assert.ok(cutStage.includes(cut.reason), "with the cut's words");
  assert.match(unreached, /step 3 of 3 · 100%not reached/);
  assert.equal(await page.locator("#timeline li.cut time").last().getAttribute("datetime"), cut.at);
  assert.match(await page.locator("#timeline-note").textContent(), /rollout 10% → 50% → 100%, 2 s bake each, rolled back/);

  await page.screenshot({ path: join(SHOTS, "console-after-cut.png"), fullPage: true });
});

test("the kept verdict survives a restart of the worker, and goes when the canary serves again", async () => {
  // A deploy: the whole runtime again, on the same storage and port.
  await w.restart();
  const s = await api();
  assert.deepEqual(s.monitor.cut, cut, "reloaded from the object's storage");
  await openBundle();
  await page.locator("#verdict-cut:not([hidden])").waitFor();
  const panel = await verdictPanel();
  assert.equal(panel.errors, cut.verdict.canary.errors);
  assert.equal(await page.locator("#timeline li.cut").count(), 1);

  // A new rollout of the canary: it serves again, so the live verdict is back.
  await api("/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 60 } });
  const after = await api();
  assert.equal(after.monitor.cut, null);
  await page.locator("#verdict-title", { hasText: /^Verdict$/ }).waitFor({ timeout: 10_000 });
  assert.equal(await page.locator("#verdict-cut").isVisible(), false);
  assert.equal(await page.locator("#verdict-card.kept").count(), 0);
  assert.deepEqual(await page.locator("#timeline li").evaluateAll((lis) => lis.map((li) => li.dataset.state)),
    ["running", "pending", "pending"]);
});
