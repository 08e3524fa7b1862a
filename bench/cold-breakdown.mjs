// Where canary-edge's cold start goes: the built entry against stripped-down entries that
// stop after each stage, and the reference workers, each in a fresh Miniflare with the
// same bindings (no Durable Object, so Miniflare's namespace setup is not in `ready`).
//
//   node bench/cold-breakdown.mjs [--starts 7] [--build dir]
//
// Stages (entries written to target/cold-breakdown/, next to a copy of the routing module):
//   no wasm       answer "ok" from JS (the baseline of the two below)
//   instantiate   import the routing wasm and instantiate it; answer "ok"
//   + configure   and, on the first request, configure() from the vars and constants()
//   full          the built worker (build/index.js): config read, R2, cache, counting
// `first` is the first request's time: module evaluation happens with it (workerd creates
// the isolate on its first event), so the stages' first requests differ by the work added.

import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CLIENT, ROOT, start, timedFetch, workers } from "./workerd.mjs";
import { workerModules } from "../tests/support/modules.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const STARTS = Number(opt("--starts", 7));
const BUILD = resolve(opt("--build", join(ROOT, "build")));
const WORK = join(ROOT, "target/cold-breakdown");

const ENTRIES = {
  "no wasm": `export default { fetch: () => new Response("ok") };
`,
  instantiate: `import wasm from "./router/router_bg.wasm";
import { initSync } from "./router/router.js";
initSync({ module: wasm });
export default { fetch: () => new Response("ok") };
`,
  configure: `import wasm from "./router/router_bg.wasm";
import { initSync, configure, constants } from "./router/router.js";
initSync({ module: wasm });
let configured = false;
export default {
  fetch(request, env) {
    if (!configured) {
      const vars = {};
      for (const name in env) if (typeof env[name] === "string") vars[name] = env[name];
      configure(JSON.stringify(vars));
      constants();
      configured = true;
    }
    return new Response("ok");
  },
};
`,
};

function stage(name) {
  const dir = join(WORK, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  cpSync(join(BUILD, "edge", "router"), join(dir, "router"), { recursive: true });
  writeFileSync(join(dir, "index.js"), ENTRIES[name]);
  return { modules: workerModules(dir), modulesRoot: dir };
}

const refs = workers(BUILD);
const defs = {
  "no wasm": stage("no wasm"),
  instantiate: stage("instantiate"),
  "+ configure": stage("configure"),
  "full (no HEALTH binding)": refs["canary-edge (edge Worker alone)"],
  "JS same logic": refs["JS same logic"],
  "JS floor": refs["JS floor"],
};
const runs = Object.fromEntries(Object.keys(defs).map((k) => [k, []]));
for (let i = 0; i < STARTS; i++) {
  for (const [name, def] of Object.entries(defs)) {
    const w = await start(def, { port: 8797 });
    try {
      const first = await timedFetch(w.url, CLIENT);
      const second = await timedFetch(w.url, CLIENT);
      runs[name].push({ ready: w.readyMs, first: first.ms, second: second.ms });
    } finally {
      await w.mf.dispose();
    }
  }
}
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`cold start by stage: median of ${STARTS} fresh Miniflares each, interleaved\n`);
console.log("| entry | ready ms | first request ms | second request ms |\n|---|---:|---:|---:|");
for (const [name, r] of Object.entries(runs)) {
  const m = (k) => median(r.map((x) => x[k]));
  console.log(`| ${name} | ${m("ready").toFixed(0)} | ${m("first").toFixed(1)} | ${m("second").toFixed(1)} |`);
}
