// The harness's restarts (tests/support/harness.mjs), checked for what they claim, so that
// tests that use them prove something: `worker.restartObjects()` drops the control plane's
// Durable Objects' memory and keeps their storage while the edge keeps running, and
// `worker.restart()` starts the whole runtime again on the same KV, R2 and Durable Object
// storage (a temp dir when the test gave no `persist`), on the same port.
//
// The monitor's `intake` (its status: forwards taken in) lives in the object's memory only,
// so it resets on a restart of the object; its config, events and history are in SQLite.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { copyDemoFiles, newClients, sendBoot, sleep, startWorker, until } from "./support/harness.mjs";

const TOKEN = "restarts-admin-token-0123456789abcdef";
// HEALTH_FLUSH_REQUESTS 1: each load goes to the monitor as it is served, so that the
// `intake` counted before a restart is known exactly; the flush timer itself is exercised
// by browser-canary.test.mjs and verdicts.test.mjs, which run on wrangler.toml's.
const VARS = { ADMIN_TOKEN: TOKEN, HEALTH_FLUSH_REQUESTS: "1" };

async function status(w, bundle) {
  const r = await w.get(`/__canary/api/${bundle}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

/** Loads `n` new clients of `bundle`, and waits for the monitor to have taken them in. */
async function feed(w, bundle, n) {
  const before = (await status(w, bundle)).intake?.isolate_batches ?? 0;
  const { all } = await newClients(w, bundle, n, `restart-${bundle}`);
  for (const c of all) await sendBoot(w, bundle, c);
  return until(async () => {
    const s = await status(w, bundle);
    return s.intake.isolate_batches >= before + n ? s : null;
  }, `${n} batches of ${bundle} at its monitor`);
}

describe("worker.restartObjects()", () => {
  let w;
  before(async () => {
    w = await startWorker({ vars: VARS });
    for (const bundle of ["ra", "rb", "rc"]) {
      await copyDemoFiles(w, bundle);
      await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50 }, bundle);
    }
  });
  after(() => w?.dispose());

  test("a bundle's objects lose their memory, keep their storage; other bundles' and the edge's are untouched", async () => {
    // A command, so that the monitor has history in storage.
    const set = await w.get("/__canary/api/ra/weight", { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ weight: 30 }) });
    assert.equal(set.status, 200, set.text);
    const a = await feed(w, "ra", 4);
    const b = await feed(w, "rb", 3);
    assert.ok(a.intake.messages > 0 && b.intake.messages > 0);

    const evicted = await w.restartObjects({ bundle: "ra" });
    assert.ok(evicted.evicted >= 2, `the monitor and the edge's aggregator were running: ${JSON.stringify(evicted)}`);
    assert.equal(evicted.evicted + evicted.not_running, 65, "the monitor and 64 aggregators");

    const after = await status(w, "ra");
    assert.equal(after.intake.messages, 0, `in-memory intake reset: ${JSON.stringify(after.intake)}`);
    assert.deepEqual(after.monitor.events, a.monitor.events, "events kept (SQLite)");
    assert.deepEqual(after.monitor.totals, a.monitor.totals, "totals kept (SQLite)");
    assert.equal(after.monitor.events[0].kind, "set_weight");
    const other = await status(w, "rb");
    assert.deepEqual(other.intake, b.intake, "another bundle's objects were not restarted");

    // It goes on: new batches reach the restarted objects.
    const again = await feed(w, "ra", 2);
    assert.ok(again.intake.isolate_batches >= 2);
  });

  test("without a bundle: every object restarts, and the edge isolate keeps what it holds", async () => {
    await feed(w, "rb", 1);
    // The edge's config copy of `rc` (read now, so younger than CONFIG_TTL_MS, 5 s) must
    // outlive the restart: a KV write made now is not served until the copy expires.
    const client = (await newClients(w, "rc", 1, "restart-edge")).all[0];
    // That request may have started a revision check (under waitUntil; its first to the
    // aggregator, whose object may be starting): let it settle first, or its answer could
    // carry the write below (the control plane adopts raw writes and pushes them), which is
    // the push path, not what this test is about.
    await sleep(1000);
    await w.kv.put("rollout/rc", JSON.stringify({ stable: "1.0.0", canary: "1.1.0", weight: client.channel === "canary" ? 0 : 100 }));
    const r = await w.restartObjects();
    assert.equal(r.evicted, -1);
    assert.equal((await status(w, "rb")).intake.messages, 0);
    const head = await w.get("/rc/sdk.js", { method: "HEAD", cookie: client.cookie });
    assert.equal(head.headers.get("x-canary-channel"), client.channel, "the edge isolate kept its config copy");
  });
});

describe("worker.restart()", () => {
  test("a new runtime on the same KV, R2 and Durable Object storage, on the same port; the temp state goes with dispose()", async () => {
    const w = await startWorker({ vars: VARS, listen: true });
    const scratch = w.scratch;
    try {
      assert.ok(scratch && existsSync(scratch), "state persisted in a temp dir");
      await copyDemoFiles(w, "rr");
      await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50 }, "rr");
      const before = await feed(w, "rr", 3);
      const url = w.url.href;

      await w.restart();
      assert.equal(w.url.href, url, "same port");
      const after = await status(w, "rr");
      assert.equal(after.intake.messages, 0, "a new object");
      assert.deepEqual(after.monitor.totals, before.monitor.totals, "Durable Object storage kept");
      assert.deepEqual(after.config, before.config, "KV kept");
      const r = await fetch(new URL("/rr@1.1.0/sdk.js", w.url));
      assert.equal(r.status, 200, "R2 kept, served on the same port");
      await feed(w, "rr", 1);
    } finally {
      await w.dispose();
    }
    assert.ok(!existsSync(scratch), "dispose() removed the temp state");
  });
});
