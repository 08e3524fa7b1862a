// The Durable Object classes moved from the edge Worker to the control Worker
// (wrangler.control.toml's `transferred_classes` migration). A store made before the move,
// by the last single-Worker commit, is opened by today's two Workers: the rollout's step
// with its evidence, the history and a webhook delivery still waiting in the outbox all
// survive, and the step goes on counting from where it was.
//
// In production the transfer keeps each object and its storage under the class's namespace,
// now the control Worker's. Locally an object's storage lives under its namespace's unique
// key (`<script>-<class>`, Miniflare): the harness gives the control Worker's classes the
// old script's key (`classesFrom`), as the transfer does. The pre-split harness ran its one
// Worker unnamed, so the old key is `-HealthMonitor`.
//
// The old state is a committed fixture, tests/fixtures/state-presplit/: state/ is the
// persisted directory cut down to what the scenario uses (the bundle's object with its
// alarm, the ROLLOUTS namespace, the BUNDLES bucket), old-build.json what the old build
// answered. To regenerate it from the old commit (built once into target/old-trees/ by
// tests/support/old-build.mjs, a few minutes):
//
//   CANARY_REGENERATE_PRESPLIT_FIXTURE=1 node --test tests/split-migration.test.mjs
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { ROOT, startShoppers, startWorker, until } from "./support/harness.mjs";
import { bundleObjectFiles, cutState, storageFiles } from "./support/state-fixture.mjs";

/** The last commit with one Worker (the classes in canary-edge). */
const PRESPLIT_COMMIT = "5bd7126c27df471b57ac67786443ee32b9e9b3f6";
/** The pre-split harness's one Worker had no name: its classes' namespaces were `-<class>`. */
const CLASSES_FROM = "";
const TOKEN = "split-admin-token-0123456789abcdef01";
const NOTIFY_SECRET = "split-notify-secret";
/**
 * The webhook receiver: nothing listens there while the old build runs (its delivery waits
 * in the outbox); this test listens there. A fixed port: the outbox keeps the URL.
 */
const HOOK_PORT = 19_471;
// HEALTH_FLUSH_MS 0: the old build's loads must be in its object before it stops (batches
// every 10 s would leave them in the isolates); how fast they come is not what this file
// tests. The same vars afterwards, so that only the layout differs.
const VARS = {
  ADMIN_TOKEN: TOKEN,
  NOTIFY_URLS: `json:http://127.0.0.1:${HOOK_PORT}/hook`,
  NOTIFY_SECRET,
  HEALTH_FLUSH_MS: "0",
};
const BUNDLE = "split";
// A step that cannot decide within the scenario (min_clients 1000): it keeps its evidence.
const BASE = { stable: "1.0.0", canary: "1.1.0", weight: 0, health: { min_clients: 1000 } };

const FIXTURE = join(ROOT, "tests/fixtures/state-presplit");
const FIXTURE_STATE = join(FIXTURE, "state");
const FIXTURE_ANSWERS = join(FIXTURE, "old-build.json");
const REGENERATE = process.env.CANARY_REGENERATE_PRESPLIT_FIXTURE === "1";

const dir = mkdtempSync(join(tmpdir(), "canary-split-"));
after(() => rmSync(dir, { recursive: true, force: true }));
/** What the old build answered ({ view, outbox }). */
let old;

async function api(w, path, { method = "GET", body } = {}) {
  const r = await w.get(`/__canary/api/${BUNDLE}${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}` }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try { json = JSON.parse(r.text); } catch { /* text errors */ }
  return { ...r, json };
}

/** What the move must keep: the config, the rollout and its step's evidence, the history. */
async function view(w) {
  const status = await api(w, "");
  assert.equal(status.status, 200, status.text);
  const m = status.json.monitor;
  // The outlook is a forecast from the time now: not state.
  const { outlook: _, ...progress } = m.progress ?? {};
  return {
    config: status.json.config,
    progress,
    step: { totals: m.totals, tracked: m.verdict.tracked },
    history: m.history,
    events: m.events,
  };
}

