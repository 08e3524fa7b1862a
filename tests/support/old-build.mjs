// The worker as an older commit built it, driven by that commit's own test harness: for
// tests of what today's code makes of the state an older one left behind. The storage
// migration test (tests/storage-migration.test.mjs) runs from a committed fixture and uses
// this only to regenerate it (CANARY_REGENERATE_V1_FIXTURE=1), so a default test run never
// builds from git.
//
// The commit's files are extracted (`git archive`) into target/old-trees/<commit>/ and
// built there once, by that commit's own `build_worker` (scripts/lib.sh), with its own
// cargo target folder (a few minutes the first time; deleted after the build); later runs
// reuse the built tree. Its node_modules is this checkout's. Set CANARY_OLD_TREE=<dir> to
// use a tree already built elsewhere. `node tests/support/old-build.mjs <commit>` builds
// one ahead of a test run.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");

/** The built tree of `commit` (a full hash), building it first if needed. */
export function oldTree(commit) {
  if (process.env.CANARY_OLD_TREE) return process.env.CANARY_OLD_TREE;
  const trees = process.env.CANARY_OLD_TREES ?? join(ROOT, "target/old-trees");
  const dir = join(trees, commit);
  if (existsSync(join(dir, "build/control/index_bg.wasm"))) return dir;
  const work = `${dir}.building-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    execFileSync("bash", ["-c", 'git -C "$1" archive --format=tar "$2" | tar -x -C "$3"', "-", ROOT, commit, work], {
      stdio: ["ignore", "inherit", "inherit"],
    });
  } catch (e) {
    rmSync(work, { recursive: true, force: true });
    throw new Error(`cannot extract commit ${commit} (a shallow clone? fetch it, or set CANARY_OLD_TREE): ${e.message}`);
  }
  symlinkSync(join(ROOT, "node_modules"), join(work, "node_modules"));
  console.error(`# building the worker of ${commit.slice(0, 10)} in ${work} (once; a few minutes)`);
  execFileSync("bash", ["-c", ". scripts/lib.sh && build_worker"], {
    cwd: work,
    stdio: ["ignore", "ignore", "inherit"],
  });
  rmSync(join(work, "target"), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  renameSync(work, dir);
  return dir;
}

/** The test harness of the old tree (`startWorker` runs that tree's build). */
export async function oldHarness(commit) {
  return import(pathToFileURL(join(oldTree(commit), "tests/support/harness.mjs")).href);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const commit = process.argv[2];
  if (!/^[0-9a-f]{40}$/.test(commit ?? "")) {
    console.error("usage: node tests/support/old-build.mjs <full commit hash>");
    process.exit(2);
  }
  console.log(oldTree(commit));
}
