// The operator's path: scripts/canary and plain `wrangler kv key put` write the local state
// that a running worker reads; a new weight takes effect within the config TTL (wrangler.toml's
// CONFIG_TTL_MS, 5 s, as deployed), without a redeploy. Also: the CLI's input checks and its
// "nothing half-written" rule.
//
// Every `scripts/canary` call here without the admin API runs wrangler against the local
// state (a workerd of its own each time: seconds apiece), so a fact is checked through the CLI
// once and otherwise read from KV and R2 directly. The canary 1.1.0 is the fixture with a file
// in a subdirectory added (lib/extra.js), so that its publish also shows nested paths; the
// stable 1.0.0 is written directly, as a publish writes it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT, bodyVersion, cookiesForEveryCohort, failureOutput, putManifests, startWorker, sleep, until } from "./support/harness.mjs";

const run = promisify(execFile);

let state;
let w;
/** What `publish demo 1.1.0` printed (the canary, published in `before`). */
let published;
let canaryDir;
before(async () => {
  state = mkdtempSync(join(tmpdir(), "canary-edge-cli-"));
  // wrangler.toml's CONFIG_TTL_MS (5 s): what an operator waits for after a KV write.
  w = await startWorker({ persist: state, seed: false });
  // The stable 1.0.0 as a publish of a new bundle leaves it (files, manifest, config; that
  // publish through the CLI is tests/immutable.test.mjs's first test: its 8 wrangler runs
  // are not repeated here).
  const stable = ["chunk.js", "sdk.js"];
  for (const f of stable) {
    await w.r2.put(`demo/1.0.0/${f}`, readFileSync(join(ROOT, "fixtures/demo/1.0.0", f)), {
      httpMetadata: { contentType: "text/javascript; charset=utf-8" },
    });
  }
  await putManifests(w.r2, stable.map((f) => `demo/1.0.0/${f}`));
  await w.kv.put("rollout/demo", JSON.stringify({ stable: "1.0.0", canary: null, weight: 0 }));
  // The canary through the CLI: the fixture 1.1.0 with a file in a subdirectory.
  canaryDir = mkdtempSync(join(tmpdir(), "canary-edge-cli-1.1.0-"));
  cpSync(join(ROOT, "fixtures/demo/1.1.0"), canaryDir, { recursive: true });
  mkdirSync(join(canaryDir, "lib"));
  writeFileSync(join(canaryDir, "lib", "extra.js"), "/* DemoPay SDK 1.1.0 extra */");
  published = await canary("publish", "demo", "1.1.0", canaryDir);
});
after(async () => {
  await w?.dispose();
  rmSync(state, { recursive: true, force: true });
  if (canaryDir) rmSync(canaryDir, { recursive: true, force: true });
});

async function canary(...args) {
  const { stdout } = await run(join(ROOT, "scripts/canary"), [...args, "--persist-to", state], { cwd: ROOT });
  return stdout;
}

const canaryFails = (...args) => failureOutput(canary(...args), `canary ${args.join(" ")}`);


async function versions(cookies) {
  const out = [];
  for (const cookie of cookies.values()) {
    const r = await w.get("/demo/sdk.js", { cookie });
    assert.equal(bodyVersion(r.text), r.headers.get("x-canary-version"));
    out.push(r.headers.get("x-canary-version"));
  }
  return out;
}

