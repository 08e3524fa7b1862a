// An operator's raw KV rollback whose bytes equal an earlier raw value (issue 25, item 3; the
// case that took "rollback in seconds" back out once). The isolates read the seed's raw text
// (no revision), the control plane then pushed a higher revision (weight 50), and the
// operator writes the seed's exact bytes back with `wrangler kv key put`. An isolate cannot
// tell that read from a lagging read of the seed, so the order (core/src/edge/rollouts.rs) takes
// the lower exposure: a known raw text serving fewer canary cohorts is taken at once. And
// the control plane adopts the write within seconds (an aggregator's /config makes the
// monitor read KV, at most every 3 s), pushing it with a revision above every earlier one.
//
// Real routing isolates (tests/support/edges.mjs: copies of the edge Worker bound to the
// main worker's control plane), with production's timeline (CONFIG_TTL_MS 5 s, flush 10 s).
// KV does not lag here: a raw write reaches the edge only through KV, so with a lag the
// rollback waits for it whatever the order does (tests/propagation.test.mjs has the lag).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, cookiesByChannel, cookiesForEveryCohort, sleep, startWorker, until } from "./support/harness.mjs";
import { edgeCopies, propagation, startTraffic } from "./support/edges.mjs";

const run = promisify(execFile);
const TOKEN = "test-admin-token-0123456789abcdef";
const COPIES = ["edge-1", "edge-2", "edge-3"];
const SEED = { stable: "1.0.0", canary: "1.1.0", weight: 0 };

let state;
let w;
let fetchers;

before(async () => {
  state = mkdtempSync(join(tmpdir(), "canary-edge-raw-"));
  // The seed: JSON.stringify of SEED, the same bytes the wrangler write below puts back.
  w = await startWorker({ persist: state, rollout: SEED, vars: { ADMIN_TOKEN: TOKEN }, extraWorkers: edgeCopies(COPIES) });
  fetchers = {};
  for (const name of COPIES) fetchers[name] = await w.mf.getWorker(name);
});

after(async () => {
  await w?.dispose();
  if (state) rmSync(state, { recursive: true, force: true });
});

async function api(path, body) {
  const r = await w.get(`/__canary/api/demo${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

test("a raw rollback byte-identical to the seed is served within the config TTL, and adopted", async () => {
  const cookies = await cookiesForEveryCohort(w);
  // Every copy reads the seed's raw text first (served: stable only).
  for (const f of Object.values(fetchers)) {
    const r = await f.fetch("http://edge.test/demo/sdk.js");
    await r.arrayBuffer();
    assert.equal(r.status, 200);
  }
  // The control plane raises the weight (a revision above the seed's adoption).
  const set = await api("/weight", { weight: 50 });
  assert.equal(set.config.weight, 50);
  // The canary cohorts' cookies, once the main worker serves the new weight.
  const canary = await until(async () => {
    const c = (await cookiesByChannel(w, "demo", cookies)).canary;
    return c.length ? c : null;
  }, "the main worker serving weight 50", 15_000);
  const traffic = startTraffic(fetchers, { bundle: "demo", cookies: canary, everyMs: 500 });
  try {
    await until(() => traffic.allCanary(COPIES), "every copy serving the canary at weight 50", 20_000);
    // The operator's rollback: the seed's exact bytes, through wrangler's KV write.
    await run(join(ROOT, "node_modules/.bin/wrangler"), [
      "kv", "key", "put", "--binding", "ROLLOUTS", "rollout/demo", JSON.stringify(SEED),
      "--local", "--persist-to", state, "--config", join(ROOT, "wrangler.toml"),
    ], { cwd: ROOT });
    const at = Date.now();
    assert.equal(await w.kv.get("rollout/demo"), JSON.stringify(SEED), "the write reached the running worker's KV");
    // Within the config TTL (5 s) plus a request interval and slack for a busy machine.
    const limit = w.configTtlMs + 3_000;
    await until(() => traffic.allStable(COPIES, at), "every copy serving stable after the raw rollback", limit + 5_000);
    // The control plane adopts it (its revision check reads KV), and nothing goes back.
    await until(async () => (await api("")).config?.weight === 0, "the control plane adopting the raw write", 15_000);
    await sleep(6_000);
    await traffic.stop();
    const figures = propagation(traffic.log, COPIES, at);
    console.log(`# raw rollback to the seed's bytes: ${JSON.stringify(figures.map((c) => [c.name, c.ms]))} ms`);
    for (const c of figures) {
      assert.ok(c.ms !== null && c.ms <= limit, `${c.name} switched after ${c.ms} ms (limit ${limit})`);
      assert.equal(c.wentBack, 0, `${c.name} served the canary again: ${JSON.stringify(c)}`);
    }
  } finally {
    await traffic.stop();
  }
});
