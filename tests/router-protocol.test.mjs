// The routing wasm's text protocol (router/src/lib.rs, "The text protocol"), without a
// worker: the built router (build/router/) loaded in Node as js/index.js loads it
// (`initSync` with the compiled module), configured with vars like the worker's, and driven
// through every answer kind. Each answer is checked against the entry module's table
// (`PROTOCOL` in js/index.js, read from the built entry) and the router's own (`protocol()`),
// which must be the same table. The end-to-end tests (routing, http, failures, ...) show
// that the entry serves with it; this one pins every field's position by name.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { BUILT_DIR, DEFAULT_VARS } from "./support/harness.mjs";

/** The edge Worker's build (build/edge/, or CANARY_TEST_BUILD's). */
const BUILD = join(BUILT_DIR, "edge");

const ROUTER_JS = pathToFileURL(join(BUILD, "router/router.js")).href;
const ROUTER_WASM = new WebAssembly.Module(readFileSync(join(BUILD, "router/router_bg.wasm")));

const router = await import(ROUTER_JS);
router.initSync({ module: ROUTER_WASM });

/**
 * The entry module's PROTOCOL. The built entry is imported as it is, but for its two
 * imports of the router (relative to build/, which a data: URL cannot resolve: the same
 * router module by its absolute URL, so one instance) and an added export of the table.
 */
async function entryProtocol() {
  const wasmImport = 'import routerWasm from "./router/router_bg.wasm";';
  const glueImport = 'from "./router/router.js";';
  const logImport = 'from "./log.js";';
  let source = readFileSync(join(BUILD, "index.js"), "utf8");
  assert.ok(source.includes(wasmImport) && source.includes(glueImport) && source.includes(logImport), "build/edge/index.js imports the router and log.js as expected");
  globalThis.__routerProtocolTestWasm = ROUTER_WASM;
  source = source
    .replace(wasmImport, "const routerWasm = globalThis.__routerProtocolTestWasm;")
    .replace(glueImport, `from ${JSON.stringify(ROUTER_JS)};`)
    .replace(logImport, `from ${JSON.stringify(pathToFileURL(join(BUILD, "log.js")).href)};`);
  source += "\nexport { PROTOCOL as __PROTOCOL };\n";
  const entry = await import(`data:text/javascript;base64,${Buffer.from(source).toString("base64")}`);
  return entry.__PROTOCOL;
}

const JS = await entryProtocol();
const RUST = JSON.parse(router.protocol());

/** `{ name: position }`, as the entry derives it. */
function positions(names) {
  return Object.fromEntries(names.map((name, i) => [name, i]));
}

const PLAN = positions(JS.plan.fields);
const ANSWER_KINDS = ["O", "C", "I", "M", "E", "A", "R"];
/** `report`'s answers: `C` and `E` as `plan`'s, and its own. */
const REPORT_KINDS = ["N", "K"];

// As the worker runs in the tests (tests/support/harness.mjs: wrangler.toml's [vars] and
// the test secrets), but for two:
const VARS = {
  ...DEFAULT_VARS,
  // CONFIG_TTL_MS 0: every plan asks for the config (a `C` answer) before it routes, so
  // each test sees the whole exchange whatever ran before it; the TTL is tested end to end
  // (cli.test.mjs, soak.test.mjs).
  CONFIG_TTL_MS: "0",
  // HEALTH_FLUSH_REQUESTS 1: counts are due after every request, so that `flush` has
  // batches to return (the flush policy itself: core/src/health/batching.rs).
  HEALTH_FLUSH_REQUESTS: "1",
};
const ROLLOUT = JSON.stringify({ stable: "1.0.0", canary: "1.1.0", weight: 100 });
const ORIGIN = "https://edge.test";

router.configure(JSON.stringify(VARS));

/**
 * Checks `text` against a message's format (the same object in both tables) and returns
 * its fields by name, with `pairs` (`[[first, second]]`) or `rest` where the format has them.
 */
