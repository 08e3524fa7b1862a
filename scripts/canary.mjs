// scripts/canary: operate canary-edge rollouts. A thin layer over wrangler: R2 object puts
// for files, KV key get/put for the rollout config `rollout/<bundle>`.
//
//   canary publish <bundle> <version> <dir>   upload <dir> as <bundle>/<version>/..., then its
//                                             manifest <bundle>/.manifests/<version>.json, then
//                                             make it the canary at weight 0 (or the stable, if
//                                             the bundle is new); refused, before any upload,
//                                             for a version already in R2 (immutable)
//   canary set-weight <bundle> <percent>      send <percent>% of clients to the canary
//   canary promote <bundle>                   canary becomes stable, weight 0
//   canary rollback <bundle>                  weight 0 (the canary stays named, dark)
//   canary status <bundle>                    show the config and the effective weight
//
//   canary rollout <bundle> [--steps 1,5,25,50,100] [--bake <secs>]   progressive rollout (API)
//   canary pause|resume <bundle>              hold or continue a progressive rollout (API)
//   canary watch <bundle> [--interval <s>] [--count <n>]   live view of health and steps (API)
//   canary probe <bundle>                     fetch every canary file through a signed
//                                             override, before any real user gets it (API)
//   canary revoke-overrides <bundle>          void every override token issued so far (API)
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
// release became the canary meanwhile. rollout, pause, resume, watch and probe need the API.

import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { devNull, tmpdir } from "node:os";
import { join, relative, resolve, sep } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";

const run = promisify(execFile);
const ROOT = resolve(fileURLToPath(import.meta.url), "../..");

// Must match core/src/config/mod.rs (BundleName, Version, Weight) and core/src/route.rs.
const BUNDLE_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$/;
const KV_PREFIX = "rollout/";
const KV_BINDING = "ROLLOUTS";
const R2_BINDING = "BUNDLES";

// Must match core/src/http.rs content_type_for.
const CONTENT_TYPES = {
  js: "text/javascript; charset=utf-8", mjs: "text/javascript; charset=utf-8",
  cjs: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8",
  json: "application/json; charset=utf-8", map: "application/json; charset=utf-8",
  html: "text/html; charset=utf-8", htm: "text/html; charset=utf-8",
  txt: "text/plain; charset=utf-8", svg: "image/svg+xml", wasm: "application/wasm",
  png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif",
  webp: "image/webp", ico: "image/x-icon", woff2: "font/woff2", woff: "font/woff",
};

class UsageError extends Error {}

function fail(message) {
  throw new UsageError(message);
}

export function checkBundle(bundle) {
  if (!bundle || !BUNDLE_RE.test(bundle)) {
    fail(`bad bundle name ${JSON.stringify(bundle ?? "")}: use 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit`);
  }
  return bundle;
}

export function checkVersion(version) {
  if (!version || !VERSION_RE.test(version) || version.includes("..")) {
    fail(`bad version ${JSON.stringify(version ?? "")}: use 1-64 characters of A-Z, a-z, 0-9, '.', '-', '+' or '_', starting with a letter or digit, without '..'`);
  }
  return version;
}

export function checkWeight(text) {
  if (typeof text !== "string" || !/^\d{1,3}$/.test(text) || Number(text) > 100) {
    fail(`bad weight ${JSON.stringify(text ?? "")}: use an integer percent from 0 to 100`);
  }
  return Number(text);
}

function parseArgs(argv) {
  const flags = {
    local: false, json: false, persistTo: null, config: null,
    url: process.env.CANARY_URL ?? null, token: process.env.CANARY_ADMIN_TOKEN ?? null,
    steps: null, bake: null, interval: 2, count: Infinity, reason: null,
  };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
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
  const cohorts = Number(/^\s*COHORTS\s*=\s*"?(\d+)"?/m.exec(text)?.[1] ?? 10);
  if (!bucket) fail(`${configPath} has no [[r2_buckets]] bucket_name for ${R2_BINDING}`);
  return { bucket, cohorts };
}

class Wrangler {
  constructor(flags) {
    this.config = resolve(flags.config ?? join(ROOT, "wrangler.toml"));
    this.local = Boolean(flags.local);
    this.location = flags.local ? ["--local"] : ["--remote"];
    if (flags.persistTo) this.location.push("--persist-to", resolve(flags.persistTo));
    this.settings = workerSettings(this.config);
  }

