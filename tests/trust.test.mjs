// Who may operate, end to end against the built worker (workerd via Miniflare, real KV, R2
// and Durable Objects): the admin API refuses a short ADMIN_TOKEN; logins are rate limited
// by address; logout and "log out everywhere" end sessions on the server (and a revocation
// written elsewhere is seen within CONFIG_TTL_MS, with no KV read per poll); read-only and
// named operator tokens; Cloudflare Access identities verified against a JWKS served here;
// only published versions are public; and every text answer carries nosniff.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { execFileSync } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { join } from "node:path";
import { ROOT, putManifests, startWorker, until } from "./support/harness.mjs";

const TOKEN = "trust-admin-token-0123456789abcdef";
const READ = "trust-read-token-0123456789abcdef0";
// A named operator as an admin makes one: `scripts/canary token alice`.
const alice = JSON.parse(execFileSync(process.execPath, [join(ROOT, "scripts/canary.mjs"), "token", "alice", "--json"], { encoding: "utf8" }));
const ALICE = alice.token;
const CONSOLE = "http://console.test";
const EDGE = "http://edge.test";

/** A request to the worker at an absolute URL (host matters here), never redirected. */
async function call(w, url, { method = "GET", headers = {}, body, ip = "198.51.100.7" } = {}) {
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

/** Logs in on the console host: the session's cookie header and CSRF token. */
async function login(w, token = TOKEN, ip = "198.51.100.7") {
  const r = await call(w, `${CONSOLE}/__canary/ui/login`, { method: "POST", body: { token }, ip });
  assert.equal(r.status, 200, r.text);
  const cookie = r.headers.get("set-cookie").split(";")[0];
  assert.match(cookie, /^__Host-canary_session=v3\./);
  return { cookie, csrf: r.json.csrf, by: r.json.by };
}

const withSession = (s, extra = {}) => ({ cookie: s.cookie, "x-canary-csrf": s.csrf, ...extra });

describe("the admin API's door", () => {
  let w;
  before(async () => {
    w = await startWorker({
      vars: {
        ADMIN_TOKEN: TOKEN,
        READ_TOKEN: READ,
        OPERATOR_TOKENS: `${alice.entry},bob:${"0".repeat(64)}`,
        CONSOLE_HOST: "console.test",
      },
      captureLogs: true,
    });
  });
  after(() => w?.dispose());

  test("login guessing: 10 attempts a minute per address, then 429 with Retry-After, even for the right token", async () => {
    const ip = "203.0.113.50";
    const statuses = [];
    for (let i = 0; i < 12; i++) {
      statuses.push((await call(w, `${CONSOLE}/__canary/ui/login`, { method: "POST", body: { token: `guess-${i}` }, ip })).status);
    }
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 429, 429]);
    const right = await call(w, `${CONSOLE}/__canary/ui/login`, { method: "POST", body: { token: TOKEN }, ip });
    assert.equal(right.status, 429, "past the limit, a right guess cannot be told from a wrong one");
    assert.equal(right.headers.get("retry-after"), "60");
    assert.equal(right.headers.get("set-cookie"), null);
    // Another address is not held back.
    assert.equal((await call(w, `${CONSOLE}/__canary/ui/login`, { method: "POST", body: { token: TOKEN }, ip: "203.0.113.51" })).status, 200);
    // Wrong bearer tokens count the same way, on any host.
    const bearer = [];
    for (let i = 0; i < 11; i++) {
      bearer.push((await call(w, `${EDGE}/__canary/api/demo`, { headers: { authorization: `Bearer wrong-${i}` }, ip: "203.0.113.52" })).status);
    }
    assert.deepEqual(bearer.slice(0, 10), Array(10).fill(401));
    assert.equal(bearer[10], 429);
    assert.ok(w.logLines().some((l) => l.event === "login_rate_limited"));
  });

  test("logout ends the session on the server: its cookie replayed is refused; other sessions live", async () => {
    const a = await login(w);
    const b = await login(w);
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: a.cookie } })).status, 200);
    const out = await call(w, `${CONSOLE}/__canary/ui/logout`, { method: "POST", headers: withSession(a), body: {} });
    assert.equal(out.status, 200, out.text);
    assert.match(out.headers.get("set-cookie"), /Max-Age=0/);
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: a.cookie } })).status, 401, "replayed after logout");
    assert.equal((await call(w, `${CONSOLE}/__canary/ui/session`, { headers: { cookie: a.cookie } })).status, 401);
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: b.cookie } })).status, 200, "the other session lives");
    // A logout needs the session's CSRF token (no logout by a foreign page).
    const forged = await call(w, `${CONSOLE}/__canary/ui/logout`, { method: "POST", headers: { cookie: b.cookie }, body: {} });
    assert.equal(forged.status, 403);
  });

  test("log out everywhere (by a session or a bearer token) ends every session issued before it", async () => {
    const a = await login(w);
    const b = await login(w);
    const out = await call(w, `${CONSOLE}/__canary/ui/logout`, { method: "POST", headers: withSession(a), body: { everywhere: true } });
    assert.equal(out.status, 200, out.text);
    assert.equal(out.json.revoked, "all");
    for (const s of [a, b]) assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: s.cookie } })).status, 401);
    const c = await login(w);
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: c.cookie } })).status, 200, "a new login works");
    const byToken = await call(w, `${EDGE}/__canary/ui/logout`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: { everywhere: true } });
    // The console routes answer only on the console host; the bearer API does it there.
    assert.equal(byToken.status, 404);
    const there = await call(w, `${CONSOLE}/__canary/ui/logout`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: { everywhere: true } });
    assert.equal(there.status, 200, there.text);
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: c.cookie } })).status, 401);
    const readOnly = await call(w, `${CONSOLE}/__canary/ui/logout`, { method: "POST", headers: { authorization: `Bearer ${READ}` }, body: { everywhere: true } });
    assert.equal(readOnly.status, 403, "the read-only token cannot");
  });

  test("a revocation written by another isolate is seen within CONFIG_TTL_MS, and polls do not list KV", async () => {
    const s = await login(w);
    // v3.<issued>.<expires>.<scope>.<name hex>.<credential>.<id>.<tag>
    const id = s.cookie.split(".")[6];
    assert.match(id, /^[0-9a-f]{32}$/);
    const listedBefore = await w.revocationListings();
    const polls = [];
    for (let i = 0; i < 20; i++) polls.push((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: s.cookie } })).status);
    assert.deepEqual(polls, Array(20).fill(200));
    const listings = (await w.revocationListings()) - listedBefore;
    assert.ok(listings <= 2, `20 polls listed the revocations ${listings} times (once per CONFIG_TTL_MS at most)`);
    // Another isolate's logout: the KV key, written here as `wrangler kv key put` would.
    await w.kv.put(`auth/revoked/operator/${id}`, "", { expiration: Math.floor(Date.now() / 1000) + 3600 });
    // Seen within wrangler.toml's CONFIG_TTL_MS (5 s), once this isolate's listing expires.
    await new Promise((r) => setTimeout(r, w.configTtlMs + 100));
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { cookie: s.cookie } })).status, 401);
  });

  test("scoped tokens: read-only reads; a named operator's writes are recorded by name", async () => {
    assert.equal((await call(w, `${EDGE}/__canary/api/demo`, { headers: { authorization: `Bearer ${READ}` } })).status, 200);
    assert.equal((await call(w, `${EDGE}/__canary/api`, { headers: { authorization: `Bearer ${READ}` } })).status, 200);
    const refused = await call(w, `${EDGE}/__canary/api/demo/weight`, { method: "POST", headers: { authorization: `Bearer ${READ}` }, body: { weight: 50 } });
    assert.equal(refused.status, 403);
    assert.match(refused.text, /may only read/);
    const set = await call(w, `${EDGE}/__canary/api/demo/weight`, { method: "POST", headers: { authorization: `Bearer ${ALICE}` }, body: { weight: 20 } });
    assert.equal(set.status, 200, set.text);
    const status = (await call(w, `${EDGE}/__canary/api/demo`, { headers: { authorization: `Bearer ${READ}` } })).json;
    assert.equal(status.monitor.events[0].kind, "set_weight");
    assert.equal(status.monitor.events[0].by, "alice");
    assert.ok(w.logLines().some((l) => l.event === "set_weight" && l.by === "alice"));
    // Alice's console session carries her name; the read-only one's cannot write.
    const s = await login(w, ALICE);
    assert.equal(s.by, "alice");
    const r = await login(w, READ);
    const write = await call(w, `${CONSOLE}/__canary/api/demo/weight`, { method: "POST", headers: withSession(r), body: { weight: 30 } });
    assert.equal(write.status, 403);
  });

  test("a browser request that is not from a console page gets no session and cannot write with one", async () => {
    const s = await login(w);
    const page = `${CONSOLE}/__canary/ui/`;
    for (const [headers, status] of [
      [{ "sec-fetch-site": "same-origin", "sec-fetch-dest": "empty", referer: page }, 200],
      [{ "sec-fetch-site": "cross-site", "sec-fetch-dest": "empty", referer: "http://edge.test/merchant/index.html" }, 403],
      [{ "sec-fetch-site": "same-origin", "sec-fetch-dest": "iframe", referer: page }, 403],
      [{ "sec-fetch-site": "same-origin", "sec-fetch-dest": "empty" }, 403],
      [{ "sec-fetch-site": "same-origin", "sec-fetch-dest": "empty", referer: `${CONSOLE}/elsewhere` }, 403],
      [{ origin: "http://edge.test" }, 403],
    ]) {
      const r = await call(w, `${CONSOLE}/__canary/ui/session`, { headers: { cookie: s.cookie, ...headers } });
      assert.equal(r.status, status, JSON.stringify(headers));
      if (status !== 200) assert.equal(r.text.includes(s.csrf), false);
      const write = await call(w, `${CONSOLE}/__canary/api/demo/pause`, { method: "POST", headers: { ...withSession(s), ...headers }, body: {} });
      if (status !== 200) assert.equal(write.status, 403, `write ${JSON.stringify(headers)}`);
    }
    // A session cookie means nothing on a bundle's host.
    assert.equal((await call(w, `${EDGE}/__canary/api/demo`, { headers: { cookie: s.cookie } })).status, 401);
  });
});