describe("scripts/canary against a running worker", () => {
  test("publish made 1.1.0 a dark canary beside the stable 1.0.0", async () => {
    const status = JSON.parse(await canary("status", "demo", "--json"));
    assert.deepEqual(status.config, { stable: "1.0.0", canary: "1.1.0", weight: 0 });
    const r = await w.get("/demo/sdk.js", { userKey: "first" });
    assert.equal(r.headers.get("x-canary-version"), "1.0.0");
    assert.equal((await w.get("/demo@1.1.0/chunk.js")).status, 200, "canary files are uploaded");
    // Each version's manifest, for the edge to tell a published file that is gone from one
    // the canary never had; no route serves it.
    for (const [version, files] of [["1.0.0", ["chunk.js", "sdk.js"]], ["1.1.0", ["chunk.js", "lib/extra.js", "sdk.js"]]]) {
      const manifest = await w.r2.get(`demo/.manifests/${version}.json`);
      assert.ok(manifest, `the manifest of ${version} is uploaded`);
      assert.equal(await manifest.text(), JSON.stringify({ bundle: "demo", version, files }));
    }
    assert.equal((await w.get("/demo/.manifests/1.1.0.json")).status, 404);
  });

  test("publish uploads the files (subdirectories too), then the manifest, then writes the config", async () => {
    // The publish of 1.1.0 in `before`, from a directory with lib/extra.js.
    const lines = published.split("\n");
    const at = (re) => lines.findIndex((l) => re.test(l));
    const files = ["chunk\\.js", "sdk\\.js", "lib\\/extra\\.js"].map((f) => at(new RegExp(`uploaded demo\\/1\\.1\\.0\\/${f}`)));
    assert.ok(files.every((i) => i >= 0), published);
    assert.ok(at(/uploaded demo\/\.manifests\/1\.1\.0\.json \(3 files\)/) > Math.max(...files), published);
    assert.ok(at(/published as canary/) > at(/\.manifests/), published);
    const nested = await w.get("/demo@1.1.0/lib/extra.js");
    assert.equal(nested.status, 200);
    assert.equal(nested.text, "/* DemoPay SDK 1.1.0 extra */");
  });

  test("set-weight 100 takes effect after the config TTL, with no redeploy", async () => {
    const cookies = await cookiesForEveryCohort(w);
    assert.deepEqual(new Set(await versions(cookies)), new Set(["1.0.0"]));
    const out = await canary("set-weight", "demo", "100");
    assert.match(out, /weight 100%/);
    // Within the TTL the isolate may still serve its copy; after it, everyone is on canary.
    await until(async () => (await versions(cookies)).every((v) => v === "1.1.0"), "everyone on 1.1.0 after the TTL", w.configTtlMs + 2000);
    const fresh = await w.get("/demo/sdk.js", { userKey: "brand-new" });
    assert.equal(fresh.headers.get("x-canary-version"), "1.1.0");
  });

  test("a plain `wrangler kv key put` rolls back, too", async () => {
    const cookies = await cookiesForEveryCohort(w);
    await run(join(ROOT, "node_modules/.bin/wrangler"), [
      "kv", "key", "put", "--binding", "ROLLOUTS", "rollout/demo",
      JSON.stringify({ stable: "1.0.0", canary: "1.1.0", weight: 0 }),
      "--local", "--persist-to", state, "--config", join(ROOT, "wrangler.toml"),
    ], { cwd: ROOT });
    await until(async () => (await versions(cookies)).every((v) => v === "1.0.0"), "everyone on 1.0.0 after the TTL", w.configTtlMs + 2000);
  });

  test("set-weight 30 reports the effective weight; 35 says it is rounded", async () => {
    assert.match(await canary("set-weight", "demo", "30"), /3 of 10 cohorts/);
    const out = await canary("set-weight", "demo", "35");
    assert.match(out, /30% is served/);
  });

  test("rollback and promote", async () => {
    // What each wrote, read from KV (status reads the same key: the first test).
    const config = async () => JSON.parse(await w.kv.get("rollout/demo"));
    assert.match(await canary("rollback", "demo"), /rolled back/);
    assert.equal((await config()).weight, 0);
    await canary("promote", "demo");
    assert.deepEqual(await config(), { stable: "1.1.0", canary: null, weight: 0 });
    const r = await until(async () => {
      const res = await w.get("/demo/sdk.js", { userKey: "after-promote" });
      return res.headers.get("x-canary-version") === "1.1.0" ? res : null;
    }, "the promote served after the TTL", w.configTtlMs + 2000);
    assert.equal(r.headers.get("x-canary-version"), "1.1.0");
    assert.equal(r.headers.get("x-canary-channel"), "stable");
  });
});

