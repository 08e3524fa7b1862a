// Test-only load generator (tests/aggregation.test.mjs): a worker of its own in the same
// workerd, bound to the edge's HealthAggregator and HealthMonitor classes, that plays many
// edge isolates at once. Each `POST /tick` sends one health batch per simulated isolate,
// all together, to that isolate's aggregator of the bundle, exactly as the entry module
// does (same URL, header and body shape); `GET /summary` reads the bundle's monitor.
//
// Batches are built here, not by the router: a client set is its exact form ("01" and each
// id as 16 hex digits, sorted: core/src/health/clients.rs), events as `ClientEvent`s.

const ORIGIN = "https://monitor.canary-edge";
const BUNDLE_HEADER = "x-canary-bundle";
const AGGREGATORS = 64;

const hex = (n) => n.toString(16).padStart(16, "0");
const set = (ids) => "01" + [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map(hex).join("");

/** One isolate's batch: `clients` new clients per channel; `failing` of the canary's fail. */
function batch({ stable, canary, weight, firstId, clients, failing }) {
  const events = [];
  const sets = { stable: { loaded: [], errored: [] }, canary: { loaded: [], errored: [] } };
  let id = firstId;
  for (const channel of ["stable", "canary"]) {
    for (let i = 0; i < clients; i++, id++) {
      const fails = channel === "canary" && i < failing;
      sets[channel].loaded.push(id);
      if (fails) sets[channel].errored.push(id);
      const base = { client: id.toString(16), network: id.toString(16), canary: channel === "canary" };
      events.push({ ...base, signal: "load" }, { ...base, network: "0", signal: fails ? "failure" : "boot" });
    }
  }
  const clientSets = {};
  for (const ch of ["stable", "canary"]) clientSets[ch] = { loaded: set(sets[ch].loaded), errored: set(sets[ch].errored) };
  return JSON.stringify({ stable, canary, weight, clients: clientSets, events });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/summary") {
      const bundle = url.searchParams.get("bundle");
      const stub = env.HEALTH.get(env.HEALTH.idFromName(bundle));
      return stub.fetch(`${ORIGIN}/summary`, { headers: { [BUNDLE_HEADER]: bundle } });
    }
    // POST /tick {bundle, stable, canary, weight, isolates, clients, failing_isolates, tick}
    const t = await request.json();
    const started = Date.now();
    const statuses = {};
    await Promise.all(
      Array.from({ length: t.isolates }, async (_, isolate) => {
        const body = batch({
          stable: t.stable,
          canary: t.canary,
          weight: t.weight,
          // Ids unique per tick and isolate: new clients every second, as in a storm.
          firstId: (t.tick * 1_000_000 + isolate) * 1_000 + 1,
          clients: t.clients,
          failing: isolate < t.failing_isolates ? t.clients : 0,
        });
        const name = `${t.bundle}#${isolate % AGGREGATORS}`;
        try {
          const resp = await env.AGGREGATORS.get(env.AGGREGATORS.idFromName(name)).fetch(`${ORIGIN}/aggregate`, {
            method: "POST",
            headers: { [BUNDLE_HEADER]: t.bundle, "content-type": "application/json" },
            body,
          });
          await resp.arrayBuffer();
          statuses[resp.status] = (statuses[resp.status] ?? 0) + 1;
        } catch (e) {
          statuses.error = (statuses.error ?? 0) + 1;
        }
      }),
    );
    return Response.json({ ms: Date.now() - started, statuses });
  },
};