/**
 * The old build's status as it reads at this hour. The fixture was made at a fixed time, and
 * its step's bake (1 h) ended at `next_step_at`, its hold (1 h more) at `hold_until`: past the
 * first the step is due and, short of the evidence it needs (min_clients 900), waits for it;
 * past the second the rollout is paused. Each with a reason and an event saying so, as the
 * old build would show too at this hour. Before both, nothing differs.
 */
const TIME_EVENTS = ["waiting_for_evidence", "rollout_paused"];
function movedView(now) {
  const t = Date.now();
  const { next_step_at: due, hold_until: held } = old.view.progress;
  if (Date.parse(due) > t) return old.view;
  const state = Date.parse(held) <= t ? "paused" : "waiting_for_evidence";
  assert.equal(now.progress.state, state, JSON.stringify(now.progress));
  assert.match(now.progress.reason ?? "", /canary clients a step needs/);
  const timed = now.events.filter((e) => TIME_EVENTS.includes(e.kind));
  assert.ok(timed.length <= TIME_EVENTS.length, JSON.stringify(now.events));
  return {
    ...old.view,
    progress: { ...old.view.progress, state: now.progress.state, reason: now.progress.reason },
    events: [...timed, ...old.view.events],
  };
}

/** The SQLite files of the bundle's HealthMonitor under a persisted state. */
const objectFiles = (state) => bundleObjectFiles(state, BUNDLE);

/** The outbox's rows (key, event, url, body, attempts) of the bundle's object. */
function outbox(file) {
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    return db.prepare("SELECT key, event, url, body, attempts FROM outbox ORDER BY id").all().map((r) => ({ ...r }));
  } finally {
    db.close();
  }
}

