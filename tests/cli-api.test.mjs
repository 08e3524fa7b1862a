// scripts/canary through the admin API of a running worker: status, set-weight, rollback,
// rollout, watch, and the preflight probe through a signed override.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT, failureOutput, startShoppers, startWorker } from "./support/harness.mjs";

const run = promisify(execFile);
const TOKEN = "cli-admin-token-0123456789abcdef";
let w;
before(async () => {
  w = await startWorker({
    listen: true,
    rollout: { stable: "1.0.0", canary: "1.1.0", weight: 0 },
    // HEALTH_FLUSH_MS 0: shoppers' loads reach the monitor as served, not 10 s later, so a
    // rollout's step passes in seconds (the flush timer: browser-canary.test.mjs).
    vars: { ADMIN_TOKEN: TOKEN, OVERRIDE_SECRET: "cli-override", HEALTH_FLUSH_MS: "0" },
  });
});
after(() => w.dispose());

async function canary(...args) {
  const { stdout } = await run(join(ROOT, "scripts/canary"), args, {
    cwd: ROOT,
    env: { ...process.env, CANARY_URL: w.url.href, CANARY_ADMIN_TOKEN: TOKEN },
  });
  return stdout;
}

const canaryFails = (...args) => failureOutput(canary(...args), `canary ${args.join(" ")}`);

test("probe checks every canary file through the override before any user gets it", async () => {
  const out = await canary("probe", "demo");
  assert.match(out, /ok {3}chunk\.js/);
  assert.match(out, /ok {3}sdk\.js/);
  assert.match(out, /all 2 files served correctly/);
  assert.equal(JSON.parse(await w.kv.get("rollout/demo")).weight, 0, "the probe changes nothing");
});

test("probe fails loudly when a canary file is not served", async () => {
  // A file not yet in the edge cache, which R2 then fails to return.
  await w.r2.put("demo/1.1.0/extra.js", "/* extra */");
  await w.setFaults({ r2: "missing", match: "demo/1.1.0/extra.js" });
  const out = await canaryFails("probe", "demo");
  assert.match(out, /FAIL extra\.js/);
  assert.match(out, /ok {3}sdk\.js/);
  assert.match(out, /do not raise the weight/);
  await w.setFaults({});
  await w.r2.delete("demo/1.1.0/extra.js");
});

test("set-weight, status, rollback and watch go through the API", async () => {
  assert.match(await canary("set-weight", "demo", "30"), /weight 30% \(3 of 10 cohorts\)/);
  assert.equal(JSON.parse(await w.kv.get("rollout/demo")).weight, 30);
  const status = await canary("status", "demo");
  assert.match(status, /stable 1\.0\.0 {3}canary 1\.1\.0 {3}weight 30%/);
  assert.match(status, /verdict: /);
  assert.match(await canary("rollback", "demo", "--reason", "cli test"), /weight 0%/);
  const watch = await canary("watch", "demo", "--count", "2", "--interval", "0.2");
  assert.equal(watch.match(/rolled back .* \(operator\): cli test/g)?.length, 2, watch);
});