  async exec(args) {
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

  /** The bundle's config, or null when the key does not exist. */
  async readConfig(bundle) {
    const out = await this.exec(["kv", "key", "get", "--binding", KV_BINDING, KV_PREFIX + bundle, "--text"]);
    const text = out.trim();
    if (text === "Value not found" || text === "") return null;
    try {
      return JSON.parse(text);
    } catch {
      fail(`rollout/${bundle} in KV is not valid JSON; fix it with wrangler kv key put`);
    }
  }

  async writeConfig(bundle, config) {
    validateConfig(config);
    await this.exec(["kv", "key", "put", "--binding", KV_BINDING, KV_PREFIX + bundle, JSON.stringify(config)]);
  }

  /** Read-modify-write of an existing config; `change` returns the next config. */
  async update(bundle, change, missing = `no rollout config for bundle ${bundle}`) {
    const current = await this.readConfig(bundle);
    if (!current) fail(missing);
    const next = change(current);
    await this.writeConfig(bundle, next);
    return { current, next };
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
    const ext = file.split(".").pop().toLowerCase();
    const type = CONTENT_TYPES[ext] ?? "application/octet-stream";
    await this.exec(["r2", "object", "put", `${this.settings.bucket}/${key}`, "--file", file, "--content-type", type]);
  }
}

/** The same rules as the worker's Rollout::parse, so the CLI never writes what it rejects. */
export function validateConfig(c) {
  if (typeof c !== "object" || c === null || Array.isArray(c)) fail("config must be a JSON object");
  checkVersion(c.stable);
  if (c.canary != null) {
    checkVersion(c.canary);
    if (c.canary === c.stable) fail("canary equals stable; set canary to null");
  }
  if (c.weight !== undefined && !(Number.isInteger(c.weight) && c.weight >= 0 && c.weight <= 100)) {
    fail(`weight must be an integer from 0 to 100, got ${JSON.stringify(c.weight)}`);
  }
  return c;
}

export function effectiveWeight(weight, cohorts) {
  const on = Math.floor((weight * cohorts) / 100);
  return { cohortsOnCanary: on, percent: (on * 100) / cohorts, rounded: (weight * cohorts) % 100 !== 0 };
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
    if (!res.ok) throw new Error(`${method} ${path || "/"}: ${res.status} ${text.trim()}`);
    return JSON.parse(text);
  }
}