function read(format, text) {
  const lines = text.split("\n");
  const n = format.fields.length;
  const fields = {};
  if (format.pairs) {
    // Every line ends with `\n`: the fields, then whole pairs, then nothing.
    assert.ok(lines.length >= n + 1, `at least ${n} lines, each ended: ${JSON.stringify(text)}`);
    assert.equal((lines.length - n) % 2, 1, `whole pairs after ${n} fields: ${JSON.stringify(text)}`);
    assert.equal(lines.at(-1), "", `ends with a newline: ${JSON.stringify(text)}`);
    const pairs = [];
    for (let i = n; i + 1 < lines.length; i += 2) pairs.push([lines[i], lines[i + 1]]);
    fields.pairs = pairs;
  } else if (format.rest) {
    assert.ok(lines.length >= n, `at least ${n} lines: ${JSON.stringify(text)}`);
  } else {
    assert.equal(lines.length, n, `${n} lines (${format.fields.join(", ")}): ${JSON.stringify(text)}`);
  }
  format.fields.forEach((name, i) => (fields[name] = lines[i]));
  if (format.rest) fields[format.fields.at(-1)] = lines.slice(n - 1).join("\n");
  return fields;
}

/** A plan answer: its kind, then its fields checked against that kind's format. */
function answer(text) {
  const kind = text.split("\n")[positions(JS.answers.O.fields).kind];
  assert.ok(ANSWER_KINDS.includes(kind), `an answer kind: ${JSON.stringify(text)}`);
  const fields = read(JS.answers[kind], text);
  assert.equal(fields.kind, kind);
  return fields;
}

/** A plan request built by name from the entry's table; `values` by field name. */
function request(values) {
  const lines = JS.plan.fields.map(() => "-");
  const defaults = { method: "GET", now_ms: String(Date.now()), config_read: "0", identity: "0" };
  for (const [name, value] of Object.entries({ ...defaults, ...values })) {
    assert.ok(name in PLAN, `a plan field: ${name}`);
    lines[PLAN[name]] = value;
  }
  return lines.join("\n");
}

/**
 * What `record_manifest` answers for a read of `manifests[bundle@version]` (a string: its
 * text; `null`: none in R2; absent: a failed read): the state line, checked.
 */
function recordManifest(m, manifests) {
  const text = manifests[`${m.bundle}@${m.version}`];
  const kind = text === undefined ? "failed" : text === null ? "missing" : "value";
  const { state } = read(JS.record_manifest, router.record_manifest(m.bundle, m.version, kind, text ?? "R2 is down"));
  assert.match(state, /^(known|missing|failed .*)$/);
  return state;
}

/**
 * Asks `plan` as the entry does until it settles: a `C` answer reads `configs[bundle]`
 * (absent: a failed read) into `record_config`, an `I` answer adds `identity`, an `M`
 * answer reads `manifests` into `record_manifest`. Returns the settled answer's fields and
 * the kinds seen on the way, each checked.
 */
function settle(url, { values = {}, identity = {}, configs = { demo: ROLLOUT }, manifests = {} } = {}) {
  const seen = [];
  const req = { url: ORIGIN + url, ...values };
  for (let step = 0; step < 4; step++) {
    const a = answer(router.plan(request(req)));
    seen.push(a.kind);
    if (a.kind === "C") {
      const config = configs[a.bundle];
      const kind = config === undefined ? "failed" : "value";
      assert.ok(JS.config_reads.includes(kind));
      const log = read(JS.record_config, router.record_config(a.bundle, kind, config ?? "KV read failed", Date.now()));
      if (log.log_line) assert.equal(typeof JSON.parse(log.log_line).event, "string");
      req.config_read = "1";
    } else if (a.kind === "I") {
      Object.assign(req, { identity: "1", user_key: "-", ja4: "-", ja3_hash: "-", identity_client_ip: "-", ...identity });
    } else if (a.kind === "M") {
      req.manifest = `+${recordManifest(a, manifests)}`;
    } else {
      return { answer: a, seen };
    }
  }
  assert.fail(`plan did not settle: ${seen.join(" ")}`);
}

test("the entry's table and the router's are the same table", () => {
  assert.deepEqual(JS, RUST);
  assert.deepEqual(Object.keys(RUST.answers).sort(), [...ANSWER_KINDS].sort());
  for (const kind of ANSWER_KINDS) assert.equal(RUST.answers[kind].fields[0], "kind", kind);
  assert.deepEqual(RUST.miss, RUST.answers.E);
  // Every name is a name once per message (a position per name).
  assert.deepEqual(Object.keys(RUST.report_answers).sort(), [...REPORT_KINDS].sort());
  for (const kind of REPORT_KINDS) assert.equal(RUST.report_answers[kind].fields[0], "kind", kind);
  for (const format of [RUST.plan, ...Object.values(RUST.answers), ...Object.values(RUST.report_answers), RUST.record_config, RUST.batches, RUST.constants, RUST.report, RUST.pushed_config]) {
    assert.equal(new Set(format.fields).size, format.fields.length, format.fields.join(","));
  }
  assert.deepEqual(RUST.served_outcomes, ["as_routed", "counted_fallback", "plain_fallback", "not_served"]);
  assert.deepEqual(Object.keys(RUST.canary_miss), ["V"]);
  assert.equal(RUST.canary_miss.V.fields[0], "kind");
});