test("rollout with steps advances on its own, on evidence from shoppers", async () => {
  // A lenient rule so that a step passes in seconds: 3 clean canary clients, 50% floor.
  const config = JSON.parse(await w.kv.get("rollout/demo"));
  await w.setRollout({ ...config, health: { min_clients: 3, min_error_rate: 0.5, hostile_networks: 0 } });
  const shoppers = startShoppers(w, "demo", { perTick: 3, everyMs: 50 });
  try {
    const out = await canary("rollout", "demo", "--steps", "10,100", "--bake", "1");
    assert.match(out, /rollout started at weight 10%/);
    for (let i = 0; i < 300 && JSON.parse(await w.kv.get("rollout/demo")).weight !== 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(JSON.parse(await w.kv.get("rollout/demo")).weight, 100);
  } finally {
    await shoppers.stop();
  }
});

test("a wrong token or an unreachable URL is a clear error", async () => {
  const wrong = await run(join(ROOT, "scripts/canary"), ["status", "demo"], {
    cwd: ROOT, env: { ...process.env, CANARY_URL: w.url.href, CANARY_ADMIN_TOKEN: "nope" },
  }).catch((e) => e);
  assert.match(`${wrong.stderr}`, /401 401 unauthorized/);
  const down = await run(join(ROOT, "scripts/canary"), ["status", "demo", "--url", "http://127.0.0.1:9", "--token", "x"], { cwd: ROOT }).catch((e) => e);
  assert.match(`${down.stderr}`, /cannot reach/);
  assert.match(await canaryFails("rollout", "demo", "--steps", "50,10"), /bad weight|400/);
});

test("publish with the admin API: files through wrangler, the config through the control plane", async () => {
  const state = mkdtempSync(join(tmpdir(), "canary-edge-cli-api-"));
  const local = await startWorker({ persist: state, listen: true, vars: { ADMIN_TOKEN: TOKEN } });
  try {
    const env = { ...process.env, CANARY_URL: local.url.href, CANARY_ADMIN_TOKEN: TOKEN };
    const cli = (...args) => run(join(ROOT, "scripts/canary"), [...args, "--persist-to", state], { cwd: ROOT, env });
    await cli("rollout", "demo", "--steps", "10,50,100", "--bake", "2");
    const { stdout } = await cli("publish", "demo", "1.2.0", join(ROOT, "fixtures/demo/1.1.0"));
    assert.match(stdout, /uploaded demo\/1\.2\.0\/sdk\.js/);
    assert.match(stdout, /uploaded demo\/\.manifests\/1\.2\.0\.json \(2 files\)[^]*1\.2\.0 published as canary at weight 0/, "the manifest before the config");
    const manifest = await local.r2.get("demo/.manifests/1.2.0.json");
    assert.deepEqual(JSON.parse(await manifest.text()), { bundle: "demo", version: "1.2.0", files: ["chunk.js", "sdk.js"] });
    const config = JSON.parse(await local.kv.get("rollout/demo"));
    assert.deepEqual([config.canary, config.weight], ["1.2.0", 0]);
    assert.ok(config.revision > 0, "written by the control plane");
    const status = JSON.parse((await cli("status", "demo", "--json")).stdout);
    assert.equal(status.monitor.progress.state, "superseded", "the 1.1.0 rollout ended");
    assert.equal(status.monitor.events[0].kind, "publish");
    // A set-weight names the canary it read; the control plane checks it.
    assert.match((await cli("set-weight", "demo", "10")).stdout, /canary 1\.2\.0 at weight 10%/);
  } finally {
    await local.dispose();
    rmSync(state, { recursive: true, force: true });
  }
});

test("one command, one config: publish, set-weight, rollback and promote give the same config with and without --url", async () => {
  // A canary with a pinned rotation and an earlier rollback record: both belong to it, and
  // the next canary must get neither (a kept offset gives it the previous canary's first
  // cohorts).
  const rollout = { stable: "1.0.0", canary: "1.1.0", weight: 0, cohort_offset: 3, rollback: { at: "2026-11-30T00:00:00.000Z", reason: "old", by: "operator" } };
  const viaApi = mkdtempSync(join(tmpdir(), "canary-edge-same-api-"));
  const viaKv = mkdtempSync(join(tmpdir(), "canary-edge-same-kv-"));
  // The published version's files: one is enough to compare configs, and each file costs a
  // wrangler get and put without --url (seconds each).
  const files = mkdtempSync(join(tmpdir(), "canary-edge-same-files-"));
  writeFileSync(join(files, "sdk.js"), "/* DemoPay SDK 1.2.0 */");
  const api = await startWorker({ persist: viaApi, listen: true, rollout, vars: { ADMIN_TOKEN: TOKEN } });
  const kv = await startWorker({ persist: viaKv, listen: true, rollout });
  try {
    const withUrl = (...args) => run(join(ROOT, "scripts/canary"), [...args, "--persist-to", viaApi, "--url", api.url.href, "--token", TOKEN], { cwd: ROOT });
    const withoutUrl = (...args) => run(join(ROOT, "scripts/canary"), [...args, "--persist-to", viaKv], { cwd: ROOT, env: { ...process.env, CANARY_URL: "", CANARY_ADMIN_TOKEN: "" } });
    // What an operator compares: everything but the control plane's revision stamp and the
    // rollback's time.
    const config = async (w) => {
      const { revision, ...c } = JSON.parse(await w.kv.get("rollout/demo"));
      if (c.rollback) delete c.rollback.at;
      return c;
    };
    for (const command of [
      ["publish", "demo", "1.2.0", files],
      ["set-weight", "demo", "30"],
      ["rollback", "demo", "--reason", "same either way"],
      ["promote", "demo"],
    ]) {
      await withUrl(...command);
      await withoutUrl(...command);
      assert.deepEqual(await config(kv), await config(api), command.join(" "));
    }
    assert.deepEqual(await config(api), { stable: "1.2.0", canary: null, weight: 0 });
  } finally {
    await api.dispose();
    await kv.dispose();
    rmSync(viaApi, { recursive: true, force: true });
    rmSync(viaKv, { recursive: true, force: true });
    rmSync(files, { recursive: true, force: true });
  }
});
