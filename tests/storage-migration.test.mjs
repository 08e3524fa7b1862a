// The HealthMonitor's storage migrates in place. A state persisted by the worker of the
// last commit with the version-1 layout (no schema version, client sets as hex TEXT, a
// rollback's counts as JSON, integers read as floats) is opened by today's build: the
// status, the history, the minutes and the config are what the old build reported, every
// row of every table is kept, and the layout is version 2 (strict tables, integers, BLOB
// sets). A migration interrupted half-way is finished on the next open.
//
// The old state is a committed fixture, tests/fixtures/state-v1/: state/ is the persisted
// directory (`startWorker({ persist })`) cut down to what the scenario uses (the bundle's
// Durable Object SQLite file, the ROLLOUTS KV namespace, the BUNDLES R2 bucket), and
// old-build.json is what the old build answered on it ({ commit, status, minutes, kv }).
// Each test works on a copy in a temp dir; nothing is built from git.
//
// To regenerate the fixture from the old commit (a rollout that steps, health batches, a
// rollback and history, run by that commit's worker and harness: tests/support/old-build.mjs
// builds it from git once into target/old-trees/, a few minutes, or set CANARY_OLD_TREE):
//
//   CANARY_REGENERATE_V1_FIXTURE=1 node --test tests/storage-migration.test.mjs
//
// It rewrites tests/fixtures/state-v1/ and then runs the same tests on it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { ROOT, startWorker } from "./support/harness.mjs";
import { bundleObjectFiles, cutState, storageFiles } from "./support/state-fixture.mjs";

/** The last commit whose storage has the version-1 layout. */
const V1_COMMIT = "c5fff93e0ca7e92796e304b2f0d2ac48dd49d298";
const TOKEN = "migration-admin-token-0123456789abcdef";
// HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: as the old build's scenario ran (its fixture's
// counts are per batch, one per request); the flush timer: browser-canary.test.mjs.
const VARS = { ADMIN_TOKEN: TOKEN, HEALTH_FLUSH_MS: "0", HEALTH_FLUSH_REQUESTS: "1" };
const BUNDLE = "mig";
// A lenient rule so that a step passes in seconds (as in controlplane.test.mjs); boot_grace_secs
// 10 (default 30): as the old build's scenario ran.
const BASE = {
  stable: "1.0.0", canary: "1.1.0", weight: 0,
  health: { min_clients: 3, min_error_rate: 0.5, hostile_networks: 0, boot_grace_secs: 10 },
};
const TABLES = ["meta", "own_writes", "progress", "client_totals", "client_windows", "step_counts", "booting_versions", "minutes", "history"];
const SETS = ["stable_loaded", "stable_errored", "canary_loaded", "canary_errored"];
const COUNTS = ["stable_clients", "stable_errors", "canary_clients", "canary_errors"];

/**
 * The script the fixture's classes belonged to: the old build ran as the harness's one
 * unnamed Worker; today's classes are the control Worker's, moved there as a
 * `transferred_classes` migration moves them (objects and storage under the old namespace).
 */
const V1_CLASSES_FROM = "";
/** The committed fixture: the old build's persisted state, and what it answered. */
const FIXTURE = join(ROOT, "tests/fixtures/state-v1");
const FIXTURE_STATE = join(FIXTURE, "state");
const FIXTURE_ANSWERS = join(FIXTURE, "old-build.json");
const REGENERATE = process.env.CANARY_REGENERATE_V1_FIXTURE === "1";

const dir = mkdtempSync(join(tmpdir(), "canary-migration-"));
/** The state as the old build left it (a copy of the fixture); each test works on a copy. */
const V1_STATE = join(dir, "v1");
/** What the old build answered ({ status, minutes, kv }), and what it stored. */
let old;
let oldDb;

after(() => rmSync(dir, { recursive: true, force: true }));

async function api(w, path, { method = "GET", body } = {}) {
  const r = await w.get(`/__canary/api/${BUNDLE}${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}` }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try { json = JSON.parse(r.text); } catch { /* text errors */ }
  return { ...r, json };
}

/** What a restart must keep: the config and the stored parts of the monitor's status. */
async function view(w) {
  const status = await api(w, "");
  assert.equal(status.status, 200, status.text);
  const m = status.json.monitor;
  const minutes = await api(w, "/minutes");
  assert.equal(minutes.status, 200, minutes.text);
  return {
    status: {
      config: status.json.config,
      stable: m.stable,
      canary: m.canary,
      totals: m.totals,
      silence: m.verdict.silence,
      progress: m.progress,
      history: m.history,
      events: m.events,
      kv: m.kv,
    },
    minutes: minutes.json.minutes,
    kv: JSON.parse(await w.kv.get(`rollout/${BUNDLE}`)),
  };
}

