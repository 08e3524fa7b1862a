// canary-edge's edge Worker entry (wrangler.toml): the I/O of an asset request, around one
// synchronous call into the routing module (Rust, `router/`) that decides it. This module
// and the routing wasm are all an isolate that serves SDK files loads.
//
// - Asset requests (`/<bundle>/<path>`, `/<bundle>@<version>/<path>`): `plan()` decides
//   the route, cohort, version, headers and cookie from the request's facts; this module
//   does the awaits the plan names (the KV config when this isolate's copy is stale, a
//   version's manifest, the edge cache, R2, the stable fallback) and tells the router what
//   was served (`served`: the handle of the plan's tally, numbers both ways), which counts
//   it and answers when the outbox's next batch falls due. On a canary
//   fallback the router also says whether the miss counts against the canary
//   (`canary_miss`, after reading the canary's manifest if it asks).
// - Error reports and boot signals (`POST /__canary/report`): the count path, like an
//   asset's load: the router decides them (`report`), this module reads the body, the
//   config and the rate limits, and the admitted ones join the same outbox (`counted`).
// - The outbox sends what falls due on a timer (`flush`, under `ctx.waitUntil`), never only
//   on a next request: an isolate's last report is not left waiting for one. Batches go to
//   the bundle's HealthAggregators and HealthMonitor, Durable Objects of the control Worker
//   (wrangler.control.toml), through this Worker's bindings to them.
// - Everything else under `/__canary/` (health, status, the admin API, the console) is the
//   control Worker's: forwarded through the service binding CONTROL, unread, so that none
//   of its code loads here.
//
// Values cross into wasm as `\n`-separated text (router/src/lib.rs, "The text protocol"):
// one crossing per step instead of one per header. Fields are read and written by name,
// through PROTOCOL below.

import routerWasm from "./router/router_bg.wasm";
import {
  initSync,
  configure,
  plan,
  record_config,
  record_manifest,
  canary_miss,
  served,
  miss,
  etag_matches,
  constants,
  report as planReport,
  counted,
  flush as flushOutbox,
  pushed_config,
  __wbg_reset_state as resetRouter,
} from "./router/router.js";
import { brief, log, text } from "./log.js";

initSync({ module: routerWasm });

// The router's text protocol, this side's table: each message's fields, one line each, in
// wire order (router/src/lib.rs declares the same messages; `protocol()` there exports its
// table, which tests/router-protocol.test.mjs checks against this one, with every answer
// kind). `rest`: the last field runs to the end (it may hold newlines); `pairs`: name/value
// lines follow the fields, every line then ending with `\n`. Kept here, not read from the
// router: no crossing and no JSON parse, per request or per isolate.
const FAILURE_FORMAT = { fields: ["kind", "status", "header_name", "header_value", "log_line", "message"], rest: true };
const PROTOCOL = {
  plan: {
    fields: [
      "method",
      "url",
      "now_ms",
      "config_read",
      "cookie",
      "override_token",
      "client_ip",
      "user_key_signature",
      "signed_user_key",
      "referer",
      "identity",
      "user_key",
      "ja4",
      "ja3_hash",
      "identity_client_ip",
      "manifest",
    ],
  },
  answers: {
    O: { fields: ["kind"] },
    C: { fields: ["kind", "bundle", "kv_key", "timeout_ms"] },
    I: { fields: ["kind", "user_key_header"] },
    M: { fields: ["kind", "bundle", "version", "manifest_key"] },
    E: FAILURE_FORMAT,
    A: {
      fields: [
        "kind",
        "bundle",
        "head",
        "default_content_type",
        "version",
        "channel",
        "cache_key",
        "object_key",
        "fallback_version",
        "fallback_cache_key",
        "fallback_object_key",
        "tally",
        "serving_canary",
      ],
      pairs: ["name", "value"],
    },
    R: { fields: ["kind"] },
  },
  record_config: { fields: ["log_line"] },
  // `flush`'s answer: the outbox's next due time, then the batches due.
  batches: { fields: ["next_flush_ms"], pairs: ["bundle", "body"] },
  miss: FAILURE_FORMAT,
  constants: {
    fields: [
      "override_header",
      "user_key_signature_header",
      "user_key_header",
      "stored_cache_control",
      "monitor_ingest_url",
      "monitor_bundle_header",
      "monitor_aggregate_url",
      "monitor_shard_suffix",
      "report_max_bytes",
      "report_rate_limited_body",
      "monitor_config_url",
    ],
    pairs: ["name", "value"],
  },
  report: { fields: ["now_ms", "config_read", "oversize", "cookie", "override_token", "client_ip", "origin"] },
  report_answers: {
    N: { fields: ["kind", "ip_limit_key", "body"], rest: true },
    K: { fields: ["kind", "ip_limit_key", "client_limit_key", "token", "body"], rest: true },
  },
  served_outcomes: ["as_routed", "counted_fallback", "plain_fallback", "not_served"],
  config_reads: ["value", "missing", "failed"],
  // A config the control plane pushed, as the bundle's aggregator answers (the router
  // answers whether it took it, a bool).
  pushed_config: { fields: ["revision", "config"], rest: true },
  // What the isolate knows of a manifest it was given (`record_manifest`), for the entry to
  // hand back (`+state`) to `plan` or `canary_miss`.
  record_manifest: { fields: ["state"] },
  // Whether a canary file's miss counts against the canary (`canary_miss`; it may also
  // answer `M`, as `plan` does).
  canary_miss: {
    V: { fields: ["kind", "counted", "reason", "detail"], rest: true },
  },
};

