// The bundles' HealthAggregator objects, in the control Worker: each merges the health
// batches of the edge isolates that picked it (health::coalesce; the merge is Rust,
// aggregator/, loaded with this module) and forwards them to the bundle's HealthMonitor at
// most 4 times a second, so that the monitor takes a bounded number of calls whatever the
// traffic; and it answers the edge isolates' revision checks from what it knows of the
// bundle's config. This module does the waits and the calls.
import aggregatorWasm from "./aggregator/aggregator_bg.wasm";
import { initSync, aggregate, forward, settle, retry_in, config_ask, config_learn, config_known, contract } from "./aggregator/aggregator.js";
import { brief, log, text } from "./log.js";

initSync({ module: aggregatorWasm });

const MERGE = { aggregate, forward, settle, retry_in, config_ask, config_learn, config_known };
// The monitor's contract (control::wire): where forwards and config asks go, and the header
// naming the bundle.
const [MONITOR_INGEST_URL, MONITOR_BUNDLE_HEADER, MONITOR_CONFIG_URL] = contract().split("\n");

/** The bundle's HealthMonitor (one per bundle, named by it), its id derived once per isolate. */
const MONITOR_IDS = new Map();
function monitor(env, bundle) {
  let id = MONITOR_IDS.get(bundle);
  if (!id) {
    // Bounded: the bundles this isolate's aggregators serve.
    if (MONITOR_IDS.size >= 1024) MONITOR_IDS.clear();
    MONITOR_IDS.set(bundle, (id = env.HEALTH.idFromName(bundle)));
  }
  return env.HEALTH.get(id);
}

/**
 * One of a bundle's aggregator objects (health::coalesce): merges the batches isolates
 * send it and forwards them to the bundle's monitor at most once per interval, so that
 * the monitor takes a bounded number of calls whatever the traffic. A sender's request
 * waits for the forward its batch rides on and gets its outcome: 200 delivered, 202 kept
 * for the next forward (the monitor failed), 503 given up after its attempts; its body is
 * the bundle's config as this aggregator last learned it from the monitor's answers
 * (`revision\ntext`, empty when none). An isolate's revision check (GET, the config URL)
 * is answered from that memory, after asking the monitor (its read-only `/config`) when
 * what is known is over a second old, at most once a second: 200 with the config, 204
 * none. The merge, the config kept and their timing are decided in Rust (aggregator/,
 * whose memory holds them); this class does the waits and the calls.
 */
export class HealthAggregator {
  constructor(state, env) {
    this.env = env;
    this.key = state.id.toString();
    /** The next forward, which batches merged now ride on. */
    this.next = null;
    /** The merge's functions (aggregator/). */
    this.merge = MERGE;
    /** The monitor's answer to a config check under way, which other checks wait for. */
    this.asking = null;
  }

  async fetch(request) {
    const bundle = request.headers.get(MONITOR_BUNDLE_HEADER) ?? "";
    if (request.method === "GET") {
      return request.url === MONITOR_CONFIG_URL ? this.config(bundle) : text(404, "not found");
    }
    let wait;
    try {
      wait = this.merge.aggregate(this.key, bundle, await request.text(), Date.now());
    } catch (refusal) {
      return text(400, String(refusal));
    }
    const status = await this.schedule(bundle, wait);
    return new Response(this.merge.config_known(this.key), { status, headers: CONFIG_HEADERS });
  }

  /** An isolate's revision check: the config known, asked of the monitor first when stale. */
  async config(bundle) {
    let ask;
    try {
      ask = this.merge.config_ask(this.key, bundle, Date.now());
    } catch (refusal) {
      return text(400, String(refusal));
    }
    if (ask) {
      const asking = this.askMonitor(bundle);
      this.asking = asking;
      asking.finally(() => {
        if (this.asking === asking) this.asking = null;
      });
    }
    // Checks that come while the monitor is asked wait for its answer.
    if (this.asking !== null) await this.asking;
    const known = this.merge.config_known(this.key);
    return known ? new Response(known, { status: 200, headers: CONFIG_HEADERS }) : new Response(null, { status: 204 });
  }

  /** Asks the monitor for the committed config (read-only: no KV read, no lock); never throws. */
  async askMonitor(bundle) {
    try {
      const resp = await monitor(this.env, bundle).fetch(MONITOR_CONFIG_URL, { headers: { [MONITOR_BUNDLE_HEADER]: bundle } });
      const answer = await resp.text();
      if (resp.ok) this.merge.config_learn(this.key, bundle, answer, Date.now());
      else log("config_ask_failed", { bundle, detail: `the monitor answered ${resp.status}` });
    } catch (e) {
      log("config_ask_failed", { bundle, detail: brief(e) });
    }
  }

  /** The next forward (started in `wait` ms if none is): resolves to its status. */
  schedule(bundle, wait) {
    if (this.next === null) {
      // Always after a timer, even of 0 ms: `this.next` is set before the forward starts.
      const next = new Promise((resolve) => setTimeout(resolve, wait)).then(() => {
        // From here on, new batches wait for the following forward.
        if (this.next === next) this.next = null;
        return this.forwardNow(bundle);
      });
      this.next = next;
    }
    return this.next;
  }

  /** Forwards everything merged so far; resolves to the status its senders get. */
  async forwardNow(bundle) {
    const { forward, settle, retry_in } = this.merge;
    const out = forward(this.key, Date.now());
    if (out === "") return 200;
    const newline = out.indexOf("\n");
    const seq = out.slice(0, newline);
    let detail = "";
    try {
      const resp = await monitor(this.env, bundle).fetch(MONITOR_INGEST_URL, {
        method: "POST",
        headers: { [MONITOR_BUNDLE_HEADER]: bundle, "content-type": "application/json" },
        body: out.slice(newline + 1),
      });
      const answer = await resp.text();
      if (resp.ok) {
        settle(this.key, seq, true);
        // The committed config rides on the answer: kept for every isolate answered next.
        this.merge.config_learn(this.key, bundle, answer, Date.now());
        return 200;
      }
      detail = `the monitor answered ${resp.status}`;
    } catch (e) {
      detail = brief(e);
    }
    const givenUp = settle(this.key, seq, false);
    log("health_forward_failed", { bundle, detail, given_up: givenUp });
    // What failed rides on the next forward, even if no batch comes to start one.
    const retry = retry_in(this.key, Date.now());
    if (retry >= 0) this.schedule(bundle, retry);
    return givenUp > 0 ? 503 : 202;
  }
}


/** The headers of an aggregator's answers that carry a config (`revision\ntext`). */
const CONFIG_HEADERS = { "content-type": "text/plain; charset=utf-8" };
