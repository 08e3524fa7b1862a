// scripts/canary through the admin API of a running worker: status, set-weight, rollback,
// rollout, watch, and the preflight probe through a signed override.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT, failureOutput, startWorker } from "./support/harness.mjs";

const run = promisify(execFile);
const TOKEN = "cli-admin-token";
let w;
before(async () => {
  w = await startWorker({
    listen: true,
    rollout: { stable: "1.0.0", canary: "1.1.0", weight: 0 },
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

test("rollout with steps advances on its own", async () => {
  const out = await canary("rollout", "demo", "--steps", "10,100", "--bake", "1");
  assert.match(out, /rollout started at weight 10%/);
  for (let i = 0; i < 60 && JSON.parse(await w.kv.get("rollout/demo")).weight !== 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(JSON.parse(await w.kv.get("rollout/demo")).weight, 100);
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