/** `{ name: line }` of a message's fields (or of a list's names), from PROTOCOL. */
function positions(names) {
  // A plain object, not Object.create(null): V8 keeps those in dictionary mode, and these
  // are read on every request. The names are the tables' own, none an Object.prototype key.
  const at = {};
  names.forEach((name, i) => (at[name] = i));
  return at;
}
const PLAN = positions(PROTOCOL.plan.fields);
/** Every answer starts as `O` does: with its kind. */
const ANSWER = positions(PROTOCOL.answers.O.fields);
const READ_CONFIG = positions(PROTOCOL.answers.C.fields);
const NEED_IDENTITY = positions(PROTOCOL.answers.I.fields);
const NEED_MANIFEST = positions(PROTOCOL.answers.M.fields);
const MANIFEST_READ = positions(PROTOCOL.record_manifest.fields);
const MISS_JUDGED = positions(PROTOCOL.canary_miss.V.fields);
const FAILURE = positions(FAILURE_FORMAT.fields);
const ASSET = positions(PROTOCOL.answers.A.fields);
/** Where an `A` answer's header pairs start. */
const ASSET_PAIRS = PROTOCOL.answers.A.fields.length;
const CONFIG_LOG = positions(PROTOCOL.record_config.fields);
const BATCHES = positions(PROTOCOL.batches.fields);
const BATCHES_PAIRS = PROTOCOL.batches.fields.length;
const REPORT = positions(PROTOCOL.report.fields);
const REPORT_BLANK = PROTOCOL.report.fields.map(() => "-");
const NOT_COUNTED = positions(PROTOCOL.report_answers.N.fields);
const ADMITTED = positions(PROTOCOL.report_answers.K.fields);
const CONSTANTS = positions(PROTOCOL.constants.fields);
const CONSTANTS_PAIRS = PROTOCOL.constants.fields.length;
/** A plan request with every optional value absent (`-`), copied per request. */
const PLAN_BLANK = PROTOCOL.plan.fields.map(() => "-");
// Flags in the protocol's messages.
const YES = "1";
const NO = "0";

// Per isolate, from the router once configured: the override header's name, the edge
// cache copy's Cache-Control, and the headers every asset response carries.
let configured = false;
let OVERRIDE_HEADER = "";
let USER_KEY_SIGNATURE_HEADER = "";
let USER_KEY_HEADER = "";
let STORED_CACHE_CONTROL = "";
// The health monitor's contract (control::wire): where batches go, and their bundle header;
// a bundle's aggregator for this isolate is named the bundle's name and SHARD_SUFFIX.
let MONITOR_INGEST_URL = "";
let MONITOR_BUNDLE_HEADER = "";
let MONITOR_AGGREGATE_URL = "";
let SHARD_SUFFIX = "";
// The revision check's URL (GET, at the bundle's aggregator; the aggregator asks the monitor
// at the same URL).
let MONITOR_CONFIG_URL = "";
// Reports: the largest body read, and the answer past a rate limit.
let REPORT_MAX_BYTES = 0;
let REPORT_RATE_LIMITED_BODY = "";
let STATIC_HEADERS = {};
export default {
  fetch(request, env, ctx) {
    return handle(request, env, ctx).catch((e) => {
      log("internal_error", { detail: brief(e) });
      if (e instanceof WebAssembly.RuntimeError) {
        // A trap (a Rust panic aborts) can leave the router's state half-updated: start it
        // afresh, as worker-build's shim does for the operations module.
        resetRouter();
        configured = false;
      }
      return text(500, "internal error; the request was not served");
    });
  },
};