test("O: an operations route", () => {
  const { answer: a, seen } = settle("/__canary/health");
  assert.deepEqual(seen, ["O"]);
  assert.deepEqual(a, { kind: "O" });
});

test("C, then record_config, then I, then A: a first visit to a floating URL of a canary at 100%", () => {
  const first = answer(router.plan(request({ url: `${ORIGIN}/demo/sdk.js` })));
  assert.equal(first.kind, "C");
  assert.equal(first.bundle, "demo");
  assert.equal(first.kv_key, "rollout/demo");
  assert.match(first.timeout_ms, /^[1-9][0-9]*$/);

  const { answer: a, seen } = settle("/demo/sdk.js", { values: { client_ip: "+203.0.113.7" } });
  assert.deepEqual(seen, ["C", "I", "A"]);
  assert.equal(a.bundle, "demo");
  assert.equal(a.head, "0");
  assert.match(a.default_content_type, /^text\/javascript/);
  assert.equal(a.version, "1.1.0");
  assert.equal(a.channel, "canary");
  assert.equal(a.cache_key, `${ORIGIN}/demo@1.1.0/sdk.js`);
  assert.equal(a.object_key, "demo/1.1.0/sdk.js");
  // The fallback: stable's copy of the same file.
  assert.equal(a.fallback_version, "1.0.0");
  assert.equal(a.fallback_cache_key, `${ORIGIN}/demo@1.0.0/sdk.js`);
  assert.equal(a.fallback_object_key, "demo/1.0.0/sdk.js");
  assert.match(a.tally, /^[0-9]+$/, "a floating request is counted: its tally's handle");
  assert.equal(a.serving_canary, "1", "weight 100: the client's cohort is on the canary");
  // Header pairs: a new client gets its cohort cookie, and the response its cache policy.
  const names = a.pairs.map(([name]) => name);
  // Header names are HTTP tokens (a configured one keeps its case: X-Cohort).
  for (const [name, value] of a.pairs) {
    assert.match(name, /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/);
    assert.ok(!value.includes("\r"));
  }
  assert.ok(names.includes("set-cookie"), names.join(","));
  assert.ok(names.includes("cache-control"), names.join(","));
  assert.match(Object.fromEntries(a.pairs)["set-cookie"], /^cohort=/);

  // served: the tally's handle back, with what was served (numbers both ways); the batch it
  // makes due (HEALTH_FLUSH_REQUESTS=1 here: at once) leaves by `flush`, in `batches`' format.
  const outcome = positions(JS.served_outcomes);
  const now = Date.now();
  const due = router.served(Number(a.tally), outcome.counted_fallback, now);
  assert.equal(typeof due, "number");
  assert.ok(due > 0 && due <= now + 1, `a batch is due now (${due})`);
  const batches = read(JS.batches, router.flush(now));
  assert.ok(batches.pairs.length > 0, "a batch is due");
  for (const [bundle, body] of batches.pairs) {
    assert.equal(bundle, "demo");
    assert.equal(typeof JSON.parse(body), "object");
  }
  assert.equal(batches.next_flush_ms, "", "nothing left pending");
  // A handle counts once; one never issued counts nothing: nothing new is due.
  assert.equal(router.served(Number(a.tally), outcome.as_routed, now), 0);
  assert.equal(router.served(Number(a.tally) + 1000, outcome.as_routed, now), 0);
  assert.equal(router.served(0.5, outcome.as_routed, now), 0);
  assert.deepEqual(read(JS.batches, router.flush(now)), { next_flush_ms: "", pairs: [] });
});

