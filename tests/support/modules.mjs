// The modules of a built worker, as wrangler uploads them: every `.js` under the build
// folder is an ES module and every `.wasm` a compiled WebAssembly module, the entry
// (`index.js`) first. Shared by the tests' harness and the benchmarks, so that both run
// exactly what `wrangler deploy` ships.

import { readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
export const BUILD = join(ROOT, "build");

/** `[{ type, path }]` for Miniflare's `modules` option; `dir` defaults to `build/`. */
export function workerModules(dir = BUILD) {
  const found = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      // worker-build's own scratch folder is not part of the upload.
      if (e.isDirectory()) {
        if (e.name !== "worker") walk(p);
      } else if (e.name.endsWith(".js")) found.push({ type: "ESModule", path: p });
      else if (e.name.endsWith(".wasm")) found.push({ type: "CompiledWasm", path: p });
    }
  };
  walk(dir);
  const entry = join(dir, "index.js");
  return [...found.filter((m) => m.path === entry), ...found.filter((m) => m.path !== entry)];
}
