// Error signatures through the real worker (Miniflare: the routing wasm, the aggregators,
// the HealthMonitor and its SQLite), with the deployment's defaults (flush timers, report
// limits, health policy): error reports' messages reach the admin status as signatures per
// channel, the ones seen only on the canary are flagged new, one network adds at most
// SIGNATURES_PER_NETWORK (3) of them however many clients and messages it sends, and the
// signatures survive a restart of the object. Messages are kept as sent (bounded), and the
// verdict does not move because of them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cookiePair, newClients, startWorker, until } from "./support/harness.mjs";

const TOKEN = "signatures-admin-token-0123456789abcdef";
/** `control::signatures::SIGNATURES_PER_NETWORK`. */
const PER_NETWORK = 3;

/** An error report as the demo SDK's beacon sends it, with `message` (and `stack`). */
async function report(w, client, message, stack) {
  const r = await w.get("/__canary/report", {
    method: "POST",
    body: JSON.stringify({ bundle: "demo", version: client.version, kind: "uncaught", message, ...(stack ? { stack } : {}) }),
    headers: { "content-type": "text/plain;charset=UTF-8" },
    cookie: client.cookie,
    ip: client.ip,
  });
  assert.equal(r.status, 202, r.text);
  assert.equal(JSON.parse(r.text).counted, true, r.text);
}

async function status(w) {
  const r = await w.get("/__canary/api/demo", { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

test("error messages become signatures per channel; new ones are flagged; a network adds at most 3", async () => {
  const w = await startWorker({ rollout: { stable: "1.0.0", canary: "1.1.0", weight: 50 }, vars: { ADMIN_TOKEN: TOKEN } });
  try {
    const { canary, stable } = await newClients(w, "demo", 30, "sig");
    assert.ok(canary.length >= 6 && stable.length >= 4, `${canary.length} canary, ${stable.length} stable`);
    // An error both channels throw (with their own values), and one only the canary throws
    // (each client its one error: a batch keeps a client's first failure's text).
    const half = Math.floor(canary.length / 2);
    const [oldOnes, newOnes] = [canary.slice(0, half), canary.slice(half)];
    let order = 1000;
    for (const c of [...stable, ...oldOnes]) {
      await report(w, c, `Cannot read properties of undefined (reading 'total') for order ${order++} at https://shop.test/checkout.js:12:${order % 80}`);
    }
    const fresh = `<img src=x onerror="window.pwned=1"> PaymentIntent 550e8400-e29b-41d4-a716-44665544${String(order).padStart(4, "0")} failed: amount NaN`;
    for (const c of newOnes) {
      await report(w, c, fresh.replace(/44665544\d{4}/, `44665544${String(order++).padStart(4, "0")}`),
        "Error: x\n    at pay (https://sdk.test/demo/1.1.0/sdk.js:3:14)\n    at https://shop.test/:1:1");
    }
    // An attacker: one network (one address), ten client ids, each its own message.
    const ip = "203.0.113.66";
    const attackers = [];
    for (let i = 0; i < 13; i++) {
      const r = await w.get("/demo/sdk.js", { userKey: `attacker-${i}`, ip });
      attackers.push({ cookie: cookiePair(r.headers), version: r.headers.get("x-canary-version"), ip });
    }
    for (let i = 0; i < 10; i++) await report(w, attackers[i], `junk message number ${"x".repeat(i + 1)}`);

    // Errors reach the control plane within a second of their flush (URGENT_FLUSH_MS).
    const expected = 2 + PER_NETWORK;
    const s = await until(async () => {
      const got = await status(w);
      const listed = got.monitor?.error_signatures?.current?.signatures ?? [];
      return listed.length >= expected && got.monitor.error_signatures.current.refused.network_cap >= 10 - PER_NETWORK ? got : null;
    }, "the signatures in the status", 20_000).catch(async (e) => { console.log(JSON.stringify((await status(w)).monitor.error_signatures), JSON.stringify((await status(w)).monitor.verdict)); throw e; });
    const sig = s.monitor.error_signatures;
    const listed = sig.current.signatures;
    assert.equal(listed.length, expected, JSON.stringify(listed));
    assert.equal(sig.current.canary, "1.1.0");
    // The error of both channels: one signature (values, URLs and positions stripped), not new.
    const old = listed.find((x) => x.sample.startsWith("Cannot read properties"));
    assert.equal(old.new, false);
    assert.deepEqual(old.clients, { stable: stable.length, canary: oldOnes.length });
    // The canary's own error: new, its canary clients, a sample as sent, and the top frame.
    const mine = listed.find((x) => x.sample.includes("PaymentIntent"));
    assert.equal(mine.new, true);
    assert.deepEqual(mine.clients, { stable: 0, canary: newOnes.length });
    assert.ok(mine.sample.startsWith('<img src=x onerror="window.pwned=1">'), "kept as sent: escaped where shown");
    assert.equal(mine.frame, "at pay (https://sdk.test/demo/1.1.0/sdk.js:3:14)");
    assert.match(mine.id, /^[0-9a-f]{16}$/);
    // Listed first, and the top new one.
    assert.equal(listed[0].id, mine.id);
    assert.equal(sig.top_new.id, mine.id);
    // The attacker's network: at most 3 signatures, each with one client; the rest refused.
    const junk = listed.filter((x) => x.sample.startsWith("junk"));
    assert.equal(junk.length, PER_NETWORK);
    assert.ok(junk.every((x) => x.clients.canary + x.clients.stable === 1), JSON.stringify(junk));
    assert.equal(sig.current.refused.network_cap, 10 - PER_NETWORK);
    assert.equal(sig.current.new_in_canary, 1 + junk.filter((x) => x.new).length);
    // The verdict counts failures as before: signatures explain it, nothing more.
    assert.equal(s.monitor.verdict.state, "inconclusive", JSON.stringify(s.monitor.verdict));

    // A restart of the object: the signatures are reloaded from its SQLite, and the cap holds.
    await w.restartObjects({ bundle: "demo" });
    for (let i = 10; i < 13; i++) await report(w, attackers[i], `junk message after restart ${"y".repeat(i)}`);
    const again = await until(async () => {
      const got = await status(w);
      const cur = got.monitor?.error_signatures?.current;
      return cur?.refused.network_cap >= 13 - PER_NETWORK ? got : null;
    }, "the reports after the restart", 20_000);
    const after = again.monitor.error_signatures;
    assert.deepEqual(after.current.signatures.map((x) => x.id).sort(), listed.map((x) => x.id).sort(), "the same signatures");
    assert.equal(after.top_new.id, mine.id);
    console.log(`# signatures: ${listed.length} listed (1 both channels, 1 new in the canary from ${newOnes.length} clients, ` +
      `${junk.length} from the attacker's one network), ${after.current.refused.network_cap} of its reports refused; same after a restart`);
  } finally {
    await w.dispose();
  }
});
