// Who may do what, end to end against the built worker (workerd via Miniflare, real KV, R2
// and Durable Objects), for every kind of credential: bearer tokens (admin, read-only, a
// named operator), console sessions of each, Cloudflare Access (a browser's, with its
// cookie, and an API client's, with the header alone) and an Access session.
// - the table: credential x route -> status, every write needing the write scope, every
//   session and browser Access request from a console page (reads too);
// - a read-only session cannot log everyone out (and the admin's session lives on);
// - a session ends with its credential: an operator removed from OPERATOR_TOKENS, a rotated
//   READ_TOKEN (a deploy: the runtime restarted with new vars);
// - a bundle with no config: 404 and no Durable Object state, even for an image request
//   carrying the session; its first publish still works (API and CLI);
// - 10,000 logouts cannot hide a "log out everywhere" (and sessions the listing cannot
//   vouch for are refused); admin bodies are capped at 16 KiB, chunked or not; the login
//   limit keys IPv6 by /48.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, request as httpRequest } from "node:http";
import { execFile, execFileSync } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { CONTROL_NAME, ROOT, copyDemoFiles, startWorker } from "./support/harness.mjs";

const run = promisify(execFile);
const TOKEN = "scopes-admin-token-0123456789abcdef";
const READ = "scopes-read-token-0123456789abcdef0";
const READ_ROTATED = "scopes-read-token-rotated-0123456789";
const newOperator = (name) =>
  JSON.parse(execFileSync(process.execPath, [join(ROOT, "scripts/canary.mjs"), "token", name, "--json"], { encoding: "utf8" }));
const alice = newOperator("alice");
const bob = newOperator("bob");
const zoe = newOperator("zoe");
const CONSOLE = "http://console.test";
const PAGE = `${CONSOLE}/__canary/ui/`;
const EDGE = "http://edge.test";
const AUD = "scopes-aud-0123";

let ipSerial = 0;
/** A fresh client address per login: the login limit is per network. */
const nextIp = () => `198.51.${100 + (++ipSerial >> 8)}.${ipSerial & 255}`;

