// What the routing wasm's first request compiles: V8 compiles a wasm function on its first
// call (lazy compilation, as workerd does), so an isolate's first request pays for every
// function its path calls. This replays that path's router calls in Node (configure,
// constants, a `C` plan, record_config, an `A` plan for a first visit, served) with V8's
// per-function compile trace, and prints, per call, the functions compiled and their
// bytes. Unlike a timing on these machines, the figure is exact: a change that takes code
// off the first request's path shows here as bytes, with the functions named.
//
//   KEEP_WASM_NAMES=1 scripts/build          # names in the wasm (same code, bigger file)
//   node bench/first-compile.mjs [--build dir] [--top n]
//
// Without names (a plain build) functions show as indices; the totals are the same. The
// calls are the entry's (js/index.js) on a first visit without a cookie, made directly.

import { spawnSync } from "node:child_process";
import { readFileSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = resolve(fileURLToPath(import.meta.url), "../..");
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const ROUTER = join(resolve(opt("--build", join(ROOT, "build"))), "edge", "router");

if (args.includes("--replay")) {
  await replay();
} else {
  report();
}

/** The child: the first request's calls, each after a marker line on stdout. */
async function replay() {
  const router = await import(pathToFileURL(join(ROUTER, "router.js")).href);
  // Node loads its Web Crypto and text codecs on first use; workerd has them built in.
  crypto.getRandomValues(new Uint8Array(8));
  new TextDecoder().decode(new TextEncoder().encode("x"));
  // Only the first `--until` calls: the parent diffs what each prefix compiled (V8 prints
  // its trace with C stdio, which does not interleave reliably with markers from here).
  const until = Number(opt("--until", Infinity));
  let made = 0;
  const step = (name, call) => {
    if (made++ >= until) process.exit(0);
    writeSync(2, `${name}\n`);
    return call();
  };
  step("instantiate", () => router.initSync({ module: new WebAssembly.Module(readFileSync(join(ROUTER, "router_bg.wasm"))) }));
  const vars = { COHORTS: "10", COHORT_SALT: "bench-salt", COHORT_SECRET: "bench-secret", CONFIG_TTL_MS: "5000" };
  step("configure", () => router.configure(JSON.stringify(vars)));
  step("constants", () => router.constants());
  const now = String(Date.now());
  // PROTOCOL.plan's fields (js/index.js): a first visit's GET, identities read up front.
  const plan = (configRead) =>
    ["GET", "https://cdn.example.com/demo/sdk.js", now, configRead, "-", "-", "+203.0.113.7", "-", "-", "-", "1", "-",
      "+t13d1516h2_8daaf6152771_b186095e22b6", "-", "+203.0.113.7", "-"].join("\n");
  const read = step("plan (C: read the config)", () => router.plan(plan("0")));
  if (!read.startsWith("C")) throw new Error(`expected a C answer, got ${read.split("\n")[0]}`);
  const config = JSON.stringify({ stable: "1.0.0", canary: "1.1.0", weight: 30 });
  step("record_config", () => router.record_config("demo", "value", config, Number(now)));
  const asset = step("plan (A: serve)", () => router.plan(plan("1"))).split("\n");
  if (asset[0] !== "A") throw new Error(`expected an A answer, got ${asset[0]}`);
  // The A answer's `tally` field (PROTOCOL.answers.A).
  step("served", () => router.served(Number(asset[11]), 0, Number(now)));
}

/** The parent: runs the child under V8's compile trace, once per prefix of its calls. */
function report() {
  /** The wasm functions the first `until` calls compile (index to body bytes), and the calls. */
  const run = (until) => {
    const child = spawnSync(
      process.execPath,
      ["--trace-wasm-compilation-times", "--no-wasm-dynamic-tiering", fileURLToPath(import.meta.url), "--replay", "--build", resolve(ROUTER, "../.."), "--until", String(until)],
      { encoding: "utf8", maxBuffer: 64 << 20 },
    );
    if (child.status !== 0) throw new Error(`the replay failed: ${child.stderr}`);
    const fns = new Map();
    for (const m of child.stdout.matchAll(/#(\d+) using Liftoff.*bodysize (\d+)/g)) fns.set(Number(m[1]), Number(m[2]));
    return { fns, steps: child.stderr.trim().split("\n").filter(Boolean) };
  };
  const all = run(Infinity);
  const names = wasmNames(readFileSync(join(ROUTER, "router_bg.wasm")));
  const top = Number(opt("--top", 5));
  console.log(`wasm compiled by the first request's calls (${join(ROUTER, "router_bg.wasm")}, ${readFileSync(join(ROUTER, "router_bg.wasm")).length} bytes)\n`);
  console.log("| call | functions | bytes | largest |\n|---|---:|---:|---|");
  let before = new Map();
  for (let i = 1; i <= all.steps.length; i++) {
    const now = i === all.steps.length ? all.fns : run(i).fns;
    const added = [...now].filter(([index]) => !before.has(index)).map(([index, bytes]) => ({ bytes, name: names.get(index) ?? `#${index}` }));
    const bytes = added.reduce((a, f) => a + f.bytes, 0);
    const largest = added.sort((a, b) => b.bytes - a.bytes).slice(0, top).map((f) => `${short(f.name)} ${f.bytes}`).join(", ");
    console.log(`| ${all.steps[i - 1]} | ${added.length} | ${bytes} | ${largest} |`);
    before = now;
  }
  const total = [...all.fns.values()].reduce((a, b) => a + b, 0);
  console.log(`| **all** | **${all.fns.size}** | **${total}** | |`);
}

/** A Rust symbol without its hash suffix and crate disambiguators. */
function short(name) {
  return name.replace(/::h[0-9a-f]{16}$/, "").replace(/\[[0-9a-f]+\]/g, "").slice(0, 80);
}

/** Function index to name, from the module's name section (empty without one). */
function wasmNames(b) {
  let p = 8;
  const leb = () => {
    let r = 0;
    let s = 0;
    let x;
    do {
      x = b[p++];
      r |= (x & 0x7f) << s;
      s += 7;
    } while (x & 0x80);
    return r >>> 0;
  };
  const names = new Map();
  while (p < b.length) {
    const id = b[p++];
    const size = leb();
    const end = p + size;
    if (id === 0) {
      const len = leb();
      if (b.toString("utf8", p, p + len) === "name") {
        p += len;
        while (p < end) {
          const sub = b[p++];
          const subEnd = leb() + p;
          if (sub === 1) {
            for (let n = leb(); n > 0; n--) {
              const index = leb();
              const l = leb();
              names.set(index, b.toString("utf8", p, p + l));
              p += l;
            }
          }
          p = subEnd;
        }
      }
    }
    p = end;
  }
  return names;
}
