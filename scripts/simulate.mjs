// Simulated shoppers for demos and drills: each new client loads the floating SDK URL with
// a user key (so it gets a cohort and a cookie), and clients served the canary report an
// SDK error with probability --canary-errors (stable ones with --stable-errors), the way the
// demo SDK's reporter would. Bounded: --clients requests, then it stops.
//
//   node scripts/simulate.mjs <bundle> --url http://127.0.0.1:8787 [--clients 300]
//        [--canary-errors 0.3] [--stable-errors 0.0] [--concurrency 8]

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const bundle = args.find((a, i) => !a.startsWith("--") && !(i > 0 && args[i - 1].startsWith("--")));
const base = (opt("url", process.env.CANARY_URL) ?? "").replace(/\/+$/, "");
if (!bundle || !base) {
  console.error("usage: node scripts/simulate.mjs <bundle> --url <worker URL> [--clients N] [--canary-errors p] [--stable-errors p]");
  process.exit(2);
}
const clients = Number(opt("clients", 300));
const errorRate = { canary: Number(opt("canary-errors", 0.3)), stable: Number(opt("stable-errors", 0)) };
const concurrency = Number(opt("concurrency", 8));
const run = `${Date.now().toString(36)}`;

const tally = { stable: { requests: 0, reports: 0 }, canary: { requests: 0, reports: 0 }, other: 0 };
let next = 0;
async function client() {
  while (next < clients) {
    const i = next++;
    const res = await fetch(`${base}/${bundle}/sdk.js`, { headers: { "x-user-key": `sim-${run}-${i}` } });
    await res.arrayBuffer();
    const channel = res.headers.get("x-canary-channel");
    const version = res.headers.get("x-canary-version");
    if (!tally[channel]) { tally.other++; continue; }
    tally[channel].requests++;
    if (Math.random() < errorRate[channel]) {
      const r = await fetch(`${base}/__canary/report`, {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: JSON.stringify({ bundle, version, kind: "simulated", message: "scripts/simulate" }),
      });
      if (r.status === 202) tally[channel].reports++;
    }
  }
}
await Promise.all(Array.from({ length: concurrency }, client));
console.log(`simulated ${clients} clients of ${bundle}: ` +
  `stable ${tally.stable.requests} loads / ${tally.stable.reports} error reports, ` +
  `canary ${tally.canary.requests} loads / ${tally.canary.reports} error reports`);