describe("scripts/canary input checks", () => {
  test("wrangler's transient failures are tried again, its refusals are not", async () => {
    const { isTransient } = await import("../scripts/canary.mjs");
    // As wrangler printed them (the first seen in CI: a local R2 put beside a running worker).
    for (const stderr of [
      "✘ [ERROR] Network connection lost.",
      "✘ [ERROR] internal error; reference = x: SQLITE_BUSY: database is locked",
      "✘ [ERROR] A request to the Cloudflare API (/accounts/x/r2/buckets/b/objects/k) failed. 503 Service Unavailable",
      "✘ [ERROR] fetch failed",
    ]) assert.ok(isTransient(stderr), stderr);
    for (const stderr of [
      "✘ [ERROR] The specified key does not exist.",
      "✘ [ERROR] Authentication error [code: 10000]",
      "✘ [ERROR] Could not find a KV namespace with binding \"CONFIG\"",
      "",
    ]) assert.ok(!isTransient(stderr), stderr);
  });

  test("bad bundle names, versions and weights get clear errors", async () => {
    assert.match(await canaryFails("set-weight", "Demo!", "10"), /bad bundle name/);
    assert.match(await canaryFails("set-weight", "demo", "101"), /bad weight/);
    assert.match(await canaryFails("set-weight", "demo", "ten"), /bad weight/);
    assert.match(await canaryFails("set-weight", "demo", "-5"), /bad weight|unknown flag/);
    assert.match(await canaryFails("publish", "demo", "../1", join(ROOT, "fixtures/demo/1.0.0")), /bad version/);
    assert.match(await canaryFails("publish", "demo", "2.0.0", join(ROOT, "no-such-dir")), /cannot read/);
    assert.match(await canaryFails("set-weight", "unknown", "10"), /no rollout config/);
    assert.match(await canaryFails("promote", "demo"), /no canary/);
    assert.match(await canaryFails("frobnicate", "demo"), /unknown command/);
  });

  test("names, versions, weights, paths and configs are refused in canary-core's words, exit code 2", async () => {
    // What the CLI says is the core's own message (cli-core, target/canary-cli), after what it refused.
    const refused = async (...args) => {
      const e = await canary(...args).then(() => assert.fail(`canary ${args.join(" ")} should have failed`), (e) => e);
      assert.equal(e.code, 2, `canary ${args.join(" ")}: ${e.stderr}`);
      return e.stderr;
    };
    assert.match(await refused("status", "Demo!"),
      /^canary: bad bundle name "Demo!": bundle name must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit, got "Demo!"$/m);
    assert.match(await refused("publish", "demo", "1..2", join(ROOT, "fixtures/demo/1.0.0")),
      /bad version "1\.\.2": version must be 1-64 characters of A-Z, a-z, 0-9, '\.', '-', '\+' or '_', starting with a letter or digit, without '\.\.', got "1\.\.2"/);
    assert.match(await refused("set-weight", "demo", "250"), /bad weight "250": weight must be an integer from 0 to 100, got 250/);
    assert.match(await refused("set-weight", "demo", "5"), /5% puts no cohort on the canary with COHORTS=10 \(one cohort is 10%\)/);
    assert.match(await refused("token", "read-only"), /operator name "read-only": 1-128 of A-Z a-z 0-9 \. _ @ \+ -, not "operator" or "read-only"/);
    // As the admin API does (409): no canary to roll back.
    const before = await w.kv.get("rollout/demo");
    assert.equal(JSON.parse(before).canary, null);
    assert.match(await refused("rollback", "demo"), /^canary: demo: no canary to roll back$/m);
    assert.equal(await w.kv.get("rollout/demo"), before, "the config is left as it was");

    // A file the worker would not serve at its pinned URL: refused before any upload.
    const dir = mkdtempSync(join(tmpdir(), "canary-edge-path-"));
    writeFileSync(join(dir, "ok.js"), "//");
    writeFileSync(join(dir, "a\\b.js"), "//");
    try {
      assert.match(await refused("publish", "pathy", "1.0.0", dir),
        /its path is not servable: bad file path: slash, backslash or control character in a segment/);
      assert.equal(await w.r2.get("pathy/1.0.0/ok.js"), null, "nothing uploaded");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    // A config the worker rejects (written by hand): read, never written back, in Rollout::parse's words.
    const broken = JSON.stringify({ stable: "1.0.0", canary: "1.1.0", weight: 250 });
    await w.kv.put("rollout/broken", broken);
    const message = /rollout\/broken in KV: invalid rollout config: field `weight`: weight must be an integer from 0 to 100, got 250/;
    assert.match(await refused("status", "broken"), message);
    assert.match(await refused("set-weight", "broken", "10"), message);
    assert.match(await refused("publish", "broken", "1.2.0", join(ROOT, "fixtures/demo/1.1.0")), message);
    assert.equal(await w.r2.get("broken/1.2.0/sdk.js"), null, "nothing uploaded");
    assert.equal(await w.kv.get("rollout/broken"), broken, "the config is left as it was");
  });

  test("publishing a live version again is refused: versions are immutable", async () => {
    assert.match(await canaryFails("publish", "demo", "1.1.0", join(ROOT, "fixtures/demo/1.1.0")), /already live/);
  });

  test("a failed publish leaves the live config untouched", async () => {
    const before = await w.kv.get("rollout/demo");
    const dir = mkdtempSync(join(tmpdir(), "canary-edge-empty-"));
    mkdirSync(join(dir, "sub"));
    assert.match(await canaryFails("publish", "demo", "3.0.0", dir), /no files/);
    writeFileSync(join(dir, "sub", "x.js"), "x");
    // A broken wrangler config makes the upload fail after validation.
    const badConfig = join(dir, "wrangler.toml");
    writeFileSync(badConfig, 'name = "x"\n[[r2_buckets]]\nbinding = "BUNDLES"\nbucket_name = "Invalid_Bucket!"\n[[kv_namespaces]]\nbinding = "ROLLOUTS"\nid = "00000000000000000000000000000000"\n');
    await canaryFails("publish", "demo", "3.0.0", join(dir, "sub"), "--config", badConfig);
    assert.equal(await w.kv.get("rollout/demo"), before);
    rmSync(dir, { recursive: true, force: true });
  });
});
