// scripts/canary: operate canary-edge rollouts. A thin layer over wrangler: R2 object puts
// for files, KV key get/put for the rollout config `rollout/<bundle>`.
//
//   canary publish <bundle> <version> <dir>   upload <dir> as <bundle>/<version>/..., then its
//                                             manifest <bundle>/.manifests/<version>.json, then
//                                             make it the canary at weight 0 (or the stable, if
//                                             the bundle is new); refused, before any upload,
//                                             for a version already in R2 or claimed by
//                                             another publish (immutable; see claimVersion)
//   canary set-weight <bundle> <percent>      send <percent>% of clients to the canary
//   canary promote <bundle>                   canary becomes stable, weight 0
//   canary rollback <bundle>                  weight 0 (the canary stays named, dark)
//   canary status <bundle>                    show the config and the effective weight
//
//   canary rollout <bundle> [--steps 1,5,25,50,100] [--bake <secs>]   progressive rollout (API)
//   canary pause|resume <bundle>              hold or continue a progressive rollout (API)
//   canary approve <bundle>                   let a rollout waiting at a gated step go on (API)
//   canary watch <bundle> [--interval <s>] [--count <n>]   live view of health and steps (API)
//   canary probe <bundle> [--edge-wait <s>]   fetch every canary file through a signed
//                                             override, before any real user gets it, once
//                                             the edge serves the canary to an override
//                                             holder (API)
//   canary revoke-overrides <bundle>          void every override token issued so far (API)
//   canary release <bundle> <version> <dir> [--steps ...] [--bake <s>] [--timeout <s>]
//                  [--edge-wait <s>] [--json]  for CI (API): publish, wait until the edge
//                                             serves the new canary to an override holder,
//                                             probe, rollout, and wait for its end; exits
//                                             with EXIT's codes (`status --exit-code` is the
//                                             one-shot form)
//   canary policy <bundle> --set health.min_clients=300 [--set ...]   change the policy
//                                             (health, progression) from the next step
//   canary token <name>                       a new operator token and its OPERATOR_TOKENS
//                                             entry `name:<sha256 hex>` (nothing is sent)
//
// Flags: --local (the local dev state `wrangler dev` uses), --persist-to <dir> (a local
// state elsewhere; implies --local), --config <wrangler.toml>, --json (status as JSON).
// Without --local the commands act on the deployed resources (wrangler --remote).
// With --url <worker URL> and --token <ADMIN_TOKEN> (or CANARY_URL / CANARY_ADMIN_TOKEN),
// publish (its config step), set-weight, rollback, promote and status go through the admin
// API instead of KV: the bundle's control plane (HealthMonitor) owns the config and writes
// KV itself. Each such write names the canary it is about, so it is refused if another
// release became the canary meanwhile. rollout, pause, resume, approve, watch and probe need the API.
//
// Every rule comes from canary-core itself (cli-core/, built for Node into target/canary-cli:
// `core()`): names, versions, weights, file paths, content types, the config's validation
// and, without the API, the control plane's transitions (publish, promote, rollback, weight),
// so the CLI refuses what the worker refuses, in its words, and one command gives one config
// with or without --url.

import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { devNull, tmpdir } from "node:os";
import { createRequire } from "node:module";
import { join, relative, resolve, sep } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";

const run = promisify(execFile);
const ROOT = resolve(fileURLToPath(import.meta.url), "../..");

const KV_BINDING = "ROLLOUTS";
const R2_BINDING = "BUNDLES";

class UsageError extends Error {}

/** A probe that found a canary file served wrong (exit 1 for `probe`; `release` calls it refused). */
class ProbeFailed extends Error {}

/** The edge did not serve the canary to an override holder within --edge-wait (exit 1 for `probe`, 8 for `release`). */
class EdgeNotServing extends Error {}

/**
 * Exit codes of `release` and `status --exit-code` (docs/operating.md, "Releasing from CI"). Any other
 * command exits 0, 1 (an error) or 2 (usage).
 */
export const EXIT = Object.freeze({
  done: 0, error: 1, usage: 2, rolled_back: 3, paused: 4, timed_out: 5, refused: 6, superseded: 7,
  edge_not_serving: 8, running: 10,
});

/** How a command ended, when its exit code says more than success or failure. */
class Outcome {
  constructor(outcome, extra = {}) {
    this.outcome = outcome;
    this.exitCode = EXIT[outcome];
    Object.assign(this, extra);
  }
}

function fail(message) {
  throw new UsageError(message);
}

let rules = null;

/**
 * canary-core's rules for the CLI: cli-core/, built into target/canary-cli by scripts/build, and by
 * scripts/canary or here when missing (a fresh clone; scripts/seed runs this file directly).
 */
function core() {
  if (!rules) {
    const load = () => createRequire(import.meta.url)(join(ROOT, "target", "canary-cli", "canary_cli_core.js"));
    try {
      rules = load();
    } catch (e) {
      if (e.code !== "MODULE_NOT_FOUND" && e.code !== "ENOENT") throw e;
      try {
        // Its progress on stderr: stdout is the CLI's answer.
        execFileSync("bash", ["-c", '. "$1/scripts/lib.sh" && ensure_node && ensure_cli', "bash", ROOT], { stdio: ["ignore", 2, 2] });
      } catch {
        throw new Error("cannot build canary-core's rules into target/canary-cli (see above); try scripts/build");
      }
      rules = load();
    }
  }
  return rules;
}

/**
 * `rule(core)`, the core's refusal a usage error: `what` and the core's message. A trap of
 * the wasm (a bug, not a refusal) stays an error.
 */
function checked(what, rule) {
  const c = core();
  try {
    return rule(c);
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError || !(e instanceof Error)) throw e;
    fail(what ? `${what}: ${e.message}` : e.message);
  }
}

export function checkBundle(bundle) {
  return checked(`bad bundle name ${JSON.stringify(bundle ?? "")}`, (c) => c.bundleName(bundle ?? ""));
}

export function checkVersion(version) {
  return checked(`bad version ${JSON.stringify(version ?? "")}`, (c) => c.version(version ?? ""));
}

/** A weight argument, read as the config's `weight` is. */
export function checkWeight(text) {
  return checked(`bad weight ${JSON.stringify(text ?? "")}`, (c) => c.weight(text ?? ""));
}

/** A flag's number of seconds (above 0), or a usage error. */
function seconds(text, flag) {
  const n = Number(text);
  if (text === "" || !Number.isFinite(n) || n <= 0) fail(`${flag} takes a number of seconds above 0, got ${JSON.stringify(text)}`);
  return n;
}

function parseArgs(argv) {
  const flags = {
    local: false, json: false, persistTo: null, config: null,
    url: process.env.CANARY_URL ?? null, token: process.env.CANARY_ADMIN_TOKEN ?? null,
    steps: null, bake: null, interval: 2, count: Infinity, reason: null,
    timeout: null, exitCode: false, promote: true, edgeWait: 120, set: [],
  };
  const positional = [];
  let i = 0;
  // A flag's value: the next argument, which must be there.
  const value = (flag) => {
    if (i + 1 >= argv.length) fail(`${flag} needs a value`);
    return argv[++i];
  };
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--local") flags.local = true;
    else if (a === "--remote") flags.local = false;
    else if (a === "--json") flags.json = true;
    else if (a === "--persist-to") { flags.persistTo = argv[++i]; flags.local = true; }
    else if (a === "--config") flags.config = argv[++i];
    else if (a === "--url") flags.url = argv[++i];
    else if (a === "--token") flags.token = argv[++i];
    else if (a === "--steps") flags.steps = argv[++i];
    else if (a === "--bake") flags.bake = argv[++i];
    else if (a === "--interval") flags.interval = Number(argv[++i]);
    else if (a === "--count") flags.count = Number(argv[++i]);
    else if (a === "--reason") flags.reason = argv[++i];
    else if (a === "--timeout") flags.timeout = seconds(value(a), a);
    else if (a === "--edge-wait") flags.edgeWait = seconds(value(a), a);
    else if (a === "--exit-code") flags.exitCode = true;
    else if (a === "--no-promote") flags.promote = false;
    else if (a === "--set") flags.set.push(value(a));
    else if (a === "-h" || a === "--help") positional.unshift("help");
    else if (a.startsWith("--")) fail(`unknown flag ${a}`);
    else positional.push(a);
  }
  return { flags, positional };
}