function pct(rate) {
  return `${(rate * 100).toFixed(2)}%`;
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

async function probe(api, bundle, log) {
  const status = await api.call(bundle);
  const canary = status.config?.canary;
  if (!canary) fail(`${bundle} has no canary to probe`);
  const { files } = await api.call(bundle, `/files/${canary}`);
  if (!files.length) fail(`no files under ${bundle}/${canary}/ in R2`);
  const { token, header } = await api.call(bundle, "/override", { method: "POST", body: { channel: "canary", ttl_secs: 600 } });
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
  if (failures) throw new Error(`probe of ${bundle} ${canary}: ${failures} of ${files.length} files failed; do not raise the weight`);
  log(`probe of ${bundle} ${canary}: all ${files.length} files served correctly through the override`);
  return { canary, files: files.length };
}

/**
 * R2 key of a version's manifest: the list of the files `publish` uploaded, which the
 * worker reads when a canary file is missing, to tell a published file that is gone (a
 * canary error) from one the canary never had (not counted). `.manifests` can never be a
 * version (versions start with a letter or digit), so no route reaches it.
 */
export function manifestKey(bundle, version) {
  return `${bundle}/.manifests/${version}.json`;
}

/** The manifest of `version`: its file paths, relative to the version, sorted. */
export function manifestOf(bundle, version, paths) {
  return { bundle, version, files: [...paths].sort() };
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
 * The R2 keys of `version` already uploaded: with the admin API, every file under
 * `<bundle>/<version>/` (the worker lists its bucket); without it, those among `keys` (what
 * this publish would upload; wrangler cannot list), 4 wrangler gets at a time. The manifest
 * through wrangler in both modes (the API lists only the version's prefix).
 */
async function uploadedKeys(wr, api, bundle, version, keys) {
  const prefix = `${bundle}/${version}/`;
  const manifest = manifestKey(bundle, version);
  if (api) {
    const [{ files }, hasManifest] = await Promise.all([
      api.call(bundle, `/files/${version}`),
      wr.hasObject(manifest),
    ]);
    return [...files.map((f) => prefix + f.path), ...(hasManifest ? [manifest] : [])];
  }
  // The manifest alone first: on a fresh local state that get creates R2's database, which
  // wranglers started together race to create (SQLITE_BUSY, "internal error").
  const hasManifest = await wr.hasObject(manifest);
  // One at a time on a local state: wranglers reading the same local R2 database at once
  // (or beside a running `wrangler dev`) fail with SQLITE_BUSY.
  const found = await mapLimit(keys, wr.local ? 1 : 4, (key) => wr.hasObject(key));
  return [...keys.filter((_, i) => found[i]), ...(hasManifest ? [manifest] : [])];
}

/**
 * Versions are immutable: a pinned URL (`/<bundle>@<version>/...`) is cached for a year, so
 * files uploaded again under a version would never be seen by clients that already have
 * them, and a mix of old and new files could be served. Refuses any version with a file or a
 * manifest in R2, before anything is written.
 */
async function refuseUploaded(wr, api, bundle, version, keys) {
  const found = await uploadedKeys(wr, api, bundle, version, keys);
  if (found.length === 0) return;
  const shown = found.slice(0, 3).join(", ") + (found.length > 3 ? ` and ${found.length - 3} more` : "");
  fail(`${bundle} ${version} was already uploaded: R2 has ${shown}; versions are immutable (pinned URLs under ${bundle}/${version}/ are cached for a year): publish a new version`);
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

// The KV path's transitions, as the control plane makes them (core/src/control/commands.rs:
// publish, promote, propose_rollback), so one command gives one config with or without
// --url (tests/cli-api.test.mjs checks it). `rollback` and `cohort_offset` belong to a
// canary: a new canary gets neither (a kept offset would give it the previous canary's
// first cohorts).
function published(current, version) {
  const { rollback, cohort_offset, ...rest } = current;
  return { ...rest, canary: version, weight: 0 };
}

function promoted(current) {
  const { rollback, ...rest } = current;
  return { ...rest, stable: current.canary, canary: null, weight: 0 };
}

function rolledBack(current, reason, at) {
  return { ...current, weight: 0, rollback: { at: at.toISOString(), reason: reason.slice(0, 200), by: "operator" } };
}

const USAGE = `usage: scripts/canary <command> [args] [--local | --persist-to <dir> | --url <url> --token <token>]
  publish <bundle> <version> <dir>   upload a version, then make it the canary at weight 0
  set-weight <bundle> <percent>      send <percent>% of clients to the canary
  promote <bundle>                   the canary becomes stable (weight 0, no canary)
  rollback <bundle>                  weight 0: every client back on stable
  status <bundle> [--json]           show the rollout and its effective weight
  rollout <bundle> [--steps 1,5,25,50,100] [--bake <secs>]   progressive rollout (admin API)
  pause | resume <bundle>            hold or continue a progressive rollout (admin API)
  watch <bundle> [--interval <s>] [--count <n>]   live health and steps (admin API)
  probe <bundle>                     check every canary file through a signed override (admin API)
  revoke-overrides <bundle>          void every override token issued so far (admin API)
  token <name>                       a new operator token and its OPERATOR_TOKENS entry (name:sha256)`;

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
      const s = await api.call(bundle);
      log(flags.json ? JSON.stringify(s) : renderStatus(s));
      return s;
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
      return probe(new AdminApi(flags), checkBundle(args[0]), log);
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
      // Must match core/src/operators.rs (valid_name).
      const name = args[0];
      if (!/^[A-Za-z0-9._@+-]{1,128}$/.test(name) || name === "operator" || name === "read-only") {
        fail(`operator name ${JSON.stringify(name)}: 1-128 of A-Z a-z 0-9 . _ @ + -, not "operator" or "read-only"`);
      }
      const token = randomBytes(32).toString("hex");
      const entry = `${name}:${createHash("sha256").update(token).digest("hex")}`;
      if (flags.json) log(JSON.stringify({ name, token, entry }));
      else {
        log(`token for ${name} (give it to them; it is shown once): ${token}`);
        log(`add to the OPERATOR_TOKENS secret (comma-separated): ${entry}`);
      }
      return { name, token, entry };
    }
    case "publish": {
      need(3);
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
      for (const f of files) {
        const rel = relative(dir, f).split(sep);
        if (rel.some((s) => s === "" || s === "." || s === ".." || s.includes("\\") || s.length > 255)) {
          fail(`cannot publish ${f}: its path is not servable`);
        }
      }
      const wr = w();
      const api = viaApi ? new AdminApi(flags) : null;
      const current = api ? (await api.call(bundle)).config : await wr.readConfig(bundle);
      if (current && (current.stable === version || current.canary === version)) {
        fail(`${bundle} ${version} is already live (${current.stable === version ? "stable" : "canary"}); versions are immutable: publish a new version`);
      }
      const uploads = files.map((f) => {
        const path = relative(dir, f).split(sep).join("/");
        return { file: f, path, key: `${bundle}/${version}/${path}` };
      });
      await refuseUploaded(wr, api, bundle, version, uploads.map((u) => u.key));
      // Files first, then the manifest, config last: a failed upload leaves the live
      // rollout untouched, and the manifest lists only files that were uploaded.
      const paths = [];
      for (const { file, path, key } of uploads) {
        await wr.putObject(key, file);
        paths.push(path);
        log(`uploaded ${key}`);
      }
      const manifest = manifestOf(bundle, version, paths);
      const tmp = mkdtempSync(join(tmpdir(), "canary-manifest-"));
      try {
        const file = join(tmp, `${version}.json`);
        writeFileSync(file, JSON.stringify(manifest));
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
        next = current ? published(current, version) : { stable: version, canary: null, weight: 0 };
        await wr.writeConfig(bundle, next);
      }
      log(current
        ? `${bundle} ${version} published as canary at weight 0; raise it with: scripts/canary set-weight ${bundle} <percent>`
        : `${bundle} ${version} published as stable (new bundle)`);
      log(describe(bundle, next, wr.settings.cohorts));
      return next;
    }
    case "set-weight": {
      need(2);
      const [bundle, weight] = [checkBundle(args[0]), checkWeight(args[1])];
      const wr = w();
      const cohorts = wr.settings.cohorts;
      if (weight > 0 && effectiveWeight(weight, cohorts).cohortsOnCanary === 0) {
        fail(`weight ${weight}% puts no cohort on the canary with COHORTS=${cohorts} (one cohort is ${100 / cohorts}%): nobody would get it`);
      }
      const { next } = await wr.update(bundle, (current) => {
        if (!current.canary && weight > 0) fail(`${bundle} has no canary; publish a version first`);
        return { ...current, weight };
      }, `no rollout config for bundle ${bundle}; publish it first`);
      log(describe(bundle, next, wr.settings.cohorts));
      return next;
    }
    case "promote": {
      need(1);
      const bundle = checkBundle(args[0]);
      const { current, next } = await w().update(bundle, (current) => {
        if (!current.canary) fail(`${bundle} has no canary to promote`);
        return promoted(current);
      });
      log(`${bundle}: ${current.canary} is now stable (was ${current.stable})`);
      return next;
    }
    case "rollback": {
      need(1);
      const bundle = checkBundle(args[0]);
      const reason = flags.reason ?? "operator rollback (scripts/canary)";
      const { next } = await w().update(bundle, (current) => rolledBack(current, reason, new Date()));
      log(`${bundle}: rolled back, every client on stable ${next.stable}${next.canary ? ` (canary ${next.canary} kept, dark)` : ""}`);
      return next;
    }
    case "status": {
      need(1);
      const bundle = checkBundle(args[0]);
      const wr = w();
      const current = await wr.readConfig(bundle);
      if (!current) fail(`no rollout config for bundle ${bundle}`);
      if (flags.json) {
        log(JSON.stringify({ bundle, config: current, effective: effectiveWeight(current.canary ? current.weight ?? 0 : 0, wr.settings.cohorts) }));
      } else {
        log(describe(bundle, current, wr.settings.cohorts));
      }
      return current;
    }
    default:
      fail(`unknown command ${command}\n${USAGE}`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`canary: ${e.message}`);
    process.exit(e instanceof UsageError ? 2 : 1);
  });
}
