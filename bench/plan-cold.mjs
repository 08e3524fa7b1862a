// The routing module's calls for one SDK request (`plan`, then `served`), timed in Node with
// the CPU caches evicted before each request, as a real request leaves them: a served
// request runs the runtime's HTTP, Request, Response and cache code between two routing
// calls. Builds side by side in one process, interleaved in blocks; medians of the blocks.
//
//   node bench/plan-cold.mjs [--blocks 40] [--evict-mb 16] [--warm] dir[=label] ...
//
// `dir` is a build folder (its edge/router/); `--warm` skips the eviction (the loop figure).
// Scenarios: a first visit (no cookie, no fingerprint: a random cohort, a new client id, the
// cookie's MAC, a counted load) and a returning client (the cookie the first visit was
// given). Not in bench/run: it times the routing module alone; bench/handler-cpu.mjs is the
// whole handler's figure. Node's V8 is not workerd's, and the eviction is a stand-in for a
// request's work: compare builds within one run, not runs.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const BLOCKS = Number(opt("--blocks", 40));
const EVICT_MB = args.includes("--warm") ? 0 : Number(opt("--evict-mb", 16));
const BLOCK = 200;
const builds = args.filter((a, i) => !a.startsWith("--") && !["--blocks", "--evict-mb"].includes(args[i - 1]));
if (!builds.length) throw new Error("usage: node bench/plan-cold.mjs [--blocks n] [--evict-mb n] [--warm] dir[=label] ...");

const ROLLOUT = JSON.stringify({ stable: "1.0.0", canary: "1.1.0", weight: 30 });
const VARS = JSON.stringify({ COHORTS: "10", COHORT_SALT: "bench-salt", COHORT_SECRET: "bench-secret", CONFIG_TTL_MS: "5000" });
const CLIENT_IP = "+203.0.113.77";

/** One build's router, configured, with its config read and a returning client's cookie. */
async function load(spec) {
  const [dir, label = dir] = spec.split("=");
  const router = await import(`${pathToFileURL(resolve(dir, "edge/router/router.js"))}?${encodeURIComponent(label)}`);
  router.initSync({ module: new WebAssembly.Module(readFileSync(resolve(dir, "edge/router/router_bg.wasm"))) });
  router.configure(VARS);
  const protocol = JSON.parse(router.protocol());
  const at = (fields) => Object.fromEntries(fields.map((f, i) => [f, i]));
  const P = at(protocol.plan.fields);
  const A = at(protocol.answers.A.fields);
  const request = (values) => {
    const fields = protocol.plan.fields.map(() => "-");
    for (const [k, v] of Object.entries(values)) fields[P[k]] = v;
    return fields;
  };
  // The entry module's loop (js/index.js `handle`), with the config and manifests answered.
  const visit = (fields) => {
    for (let step = 0; step < 4; step++) {
      fields[P.now_ms] = String(Date.now());
      const answer = router.plan(fields.join("\n")).split("\n");
      switch (answer[0]) {
        case "A":
          if (answer[A.tally]) router.served(Number(answer[A.tally]), 0, Date.now());
          return answer;
        case "C":
          router.record_config(answer[1], "value", ROLLOUT, Date.now());
          fields[P.config_read] = "1";
          break;
        case "M":
          fields[P.manifest] = `+${router.record_manifest(answer[1], answer[2], "missing", "").split("\n")[0]}`;
          break;
        default:
          throw new Error(`${label}: answer ${answer.join("|")}`);
      }
    }
    throw new Error(`${label}: the plan did not settle`);
  };
  const first = { method: "GET", url: "https://x.test/demo/sdk.js", config_read: "0", client_ip: CLIENT_IP, identity: "1", identity_client_ip: CLIENT_IP };
  const setCookie = visit(request(first)).find((line) => line.startsWith("cohort="));
  const returning = { ...first, cookie: `+${setCookie.split(";")[0]}`, identity: "0", identity_client_ip: "-" };
  let calls = 0;
  const run = (values) => {
    visit(request(values));
    // The outbox's timer, as the entry's: batches leave, the isolate's state stays bounded.
    if ((++calls & 1023) === 0) router.flush(Date.now());
  };
  return { label, scenarios: { first: () => run(first), returning: () => run(returning) }, ns: { first: [], returning: [] } };
}

const evicted = new Float64Array((EVICT_MB * 1024 * 1024) / 8);
/** Touches a cache line of every 64 bytes of `evicted`: what the caches held is gone. */
function evict() {
  let sum = 0;
  for (let i = 0; i < evicted.length; i += 8) sum += evicted[i]++;
  return sum;
}

const loaded = [];
for (const spec of builds) loaded.push(await load(spec));
for (const b of loaded) for (const f of Object.values(b.scenarios)) for (let i = 0; i < 3000; i++) f(); // JIT, tier-up
for (let block = 0; block < BLOCKS; block++) {
  for (const b of loaded) {
    for (const [name, f] of Object.entries(b.scenarios)) {
      let ns = 0;
      for (let i = 0; i < BLOCK; i++) {
        evict();
        const t = process.hrtime.bigint();
        f();
        ns += Number(process.hrtime.bigint() - t);
      }
      b.ns[name].push(ns / BLOCK);
    }
  }
}
const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
console.log(`plan + served per request, ns (median of ${BLOCKS} blocks of ${BLOCK}; ${EVICT_MB ? `${EVICT_MB} MB evicted before each` : "warm"}):`);
for (const b of loaded) {
  const cells = Object.keys(b.ns).map((name) => {
    const m = median(b.ns[name]);
    return `${name} ${m.toFixed(0).padStart(6)} (${(m / median(loaded[0].ns[name])).toFixed(3)}x)`;
  });
  console.log(`${b.label.padEnd(16)} ${cells.join("   ")}`);
}