/** Settings of the worker that matter to the CLI, read from wrangler.toml. */
function workerSettings(configPath) {
  const text = readFileSync(configPath, "utf8");
  const bucket = /\[\[r2_buckets\]\][^[]*?bucket_name\s*=\s*"([^"]+)"/s.exec(text)?.[1];
  if (!bucket) fail(`${configPath} has no [[r2_buckets]] bucket_name for ${R2_BINDING}`);
  // As the worker reads it (unset: the default).
  const setting = /^\s*COHORTS\s*=\s*(?:"([^"]*)"|([^\s#]+))/m.exec(text);
  const cohorts = checked(configPath, (c) => c.cohorts(setting ? setting[1] ?? setting[2] : null));
  // How long an isolate trusts its copy of a config: the bounds of the worker's settings
  // (core/src/settings.rs), which refuses to start with anything else.
  const ttl = /^\s*CONFIG_TTL_MS\s*=\s*(?:"([^"]*)"|([^\s#]+))/m.exec(text);
  const ttlText = ttl ? (ttl[1] ?? ttl[2]).trim() : "5000";
  const configTtlMs = /^\d+$/.test(ttlText) ? Number(ttlText) : NaN;
  if (!(configTtlMs <= 600_000)) fail(`${configPath}: CONFIG_TTL_MS must be an integer from 0 to 600000, got ${JSON.stringify(ttlText)}`);
  return { bucket, cohorts, configTtlMs };
}

/** Workers KV's propagation: a read elsewhere may answer with the previous value for up to ~60 s. */
const KV_PROPAGATION_SECS = 60;

/**
 * How long after a config write the edge may still serve the previous one: each isolate's
 * copy lives CONFIG_TTL_MS, and a KV location may answer with the previous value for up to
 * KV_PROPAGATION_SECS (near 0 on a local state, one process, no KV caches).
 */
export function propagation(settings, local, version) {
  const secs = (ms) => `${Math.round(ms / 100) / 10}`;
  const cache = secs(settings.configTtlMs);
  return local
    ? `the edge serves ${version} within ~${cache} s (config cache ${cache} s + KV propagation, near 0 locally)`
    : `the edge serves ${version} within ~${secs(settings.configTtlMs + KV_PROPAGATION_SECS * 1000)} s ` +
      `(config cache ${cache} s + KV propagation up to ${KV_PROPAGATION_SECS} s)`;
}

/** Tries of one wrangler command (waits 0.5 s, then 1 s between them). */
const WRANGLER_ATTEMPTS = 3;

/**
 * Failures worth another try: the connection to Cloudflare's API (or, with --local, to the
 * local simulator wrangler starts for the command) dropped, or a local database busy
 * beside a running `wrangler dev`. Refusals (auth, a missing key, a bad config) are not.
 */
export function isTransient(stderr = "") {
  return /Network connection lost|SQLITE_BUSY|database is locked|ECONNRESET|ETIMEDOUT|socket hang up|fetch failed|\b(502|503|504)\b/.test(stderr);
}

class Wrangler {
  constructor(flags) {
    this.config = resolve(flags.config ?? join(ROOT, "wrangler.toml"));
    this.local = Boolean(flags.local);
    this.location = flags.local ? ["--local"] : ["--remote"];
    if (flags.persistTo) this.location.push("--persist-to", resolve(flags.persistTo));
    this.settings = workerSettings(this.config);
  }

  /**
   * One wrangler command, tried up to WRANGLER_ATTEMPTS times while it fails transiently.
   * Safe because every command the CLI runs is idempotent (KV get and put of one value, R2
   * get, R2 put of the same bytes): a put that failed after it landed lands again unchanged.
   */
  async exec(args) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.execOnce(args);
      } catch (e) {
        if (attempt >= WRANGLER_ATTEMPTS || !isTransient(e.stderr)) throw e;
        await new Promise((r) => setTimeout(r, 500 * 2 ** (attempt - 1)));
      }
    }
  }

  async execOnce(args) {
    const bin = join(ROOT, "node_modules", ".bin", "wrangler");
    try {
      const { stdout } = await run(bin, [...args, "--config", this.config, ...this.location], {
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, WRANGLER_SEND_METRICS: "false", WRANGLER_HIDE_BANNER: "true" },
      });
      return stdout;
    } catch (e) {
      // stderr last, blank lines out: wrangler's error box, not its chatter on stdout
      // ("Resource location: ..."), is what the last lines show.
      const detail = `${e.stdout ?? ""}\n${e.stderr ?? ""}`.split("\n").filter((l) => l.trim()).slice(-5).join("\n");
      // The whole stderr too: callers tell an expected error (a missing key) from the rest.
      throw Object.assign(new Error(`wrangler ${args.slice(0, 3).join(" ")} failed:\n${detail || e.message}`), { stderr: `${e.stderr ?? ""}` });
    }
  }

  /**
   * The bundle's config, or null when the key does not exist: `text` as KV holds it (for
   * the core's transitions, exactly), `config` parsed. Refused unless the worker accepts it.
   */
  async readConfig(bundle) {
    const key = checked("", (c) => c.kvKey(bundle));
    const out = await this.exec(["kv", "key", "get", "--binding", KV_BINDING, key, "--text"]);
    const text = out.trim();
    if (text === "Value not found" || text === "") return null;
    let config;
    try {
      config = JSON.parse(text);
    } catch {
      fail(`${key} in KV is not valid JSON; fix it with wrangler kv key put`);
    }
    checked(`${key} in KV`, (c) => c.config(text));
    return { text, config };
  }

  /** Writes a config (JSON text), validated and written as the core writes it. */
  async writeConfig(bundle, text) {
    const [key, json] = checked("", (c) => [c.kvKey(bundle), c.config(text)]);
    await this.exec(["kv", "key", "put", "--binding", KV_BINDING, key, json]);
    return JSON.parse(json);
  }

  /**
   * Read-modify-write of an existing config: `change(core, text)` is the core's transition,
   * its refusal a usage error naming the bundle.
   */
  async update(bundle, change, missing = `no rollout config for bundle ${bundle}`) {
    const current = await this.readConfig(bundle);
    if (!current) fail(missing);
    const next = checked(bundle, (c) => change(c, current.text));
    return { current: current.config, next: await this.writeConfig(bundle, next) };
  }

  /**
   * Whether `key` is in the bucket. wrangler has no head or list of R2 objects, so this is a
   * get into the null device (no buffering of a large file). Only wrangler's "does not
   * exist" (local and remote alike) means absent: any other failure (auth, network, a bad
   * config) is thrown, never taken for absence.
   */
  async hasObject(key) {
    try {
      await this.exec(["r2", "object", "get", `${this.settings.bucket}/${key}`, "--file", devNull]);
      return true;
    } catch (e) {
      if (/The specified key does not exist\./.test(e.stderr ?? "")) return false;
      throw e;
    }
  }

  async putObject(key, file) {
    const type = core().contentType(key);
    await this.exec(["r2", "object", "put", `${this.settings.bucket}/${key}`, "--file", file, "--content-type", type]);
  }
}

/** The worker's own parse (Rollout::parse), so the CLI never writes what it rejects: the config as the core writes it. */
export function validateConfig(c) {
  return JSON.parse(checked("", (core) => core.config(JSON.stringify(c))));
}

