// The per-minute health history (the last 24 hours) kept by the HealthMonitor, end to end:
// distinct clients and clients with an error per channel and minute, through the admin
// API, kept across a restart of the object (from its SQLite storage); refused without the token.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { copyDemoFiles, newClients, sendReport, startWorker, until } from "./support/harness.mjs";

const TOKEN = "minutes-admin-token-0123456789abcdef";
// HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: each load and report reaches the monitor as
// served, so that a minute's counts are exact when the test reads them (the flush timer:
// browser-canary.test.mjs, verdicts.test.mjs).
const VARS = { ADMIN_TOKEN: TOKEN, HEALTH_FLUSH_MS: "0", HEALTH_FLUSH_REQUESTS: "1" };
let w;

before(async () => {
  w = await startWorker({ vars: VARS, rollout: { stable: "1.0.0", canary: "1.1.0", weight: 50 } });
});
after(() => w?.dispose());

async function minutes(worker, query = "", token = TOKEN) {
  const r = await worker.get(`/__canary/api/demo/minutes${query}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: r.status, json: r.status === 200 ? JSON.parse(r.text) : null, text: r.text };
}

const total = (rows, ch) =>
  rows.reduce((acc, m) => ({ clients: acc.clients + m.counts[ch].clients, errors: acc.errors + m.counts[ch].errors }), { clients: 0, errors: 0 });

test("clients and clients with errors per channel and minute, each client once", async () => {
  const { all } = await newClients(w, "demo", 24, "minute-shopper");
  const canary = all.filter((c) => c.channel === "canary");
  const stable = all.filter((c) => c.channel === "stable");
  assert.ok(canary.length > 0 && stable.length > 0, "weight 50 serves both");
  // Each canary client reports two errors: still one client with an error.
  for (const c of canary.slice(0, 3)) {
    await sendReport(w, "demo", c.version, c);
    await sendReport(w, "demo", c.version, c);
  }
  // And each loads the script again: still one client.
  for (const c of all) await w.get("/demo/sdk.js", { cookie: c.cookie });

  let rows;
  await until(async () => {
    rows = (await minutes(w)).json.minutes;
    return total(rows, "canary").clients + total(rows, "stable").clients >= all.length;
  }, "the counts reach the monitor");
  const now = Math.floor(Date.now() / 60000);
  for (const m of rows) {
    assert.ok(Number.isInteger(m.minute) && m.minute <= now && m.minute > now - 5, `minute ${m.minute}`);
    assert.equal(m.stable, "1.0.0");
    assert.equal(m.canary, "1.1.0");
  }
  const c = total(rows, "canary");
  const s = total(rows, "stable");
  // A client seen in two minutes counts once in each; within a minute, once.
  assert.ok(c.clients >= canary.length && c.clients <= 2 * canary.length, JSON.stringify(c));
  assert.ok(s.clients >= stable.length && s.clients <= 2 * stable.length, JSON.stringify(s));
  assert.ok(c.errors >= 3 && c.errors <= 6, `three clients with errors, each once per minute: ${JSON.stringify(c)}`);
  assert.equal(s.errors, 0);

  const later = await minutes(w, `?since=${now + 1}`);
  assert.deepEqual(later.json.minutes, [], "since filters by Unix minute");
});

test("without the admin token: 401; a malformed since: 400 naming it", async () => {
  assert.equal((await minutes(w, "", null)).status, 401);
  assert.equal((await minutes(w, "", "wrong-token")).status, 401);
  const bad = await minutes(w, "?since=yesterday");
  assert.equal(bad.status, 400);
  assert.match(bad.text, /since must be a Unix minute/);
});

test("the history survives a restart of the object (SQLite)", async () => {
  const before = (await minutes(w)).json.minutes;
  assert.ok(before.length > 0);
  // The bundle's monitor (and its aggregators) restarted while the edge runs on, as when
  // the object is evicted: the minutes come back from its SQLite storage.
  const { evicted } = await w.restartObjects({ bundle: "demo" });
  assert.ok(evicted >= 1);
  const again = (await minutes(w)).json.minutes;
  assert.deepEqual(again, before);
  // New traffic in the same minute adds to the stored counts rather than replacing them.
  const { all } = await newClients(w, "demo", 4, "after-restart");
  await until(async () => {
    const rows = (await minutes(w)).json.minutes;
    const sum = (r) => total(r, "canary").clients + total(r, "stable").clients;
    return sum(rows) >= sum(before) + all.length - 1;
  }, "the new clients are added to the minute");
});