/** A request to the worker at an absolute URL (host matters here), never redirected. */
async function call(w, url, { method = "GET", headers = {}, body, ip = "192.0.2.10" } = {}) {
  const res = await w.mf.dispatchFetch(url, {
    method,
    headers: { "cf-connecting-ip": ip, ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    redirect: "manual",
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* text */
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** What the console's own page sends with its fetches (Fetch Metadata, Origin, Referer). */
const fromConsolePage = (method) => ({
  "sec-fetch-site": "same-origin",
  "sec-fetch-dest": "empty",
  referer: PAGE,
  ...(method === "GET" ? {} : { origin: CONSOLE }),
});

/** Logs in on the console host with `token`: a credential of kind "session". */
async function login(w, token) {
  const r = await call(w, `${CONSOLE}/__canary/ui/login`, { method: "POST", body: { token }, ip: nextIp(), headers: fromConsolePage("POST") });
  assert.equal(r.status, 200, r.text);
  return { cookie: r.headers.get("set-cookie").split(";")[0], csrf: r.json.csrf, by: r.json.by };
}

/** DO state on disk: the HealthMonitor objects' databases (one per bundle that ever ran). */
function monitorDatabases(state) {
  const dir = join(state, "v3", "do", `${CONTROL_NAME}-HealthMonitor`);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite").sort();
}

// ---------------------------------------------------------------- Cloudflare Access, served here

const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const b64 = (x) => Buffer.from(typeof x === "string" ? x : JSON.stringify(x)).toString("base64url");
function accessJwt(team, email = "carol@example.com") {
  const now = Math.floor(Date.now() / 1000);
  const body = { aud: [AUD], email, iss: team, iat: now, exp: now + 3600, sub: email };
  const input = `${b64({ alg: "RS256", kid: "k1", typ: "JWT" })}.${b64(body)}`;
  return `${input}.${sign("RSA-SHA256", Buffer.from(input), privateKey).toString("base64url")}`;
}
async function startJwks() {
  const server = createServer((req, res) => {
    if (req.url !== "/cdn-cgi/access/certs") return res.writeHead(404).end();
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ keys: [{ ...publicKey.export({ format: "jwk" }), kid: "k1", alg: "RS256", use: "sig" }] }));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, team: `http://127.0.0.1:${server.address().port}` };
}

describe("credential x scope x route", () => {
  let w;
  let state;
  let jwks;
  let creds;

  before(async () => {
    jwks = await startJwks();
    state = mkdtempSync(join(tmpdir(), "canary-edge-scopes-"));
    w = await startWorker({
      persist: state,
      listen: true,
      captureLogs: true,
      vars: {
        ADMIN_TOKEN: TOKEN,
        READ_TOKEN: READ,
        OPERATOR_TOKENS: alice.entry,
        CONSOLE_HOST: "console.test",
        OVERRIDE_SECRET: "scopes-override-secret",
        ACCESS_TEAM_DOMAIN: jwks.team,
        ACCESS_AUD: AUD,
      },
    });
    const jwt = accessJwt(jwks.team);
    // An Access session: a browser behind Access (its CF_Authorization cookie; Access adds
    // the header to every request it lets through).
    const started = await call(w, `${CONSOLE}/__canary/ui/session`, {
      headers: { ...fromConsolePage("GET"), "cf-access-jwt-assertion": jwt, cookie: `CF_Authorization=${jwt}` },
    });
    assert.equal(started.status, 200, started.text);
    const accessSession = { cookie: started.headers.get("set-cookie").split(";")[0], csrf: started.json.csrf };
    const session = (s) => (method) => ({ ...fromConsolePage(method), cookie: s.cookie, ...(method === "GET" ? {} : { "x-canary-csrf": s.csrf }) });
    const bearer = (token) => () => ({ authorization: `Bearer ${token}` });
    creds = {
      "bearer admin": { headers: bearer(TOKEN), write: true },
      "bearer read": { headers: bearer(READ), write: false },
      "bearer alice": { headers: bearer(alice.token), write: true },
      "session admin": { headers: session(await login(w, TOKEN)), write: true },
      "session read": { headers: session(await login(w, READ)), write: false },
      "session alice": { headers: session(await login(w, alice.token)), write: true },
      "session access": {
        headers: (method) => ({ ...session(accessSession)(method), "cf-access-jwt-assertion": jwt, cookie: `${accessSession.cookie}; CF_Authorization=${jwt}` }),
        write: true,
      },
      // The identity alone, from a browser: reads from a console page; writes go through the session.
      "access browser": {
        headers: (method) => ({ ...fromConsolePage(method), "cf-access-jwt-assertion": jwt, cookie: `CF_Authorization=${jwt}` }),
        write: false,
      },
      // A service token (CI): the header alone, no cookie, no Fetch Metadata.
      "access api": { headers: () => ({ "cf-access-jwt-assertion": jwt }), write: true },
    };
  });
  after(async () => {
    await w?.dispose();
    jwks?.server.close();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  // Every admin route. Writes name a canary that is not the canary ("9.9.9"): once past
  // the door, the control plane refuses them (409) and nothing changes, so one table can
  // try every write with every credential.
  const NOT_THE_CANARY = { canary: "9.9.9" };
  const ROUTES = [
    { method: "GET", path: "/__canary/api", ok: 200 },
    { method: "GET", path: "/__canary/api/demo", ok: 200 },
    { method: "GET", path: "/__canary/api/demo/minutes", ok: 200 },
    { method: "GET", path: "/__canary/api/demo/files/1.1.0", ok: 200 },
    { method: "POST", path: "/__canary/api/demo/weight", body: { weight: 0, ...NOT_THE_CANARY }, ok: 409 },
    { method: "POST", path: "/__canary/api/demo/rollout", body: { steps: [50, 100], ...NOT_THE_CANARY }, ok: 409 },
    { method: "POST", path: "/__canary/api/demo/pause", body: NOT_THE_CANARY, ok: 409 },
    { method: "POST", path: "/__canary/api/demo/resume", body: NOT_THE_CANARY, ok: 409 },
    { method: "POST", path: "/__canary/api/demo/approve", body: NOT_THE_CANARY, ok: 409 },
    { method: "POST", path: "/__canary/api/demo/rollback", body: { reason: "x", ...NOT_THE_CANARY }, ok: 409 },
    { method: "POST", path: "/__canary/api/demo/promote", body: NOT_THE_CANARY, ok: 409 },
    { method: "POST", path: "/__canary/api/demo/publish", body: { version: "1.1.0", ...NOT_THE_CANARY }, ok: 409 },
    { method: "POST", path: "/__canary/api/demo/revoke-overrides", body: NOT_THE_CANARY, ok: 409 },
    { method: "POST", path: "/__canary/api/demo/override", body: { channel: "canary", ttl_secs: 60 }, ok: 200 },
  ];

  test("the table: every write needs the write scope, on every path; reads need a credential", async () => {
    const before = JSON.parse(await w.kv.get("rollout/demo"));
    const rows = [];
    const wrong = [];
    for (const [kind, cred] of Object.entries(creds)) {
      for (const route of ROUTES) {
        const isRead = route.method === "GET";
        const expected = isRead || cred.write ? route.ok : 403;
        const r = await call(w, `${CONSOLE}${route.path}`, { method: route.method, headers: cred.headers(route.method), body: route.body });
        rows.push(`${kind.padEnd(15)} ${route.method.padEnd(4)} ${route.path.padEnd(40)} ${r.status}`);
        if (r.status !== expected) wrong.push(`${kind} ${route.method} ${route.path}: ${r.status} (expected ${expected}) ${r.text.slice(0, 120)}`);
      }
    }
    if (process.env.SCOPES_VERBOSE) console.log(rows.join("\n"));
    assert.deepEqual(wrong, []);
    assert.deepEqual(JSON.parse(await w.kv.get("rollout/demo")), before, "no write changed the config");
    // Without a credential: 401 everywhere; a console-host credential on a bundle's host: 401.
    for (const route of ROUTES) {
      assert.equal((await call(w, `${EDGE}${route.path}`, { method: route.method, body: route.body })).status, 401, route.path);
      assert.equal((await call(w, `${EDGE}${route.path}`, { method: route.method, headers: creds["session admin"].headers(route.method), body: route.body })).status, 401);
    }
  });

  test("a session's or a browser Access identity's reads, too, come only from a console page", async () => {
    const away = { "sec-fetch-site": "same-site", "sec-fetch-dest": "image", referer: "http://shop.console.test/" };
    for (const kind of ["session admin", "session read", "session access", "access browser"]) {
      const headers = { ...creds[kind].headers("GET"), ...away };
      const r = await call(w, `${CONSOLE}/__canary/api/demo`, { headers });
      assert.equal(r.status, 403, `${kind}: ${r.text}`);
      assert.match(r.text, /only the console's own pages/);
    }
    // A bearer token or a service token is no browser's: no page check.
    for (const kind of ["bearer read", "access api"]) {
      assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: creds[kind].headers("GET") })).status, 200, kind);
    }
  });

  test("a same-site image request with the session to /__canary/api/<unknown> is refused and creates no state", async () => {
    const dbs = monitorDatabases(state);
    const headers = { ...creds["session admin"].headers("GET"), "sec-fetch-site": "same-site", "sec-fetch-dest": "image", "sec-fetch-mode": "no-cors", referer: "http://sdk.console.test/page.html" };
    delete headers.origin;
    const r = await call(w, `${CONSOLE}/__canary/api/ghost-image`, { headers });
    assert.equal(r.status, 403, r.text);
    assert.deepEqual(monitorDatabases(state), dbs, "no Durable Object state");
  });

  test("reads and writes for a bundle with no config answer 404 and create no state; its first publish works", async () => {
    const dbs = monitorDatabases(state);
    for (const kind of ["bearer admin", "bearer read", "session admin", "access api"]) {
      for (const [method, path, body] of [
        ["GET", "/__canary/api/ghost"],
        ["GET", "/__canary/api/ghost/minutes"],
        ["GET", "/__canary/api/ghost/files/1.0.0"],
        ["POST", "/__canary/api/ghost/weight", { weight: 10 }],
        ["POST", "/__canary/api/ghost/override", { channel: "canary" }],
        ["POST", "/__canary/api/ghost/revoke-overrides", {}],
      ]) {
        const cred = creds[kind];
        const r = await call(w, `${CONSOLE}${path}`, { method, headers: cred.headers(method), body });
        const expected = method === "GET" || cred.write ? 404 : 403;
        assert.equal(r.status, expected, `${kind} ${method} ${path}: ${r.text}`);
        if (expected === 404) assert.match(r.text, /no rollout config for bundle `ghost`/);
      }
    }
    assert.deepEqual(monitorDatabases(state), dbs, "no Durable Object state for ghost");
    assert.equal(await w.kv.get("rollout/ghost"), null);

    // The first version of a new bundle: its files uploaded, then the publish makes it stable.
    await copyDemoFiles(w, "fresh");
    const published = await call(w, `${EDGE}/__canary/api/fresh/publish`, { method: "POST", headers: creds["bearer alice"].headers("POST"), body: { version: "1.0.0" } });
    assert.equal(published.status, 200, published.text);
    assert.equal(published.json.config.stable, "1.0.0");
    assert.equal(monitorDatabases(state).length, dbs.length + 1, "the new bundle's control plane");
    const status = await call(w, `${EDGE}/__canary/api/fresh`, { headers: creds["bearer read"].headers("GET") });
    assert.equal(status.status, 200, status.text);
    assert.equal(status.json.config.stable, "1.0.0");
  });

  test("scripts/canary publish with the admin API: a new bundle's first version", async () => {
    const env = { ...process.env, CANARY_URL: w.url.href, CANARY_ADMIN_TOKEN: TOKEN };
    const { stdout } = await run(join(ROOT, "scripts/canary"), ["publish", "newbie", "1.0.0", join(ROOT, "fixtures/demo/1.0.0"), "--persist-to", state], { cwd: ROOT, env });
    assert.match(stdout, /newbie 1\.0\.0 published as stable \(new bundle\)/);
    assert.equal(JSON.parse(await w.kv.get("rollout/newbie")).stable, "1.0.0");
    // Published again: refused before any upload (the bundle exists now: the API lists it).
    const again = await run(join(ROOT, "scripts/canary"), ["publish", "newbie", "1.0.0", join(ROOT, "fixtures/demo/1.0.0"), "--persist-to", state], { cwd: ROOT, env }).catch((e) => e);
    assert.equal(again.code, 2, `${again.stdout}${again.stderr}`);
  });

  test("a read-only session cannot log everyone out; it may end its own; the admin's session lives on", async () => {
    const admin = await login(w, TOKEN);
    const reader = await login(w, READ);
    const everywhere = await call(w, `${CONSOLE}/__canary/ui/logout`, {
      method: "POST",
      headers: { ...fromConsolePage("POST"), cookie: reader.cookie, "x-canary-csrf": reader.csrf },
      body: { everywhere: true },
    });
    assert.equal(everywhere.status, 403, everywhere.text);
    assert.match(everywhere.text, /may only read/);
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { ...fromConsolePage("GET"), cookie: admin.cookie } })).status, 200, "the admin's session works");
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { ...fromConsolePage("GET"), cookie: reader.cookie } })).status, 200, "and the reader's");
    assert.equal((await call(w, `${CONSOLE}/__canary/ui/logout`, { method: "POST", headers: { authorization: `Bearer ${READ}` }, body: { everywhere: true } })).status, 403);
    // Its own session: any scope may end it (a console page, its CSRF token).
    const own = await call(w, `${CONSOLE}/__canary/ui/logout`, {
      method: "POST",
      headers: { ...fromConsolePage("POST"), cookie: reader.cookie, "x-canary-csrf": reader.csrf },
      body: {},
    });
    assert.equal(own.status, 200, own.text);
    assert.equal(own.json.revoked, 1);
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: reader.cookie } })).status, 401, "the reader's own session ended");
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: admin.cookie } })).status, 200, "the admin's session still works");
    // The admin may: every session ends, its own too.
    const all = await call(w, `${CONSOLE}/__canary/ui/logout`, {
      method: "POST",
      headers: { ...fromConsolePage("POST"), cookie: admin.cookie, "x-canary-csrf": admin.csrf },
      body: { everywhere: true },
    });
    assert.equal(all.status, 200, all.text);
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: admin.cookie } })).status, 401);
  });

  test("an admin body of 64 KiB, chunked, is answered 413 before the rest is sent", async () => {
    // Chunked (no Content-Length), 1 KiB at a time, as long as no answer has come: the edge
    // reads up to 16 KiB, answers 413, and reads no further.
    const { status, sentKiB } = await new Promise((resolve, reject) => {
      let sent = 0;
      let answered = null;
      const req = httpRequest(new URL("/__canary/api/demo/weight", w.url), {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", "transfer-encoding": "chunked" },
      });
      req.on("response", (res) => {
        answered = res.statusCode;
        res.resume();
        res.on("end", () => resolve({ status: answered, sentKiB: sent }));
      });
      // A write after the answer may find the connection closed: the upload was refused.
      req.on("error", (e) => (answered === null ? reject(e) : resolve({ status: answered, sentKiB: sent })));
      (async () => {
        while (sent < 64 && answered === null) {
          req.write(Buffer.alloc(1024, 0x20));
          sent++;
          await new Promise((r) => setTimeout(r, 20));
        }
        if (answered === null) req.end();
      })();
    });
    assert.equal(status, 413);
    assert.ok(sentKiB < 64, `answered after ${sentKiB} KiB of 64`);
    // Declared too long: refused before a byte is read.
    const declared = await call(w, `${EDGE}/__canary/api/demo/weight`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: " ".repeat(17 * 1024) });
    assert.equal(declared.status, 413);
    assert.match(declared.text, /limited to 16 KiB/);
  });

  test("the login limit keys IPv6 clients by /48", async () => {
    const attempt = (ip) => call(w, `${CONSOLE}/__canary/ui/login`, { method: "POST", body: { token: "wrong" }, ip });
    const statuses = [];
    // Ten addresses of one /48 (other /64s, other hosts): one limit.
    for (let i = 0; i < 10; i++) statuses.push((await attempt(`2001:db8:77:${i.toString(16)}::${i + 1}`)).status);
    assert.deepEqual(statuses, Array(10).fill(401));
    assert.equal((await attempt("2001:db8:77:ffff::99")).status, 429, "the same /48");
    assert.equal((await attempt("2001:db8:78::1")).status, 401, "another /48");
  });
});

