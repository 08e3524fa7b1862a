// Stands in for canary-edge's Durable Objects (HEALTH, HEALTH_AGGREGATORS) and the floor's
// in bench/batch-cost.mjs's check (not timed): counts the batches posted to them and keeps
// the first few, so the check can tell that the load sends exactly one batch per request,
// where to (the monitor's /ingest or an aggregator's /aggregate) and what one looks like.
//
// The tally is the module's, not an object's: canary-edge sends to its aggregator by a
// name of its own (the bundle and this isolate's shard), so the batches reach an object
// the check cannot name. Every object of this class runs in the same isolate (workerd
// keeps a worker's Durable Objects in its isolate), so any one of them answers the total.
const tally = { ingests: 0, byPath: {}, objects: new Set(), samples: [] };

export class IngestCounter {
  constructor(ctx) {
    this.id = ctx.id.toString();
  }

  async fetch(req) {
    if (req.method === "GET") {
      const { ingests, byPath, objects, samples } = tally;
      return Response.json({ ingests, by_path: byPath, objects: objects.size, samples });
    }
    const body = await req.text();
    const path = new URL(req.url).pathname;
    tally.ingests++;
    tally.byPath[path] = (tally.byPath[path] ?? 0) + 1;
    tally.objects.add(this.id);
    if (tally.samples.length < 2) tally.samples.push({ path, bundle: req.headers.get("x-canary-bundle"), body });
    return Response.json({ ok: true });
  }
}

export default {
  fetch() {
    return new Response("not found", { status: 404 });
  },
};
