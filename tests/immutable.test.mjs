// Versions are immutable: a pinned URL (/<bundle>@<version>/...) is cached for a year, so a
// re-upload would never be seen. `scripts/canary publish` refuses, before writing anything,
// any version R2 already has a file or a manifest of: without the admin API by a wrangler
// get of every key the publish would write (best effort), with it by the worker's claim
// (`POST .../claim`: the prefix listed, then a claim object put only if absent), so that of
// two publishes of one version exactly one uploads.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT, putManifests, startWorker } from "./support/harness.mjs";

const run = promisify(execFile);
const WRANGLER_TOML = join(ROOT, "wrangler.toml");
const BUCKET = "canary-edge-bundles";
// At least 32 characters: the admin API refuses shorter tokens.
const TOKEN = "immutable-admin-token-0123456789abcdef";

const dirs = [];
/** A bundle directory with `files` ({ path: contents }). */
function bundleDir(files) {
  const dir = mkdtempSync(join(tmpdir(), "canary-edge-immutable-"));
  dirs.push(dir);
  for (const [path, text] of Object.entries(files)) writeFileSync(join(dir, path), text);
  return dir;
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Runs scripts/canary: { code, out } (stdout and stderr), whether it succeeds or not. */
async function cli(args, env = process.env) {
  try {
    const { stdout, stderr } = await run(join(ROOT, "scripts/canary"), args, { cwd: ROOT, env });
    return { code: 0, out: `${stderr}${stdout}` };
  } catch (e) {
    if (typeof e.code !== "number") throw e;
    return { code: e.code, out: `${e.stderr}${e.stdout}` };
  }
}

async function r2Text(worker, key) {
  const object = await worker.r2.get(key);
  return object ? object.text() : null;
}

async function r2Keys(worker, prefix) {
  return (await worker.r2.list({ prefix })).objects.map((o) => o.key);
}

/** The refusal, naming the version's prefix and what R2 already has under it. */
function assertRefused({ code, out }, bundle, version, has) {
  assert.equal(code, 2, out);
  const esc = (s) => s.replace(/[.+]/g, "\\$&");
  assert.match(out, new RegExp(`canary: ${esc(bundle)} ${esc(version)} was already uploaded: R2 has ${has.map(esc).join(", ")}; ` +
    `versions are immutable \\(pinned URLs under ${esc(`${bundle}/${version}/`)} are cached for a year\\): publish a new version`));
  assert.doesNotMatch(out, /uploaded [a-z]/, "nothing uploaded");
}

describe("publish without the admin API (wrangler gets)", () => {
  let state;
  let w;
  const local = (...args) => cli([...args, "--persist-to", state]);
  const config = async () => JSON.parse(await w.kv.get("rollout/imm"));

  before(async () => {
    state = mkdtempSync(join(tmpdir(), "canary-edge-immutable-state-"));
    w = await startWorker({ persist: state, seed: false, rollout: null });
  });
  after(async () => {
    await w?.dispose();
    rmSync(state, { recursive: true, force: true });
  });

  test("a fresh version publishes; publishing it again with other contents is refused and the pinned file keeps its first contents", async () => {
    const first = { "sdk.js": "/* DemoPay SDK 1.0.0 */ first();", "chunk.js": "/* chunk 1.0.0 */ first();" };
    let r = await local("publish", "imm", "1.0.0", bundleDir(first));
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /imm 1\.0\.0 published as stable \(new bundle\)/);
    // 1.1.0, the canary, as a publish writes it (files, manifest, config; the CLI's publish
    // of a canary and its promote are tests/cli.test.mjs's: each wrangler run here costs
    // seconds).
    await w.r2.put("imm/1.1.0/sdk.js", "/* DemoPay SDK 1.1.0 */");
    await putManifests(w.r2, ["imm/1.1.0/sdk.js"]);
    await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 0 }, "imm");
    // A live version keeps its own message.
    r = await local("publish", "imm", "1.1.0", bundleDir({ "sdk.js": "/* DemoPay SDK 1.1.0 again */" }));
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /imm: 1\.1\.0 is already live; versions are immutable: publish a new version/);
    // 1.1.0 becomes stable (the config a promote writes): 1.0.0 is no longer live, but still
    // uploaded (and cached by clients).
    await w.setRollout({ stable: "1.1.0", canary: null, weight: 0 }, "imm");
    const pinned = await w.get("/imm@1.0.0/sdk.js");
    assert.equal(pinned.status, 200);
    assert.equal(pinned.text, first["sdk.js"]);
    const manifest = await r2Text(w, "imm/.manifests/1.0.0.json");
    const before = await config();
    assert.deepEqual(before, { stable: "1.1.0", canary: null, weight: 0 });

    r = await local("publish", "imm", "1.0.0", bundleDir({ "sdk.js": "/* DemoPay SDK 1.0.0 */ second();", "chunk.js": "second();" }));
    assertRefused(r, "imm", "1.0.0", ["imm/1.0.0/chunk.js", "imm/1.0.0/sdk.js", "imm/.manifests/1.0.0.json"]);
    assert.equal(await r2Text(w, "imm/1.0.0/sdk.js"), first["sdk.js"]);
    assert.equal(await r2Text(w, "imm/1.0.0/chunk.js"), first["chunk.js"]);
    assert.equal((await w.get("/imm@1.0.0/sdk.js")).text, first["sdk.js"], "the pinned URL serves the first contents");
    assert.equal(await r2Text(w, "imm/.manifests/1.0.0.json"), manifest);
    assert.deepEqual(await config(), before, "config unchanged");
  });

  test("a version with a file put by hand (wrangler r2 object put) is refused; nothing is written", async () => {
    const before = await config();
    const stray = bundleDir({ "sdk.js": "/* by hand */" });
    await run(join(ROOT, "node_modules/.bin/wrangler"), [
      "r2", "object", "put", `${BUCKET}/imm/2.0.0/sdk.js`, "--file", join(stray, "sdk.js"),
      "--local", "--persist-to", state, "--config", WRANGLER_TOML,
    ], { cwd: ROOT });
    const r = await local("publish", "imm", "2.0.0", bundleDir({ "sdk.js": "/* DemoPay SDK 2.0.0 */", "chunk.js": "//" }));
    assertRefused(r, "imm", "2.0.0", ["imm/2.0.0/sdk.js"]);
    assert.deepEqual(await r2Keys(w, "imm/2.0.0/"), ["imm/2.0.0/sdk.js"], "chunk.js not uploaded");
    assert.equal(await r2Text(w, "imm/2.0.0/sdk.js"), "/* by hand */");
    assert.equal(await w.r2.head("imm/.manifests/2.0.0.json"), null, "no manifest");
    assert.deepEqual(await config(), before, "config unchanged");
  });

  test("a version with only a manifest in R2 is refused", async () => {
    const before = await config();
    await w.r2.put("imm/.manifests/3.0.0.json", JSON.stringify({ bundle: "imm", version: "3.0.0", files: ["sdk.js"] }));
    const r = await local("publish", "imm", "3.0.0", bundleDir({ "sdk.js": "/* DemoPay SDK 3.0.0 */" }));
    assertRefused(r, "imm", "3.0.0", ["imm/.manifests/3.0.0.json"]);
    assert.deepEqual(await r2Keys(w, "imm/3.0.0/"), []);
    assert.deepEqual(await config(), before, "config unchanged");
  });

  test("an R2 read that fails for another reason than a missing key fails the publish: it is never taken for absence", async () => {
    // A local state whose R2 directory is a file: KV works, every R2 get fails.
    const broken = bundleDir({});
    mkdirSync(join(broken, "v3"));
    writeFileSync(join(broken, "v3", "r2"), "");
    const r = await cli(["publish", "imm", "4.0.0", bundleDir({ "sdk.js": "/* DemoPay SDK 4.0.0 */" }), "--persist-to", broken]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /canary: wrangler r2 object get failed:[^]*EEXIST/);
    assert.doesNotMatch(r.out, /already uploaded|uploaded [a-z]/);
    const status = await cli(["status", "imm", "--json", "--persist-to", broken]);
    assert.equal(status.code, 2, status.out);
    assert.match(status.out, /no rollout config for bundle imm/, "no config written");
  });
});