async function handle(request, env, ctx) {
  const started = Date.now();
  // Once per isolate: the vars and secrets do not change within one.
  if (!configured) configureRouter(env);
  const headers = request.headers;
  const req = PLAN_BLANK.slice();
  req[PLAN.method] = request.method;
  req[PLAN.url] = request.url;
  req[PLAN.config_read] = NO;
  req[PLAN.cookie] = opt(headers.get("cookie"));
  req[PLAN.override_token] = opt(headers.get(OVERRIDE_HEADER));
  req[PLAN.client_ip] = opt(headers.get("cf-connecting-ip"));
  // The page that loaded the script: with `health.origins`, only the merchant's pages count.
  req[PLAN.referer] = opt(headers.get("referer"));
  // The user key is read here only when signed: it then counts as a client of its own.
  const signature = headers.get(USER_KEY_SIGNATURE_HEADER);
  if (signature !== null) {
    req[PLAN.user_key_signature] = opt(signature);
    req[PLAN.signed_user_key] = opt(headers.get(USER_KEY_HEADER));
  }
  req[PLAN.identity] = NO;
  // A GET without any cookie, of a URL that names no version (`@`): the cookie cannot decide
  // it, so its identities are read now rather than after an `I` answer (a first visit makes
  // one routing call fewer). Only a hint: the router asks (`I`) whenever it needs them.
  if (req[PLAN.cookie] === "-" && request.method === "GET" && !request.url.includes("@")) {
    readIdentity(request, USER_KEY_HEADER, req);
  }
  // At most: a config read, then the identities or a manifest read, then the plan.
  for (let step = 0; step < 4; step++) {
    req[PLAN.now_ms] = Date.now();
    const answer = plan(req.join("\n")).split("\n");
    switch (answer[ANSWER.kind]) {
      case "A":
        return serveAsset(answer, request, env, ctx, started);
      case "O":
        return forwardToControl(request, env);
      case "R":
        return receiveReport(request, env, ctx);
      case "C":
        await readConfig(answer, env);
        req[PLAN.config_read] = YES;
        break;
      case "I":
        readIdentity(request, answer[NEED_IDENTITY.user_key_header], req);
        break;
      case "M":
        req[PLAN.manifest] = "+" + (await readManifest(env, answer));
        break;
      default:
        return failure(answer);
    }
  }
  throw new Error("the routing plan did not settle");
}

/**
 * An operations request (`/__canary/...` but reports), for the control Worker: passed as it
 * came (method, headers, body, `cf`) through the service binding, its answer returned as it
 * is. Without the binding, the operations routes are not deployed: 404.
 */
function forwardToControl(request, env) {
  const control = env.CONTROL;
  if (!control) return text(404, "the control Worker is not bound to this Worker (service binding CONTROL): no operations routes here");
  return control.fetch(request);
}

function configureRouter(env) {
  configure(stringVars(env));
  const k = constants().split("\n");
  OVERRIDE_HEADER = k[CONSTANTS.override_header];
  USER_KEY_SIGNATURE_HEADER = k[CONSTANTS.user_key_signature_header];
  USER_KEY_HEADER = k[CONSTANTS.user_key_header];
  STORED_CACHE_CONTROL = k[CONSTANTS.stored_cache_control];
  MONITOR_INGEST_URL = k[CONSTANTS.monitor_ingest_url];
  MONITOR_BUNDLE_HEADER = k[CONSTANTS.monitor_bundle_header];
  MONITOR_AGGREGATE_URL = k[CONSTANTS.monitor_aggregate_url];
  SHARD_SUFFIX = k[CONSTANTS.monitor_shard_suffix];
  MONITOR_CONFIG_URL = k[CONSTANTS.monitor_config_url];
  REPORT_MAX_BYTES = Number(k[CONSTANTS.report_max_bytes]);
  REPORT_RATE_LIMITED_BODY = k[CONSTANTS.report_rate_limited_body];
  STATIC_HEADERS = {};
  for (let i = CONSTANTS_PAIRS; i + 1 < k.length; i += 2) setHeader(STATIC_HEADERS, k[i], k[i + 1]);
  configured = true;
}