test("served: a handle held before a reset (the entry's answer to a trap) counts nothing in the fresh router", () => {
  const outcome = positions(JS.served_outcomes);
  const now = Date.now();
  const fresh = () => {
    router.__wbg_reset_state();
    router.configure(JSON.stringify(VARS));
    return settle("/demo/sdk.js").answer;
  };
  // In flight across the reset: the first tally of a router, then the first of the next.
  const before = fresh();
  const after = fresh();
  assert.notEqual(after.tally, before.tally, "each router's handles start elsewhere (a random start), not both at 0");
  // The old handle names none of the fresh router's tallies: nothing falls due, nothing is sent.
  assert.equal(router.served(Number(before.tally), outcome.as_routed, now), 0);
  assert.deepEqual(read(JS.batches, router.flush(now)), { next_flush_ms: "", pairs: [] });
  // The fresh one's own handle counts (HEALTH_FLUSH_REQUESTS=1: due at once).
  assert.ok(router.served(Number(after.tally), outcome.as_routed, now) > 0);
  assert.equal(read(JS.batches, router.flush(now)).pairs.length, 1);
});

test("A: a returning client's floating URL: the cookie decides, no identity asked", () => {
  const first = settle("/demo/sdk.js").answer;
  const cookie = Object.fromEntries(first.pairs)["set-cookie"].split(";")[0];
  const { answer: a, seen } = settle("/demo/chunk.js", { values: { cookie: `+${cookie}` } });
  assert.deepEqual(seen, ["C", "A"]);
  assert.equal(a.version, "1.1.0");
  assert.equal(a.fallback_object_key, "demo/1.0.0/chunk.js");
  assert.match(a.tally, /^[0-9]+$/);
  assert.ok(!a.pairs.some(([name]) => name === "set-cookie"), "a returning client keeps its cookie");
});

test("M, then A: a HEAD of a pinned URL of a version the config does not name, once its manifest is read", () => {
  const manifests = { "demo@0.9.0": JSON.stringify({ bundle: "demo", version: "0.9.0", files: ["chunk.js"] }) };
  const { answer: a, seen } = settle("/demo@0.9.0/chunk.js", { values: { method: "HEAD" }, manifests });
  assert.deepEqual(seen, ["C", "M", "A"]);
  assert.equal(a.head, "1");
  assert.equal(a.version, "0.9.0");
  assert.equal(a.channel, "", "no channel for a version the config does not name");
  assert.equal(a.cache_key, `${ORIGIN}/demo@0.9.0/chunk.js`);
  assert.equal(a.object_key, "demo/0.9.0/chunk.js");
  assert.equal(a.fallback_version, "");
  assert.equal(a.fallback_cache_key, "");
  assert.equal(a.fallback_object_key, "");
  assert.equal(a.tally, "", "a pinned URL is not counted");
  assert.ok(a.pairs.length > 0);
  // Kept: the next request of that version reads no manifest.
  assert.deepEqual(settle("/demo@0.9.0/sdk.js").seen, ["C", "A"]);
});

test("M, then E: a pinned version without a manifest (404), or whose manifest cannot be read (503, logged)", () => {
  const m = answer(router.plan(request({ url: `${ORIGIN}/demo@0.8.0/sdk.js`, config_read: "1" })));
  assert.deepEqual([m.kind, m.bundle, m.version, m.manifest_key], ["M", "demo", "0.8.0", "demo/.manifests/0.8.0.json"]);
  const missing = settle("/demo@0.8.0/sdk.js", { manifests: { "demo@0.8.0": null } });
  assert.deepEqual(missing.seen, ["C", "M", "E"]);
  assert.equal(missing.answer.status, "404");
  assert.match(missing.answer.message, /demo@0\.8\.0 is not a published version/);
  const unknown = settle("/demo@0.8.0/sdk.js");
  assert.deepEqual(unknown.seen, ["C", "M", "E"]);
  assert.equal(unknown.answer.status, "503");
  assert.match(JSON.parse(unknown.answer.log_line).detail, /R2 is down/);
  assert.match(unknown.answer.message, /could not check that demo@0\.8\.0 was published/);
});

