// Soak with weight changes: a bounded load test against the built worker in workerd.
//
// A few hundred simulated clients (default 300) that keep their cohort cookie load the floating
// SDK URL concurrently, one request at a time per client (and now and then the chunk pinned to the version they got),
// while the weight in KV changes every second: 0 → 10 → 50 → 100 → 0 → ... Each rise runs on a
// new canary version, and each 0 is a rollback of the version that was rising. Loopback only
// (Miniflare's in-process dispatchFetch), fixed duration, stops by itself.
//
//   SOAK_SECONDS   run time in seconds (default 20)
//   SOAK_CLIENTS   simulated clients (default 300)
//   SOAK_CONCURRENCY  requests in flight at once (default 48)
//   SOAK_TTL_MS    CONFIG_TTL_MS of the worker (default 500): how long the isolate trusts its
//                  copy of the config, so how late a rollback may be seen
//
// Checks (all responses, all clients):
// - zero 5xx (and no request that fails to get an answer);
// - every response's X-Canary-Version matches the version in its body, its channel matches
//   the version (stable = 1.0.0, canary = the live canary), its X-Cohort is in range and is the
//   client's own for its whole life (a cookie once set is never replaced);
// - no flip: within one canary version's rise (10 → 50 → 100), a client that got the canary
//   never gets stable again before the rollback write starts;
// - rollback within the TTL: every floating request that starts CONFIG_TTL_MS after a
//   weight-0 write finished (and ends before the next write starts) is stable; after the
//   run, every client is checked once more;
// - the worker and its Durable Object never write the config themselves (no rollout runs);
// - each weight, once its write is older than the TTL, puts exactly floor(weight/10) of the
//   observed cohorts on the canary, and no cohort on both sides;
// - a pinned chunk is always the version its entry named (no version skew).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { CHROME_JA4, FIREFOX_JA4, bodyVersion, cookiePair, fixtureObjects, startWorker, sleep } from "./support/harness.mjs";

const SECONDS = Number(process.env.SOAK_SECONDS ?? 20);
const CLIENTS = Number(process.env.SOAK_CLIENTS ?? 300);
// CONFIG_TTL_MS 500 by default (wrangler.toml: 5,000): the weight changes every second, and
// the checks need windows longer than the TTL ("a weight older than the TTL puts exactly
// ... cohorts on the canary"); with the deployed TTL only the rollback bound would be left.
const TTL_MS = Number(process.env.SOAK_TTL_MS ?? 500);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 48);
const COHORTS = 10;
const STABLE = "1.0.0";
// Each rise uses the next canary version, so the rotation (which cohorts go first) changes too.
const CANARIES = ["1.1.0", "1.2.0", "1.3.0"];
const WEIGHTS = [0, 10, 50, 100];
const JA4S = [CHROME_JA4, CHROME_JA4, CHROME_JA4, FIREFOX_JA4, "t13d1517h2_8daaf6152771_b1ff8ab2d16f"];

const now = () => performance.now();

let w;
before(async () => {
  assert.ok(SECONDS > 0 && CLIENTS > 0 && TTL_MS >= 0, "SOAK_SECONDS, SOAK_CLIENTS, SOAK_TTL_MS");
  w = await startWorker({
    vars: { CONFIG_TTL_MS: String(TTL_MS) },
    rollout: { stable: STABLE, canary: CANARIES[0], weight: 0 },
  });
  // Versions 1.2.0 and 1.3.0: copies of 1.1.0 that say their own version.
  for (const [key, bytes, contentType] of fixtureObjects()) {
    if (!key.startsWith("demo/1.1.0/")) continue;
    for (const v of CANARIES.slice(1)) {
      const text = bytes.toString("utf8").replaceAll("1.1.0", v);
      await w.r2.put(key.replace("/1.1.0/", `/${v}/`), text, { httpMetadata: { contentType } });
    }
  }
});
after(() => w?.dispose());