/** Runs the old build's scenario on a fresh state and writes the fixture. */
async function regenerate() {
  const { oldHarness } = await import("./support/old-build.mjs");
  const h = await oldHarness(PRESPLIT_COMMIT);
  const state = join(dir, "old-run");
  const w = await h.startWorker({ persist: state, seed: false, vars: VARS });
  let answers;
  try {
    await h.copyDemoFiles(w, BUNDLE);
    await w.setRollout(BASE, BUNDLE);
    const started = await api(w, "/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 3600 } });
    assert.equal(started.status, 200, started.text);
    // Shoppers on the step: loads and boots (stable and canary), a few stable errors.
    const shoppers = h.startShoppers(w, BUNDLE, { perTick: 3, everyMs: 50, stableErrors: 0.2, prefix: "pre" });
    try {
      await h.until(async () => (await view(w)).step.totals.canary.clients >= 5, "canary clients on the step", 30_000);
    } finally {
      await shoppers.stop();
    }
    // A notification nobody receives (nothing listens on HOOK_PORT): it waits in the outbox.
    const policy = await api(w, "/policy", { method: "POST", body: { health: { min_clients: 900 } } });
    assert.equal(policy.status, 200, policy.text);
    await h.until(() => objectFiles(state).some((f) => outbox(f).some((r) => r.event === "policy_changed" && r.attempts >= 2)),
      "the policy_changed delivery failed twice", 30_000);
    let last = null;
    await h.until(async () => {
      const v = await view(w);
      const same = last && JSON.stringify(v) === JSON.stringify(last);
      last = v;
      return same;
    }, "a settled state");
    answers = { view: last };
  } finally {
    await w.dispose();
  }
  const [file] = objectFiles(state);
  answers.outbox = outbox(file);
  // The object's namespace metadata is kept (its pending alarm: the outbox's next attempt):
  // a transfer keeps the alarm, and the delivery must go out from it.
  rmSync(FIXTURE, { recursive: true, force: true });
  cutState(state, FIXTURE_STATE, [
    file,
    join(dirname(file), "metadata.sqlite"),
    ...storageFiles(state, "kv/miniflare-KVNamespaceObject"),
    ...storageFiles(state, "r2/miniflare-R2BucketObject"),
  ]);
  writeFileSync(FIXTURE_ANSWERS, `${JSON.stringify({ commit: PRESPLIT_COMMIT, ...answers }, null, 2)}\n`);
  console.error(`# wrote ${relative(ROOT, FIXTURE)} from ${PRESPLIT_COMMIT.slice(0, 10)}`);
}

before(async () => {
  if (REGENERATE) await regenerate();
  assert.ok(
    statSync(FIXTURE_ANSWERS, { throwIfNoEntry: false }),
    `${relative(ROOT, FIXTURE_ANSWERS)} missing: CANARY_REGENERATE_PRESPLIT_FIXTURE=1 node --test tests/split-migration.test.mjs`,
  );
  const { commit, ...answers } = JSON.parse(readFileSync(FIXTURE_ANSWERS, "utf8"));
  assert.equal(commit, PRESPLIT_COMMIT, "the fixture is of the last single-Worker commit");
  old = answers;
});

test("the old build left a step with evidence, history and a delivery waiting", () => {
  assert.equal(old.view.progress.state, "running");
  assert.equal(old.view.config.weight, 10);
  assert.ok(old.view.step.totals.canary.clients >= 5 && old.view.step.tracked.boots.canary >= 5, JSON.stringify(old.view.step));
  assert.deepEqual(old.view.events.map((e) => e.kind), ["policy_changed", "rollout_started"], "the history");
  const waiting = old.outbox.filter((r) => r.event === "policy_changed");
  assert.equal(waiting.length, 1, JSON.stringify(old.outbox));
  assert.ok(waiting[0].attempts >= 2);
});

test("after the move the control Worker has the step, its evidence and the history, and delivers the waiting webhook", async () => {
  const state = join(dir, "moved");
  cpSync(FIXTURE_STATE, state, { recursive: true });
  const deliveries = [];
  const receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      deliveries.push({ headers: req.headers, body });
      res.writeHead(200).end("ok");
    });
  });
  await new Promise((resolve, reject) => receiver.once("error", reject).listen(HOOK_PORT, "127.0.0.1", resolve));
  const w = await startWorker({ persist: state, seed: false, vars: VARS, classesFrom: CLASSES_FROM });
  try {
    const now = await view(w);
    assert.deepEqual(now, movedView(now), "the status after the move is the status before it");

    // The delivery that waited goes out (the object's alarm, kept by the move; its next
    // attempt was due long ago): the same body and key, signed.
    const [waiting] = old.outbox.filter((r) => r.event === "policy_changed");
    await until(() => deliveries.some((d) => d.headers["x-canary-delivery"] === waiting.key), "the waiting delivery", 20_000);
    const got = deliveries.find((d) => d.headers["x-canary-delivery"] === waiting.key);
    assert.equal(got.body, waiting.body);
    const signature = `sha256=${createHmac("sha256", NOTIFY_SECRET).update(got.body).digest("hex")}`;
    assert.equal(got.headers["x-canary-signature"], signature);
    const [file] = objectFiles(state);
    await until(() => outbox(file).every((r) => r.key !== waiting.key), "the delivered row gone from the outbox", 5_000);

    // The step goes on from its evidence: new shoppers add to its counts, none reset.
    const shoppers = startShoppers(w, BUNDLE, { perTick: 2, everyMs: 100, prefix: "post" });
    try {
      await until(async () => (await view(w)).step.tracked.boots.canary > old.view.step.tracked.boots.canary, "new canary clients added to the step", 30_000);
    } finally {
      await shoppers.stop();
    }
    const after = await view(w);
    assert.ok(after.step.totals.stable.clients >= old.view.step.totals.stable.clients, JSON.stringify(after.step));
    assert.ok(after.step.tracked.boots.stable >= old.view.step.tracked.boots.stable, JSON.stringify(after.step));
    assert.deepEqual(after.progress.step, old.view.progress.step, "the same step");
    assert.deepEqual(after.events.filter((e) => !TIME_EVENTS.includes(e.kind)), old.view.events, "the history kept");
    assert.deepEqual(after.history, old.view.history);
  } finally {
    await w.dispose();
    await new Promise((resolve) => receiver.close(resolve));
  }
});