describe("a half-set Cloudflare Access pair", () => {
  test("refuses the admin API and the console, naming the var in the log only; bundles still serve", async () => {
    // ACCESS_AUD without ACCESS_TEAM_DOMAIN: the control plane's setting, read by the control
    // Worker only (the edge's router reads all but Access and the webhooks).
    const w = await startWorker({ vars: { ADMIN_TOKEN: TOKEN, CONSOLE_HOST: "console.test", ACCESS_AUD: "aud" }, captureLogs: true });
    try {
      for (const url of [`${EDGE}/__canary/api/demo`, `${CONSOLE}/__canary/ui/`]) {
        const r = await call(w, url, { headers: { authorization: `Bearer ${TOKEN}` } });
        assert.equal(r.status, 503, url);
        assert.match(r.text, /misconfigured; see the worker's log/);
        assert.doesNotMatch(r.text, /ACCESS/, "no detail for anonymous callers");
      }
      assert.ok(w.logLines().some((l) => l.event === "error" && /ACCESS_TEAM_DOMAIN/.test(l.detail)), "the detail is in the log");
      const sdk = await call(w, `${EDGE}/demo/sdk.js`);
      assert.equal(sdk.status, 200, sdk.text);
    } finally {
      await w.dispose();
    }
  });
});

describe("a short ADMIN_TOKEN", () => {
  test("refuses to start the admin API and the console, naming the secret in the log only; bundles still serve", async () => {
    const w = await startWorker({ vars: { ADMIN_TOKEN: "dev-admin-token", CONSOLE_HOST: "console.test" }, captureLogs: true });
    try {
      for (const url of [`${EDGE}/__canary/api/demo`, `${CONSOLE}/__canary/ui/`, `${CONSOLE}/__canary/ui/login`]) {
        const r = await call(w, url, url.endsWith("login") ? { method: "POST", body: { token: "dev-admin-token" } } : {});
        assert.equal(r.status, 503, url);
        assert.match(r.text, /the admin API is misconfigured; see the worker's log/);
        assert.doesNotMatch(r.text, /ADMIN_TOKEN|characters|at least/, "no detail for anonymous callers");
      }
      assert.ok(w.logLines().some((l) => l.event === "error" && /ADMIN_TOKEN/.test(l.detail) && /at least 32/.test(l.detail)), "the detail is in the log");
      assert.equal((await call(w, `${EDGE}/demo/sdk.js`)).status, 200);
    } finally {
      await w.dispose();
    }
  });
});

describe("Cloudflare Access", () => {
  const AUD = "test-aud-0123";
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const other = generateKeyPairSync("rsa", { modulusLength: 2048 });
  let jwksServer;
  let team;
  let certFetches = 0;
  let w;

  const b64 = (x) => Buffer.from(typeof x === "string" ? x : JSON.stringify(x)).toString("base64url");
  function jwt(claims, { key = privateKey, kid = "k1" } = {}) {
    const now = Math.floor(Date.now() / 1000);
    const body = { aud: [AUD], email: "alice@example.com", iss: team, iat: now, exp: now + 600, sub: "u1", ...claims };
    const input = `${b64({ alg: "RS256", kid, typ: "JWT" })}.${b64(body)}`;
    return `${input}.${sign("RSA-SHA256", Buffer.from(input), key).toString("base64url")}`;
  }

  before(async () => {
    jwksServer = createServer((req, res) => {
      if (req.url !== "/cdn-cgi/access/certs") return res.writeHead(404).end();
      certFetches++;
      const jwk = publicKey.export({ format: "jwk" });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: [{ ...jwk, kid: "k1", alg: "RS256", use: "sig" }] }));
    });
    await new Promise((r) => jwksServer.listen(0, "127.0.0.1", r));
    team = `http://127.0.0.1:${jwksServer.address().port}`;
    w = await startWorker({
      vars: { ADMIN_TOKEN: TOKEN, CONSOLE_HOST: "console.test", ACCESS_TEAM_DOMAIN: team, ACCESS_AUD: AUD },
      captureLogs: true,
    });
  });
  after(async () => {
    await w?.dispose();
    jwksServer?.close();
  });

  test("the verified email signs in to the console and is recorded as `by`", async () => {
    const token = jwt({});
    // Behind Access a browser carries its CF_Authorization cookie, and Access adds the header.
    const browser = { "cf-access-jwt-assertion": token, cookie: `CF_Authorization=${token}` };
    const session = await call(w, `${CONSOLE}/__canary/ui/session`, { headers: browser });
    assert.equal(session.status, 200, session.text);
    assert.equal(session.json.by, "alice@example.com");
    const s = { cookie: `${session.headers.get("set-cookie").split(";")[0]}; CF_Authorization=${token}`, csrf: session.json.csrf };
    const set = await call(w, `${CONSOLE}/__canary/api/demo/weight`, { method: "POST", headers: withSession(s, { "cf-access-jwt-assertion": token }), body: { weight: 10 } });
    assert.equal(set.status, 200, set.text);
    // An Access session holds only with a valid Access JWT on each request.
    const bare = { cookie: session.headers.get("set-cookie").split(";")[0], "x-canary-csrf": s.csrf };
    assert.equal((await call(w, `${CONSOLE}/__canary/api/demo`, { headers: bare })).status, 401, "an Access session without its JWT");
    // A service token (the header alone: no cookie, no Fetch Metadata) is for the API only.
    const service = await call(w, `${CONSOLE}/__canary/ui/session`, { headers: { "cf-access-jwt-assertion": token } });
    assert.equal(service.status, 403, service.text);
    // A non-browser client through Access (no Fetch Metadata) acts with the token alone.
    const direct = await call(w, `${CONSOLE}/__canary/api/demo/weight`, { method: "POST", headers: { "cf-access-jwt-assertion": jwt({ email: "bob@example.com" }) }, body: { weight: 20 } });
    assert.equal(direct.status, 200, direct.text);
    const status = (await call(w, `${EDGE}/__canary/api/demo`, { headers: { authorization: `Bearer ${TOKEN}` } })).json;
    assert.deepEqual(status.monitor.events.slice(0, 2).map((e) => e.by), ["bob@example.com", "alice@example.com"]);
    assert.ok(w.logLines().some((l) => l.event === "console_login" && l.by === "alice@example.com" && l.via === "access"));
    // A browser write with the Access token alone (no session, no CSRF token) is refused.
    const browserWrite = await call(w, `${CONSOLE}/__canary/api/demo/weight`, { method: "POST", headers: { "cf-access-jwt-assertion": token, "sec-fetch-site": "same-origin" }, body: { weight: 30 } });
    assert.equal(browserWrite.status, 403);
    assert.equal(certFetches, 1, "the keys are fetched once and kept");
  });

  test("expired, foreign-audience, wrong-issuer, other-key and unsigned tokens are refused; on a bundle host none counts", async () => {
    const now = Math.floor(Date.now() / 1000);
    const [h, p] = jwt({}).split(".");
    const bad = {
      expired: jwt({ exp: now - 120 }),
      audience: jwt({ aud: ["someone-else"] }),
      issuer: jwt({ iss: "https://evil.cloudflareaccess.com" }),
      key: jwt({}, { key: other.privateKey }),
      unknownKid: jwt({}, { kid: "k9" }),
      none: `${b64({ alg: "none", kid: "k1" })}.${p}.`,
      tampered: `${h}.${b64({ aud: [AUD], email: "mallory@example.com", iss: team, exp: now + 600 })}.${jwt({}).split(".")[2]}`,
    };
    for (const [name, token] of Object.entries(bad)) {
      const r = await call(w, `${CONSOLE}/__canary/api/demo`, { headers: { "cf-access-jwt-assertion": token } });
      assert.equal(r.status, 401, name);
    }
    const elsewhere = await call(w, `${EDGE}/__canary/api/demo`, { headers: { "cf-access-jwt-assertion": jwt({}) } });
    assert.equal(elsewhere.status, 401, "Access identities count on the console host only");
    assert.ok(certFetches <= 2, `an unknown kid refetches the keys at most once a minute (${certFetches})`);
  });
});

