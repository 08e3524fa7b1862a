// The policy as a command: `scripts/canary policy` through the admin API (and without it,
// through KV), `POST …/policy`, and what each change leaves behind: the config written, a
// history entry naming who changed what from what to what, a signed `policy_changed`
// webhook, and the running step kept on the policy it started with.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { execFile } from "node:child_process";
import { createServer } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT, failureOutput, startWorker, until } from "./support/harness.mjs";

const run = promisify(execFile);
const TOKEN = "policy-admin-token-0123456789abcdef";
const SECRET = "policy-webhook-secret";
const BASE = { stable: "1.0.0", canary: "1.1.0", weight: 0 };

const received = [];
let server;
let w;

before(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      received.push({ body, json: JSON.parse(body), signature: req.headers["x-canary-signature"] });
      res.end("ok");
    });
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  w = await startWorker({
    rollout: BASE,
    listen: true,
    vars: {
      ADMIN_TOKEN: TOKEN,
      NOTIFY_URLS: `json:http://127.0.0.1:${server.address().port}/hook`,
      NOTIFY_SECRET: SECRET,
    },
  });
});
after(async () => {
  await w?.dispose();
  server?.close();
});

async function canary(...args) {
  const { stdout } = await run(join(ROOT, "scripts/canary"), args, {
    cwd: ROOT,
    env: { ...process.env, CANARY_URL: w.url.href, CANARY_ADMIN_TOKEN: TOKEN },
  });
  return stdout;
}

async function api(path, { method = "GET", body } = {}) {
  const r = await w.get(`/__canary/api/demo${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}` }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { ...r, json: JSON.parse(r.text) };
}

const kvConfig = async () => JSON.parse(await w.kv.get("rollout/demo"));

test("scripts/canary policy changes the policy through the API: written, recorded, notified, from the next step", async () => {
  assert.equal((await api("/weight", { method: "POST", body: { weight: 30 } })).status, 200);
  const out = await canary("policy", "demo", "--set", "health.min_clients=300", "--set", "health.confidence=0.995",
    "--set", "progression.steps=10,50,100", "--set", "progression.bake_secs=600");
  assert.match(out, /policy changed, from the next step: .*health\.min_clients: 200 -> 300/);
  const written = await kvConfig();
  assert.equal(written.health.min_clients, 300);
  assert.equal(written.health.confidence, 0.995);
  assert.deepEqual(written.progression.steps, [10, 50, 100]);

  const m = (await api("")).json.monitor;
  const entry = m.events.find((e) => e.kind === "policy_changed");
  assert.ok(entry, JSON.stringify(m.events));
  assert.equal(entry.by, "operator");
  assert.match(entry.reason, /health\.confidence: 0\.99 -> 0\.995/);
  assert.match(entry.reason, /progression\.bake_secs: null -> 600/);
  // The running step (weight 30) keeps the policy it started with.
  assert.equal(m.policy.min_clients, 200);
  assert.equal(m.next_policy.min_clients, 300);

  // The webhook, signed, names the change and who made it.
  await until(() => received.some((r) => r.json.event === "policy_changed"), "a policy_changed webhook", 15_000);
  const hook = received.find((r) => r.json.event === "policy_changed");
  assert.equal(hook.signature, `sha256=${createHmac("sha256", SECRET).update(hook.body).digest("hex")}`);
  assert.equal(hook.json.by, "operator");
  assert.match(hook.json.reason, /health\.min_clients: 200 -> 300/);

  // The next step takes the new policy.
  assert.equal((await api("/weight", { method: "POST", body: { weight: 50 } })).status, 200);
  const next = (await api("")).json.monitor;
  assert.equal(next.policy.min_clients, 300);
  assert.equal(next.next_policy, null);
});

test("a bad policy is refused with the field named, and nothing is written", async () => {
  const before = await w.kv.get("rollout/demo");
  const r = await api("/policy", { method: "POST", body: { health: { confidence: 2 } } });
  assert.equal(r.status, 400, r.text);
  assert.match(r.text, /health\.confidence/);
  const typo = await api("/policy", { method: "POST", body: { health: { min_client: 3 } } });
  assert.equal(typo.status, 400);
  assert.match(typo.text, /unknown field `min_client`/);
  const cli = await failureOutput(canary("policy", "demo", "--set", "health.min_clients=0"), "canary policy");
  assert.match(cli, /health\.min_clients/);
  assert.equal(await w.kv.get("rollout/demo"), before, "nothing written");
});

test("a read-only token may not change the policy", async () => {
  const r = await w.get("/__canary/api/demo/policy", {
    method: "POST", headers: { authorization: "Bearer nope-not-a-token" }, body: JSON.stringify({ health: { min_clients: 5 } }),
  });
  assert.equal(r.status, 401);
});

test("null sets a field back to its default", async () => {
  const out = await canary("policy", "demo", "--set", "health.min_clients=null");
  assert.match(out, /health\.min_clients: 300 -> 200/);
  assert.equal((await kvConfig()).health.min_clients, 200);
});
