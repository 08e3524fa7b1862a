// The boot-time guard end to end, through the real worker (Miniflare: the edge's report path,
// the batch wire, the aggregators, the HealthMonitor's tracker and SQLite): each client's
// first boot_ms reaches the verdict, the status shows each channel's median with its
// interval, and a canary that boots much slower than stable is cut by the guard, its reason
// naming the slowdown.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { copyDemoFiles, newClients, sendBoot, startWorker, until } from "./support/harness.mjs";

const TOKEN = "boot-time-admin-token-0123456789abcdef";
const bundle = "boots";
let w;

// The deployment's vars (wrangler.toml): loads reach the monitor with each isolate's flush
// (HEALTH_FLUSH_MS, 10 s), boots within a second, as in production.
before(async () => {
  w = await startWorker({ rollout: null, vars: { ADMIN_TOKEN: TOKEN } });
  await copyDemoFiles(w, bundle);
});
after(() => w.dispose());

async function status() {
  const r = await w.get(`/__canary/api/${bundle}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return JSON.parse(r.text);
}

test("boot times reach the verdict, and a canary booting 10x slower than stable is cut by the guard", async () => {
  // The health policy's defaults (hostile_networks 10 and all), at weight 50.
  await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50 }, bundle);
  // 100 shoppers (about 50 a channel), each its own network: stable boots in 100–300 ms,
  // the canary in 1,000–3,000 ms. Each boots twice (a reload): its first boot_ms counts.
  const { all } = await newClients(w, bundle, 100, "boot");
  const spread = (i, low) => low + ((i * 37) % 100) * (low / 50);
  const times = { stable: [], canary: [] };
  for (const [i, c] of all.entries()) {
    const bootMs = Math.round(spread(i, c.channel === "canary" ? 1000 : 100));
    times[c.channel].push(bootMs);
    for (const ms of [bootMs, 5]) {
      const r = await sendBoot(w, bundle, { ...c, bootMs: ms });
      assert.equal(r.status, 202, r.text);
    }
  }
  assert.ok(times.canary.length > 20 && times.stable.length > 40, JSON.stringify(times));
  const cut = await until(async () => {
    const s = await status();
    return s.config.weight === 0 && s.monitor.cut ? s : null;
  }, "the cut", 60_000);
  const { config, monitor } = cut;
  assert.equal(config.rollback.by, "auto");
  assert.match(config.rollback.reason, /^canary boots \d+% slower than stable on the median \(99% interval of the slowdown \d+% to \d+%\): median \d+ ms of \d+ canary clients vs \d+ ms of \d+ stable, slower than the tolerated 25% with 99% confidence/);
  const v = monitor.cut.verdict;
  assert.equal(v.family, "boot_time");
  assert.equal(v.state, "cut");
  // The verdict's boot times are the shoppers' first boots, one per client.
  const b = v.boot_time;
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
  };
  assert.ok(b.canary.clients <= times.canary.length && b.canary.clients >= 20, JSON.stringify(b));
  assert.ok(b.stable.clients <= times.stable.length && b.stable.clients >= 30, JSON.stringify(b));
  assert.ok(b.canary.median_ms >= 1000 && Math.abs(b.canary.median_ms - median(times.canary)) < 400, JSON.stringify(b));
  assert.ok(b.stable.median_ms >= 100 && Math.abs(b.stable.median_ms - median(times.stable)) < 40, JSON.stringify(b));
  assert.ok(b.canary.low_ms <= b.canary.median_ms && b.canary.median_ms <= b.canary.high_ms);
  assert.ok(b.slowdown_low > 0.25 && b.slowdown_low <= b.slowdown && b.slowdown <= b.slowdown_high, JSON.stringify(b));
  assert.ok(b.worse >= v.cut.threshold, `e-value ${b.worse} against ${v.cut.threshold}`);
  assert.equal(v.cut.threshold.toFixed(3), Math.log(4 / 0.01).toFixed(3), "four cut tests share α");
  // The rollback history names it too.
  assert.match(monitor.history.at(-1).reason, /canary boots \d+% slower/);
});
