// scripts/canary release, the command CI runs, end to end against a worker listening on a
// port: publish (files through wrangler into the worker's local state, the config through
// the admin API), the probe through a signed override, the rollout, and the wait, with the
// exit codes a pipeline acts on. Shoppers in the background give the verdict its evidence.
// Also `status --exit-code`, the one-shot form.
//
// With a deployment's timings: the edge keeps its copy of a config for CONFIG_TTL_MS (5 s,
// as wrangler.toml), isolates flush health counts every HEALTH_FLUSH_MS (10 s, as
// wrangler.toml), and KV lags as production's does (tests/support/faults.mjs `kvLagMs`:
// the edge and the control plane each see the other's writes up to 10 s late), from the
// first request on. So the new canary
// reaches the edge up to ~15 s after the publish, and `release` must wait for it before its
// probe (issue 24: without the wait a healthy build's probe failed, exit 6).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startShoppers, startWorker, until } from "./support/harness.mjs";

const TOKEN = "release-admin-token-0123456789abcdef";
const DIST = join(ROOT, "fixtures/demo/1.1.0");
// A lenient rule, so that a step passes (or a bad canary is cut) in seconds, not the
// minutes production's defaults take: 3 canary clients (not 200: the shoppers bring a few
// dozen a step), a 50% floor (not 2%: a handful of clients cannot show a lower rate), no
// hostile-network discount (not 10: it would discount more clients than a step has), a 1 s
// boot grace (not 30 s: the shoppers boot at once; a client that stays silent is resolved
// within the step, not 30 s later).
const HEALTH = { min_clients: 3, min_error_rate: 0.5, hostile_networks: 0, boot_grace_secs: 1 };
// As wrangler.toml, explicitly, whatever the harness defaults to: with CONFIG_TTL_MS "0"
// (every request reads KV) this file passed while real deployments failed (issue 24).
const DEPLOYED = { CONFIG_TTL_MS: "5000", HEALTH_FLUSH_MS: "10000", HEALTH_FLUSH_REQUESTS: "1000" };
// Production KV: a reader (the edge, the control plane) sees another's write up to 10 s late.
const KV_LAG = { kvLagMs: 10_000 };
// The exit codes (docs/operating.md, "Releasing from CI").
const DONE = 0, ERROR = 1, USAGE = 2, ROLLED_BACK = 3, PAUSED = 4, TIMED_OUT = 5, REFUSED = 6, EDGE_NOT_SERVING = 8, RUNNING = 10;

let state;
let w;
before(async () => {
  // Shared with wrangler (--persist-to): publish uploads the files there, as to R2.
  state = mkdtempSync(join(tmpdir(), "canary-edge-release-"));
  w = await startWorker({
    persist: state,
    listen: true,
    vars: { ADMIN_TOKEN: TOKEN, OVERRIDE_SECRET: "release-override", ...DEPLOYED },
  });
  const config = JSON.parse(await w.kv.get("rollout/demo"));
  await w.setRollout({ ...config, health: HEALTH });
  // Before the worker's first request: the lag holds from the start of the run.
  await w.setFaults(KV_LAG);
});
after(async () => {
  await w?.dispose();
  rmSync(state, { recursive: true, force: true });
});

/** scripts/canary as CI runs it: { code, stdout, stderr }, whatever the exit code. */
function canary(...args) {
  return new Promise((done) => {
    execFile(join(ROOT, "scripts/canary"), [...args, "--persist-to", state], {
      cwd: ROOT,
      env: { ...process.env, CANARY_URL: w.url.href, CANARY_ADMIN_TOKEN: TOKEN },
      // A release waits up to ~15 s for the edge, and each step up to ~20 s for its evidence.
      timeout: 180_000,
    }, (error, stdout, stderr) => done({ code: error ? error.code : 0, stdout, stderr }));
  });
}

const release = (version, ...flags) => canary("release", "demo", version, DIST, "--interval", "0.25", ...flags);
const explain = (r) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