/** The worker's string vars and secrets, for the router's settings (once per isolate). */
function stringVars(env) {
  const vars = {};
  // `for...in`: an env may inherit its bindings (a wrapper made with Object.create).
  for (const name in env) {
    if (typeof env[name] === "string") vars[name] = env[name];
  }
  return JSON.stringify(vars);
}

/** `+value`, or `-` for none (a value with a newline cannot be a header; treat as none). */
function opt(value) {
  return typeof value === "string" && !value.includes("\n") ? "+" + value : "-";
}

/** The identities besides the cookie, read into `req` only when the cookie did not decide. */
function readIdentity(request, userKeyHeader, req) {
  const cf = request.cf;
  const bot = cf !== null && typeof cf === "object" ? cf.botManagement : undefined;
  const field = (name) => (bot !== null && typeof bot === "object" ? bot[name] : undefined);
  const h = request.headers;
  req[PLAN.identity] = YES;
  req[PLAN.user_key] = opt(h.get(userKeyHeader));
  req[PLAN.ja4] = opt(field("ja4"));
  req[PLAN.ja3_hash] = opt(field("ja3Hash"));
  // The address, as read for the plan already (one header read fewer).
  req[PLAN.identity_client_ip] = req[PLAN.client_ip];
}

/** Reads `rollout/<bundle>` (bounded by the configured timeout) into the router. */
async function readConfig(answer, env) {
  const bundle = answer[READ_CONFIG.bundle];
  const key = answer[READ_CONFIG.kv_key];
  const timeoutMs = answer[READ_CONFIG.timeout_ms];
  let kind;
  let detail = "";
  // The TTL runs from when the read was issued, not answered (see RolloutCache::record).
  const issued = Date.now();
  try {
    const kv = env.ROLLOUTS;
    if (!kv) throw new Error("binding ROLLOUTS: no such KV namespace binding");
    const value = await withTimeout(kv.get(key, "text"), Number(timeoutMs), `KV read timed out after ${timeoutMs} ms`);
    if (value === null) kind = "missing";
    else {
      kind = "value";
      detail = value;
    }
  } catch (e) {
    kind = "failed";
    detail = brief(e);
  }
  const line = record_config(bundle, kind, detail, issued).split("\n")[CONFIG_LOG.log_line];
  if (line) console.log(line);
}

async function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Serves an `A` answer (its lines, `p`). */
async function serveAsset(p, request, env, ctx, started) {
  const bundle = p[ASSET.bundle];
  const defaultType = p[ASSET.default_content_type];
  const version = p[ASSET.version];
  const cacheKey = p[ASSET.cache_key];
  const key = p[ASSET.object_key];
  const fallbackKey = p[ASSET.fallback_object_key];
  // The handle of this request's tally (empty: not counted), given back whatever is served.
  const tally = p[ASSET.tally];
  const isHead = p[ASSET.head] === YES;
  if (p[ASSET.serving_canary] === YES) checkConfig(bundle, env, ctx);

  // The edge cache first (inline: the hot path), then R2.
  let found = await cached(cacheKey, defaultType);
  if (found === null) found = await fromR2(env, ctx, cacheKey, key, defaultType, isHead);
  let servedVersion = version;
  let servedChannel = p[ASSET.channel];
  let outcome = SERVED_AS_ROUTED;
  if (found.miss !== undefined) {
    // Floating canary requests fall back to stable rather than break a page.
    if (!fallbackKey) {
      countServed(tally, SERVED_NOTHING, env, ctx);
      return failure(miss(key, found.miss).split("\n"));
    }
    const fallbackCacheKey = p[ASSET.fallback_cache_key];
    let stable = await cached(fallbackCacheKey, defaultType);
    if (stable === null) stable = await fromR2(env, ctx, fallbackCacheKey, fallbackKey, defaultType, isHead);
    if (stable.miss !== undefined) {
      countServed(tally, SERVED_NOTHING, env, ctx);
      return failure(miss(fallbackKey, stable.miss).split("\n"));
    }
    // Judged and logged only when stable has the file: a path missing from both versions
    // is a plain 404 (scanners), not a broken canary.
    let judged = canary_miss(bundle, version, key, found.miss, "-").split("\n");
    if (judged[ANSWER.kind] === "M") {
      judged = canary_miss(bundle, version, key, found.miss, "+" + (await readManifest(env, judged))).split("\n");
    }
    const counted = judged[MISS_JUDGED.counted] === YES;
    const reason = judged[MISS_JUDGED.reason];
    const detail = judged.slice(MISS_JUDGED.detail).join("\n");
    const fallbackVersion = p[ASSET.fallback_version];
    log("canary_fallback", { bundle, canary: version, stable: fallbackVersion, key, counted, reason, ...(detail ? { detail } : {}) });
    found = stable;
    servedVersion = fallbackVersion;
    servedChannel = "stable";
    outcome = counted ? SERVED_COUNTED_FALLBACK : SERVED_PLAIN_FALLBACK;
  }
  countServed(tally, outcome, env, ctx);
  if (!reportPathCompiled) compileReportPath(bundle, servedVersion, ctx);

  // A plain object, copied from one of the same shape: the Response constructor converts
  // it in one go, which measured cheaper than a Headers object filled by set() calls, an
  // array of pairs, or a prototype-less object (V8 keeps those in dictionary mode, slow
  // to enumerate; bench/README.md).
  const headers = { ...STATIC_HEADERS };
  headers["content-type"] = found.contentType;
  headers.etag = found.etag;
  headers["x-canary-version"] = servedVersion;
  headers["server-timing"] = `edge;dur=${Date.now() - started}, cache;desc=${found.fromCache ? "hit" : "miss"}`;
  for (let i = ASSET_PAIRS; i + 1 < p.length; i += 2) setHeader(headers, p[i], p[i + 1]);
  if (servedChannel) headers["x-canary-channel"] = servedChannel;
  if (outcome !== SERVED_AS_ROUTED) headers["x-canary-fallback"] = "stable";

  const inm = request.headers.get("if-none-match");
  if (inm !== null && etag_matches(inm, found.etag)) return new Response(null, { status: 304, headers });
  return new Response(isHead ? null : found.body, { status: 200, headers });
}

