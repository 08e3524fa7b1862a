// Cold starts of builds side by side: each variant is a build folder (as scripts/build
// makes it; copy one and edit its files to try a change without rebuilding) and one of
// bench/workerd.mjs's workers, started fresh (new Miniflare, new workerd) `--starts` times,
// interleaved; prints the medians of ready, first request, ready + first, and second
// request. `ready` moves ±15 ms between starts here: use 25 starts or more.
//
//   node bench/cold-ab.mjs [--starts 25] name=buildDir[:worker] ...
//   e.g. node bench/cold-ab.mjs now=build before=/tmp/old-build \
//          alone=build:"canary-edge (edge Worker alone)" js=build:"JS same logic"
// The default worker is "canary-edge": both Workers in one workerd, as the tests and
// `wrangler dev` run them.

import { resolve } from "node:path";
import { CLIENT, start, timedFetch, workers } from "./workerd.mjs";

const args = process.argv.slice(2);
const at = args.indexOf("--starts");
const STARTS = at >= 0 ? Number(args[at + 1]) : 25;
const variants = args
  .filter((a, i) => a.includes("=") && args[i - 1] !== "--starts")
  .map((a) => {
    const [name, spec] = a.split(/=(.*)/s);
    const [dir, worker = "canary-edge"] = spec.split(/:(.*)/s);
    const def = workers(resolve(dir))[worker];
    if (!def) throw new Error(`${name}: no worker "${worker}" (bench/workerd.mjs)`);
    return { name, def };
  });
if (!variants.length) throw new Error("usage: node bench/cold-ab.mjs [--starts n] name=buildDir[:worker] ...");

const runs = new Map(variants.map((v) => [v.name, []]));
for (let i = 0; i < STARTS; i++) {
  for (const v of variants) {
    const w = await start(v.def, { port: 8795 });
    try {
      const first = await timedFetch(w.url, CLIENT);
      const second = await timedFetch(w.url, CLIENT);
      if (first.res.status !== 200) throw new Error(`${v.name}: first response ${first.res.status}`);
      runs.get(v.name).push({ ready: w.readyMs, first: first.ms, cold: w.readyMs + first.ms, second: second.ms });
    } finally {
      await w.mf.dispose();
    }
  }
}
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`| variant | ready ms | first ms | cold ms | second ms |  (medians of ${STARTS} interleaved starts)\n|---|---:|---:|---:|---:|`);
for (const [name, rs] of runs) {
  const m = (k) => median(rs.map((r) => r[k])).toFixed(1);
  console.log(`| ${name} | ${m("ready")} | ${m("first")} | ${m("cold")} | ${m("second")} |`);
}