/** A first-visit identity: a user key, a fingerprint and network, or nothing (random). */
function identity(i) {
  const ip = `${10 + (i % 200)}.${(i * 7) % 256}.${(i * 13) % 256}.${(i % 250) + 1}`;
  switch (i % 4) {
    case 0:
      return { userKey: `soak-user-${i}` };
    case 1:
    case 2:
      return { ja4: JA4S[i % JA4S.length], ip };
    default:
      return {};
  }
}

test(`soak: ${CLIENTS} clients for ${SECONDS} s while the weight changes every second`, { timeout: (SECONDS + 120) * 1000 }, async (t) => {
  const writes = []; // { start, end, weight, canary, phase, cycle }
  const problems = [];
  const problem = (m) => {
    if (problems.length < 50) problems.push(m);
  };
  const stats = { requests: 0, floating: 0, pinned: 0, status5xx: 0, otherStatus: 0, thrown: 0, flips: 0, rounds: 0 };
  const clients = Array.from({ length: CLIENTS }, (_, i) => ({
    i,
    first: identity(i),
    cookie: null,
    cohort: null,
    busy: false,
    visits: [], // floating responses: { start, end, channel, version, cohort }
  }));

  // ------------------------------------------------------------ the weight changer
  const started = now();
  const deadline = started + SECONDS * 1000;
  let stop = false;
  const changer = (async () => {
    for (let k = 1; !stop; k++) {
      const at = started + k * 1000;
      if (at >= deadline) break;
      await sleep(Math.max(0, at - now()));
      if (stop) break;
      const cycle = Math.floor(k / WEIGHTS.length);
      const phase = k % WEIGHTS.length;
      const weight = WEIGHTS[phase];
      // A rollback (weight 0) keeps the version that was rising; the next rise brings a new one.
      const canary = phase === 0 ? CANARIES[(cycle - 1) % CANARIES.length] : CANARIES[cycle % CANARIES.length];
      const rec = { start: now(), weight, canary, phase, cycle };
      await w.setRollout({ stable: STABLE, canary, weight });
      rec.end = now();
      writes.push(rec);
    }
  })();

  // ------------------------------------------------------------ the clients
  async function visit(c, round) {
    const opts = c.cookie ? { cookie: c.cookie } : { ...c.first };
    const start = now();
    let r;
    try {
      r = await w.get("/demo/sdk.js", opts);
    } catch (e) {
      stats.thrown++;
      problem(`client ${c.i}: request failed: ${e.message}`);
      return;
    }
    const end = now();
    stats.requests++;
    stats.floating++;
    if (r.status >= 500) {
      stats.status5xx++;
      problem(`client ${c.i}: ${r.status} ${r.text}`);
      return;
    }
    if (r.status !== 200) {
      stats.otherStatus++;
      problem(`client ${c.i}: ${r.status} ${r.text}`);
      return;
    }
    const version = r.headers.get("x-canary-version");
    const channel = r.headers.get("x-canary-channel");
    const cohort = Number(r.headers.get("x-cohort"));
    if (bodyVersion(r.text) !== version) problem(`client ${c.i}: header ${version}, body ${bodyVersion(r.text)}`);
    if (!(Number.isInteger(cohort) && cohort >= 0 && cohort < COHORTS)) problem(`client ${c.i}: cohort ${r.headers.get("x-cohort")}`);
    if (channel === "stable" ? version !== STABLE : !(channel === "canary" && CANARIES.includes(version))) {
      problem(`client ${c.i}: channel ${channel} with version ${version}`);
    }
    const set = cookiePair(r.headers);
    if (c.cookie === null) {
      if (!set) problem(`client ${c.i}: first visit without a cookie`);
      c.cookie = set;
      c.cohort = cohort;
    } else {
      if (set) problem(`client ${c.i}: its valid cookie was replaced by ${set}`);
      if (cohort !== c.cohort) problem(`client ${c.i}: cohort moved ${c.cohort} -> ${cohort}`);
    }
    c.visits.push({ start, end, channel, version, cohort });

    // Now and then the page loads the chunk pinned to the entry's version.
    if ((round + c.i) % 4 === 0) {
      let p;
      try {
        p = await w.get(`/demo@${version}/chunk.js`, { cookie: c.cookie });
      } catch (e) {
        stats.thrown++;
        problem(`client ${c.i}: chunk request failed: ${e.message}`);
        return;
      }
      stats.requests++;
      stats.pinned++;
      if (p.status >= 500) stats.status5xx++;
      if (p.status !== 200 || bodyVersion(p.text) !== version || p.headers.get("x-canary-version") !== version) {
        problem(`client ${c.i}: chunk of ${version}: ${p.status} ${p.headers.get("x-canary-version")} ${bodyVersion(p.text)}`);
      }
    }
  }

  // CONCURRENCY requests in flight; each takes the next client in turn, so every client
  // visits about equally often, one request at a time, spread over the whole run.
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (now() < deadline) {
        const n = next++;
        const c = clients[n % CLIENTS];
        if (c.busy) continue;
        c.busy = true;
        await visit(c, Math.floor(n / CLIENTS));
        c.busy = false;
      }
    }),
  );
  stats.rounds = Math.floor(next / CLIENTS);
  stop = true;
  await changer;
  const loadEnd = now();

  // ------------------------------------------------------------ final rollback sweep
  const finalCanary = writes.at(-1)?.canary ?? CANARIES[0];
  const final = { start: now(), weight: 0, canary: finalCanary, phase: 0, cycle: -1 };
  await w.setRollout({ stable: STABLE, canary: finalCanary, weight: 0 });
  final.end = now();
  await sleep(TTL_MS);
  let sweptStable = 0;
  await Promise.all(
    clients.map(async (c) => {
      const r = await w.get("/demo/sdk.js", c.cookie ? { cookie: c.cookie } : c.first);
      stats.requests++;
      if (r.status >= 500) stats.status5xx++;
      if (r.status === 200 && r.headers.get("x-canary-channel") === "stable" && bodyVersion(r.text) === STABLE) sweptStable++;
      else problem(`client ${c.i}: ${TTL_MS} ms after the final rollback: ${r.status} ${r.headers.get("x-canary-channel")}`);
    }),
  );

  // ------------------------------------------------------------ analysis
  // Flips: within a rise (from its first write to the start of its rollback write), a client
  // that got that rise's canary version and later gets stable, on a request that ended before
  // the rollback write started.
  const rollbacks = writes.filter((x) => x.phase === 0);
  for (const c of clients) {
    let onCanary = null; // the canary version this client was last served, within the current rise
    for (const v of c.visits) {
      if (v.channel === "canary") {
        onCanary = v.version;
        continue;
      }
      if (onCanary === null) continue;
      // Any weight drop or version change that started before this stable answer ended
      // explains it; only the writes between the canary answer and now matter.
      const lowered = writes.some((x) => (x.weight === 0 || x.canary !== onCanary) && x.start <= v.end && x.start >= startOfRise(onCanary, v.start));
      if (!lowered) {
        stats.flips++;
        problem(`client ${c.i} (cohort ${c.cohort}) flipped canary ${onCanary} -> stable at +${(v.start - started).toFixed(0)} ms`);
      }
      onCanary = null;
    }
  }
  function startOfRise(version, before) {
    // The latest write that started this version's rise before `before`.
    const rises = writes.filter((x) => x.phase === 1 && x.canary === version && x.start <= before);
    return rises.length ? rises.at(-1).start : -Infinity;
  }

  // Rollback lag: after each weight-0 write, how long canary answers kept coming, measured
  // from the end of the write to the start of the request; and every request that starts a
  // TTL after the write must be stable.
  let maxLag = 0;
  let clientsCheckedAfterRollback = 0;
  const ends = [...writes, final].sort((a, b) => a.start - b.start);
  for (const rb of rollbacks) {
    const next = ends.find((x) => x.start > rb.start);
    const until = next ? next.start : Infinity;
    const seen = new Set();
    for (const c of clients) {
      for (const v of c.visits) {
        // Only requests wholly before the next write: one sent just before it may be
        // delivered after it (workerd queues requests under load) and get the next rise.
        if (v.start < rb.end || v.end > until) continue;
        if (v.channel === "canary") {
          maxLag = Math.max(maxLag, v.start - rb.end);
          if (v.start >= rb.end + TTL_MS) problem(`client ${c.i}: canary ${(v.start - rb.end).toFixed(0)} ms after the rollback write`);
        } else if (v.start >= rb.end + TTL_MS) {
          seen.add(c.i);
        }
      }
    }
    clientsCheckedAfterRollback += seen.size;
  }

  // Each weight once its write is older than the TTL: exactly floor(weight/10) canary cohorts.
  let windowsChecked = 0;
  for (const wr of writes) {
    const next = ends.find((x) => x.start > wr.start);
    const from = wr.end + TTL_MS;
    const until = next ? next.start : loadEnd;
    const canary = new Set();
    const stable = new Set();
    for (const c of clients) {
      for (const v of c.visits) {
        if (v.start >= from && v.end <= until) (v.channel === "canary" ? canary : stable).add(v.cohort);
      }
    }
    if (canary.size + stable.size === 0) continue;
    windowsChecked++;
    const want = Math.floor((wr.weight * COHORTS) / 100);
    const both = [...canary].filter((x) => stable.has(x));
    if (both.length) problem(`weight ${wr.weight} (${wr.canary}): cohorts ${both} on both sides`);
    if (canary.size > want) problem(`weight ${wr.weight} (${wr.canary}): ${canary.size} canary cohorts, want ${want}`);
    if (canary.size + stable.size === COHORTS && canary.size !== want) problem(`weight ${wr.weight} (${wr.canary}): ${canary.size} canary cohorts, want ${want}`);
  }

  // No rollout runs here: the weight is the operator's alone. A write by the worker or its
  // Durable Object would be the control plane overriding an operator (the writes above go
  // straight to KV, so they are not in this log).
  const ownWrites = await w.kvWrites("rollout/demo");
  for (const x of ownWrites) problem(`the worker wrote rollout/demo itself at +${(x.at - Date.now() + now() - started).toFixed(0)} ms: ${x.value}`);

  const duration = (loadEnd - started) / 1000;
  const cohortsSeen = new Set(clients.map((c) => c.cohort)).size;
  const summary =
    `soak: ${stats.requests} requests (${stats.floating} floating, ${stats.pinned} pinned, ` +
    `${(stats.requests / duration).toFixed(0)}/s), ${CLIENTS} clients in ${cohortsSeen} cohorts, ` +
    `${writes.length + 1} weight changes (${rollbacks.length + 1} rollbacks), ~${stats.rounds} visits per client, ` +
    `${duration.toFixed(1)} s, CONFIG_TTL_MS ${TTL_MS}; 5xx: ${stats.status5xx}, failed requests: ${stats.thrown}, ` +
    `other statuses: ${stats.otherStatus}, flips canary->stable: ${stats.flips}; ` +
    `rollback: longest canary answer ${maxLag.toFixed(0)} ms after the write, ` +
    `${clientsCheckedAfterRollback} client checks stable after the TTL, final sweep ${sweptStable}/${CLIENTS} stable; ` +
    `${windowsChecked} weight windows checked`;
  t.diagnostic(summary);

  assert.deepEqual(problems, [], problems.join("\n"));
  assert.equal(stats.status5xx, 0, "no 5xx");
  assert.equal(stats.thrown, 0, "every request answered");
  assert.equal(stats.flips, 0, "no canary -> stable flips while the weight rises");
  assert.equal(sweptStable, CLIENTS, "every client on stable within the TTL of the final rollback");
  assert.ok(writes.length >= Math.min(3, SECONDS - 1), `weight changed ${writes.length} times`);
  assert.ok(maxLag < TTL_MS, `rollback seen within the TTL (longest ${maxLag.toFixed(0)} ms)`);
});