/** The SQLite file of the bundle's object under a persisted state. */
function objectFile(state) {
  const mine = bundleObjectFiles(state, BUNDLE);
  assert.equal(mine.length, 1, `one object stores ${BUNDLE}: ${mine.join(", ")}`);
  return mine[0];
}

/** Every table of the file: whether it is strict, its rows with each value's SQLite type. */
function dump(file) {
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    const tables = {};
    for (const t of db.prepare("PRAGMA table_list").all()) {
      if (t.schema !== "main" || t.name.startsWith("sqlite_") || t.name.startsWith("_cf_")) continue;
      const columns = db.prepare(`PRAGMA table_info("${t.name}")`).all().map((c) => c.name);
      const select = columns.map((c) => `"${c}", typeof("${c}") AS "${c}:type"`).join(", ");
      const rows = db.prepare(`SELECT ${select} FROM "${t.name}" ORDER BY 1`).all().map((r) => ({ ...r }));
      tables[t.name] = { strict: t.strict === 1, columns, rows };
    }
    return tables;
  } finally {
    db.close();
  }
}

const hex = (v) => Buffer.from(v).toString("hex");

/** A version-1 row as version 2 stores it: sets as bytes, a rollback's counts as columns. */
function migrated(table, row) {
  const out = {};
  for (const [k, v] of Object.entries(row)) {
    if (k.endsWith(":type")) continue;
    if (SETS.includes(k)) out[k] = { blob: v };
    else if (table === "history" && k === "counts") {
      const c = v === null ? null : JSON.parse(v);
      out.stable_clients = c?.stable.clients ?? null;
      out.stable_errors = c?.stable.errors ?? null;
      out.canary_clients = c?.canary.clients ?? null;
      out.canary_errors = c?.canary.errors ?? null;
    } else out[k] = v;
  }
  return out;
}

function values(table, row) {
  const out = {};
  for (const [k, v] of Object.entries(row)) {
    if (k.endsWith(":type")) continue;
    out[k] = SETS.includes(k) ? { blob: hex(v) } : v;
  }
  return out;
}

/** Checks that `file` holds the version-2 layout with exactly the rows of the old store. */
function assertMigrated(file) {
  const now = dump(file);
  const version = now.schema_version?.rows ?? [];
  assert.deepEqual(version.map((r) => r.version), [2], "schema version 2");
  assert.deepEqual(Object.keys(now).filter((t) => t.startsWith("v1_")), [], "no copy left behind");
  for (const table of TABLES) {
    const t = now[table];
    assert.ok(t, `table ${table}`);
    assert.ok(t.strict, `${table} is STRICT`);
    assert.deepEqual(
      t.rows.map((r) => values(table, r)),
      oldDb[table].rows.map((r) => migrated(table, r)),
      `${table}: every row kept`,
    );
    for (const row of t.rows) {
      for (const c of t.columns) {
        const type = row[`${c}:type`];
        if (SETS.includes(c)) assert.equal(type, "blob", `${table}.${c}`);
        if (COUNTS.includes(c) || ["revision", "failures", "next_seq", "seq", "minute", "step", "bake_secs", "weight"].includes(c)) {
          assert.ok(type === "integer" || (type === "null" && row[c] === null), `${table}.${c} is ${type}`);
        }
      }
    }
  }
  return now;
}

function copyState(name) {
  const to = join(dir, name);
  cpSync(V1_STATE, to, { recursive: true });
  return to;
}

/**
 * Runs the old build's scenario on a fresh persisted state and writes the fixture: the
 * files of that state the scenario uses, and what the old build answered.
 */
