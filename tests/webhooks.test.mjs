// Webhooks end to end (docs/webhooks.md), with the real HealthMonitor Durable Object and a
// local HTTP receiver: NOTIFY_URLS names a JSON and a Slack receiver, NOTIFY_SECRET signs
// the JSON one. Every event type arrives, once per idempotency key (a retry repeats the same
// key and body), a receiver that answers 500 twice still gets its event, the signature
// verifies, and the Slack format has `text` and `blocks`.
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import { copyDemoFiles, sleep, startShoppers, startWorker, until } from "./support/harness.mjs";

const TOKEN = "test-admin-token-0123456789abcdef";
const SECRET = "test-notify-secret";
const CONSOLE = "ops.example.com";
// A lenient rule (3 clean canary clients under a 50% floor) and background shoppers make a
// step pass in seconds; boot_grace_secs 10 (default 30): a shopper whose boot got lost
// resolves within the test.
const HEALTH = { min_clients: 3, min_error_rate: 0.5, hostile_networks: 0, boot_grace_secs: 10 };
const BASE = { stable: "1.0.0", canary: "1.1.0", weight: 0, health: HEALTH };

/** Every request the receiver got: { path, key, signature, body (text), json, status }. */
const received = [];
/** The receiver answers 500 to the first `failFirst` JSON deliveries. */
let failFirst = 2;
let server;
let w;
let shoppers;

before(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const path = req.url;
      let status = 200;
      if (path === "/json" && failFirst > 0) {
        failFirst--;
        status = 500;
      }
      let json = null;
      try { json = JSON.parse(body); } catch { /* recorded as text */ }
      received.push({
        path, status, body, json,
        key: req.headers["x-canary-delivery"],
        signature: req.headers["x-canary-signature"],
        contentType: req.headers["content-type"],
      });
      res.writeHead(status, { "content-type": "text/plain" });
      res.end(status === 200 ? "ok" : "try again");
    });
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  w = await startWorker({
    rollout: BASE,
    listen: true,
    vars: {
      ADMIN_TOKEN: TOKEN,
      // Loads reach the monitor as served, so that steps pass (and events fire) in seconds;
      // the flush timer: browser-canary.test.mjs, verdicts.test.mjs.
      HEALTH_FLUSH_MS: "0",
      HEALTH_FLUSH_REQUESTS: "1",
      CONSOLE_HOST: CONSOLE,
      NOTIFY_URLS: `json:http://127.0.0.1:${port}/json, slack:http://127.0.0.1:${port}/slack`,
      NOTIFY_SECRET: SECRET,
    },
  });
});
after(async () => {
  await w?.dispose();
  server?.close();
});
afterEach(() => shoppers?.stop());

function api(bundle) {
  return async (path, { method = "GET", body } = {}) => {
    const r = await w.get(`/__canary/api/${bundle}${path}`, {
      method, headers: { authorization: `Bearer ${TOKEN}` }, body: body === undefined ? undefined : JSON.stringify(body),
    });
    let json = null;
    try { json = JSON.parse(r.text); } catch { /* text errors */ }
    return { ...r, json };
  };
}

/** `<bundle>-<seq>-<event>`: the history's sequence number in a key. */
const seqOf = (key) => Number(key.split("-").at(-2));
/** The JSON deliveries answered 200 for `bundle`, in the order of the events (a retried
 * delivery arrives after later ones). */
const delivered = (bundle, path = "/json") =>
  received
    .filter((r) => r.path === path && r.status === 200 && r.json?.bundle === bundle)
    .sort((a, b) => a.json.at_ms - b.json.at_ms || seqOf(a.key) - seqOf(b.key));
const eventsOf = (bundle) => delivered(bundle).map((r) => r.json.event);
const waitFor = (bundle, event, ms = 60_000) =>
  until(async () => eventsOf(bundle).includes(event), `${bundle}: ${event} delivered`, ms);

async function publishFiles(bundle, version) {
  for (const [key, value] of [["sdk.js", `/* DemoPay SDK ${version} */`], ["chunk.js", "//"]]) {
    await w.r2.put(`${bundle}/${version}/${key}`, value);
  }
}