/**
 * Sets a header in a plain object of response headers. The router's header names are HTTP
 * tokens (the settings refuse `__proto__`, the one token an object literal takes for its
 * prototype); the check keeps that so here too.
 */
function setHeader(headers, name, value) {
  if (name !== "__proto__") headers[name] = value;
}

// What a floating request served, for the router's `served`: a position in PROTOCOL's
// `served_outcomes`.
const SERVED_OUTCOME = positions(PROTOCOL.served_outcomes);
const SERVED_AS_ROUTED = SERVED_OUTCOME.as_routed;
/** Stable's copy, and an error of the canary's: R2 failed, or a file it published is gone. */
const SERVED_COUNTED_FALLBACK = SERVED_OUTCOME.counted_fallback;
/** Stable's copy of a file the canary never had: says nothing about the canary, not counted. */
const SERVED_PLAIN_FALLBACK = SERVED_OUTCOME.plain_fallback;
/** Nothing (no version has the file, or R2 failed it): not counted. */
const SERVED_NOTHING = SERVED_OUTCOME.not_served;

/**
 * Gives a plan's tally handle back to the router with what was served (numbers both ways:
 * this runs on every counted request), and arms the outbox's timer for the batch it makes
 * due.
 */
function countServed(tally, outcome, env, ctx) {
  if (tally) armFlush(served(Number(tally), outcome, Date.now()), env, ctx);
}

// V8 compiles a wasm function on its first call, so an isolate's first report used to pay
// for compiling the report path's parse (bench/first-report.mjs: 1.8-2.1x its second).
// After the isolate's first asset response, under waitUntil, the router is asked about a
// report it refuses (no cookie: not counted, nothing changes) so that the parse is compiled
// before a real report needs it. Once per isolate, off every response's path.
let reportPathCompiled = false;

function compileReportPath(bundle, version, ctx) {
  reportPathCompiled = true;
  ctx.waitUntil(
    // A timer, not a microtask: it runs after this turn, once the response is handed over.
    new Promise((resolve) => setTimeout(resolve, 0)).then(() => {
      const req = REPORT_BLANK.slice();
      req[REPORT.now_ms] = Date.now();
      req[REPORT.config_read] = NO;
      req[REPORT.oversize] = NO;
      try {
        planReport(req.join("\n"), JSON.stringify({ bundle, version, kind: "uncaught", message: "compile" }));
      } catch (e) {
        if (e instanceof WebAssembly.RuntimeError) {
          resetRouter();
          configured = false;
        }
        log("internal_error", { detail: brief(e) });
      }
    }),
  );
}

/**
 * Reads the manifest an `M` answer names (its lines) from R2 and gives the outcome to the
 * router, which keeps a manifest of that version; returns the router's answer (the state
 * line to hand back). Never throws.
 */