async function regenerate() {
  const { oldHarness } = await import("./support/old-build.mjs");
  const h = await oldHarness(V1_COMMIT);
  const state = join(dir, "old-run");
  // No seed: R2 and KV hold only what the scenario puts there (the bundle's files, its config).
  const w = await h.startWorker({ persist: state, seed: false, vars: VARS });
  let answers;
  try {
    await h.copyDemoFiles(w, BUNDLE);
    await w.setRollout(BASE, BUNDLE);
    // Shoppers load, boot and, on stable, sometimes report an error: health batches.
    const shoppers = h.startShoppers(w, BUNDLE, { perTick: 3, everyMs: 50, stableErrors: 0.3, prefix: "mig" });
    try {
      const started = await api(w, "/rollout", { method: "POST", body: { steps: [10, 50, 100], bake_secs: 1 } });
      assert.equal(started.status, 200, started.text);
      await h.until(async () => JSON.parse(await w.kv.get(`rollout/${BUNDLE}`)).weight === 50, "the rollout's second step", 20000);
      const back = await api(w, "/rollback", { method: "POST", body: { reason: "before the migration" } });
      assert.equal(back.status, 200, back.text);
      await h.sleep(1100); // one KV write per second
      const weight = await api(w, "/weight", { method: "POST", body: { weight: 20 } });
      assert.equal(weight.status, 200, weight.text);
      await h.sleep(500);
    } finally {
      await shoppers.stop();
    }
    // Settled: two reads in a row agree.
    let last = null;
    await h.until(async () => {
      const v = await view(w);
      const same = last && JSON.stringify(v) === JSON.stringify(last);
      last = v;
      return same;
    }, "a settled state");
    answers = last;
  } finally {
    await w.dispose();
  }
  // Only what the scenario uses: the bundle's object, the ROLLOUTS namespace and the BUNDLES
  // bucket (Miniflare keeps each as a SQLite file, named by a hash of its name, and a blobs
  // folder), not the FAULTS namespace, the cache, the rate limiters. Each SQLite file is
  // checkpointed first: its WAL is folded in and removed, so the one file holds everything.
  const holds = (file, sql, ...args) => {
    const db = new DatabaseSync(file, { readOnly: true });
    try { return db.prepare(sql).get(...args) !== undefined; } finally { db.close(); }
  };
  const rollouts = storageFiles(state, "kv/miniflare-KVNamespaceObject").filter((f) => holds(f, "SELECT 1 FROM _mf_entries WHERE key = ?", `rollout/${BUNDLE}`));
  const bundles = storageFiles(state, "r2/miniflare-R2BucketObject");
  assert.equal(rollouts.length, 1, "one KV namespace holds the bundle's config");
  assert.equal(bundles.length, 1, "one R2 bucket");
  // Not kept: the namespace's metadata.sqlite, where the object's pending alarm is (the
  // boot-grace sweep, due seconds later, of clients tracked in memory only), which would
  // fire at once on a fixture that is days old.
  rmSync(FIXTURE, { recursive: true, force: true });
  cutState(state, FIXTURE_STATE, [objectFile(state), ...rollouts, ...bundles]);
  writeFileSync(FIXTURE_ANSWERS, `${JSON.stringify({ commit: V1_COMMIT, ...answers }, null, 2)}\n`);
  console.error(`# wrote ${relative(ROOT, FIXTURE)} from ${V1_COMMIT.slice(0, 10)}`);
}

before(async () => {
  if (REGENERATE) await regenerate();
  assert.ok(
    statSync(FIXTURE_ANSWERS, { throwIfNoEntry: false }),
    `${relative(ROOT, FIXTURE_ANSWERS)} missing: CANARY_REGENERATE_V1_FIXTURE=1 node --test tests/storage-migration.test.mjs`,
  );
  const { commit, ...answers } = JSON.parse(readFileSync(FIXTURE_ANSWERS, "utf8"));
  assert.equal(commit, V1_COMMIT, "the fixture is of the version-1 commit");
  old = answers;
  // Health fields added since the fixture was made read as their defaults (the config in KV
  // is the old one; the status shows the policy it parses to).
  old.status.config.health = { ...old.status.config.health, max_boot_slowdown: 0.25, pass_confidence: 0.95 };
  // The status's fields added since: a paused rollout has no outlook.
  if (old.status.progress) old.status.progress = { ...old.status.progress, outlook: null };
  cpSync(FIXTURE_STATE, V1_STATE, { recursive: true });
  oldDb = dump(objectFile(V1_STATE));
});

test("the old build left the version-1 layout, with data in every kind of table", () => {
  const db = oldDb;
  assert.equal(db.schema_version, undefined, "no schema version");
  for (const table of TABLES) assert.ok(db[table] && !db[table].strict, `${table} (version 1)`);
  assert.equal(db.client_totals.rows[0]["stable_loaded:type"], "text", "sets as hex TEXT");
  assert.ok(db.client_windows.rows.length > 0, "health windows");
  assert.ok(db.minutes.rows.length > 0, "minutes");
  assert.ok(db.own_writes.rows.length > 0, "own KV writes");
  assert.ok(db.progress.rows.length === 1, "a rollout's progress");
  const rollback = db.history.rows.find((r) => r.kind === "rollback");
  assert.ok(rollback?.counts, "a rollback with its counts (JSON)");
  assert.ok(db.history.rows.some((r) => r.kind === "step_advance"), "a step");
  assert.ok(old.status.totals.stable.errors > 0, "stable clients with errors");
  assert.equal(old.kv.weight, 20);
});

