// Floor for the cost of one health batch (bench/batch-cost.mjs): serves like floor.mjs (the
// cached asset, no logic) and, with SEND_BATCH=1, also sends one small JSON batch per
// request to a minimal SQLite-backed Durable Object, which parses it and inserts one row.
// The batch has the shape and size of canary-edge's batch for one new client (the JSON of
// core/src/health/counts.rs `Batch`: versions, weight, the clients' sets in hex, one
// event), and is sent the way js/index.js sends one: `ctx.waitUntil(stub.fetch(...))`.
// Without SEND_BATCH=1 the worker has the same bindings and sends nothing.
const KEY = "demo/1.0.0/sdk.js";
const BUNDLE = "demo";
const INGEST_URL = "https://batches.floor/ingest";

/** A 64-bit id in hex (canary-edge's client ids come with the first visit, in both runs). */
const hex32 = () => ((Math.random() * 0x100000000) >>> 0).toString(16).padStart(8, "0");
const hex64 = () => hex32() + hex32();

/** One client's load on the canary, as canary-edge's batch for it (~255 bytes of JSON). */
function batch() {
  const client = hex64();
  return JSON.stringify({
    stable: "1.0.0",
    canary: "1.1.0",
    weight: 50,
    clients: { stable: { loaded: "01", errored: "01" }, canary: { loaded: `01${hex64()}`, errored: "01" } },
    events: [{ client, network: "a40049332cb8c337", canary: true, signal: "load" }],
  });
}

export default {
  async fetch(req, env, ctx) {
    if (env.SEND_BATCH === "1") {
      const stub = env.BATCHES.get(env.BATCHES.idFromName(BUNDLE));
      ctx.waitUntil(
        stub
          .fetch(INGEST_URL, { method: "POST", headers: { "content-type": "application/json", "x-bundle": BUNDLE }, body: batch() })
          .catch((e) => console.log(JSON.stringify({ event: "batch_send_failed", detail: String(e) }))),
      );
    }
    const url = `${new URL(req.url).origin}/demo@1.0.0/sdk.js`;
    const hit = await caches.default.match(url);
    if (hit) return hit;
    const obj = await env.BUNDLES.get(KEY);
    const resp = new Response(obj.body, {
      headers: { "content-type": "text/javascript; charset=utf-8", etag: obj.httpEtag, "cache-control": "public, max-age=31536000, immutable" },
    });
    ctx.waitUntil(caches.default.put(url, resp.clone()));
    return resp;
  },
};

/** The minimal monitor: JSON in, one SQLite row per batch. `GET` answers the row count. */
export class Batches {
  constructor(ctx) {
    this.sql = ctx.storage.sql;
    this.sql.exec(
      "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, at_ms REAL, stable TEXT, canary TEXT, weight INTEGER, clients TEXT, events TEXT)",
    );
  }

  async fetch(req) {
    if (req.method === "GET") return Response.json({ rows: this.sql.exec("SELECT COUNT(*) AS n FROM batches").one().n });
    let b;
    try {
      b = await req.json();
    } catch {
      return new Response("bad batch", { status: 400 });
    }
    if (typeof b?.stable !== "string" || !Array.isArray(b.events)) return new Response("bad batch", { status: 400 });
    this.sql.exec(
      "INSERT INTO batches (at_ms, stable, canary, weight, clients, events) VALUES (?, ?, ?, ?, ?, ?)",
      Date.now(),
      b.stable,
      b.canary ?? null,
      b.weight ?? null,
      JSON.stringify(b.clients),
      JSON.stringify(b.events),
    );
    return Response.json({ ok: true });
  }
}