describe("webhooks", () => {
  test("a gated rollout: step advanced, awaiting approval, approved, done, promote, publish", async () => {
    const bundle = "hooks-gate";
    const call = api(bundle);
    await copyDemoFiles(w, bundle);
    await w.setRollout({ ...BASE, progression: { steps: [10, 50, 100], bake_secs: 1, approve: [100] } }, bundle);
    shoppers = startShoppers(w, bundle, { perTick: 3, everyMs: 50 });
    assert.equal((await call("/rollout", { method: "POST", body: {} })).status, 200);
    await waitFor(bundle, "awaiting_approval");
    const approved = await call("/approve", { method: "POST", body: {} });
    assert.equal(approved.status, 200, approved.text);
    await waitFor(bundle, "done");
    await shoppers.stop();
    assert.equal((await call("/promote", { method: "POST", body: {} })).status, 200);
    await publishFiles(bundle, "1.2.0");
    const published = await call("/publish", { method: "POST", body: { version: "1.2.0" } });
    assert.equal(published.status, 200, published.text);
    await waitFor(bundle, "publish");
    // A step may wait for evidence a moment after its bake (told too): not what this is about.
    const told = eventsOf(bundle).filter((e) => e !== "waiting_for_evidence");
    assert.deepEqual(told, ["step_advanced", "awaiting_approval", "approved", "done", "promote", "publish"]);
    const byEvent = Object.fromEntries(delivered(bundle).map((r) => [r.json.event, r.json]));
    assert.deepEqual([byEvent.step_advanced.weight, byEvent.step_advanced.by, byEvent.step_advanced.evidence.verdict], [50, "rollout", "pass"]);
    assert.ok(byEvent.step_advanced.evidence.canary.clients >= 3, JSON.stringify(byEvent.step_advanced.evidence));
    assert.deepEqual([byEvent.awaiting_approval.weight, byEvent.awaiting_approval.next_weight], [50, 100]);
    assert.deepEqual([byEvent.approved.weight, byEvent.approved.by], [100, "operator"]);
    assert.deepEqual([byEvent.promote.stable, byEvent.promote.canary], ["1.1.0", null]);
    assert.deepEqual([byEvent.publish.stable, byEvent.publish.canary, byEvent.publish.weight], ["1.1.0", "1.2.0", 0]);
    assert.equal(byEvent.done.url, `https://${CONSOLE}/__canary/ui/#/b/${bundle}`);
  });

  test("an automatic rollback carries the evidence that cut the canary", async () => {
    const bundle = "hooks-cut";
    const call = api(bundle);
    await copyDemoFiles(w, bundle);
    await w.setRollout(BASE, bundle);
    shoppers = startShoppers(w, bundle, { perTick: 4, everyMs: 50, canaryErrors: 1 });
    assert.equal((await call("/rollout", { method: "POST", body: { steps: [50, 100], bake_secs: 60 } })).status, 200);
    await waitFor(bundle, "rollback");
    const cut = delivered(bundle).find((r) => r.json.event === "rollback").json;
    assert.equal(cut.automatic, true);
    assert.equal(cut.by, "rollout");
    assert.equal(cut.evidence.verdict, "cut");
    assert.ok(cut.evidence.canary.failed > 0 && cut.evidence.canary.clients >= cut.evidence.canary.failed, JSON.stringify(cut.evidence));
    assert.ok(cut.evidence.canary.low > 0 && cut.evidence.canary.high <= 1);
    assert.match(cut.reason, /\S/);
    assert.equal(cut.weight, 0);
  });

  test("pause, publish over a paused rollout (superseded), a manual rollback", async () => {
    const bundle = "hooks-ops";
    const call = api(bundle);
    await copyDemoFiles(w, bundle);
    await w.setRollout(BASE, bundle);
    assert.equal((await call("/rollout", { method: "POST", body: { steps: [10, 100], bake_secs: 600 } })).status, 200);
    assert.equal((await call("/pause", { method: "POST", body: {} })).status, 200);
    await publishFiles(bundle, "1.2.0");
    assert.equal((await call("/publish", { method: "POST", body: { version: "1.2.0" } })).status, 200);
    assert.equal((await call("/weight", { method: "POST", body: { weight: 10 } })).status, 200);
    assert.equal((await call("/rollback", { method: "POST", body: { reason: "checkout broke" } })).status, 200);
    await waitFor(bundle, "rollback");
    assert.deepEqual(eventsOf(bundle), ["paused", "publish", "superseded", "rollback"]);
    const [paused, , superseded, rollback] = delivered(bundle).map((r) => r.json);
    assert.equal(paused.by, "operator");
    assert.deepEqual([superseded.canary, superseded.by], ["1.1.0", "operator"]);
    assert.deepEqual([rollback.automatic, rollback.by, rollback.reason, rollback.canary], [false, "operator", "checkout broke", "1.2.0"]);
  });

  test("no evidence: waiting for evidence until a stated time, then paused", async () => {
    const bundle = "hooks-quiet";
    const call = api(bundle);
    await copyDemoFiles(w, bundle);
    await w.setRollout({ ...BASE, health: { ...HEALTH, max_hold_secs: 2 } }, bundle);
    assert.equal((await call("/rollout", { method: "POST", body: { steps: [10, 100], bake_secs: 1 } })).status, 200);
    await waitFor(bundle, "paused");
    assert.deepEqual(eventsOf(bundle), ["waiting_for_evidence", "paused"]);
    const [waiting, paused] = delivered(bundle).map((r) => r.json);
    assert.ok(Date.parse(waiting.until) > Date.parse(waiting.at), JSON.stringify(waiting));
    assert.equal(paused.by, "rollout");
    assert.match(paused.reason, /no evidence/);
  });

  test("every delivery: one key per event, retried with the same key and body, signed; Slack has text and blocks", async () => {
    // Every queued delivery has arrived by now (the last of each test was awaited); give any
    // stragglers a moment.
    await sleep(500);
    const json = received.filter((r) => r.path === "/json");
    const slack = received.filter((r) => r.path === "/slack");
    // The receiver failed the first two JSON deliveries: that event still arrived, with the
    // same key and body.
    const failed = json.filter((r) => r.status === 500);
    assert.equal(failed.length, 2);
    for (const f of failed) {
      const ok = json.filter((r) => r.status === 200 && r.key === f.key);
      assert.equal(ok.length, 1, `delivered after failing: ${f.key}`);
      assert.equal(ok[0].body, f.body);
    }
    // One key per event: duplicates only ever repeat a key with its body.
    const byKey = new Map();
    for (const r of json) {
      assert.ok(r.key, "X-Canary-Delivery");
      assert.equal(r.json.id, r.key, "the body's id is the key");
      if (byKey.has(r.key)) assert.equal(byKey.get(r.key), r.body, `the same body for ${r.key}`);
      byKey.set(r.key, r.body);
    }
    // Each event once: delivered (answered 200) once per key, and never under two keys (an
    // event is its bundle, kind and time).
    const okPerKey = new Map();
    const keysPerEvent = new Map();
    for (const r of json.filter((r) => r.status === 200)) {
      okPerKey.set(r.key, (okPerKey.get(r.key) ?? 0) + 1);
      const k = `${r.json.bundle}/${r.json.event}/${r.json.at_ms}`;
      keysPerEvent.set(k, new Set([...(keysPerEvent.get(k) ?? []), r.key]));
    }
    for (const [key, n] of okPerKey) assert.equal(n, 1, `${key} delivered once`);
    for (const [k, keys] of keysPerEvent) assert.equal(keys.size, 1, `${k} under one key`);
    const types = new Set(json.map((r) => r.json.event));
    for (const t of ["rollback", "step_advanced", "waiting_for_evidence", "paused", "done", "superseded", "publish", "promote", "awaiting_approval", "approved"]) {
      assert.ok(types.has(t), `${t} delivered`);
    }
    // The signature is the HMAC-SHA256 of the exact body with NOTIFY_SECRET.
    for (const r of json) {
      const want = `sha256=${createHmac("sha256", SECRET).update(r.body).digest("hex")}`;
      assert.equal(r.signature, want, r.key);
      assert.equal(r.contentType, "application/json");
    }
    // The Slack receiver got the same events, with text and a section per fact, unsigned.
    const slackKeys = new Set(slack.filter((r) => r.status === 200).map((r) => r.key));
    assert.deepEqual([...slackKeys].sort(), [...byKey.keys()].sort());
    for (const r of slack) {
      assert.equal(typeof r.json.text, "string");
      assert.ok(Array.isArray(r.json.blocks) && r.json.blocks.length > 3);
      assert.ok(r.json.blocks.every((b) => b.type === "section" && b.text.type === "mrkdwn"));
      assert.equal(r.signature, undefined);
    }
    const cut = slack.find((r) => r.key.startsWith("hooks-cut-") && r.key.endsWith("-rollback"));
    assert.match(cut.json.text, /hooks-cut: canary 1\.1\.0 was rolled back automatically/);
    assert.ok(cut.json.blocks.some((b) => b.text.text.startsWith("*Evidence:* cut: canary ")));
    assert.ok(cut.json.blocks.some((b) => b.text.text === `*Console:* <https://${CONSOLE}/__canary/ui/#/b/hooks-cut|hooks-cut>`));
    console.log(`# sample Slack payload: ${cut.body}`);
  });
});
