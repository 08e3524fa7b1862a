// Rollback propagation (issue 25, item 3): how long after a cut every isolate that serves
// traffic serves stable, with KV reads lagging 60 s in every isolate: through the push (the
// config on the answers to health batches, and the revision check an isolate makes while it
// serves a canary) and through KV alone, side by side in one workerd.
//
//   node bench/propagation.mjs [--quick] [--copies 12] [--kv-copies 6] [--rounds 3]
//                              [--rate 1] [--lag 60000] [--out file.json]
//
// Real routing isolates: `--copies` copies of the built edge Worker bound to the control
// Worker's HealthMonitor and HealthAggregator classes, and `--kv-copies` copies with no
// control plane bindings (the KV path only), each its own isolate behind the test fault
// injector's lagging KV (tests/support/edges.mjs). Each copy serves `--rate` requests a
// second from canary-cohort cookies, with production's timeline (CONFIG_TTL_MS 5 s,
// HEALTH_FLUSH_MS 10 s). The copies start one after another over the lag, so that at a cut
// their KV copies are of every age from 0 to the lag, as KV's locations' caches would be.
//
// A round: an operator's rollback through the admin API (`POST /__canary/api/demo/rollback`),
// its time read from the history entry; per copy, the time to its first answer serving
// stable, and whether it served the canary again after that; then the weight back to 50
// and, once every copy serves the canary again, the next round. Figures: p50/p99/max per
// path over every round's copies. `--quick`: 1 round, 4 + 2 copies, a 10 s lag (proves it
// runs; figures not comparable).

import { writeFileSync } from "node:fs";
import { cookiesByChannel, cookiesForEveryCohort, sleep, startWorker, until } from "../tests/support/harness.mjs";
import { edgeCopies, propagation, startTraffic, summary } from "../tests/support/edges.mjs";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const COPIES = Number(opt("--copies", quick ? 4 : 12));
const KV_COPIES = Number(opt("--kv-copies", quick ? 2 : 6));
const ROUNDS = Number(opt("--rounds", quick ? 1 : 3));
const RATE = Number(opt("--rate", 1));
const LAG_MS = Number(opt("--lag", quick ? 10_000 : 60_000));
const OUT = opt("--out", null);
const TOKEN = "bench-admin-token-0123456789abcdef";
const TTL_MS = 5_000;

const PUSH = Array.from({ length: COPIES }, (_, i) => `edge-${i + 1}`);
const KV_ONLY = Array.from({ length: KV_COPIES }, (_, i) => `kv-${i + 1}`);
const ALL = [...PUSH, ...KV_ONLY];

const log = (...a) => console.error(...a);

const w = await startWorker({
  rollout: { stable: "1.0.0", canary: "1.1.0", weight: 50 },
  vars: { ADMIN_TOKEN: TOKEN },
  extraWorkers: [...edgeCopies(PUSH), ...edgeCopies(KV_ONLY, { push: false })],
});
let traffic = null;
try {
  await w.setFaults({ kvLagMs: LAG_MS });
  const fetchers = {};
  for (const name of ALL) fetchers[name] = await w.mf.getWorker(name);
  const cookies = await cookiesForEveryCohort(w);
  const { canary } = await cookiesByChannel(w, "demo", cookies);

  async function api(path, body) {
    const r = await w.get(`/__canary/api/demo${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.text}`);
    return JSON.parse(r.text);
  }

  // Copies start one after another over the lag (their KV copies then have every age).
  const startAfterMs = {};
  const order = [...ALL].sort(() => Math.random() - 0.5);
  order.forEach((name, i) => (startAfterMs[name] = Math.round((i * LAG_MS) / ALL.length)));
  traffic = startTraffic(fetchers, { bundle: "demo", cookies: canary, everyMs: 1000 / RATE, startAfterMs });
  log(`# ${COPIES} push copies, ${KV_COPIES} KV-only copies, ${RATE} request(s)/s each, KV lagging ${LAG_MS} ms; starting over ${LAG_MS} ms`);
  await until(() => traffic.allCanary(ALL), "every copy serving the canary", LAG_MS + 30_000);

  const rounds = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const since = Date.now();
    await sleep(5_000);
    const answer = await api("/rollback", { reason: `propagation bench, round ${round}` });
    if (answer.config.weight !== 0) throw new Error("the rollback did not write weight 0");
    const cutAt = Date.parse((await api("")).monitor.history.at(-1).at);
    await until(() => traffic.allStable(PUSH, cutAt), "every push copy on stable", 30_000);
    const pushDone = Date.now();
    await until(() => traffic.allStable(KV_ONLY, cutAt), "every KV-only copy on stable", LAG_MS + TTL_MS + 30_000);
    // A few more seconds: a copy that went back would show it.
    await sleep(3_000);
    const push = propagation(traffic.log, PUSH, cutAt, { sinceMs: since });
    const kvOnly = propagation(traffic.log, KV_ONLY, cutAt, { sinceMs: since });
    rounds.push({ round, cut_at: new Date(cutAt).toISOString(), push, kv_only: kvOnly });
    log(`# round ${round}: push ${JSON.stringify(summary(push.map((c) => c.ms)))} ms (all within ${pushDone - cutAt} ms), KV only ${JSON.stringify(summary(kvOnly.map((c) => c.ms)))} ms`);
    const wentBack = [...push, ...kvOnly].filter((c) => c.wentBack > 0);
    if (wentBack.length) log(`#   went back to the canary after switching: ${JSON.stringify(wentBack)}`);
    if (round < ROUNDS) {
      await api("/weight", { weight: 50 });
      // Push copies learn it from their next batch's answer (10 s); KV-only ones after the lag.
      await until(() => traffic.allCanary(ALL), "every copy back on the canary", LAG_MS + TTL_MS + 30_000);
    }
  }
  await traffic.stop();

  const all = (arm) => rounds.flatMap((r) => r[arm].map((c) => c.ms));
  const rates = rounds.flatMap((r) => [...r.push, ...r.kv_only].map((c) => c.rate));
  const result = {
    copies: COPIES,
    kv_copies: KV_COPIES,
    rounds: ROUNDS,
    requests_per_second: RATE,
    measured_rate_min: Math.min(...rates),
    kv_lag_ms: LAG_MS,
    config_ttl_ms: TTL_MS,
    push: summary(all("push")),
    kv_only: summary(all("kv_only")),
    went_back: rounds.flatMap((r) => [...r.push, ...r.kv_only]).filter((c) => c.wentBack > 0).length,
    detail: rounds,
  };
  console.log(JSON.stringify({ push: result.push, kv_only: result.kv_only, went_back: result.went_back, kv_lag_ms: LAG_MS, requests_per_second: RATE }));
  log("");
  log(`| path | isolates (copies x rounds) | p50 | p99 | max |`);
  log(`|---|---|---|---|---|`);
  for (const [name, s] of [["push + revision check", result.push], ["KV only", result.kv_only]]) {
    log(`| ${name} | ${s.n} | ${(s.p50 / 1000).toFixed(1)} s | ${(s.p99 / 1000).toFixed(1)} s | ${(s.max / 1000).toFixed(1)} s |`);
  }
  if (OUT) writeFileSync(OUT, JSON.stringify(result, null, 2));
} finally {
  await traffic?.stop();
  await w.dispose();
}