async function api(path = "", body) {
  const res = await fetch(`${w.url.href}__canary/api/demo${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

async function statusCode() {
  const r = await canary("status", "demo", "--exit-code");
  assert.match(r.stdout, /stable .* canary .* weight/, explain(r));
  return r.code;
}

test("refused before anything is uploaded, and usage errors", async () => {
  const live = await release("1.0.0", "--steps", "50,100");
  assert.equal(live.code, REFUSED, explain(live));
  assert.match(live.stdout, /refused: .*1\.0\.0.*\(exit 6\)\n$/, explain(live));
  const missing = await canary("release", "demo", "1.2.0", join(state, "no-such-dist"), "--steps", "50,100");
  assert.equal(missing.code, REFUSED, explain(missing));
  assert.match(missing.stdout, /refused: cannot read .*no-such-dist/);
  const badSteps = await release("1.2.0", "--steps", "50,10");
  assert.equal(badSteps.code, REFUSED, explain(badSteps));
  assert.match(badSteps.stdout, /progression\.steps.*strictly increasing/, explain(badSteps));
  assert.equal(await w.r2.get("demo/1.2.0/sdk.js"), null, "nothing uploaded");
  const wrongToken = await release("1.2.0", "--steps", "50,100", "--token", "not-the-token");
  assert.equal(wrongToken.code, REFUSED, explain(wrongToken));
  assert.match(wrongToken.stdout, /refused: GET \/: 401/, explain(wrongToken));
  const usage = await canary("release", "demo", "1.2.0");
  assert.equal(usage.code, USAGE, explain(usage));
  const badTimeout = await release("1.2.0", "--timeout", "soon");
  assert.equal(badTimeout.code, USAGE, explain(badTimeout));
  const badWait = await release("1.2.0", "--edge-wait", "0");
  assert.equal(badWait.code, USAGE, explain(badWait));
  assert.match(badWait.stderr, /--edge-wait takes a number of seconds above 0, got "0"/, explain(badWait));
  assert.equal(JSON.parse(await w.kv.get("rollout/demo")).canary, "1.1.0", "the config is untouched");
});

test("a healthy canary: every step passes, it is promoted, exit 0", async () => {
  const shoppers = startShoppers(w, "demo", { perTick: 3, everyMs: 50, canaryErrors: 0 });
  let r;
  try {
    r = await release("1.2.0", "--steps", "50,100", "--bake", "1");
  } finally {
    await shoppers.stop();
  }
  assert.equal(r.code, DONE, explain(r));
  const lines = r.stdout.split("\n").filter((l) => /^\d{4}-\d\d-\d\dT[\d:]+Z demo 1\.2\.0: /.test(l)).map((l) => l.replace(/^\S+ demo 1\.2\.0: /, ""));
  const order = [
    /^published as the canary at weight 0 \(stable 1\.0\.0, 2 files\)$/,
    /^waiting up to 120 s for the edge to serve 1\.2\.0 to an override holder on \/demo\/sdk\.js \(config cache and KV propagation\)$/,
    /^the edge serves 1\.2\.0 to an override holder on \/demo\/sdk\.js \(after [\d.]+ s, 3 answers in a row\)$/,
    /^probe passed: all 2 files served correctly/,
    /^rollout started by operator: /,
    /^step 1\/2 \(50%\) started$/,
    /^step 1\/2 \(50%\) passed after \d+ s: /,
    /^step 2\/2 \(100%\) started$/,
    /^step 2\/2 \(100%\) passed after \d+ s: /,
    /^promoted to stable \(was 1\.0\.0\)$/,
    /^done: every step passed; 1\.2\.0 is the stable \(exit 0\)$/,
  ];
  // In this order, with at most "waiting for evidence" lines between them.
  const milestones = lines.filter((l) => !/^step \d\/2 \(\d+%\) waiting for evidence: /.test(l));
  assert.equal(milestones.length, order.length, explain(r));
  order.forEach((re, i) => assert.match(milestones[i], re, explain(r)));
  assert.match(r.stdout, /^ {2}uploaded demo\/1\.2\.0\/sdk\.js$/m, "the publish's detail, indented");
  // --persist-to: a local state, whose KV has no propagation delay of its own.
  assert.match(r.stdout, /^ {2}the edge serves 1\.2\.0 within ~5 s \(config cache 5 s \+ KV propagation, near 0 locally\)$/m, explain(r));
  assert.match(r.stdout, /^ {2}ok {3}sdk\.js/m, "the probe's detail, indented");
  const config = JSON.parse(await w.kv.get("rollout/demo"));
  assert.deepEqual([config.stable, config.canary, config.weight], ["1.2.0", null, 0]);
  assert.equal(await statusCode(), DONE);
});

test("a failing canary is cut: exit 3 with the verdict's reason", async () => {
  const shoppers = startShoppers(w, "demo", { perTick: 3, everyMs: 50, canaryErrors: 0.9 });
  let r;
  try {
    r = await release("1.3.0", "--steps", "50,100", "--bake", "1");
  } finally {
    await shoppers.stop();
  }
  assert.equal(r.code, ROLLED_BACK, explain(r));
  assert.match(r.stdout, /demo 1\.3\.0: the edge serves 1\.3\.0 to an override holder on \/demo\/sdk\.js \(after [\d.]+ s, 3 answers in a row\)\n(.*\n)*.*demo 1\.3\.0: probe passed: /, explain(r));
  assert.match(r.stdout, /demo 1\.3\.0: step 1\/2 \(50%\) started\n/);
  const cut = /demo 1\.3\.0: step 1\/2 \(50%\) cut by rollout: (canary error rate .* is above .*)\n/.exec(r.stdout);
  assert.ok(cut, explain(r));
  assert.ok(r.stdout.endsWith(`demo 1.3.0: rolled back: ${cut[1]} (exit 3)\n`), explain(r));
  assert.doesNotMatch(r.stdout, /step 2\/2/);
  const config = JSON.parse(await w.kv.get("rollout/demo"));
  assert.deepEqual([config.stable, config.canary, config.weight], ["1.2.0", "1.3.0", 0]);
  assert.equal(await statusCode(), ROLLED_BACK);
});

test("--timeout, --json; status --exit-code while running and paused; another canary live is refused", async () => {
  // No shoppers: no evidence, so the first step never passes.
  const r = await release("1.4.0", "--steps", "50,100", "--bake", "1", "--timeout", "2", "--json");
  assert.equal(r.code, TIMED_OUT, explain(r));
  const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  for (const e of events) {
    assert.deepEqual(Object.keys(e).slice(0, 8), ["event", "bundle", "version", "step", "steps", "weight", "reason", "at"]);
    assert.equal(e.bundle, "demo");
    assert.equal(e.version, "1.4.0");
    assert.ok(!Number.isNaN(Date.parse(e.at)), e.at);
  }
  const kinds = events.map((e) => e.event).filter((k) => k !== "waiting_for_evidence");
  assert.deepEqual(kinds, ["published", "waiting_for_edge", "edge_serving", "probe_passed", "rollout_started", "step_started", "end"], explain(r));
  const event = (kind) => events.find((e) => e.event === kind);
  assert.deepEqual([event("waiting_for_edge").path, event("waiting_for_edge").edge_wait_secs, event("waiting_for_edge").weight], ["/demo/sdk.js", 120, 0]);
  assert.match(event("waiting_for_edge").reason, /^waiting up to 120 s for the edge to serve 1\.4\.0 to an override holder on \/demo\/sdk\.js/);
  assert.equal(typeof event("edge_serving").after_secs, "number");
  const started = event("step_started");
  assert.deepEqual([started.step, started.steps, started.weight], [1, 2, 50]);
  const end = events.at(-1);
  assert.deepEqual([end.outcome, end.exit_code, end.step, end.weight], ["timed_out", TIMED_OUT, 1, 50]);
  assert.match(end.reason, /after 2 s the rollout is (running|waiting for evidence) at step 1\/2 \(50%\); it goes on/);
  assert.match(r.stderr, /uploaded demo\/1\.4\.0\/sdk\.js/, "with --json, the details go to stderr");

  assert.equal(await statusCode(), RUNNING, "the rollout goes on");
  await api("/pause", {});
  assert.equal(await statusCode(), PAUSED);

  // 1.4.0 serves 50% (paused): a release of another version would take those clients back.
  const live = await release("1.5.0", "--steps", "50,100");
  assert.equal(live.code, REFUSED, explain(live));
  assert.match(live.stdout, /refused: demo 1\.4\.0 is live at 50%: publishing 1\.5\.0 would send its clients back to 1\.2\.0/);
  assert.equal(await w.r2.get("demo/1.5.0/sdk.js"), null, "nothing uploaded");
});

test("a rollout paused under the release: exit 4", async () => {
  await api("/rollback", { reason: "make way" });
  assert.equal(await statusCode(), ROLLED_BACK, "an operator's rollback counts as rolled back");
  const running = release("1.5.0", "--steps", "50,100", "--bake", "1");
  await until(async () => (await api()).monitor.progress?.canary === "1.5.0", "the rollout of 1.5.0", 60_000);
  await api("/pause", {});
  const r = await running;
  assert.equal(r.code, PAUSED, explain(r));
  assert.match(r.stdout, /demo 1\.5\.0: step 1\/2 \(50%\) paused by operator: /, explain(r));
  assert.match(r.stdout, /demo 1\.5\.0: paused: .* \(exit 4\)\n$/, explain(r));
});

test("the edge does not serve the new canary within --edge-wait: exit 8, no rollout; probe: exit 1", async () => {
  await api("/rollback", { reason: "make way" });
  // KV far behind the publish: the edge keeps answering with the config it last read (1.5.0
  // the canary) for 10 minutes, longer than this whole test.
  await w.setFaults({ kvLagMs: 600_000 });
  try {
    const r = await release("1.6.0", "--steps", "50,100", "--edge-wait", "2");
    assert.equal(r.code, EDGE_NOT_SERVING, explain(r));
    assert.match(r.stdout, /demo 1\.6\.0: waiting up to 2 s for the edge to serve 1\.6\.0 to an override holder on \/demo\/sdk\.js \(config cache and KV propagation\)\n/, explain(r));
    assert.match(r.stdout, /demo 1\.6\.0: edge not serving: the edge did not serve 1\.6\.0 to an override holder on \/demo\/sdk\.js within 2 s \(last answer: served 1\.5\.0\).* \(exit 8\)\n$/, explain(r));
    assert.doesNotMatch(r.stdout, /probe passed|rollout started/, explain(r));
    const s = await api();
    assert.deepEqual([s.config.canary, s.config.weight], ["1.6.0", 0], "published, dark");
    assert.notEqual(s.monitor.progress?.canary, "1.6.0", "no rollout started");
    // probe has no exit code of its own for it: an error (1) saying what it waited for.
    const probe = await canary("probe", "demo", "--edge-wait", "1");
    assert.equal(probe.code, ERROR, explain(probe));
    assert.match(probe.stderr, /^canary: the edge did not serve 1\.6\.0 to an override holder on \/demo\/sdk\.js within 1 s \(last answer: served 1\.5\.0\)/m, explain(probe));
  } finally {
    await w.setFaults(KV_LAG);
  }
  // Once KV caught up, the documented way on: probe, then the rollout.
  const probe = await canary("probe", "demo");
  assert.equal(probe.code, DONE, explain(probe));
  assert.match(probe.stdout, /the edge serves 1\.6\.0 to an override holder on \/demo\/sdk\.js .*\n(.*\n)*probe of demo 1\.6\.0: all 2 files served correctly/, explain(probe));
});
