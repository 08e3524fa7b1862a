// The two Workers' wrangler configs agree with each other, as wrangler itself reads them
// (`unstable_readConfig`): the edge (wrangler.toml) binds the control Worker
// (wrangler.control.toml) by its name and classes, both read the same KV namespace, bucket
// and [vars], and the control Worker's migration moves the classes from the edge's script
// (or, as a new deployment's and wrangler dev's config, makes them with SQLite). The
// configs' dry-run deploys: scripts/test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { unstable_readConfig as readConfig } from "wrangler";
import { CONTROL_NAME, EDGE_NAME, ROOT } from "./support/harness.mjs";

const edge = readConfig({ config: join(ROOT, "wrangler.toml") });
const control = readConfig({ config: join(ROOT, "wrangler.control.toml") });
const CLASSES = ["HealthMonitor", "HealthAggregator"];
/** A config value as plain JSON (wrangler's parse makes null-prototype objects). */
const plain = (value) => JSON.parse(JSON.stringify(value));

test("the Workers' names are the harness's and the bindings'", () => {
  assert.equal(edge.name, EDGE_NAME);
  assert.equal(control.name, CONTROL_NAME);
  assert.deepEqual(edge.services.map((s) => [s.binding, s.service]), [["CONTROL", CONTROL_NAME]]);
});

test("the edge binds the control Worker's classes by its script name; the control Worker defines them", () => {
  const bound = edge.durable_objects.bindings.map((b) => [b.name, b.class_name, b.script_name]);
  assert.deepEqual(bound, [["HEALTH", "HealthMonitor", CONTROL_NAME], ["HEALTH_AGGREGATORS", "HealthAggregator", CONTROL_NAME]]);
  const own = control.durable_objects.bindings.map((b) => [b.name, b.class_name, b.script_name]);
  assert.deepEqual(own, [["HEALTH", "HealthMonitor", undefined], ["HEALTH_AGGREGATORS", "HealthAggregator", undefined]]);
  assert.deepEqual(edge.migrations, [], "the edge defines no class any more");
});

test("the control Worker's migration moves both classes from the edge's script", () => {
  assert.deepEqual(plain(control.migrations), [{
    tag: "v3",
    transferred_classes: CLASSES.map((c) => ({ from: c, from_script: EDGE_NAME, to: c })),
  }]);
});

test("a new deployment's config (and wrangler dev's) makes the classes with SQLite, under the same tag", () => {
  mkdirSync(join(ROOT, "target"), { recursive: true });
  const dir = mkdtempSync(join(ROOT, "target", "config-new-"));
  try {
    // Next to wrangler.control.toml in real use; here a temp dir under the repo (its paths
    // are relative, and only the migrations are compared).
    const out = join(dir, "wrangler.control.new.toml");
    execFileSync("bash", ["-c", '. scripts/lib.sh && control_config_new "$1"', "-", out], { cwd: ROOT });
    const made = readConfig({ config: out });
    assert.deepEqual(plain(made.migrations), [{ tag: "v3", new_sqlite_classes: CLASSES }]);
    assert.deepEqual(made.vars, control.vars);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("both Workers read the same KV namespace, bucket and [vars]", () => {
  assert.deepEqual(control.kv_namespaces.map((k) => [k.binding, k.id]), edge.kv_namespaces.map((k) => [k.binding, k.id]));
  assert.deepEqual(control.r2_buckets.map((b) => [b.binding, b.bucket_name]), edge.r2_buckets.map((b) => [b.binding, b.bucket_name]));
  assert.deepEqual(control.vars, edge.vars);
  assert.equal(control.compatibility_date, edge.compatibility_date);
});

test("the control Worker has no public URL; the console's files are its", () => {
  assert.equal(control.workers_dev, false);
  assert.equal(control.assets?.binding, "ASSETS");
  assert.equal(edge.assets, undefined, "the edge serves no console file");
});