/** `{ cohortsOnCanary, percent, rounded }` of `weight` with `cohorts` cohorts, as the edge serves it. */
export function effectiveWeight(weight, cohorts) {
  return JSON.parse(core().effectiveWeight(weight, cohorts));
}

/** The admin API of a deployed (or `wrangler dev`) worker. */
class AdminApi {
  constructor(flags) {
    if (!flags.url || !flags.token) fail("this needs the admin API: pass --url <worker URL> and --token <ADMIN_TOKEN> (or set CANARY_URL and CANARY_ADMIN_TOKEN)");
    this.base = flags.url.replace(/\/+$/, "");
    this.token = flags.token;
  }

  async call(bundle, path = "", { method = "GET", body } = {}) {
    let res;
    try {
      res = await fetch(`${this.base}/__canary/api/${bundle}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new Error(`cannot reach ${this.base}: ${e.cause?.message ?? e.message}`);
    }
    const text = await res.text();
    // The status too: `release` tells the API's refusal from an unreachable API.
    if (!res.ok) throw Object.assign(new Error(`${method} ${path || "/"}: ${res.status} ${text.trim()}`), { status: res.status, body: text.trim() });
    return JSON.parse(text);
  }

  /**
   * The bundle's config as the control plane reports it; null for a bundle with none (the
   * API answers 404 for it, asking no Durable Object: a new bundle's first publish).
   */
  async config(bundle) {
    try {
      return (await this.call(bundle)).config;
    } catch (e) {
      if (e.status === 404 && /no rollout config for bundle/.test(e.message)) return null;
      throw e;
    }
  }
}

function pct(rate) {
  return `${(rate * 100).toFixed(2)}%`;
}

/**
 * An error signature new in the canary, in words for a terminal: its kind, its sample
 * message (attacker text: quoted as JSON, with every control character escaped, so it can
 * move no cursor nor colour anything) and its clients.
 */
export function newErrorText(sig) {
  const quoted = JSON.stringify(String(sig.sample ?? "")).replace(/[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return `${sig.kind} ${quoted} (${sig.clients?.canary ?? 0} canary clients, none on stable; signature ${sig.id})`;
}

/** A screenful for `watch`: split, health per channel, rollout step, last rollbacks. */
export function renderStatus(s, now = new Date()) {
  const c = s.config ?? {};
  const m = s.monitor ?? {};
  const lines = [
    `${s.bundle}  ${now.toISOString()}`,
    `stable ${c.stable}   canary ${c.canary ?? "-"}   weight ${c.weight ?? 0}% (effective ${s.effective_weight ?? 0}%)`,
  ];
  const v = m.verdict;
  if (v?.canary) {
    // Distinct clients since the step (or weight) started; the interval is at the policy's confidence.
    lines.push("channel   clients   with errors   error rate   interval");
    for (const ch of ["stable", "canary"]) {
      const e = v[ch];
      lines.push(`${ch.padEnd(9)} ${String(e.clients).padStart(7)}   ${String(e.errors).padStart(11)}   ${pct(e.rate).padStart(10)}   ${pct(e.low)}–${pct(e.high)}`);
    }
    const f = (x) => (Number.isFinite(x) ? x.toFixed(2) : String(x));
    lines.push(`evidence (log e-values): worse ${f(v.cut.relative)} relative, ${f(v.cut.absolute)} absolute, cut at ${f(v.cut.threshold)} both; ` +
      `better ${f(v.pass.relative)} relative, ${f(v.pass.absolute)} absolute, ${f(v.pass.combined)} combined, pass at ${f(v.pass.threshold)}; ${v.step_clients}/${v.min_clients} step clients`);
    lines.push(`verdict: ${v.state} (${v.reason})`);
  }
  const fresh = m.error_signatures?.top_new;
  if (fresh) lines.push(`new error in the canary: ${newErrorText(fresh)}`);
  // Without health.origins any page's loads and reports count: say so.
  if (m.evidence?.warning) lines.push(`warning: ${m.evidence.warning}`);
  if (m.progress) {
    const p = m.progress;
    const why = {
      running: `, next step at ${p.next_step_at} if it passes`,
      waiting_for_evidence: `: held, no pass yet (${p.reason}); pauses at ${p.hold_until} without one`,
    }[p.state] ?? (p.reason ? ` (${p.reason})` : "");
    lines.push(`rollout of ${p.canary}: ${p.state}, step ${p.step + 1}/${p.steps.length} [${p.steps.join(" → ")}]${why}`);
  }
  for (const r of (m.history ?? []).slice(-3)) lines.push(`rolled back ${r.at} (${r.by}): ${r.reason}`);
  if (m.kv?.failed_writes) lines.push(`KV: ${m.kv.failed_writes} failed write(s), retry at ${m.kv.retry_at}`);
  for (const e of (m.events ?? []).slice(0, 5)) lines.push(`  ${e.at}  ${e.kind.padEnd(18)} ${e.by.padEnd(8)} ${e.reason}`);
  return lines.join("\n");
}

/** Between two answers of the edge while waiting for it to serve a new canary. */
const EDGE_POLL_MS = 500;
/**
 * Answers in a row that must name the canary before the wait is over. The edge is many
 * isolates, each with its own copy of the config (CONFIG_TTL_MS) read from its location's
 * KV cache: an isolate that started (or re-read KV) just now may serve the new canary while
 * the others still serve the previous one for up to their TTL. One answer may be that one
 * isolate; three in a row, over a second, make it likely that the isolates this client
 * reaches all serve it. No client can see every isolate: a straggler after the wait shows
 * in the probe (every file, twice) as a failed probe (exit 6), never as a user served the
 * wrong version (the weight is still 0). More answers would only lengthen every release.
 */
const EDGE_CONFIRMATIONS = 3;

/**
 * The file whose floating URL the wait asks for: the version's entry (`index.js`, `sdk.js`
 * or `<bundle>.js` at its top) if it has one, else its first file (any floating URL is
 * routed by the same config).
 */
function waitFile(bundle, files) {
  const paths = files.map((f) => f.path).sort();
  return ["index.js", "sdk.js", `${bundle}.js`].find((p) => paths.includes(p)) ?? paths[0];
}

/**
 * Asks for `path` (a floating URL) with the override header every EDGE_POLL_MS until
 * EDGE_CONFIRMATIONS answers in a row are 200 with `X-Canary-Version: <version>`, or
 * `seconds` pass without (a run of matching answers under way is let finish). Returns
 * `{ ok, secs, last }`: `last` what the edge answered last.
 */
async function waitForEdge(base, path, version, { token, header }, seconds) {
  const started = Date.now();
  const deadline = started + seconds * 1000;
  let streak = 0;
  let last = "no answer yet";
  for (;;) {
    let served = null;
    try {
      const res = await fetch(`${base}${path}`, { headers: { [header]: token }, signal: AbortSignal.timeout(10_000) });
      await res.arrayBuffer();
      const named = res.headers.get("x-canary-version");
      last = res.status === 200 ? `served ${named ?? "no X-Canary-Version"}` : `status ${res.status}`;
      if (res.status === 200) served = named;
    } catch (e) {
      last = `no answer: ${e.cause?.message ?? e.message}`;
    }
    streak = served === version ? streak + 1 : 0;
    const secs = Math.round((Date.now() - started) / 100) / 10;
    if (streak >= EDGE_CONFIRMATIONS) return { ok: true, secs, last };
    if (streak === 0 && Date.now() >= deadline) return { ok: false, secs, last };
    await sleep(EDGE_POLL_MS);
  }
}

/**
 * `probe`: the canary the admin status names (`expect`: refused unless it is that one),
 * waited for on the edge (`waitForEdge`, up to `edgeWait` seconds; `events.waiting` and
 * `events.serving` are told), then every file, floating and pinned, through a signed
 * override: served by the canary, with its ETag and size.
 */
async function probe(api, bundle, log, { edgeWait = 120, expect = null, events = {} } = {}) {
  const status = await api.call(bundle);
  const canary = status.config?.canary;
  if (!canary) fail(`${bundle} has no canary to probe`);
  if (expect !== null && canary !== expect) throw new ProbeFailed(`the canary is now ${canary}, not ${expect}`);
  const { files } = await api.call(bundle, `/files/${canary}`);
  if (!files.length) fail(`no files under ${bundle}/${canary}/ in R2`);
  // Valid through the wait and the probe.
  const ttl = 600 + Math.ceil(edgeWait);
  const { token, header } = await api.call(bundle, "/override", { method: "POST", body: { channel: "canary", ttl_secs: ttl } });
  // The edge serves a new config within its cache and KV's propagation: probing before it
  // does would find the previous canary.
  const path = `/${bundle}/${waitFile(bundle, files)}`;
  const waiting = `waiting up to ${edgeWait} s for the edge to serve ${canary} to an override holder on ${path} (config cache and KV propagation)`;
  (events.waiting ?? ((text) => log(text)))(waiting, { path, edge_wait_secs: edgeWait });
  const seen = await waitForEdge(api.base, path, canary, { token, header }, edgeWait);
  if (!seen.ok) {
    throw new EdgeNotServing(`the edge did not serve ${canary} to an override holder on ${path} within ${edgeWait} s ` +
      `(last answer: ${seen.last}); the config cache (CONFIG_TTL_MS) and KV propagation (up to ~60 s) delay a new config`);
  }
  const serving = `the edge serves ${canary} to an override holder on ${path} (after ${seen.secs} s, ${EDGE_CONFIRMATIONS} answers in a row)`;
  (events.serving ?? ((text) => log(text)))(serving, { path, after_secs: seen.secs });
  let failures = 0;
  for (const f of files) {
    const problems = [];
    for (const url of [`/${bundle}/${f.path}`, `/${bundle}@${canary}/${f.path}`]) {
      let res;
      try {
        res = await fetch(`${api.base}${url}`, { headers: { [header]: token } });
      } catch (e) {
        problems.push(`${url}: ${e.message}`);
        continue;
      }
      const body = Buffer.from(await res.arrayBuffer());
      if (res.status !== 200) problems.push(`${url}: status ${res.status}`);
      else if (res.headers.get("x-canary-version") !== canary) problems.push(`${url}: served ${res.headers.get("x-canary-version")}, not ${canary}`);
      else if (res.headers.get("etag") !== f.etag) problems.push(`${url}: etag ${res.headers.get("etag")} != ${f.etag}`);
      else if (body.length !== f.size) problems.push(`${url}: ${body.length} bytes, expected ${f.size}`);
    }
    failures += problems.length ? 1 : 0;
    log(problems.length ? `FAIL ${f.path}\n  ${problems.join("\n  ")}` : `ok   ${f.path} (${f.size} bytes)`);
  }
  if (failures) throw new ProbeFailed(`probe of ${bundle} ${canary}: ${failures} of ${files.length} files failed; do not raise the weight`);
  log(`probe of ${bundle} ${canary}: all ${files.length} files served correctly through the override`);
  return { canary, files: files.length };
}

/**
 * R2 key of a version's manifest: the list of the files `publish` uploaded, which the
 * worker reads when a canary file is missing, to tell a published file that is gone (a
 * canary error) from one the canary never had (not counted). The core's key
 * (`publish::manifest_key`): no version can be named `.manifests`, so no route reaches it.
 */
export function manifestKey(bundle, version) {
  return checked(null, (c) => c.manifestKey(bundle, version));
}

/**
 * The manifest of `version` as the JSON written to its key: its file paths, relative to the
 * version, sorted (the core's format, `manifest::Manifest`, which the worker reads).
 */
export function manifestText(bundle, version, paths) {
  return checked(null, (c) => c.manifestText(bundle, version, [...paths]));
}

/** `fn` over `items`, at most `limit` at a time; after a failure, waits for those running and throws it. */
async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  let failed = false;
  const lane = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const lanes = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, lane));
  const error = lanes.find((l) => l.status === "rejected");
  if (error) throw error.reason;
  return out;
}

/**
 * Without the admin API, the R2 keys of `version` already uploaded among `keys` (what this
 * publish would upload; wrangler cannot list) and its manifest, 4 wrangler gets at a time.
 */
async function uploadedKeys(wr, bundle, version, keys) {
  // The manifest alone first: on a fresh local state that get creates R2's database, which
  // wranglers started together race to create (SQLITE_BUSY, "internal error").
  const manifest = manifestKey(bundle, version);
  const hasManifest = await wr.hasObject(manifest);
  // One at a time on a local state: wranglers reading the same local R2 database at once
  // (or beside a running `wrangler dev`) fail with SQLITE_BUSY.
  const found = await mapLimit(keys, wr.local ? 1 : 4, (key) => wr.hasObject(key));
  return [...keys.filter((_, i) => found[i]), ...(hasManifest ? [manifest] : [])];
}

/**
 * Versions are immutable: a pinned URL (`/<bundle>@<version>/...`) is cached for a year, so
 * files uploaded again under a version would never be seen by clients that already have
 * them, and a mix of old and new files could be served. Before anything is written:
 * - with the admin API, the worker claims the version (`POST .../claim`: a conditional put
 *   of its claim object, only if absent, after a listing of its prefix and manifest): of two
 *   publishes of one version, exactly one gets it; the other is refused here;
 * - without it, a best-effort check: a wrangler get of every key this publish would write
 *   (two publishes at once can both pass it; wrangler has no conditional put).
 */
async function claimVersion(wr, api, bundle, version, keys) {
  if (api) {
    try {
      const { claimed } = await api.call(bundle, "/claim", { method: "POST", body: { version } });
      return claimed;
    } catch (e) {
      // The worker's refusal, in its words (the core's `publish::Refusal`).
      if (e.status === 409) fail(e.body.replace(/^409 conflict: /, ""));
      throw e;
    }
  }
  const found = await uploadedKeys(wr, bundle, version, keys);
  if (found.length > 0) fail(checked(null, (c) => c.uploadedRefusal(bundle, version, found)));
  return null;
}

function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

function describe(bundle, c, cohorts) {
  const lines = [`bundle ${bundle}: stable ${c.stable}`];
  if (c.canary) {
    const eff = effectiveWeight(c.weight ?? 0, cohorts);
    lines.push(`canary ${c.canary} at weight ${c.weight ?? 0}% (${eff.cohortsOnCanary} of ${cohorts} cohorts)`);
    if ((c.weight ?? 0) > 0 && eff.cohortsOnCanary === 0) {
      lines.push(`warning: ${c.weight}% puts no cohort on the canary with ${cohorts} cohorts: nobody gets it`);
    } else if (eff.rounded) {
      lines.push(`note: ${c.weight}% is not a multiple of ${100 / cohorts}% with ${cohorts} cohorts; ${eff.percent}% is served`);
    }
  } else {
    lines.push("no canary running");
  }
  for (const [k, v] of Object.entries(c)) {
    if (!["stable", "canary", "weight"].includes(k)) lines.push(`${k}: ${JSON.stringify(v)}`);
  }
  return lines.join("\n");
}

/**
 * `publish <bundle> <version> <dir>`: the files, then the manifest, then the config (with
 * the admin API, the control plane's publish). `guard(current config or null)` may refuse
 * before anything is uploaded. Returns the config before (JSON text, null for a new bundle)
 * and after, and the cohort count.
 */
async function publish(flags, args, log, guard = null) {
  const [bundle, version, dir] = [checkBundle(args[0]), checkVersion(args[1]), args[2]];
  let files;
  try {
    if (!statSync(dir).isDirectory()) fail(`${dir} is not a directory`);
    files = listFiles(dir);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    fail(`cannot read ${dir}: ${e.message}`);
  }
  if (files.length === 0) fail(`${dir} has no files to publish`);
  // Each file's R2 key, if the worker serves it at its pinned URL.
  const uploads = files.map((f) => {
    const path = relative(dir, f).split(sep).join("/");
    const key = checked(`cannot publish ${f}: its path is not servable`, (c) => c.assetKey(bundle, version, path));
    return { file: f, path, key };
  });
  const wr = new Wrangler(flags);
  const api = flags.url && flags.token ? new AdminApi(flags) : null;
  // The config as KV holds it, or as the control plane reports it; null for a new bundle.
  const reported = api ? await api.config(bundle) : null;
  const current = api ? (reported ? JSON.stringify(reported) : null) : (await wr.readConfig(bundle))?.text ?? null;
  if (guard) guard(current === null ? null : JSON.parse(current));
  // The control plane's transition (with the API, it makes it again): a live version is refused.
  const publishedText = checked(bundle, (c) => c.published(current, version));
  const claim = await claimVersion(wr, api, bundle, version, uploads.map((u) => u.key));
  if (claim) log(`claimed ${bundle} ${version} (as ${claim.by}): no other publish can upload it`);
  // Files first, then the manifest, config last: a failed upload leaves the live
  // rollout untouched, and the manifest lists only files that were uploaded.
  const paths = [];
  for (const { file, path, key } of uploads) {
    await wr.putObject(key, file);
    paths.push(path);
    log(`uploaded ${key}`);
  }
  const manifest = manifestText(bundle, version, paths);
  const tmp = mkdtempSync(join(tmpdir(), "canary-manifest-"));
  try {
    const file = join(tmp, `${version}.json`);
    writeFileSync(file, manifest);
    await wr.putObject(manifestKey(bundle, version), file);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  log(`uploaded ${manifestKey(bundle, version)} (${paths.length} files)`);
  let next;
  if (api) {
    // The control plane makes it the canary (ending any rollout of the previous one).
    next = (await api.call(bundle, "/publish", { method: "POST", body: { version } })).config;
  } else {
    next = await wr.writeConfig(bundle, publishedText);
  }
  log(propagation(wr.settings, wr.local, version));
  return { current, next, cohorts: wr.settings.cohorts, files: paths.length };
}

/**
 * What `release` and `status --exit-code` make of a bundle's admin status: the outcome of
 * the rollout of `version` (the current canary's when null) and why. `running` while it may
 * still move on its own.
 */
export function rolloutOutcome(s, version = null) {
  const c = s.config ?? {};
  const p = s.monitor?.progress ?? null;
  const v = version ?? c.canary ?? p?.canary ?? null;
  const mine = p && p.canary === v ? p : null;
  if (mine) {
    if (mine.state === "done") return { outcome: "done", reason: mine.reason };
    if (mine.state === "rolled_back") return { outcome: "rolled_back", reason: mine.reason };
    if (mine.state === "paused") return { outcome: "paused", reason: mine.reason };
    // Running, waiting for evidence, or a state this CLI does not know yet (e.g. a gate):
    // it may still move.
    if (mine.state !== "superseded") return { outcome: "running", reason: mine.reason };
  }
  if (version !== null) {
    // The rollout of `version` ended without an outcome of its own, or never was.
    if (c.stable === version) return { outcome: "done", reason: `${version} is the stable` };
    return {
      outcome: "superseded",
      reason: mine?.reason ?? `the canary is now ${c.canary ?? "none"} (stable ${c.stable ?? "none"})`,
    };
  }
  // No rollout of the current canary: rolled back if the config says so (a cut or an
  // operator's rollback, while the canary stays dark), otherwise nothing is moving.
  if (c.canary && c.rollback) return { outcome: "rolled_back", reason: c.rollback.reason };
  return { outcome: "done", reason: c.canary ? `no rollout running; canary ${c.canary} at weight ${c.weight ?? 0}%` : "no canary" };
}

/** `release`'s output: progress lines a CI log can read, or one JSON object per line. */
class ReleaseLog {
  constructor(json, log, bundle, version) {
    Object.assign(this, { json, log, bundle, version });
  }

  /** An event: `text` for people, the fields for --json. */
  emit(event, text, { step = null, steps = null, weight = null, reason = null, at = new Date().toISOString(), ...extra } = {}) {
    if (this.json) {
      this.log(JSON.stringify({ event, bundle: this.bundle, version: this.version, step, steps, weight, reason, at, ...extra }));
    } else {
      this.log(`${at.replace(/\.\d+Z$/, "Z")} ${this.bundle} ${this.version}: ${text}`);
    }
  }

  /** A line of detail (uploads, the probe's files): indented, or on stderr beside --json. */
  detail(line) {
    if (this.json) process.stderr.write(`${line}\n`);
    else this.log(line.replace(/^/gm, "  "));
  }

  /** The last line: the outcome and its exit code. */
  end(outcome, reason, extra = {}) {
    const code = EXIT[outcome];
    const words = {
      done: "done", rolled_back: "rolled back", paused: "paused", timed_out: "timed out",
      refused: "refused", superseded: "superseded", error: "error", edge_not_serving: "edge not serving",
    }[outcome];
    this.emit("end", `${words}${reason ? `: ${reason}` : ""} (exit ${code})`, { reason, outcome, exit_code: code, ...extra });
    return new Outcome(outcome, { reason });
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The steps of a release, checked before anything is uploaded: --steps (each a weight, the
 * plan as the config's `progression` is read, each step putting one more cohort on the
 * canary), or the config's progression (with --bake, its steps at that bake). Returns the
 * body of POST …/rollout.
 */
function releasePlan(flags, config, cohorts) {
  let steps = null;
  if (flags.steps) steps = flags.steps.split(",").map((x) => checkWeight(x.trim()));
  else if (config?.progression?.steps) steps = config.progression.steps;
  else fail("no steps: pass --steps (e.g. --steps 10,50,100) or set `progression` in the bundle's config");
  const bake = flags.bake === null ? (flags.steps ? undefined : config?.progression?.bake_secs) : Number(flags.bake);
  const plan = { steps, ...(bake === undefined ? {} : { bake_secs: bake }) };
  // The plan as the worker reads a config's `progression`.
  checked("bad rollout plan", (c) => c.config(JSON.stringify({ stable: "0", progression: plan })));
  let previous = 0;
  for (const step of steps) {
    checked(`bad step ${step}%`, (c) => c.weightServing(step, cohorts));
    const on = effectiveWeight(step, cohorts).cohortsOnCanary;
    if (on === previous) fail(`bad step ${step}%: it serves the same ${on} of ${cohorts} cohorts as the step before it`);
    previous = on;
  }
  // Without --steps or --bake: the config's own progression, as the control plane reads it.
  return flags.steps || flags.bake !== null ? plan : {};
}

/**
 * `release <bundle> <version> <dir>`: publish, probe through a signed override, start the
 * rollout, follow it to its end. Returns an Outcome (its exit code: EXIT).
 */
async function release(flags, args, log) {
  // What cannot be read is a usage error (exit 2), before anything is done.
  if (args.length !== 3) fail(`release takes 3 arguments: <bundle> <version> <dir>\n${USAGE}`);
  if (flags.bake !== null && !/^\d+$/.test(flags.bake)) fail(`--bake takes a whole number of seconds, got ${JSON.stringify(flags.bake)}`);
  if (!(flags.interval > 0)) fail("--interval takes a number of seconds above 0");
  const api = new AdminApi(flags);
  const out = new ReleaseLog(flags.json, log, args[0], args[1]);
  try {
    const [bundle, version] = [checkBundle(args[0]), checkVersion(args[1])];
    let plan = null;
    // 1. Publish: refused before any upload if the version is live or uploaded, if another
    //    canary is live (publishing would take its clients back to stable), or if the plan
    //    is bad.
    const guard = (config) => {
      if (config?.canary && config.canary !== version && (config.weight ?? 0) > 0) {
        fail(`${bundle} ${config.canary} is live at ${config.weight}%: publishing ${version} would send its clients back to ${config.stable}; ` +
          `promote it or roll it back first (scripts/canary promote|rollback ${bundle})`);
      }
      if (config) plan = releasePlan(flags, config, new Wrangler(flags).settings.cohorts);
    };
    const published = await publish(flags, args, (line) => out.detail(line), guard);
    if (!published.current) {
      out.emit("published", `published as the stable of a new bundle (${published.files} files): nothing to roll out`,
        { weight: 0, reason: "the stable of a new bundle", files: published.files });
      return out.end("done", `${version} is the stable of the new bundle ${bundle}`);
    }
    out.emit("published", `published as the canary at weight 0 (stable ${published.next.stable}, ${published.files} files)`,
      { weight: 0, reason: `the canary at weight 0, beside stable ${published.next.stable}`, files: published.files });
    // 2. Wait until the edge serves the new canary to an override holder (its config cache
    //    and KV's propagation), then probe: every file through a signed override, before
    //    any user gets it. The rollout starts only after both.
    const probed = await probe(api, bundle, (line) => out.detail(line), {
      edgeWait: flags.edgeWait,
      expect: version,
      events: {
        waiting: (text, extra) => out.emit("waiting_for_edge", text, { weight: 0, reason: text, ...extra }),
        serving: (text, extra) => out.emit("edge_serving", text, { weight: 0, reason: text, ...extra }),
      },
    });
    const served = `all ${probed.files} files served correctly through a signed override`;
    out.emit("probe_passed", `probe passed: ${served}`, { weight: 0, reason: served, files: probed.files });
    // 3. The rollout, bound to this version: refused (409) if another became the canary.
    const started = await api.call(bundle, "/rollout", { method: "POST", body: { ...plan, canary: version } });
    const progress = started.monitor?.progress;
    const seq = (started.monitor?.events ?? []).find((e) => e.kind === "rollout_started" && e.canary === version)?.seq ?? null;
    // 4. Follow it.
    return await follow(api, out, bundle, version, { steps: progress?.steps ?? plan.steps ?? [], seq }, flags);
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) throw e;
    process.stderr.write(`canary: ${e.message}\n`);
    // The version stays the canary at weight 0: nobody but an override holder gets it.
    if (e instanceof EdgeNotServing) return out.end("edge_not_serving", e.message);
    // A refusal: the CLI's (bad input, the publish's checks), the probe's, or the API's
    // answer. Anything else (unreachable, wrangler, a bug) is an error.
    const refused = e instanceof UsageError || e instanceof ProbeFailed || e.status !== undefined;
    return out.end(refused ? "refused" : "error", e.message.split("\n")[0]);
  }
}

/**
 * Polls the admin status every --interval until the rollout of `version` ends (done, cut,
 * paused, superseded) or --timeout passes, with one line per change: from the bundle's
 * history (steps started, passed, cut; pauses), and from the rollout's state (waiting for
 * evidence, with the reason).
 */
async function follow(api, out, bundle, version, { steps, seq }, flags) {
  const startedAt = Date.now();
  const deadline = flags.timeout === null ? Infinity : startedAt + flags.timeout * 1000;
  const n = steps.length;
  const stepText = (k) => `step ${k}/${n} (${steps[k - 1]}%)`;
  const at = (k) => ({ step: k, steps: n, weight: steps[k - 1] ?? null });
  let last = seq === null ? -1 : seq - 1;
  let step = 0;
  let waiting = null; // { step, reason, shown }
  let slowStep = null; // the step whose below-traffic outlook was shown
  let failingSince = null;
  for (;;) {
    let s;
    try {
      s = await api.call(bundle);
      failingSince = null;
    } catch (e) {
      // The API answered no (a token revoked meanwhile): refused. Unreachable for a while:
      // an error. A blip: the next poll.
      if (e.status !== undefined && e.status < 500) throw e;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > 60_000) throw e;
      out.detail(`reading the status failed (${e.message}); trying again`);
      await sleep(Math.max(flags.interval * 1000, 1000));
      continue;
    }
    // The history since the rollout started, oldest first, about this version.
    const events = (s.monitor?.events ?? []).filter((e) => e.seq > last).reverse();
    for (const e of events) {
      last = Math.max(last, e.seq);
      if (e.canary !== version) continue;
      const t = { at: e.at, reason: e.reason, by: e.by };
      switch (e.kind) {
        case "rollout_started":
          step = 1;
          out.emit("rollout_started", `rollout started by ${e.by}: ${e.reason}`, { ...t, steps: n, weight: e.weight });
          out.emit("step_started", `${stepText(1)} started`, { ...t, reason: null, ...at(1) });
          break;
        case "step_advance":
        case "rollout_done": {
          const passed = stepText(step);
          // The reason says "step k/n (w%) passed after t s: ..." itself.
          const why = e.reason?.startsWith(`${passed} passed`) ? e.reason.slice(passed.length + 1) : `passed: ${e.reason}`;
          out.emit("step_passed", `${passed} ${why}`, { ...t, ...at(step) });
          if (e.kind === "step_advance" && step < n) {
            step += 1;
            out.emit("step_started", `${stepText(step)} started`, { ...t, reason: null, ...at(step) });
          }
          break;
        }
        case "awaiting_approval":
          out.emit("awaiting_approval", `${e.reason} (scripts/canary approve ${bundle})`, { ...t, ...at(step) });
          break;
        case "frozen":
          out.emit("frozen", e.reason, { ...t, ...at(step) });
          break;
        case "approved":
          out.emit("approved", `${stepText(step + 1)} approved by ${e.by}`, { ...t, ...at(step + 1) });
          if (step < n) {
            step += 1;
            out.emit("step_started", `${stepText(step)} started`, { ...t, reason: null, ...at(step) });
          }
          break;
        case "rollback": {
          // The top error new in the canary (`monitor.error_signatures.top_new`), if any.
          const fresh = s.monitor?.error_signatures?.top_new ?? null;
          const named = fresh ? `; new error in the canary: ${newErrorText(fresh)}` : "";
          out.emit("cut", `${step ? stepText(step) : "the canary"} cut by ${e.by}: ${e.reason}${named}`, { ...t, ...at(step), new_error: fresh });
          break;
        }
        case "rollout_paused":
          out.emit("paused", `${step ? `${stepText(step)} ` : ""}paused by ${e.by}: ${e.reason}`, { ...t, ...at(step) });
          break;
        case "rollout_resumed":
          out.emit("resumed", `${step ? `${stepText(step)} ` : ""}resumed by ${e.by}`, { ...t, ...at(step) });
          break;
        case "rollout_superseded":
          out.emit("superseded", `rollout superseded: ${e.reason}`, { ...t, ...at(step) });
          break;
        case "set_weight":
        case "kv_adopted":
          out.emit("weight_set", `weight set to ${e.weight}% by ${e.by}${e.reason ? `: ${e.reason}` : ""}`, { ...t, weight: e.weight });
          break;
        case "promote":
          out.emit("promoted", `promoted to stable by ${e.by}`, t);
          break;
        default:
          break;
      }
    }
    const p = s.monitor?.progress;
    if (p?.canary === version && p.state === "waiting_for_evidence") {
      // Once when a step starts waiting; again, at most every 30 s, while the reason changes.
      const k = (p.step ?? 0) + 1;
      const now = Date.now();
      if (!waiting || waiting.step !== k || (waiting.reason !== p.reason && now - waiting.shown >= 30_000)) {
        out.emit("waiting_for_evidence", `${stepText(k)} waiting for evidence: ${p.reason}; pauses at ${p.hold_until} without a pass`,
          { reason: p.reason, ...at(k), hold_until: p.hold_until });
        waiting = { step: k, reason: p.reason, shown: now };
      }
    } else if (p?.canary === version && p.state !== "waiting_for_evidence" && waiting?.step === (p.step ?? 0) + 1) {
      waiting = { ...waiting, reason: null };
    }
    // Ahead of a pause: once per step, when the step's traffic so far will not bring the
    // clients it needs before its hold ends.
    if (p?.canary === version && p.outlook?.below_needed_traffic && slowStep !== (p.step ?? 0) + 1) {
      const k = (p.step ?? 0) + 1;
      out.emit("below_needed_traffic", `${stepText(k)} ${p.outlook.message}`,
        { ...at(k), clients_needed: p.outlook.clients_needed, clients_per_min: p.outlook.clients_per_min, minutes_to_decide: p.outlook.minutes_to_decide, hold_until: p.hold_until });
      slowStep = k;
    }
    const { outcome, reason } = rolloutOutcome(s, version);
    if (outcome === "done") {
      const weight = s.config?.canary === version ? s.config.weight : null;
      if (weight === 100 && flags.promote) {
        // The release is complete: the canary becomes the stable (nobody changes version).
        await api.call(bundle, "/promote", { method: "POST", body: { canary: version } });
        out.emit("promoted", `promoted to stable (was ${s.config.stable})`, { weight: 100 });
        return out.end("done", `every step passed; ${version} is the stable`);
      }
      return out.end("done", weight === null ? reason : `every step passed; ${version} serves ${weight}%${weight === 100 ? " (not promoted: --no-promote)" : ""}`, { weight });
    }
    // The step it ended at (from the rollout itself if its history was missed).
    if (outcome !== "running") {
      // A cut's last line names the top error new in the canary too, as its cut line does.
      const fresh = outcome === "rolled_back" ? s.monitor?.error_signatures?.top_new ?? null : null;
      const why = fresh ? `${reason}; new error in the canary: ${newErrorText(fresh)}` : reason;
      return out.end(outcome, why, { ...at(step || (p?.canary === version ? (p.step ?? 0) + 1 : 0)), ...(fresh ? { new_error: fresh } : {}) });
    }
    if (Date.now() >= deadline) {
      return out.end("timed_out", `after ${flags.timeout} s the rollout is ${p.state.replaceAll("_", " ")} at ${stepText((p.step ?? 0) + 1)}; it goes on without this command`, at((p.step ?? 0) + 1));
    }
    await sleep(Math.min(flags.interval * 1000, Math.max(0, deadline - Date.now())));
  }
}

/** Policy fields whose value is a list: `--set health.origins=https://a.example,https://b.example`. */
const LIST_FIELDS = new Set(["health.origins", "progression.steps", "progression.approve"]);

/**
 * The body of `POST …/policy` from `--set <section>.<field>=<value>` arguments: a value is
 * JSON when it reads as JSON (numbers, true/false, null: back to the default), a list for a
 * list field (comma-separated, unless given as a JSON array), else a string.
 */
export function policyBody(sets) {
  if (!sets.length) fail("policy takes at least one --set <health|progression>.<field>=<value>");
  const body = {};
  const scalar = (text) => {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  };
  for (const set of sets) {
    const m = /^(health|progression)\.([a-z_]+)=(.*)$/s.exec(set);
    if (!m) fail(`--set ${JSON.stringify(set)}: give <health|progression>.<field>=<value>, e.g. health.min_clients=300`);
    const [, section, field, text] = m;
    const list = LIST_FIELDS.has(`${section}.${field}`) && !text.trim().startsWith("[") && text.trim() !== "null";
    const value = list ? text.split(",").map((x) => x.trim()).filter(Boolean).map(scalar) : scalar(text);
    (body[section] ??= {})[field] = value;
  }
  return body;
}

const USAGE = `usage: scripts/canary <command> [args] [--local | --persist-to <dir> | --url <url> --token <token>]
  publish <bundle> <version> <dir>   upload a version, then make it the canary at weight 0
  set-weight <bundle> <percent>      send <percent>% of clients to the canary
  promote <bundle>                   the canary becomes stable (weight 0, no canary)
  rollback <bundle>                  weight 0: every client back on stable
  status <bundle> [--json] [--exit-code]   show the rollout and its effective weight; with
                                     --exit-code, exit with the rollout's state (codes below)
  rollout <bundle> [--steps 1,5,25,50,100] [--bake <secs>]   progressive rollout (admin API)
  pause | resume <bundle>            hold or continue a progressive rollout (admin API)
  approve <bundle>                   approve the step a rollout waits at (progression.approve; admin API)
  watch <bundle> [--interval <s>] [--count <n>]   live health and steps (admin API)
  probe <bundle> [--edge-wait <secs>]   once the edge serves the canary to an override holder
                                     (waits up to --edge-wait, default 120 s), check every
                                     canary file through a signed override (admin API)
  revoke-overrides <bundle>          void every override token issued so far (admin API)
  policy <bundle> --set <health|progression>.<field>=<value> ...   change the policy, from the
                                     next step (lists comma-separated; null: the default); through
                                     the admin API when given (history entry, webhook), else KV
  token <name>                       a new operator token and its OPERATOR_TOKENS entry (name:sha256)
  release <bundle> <version> <dir> [--steps 10,50,100] [--bake <secs>] [--timeout <secs>]
          [--interval <secs>] [--edge-wait <secs>] [--no-promote] [--json]   for CI (admin
                                     API): publish, wait until the edge serves the new canary
                                     to an override holder (up to --edge-wait, default 120 s:
                                     config cache and KV propagation), probe it through a
                                     signed override, start the rollout (the config's
                                     progression without --steps), follow it to its end with
                                     a line per change (--json: a JSON object per line),
                                     promote it once it passed 100% (not with --no-promote)

exit codes of release and status --exit-code (other commands: 0, 1 error, 2 usage):
  0   done: every step passed (release: promoted); status: done, or no rollout and not rolled back
  1   error: the API unreachable, wrangler failed, ...
  2   usage: the command line cannot be read
  3   rolled back: the canary was cut (by the verdict or an operator)
  4   paused: an operator paused it or wrote the weight, or no pass within max_hold_secs
  5   timed out (release --timeout): the rollout goes on without the command
  6   refused: a bad name, version, step or directory, a version already live or uploaded,
      another canary live, a failed probe, or the admin API's refusal (an HTTP error status)
  7   superseded (release): another version became the canary during the rollout
  8   edge not serving (release): the edge did not serve the new canary to an override
      holder within --edge-wait; it stays the canary at weight 0, no rollout started
  10  running (status --exit-code): the rollout is still moving`;

export async function main(argv, log = console.log) {
  const { flags, positional } = parseArgs(argv);
  const [command, ...args] = positional;
  if (!command || command === "help") {
    log(USAGE);
    return;
  }
  const need = (n) => {
    if (args.length !== n) fail(`${command} takes ${n} argument(s)\n${USAGE}`);
  };
  const w = () => new Wrangler(flags);
  const viaApi = Boolean(flags.url && flags.token);
  if (viaApi && ["set-weight", "rollback", "promote", "status"].includes(command)) {
    const api = new AdminApi(flags);
    need(command === "set-weight" ? 2 : 1);
    const bundle = checkBundle(args[0]);
    if (command === "status") {
      let s;
      try {
        s = await api.call(bundle);
      } catch (e) {
        // With --exit-code, the API's refusal has its own code (an unreachable API: 1).
        if (!flags.exitCode || e.status === undefined) throw e;
        console.error(`canary: ${e.message}`);
        return new Outcome("refused", { reason: e.message });
      }
      log(flags.json ? JSON.stringify(s) : renderStatus(s));
      return flags.exitCode ? new Outcome(rolloutOutcome(s).outcome, { status: s }) : s;
    }
    const [path, body] = {
      "set-weight": () => ["/weight", { weight: checkWeight(args[1]) }],
      rollback: () => ["/rollback", { reason: flags.reason ?? "operator rollback (scripts/canary)" }],
      promote: () => ["/promote", {}],
    }[command]();
    // Name the canary this command is about: if another release became the canary since,
    // the control plane refuses it instead of applying it to the wrong version.
    const { config: current } = await api.call(bundle);
    if (current?.canary) body.canary = current.canary;
    const out = await api.call(bundle, path, { method: "POST", body });
    log(describe(bundle, out.config, out.cohorts ?? 10));
    return out.config;
  }
  switch (command) {
    case "release":
      return release(flags, args, log);
    case "rollout": {
      need(1);
      const bundle = checkBundle(args[0]);
      let body;
      if (flags.steps) {
        const steps = flags.steps.split(",").map((x) => checkWeight(x.trim()));
        body = { steps, ...(flags.bake ? { bake_secs: Number(flags.bake) } : {}) };
      }
      const out = await new AdminApi(flags).call(bundle, "/rollout", { method: "POST", body });
      log(`${bundle}: rollout started at weight ${out.config.weight}%`);
      log(renderStatus({ bundle, config: out.config, monitor: out.monitor, effective_weight: out.config.weight }));
      return out;
    }
    case "policy": {
      // A policy change (health, progression): through the admin API when it is configured
      // (recorded with who made it, notified), else a KV write the control plane adopts.
      need(1);
      const bundle = checkBundle(args[0]);
      const body = policyBody(flags.set);
      if (viaApi) {
        const api = new AdminApi(flags);
        const { config: current } = await api.call(bundle);
        if (!current) fail(`no rollout config for bundle ${bundle}; publish it first`);
        const { changes } = checked(bundle, (c) => JSON.parse(c.withPolicy(JSON.stringify(current), JSON.stringify(body))));
        const out = await api.call(bundle, "/policy", { method: "POST", body });
        log(`${bundle}: policy ${changes === "no change" ? "unchanged" : `changed, from the next step: ${changes}`}`);
        return out.config;
      }
      let changes = "";
      const { next } = await w().update(bundle, (c, current) => {
        const out = JSON.parse(c.withPolicy(current, JSON.stringify(body)));
        changes = out.changes;
        return JSON.stringify(out.config);
      });
      log(`${bundle}: policy ${changes === "no change" ? "unchanged" : `written to KV (the control plane adopts it, from the next step): ${changes}`}`);
      return next;
    }
    case "approve": {
      // The gated step (progression.approve) the rollout waits at, for the current canary.
      need(1);
      const bundle = checkBundle(args[0]);
      const api = new AdminApi(flags);
      const before = await api.call(bundle, "");
      const canary = before.config?.canary;
      const out = await api.call(bundle, "/approve", { method: "POST", body: canary ? { canary } : {} });
      log(`${bundle}: approved; ${canary} now serves ${out.config.weight}%`);
      return out;
    }
    case "pause":
    case "resume": {
      need(1);
      const bundle = checkBundle(args[0]);
      const out = await new AdminApi(flags).call(bundle, `/${command}`, { method: "POST" });
      log(`${bundle}: rollout ${out.monitor.progress?.state}`);
      return out;
    }
    case "watch": {
      need(1);
      const bundle = checkBundle(args[0]);
      const api = new AdminApi(flags);
      const tty = process.stdout.isTTY;
      for (let i = 0; i < flags.count; i++) {
        const s = await api.call(bundle);
        if (tty) process.stdout.write("\x1b[2J\x1b[H");
        log(renderStatus(s));
        if (i + 1 < flags.count) await new Promise((r) => setTimeout(r, flags.interval * 1000));
      }
      return;
    }
    case "probe": {
      need(1);
      return probe(new AdminApi(flags), checkBundle(args[0]), log, { edgeWait: flags.edgeWait });
    }
    case "revoke-overrides": {
      need(1);
      const bundle = checkBundle(args[0]);
      const out = await new AdminApi(flags).call(bundle, "/revoke-overrides", { method: "POST" });
      log(`${bundle}: override tokens issued before ${new Date(out.config.overrides_not_before * 1000).toISOString()} are void`);
      return out;
    }
    case "token": {
      need(1);
      const name = args[0];
      const token = randomBytes(32).toString("hex");
      // The core's name rule and token hash; the entry checked as the worker reads it.
      const entry = checked("", (c) => c.operatorEntry(name, token));
      if (flags.json) log(JSON.stringify({ name, token, entry }));
      else {
        log(`token for ${name} (give it to them; it is shown once): ${token}`);
        log(`add to the OPERATOR_TOKENS secret (comma-separated): ${entry}`);
      }
      return { name, token, entry };
    }
    case "publish": {
      need(3);
      const { current, next, cohorts } = await publish(flags, args, log);
      log(current
        ? `${args[0]} ${args[1]} published as canary at weight 0; raise it with: scripts/canary set-weight ${args[0]} <percent>`
        : `${args[0]} ${args[1]} published as stable (new bundle)`);
      log(describe(args[0], next, cohorts));
      return next;
    }
    case "set-weight": {
      need(2);
      const [bundle, weight] = [checkBundle(args[0]), checkWeight(args[1])];
      const wr = w();
      const cohorts = wr.settings.cohorts;
      // Before anything is read: a weight that serves nobody.
      checked(`bad weight ${JSON.stringify(args[1])}`, (c) => c.weightServing(weight, cohorts));
      const { next } = await wr.update(bundle, (c, current) => c.withWeight(current, weight, cohorts),
        `no rollout config for bundle ${bundle}; publish it first`);
      log(describe(bundle, next, wr.settings.cohorts));
      return next;
    }
    case "promote": {
      need(1);
      const bundle = checkBundle(args[0]);
      const { current, next } = await w().update(bundle, (c, current) => c.promoted(current));
      log(`${bundle}: ${current.canary} is now stable (was ${current.stable})`);
      return next;
    }
    case "rollback": {
      need(1);
      const bundle = checkBundle(args[0]);
      const reason = flags.reason ?? "operator rollback (scripts/canary)";
      const { next } = await w().update(bundle, (c, current) => c.rolledBack(current, reason, Date.now()));
      log(`${bundle}: rolled back, every client on stable ${next.stable}${next.canary ? ` (canary ${next.canary} kept, dark)` : ""}`);
      return next;
    }
    case "status": {
      need(1);
      const bundle = checkBundle(args[0]);
      const wr = w();
      const current = (await wr.readConfig(bundle))?.config;
      if (!current) fail(`no rollout config for bundle ${bundle}`);
      if (flags.json) {
        log(JSON.stringify({ bundle, config: current, effective: effectiveWeight(current.canary ? current.weight ?? 0 : 0, wr.settings.cohorts) }));
      } else {
        log(describe(bundle, current, wr.settings.cohorts));
      }
      // From the config alone: no rollout state without the API.
      return flags.exitCode ? new Outcome(rolloutOutcome({ config: current }).outcome, { config: current }) : current;
    }
    default:
      fail(`unknown command ${command}\n${USAGE}`);
  }
}

// Run as a program (also through a symlink: Node loads the module from its real path).
if (process.argv[1] && realpathSync(resolve(process.argv[1])) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((result) => {
    // release, status --exit-code: the outcome's code (EXIT), once stdout is written.
    if (result instanceof Outcome) process.exitCode = result.exitCode;
  }, (e) => {
    console.error(`canary: ${e.message}`);
    process.exit(e instanceof UsageError ? EXIT.usage : EXIT.error);
  });
}