describe("versions: only published ones are public", () => {
  let w;
  before(async () => {
    w = await startWorker({ listen: true, vars: { OVERRIDE_SECRET: "trust-override-secret", ADMIN_TOKEN: TOKEN } });
  });
  after(() => w?.dispose());

  async function overrideToken() {
    const r = await call(w, `${EDGE}/__canary/api/demo/override`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: { channel: "canary", ttl_secs: 600 } });
    assert.equal(r.status, 200, r.text);
    return r.json.token;
  }

  test("an upload never published answers 404, unless a signed override names the bundle; published and rolled-back versions stay reachable", async () => {
    await w.r2.put("demo/1.2.0/sdk.js", "/* uploaded, not published */", { httpMetadata: { contentType: "text/javascript" } });
    const unpublished = await call(w, `${EDGE}/demo@1.2.0/sdk.js`);
    assert.equal(unpublished.status, 404);
    assert.match(unpublished.text, /not a published version/);
    assert.equal(unpublished.headers.get("x-content-type-options"), "nosniff");
    assert.equal((await call(w, `${EDGE}/demo@7.7.7/sdk.js`)).status, 404, "a name nobody uploaded");
    const qa = await call(w, `${EDGE}/demo@1.2.0/sdk.js`, { headers: { "x-canary-override": await overrideToken() } });
    assert.equal(qa.status, 200);
    assert.equal(qa.headers.get("cache-control"), "private, no-store");
    // The copy the override fetched into the edge cache is not served to anyone else.
    assert.equal((await call(w, `${EDGE}/demo@1.2.0/sdk.js`)).status, 404);
    // Published (its manifest written, as `scripts/canary publish` does): public for good.
    await putManifests(w.r2, ["demo/1.2.0/sdk.js"]);
    const published = await call(w, `${EDGE}/demo@1.2.0/sdk.js`);
    assert.equal(published.status, 200);
    assert.match(published.headers.get("cache-control"), /immutable/);
    // The config's versions: the stable, and a canary rolled back to weight 0.
    await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 0 });
    assert.equal((await call(w, `${EDGE}/demo@1.1.0/sdk.js`)).status, 200, "a rolled-back canary");
    // A stable promoted away is no longer in the config; its manifest keeps it public.
    await w.setRollout({ stable: "1.2.0", weight: 0 });
    assert.equal((await call(w, `${EDGE}/demo@1.0.0/sdk.js`)).status, 200, "an old stable");
  });

  test("revoke-overrides voids every override token issued before it, at the edge, with the config", async () => {
    // Served: the edge's copy of the config the previous test wrote has expired.
    await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 0 }, "demo", { served: true });
    const old = await overrideToken();
    const overridden = async (token) => (await call(w, `${EDGE}/demo/sdk.js`, { headers: { "x-canary-override": token } })).headers.get("x-canary-override");
    assert.equal(await overridden(old), "canary");
    // Tokens carry their issue time in whole seconds: revoke in a later second than `old`.
    await new Promise((r) => setTimeout(r, 1100));
    // As an operator would: `scripts/canary revoke-overrides demo` against the admin API.
    const cli = execFileSync(process.execPath, [join(ROOT, "scripts/canary.mjs"), "revoke-overrides", "demo", "--url", w.url.href, "--token", TOKEN], { encoding: "utf8" });
    assert.match(cli, /demo: override tokens issued before .* are void/);
    const after = await call(w, `${EDGE}/__canary/api/demo`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.ok(after.json.config.overrides_not_before > 0);
    assert.equal(after.json.monitor.events[0].kind, "overrides_revoked");
    // The edge reads the revocation with the config: within CONFIG_TTL_MS (5 s) of the write.
    await until(async () => (await overridden(old)) === null, "the old token routing nowhere", w.configTtlMs + 2000);
    assert.equal((await call(w, `${EDGE}/demo@1.3.0/sdk.js`, { headers: { "x-canary-override": old } })).status, 404);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(await overridden(await overrideToken()), "canary", "a token issued after works");
  });
});

describe("headers", () => {
  test("every JSON and text answer carries X-Content-Type-Options: nosniff", async () => {
    const w = await startWorker({ vars: { ADMIN_TOKEN: TOKEN, CONSOLE_HOST: "console.test" } });
    try {
      for (const [url, init] of [
        [`${EDGE}/__canary/health`, {}],
        [`${EDGE}/__canary/status/demo`, {}],
        [`${EDGE}/nope`, {}],
        [`${EDGE}/demo/sdk.js`, { method: "POST" }],
        [`${EDGE}/nobundle/sdk.js`, {}],
        [`${EDGE}/__canary/report`, { method: "POST", body: "{}" }],
        [`${EDGE}/__canary/api/demo`, {}],
        [`${CONSOLE}/__canary/ui/session`, {}],
        [`${CONSOLE}/__canary/ui/`, {}],
      ]) {
        const r = await call(w, url, init);
        assert.equal(r.headers.get("x-content-type-options"), "nosniff", `${url} (${r.status})`);
      }
    } finally {
      await w.dispose();
    }
  });
});