test("today's build opens it: status, history, minutes and config kept, every row kept, version 2", async () => {
  const state = copyState("migrated");
  let w = await startWorker({ persist: state, seed: false, vars: VARS, classesFrom: V1_CLASSES_FROM });
  try {
    const now = await view(w);
    assert.deepEqual(now, old);
  } finally {
    await w.dispose();
  }
  assertMigrated(objectFile(state));

  // It goes on from there, and a reload of the new layout keeps what it adds.
  w = await startWorker({ persist: state, seed: false, vars: VARS, classesFrom: V1_CLASSES_FROM });
  let before;
  try {
    assert.deepEqual(await view(w), old, "reopened at version 2");
    const set = await api(w, "/weight", { method: "POST", body: { weight: 30 } });
    assert.equal(set.status, 200, set.text);
    before = await view(w);
    assert.equal(before.status.events.length, old.status.events.length + 1);
    assert.deepEqual(before.status.events.slice(1), old.status.events);
  } finally {
    await w.dispose();
  }
  w = await startWorker({ persist: state, seed: false, vars: VARS, classesFrom: V1_CLASSES_FROM });
  try {
    assert.deepEqual(await view(w), before);
  } finally {
    await w.dispose();
  }
});

test("a migration interrupted half-way is finished on the next open", async () => {
  const state = copyState("interrupted");
  const file = objectFile(state);
  const db = new DatabaseSync(file);
  try {
    // `minutes` renamed to its copy and its new table begun: made again from the copy.
    db.exec('ALTER TABLE minutes RENAME TO v1_minutes; CREATE TABLE minutes ("minute" INTEGER PRIMARY KEY) STRICT; INSERT INTO minutes VALUES (1);');
    // `own_writes` already migrated (strict, copy dropped): left as it is.
    db.exec(`CREATE TABLE ow2 ("revision" INTEGER PRIMARY KEY, "digest" TEXT NOT NULL, "written_ms" REAL NOT NULL) STRICT;
      INSERT INTO ow2 SELECT revision, digest, written_ms FROM own_writes; DROP TABLE own_writes; ALTER TABLE ow2 RENAME TO own_writes;`);
  } finally {
    db.close();
  }
  const w = await startWorker({ persist: state, seed: false, vars: VARS, classesFrom: V1_CLASSES_FROM });
  try {
    assert.deepEqual(await view(w), old);
  } finally {
    await w.dispose();
  }
  assertMigrated(file);
});

test("a version-2 store made before the tracker's later columns gets them, its rows kept", async () => {
  const state = copyState("later-columns");
  let w = await startWorker({ persist: state, seed: false, vars: VARS, classesFrom: V1_CLASSES_FROM });
  try {
    assert.deepEqual(await view(w), old);
  } finally {
    await w.dispose();
  }
  // The tables as the build before `step_waiting.network` and
  // `step_tracker.refused_waiting_full` made them, with a signal waiting in one.
  const file = objectFile(state);
  const at = Date.now();
  const db = new DatabaseSync(file);
  try {
    db.exec(`ALTER TABLE step_waiting DROP COLUMN network; ALTER TABLE step_tracker DROP COLUMN refused_waiting_full;
      INSERT INTO step_waiting (client, canary, booted, failed, at_ms) VALUES (x'00000000000000aa', 1, 1, 0, ${at});`);
  } finally {
    db.close();
  }
  w = await startWorker({ persist: state, seed: false, vars: VARS, classesFrom: V1_CLASSES_FROM });
  try {
    assert.deepEqual(await view(w), old, "opened as before");
    const s = await api(w, "");
    assert.equal(s.json.monitor.verdict.tracked.refused.waiting_full, 0);
  } finally {
    await w.dispose();
  }
  const now = dump(file);
  assert.ok(now.step_waiting.columns.includes("network"), now.step_waiting.columns.join(", "));
  assert.ok(now.step_tracker.columns.includes("refused_waiting_full"), now.step_tracker.columns.join(", "));
  assert.deepEqual(
    now.step_waiting.rows.map((r) => [hex(r.client), r.booted, hex(r.network)]),
    [["00000000000000aa", 1, ""]],
    "the waiting row kept (its network unknown)",
  );
});