describe("a session ends with its credential", () => {
  test("an operator removed from OPERATOR_TOKENS and a rotated READ_TOKEN: their old sessions are refused", async () => {
    const w = await startWorker({
      captureLogs: true,
      vars: { ADMIN_TOKEN: TOKEN, READ_TOKEN: READ, OPERATOR_TOKENS: `${alice.entry},${bob.entry}`, CONSOLE_HOST: "console.test" },
    });
    try {
      const sessions = { admin: await login(w, TOKEN), reader: await login(w, READ), alice: await login(w, alice.token), bob: await login(w, bob.token) };
      const read = (s) => call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: s.cookie } });
      const write = (s, weight) =>
        call(w, `${CONSOLE}/__canary/api/demo/weight`, { method: "POST", headers: { cookie: s.cookie, "x-canary-csrf": s.csrf }, body: { weight } });
      assert.equal((await write(sessions.alice, 20)).status, 200, "alice writes");
      for (const s of Object.values(sessions)) assert.equal((await read(s)).status, 200, s.by);

      // A deploy: alice removed, READ_TOKEN rotated; ADMIN_TOKEN (the session key) unchanged.
      await w.restart({ vars: { OPERATOR_TOKENS: bob.entry, READ_TOKEN: READ_ROTATED } });
      assert.equal((await write(sessions.alice, 40)).status, 401, "the removed operator's session writes nothing");
      assert.equal((await read(sessions.alice)).status, 401);
      assert.equal((await read(sessions.reader)).status, 401, "the rotated READ_TOKEN's session");
      assert.equal((await call(w, `${EDGE}/__canary/api/demo`, { headers: { authorization: `Bearer ${alice.token}` } })).status, 401);
      assert.equal((await read(sessions.admin)).status, 200, "the admin's session lives");
      assert.equal((await write(sessions.bob, 30)).status, 200, "bob's too");
      assert.equal((await read(await login(w, READ_ROTATED))).status, 200, "the new READ_TOKEN logs in");
      const refused = w.logLines().filter((l) => l.event === "session_refused" && l.reason === "credential_gone").map((l) => l.by);
      assert.ok(refused.includes("alice") && refused.includes("read-only"), JSON.stringify(refused));
      const status = JSON.parse((await call(w, `${EDGE}/__canary/api/demo`, { headers: { authorization: `Bearer ${TOKEN}` } })).text);
      assert.deepEqual(status.monitor.events.filter((e) => e.kind === "set_weight").map((e) => e.by), ["bob", "alice"]);
    } finally {
      await w.dispose();
    }
  });

  test("misconfiguration: a generic answer; the detail in the log only", async () => {
    const w = await startWorker({
      captureLogs: true,
      vars: { ADMIN_TOKEN: TOKEN, OPERATOR_TOKENS: `${alice.entry},${alice.entry}`, CONSOLE_HOST: "console.test" },
    });
    try {
      const r = await call(w, `${EDGE}/__canary/api/demo`);
      assert.equal(r.status, 503);
      assert.equal(r.text.trim(), "503 the admin API is misconfigured; see the worker's log");
      assert.ok(w.logLines().some((l) => l.event === "error" && /OPERATOR_TOKENS/.test(l.detail) && /alice/.test(l.detail)));
    } finally {
      await w.dispose();
    }
  });
});

