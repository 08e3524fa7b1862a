// Gates and freezes end to end, with the real HealthMonitor Durable Object: a rollout whose
// last step is gated (`progression.approve`) stops before it until `POST …/approve`; a
// freeze window (`progression.freeze`) holds a passed step until the window ends.
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { ROOT, copyDemoFiles, sleep, startShoppers, startWorker, until } from "./support/harness.mjs";

const TOKEN = "test-admin-token-0123456789abcdef";
// A lenient rule (3 clean canary clients under a 50% floor) and background shoppers make a
// step pass in seconds: these tests are about the gate and the freeze, not the statistics.
// boot_grace_secs 10 (default 30): a shopper whose boot got lost resolves within a test's
// steps, not half a minute later.
const HEALTH = { min_clients: 3, min_error_rate: 0.5, hostile_networks: 0, boot_grace_secs: 10 };
const BASE = { stable: "1.0.0", canary: "1.1.0", weight: 0, health: HEALTH };

let w;
let bundle;
let shoppers;
let n = 0;

before(async () => {
  w = await startWorker({
    rollout: BASE,
    listen: true,
    // HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: loads reach the monitor as served, so a
    // step passes in seconds (the flush timer: browser-canary.test.mjs, verdicts.test.mjs).
    vars: { ADMIN_TOKEN: TOKEN, HEALTH_FLUSH_MS: "0", HEALTH_FLUSH_REQUESTS: "1" },
  });
});
after(() => w.dispose());

beforeEach(async () => {
  bundle = `gate${++n}`;
  await w.clearFaults();
  await copyDemoFiles(w, bundle);
});
afterEach(() => shoppers?.stop());

async function api(path, { method = "GET", body } = {}) {
  const r = await w.get(`/__canary/api/${bundle}${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}` }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try { json = JSON.parse(r.text); } catch { /* text errors */ }
  return { ...r, json };
}

const kvConfig = async () => JSON.parse(await w.kv.get(`rollout/${bundle}`));
const monitor = async () => (await api("")).json.monitor;

describe("gates and freezes", () => {
  test("a gated step waits for an approval; POST …/approve takes it", async () => {
    await w.setRollout({ ...BASE, progression: { steps: [10, 50, 100], bake_secs: 1, approve: [100] } }, bundle);
    shoppers = startShoppers(w, bundle, { perTick: 3, everyMs: 50 });
    const early = await api("/approve", { method: "POST", body: {} });
    assert.equal(early.status, 409, early.text);
    assert.match(early.text, /nothing awaits approval/);
    const started = await api("/rollout", { method: "POST", body: {} });
    assert.equal(started.status, 200, started.text);
    // Seconds on an idle machine (the first step reaches the edge up to CONFIG_TTL_MS after
    // it was written); a busy one is slower.
    await until(async () => (await monitor()).progress.state === "awaiting_approval", "awaiting approval", 60000);
    let m = await monitor();
    assert.equal((await kvConfig()).weight, 50, "stopped before 100");
    assert.deepEqual([m.gate.awaiting_approval, m.gate.step, m.gate.weight], [true, 3, 100]);
    assert.match(m.progress.reason, /step 3 \(100%\) waits for approval/);
    assert.equal(m.timeline.stages.find((s) => s.step === 2).state, "awaiting_approval");
    assert.equal(m.events[0].kind, "awaiting_approval");
    // It stays there: three more bake times, no step.
    await sleep(3000);
    assert.equal((await kvConfig()).weight, 50);
    // An approval about another canary is refused.
    const other = await api("/approve", { method: "POST", body: { canary: "1.2.0" } });
    assert.equal(other.status, 409, other.text);
    // The operator approves with the CLI (`scripts/canary approve`, through the admin API).
    const approved = await new Promise((done) =>
      execFile(join(ROOT, "scripts/canary"), ["approve", bundle, "--url", w.url.href, "--token", TOKEN], { cwd: ROOT, timeout: 60_000 },
        (error, stdout, stderr) => done({ code: error ? error.code : 0, out: stdout + stderr })),
    );
    assert.equal(approved.code, 0, approved.out);
    assert.match(approved.out, new RegExp(`${bundle}: approved; 1\\.1\\.0 now serves 100%`));
    assert.equal((await kvConfig()).weight, 100);
    m = await monitor();
    assert.equal(m.gate.awaiting_approval, false);
    const entry = m.events.find((e) => e.kind === "approved");
    assert.equal(entry.by, "operator");
    assert.equal(entry.weight, 100);
    await until(async () => (await monitor()).progress.state === "done", "done", 60000);
  });

  test("a freeze window holds a passed step, and it proceeds when the window ends", async () => {
    const from = new Date(Date.now() - 1000).toISOString();
    const to = new Date(Date.now() + 10000).toISOString();
    await w.setRollout({ ...BASE, progression: { steps: [50, 100], bake_secs: 1, freeze: [{ from, to }] } }, bundle);
    shoppers = startShoppers(w, bundle, { perTick: 3, everyMs: 50 });
    const started = await api("/rollout", { method: "POST", body: {} });
    assert.equal(started.status, 200, started.text);
    await until(async () => (await monitor()).progress.state === "frozen", "frozen", 9000);
    const m = await monitor();
    assert.equal(m.freeze.active, true);
    assert.equal(new Date(m.freeze.until).getTime(), new Date(to).getTime());
    assert.match(m.progress.reason, /^frozen until/);
    assert.equal(m.timeline.stages[0].state, "frozen");
    assert.equal((await kvConfig()).weight, 50, "held during the freeze");
    // The alarm fires at the window's end: the step advances.
    await until(async () => (await kvConfig()).weight === 100, "advanced after the freeze", 20000);
    assert.ok(Date.now() >= new Date(to).getTime(), "not before the window's end");
    const after = await monitor();
    assert.equal(after.freeze.active, false);
    assert.ok(after.events.some((e) => e.kind === "frozen"));
  });
});
