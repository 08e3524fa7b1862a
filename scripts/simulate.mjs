// Simulated shoppers for demos and drills: each new client loads the floating SDK URL with
// a user key (so it gets a cohort and a cookie with its client id) from a network of its own
// (`CF-Connecting-IP` in 198.18.0.0/15, the benchmarking range: the edge counts one client
// per network, and `wrangler dev` keeps a header the client sends), boots the SDK (the boot
// signal of sdk/report-boot.js) unless its channel is listed in --no-boot, and reports an
// SDK error with probability --canary-errors (stable ones: --stable-errors), with its
// cookie, the way the demo SDK's beacons do. Bounded: --clients clients, or with --seconds,
// --rate new clients a second for that long, then it stops.
//
//   node scripts/simulate.mjs <bundle> --url http://127.0.0.1:8787 [--clients 300]
//        [--seconds 60 --rate 20] [--canary-errors 0.3] [--stable-errors 0.0]
//        [--no-boot canary|stable|canary,stable] [--concurrency 8]

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
const seconds = Number(opt("seconds", 0));
const rate = Number(opt("rate", 20));
const clients = seconds > 0 ? Math.round(seconds * rate) : Number(opt("clients", 300));
const started = Date.now();
const errorRate = { canary: Number(opt("canary-errors", 0.3)), stable: Number(opt("stable-errors", 0)) };
const concurrency = Number(opt("concurrency", 8));
// Channels whose SDK never boots (a canary whose entry script does not parse: --no-boot canary).
const noBoot = new Set(String(opt("no-boot", "")).split(",").filter(Boolean));
const run = `${Date.now().toString(36)}`;

const tally = { stable: { requests: 0, reports: 0, boots: 0 }, canary: { requests: 0, reports: 0, boots: 0 }, other: 0 };
/** The i-th shopper's network: 198.18.0.0/15 has 131,072 addresses. */
const ipOf = (i) => `198.${18 + ((i >> 16) & 1)}.${(i >> 8) & 255}.${i & 255}`;
/** A beacon to the edge's report endpoint, as the SDK sends it; whether it was counted. */
async function beacon(cookie, ip, body) {
  const r = await fetch(`${base}/__canary/report`, {
    method: "POST",
    headers: { "content-type": "text/plain", cookie, "cf-connecting-ip": ip },
    body: JSON.stringify(body),
  });
  return (await r.json().catch(() => ({}))).counted === true;
}
let next = 0;
async function client() {
  while (next < clients) {
    const i = next++;
    if (seconds > 0) {
      // Paced: client i arrives at i / rate seconds.
      const wait = started + (i / rate) * 1000 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const ip = ipOf(i);
    const res = await fetch(`${base}/${bundle}/sdk.js`, { headers: { "x-user-key": `sim-${run}-${i}`, "cf-connecting-ip": ip } });
    const cookie = (res.headers.get("set-cookie") ?? "").split(";")[0];
    await res.arrayBuffer();
    const channel = res.headers.get("x-canary-channel");
    const version = res.headers.get("x-canary-version");
    if (!tally[channel]) { tally.other++; continue; }
    tally[channel].requests++;
    if (!noBoot.has(channel) && (await beacon(cookie, ip, { bundle, version, kind: "boot", boot_ms: 40 + Math.round(Math.random() * 200) }))) {
      tally[channel].boots++;
    }
    if (Math.random() < errorRate[channel]) {
      if (await beacon(cookie, ip, { bundle, version, kind: "simulated", message: "scripts/simulate" })) tally[channel].reports++;
    }
  }
}
await Promise.all(Array.from({ length: concurrency }, client));
console.log(`simulated ${clients} clients of ${bundle}: ` +
  `stable ${tally.stable.requests} loads / ${tally.stable.boots} boots / ${tally.stable.reports} error reports, ` +
  `canary ${tally.canary.requests} loads / ${tally.canary.boots} boots / ${tally.canary.reports} error reports (counted)`);