async function readManifest(env, m) {
  let kind = "failed";
  let text = "";
  try {
    const bucket = env.BUNDLES;
    if (!bucket) throw new Error("binding BUNDLES: no such R2 bucket binding");
    const object = await bucket.get(m[NEED_MANIFEST.manifest_key]);
    if (object === null) kind = "missing";
    else {
      text = await object.text();
      kind = "value";
    }
  } catch (e) {
    text = brief(e) || "R2 request failed";
  }
  return record_manifest(m[NEED_MANIFEST.bundle], m[NEED_MANIFEST.version], kind, text).split("\n")[MANIFEST_READ.state];
}

/** The file from the edge cache, or `null`. A failed cache read is logged and skipped. */
async function cached(cacheKey, defaultType) {
  try {
    const hit = await caches.default.match(cacheKey);
    const etag = hit?.headers.get("etag");
    if (etag) return { body: hit.body, etag, contentType: hit.headers.get("content-type") || defaultType, fromCache: true };
  } catch (e) {
    log("cache_read_failed", { key: cacheKey, detail: brief(e) });
  }
  return null;
}

/**
 * The file from R2, then cached without holding up the response. `{ miss: "" }` when
 * absent, `{ miss: detail }` when the origin failed.
 */
async function fromR2(env, ctx, cacheKey, key, defaultType, isHead) {
  const bucket = env.BUNDLES;
  if (!bucket) return { miss: "binding BUNDLES: no such R2 bucket binding" };
  let object;
  try {
    object = isHead ? await bucket.head(key) : await bucket.get(key);
  } catch (e) {
    return { miss: brief(e) || "R2 request failed" };
  }
  if (object === null) return { miss: "" };
  const etag = object.httpEtag;
  const contentType = object.httpMetadata?.contentType || defaultType;
  if (isHead) return { body: null, etag, contentType, fromCache: false };

  // The copy in the edge cache carries no cookie and no cohort: those are per response.
  const stored = new Response(object.body, {
    headers: { "content-type": contentType, etag, "cache-control": STORED_CACHE_CONTROL },
  });
  const copy = stored.clone();
  ctx.waitUntil(
    caches.default.put(cacheKey, copy).catch((e) => log("cache_write_failed", { key: cacheKey, detail: brief(e) })),
  );
  return { body: stored.body, etag, contentType, fromCache: false };
}

/**
 * `POST /__canary/report`: an SDK's error report or boot signal. The body is read up to
 * the router's limit (a longer one is not read further: 413), then the router decides
 * (`report`: after the config, as for an asset); a report not counted is answered within
 * the per-network limit, an admitted one counted within the per-network and per-client
 * limits (`REPORT_LIMIT_PER_IP`, `REPORT_LIMIT_PER_CLIENT`; past either, 429).
 */
async function receiveReport(request, env, ctx) {
  const { text: body, oversize } = await readCapped(request, REPORT_MAX_BYTES);
  const headers = request.headers;
  const req = REPORT_BLANK.slice();
  req[REPORT.config_read] = NO;
  req[REPORT.oversize] = oversize ? YES : NO;
  req[REPORT.cookie] = opt(headers.get("cookie"));
  req[REPORT.override_token] = opt(headers.get(OVERRIDE_HEADER));
  req[REPORT.client_ip] = opt(headers.get("cf-connecting-ip"));
  // The page that sent it: with `health.origins`, only the merchant's pages count.
  req[REPORT.origin] = opt(headers.get("origin"));
  // At most: a config read, then the decision.
  for (let step = 0; step < 3; step++) {
    req[REPORT.now_ms] = Date.now();
    const answer = planReport(req.join("\n"), body).split("\n");
    switch (answer[ANSWER.kind]) {
      case "C":
        await readConfig(answer, env);
        req[REPORT.config_read] = YES;
        break;
      case "N":
        if (!(await withinLimit(env, "REPORT_LIMIT_PER_IP", answer[NOT_COUNTED.ip_limit_key]))) return reportAnswer(429, REPORT_RATE_LIMITED_BODY);
        return reportAnswer(202, answer.slice(NOT_COUNTED.body).join("\n"));
      case "K":
        if (!(await withinLimit(env, "REPORT_LIMIT_PER_IP", answer[ADMITTED.ip_limit_key])) ||
            !(await withinLimit(env, "REPORT_LIMIT_PER_CLIENT", answer[ADMITTED.client_limit_key]))) {
          return reportAnswer(429, REPORT_RATE_LIMITED_BODY);
        }
        armFlush(counted(answer[ADMITTED.token], Date.now()), env, ctx);
        return reportAnswer(202, answer.slice(ADMITTED.body).join("\n"));
      default:
        return failure(answer);
    }
  }
  throw new Error("the report's plan did not settle");
}