test("canary_miss: V at once for an origin failure; M, then V, for an absent file", () => {
  const judged = (text) => read(JS.canary_miss.V, text);
  const failed = judged(router.canary_miss("demo", "1.3.0", "demo/1.3.0/sdk.js", "R2 is down\nat line 2", "-"));
  assert.deepEqual(failed, { kind: "V", counted: "1", reason: "r2_error", detail: "R2 is down\nat line 2" });
  const m = answer(router.canary_miss("demo", "1.3.0", "demo/1.3.0/gone.js", "", "-"));
  assert.deepEqual([m.kind, m.manifest_key], ["M", "demo/.manifests/1.3.0.json"]);
  const missing = recordManifest(m, { "demo@1.3.0": null });
  assert.deepEqual(judged(router.canary_miss("demo", "1.3.0", "demo/1.3.0/gone.js", "", `+${missing}`)), { kind: "V", counted: "0", reason: "no_manifest", detail: "" });
  const listed = recordManifest(m, { "demo@1.3.0": JSON.stringify({ bundle: "demo", version: "1.3.0", files: ["gone.js"] }) });
  assert.equal(listed, "known");
  assert.deepEqual(judged(router.canary_miss("demo", "1.3.0", "demo/1.3.0/gone.js", "", `+${listed}`)).reason, "missing_published_file");
  // Kept: no read for the next miss; a file the canary never had is not counted.
  assert.deepEqual(judged(router.canary_miss("demo", "1.3.0", "demo/1.3.0/stable-only.js", "", "-")), { kind: "V", counted: "0", reason: "not_in_canary", detail: "" });
});

test("E: a method the asset path refuses, with its header", () => {
  const { answer: e, seen } = settle("/demo/sdk.js", { values: { method: "POST" } });
  assert.deepEqual(seen, ["E"]);
  assert.equal(e.status, "405");
  assert.equal(e.header_name, "allow");
  assert.equal(e.header_value, "GET, HEAD");
  assert.equal(e.log_line, "", "no log line below 500");
  assert.match(e.message, /method not allowed/);
});

test("E: a bad path, without a header", () => {
  const { answer: e } = settle("/demo/%2e%2e/secret.js");
  assert.match(e.status, /^4\d\d$/);
  assert.equal(e.header_name, "");
  assert.equal(e.header_value, "");
  assert.equal(e.log_line, "");
  assert.notEqual(e.message, "");
});

test("E: a config that cannot be read, with its log line", () => {
  const { answer: e, seen } = settle("/broken/sdk.js", { configs: {} });
  assert.deepEqual(seen, ["C", "E"]);
  assert.match(e.status, /^5\d\d$/);
  assert.equal(JSON.parse(e.log_line).service, "canary-edge");
  assert.match(e.message, /broken/);
});

test("miss: the E answer for a file that could not be loaded", () => {
  const absent = read(JS.miss, router.miss("demo/1.1.0/nope.js", ""));
  assert.equal(absent.kind, "E");
  assert.equal(absent.status, "404");
  assert.equal(absent.log_line, "");
  assert.match(absent.message, /demo\/1\.1\.0\/nope\.js/);
  const failed = read(JS.miss, router.miss("demo/1.1.0/sdk.js", "R2 is down"));
  assert.match(failed.status, /^5\d\d$/);
  assert.match(JSON.parse(failed.log_line).detail ?? failed.log_line, /R2 is down/);
});

test("record_config: a log line or nothing, one line", () => {
  for (const [kind, text] of [
    ["value", ROLLOUT],
    ["missing", ""],
    ["failed", "KV read timed out after 1000 ms"],
    ["value", "{not json"],
  ]) {
    assert.ok(JS.config_reads.includes(kind));
    const log = read(JS.record_config, router.record_config("demo", kind, text, Date.now()));
    if (log.log_line) assert.equal(JSON.parse(log.log_line).service, "canary-edge");
  }
  // Not a bundle name: nothing to record, nothing to log.
  assert.equal(router.record_config("../x", "value", ROLLOUT, Date.now()), "");
});

test("constants: the names and policies the entry keeps per isolate, then the static headers", () => {
  const k = read(JS.constants, router.constants());
  assert.match(k.override_header, /^x-/i);
  assert.match(k.user_key_signature_header, /^x-/i);
  assert.equal(k.user_key_header.toLowerCase(), VARS.USER_KEY_HEADER.toLowerCase());
  assert.match(k.stored_cache_control, /max-age/);
  assert.equal(k.monitor_ingest_url, "https://monitor.canary-edge/ingest");
  assert.equal(k.monitor_bundle_header, "x-canary-bundle");
  assert.equal(k.monitor_config_url, "https://monitor.canary-edge/config");
  assert.equal(k.report_max_bytes, "4096");
  assert.deepEqual(JSON.parse(k.report_rate_limited_body), { counted: false, reason: "rate_limited" });
  const headers = Object.fromEntries(k.pairs);
  assert.equal(headers["access-control-allow-origin"], "*");
  assert.equal(headers["x-content-type-options"], "nosniff");
});

