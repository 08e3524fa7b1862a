// Runs test files as `node --test --test-concurrency=N --test-timeout=MS` does, but in the
// order given: `node --test` sorts its files by name, so a list that puts the longest files
// first (scripts/test) would otherwise start them in alphabetical order, and a long file
// started last stretches the run's tail while the other lane idles.
//
//   node tests/support/run-in-order.mjs <concurrency> <timeout ms> <file>...
//
// The reporter is node's default for the output (spec on a terminal, TAP otherwise); the exit
// code is 1 if any test failed (or a file failed to run), else 0.
import { run } from "node:test";
import { spec, tap } from "node:test/reporters";
import { resolve } from "node:path";

const [concurrency, timeout, ...files] = process.argv.slice(2);
if (!(Number(concurrency) >= 1) || !(Number(timeout) > 0) || files.length === 0) {
  console.error("usage: run-in-order.mjs <concurrency> <timeout ms> <file>...");
  process.exit(2);
}

const stream = run({
  files: files.map((f) => resolve(f)),
  concurrency: Number(concurrency),
  timeout: Number(timeout),
});
stream.on("test:fail", (data) => {
  if (!data.todo) process.exitCode = 1;
});
stream.compose(process.stdout.isTTY ? spec : tap).pipe(process.stdout);