/**
 * The request's body as text, read up to `max` bytes: `{ text, oversize }`. A longer body
 * (chunked or not, whatever its Content-Length says) is not read past the limit. The rest
 * is left to the runtime, not cancelled: a cancelled upload resets the connection before
 * the client can read the 413.
 */
async function readCapped(request, max) {
  const declared = Number(request.headers.get("content-length"));
  if (declared > max) return { text: "", oversize: true };
  if (request.body === null) return { text: "", oversize: false };
  const reader = request.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      reader.releaseLock();
      return { text: "", oversize: true };
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return { text: new TextDecoder().decode(bytes), oversize: false };
}

/**
 * Whether `key` is within the rate limiting binding `name`'s limit. Without the binding
 * there is no limit at the door (the control plane still counts each client once); a
 * failing limiter lets the report through (logged).
 */
async function withinLimit(env, name, key) {
  const limiter = env[name];
  if (!limiter) return true;
  try {
    return (await limiter.limit({ key })).success;
  } catch (e) {
    log("rate_limit_failed", { binding: name, detail: brief(e) });
    return true;
  }
}

function reportAnswer(status, body) {
  return new Response(body, {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      "access-control-allow-origin": "*",
    },
  });
}

/** Posts the batches of a `Batches` answer's lines; the sends under way. */
function postBatches(parts, env) {
  const health = env.HEALTH;
  // Without a HEALTH binding, health monitoring is off and counts are dropped.
  if (!health) return [];
  const aggregators = env.HEALTH_AGGREGATORS;
  const sends = [];
  for (let i = BATCHES_PAIRS; i + 1 < parts.length; i += 2) {
    const bundle = parts[i];
    const body = parts[i + 1];
    sends.push(
      (async () => {
        try {
          const resp = aggregators
            ? await aggregators.get(objectId(aggregators, "HEALTH_AGGREGATORS", bundle + SHARD_SUFFIX)).fetch(MONITOR_AGGREGATE_URL, post(bundle, body))
            : await health.get(objectId(health, "HEALTH", bundle)).fetch(MONITOR_INGEST_URL, post(bundle, `{"batches":[${body}],"merged":1}`));
          if (resp.status >= 300) log("health_send_failed", { bundle, detail: `the monitor answered ${resp.status}` });
          // The config rides on the answer (an aggregator's, also when it kept the batch
          // for its next forward (202) or gave it up (503); the monitor's, as JSON).
          const answer = await resp.text();
          if (resp.ok || resp.status === 503) takePushed(bundle, aggregators ? answer : ingestPush(answer));
        } catch (e) {
          log("health_send_failed", { bundle, detail: brief(e) });
        }
      })(),
    );
  }
  return sends;
}

// The outbox's timer: one per isolate, set for when its next batch falls due, and run
// under the `ctx.waitUntil` of the request that set it, so that counts never wait for a
// next request that may not come (an isolate's last report). A wait is bounded by
// FLUSH_WAIT_MAX_MS (the runtime keeps a request's waitUntil for 30 s): a later batch is
// sent by a later request's timer, or, if none comes, when that wait runs out.
const FLUSH_WAIT_MAX_MS = 25_000;
let flushTimerAt = Infinity;

function armFlush(dueMs, env, ctx) {
  if (!dueMs || dueMs >= flushTimerAt) return;
  flushTimerAt = dueMs;
  ctx.waitUntil(
    (async () => {
      const deadline = Date.now() + FLUSH_WAIT_MAX_MS;
      let due = dueMs;
      while (due && due <= deadline) {
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
        // A newer timer set for an earlier time does this one's work.
        if (flushTimerAt !== due) return;
        const parts = flushOutbox(Date.now()).split("\n");
        due = Number(parts[BATCHES.next_flush_ms]) || 0;
        flushTimerAt = due || Infinity;
        await Promise.all(postBatches(parts, env));
      }
      // Past this request's bound: the next request's timer takes over.
      if (flushTimerAt === due) flushTimerAt = Infinity;
    })().catch((e) => {
      flushTimerAt = Infinity;
      log("health_flush_failed", { detail: brief(e) });
    }),
  );
}

