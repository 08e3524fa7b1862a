// What the SDK path's calls into the routing module cost inside a request: the edge Worker
// as built, beside copies of it with one call taken out, in one `handler-cpu.mjs` run (so
// that rounds interleave and the machine's drift cancels in the per-round ratios).
//
//   node bench/ablate.mjs [--scenario hot|first] [--rounds 7] [--n 15000] [--build dir]
//
// Variants of the built entry (build/edge/index.js, rewritten in a scratch folder; the
// rewrite fails loudly if the entry no longer has the line it replaces):
//   no served   the tally's handle is not given back (`countServed` does nothing);
//   no routing  also no `plan` call after the first 40 requests: the last answer is reused
//               (the request's own fields are still gathered and joined). Not a worker
//               anyone could ship: the upper bound of what a cheaper routing call could save.
// Each variant still serves 200s (handler-cpu.mjs checks every response).

import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ROOT } from "./workerd.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const build = resolve(opt("--build", join(ROOT, "build")));

const COUNT_SERVED = "  if (tally) armFlush(served(Number(tally), outcome, Date.now()), env, ctx);";
const PLAN_CALL = '    const answer = plan(req.join("\\n")).split("\\n");';
const REUSED_PLAN = [
  '    const joined = req.join("\\n");',
  "    reuse.calls++;",
  '    const answer = reuse.calls > 40 && reuse.answer?.[0] === "A" ? reuse.answer : (reuse.answer = plan(joined).split("\\n"));',
].join("\n");

const VARIANTS = {
  "no served": [[COUNT_SERVED, "  return;"]],
  "no routing": [
    [COUNT_SERVED, "  return;"],
    [PLAN_CALL, REUSED_PLAN],
    ["export default {", "const reuse = { calls: 0, answer: null };\nexport default {"],
  ],
};

/** A copy of `build` whose entry has each `[from, to]` replaced (each `from` exactly once). */
function variant(scratch, name, edits) {
  const dir = join(scratch, name.replace(/\W/g, "_"));
  cpSync(build, dir, { recursive: true, filter: (src) => !src.includes("/control") });
  const entry = join(dir, "edge/index.js");
  let source = readFileSync(entry, "utf8");
  for (const [from, to] of edits) {
    if (source.split(from).length !== 2) throw new Error(`${name}: the built entry does not have exactly one ${JSON.stringify(from)}`);
    source = source.replace(from, to);
  }
  writeFileSync(entry, source);
  return dir;
}

const scratch = mkdtempSync(join(tmpdir(), "ablate-"));
try {
  const builds = [`${build}=as built`];
  for (const [name, edits] of Object.entries(VARIANTS)) builds.push(`${variant(scratch, name, edits)}=${name}`);
  const pass = ["--scenario", opt("--scenario", "hot"), "--rounds", opt("--rounds", "7"), "--n", opt("--n", "15000")];
  execFileSync(process.execPath, [join(ROOT, "bench/handler-cpu.mjs"), ...pass, ...builds.flatMap((b) => ["--build", b])], { stdio: "inherit" });
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