describe("publish with the admin API (the worker lists the prefix)", () => {
  let state;
  let w;
  let api;
  const demo = async () => JSON.parse(await w.kv.get("rollout/demo"));

  before(async () => {
    state = mkdtempSync(join(tmpdir(), "canary-edge-immutable-api-"));
    w = await startWorker({ persist: state, listen: true, vars: { ADMIN_TOKEN: TOKEN } });
    const env = { ...process.env, CANARY_URL: w.url.href, CANARY_ADMIN_TOKEN: TOKEN };
    api = (...args) => cli([...args, "--persist-to", state], env);
  });
  after(async () => {
    await w?.dispose();
    rmSync(state, { recursive: true, force: true });
  });

  test("files already under the version's prefix are refused, even ones this publish would not upload", async () => {
    const before = await demo();
    await w.r2.put("demo/1.2.0/legacy.js", "/* an earlier upload */");
    const r = await api("publish", "demo", "1.2.0", join(ROOT, "fixtures/demo/1.1.0"));
    assertRefused(r, "demo", "1.2.0", ["demo/1.2.0/legacy.js"]);
    assert.deepEqual(await r2Keys(w, "demo/1.2.0/"), ["demo/1.2.0/legacy.js"], "no file uploaded");
    assert.equal(await w.r2.head("demo/.manifests/1.2.0.json"), null, "no manifest");
    assert.deepEqual(await demo(), before, "config unchanged");
  });

  test("a manifest without files is refused too (read through wrangler)", async () => {
    const before = await demo();
    await w.r2.put("demo/.manifests/1.3.0.json", JSON.stringify({ bundle: "demo", version: "1.3.0", files: ["sdk.js"] }));
    const r = await api("publish", "demo", "1.3.0", join(ROOT, "fixtures/demo/1.1.0"));
    assertRefused(r, "demo", "1.3.0", ["demo/.manifests/1.3.0.json"]);
    assert.deepEqual(await r2Keys(w, "demo/1.3.0/"), []);
    assert.deepEqual(await demo(), before, "config unchanged");
  });

  test("a fresh version publishes as the canary, its claim written first", async () => {
    const r = await api("publish", "demo", "1.4.0", join(ROOT, "fixtures/demo/1.1.0"));
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /claimed demo 1\.4\.0 \(as operator\)[^]*uploaded demo\/1\.4\.0\/sdk\.js[^]*demo 1\.4\.0 published as canary at weight 0/);
    assert.deepEqual(await r2Keys(w, "demo/1.4.0/"), ["demo/1.4.0/chunk.js", "demo/1.4.0/sdk.js"]);
    const claim = JSON.parse(await r2Text(w, "demo/.claims/1.4.0.json"));
    assert.deepEqual([claim.bundle, claim.version, claim.by], ["demo", "1.4.0", "operator"]);
    assert.match(claim.at, /^\d{4}-\d\d-\d\dT/);
    const config = await demo();
    assert.deepEqual([config.stable, config.canary, config.weight], ["1.0.0", "1.4.0", 0]);
  });

  test("a version another publish claimed is refused before a byte is uploaded", async () => {
    const before = await demo();
    // Another job's publish, between its claim and its first upload.
    const res = await claimApi("1.5.0");
    assert.equal(res.status, 200, await res.clone().text());
    const r = await api("publish", "demo", "1.5.0", join(ROOT, "fixtures/demo/1.1.0"));
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /canary: demo 1\.5\.0 was already claimed by a publish of operator at \d{4}-[^;]+; versions are immutable \(pinned URLs under demo\/1\.5\.0\/ are cached for a year\): publish a new version/);
    assert.doesNotMatch(r.out, /uploaded [a-z]/, "nothing uploaded");
    assert.deepEqual(await r2Keys(w, "demo/1.5.0/"), []);
    assert.deepEqual(await demo(), before, "config unchanged");
  });

  test("two publishes of one version at once: exactly one uploads, the other is refused untouched", async () => {
    const a = bundleDir({ "sdk.js": "/* build A */", "chunk.js": "/* chunk A */" });
    const b = bundleDir({ "sdk.js": "/* build B */", "chunk.js": "/* chunk B */" });
    const [ra, rb] = await Promise.all([
      api("publish", "demo", "1.6.0", a),
      api("publish", "demo", "1.6.0", b),
    ]);
    const results = [["A", ra], ["B", rb]];
    const won = results.filter(([, r]) => r.code === 0);
    assert.equal(won.length, 1, results.map(([n, r]) => `${n}: exit ${r.code}\n${r.out}`).join("\n"));
    const [[winner], [, lost]] = [won[0], results.find(([, r]) => r.code !== 0)];
    assert.equal(lost.code, 2, lost.out);
    assert.match(lost.out, /demo 1\.6\.0 was already (claimed by a publish of operator|uploaded: R2 has)/);
    assert.doesNotMatch(lost.out, /uploaded [a-z]/, "the loser uploaded nothing");
    assert.equal(await r2Text(w, "demo/1.6.0/sdk.js"), `/* build ${winner} */`);
    assert.equal(await r2Text(w, "demo/1.6.0/chunk.js"), `/* chunk ${winner} */`);
    assert.equal((await demo()).canary, "1.6.0");
  });

  test("claims made together: R2's conditional put gives the version to exactly one", async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, () => claimApi("1.7.0")));
    const statuses = answers.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
    const refused = await answers.find((r) => r.status === 409).text();
    assert.match(refused, /^409 conflict: demo 1\.7\.0 was already claimed by a publish of operator at /);
  });

  test("a claim needs the write scope and a valid version; a new bundle's first claim works", async () => {
    const res = (body, token = TOKEN, bundle = "demo") => fetch(new URL(`/__canary/api/${bundle}/claim`, w.url), {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    assert.equal((await res({ version: "1.8.0" }, "not-the-token-0123456789abcdef0123")).status, 401);
    const bad = await res({ version: "../x" });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /bad claim/);
    assert.equal((await res({ version: "1.8.0", extra: 1 })).status, 400);
    assert.equal(await w.r2.head("demo/.claims/1.8.0.json"), null, "nothing claimed by a refused request");
    const fresh = await res({ version: "0.1.0" }, TOKEN, "brand-new");
    assert.equal(fresh.status, 200, await fresh.clone().text());
    assert.equal(JSON.parse(await r2Text(w, "brand-new/.claims/0.1.0.json")).by, "operator");
  });

  /** `POST /__canary/api/demo/claim` with the admin token. */
  function claimApi(version) {
    return fetch(new URL("/__canary/api/demo/claim", w.url), {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ version }),
    });
  }
});