/** A report request built by name from the entry's table; `values` by field name. */
function reportRequest(values) {
  const at = positions(JS.report.fields);
  const lines = JS.report.fields.map(() => "-");
  const defaults = { now_ms: String(Date.now()), config_read: "0", oversize: "0" };
  for (const [name, value] of Object.entries({ ...defaults, ...values })) {
    assert.ok(name in at, `a report field: ${name}`);
    lines[at[name]] = value;
  }
  return lines.join("\n");
}

/** `report`'s answer, settled as the entry settles it (a `C` reads the config). */
function reportAnswer(values, body) {
  const req = { ...values };
  for (let step = 0; step < 3; step++) {
    const text = router.report(reportRequest(req), body);
    const kind = text.split("\n")[0];
    if (kind === "C") {
      const c = read(JS.answers.C, text);
      read(JS.record_config, router.record_config(c.bundle, "value", ROLLOUT, Date.now()));
      req.config_read = "1";
      continue;
    }
    if (kind === "E") return read(JS.answers.E, text);
    assert.ok(REPORT_KINDS.includes(kind), `a report answer: ${JSON.stringify(text)}`);
    return read(JS.report_answers[kind], text);
  }
  assert.fail("report did not settle");
}

test("R, then report: N (not counted), K (admitted, then counted), E (malformed, oversized)", () => {
  const { seen } = settle("/__canary/report", { values: { method: "POST" } });
  assert.deepEqual(seen, ["R"]);
  const get = settle("/__canary/report", { values: { method: "GET" } });
  assert.equal(get.answer.status, "405");
  assert.equal(get.answer.header_value, "POST");

  const body = (kind) => JSON.stringify({ bundle: "demo", version: "1.1.0", kind, ...(kind === "boot" ? { boot_ms: 5 } : { message: "x" }) });
  const n = reportAnswer({ client_ip: "+203.0.113.9" }, body("uncaught"));
  assert.equal(n.kind, "N");
  assert.match(n.ip_limit_key, /^net:[0-9a-f]{16}$/);
  assert.deepEqual(JSON.parse(n.body), { counted: false, reason: "no_cookie" });

  const first = settle("/demo/sdk.js").answer;
  const cookie = Object.fromEntries(first.pairs)["set-cookie"].split(";")[0];
  const k = reportAnswer({ cookie: `+${cookie}`, client_ip: "+203.0.113.9" }, body("uncaught"));
  assert.equal(k.kind, "K");
  assert.equal(k.ip_limit_key, n.ip_limit_key, "one network, one key");
  assert.match(k.client_limit_key, /^client:[0-9a-f]{16}$/);
  assert.deepEqual(JSON.parse(k.body), { counted: true, channel: "canary", kind: "uncaught" });
  // Counted: a batch is due at once here (HEALTH_FLUSH_REQUESTS=1), and the timer's flush
  // takes it.
  const now = Date.now();
  const due = router.counted(k.token, now);
  assert.ok(due > 0 && due <= now + 1, `due now (${due})`);
  const batches = read(JS.batches, router.flush(now));
  assert.equal(batches.pairs.length, 1);
  assert.equal(JSON.parse(batches.pairs[0][1]).events[0].signal, "failure");
  // Nothing left.
  assert.deepEqual(read(JS.batches, router.flush(now)), { next_flush_ms: "", pairs: [] });

  const bad = reportAnswer({}, "not json");
  assert.equal(bad.status, "400");
  const big = reportAnswer({ oversize: "1" }, "");
  assert.equal(big.status, "413");
});

test("pushed_config: a config pushed with a newer revision is taken, once", () => {
  settle("/demo/sdk.js");
  const config = JSON.stringify({ stable: "1.0.0", canary: "1.1.0", weight: 0, revision: 7 });
  assert.equal(router.pushed_config("demo", `7\n${config}`, Date.now()), true);
  assert.equal(router.pushed_config("demo", `7\n${config}`, Date.now()), false, "not newer");
  const { answer: a } = settle("/demo/sdk.js");
  assert.equal(a.version, "1.0.0", "the pushed rollback is served");
  assert.equal(a.serving_canary, "0");
});
