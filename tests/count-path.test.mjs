// The count path (issue 25): error reports and boot signals are decided by the routing
// wasm like SDK requests and join the same outbox, which sends on a timer. With the
// deployment's values (wrangler.toml: a 10 s flush), a client's lone error report, the last
// request its isolate gets, is in the control plane's verdict within 3 s; a lone load is
// sent by the timer too, without a next request. The control plane is read straight from
// its Durable Object (its `/summary`, no KV read, no lock), so no request reaches the edge
// isolate after the one under test.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { canaryVisit, copyDemoFiles, sendReport, startWorker, until } from "./support/harness.mjs";

let w;
before(async () => {
  w = await startWorker({});
});
after(() => w?.dispose());

/** The bundle's monitor, read straight from its object (not through the edge). */
async function monitor(bundle) {
  const ns = await w.mf.getDurableObjectNamespace("HEALTH");
  const res = await ns.get(ns.idFromName(bundle)).fetch("https://monitor.canary-edge/summary", { headers: { "x-canary-bundle": bundle } });
  return (await res.json()).monitor ?? null;
}

/** A bundle of its own with the demo's files, its canary at 50%, served by the edge. */
async function bundle(name) {
  await copyDemoFiles(w, name);
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50 }, name);
  await until(async () => (await w.get(`/${name}/sdk.js`, { method: "HEAD", userKey: "x", ip: "198.51.100.1" })).status === 200, `${name} served`, 10_000);
}


test("a lone error report, the isolate's last request, is in the verdict within 3 s", async () => {
  await bundle("lone");
  const client = await canaryVisit(w, "lone", "203.0.113.20");
  // At once after the load: neither the load nor the report is due when they are recorded
  // (errors wait up to 1 s for company, loads 10 s): only the timer can send them.
  const sent = Date.now();
  const r = await sendReport(w, "lone", client.version, client);
  assert.equal(r.status, 202, r.text);
  assert.equal(r.json.counted, true);
  const seen = await until(async () => {
    const m = await monitor("lone");
    return m?.verdict?.canary?.errors === 1 ? Date.now() - sent : null;
  }, "the report in the verdict", 3_000);
  assert.ok(seen <= 3_000, `${seen} ms`);
});

test("a lone load is sent by the timer within a second while a canary is live, without a next request", async () => {
  await bundle("quiet");
  const loaded = Date.now();
  await canaryVisit(w, "quiet", "203.0.113.21");
  // HEALTH_FLUSH_MS is 10 s (wrangler.toml), but while a canary is live a load is urgent
  // (URGENT_FLUSH_MS, 1 s: the early silence test ages a client from its load), and the
  // aggregator forwards within 250 ms. (Without a live canary loads wait for
  // HEALTH_FLUSH_MS: core's batching tests.)
  const seen = await until(async () => {
    const m = await monitor("quiet");
    return m?.verdict?.tracked?.pending === 1 ? Date.now() - loaded : null;
  }, "the load in the tracker", 5_000);
  assert.ok(seen <= 3_000, `within its urgent flush: ${seen} ms`);
});

test("the monitor's /ingest takes a forward's JSON as text: a well-formed one is counted, a malformed one refused (400) and nothing lost after it", async () => {
  await bundle("forwarded");
  const ns = await w.mf.getDurableObjectNamespace("HEALTH");
  const post = async (body) => {
    const res = await ns.get(ns.idFromName("forwarded")).fetch("https://monitor.canary-edge/ingest", {
      method: "POST",
      headers: { "x-canary-bundle": "forwarded", "content-type": "application/json" },
      body,
    });
    return { status: res.status, text: await res.text() };
  };
  for (const bad of ["", "not json", "{\"batches\":7}", "{\"batches\":[{\"stable\":\"1.0.0\"}]}"]) {
    const r = await post(bad);
    assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.text}`);
    assert.match(r.text, /bad batches/);
  }
  // A forward as an aggregator sends it (one exact client set, control/clients.rs): one new
  // canary client's load, counted.
  const id = "00000000000a11ce";
  const exact = (ids) => "01" + ids.join("");
  const batch = {
    stable: "1.0.0",
    canary: "1.1.0",
    weight: 50,
    clients: { stable: { loaded: exact([]), errored: exact([]) }, canary: { loaded: exact([id]), errored: exact([]) } },
    events: [{ client: id, network: "7", canary: true, signal: "load" }],
  };
  const ok = await post(JSON.stringify({ batches: [batch], merged: 1 }));
  assert.equal(ok.status, 200, ok.text);
  assert.equal(JSON.parse(ok.text).ok, true);
  const m = await until(async () => {
    const s = await monitor("forwarded");
    return s?.verdict?.tracked?.pending >= 1 ? s : null;
  }, "the forwarded load in the tracker", 5_000);
  assert.ok(m.verdict.tracked.pending >= 1);
});
