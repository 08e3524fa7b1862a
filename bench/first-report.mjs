// The first error report in an isolate that already served SDK requests, against its second
// (issue 25: ≤ 2x). Each round starts canary-edge in a fresh Miniflare (its own workerd
// process: one isolate), serves 20 SDK requests with a cookie (as a page's visitors do),
// then times one client's first report and its second (wall time, Node's fetch to
// 127.0.0.1, the answer read). Rounds are medians; `--build dir` measures another build.
//
//   node bench/first-report.mjs [--rounds 5] [--build dir] [--out file.json]

import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { CLIENT, start, timedFetch, workers } from "./workerd.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const ROUNDS = Number(opt("--rounds", 5));
const BUILD = opt("--build") ? resolve(opt("--build")) : undefined;
const PORT = Number(opt("--port", 8797));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const rounds = [];
for (let r = 0; r < ROUNDS; r++) {
  const w = await start(workers(BUILD)["canary-edge"], { port: PORT, rollout: { stable: "1.0.0", canary: "1.1.0", weight: 50 } });
  try {
    const first = await timedFetch(w.url, CLIENT);
    const cookie = (first.res.headers.get("set-cookie") ?? "").split(";")[0];
    const version = first.res.headers.get("x-canary-version");
    const headers = { ...CLIENT, cookie };
    for (let i = 0; i < 20; i++) await timedFetch(w.url, headers);
    const report = async () => {
      const t = performance.now();
      const res = await fetch(new URL("/__canary/report", w.url), {
        method: "POST",
        headers: { ...headers, "content-type": "text/plain;charset=UTF-8" },
        body: JSON.stringify({ bundle: "demo", version, kind: "uncaught", message: "x" }),
      });
      const body = await res.json();
      if (res.status !== 202 || body.counted !== true) throw new Error(`report ${res.status}: ${JSON.stringify(body)}`);
      return performance.now() - t;
    };
    const one = await report();
    const two = await report();
    rounds.push({ first_ms: one, second_ms: two });
  } finally {
    await w.mf.dispose();
  }
}
const out = {
  build: BUILD ?? "build/",
  rounds,
  first_ms: median(rounds.map((x) => x.first_ms)),
  second_ms: median(rounds.map((x) => x.second_ms)),
};
out.ratio = out.first_ms / out.second_ms;
console.log(`first report ${out.first_ms.toFixed(1)} ms, second ${out.second_ms.toFixed(1)} ms (medians of ${ROUNDS}): ${out.ratio.toFixed(2)}x (target ≤ 2x)`);
const file = opt("--out");
if (file) writeFileSync(file, JSON.stringify(out, null, 2));