/** The config on a monitor's answer to `/ingest` (JSON), as an aggregator answers it. */
function ingestPush(json) {
  try {
    const c = JSON.parse(json).config;
    return c ? `${c.revision}\n${c.text}` : "";
  } catch {
    return "";
  }
}

/**
 * Hands a pushed config (`revision\ntext`, as an aggregator answers) to the router, which
 * takes it if it is newer than what this isolate has.
 */
function takePushed(bundle, message) {
  if (!message) return;
  try {
    pushed_config(bundle, message, Date.now());
  } catch (e) {
    // A trap can leave the router's state half-updated: start it afresh (as `fetch` does).
    if (e instanceof WebAssembly.RuntimeError) {
      resetRouter();
      configured = false;
    }
    throw e;
  }
}

// The revision check: while this isolate's config of a bundle serves a canary (the plan's
// `serving_canary`), a request to that bundle asks the bundle's aggregator (this isolate's
// shard) for the config once CONFIG_CHECK_MS have passed since the last check, under
// ctx.waitUntil (the response never waits for it): batches go only every HEALTH_FLUSH_MS
// (10 s), so this is how a rollback reaches a serving isolate within seconds, whatever KV's
// lag. 1.5 s rather than 2: a check rides on a request, so at one request a second a 2 s
// threshold makes checks 2 to 3 s apart, 1.5 s makes them 2 s apart. The aggregator
// answers from memory, asking the monitor at most once a second (health::coalesce,
// ConfigRelay). Without aggregators there is no check (every isolate would ask the one
// monitor); batches' answers still carry the config.
//
// An isolate's first canary request of a bundle starts the clock rather than checking: its
// config was read moments before, an isolate that gets one request and goes quiet would
// never use the answer, and where both Workers share one workerd (wrangler dev, Miniflare)
// that check started the control Worker's objects inside the isolate's first response
// (+36 ms to a cold start, bench/README.md). A new isolate still checks within
// CONFIG_CHECK_MS plus one request's gap.
const CONFIG_CHECK_MS = 1_500;
/** When this isolate last checked each bundle, or first served its canary (bounded). */
const configChecks = new Map();

function checkConfig(bundle, env, ctx) {
  const now = Date.now();
  const last = configChecks.get(bundle);
  if (last === undefined) {
    // Bounded: the bundles this isolate serves.
    if (configChecks.size >= 1024) configChecks.clear();
    configChecks.set(bundle, now);
    return;
  }
  if (now - last < CONFIG_CHECK_MS && now >= last) return;
  const aggregators = env.HEALTH_AGGREGATORS;
  if (!aggregators || !env.HEALTH) return;
  configChecks.set(bundle, now);
  ctx.waitUntil(
    (async () => {
      try {
        const id = objectId(aggregators, "HEALTH_AGGREGATORS", bundle + SHARD_SUFFIX);
        const resp = await aggregators.get(id).fetch(MONITOR_CONFIG_URL, { headers: { [MONITOR_BUNDLE_HEADER]: bundle } });
        const answer = await resp.text();
        if (resp.status === 200) takePushed(bundle, answer);
        else if (resp.status !== 204) log("config_check_failed", { bundle, detail: `the aggregator answered ${resp.status}` });
      } catch (e) {
        log("config_check_failed", { bundle, detail: brief(e) });
      }
    })(),
  );
}

/** Durable Object ids by binding and name, derived once per isolate (a hash each time). */
const OBJECT_IDS = new Map();
function objectId(namespace, binding, name) {
  const key = `${binding}\n${name}`;
  let id = OBJECT_IDS.get(key);
  if (!id) {
    // Bounded: one per bundle (and shard) this isolate has sent for.
    if (OBJECT_IDS.size >= 1024) OBJECT_IDS.clear();
    OBJECT_IDS.set(key, (id = namespace.idFromName(name)));
  }
  return id;
}

function post(bundle, body) {
  return { method: "POST", headers: { [MONITOR_BUNDLE_HEADER]: bundle, "content-type": "application/json" }, body };
}

/** An `E` answer of the router (its lines) as a response (and its log line, for 5xx). */
function failure(answer) {
  const line = answer[FAILURE.log_line];
  if (line) console.log(line);
  const status = answer[FAILURE.status];
  // The message is the rest of the answer: it may hold newlines.
  const resp = text(Number(status), answer.slice(FAILURE.message).join("\n"));
  const name = answer[FAILURE.header_name];
  if (name) resp.headers.set(name, answer[FAILURE.header_value]);
  return resp;
}