describe("revocation fails closed", () => {
  test("10,000 logouts written: a 'log out everywhere' from another isolate still holds; sessions past the listing are refused", async () => {
    const w = await startWorker({
      captureLogs: true,
      vars: { ADMIN_TOKEN: TOKEN, OPERATOR_TOKENS: `${alice.entry},${zoe.entry}`, CONSOLE_HOST: "console.test" },
    });
    try {
      // Alice's keys sort before mallory's: only the "everywhere" can end this session.
      const before = await login(w, alice.token);
      const expiration = Math.floor(Date.now() / 1000) + 3600;
      // 10,500 logged-out sessions of "mallory", written as other isolates would: more
      // than one listing reads (10 pages of 1,000).
      for (let i = 0; i < 10_500; i += 500) {
        await Promise.all(
          Array.from({ length: 500 }, (_, j) => w.kv.put(`auth/revoked/mallory/${(i + j).toString(16).padStart(32, "0")}`, "", { expiration })),
        );
      }
      // Another isolate's "log out everywhere", at this moment.
      const reversed = (BigInt.asUintN(64, -1n) - BigInt(Date.now())).toString(16).padStart(16, "0");
      await w.kv.put(`auth/not-before/all/${reversed}`, "", { expiration });
      await new Promise((r) => setTimeout(r, w.configTtlMs + 200));
      assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: before.cookie } })).status, 401, "logged out everywhere");
      // New sessions: alice's keys sort before the listing's cut (vouched for); zoe's and the
      // admin's ("operator") after it (refused: the listing cannot say they were not logged out).
      const a = await login(w, alice.token);
      const read = (s) => call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: s.cookie } });
      assert.equal((await read(a)).status, 200, "alice: vouched for");
      assert.equal((await read(await login(w, zoe.token))).status, 401, "zoe: past the cut, refused");
      assert.equal((await read(await login(w, TOKEN))).status, 401, "operator: past the cut, refused");
      assert.ok(w.logLines().some((l) => l.event === "revocations_truncated"));
      // Bearer tokens do not depend on the listing.
      assert.equal((await call(w, `${EDGE}/__canary/api/demo`, { headers: { authorization: `Bearer ${zoe.token}` } })).status, 200);
    } finally {
      await w.dispose();
    }
  });
});
