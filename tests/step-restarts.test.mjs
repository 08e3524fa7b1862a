// Restarts of the control plane in the middle of a step (issue 24): Durable Objects are
// evicted when idle and restarted by every deploy, and the step's evidence must survive
// both. One attacker network tries to count three times, across two restarts of the
// HealthMonitor and the aggregators (`restartObjects`: the edge keeps running), and five
// times across four whole-runtime restarts (`restart`: a deploy); it counts once, as it
// does without a restart. A client pending at a restart is still resolved after it (its
// boot, or its silence past the grace).
//
// Settings: the deployment's (wrangler.toml, the health policy's defaults) except
// - HEALTH_FLUSH_MS 1000 (production: 10000): each attempt must reach the monitor before the
//   restart that follows it; the edge sends an isolate's loads on its first request after the
//   flush interval, so production's 10 s would add 10 s to every attempt of this test. The
//   flush timer itself is not under test here.
// - boot_grace_secs 5 (default 30) in the one case about silence: a pending client must be
//   resolved as silent after a restart, within the test's time.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { canaryVisit, cookiePair, copyDemoFiles, sendBoot, sendReport, sleep, startWorker, until } from "./support/harness.mjs";

const TOKEN = "step-restarts-admin-token-0123456789abcdef";
const ATTACKER_IP = "203.0.113.66";

let w;
before(async () => {
  w = await startWorker({ vars: { ADMIN_TOKEN: TOKEN, HEALTH_FLUSH_MS: "1000" } });
});
after(() => w?.dispose());

async function status(bundle) {
  const r = await w.get(`/__canary/api/${bundle}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

/** The step's evidence as the verdict counts it, and what the tracker refused. */
async function evidence(bundle) {
  const v = (await status(bundle)).monitor.verdict;
  return {
    canary: { clients: v.canary.clients, errors: v.canary.errors },
    stable: { clients: v.stable.clients, errors: v.stable.errors },
    silence: v.silence,
    pending: v.tracked.pending,
    refused: v.tracked.refused,
  };
}

/** A bundle of its own with the demo's files, its canary live at 50%. */
async function bundle(name, health = {}) {
  await copyDemoFiles(w, name);
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50, health }, name);
  // The edge's config copy is 5 s old at most (CONFIG_TTL_MS): wait until it serves the canary.
  await until(async () => {
    const r = await w.get(`/${name}/sdk.js`, { method: "HEAD", userKey: "probe-0", ip: "198.51.100.1" });
    return r.status === 200;
  }, `${name} served`, 10_000);
}


/**
 * The client's own request again after the flush interval: its report (which the tracker
 * takes once), or with `report` false its load (a returning client, tracked already). Not a
 * load of the attacker's refused client: each would be refused again and add to the
 * network cap's count, which the test compares. The edge's outbox sends on its timer
 * (tests/count-path.test.mjs); these are the client retrying, as one would.
 */
async function poke(name, client, report) {
  await sleep(1100);
  if (report) await sendReport(w, name, client.version, client);
  else await w.get(`/${name}/sdk.js`, { cookie: client.cookie, ip: client.ip });
}

/**
 * One attempt of the attacker's network: a new client id on the canary and its failure
 * report, then pokes until the monitor took both (`wanted`).
 */
async function attempt(name, ip, wanted) {
  const client = await canaryVisit(w, name, ip);
  await sleep(1100);
  const r = await sendReport(w, name, client.version, client);
  assert.equal(r.status, 202, r.text);
  await until(async () => {
    await poke(name, client, true);
    return wanted(await evidence(name));
  }, `${name}: the attempt reached the monitor`, 20_000);
  return client;
}

/** The same attempts, with `restartBetween` between two. */
async function attempts(name, n, restartBetween) {
  await bundle(name);
  await attempt(name, ATTACKER_IP, (e) => e.canary.errors === 1);
  for (let i = 1; i < n; i++) {
    await restartBetween();
    await attempt(name, ATTACKER_IP, (e) => e.refused.network_cap === i);
  }
  return evidence(name);
}

test("one network counts once per step across restarts of the HealthMonitor and the aggregators", async () => {
  const without = await attempts("calm", 3, async () => {});
  assert.deepEqual(without.canary, { clients: 1, errors: 1 });
  assert.equal(without.refused.network_cap, 2);
  const restarted = await attempts("evicted", 3, () => w.restartObjects());
  assert.deepEqual(restarted, without, "the same evidence with two restarts of the control plane");
});

test("one network counts once per step across four restarts of the whole runtime", async () => {
  const e = await attempts("deployed", 5, () => w.restart());
  assert.deepEqual(e.canary, { clients: 1, errors: 1 }, JSON.stringify(e));
  assert.equal(e.refused.network_cap, 4);
});

test("a client pending at a restart is resolved after it: booted, or silent past its grace", async () => {
  // boot_grace_secs 5: the silent client is resolved in test time (see the header).
  await bundle("pending", { boot_grace_secs: 5 });
  // Stable must be known to boot for silence to count: three stable clients boot.
  const booters = [];
  for (let i = 0; booters.length < 3; i++) {
    const key = `stable-${i}`;
    const ip = `198.51.100.${10 + i}`;
    const head = await w.get("/pending/sdk.js", { method: "HEAD", userKey: key, ip });
    if (head.headers.get("x-canary-channel") !== "stable") continue;
    const r = await w.get("/pending/sdk.js", { userKey: key, ip });
    booters.push({ cookie: cookiePair(r.headers), ip, version: r.headers.get("x-canary-version") });
  }
  await canaryVisit(w, "pending", "198.51.100.50"); // never boots
  const late = await canaryVisit(w, "pending", "198.51.100.51");
  await sleep(1100);
  for (const b of booters) await sendBoot(w, "pending", b);
  await until(async () => {
    await poke("pending", booters[0], false);
    await sendBoot(w, "pending", booters[0]);
    const e = await evidence("pending");
    return e.pending === 2 && e.stable.clients === 3;
  }, "two canary clients pending, three stable ones booted", 20_000);
  await w.restartObjects();
  // One boots after the restart, the other never does.
  await sendBoot(w, "pending", late);
  const e = await until(async () => {
    await poke("pending", booters[0], false);
    await sendBoot(w, "pending", late);
    const e = await evidence("pending");
    return e.pending === 0 && e.silence.canary.errors === 1 ? e : null;
  }, "the pending clients resolved after the restart", 30_000);
  assert.deepEqual(e.canary, { clients: 1, errors: 0 }, `the late booter is a client: ${JSON.stringify(e)}`);
  assert.deepEqual(e.silence.canary, { clients: 2, errors: 1 }, "the quiet one is silent");
});
