// Committed fixtures of a persisted state (`startWorker({ persist })`), made by an older
// build for the tests of what today's build makes of it (storage-migration,
// split-migration): the bundle's Durable Object file found by what it stores, and the state
// cut down to the files a scenario uses, each SQLite file checkpointed (its WAL folded in)
// so that the one file holds everything.
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { DatabaseSync } from "node:sqlite";

/** The SQLite files of the Durable Objects under `state` that store `bundle` (their `meta`). */
export function bundleObjectFiles(state, bundle) {
  const found = [];
  const walk = (d) => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith(".sqlite") && e.name !== "metadata.sqlite") found.push(join(d, e.name));
    }
  };
  walk(join(state, "v3", "do"));
  return found.filter((f) => {
    const db = new DatabaseSync(f, { readOnly: true });
    try {
      return db.prepare("SELECT bundle FROM meta").get()?.bundle === bundle;
    } catch {
      return false;
    } finally {
      db.close();
    }
  });
}

/** The SQLite files of one of Miniflare's storages under `state` (e.g. "kv/miniflare-KVNamespaceObject"). */
export function storageFiles(state, storage) {
  const dir = join(state, "v3", storage);
  return readdirSync(dir).filter((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite").map((f) => join(dir, f));
}

/**
 * Copies `files` (SQLite files under `state`, each checkpointed first) and the ROLLOUTS and
 * BUNDLES blob folders into `to`, at the same relative paths.
 */
export function cutState(state, to, files) {
  for (const f of files) {
    const db = new DatabaseSync(f);
    try { db.exec("PRAGMA wal_checkpoint(TRUNCATE)"); } finally { db.close(); }
  }
  const keep = [
    ...files.map((f) => relative(state, f)),
    "v3/kv/00000000000000000000000000000000/blobs",
    "v3/r2/canary-edge-bundles/blobs",
  ];
  for (const k of keep) {
    assert.ok(existsSync(join(state, k)), k);
    mkdirSync(dirname(join(to, k)), { recursive: true });
    cpSync(join(state, k), join(to, k), { recursive: true });
  }
}
