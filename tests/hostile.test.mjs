// Hostile input, end to end: oversized and malformed headers and cookies, garbage identities,
// request-smuggling-shaped and non-UTF-8 paths, client-sent X-Cohort / X-Canary-* headers,
// forged overrides and cache-poisoning attempts. Every case asserts what the worker does, not
// only that it survives: a status in an expected set, never a 5xx, never an empty error body,
// no reflected injected header, an invalid cookie replaced by a valid one, the cohort in range,
// and every edge-cache entry holding the version its key names.
//
// Most requests go through Miniflare's dispatchFetch (the fetch API refuses some bytes, e.g.
// control characters in header values); the "raw HTTP" suite writes bytes to a loopback socket
// of workerd's own listener for what only a raw client can send.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { CHROME_JA4, bodyVersion, cookiePair, cookiesForEveryCohort, startWorker, sleep } from "./support/harness.mjs";

const ADMIN_TOKEN = "hostile-admin-token-0123456789abcdef";
// CONFIG_TTL_MS 0: the cache-poisoning tests flip the weight (and an override test sets
// weight 0) and at once check what each cohort gets and what each cache key holds; the
// TTL is tested in cli.test.mjs and soak.test.mjs.
const VARS = { ADMIN_TOKEN, OVERRIDE_SECRET: "hostile-override-secret", CONFIG_TTL_MS: "0" };
const HALF = { stable: "1.0.0", canary: "1.1.0", weight: 50 };
const SECRETS = /top secret|bundle-level secret/;
const INJECTED = /injected|evil\.example/i;
/** A UTF-8 string as the latin1 "byte string" fetch sends as raw bytes. */
const bytes = (s) => Buffer.from(s, "utf8").toString("latin1");

/**
 * What every answer must be, whatever was sent: a status in `statuses`, no 5xx, a body on
 * errors (but HEAD), no secret, no header reflecting the injection, at most our own cookie, and for a
 * served SDK file, headers that agree with the body.
 */
function assertSane(r, statuses, label, { head = false } = {}) {
  assert.ok(r.status < 500, `${label}: ${r.status} ${r.text}`);
  assert.ok(statuses.includes(r.status), `${label}: ${r.status} not in ${statuses}: ${r.text.slice(0, 200)}`);
  if (r.status >= 400 && !head) assert.ok(r.text.trim().length > 0, `${label}: empty error body`);
  assert.ok(!SECRETS.test(r.text), `${label}: leaked ${r.text}`);
  for (const [name, value] of r.headers) {
    assert.ok(!INJECTED.test(name) && !INJECTED.test(value), `${label}: reflected header ${name}: ${value}`);
  }
  const set = r.headers.get("set-cookie");
  if (set) assert.match(set, /^cohort=\d+\.[0-9a-f]{16}\.[1-9a-f][0-9a-f]{0,9}\.[0-9a-f]{16}; /, `${label}: unexpected Set-Cookie ${set}`);
  if (r.status === 200 && r.headers.get("x-canary-version") && bodyVersion(r.text)) {
    assert.equal(bodyVersion(r.text), r.headers.get("x-canary-version"), `${label}: header and body disagree`);
  }
  const cohort = r.headers.get("x-cohort");
  if (cohort !== null) assert.match(cohort, /^[0-9]$/, `${label}: cohort ${cohort}`);
}

let w;
let cookies; // cohort -> "cohort=<n>.<id>.<issued>.<tag>"
before(async () => {
  w = await startWorker({ vars: VARS, rollout: HALF });
  cookies = await cookiesForEveryCohort(w);
  await w.r2.put("secret.txt", "top secret");
  await w.r2.put("demo/secret.txt", "bundle-level secret");
});
after(() => w?.dispose());

/** Sends `cookie` and checks that our valid cookie `keep` (cohort `cohort`) was honoured. */
async function assertKept(cookie, cohort, label) {
  const r = await w.get("/demo/sdk.js", { cookie });
  assertSane(r, [200], label);
  assert.equal(r.headers.get("x-cohort"), String(cohort), `${label}: cohort`);
  assert.equal(r.headers.get("set-cookie"), null, `${label}: a valid cookie is not rewritten`);
}

/** Sends `cookie` (with no valid cohort in it) and checks it is replaced by a valid one. */
async function assertReplaced(cookie, label, extra = {}) {
  const r = await w.get("/demo/sdk.js", { cookie, ...extra });
  assertSane(r, [200], label);
  const replacement = cookiePair(r.headers);
  assert.ok(replacement, `${label}: the cookie is replaced`);
  const again = await w.get("/demo/sdk.js", { cookie: replacement });
  assert.equal(again.headers.get("x-cohort"), r.headers.get("x-cohort"), `${label}: the replacement holds the cohort`);
  assert.equal(again.headers.get("set-cookie"), null, `${label}: the replacement verifies`);
  return r;
}

describe("oversized and malformed cookies and headers", () => {
  test("a valid cohort cookie is found among many or large other cookies", async () => {
    const good = cookies.get(3);
    const many = Array.from({ length: 500 }, (_, i) => `c${i}=${i}`).join("; ");
    await assertKept(`${many}; ${good}`, 3, "500 cookies, ours last");
    await assertKept(`${good}; ${many}`, 3, "500 cookies, ours first");
    await assertKept(`big=${"x".repeat(7 * 1024)}; ${good}`, 3, "7 KB cookie header");
    const junkCohorts = Array.from({ length: 200 }, (_, i) => `cohort=${i % 10}.${"0".repeat(16)}`).join("; ");
    await assertKept(`${junkCohorts}; ${good}`, 3, "200 forged cohort cookies before ours");
    await assertKept(`cohort=junk; ${good}; ${cookies.get(7)}`, 3, "the first valid cohort cookie wins");
    await assertKept(`cohort=\xff\xfe\x80; ${good}`, 3, "latin1 bytes in a cookie before ours");
    await assertKept(`a="\x80\x81"; cohort=; ${good}`, 3, "odd bytes and an empty cohort before ours");
    await assertKept(`cohort="${good.split("=")[1]}"`, 3, "a DQUOTE-wrapped value (RFC 6265)");
  });

  test("oversized cookie headers: answered, and the client ends up with a valid cookie", async () => {
    const good = cookies.get(5);
    for (const [label, cookie] of [
      ["16 KB cookie header, ours first", `${good}; big=${"x".repeat(16 * 1024)}`],
      ["16 KB cookie header, ours last", `big=${"x".repeat(16 * 1024)}; ${good}`],
      ["64 KB cookie header", `big=${"y".repeat(64 * 1024)}; ${good}`],
    ]) {
      const r = await w.get("/demo/sdk.js", { cookie, userKey: "oversized-cookie-user" });
      // Today, over the 8 KB the worker reads, the cookie is ignored: the client is put in a
      // cohort from its other identity and gets a fresh valid cookie (see the todo below).
      // Reading it (cohort 5, no Set-Cookie) passes too.
      assertSane(r, [200, 431], label);
      if (r.status === 200 && r.headers.get("set-cookie")) {
        const again = await w.get("/demo/sdk.js", { cookie: cookiePair(r.headers) });
        assert.equal(again.headers.get("x-cohort"), r.headers.get("x-cohort"), label);
        assert.equal(again.headers.get("set-cookie"), null, label);
      } else if (r.status === 200) {
        assert.equal(r.headers.get("x-cohort"), "5", label);
      }
    }
  });

  // Found by this suite: a Cookie header over 8 KB used to be ignored as a whole, so a
  // client without other identities got a random cohort (and version) on every request.
  test("a valid cohort cookie behind large merchant cookies keeps the client in its cohort", async () => {
    const good = cookies.get(5);
    await w.setRollout(HALF);
    const versions = new Set();
    for (let i = 0; i < 8; i++) {
      const r = await w.get("/demo/sdk.js", { cookie: `big=${"x".repeat(8200 + i * 1000)}; ${good}` });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("x-cohort"), "5");
      assert.equal(r.headers.get("set-cookie"), null, "the cookie was read, not replaced");
      versions.add(r.headers.get("x-canary-version"));
    }
    assert.equal(versions.size, 1, "one version for one client");
  });

  test("tampered, malformed and non-UTF-8 cohort cookies are replaced by a valid one", async () => {
    const good = cookies.get(2);
    const [, value] = good.split("=");
    const [number, id, issued, tag] = value.split(".");
    for (const [label, cookie] of [
      ["empty value", "cohort="],
      ["no value", "cohort"],
      ["only separators", ";;; ; ;"],
      ["only equals signs", "=;=;==;"],
      ["double equals", `cohort==${value}`],
      ["uppercase tag", `cohort=${number}.${id}.${issued}.${tag.toUpperCase().replace(/[0-9]/g, "A")}`],
      ["tag plus junk", `cohort=${value}x`],
      ["leading zero", `cohort=0${value}`],
      ["negative", `cohort=-${value}`],
      ["huge number", `cohort=${"9".repeat(400)}.${id}.${issued}.${tag}`],
      ["latin1 bytes", "cohort=\xff\xfe\x80.\xe9"],
      ["UTF-8 bytes", `cohort=${bytes("３.ü✓")}`],
      ["percent-encoded", `cohort=${encodeURIComponent(value).replace(".", "%2E")}`],
      ["tab inside", `cohort=${number}\t.${id}.${issued}.${tag}`],
      ["name with spaces", `c o h o r t=${value}`],
      ["other cookie names", `Cohort=${value}; COHORT=${value}; cohort_=${value}; xcohort=${value}`],
      ["a cookie with the name only, many times", "cohort; ".repeat(500)],
    ]) {
      await assertReplaced(cookie, label);
    }
  });

  test("a megabyte header is refused by the runtime with a clear status, a thousand headers are fine", async () => {
    const big = await w.get("/demo/sdk.js", { headers: { "x-big": "a".repeat(1024 * 1024) } });
    assertSane(big, [200, 413, 431], "1 MB header");
    const headers = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`x-h${i}`, `v${i}`]));
    assertSane(await w.get("/demo/sdk.js", { headers }), [200], "1000 headers");
  });
});

describe("garbage identities", () => {
  test("garbage user keys: answered, cohort in range, a valid cookie", async () => {
    for (const userKey of [
      "k".repeat(10_000),
      "k".repeat(257),
      "\xff\xfe\xfd",
      bytes("ユーザー🙂"),
      "   ",
      "a\tb",
      "null",
      "undefined",
      "0",
      "../../etc/passwd",
      "<script>alert(1)</script>",
      "cohort=3",
      "%00%0d%0a",
    ]) {
      const r = await assertReplaced(undefined, `user key ${JSON.stringify(userKey.slice(0, 20))}`, { userKey });
      assert.equal(r.headers.get("x-canary-channel") === "canary", r.headers.get("x-canary-version") === "1.1.0");
    }
  });

  test("a usable garbage user key still gives the same cohort every time", async () => {
    for (const userKey of ["\xff\xfe\xfd", bytes("ユーザー🙂"), "../../etc/passwd", "k".repeat(256)]) {
      const a = await w.get("/demo/sdk.js", { userKey });
      const b = await w.get("/demo/sdk.js", { userKey });
      assert.equal(a.headers.get("x-cohort"), b.headers.get("x-cohort"), JSON.stringify(userKey.slice(0, 20)));
    }
  });

  test("garbage fingerprints and client addresses in cf / CF-Connecting-IP", async () => {
    const ja4s = ["t".repeat(100_000), "t13d\u0000\u0001\u001f", "", "   ", "\xff\xfe", bytes("💥".repeat(50)), CHROME_JA4 + "\n"];
    const ips = ["not-an-ip", "1.2.3.4, 5.6.7.8", "::ffff:1.2.3.4", "[::1]", "999.999.999.999", "1".repeat(5000), "2001:db8::1%eth0", ""];
    for (const ja4 of ja4s) {
      for (const ip of [ips[0], "198.51.100.7"]) {
        assertSane(await w.get("/demo/sdk.js", { ja4, ip }), [200], `ja4 ${JSON.stringify(ja4.slice(0, 12))} ip ${ip}`);
      }
    }
    for (const ip of ips) {
      const a = await w.get("/demo/sdk.js", { ja4: CHROME_JA4, ip });
      assertSane(a, [200], `ip ${ip.slice(0, 20)}`);
      assert.ok(a.headers.get("set-cookie"));
      assertSane(await w.get("/demo/sdk.js", { ja3: "\x00".repeat(10) + "zz", ip }), [200], `ja3 garbage, ip ${ip.slice(0, 20)}`);
    }
  });
});

describe("cf fields of unexpected types", () => {
  // Found by this suite: a non-string JA4 trapped the wasm (500, module re-initialised).
  test("a JA4 or JA3 that is not a string is ignored, not a crash", async () => {
    for (const bot of [{ ja4: 12345 }, { ja3Hash: { x: 1 } }, { ja4: null, ja3Hash: [1, 2] }, { ja4: true }]) {
      const r = await w.mf.dispatchFetch("http://edge.test/demo/sdk.js", { cf: { botManagement: bot } });
      assert.equal(r.status, 200, JSON.stringify(bot));
      const cohort = Number(r.headers.get("x-cohort"));
      assert.ok(cohort >= 0 && cohort < 10);
      await r.text();
    }
    const plain = await w.mf.dispatchFetch("http://edge.test/demo/sdk.js", { cf: { botManagement: "nope" } });
    assert.equal(plain.status, 200);
    await plain.text();
  });
});

describe("smuggling-shaped, traversal and non-UTF-8 paths", () => {
  const cases = [
    // CRLF and header injection through the path: a control character in a segment is refused.
    ["/demo/sdk.js%0d%0aSet-Cookie:x", [400]],
    ["/demo/sdk.js%0d%0aSet-Cookie:%20injected=1", [400]],
    ["/demo/sdk.js%0aX-Injected:%201", [400]],
    ["/demo/sdk.js%0d%0a%0d%0aHTTP/1.1%20200%20OK%0d%0aX-Injected:1", [400]],
    ["/demo/sdk.js%20HTTP/1.1%0d%0aHost:%20evil.example", [400]],
    ["/demo@1.0.0%0d%0aX-Injected:1/sdk.js", [400]],
    ["/demo/sdk.js%00", [400]],
    ["/demo/sdk.js%09", [400]],
    ["/__canary/status/demo%0d%0aX-Injected:1", [404]],
    ["/__canary/health%0d%0aX-Injected:1", [404]],
    // A request line inside the path: a (missing) file name with a space, nothing more.
    ["/demo/sdk.js HTTP/1.1", [404]],
    ["/demo/sdk.js%20HTTP/1.1", [404]],
    // Double and odd encodings are decoded once: "%252e%252e" is a file named "%2e%2e".
    ["/demo/%252e%252e/secret.txt", [404]],
    ["/demo/%252e%252e/%252e%252e/secret.txt", [404]],
    ["/demo%252f..%252fsecret.txt", [404]],
    ["/demo/%25%32%65%25%32%65/secret.txt", [404]],
    ["/demo/%252F..%252Fsecret.txt", [404]],
    ["/demo@1.0.0/..%2f..%2fsecret.txt", [400]],
    ["/demo/sdk.js/..;/..;/secret.txt", [404]],
    ["/demo;/sdk.js", [404]],
    // Non-UTF-8 after percent-decoding: overlong dots, lone surrogates, stray bytes.
    ["/demo/%ff%fe.js", [400]],
    ["/demo/%c3%28.js", [400]],
    ["/demo/%c0%ae%c0%ae/secret.txt", [400]],
    ["/demo/%ed%a0%80.js", [400]],
    ["/demo/%e2%82.js", [400]],
    ["/demo/\u00ff.js", [404]],
    // Absolute-form and authority tricks inside the path name nothing.
    ["//evil.example/demo/sdk.js", [404]],
    ["/http://evil.example/demo/sdk.js", [404]],
    ["/demo/http://evil.example/sdk.js", [400]],
    ["/demo@evil.example/sdk.js", [404]],
    ["/demo@1.0.0@1.1.0/sdk.js", [400]],
    // Long and deep.
    ["/demo/" + "a/".repeat(40) + "sdk.js", [400]],
    ["/demo/" + "%41".repeat(400), [400]],
    ["/demo/" + "x".repeat(2000), [400]],
  ];
  test("each answers 400 or 404 with a body, reflects no header and reads nothing outside the version", async () => {
    // From a canary and a stable cohort, so both branches of the routing see every path.
    const sides = [];
    for (const cookie of cookies.values()) {
      const ch = (await w.get("/demo/sdk.js", { cookie })).headers.get("x-canary-channel");
      if (!sides.some((s) => s.ch === ch)) sides.push({ ch, cookie });
    }
    assert.equal(sides.length, 2);
    for (const [path, statuses] of cases) {
      for (const { ch, cookie } of sides) {
        assertSane(await w.get(path, { cookie }), statuses, `${ch}: ${path}`);
        assertSane(await w.get(path, { cookie, method: "HEAD" }), statuses, `${ch}: HEAD ${path}`, { head: true });
      }
    }
  });

  test("an injection attempt in the query string is ignored: the normal file, no extra header", async () => {
    for (const q of ["?%0d%0aSet-Cookie:injected=1", "?x=%0d%0aX-Injected:1", "?" + "a".repeat(4000), "?cohort=9&v=1.1.0"]) {
      const r = await w.get(`/demo/sdk.js${q}`, { cookie: cookies.get(4) });
      assertSane(r, [200], q.slice(0, 30));
      assert.equal(r.headers.get("x-cohort"), "4");
    }
  });

  test("other methods on asset routes get 405 with Allow", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      const r = await w.get("/demo/sdk.js", { method, body: method === "OPTIONS" ? undefined : "x" });
      assertSane(r, [405], method);
      assert.equal(r.headers.get("allow"), "GET, HEAD");
    }
  });

  // Found by this suite: workers-rs maps methods it does not know to GET, so PURGE used
  // to answer 200 with the SDK and a cookie, and count as a script load.
  test("methods unknown to workers-rs (PURGE, PROPFIND, MKCOL, ...) on asset routes get 405 with Allow", async () => {
    for (const method of ["PURGE", "PROPFIND", "MKCOL", "LOCK", "COPY", "MOVE", "SEARCH", "get"]) {
      for (const path of ["/demo/sdk.js", "/demo@1.0.0/sdk.js"]) {
        const r = await w.get(path, { method });
        if (method === "get") {
          // fetch normalises the case of standard methods: this is a GET.
          assert.equal(r.status, 200, `${method} ${path}`);
          continue;
        }
        assert.equal(r.status, 405, `${method} ${path}`);
        assert.equal(r.headers.get("allow"), "GET, HEAD");
        assert.equal(r.headers.get("set-cookie"), null);
        assert.ok(!r.text.includes("DemoPay"), "no SDK body");
      }
    }
  });
});

describe("client-sent X-Cohort, X-Canary-* and override attempts", () => {
  before(() => w.setRollout({ ...HALF, weight: 0 }));
  after(() => w.setRollout(HALF));

  const spoofs = [
    { "x-cohort": "0" },
    { "x-canary-channel": "canary" },
    { "x-canary-version": "1.1.0" },
    { "x-canary-fallback": "stable" },
    { "x-canary-override": "always" },
    { "x-canary-override": "canary" },
    { "x-canary-override": "v1.demo.canary.9999999999.0123456789abcdef0123456789abcdef" },
    { "x-canary-override": "v1.demo.canary.9999999999." + "a".repeat(64) },
    { "x-canary-override": "v1.demo.canary.1.0123456789abcdef0123456789abcdef" },
    { cookie: "canary_override=v1.demo.canary.9999999999.00" },
    { "x-cohort": "7", "x-canary-channel": "canary", "x-canary-version": "1.1.0", "x-canary-override": "canary" },
  ];

  test("at weight 0 nobody gets the canary by asking for it, and nothing is echoed", async () => {
    for (const [cohort, cookie] of cookies) {
      for (const headers of spoofs) {
        const { cookie: extraCookie, ...rest } = headers;
        const r = await w.get("/demo/sdk.js", { cookie: extraCookie ? `${extraCookie}; ${cookie}` : cookie, headers: rest });
        const label = `cohort ${cohort} ${JSON.stringify(headers).slice(0, 60)}`;
        assertSane(r, [200], label);
        assert.equal(r.headers.get("x-canary-version"), "1.0.0", label);
        assert.equal(r.headers.get("x-canary-channel"), "stable", label);
        assert.equal(r.headers.get("x-cohort"), String(cohort), label);
        assert.equal(r.headers.get("x-canary-override"), null, label);
        assert.equal(r.headers.get("x-canary-fallback"), null, label);
        assert.equal(r.headers.get("cache-control"), "private, max-age=60", label);
      }
    }
  });

  test("a spoofed X-Cohort does not move a new client, and pinned answers carry no cohort", async () => {
    for (let i = 0; i < 10; i++) {
      const plain = await w.get("/demo/sdk.js", { userKey: `spoof-${i}` });
      const spoofed = await w.get("/demo/sdk.js", { userKey: `spoof-${i}`, headers: { "x-cohort": String((Number(plain.headers.get("x-cohort")) + 1) % 10) } });
      assert.equal(spoofed.headers.get("x-cohort"), plain.headers.get("x-cohort"));
      // Same cohort in the cookie (each first visit gets its own client id).
      assert.equal(cookiePair(spoofed.headers).split(".")[0], cookiePair(plain.headers).split(".")[0]);
    }
    const pinned = await w.get("/demo@1.0.0/sdk.js", { headers: { "x-cohort": "3", "x-canary-channel": "canary" } });
    assertSane(pinned, [200], "pinned");
    assert.equal(pinned.headers.get("x-cohort"), null);
    assert.equal(pinned.headers.get("x-canary-channel"), "stable");
  });

  test("a real override token works (control), but not for another bundle or once edited", async () => {
    const issued = await w.get("/__canary/api/demo/override", {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ channel: "canary", ttl_secs: 600 }),
    });
    assert.equal(issued.status, 200, issued.text);
    const { token } = JSON.parse(issued.text);
    const ok = await w.get("/demo/sdk.js", { cookie: cookies.get(0), headers: { "x-canary-override": token } });
    assert.equal(ok.headers.get("x-canary-version"), "1.1.0", "the control: a signed token gets the canary");
    assert.equal(ok.headers.get("cache-control"), "private, no-store");
    const [v, , ch, exp, mac] = token.split(".");
    const flipped = mac.slice(0, -1) + (mac.endsWith("0") ? "1" : "0");
    for (const bad of [
      [v, "merchant", ch, exp, mac].join("."),
      [v, "demo", ch, String(Number(exp) + 1), mac].join("."),
      [v, "demo", ch, exp, flipped].join("."),
      [v, "demo", ch, exp, mac + "00"].join("."),
      `${token}.`,
      token.replace("v2.", "v3."),
      `${token}${"x".repeat(5000)}`,
    ]) {
      const r = await w.get("/demo/sdk.js", { cookie: cookies.get(0), headers: { "x-canary-override": bad } });
      assertSane(r, [200], bad.slice(0, 40));
      assert.equal(r.headers.get("x-canary-version"), "1.0.0", `edited token ${bad.slice(0, 60)}`);
    }
  });
});

describe("operations endpoints with garbage", () => {
  test("error reports: malformed, non-UTF-8, oversized or streamed bodies get a 4xx with a message", async () => {
    const streamed = () =>
      new ReadableStream({
        start(c) {
          for (let i = 0; i < 64; i++) c.enqueue(new Uint8Array(16 * 1024).fill(0x7b));
          c.close();
        },
      });
    for (const [label, body, statuses, extra] of [
      ["not JSON", "garbage", [400]],
      ["non-UTF-8", Buffer.from([0xff, 0xfe, 0x00, 0x80]), [400]],
      ["nested 5000 deep", "[".repeat(5000) + "]".repeat(5000), [400, 413]],
      ["1 MB", "x".repeat(1 << 20), [413]],
      ["1 MB streamed, no Content-Length", streamed(), [400, 413], { duplex: "half" }],
      ["wrong types", JSON.stringify({ bundle: 1, version: [], kind: {}, message: null }), [400]],
      ["unknown bundle", JSON.stringify({ bundle: "Evil!", version: "1.0.0", kind: "x", message: "m" }), [400, 404]],
      ["a version that is not live", JSON.stringify({ bundle: "demo", version: "9.9.9", kind: "x", message: "m" }), [202]],
    ]) {
      let r;
      if (extra) {
        // The edge reads a report's body up to 4 KiB and no further: it answers 413 while
        // the client is still uploading, and the runtime may then close the connection
        // under the upload ("fetch failed", EPIPE) before the client reads the answer. Both
        // are a refused upload; what must not happen is the edge reading the megabyte.
        const send = (b) => w.mf.dispatchFetch("http://edge.test/__canary/report", { method: "POST", body: b, ...extra });
        let res;
        try {
          res = await send(body);
        } catch (e) {
          assert.match(String(e.cause?.code ?? e.cause?.message ?? e.message), /EPIPE|ECONNRESET|other side closed|socket/i, `report: ${label}: ${e.cause?.message ?? e.message}`);
          continue;
        }
        r = { status: res.status, headers: res.headers, text: await res.text() };
      } else {
        r = await w.get("/__canary/report", { method: "POST", body });
      }
      assertSane(r, statuses, `report: ${label}`);
    }
  });

  test("admin API: odd or oversized Authorization headers get a bare 401 (or 429 past the guessing limit)", async () => {
    for (const authorization of [
      `Bearer ${"x".repeat(10_000)}`,
      `Bearer ${ADMIN_TOKEN}\xff`,
      `bearer${ADMIN_TOKEN}`,
      `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString("base64")}`,
      `Bearer ${ADMIN_TOKEN.slice(0, -1)}`,
      `Bearer ${ADMIN_TOKEN}, Bearer x`,
      "Bearer",
      "",
    ]) {
      for (const method of ["GET", "POST"]) {
        const r = await w.get("/__canary/api/demo/weight", { method, headers: { authorization }, body: method === "POST" ? '{"weight":100}' : undefined });
        // 429 once the address has had 10 wrong tokens a minute (LOGIN_LIMIT_PER_IP).
        assertSane(r, [401, 404, 405, 429], `${method} ${authorization.slice(0, 30)}`);
      }
    }
    const cfg = JSON.parse((await w.get("/__canary/status/demo")).text);
    assert.equal(cfg.weight, HALF.weight, "no unauthorised write went through");
  });
});

describe("cache poisoning attempts", () => {
  let cache;
  const FILES = ["p1.js", "p2.js", "p3.js", "p4.js", "p5.js", "p6.js", "p7.js", "p8.js", "p9.js"];
  let canaryCookie;
  let stableCookie;
  before(async () => {
    cache = (await w.mf.getCaches()).default;
    for (const f of FILES) {
      for (const v of ["1.0.0", "1.1.0"]) {
        await w.r2.put(`demo/${v}/${f}`, `/* DemoPay SDK ${v} ${f} */\n`, { httpMetadata: { contentType: "text/javascript" } });
      }
    }
    await w.setRollout(HALF);
    for (const cookie of cookies.values()) {
      const r = await w.get("/demo/sdk.js", { cookie });
      if (r.headers.get("x-canary-channel") === "canary") canaryCookie ??= cookie;
      else stableCookie ??= cookie;
    }
  });
  after(() => w.setRollout(HALF));

  /** The edge cache entry of `file` in `version` (after pending writes), as its body version. */
  async function cached(version, file, { wait = true } = {}) {
    for (let i = 0; i < (wait ? 20 : 1); i++) {
      const hit = await cache.match(`http://edge.test/demo@${version}/${file}`);
      if (hit) {
        assert.equal(hit.headers.get("set-cookie"), null, "no cookie in the shared cache");
        assert.equal(hit.headers.get("x-cohort"), null, "no cohort in the shared cache");
        assert.match(hit.headers.get("cache-control"), /public/);
        const text = await hit.text();
        assert.ok(text.length > 0, `empty body cached under ${version}/${file}`);
        return bodyVersion(text);
      }
      await sleep(25);
    }
    return null;
  }

  /** Every cached copy of `files` holds the version its key names. */
  async function assertCacheConsistent(files = FILES) {
    for (const f of files) {
      for (const v of ["1.0.0", "1.1.0"]) {
        const got = await cached(v, f, { wait: false });
        assert.ok(got === null || got === v, `cache key ${v}/${f} holds ${got}`);
      }
    }
  }

  test("a canary client's fill lands under the canary key only; a stable client then gets stable", async () => {
    const c = await w.get("/demo/p1.js", { cookie: canaryCookie, headers: { "x-canary-version": "1.0.0", "x-cohort": "0" } });
    assertSane(c, [200], "canary client");
    assert.equal(bodyVersion(c.text), "1.1.0");
    assert.equal(await cached("1.1.0", "p1.js"), "1.1.0");
    assert.equal(await cached("1.0.0", "p1.js", { wait: false }), null, "nothing under the stable key");
    const s = await w.get("/demo/p1.js", { cookie: stableCookie, headers: { "x-canary-version": "1.1.0" } });
    assert.equal(bodyVersion(s.text), "1.0.0");
    assert.equal(await cached("1.0.0", "p1.js"), "1.0.0");
    await assertCacheConsistent(["p1.js"]);
  });

  test("pinned URLs and alias spellings of a path always fill the key of the version served", async () => {
    // A canary client asks for the stable pinned URL and vice versa.
    const a = await w.get("/demo@1.0.0/p2.js", { cookie: canaryCookie, headers: { "x-canary-channel": "canary" } });
    assert.equal(bodyVersion(a.text), "1.0.0");
    const b = await w.get("/demo@1.1.0/p2.js", { cookie: stableCookie, headers: { "x-canary-channel": "stable" } });
    assert.equal(bodyVersion(b.text), "1.1.0");
    // Alias spellings of p3.js from both sides: each answer is its channel's, each key its own.
    for (const path of ["/demo/p3%2ejs", "/demo/%70%33.js", "/demo/p3.js?v=1.0.0", "/demo/p3.js?v=1.1.0", "/demo/p3.js#x", "/demo/p3.js?"]) {
      for (const [cookie, want] of [[canaryCookie, "1.1.0"], [stableCookie, "1.0.0"]]) {
        const r = await w.get(path, { cookie });
        assertSane(r, [200], path);
        assert.equal(bodyVersion(r.text), want, `${path} for the ${want} client`);
      }
    }
    await cached("1.0.0", "p3.js");
    await assertCacheConsistent(["p2.js", "p3.js"]);
  });

  test("a missing canary file falls back to stable without storing stable under the canary key", async () => {
    await w.r2.delete("demo/1.1.0/p4.js");
    const r = await w.get("/demo/p4.js", { cookie: canaryCookie });
    assertSane(r, [200], "fallback");
    assert.equal(r.headers.get("x-canary-fallback"), "stable");
    assert.equal(bodyVersion(r.text), "1.0.0");
    assert.equal(await cached("1.0.0", "p4.js"), "1.0.0");
    assert.equal(await cached("1.1.0", "p4.js", { wait: false }), null, "no stable body under the canary key");
    // Once the canary file is published, the canary client gets it: no fallback was cached.
    await w.r2.put("demo/1.1.0/p4.js", "/* DemoPay SDK 1.1.0 p4.js */\n");
    const back = await w.get("/demo/p4.js", { cookie: canaryCookie });
    assert.equal(bodyVersion(back.text), "1.1.0");
    assert.equal(back.headers.get("x-canary-fallback"), null);
  });

  test("HEAD, If-None-Match and Range requests never leave an empty or partial body in the cache", async () => {
    const head = await w.get("/demo/p5.js", { cookie: canaryCookie, method: "HEAD" });
    assert.equal(head.status, 200);
    const get = await w.get("/demo/p5.js", { cookie: canaryCookie });
    assert.equal(bodyVersion(get.text), "1.1.0");
    assert.equal(await cached("1.1.0", "p5.js"), "1.1.0");

    const etag = (await w.r2.head("demo/1.0.0/p6.js")).httpEtag;
    const cond = await w.get("/demo/p6.js", { cookie: stableCookie, headers: { "if-none-match": etag } });
    assert.equal(cond.status, 304);
    assert.equal(await cached("1.0.0", "p6.js"), "1.0.0", "a 304 on a miss stores the whole body");
    const star = await w.get("/demo/p6.js", { cookie: canaryCookie, headers: { "if-none-match": "*" } });
    assertSane(star, [200, 304], "If-None-Match: *");

    const ranged = await w.get("/demo/p7.js", { cookie: stableCookie, headers: { range: "bytes=0-3" } });
    assertSane(ranged, [200, 206], "Range");
    if (ranged.status === 200) assert.equal(bodyVersion(ranged.text), "1.0.0");
    assert.equal(await cached("1.0.0", "p7.js"), "1.0.0", "the cached copy is whole");
    await assertCacheConsistent(["p5.js", "p6.js", "p7.js"]);
  });

  test("an override request fills only the key of the version it got", async () => {
    await w.setRollout({ ...HALF, weight: 0 });
    const issued = await w.get("/__canary/api/demo/override", {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ channel: "canary", ttl_secs: 60 }),
    });
    const { token } = JSON.parse(issued.text);
    const r = await w.get("/demo/p8.js", { cookie: stableCookie, headers: { "x-canary-override": token } });
    assert.equal(bodyVersion(r.text), "1.1.0");
    assert.equal(await cached("1.1.0", "p8.js"), "1.1.0");
    assert.equal(await cached("1.0.0", "p8.js", { wait: false }), null);
    const s = await w.get("/demo/p8.js", { cookie: canaryCookie });
    assert.equal(bodyVersion(s.text), "1.0.0", "everyone else still gets stable at weight 0");
    await w.setRollout(HALF);
  });

  test("concurrent cold-cache requests while the weight flips: every answer and every key consistent", async () => {
    const all = [...cookies.values()];
    const results = await Promise.all([
      ...Array.from({ length: 200 }, (_, i) => w.get(i % 3 ? "/demo/p9.js" : `/demo@${i % 2 ? "1.0.0" : "1.1.0"}/p9.js`, { cookie: all[i % all.length] })),
      w.setRollout({ ...HALF, weight: 100 }),
      w.setRollout({ ...HALF, weight: 0 }),
    ]);
    for (const r of results.slice(0, 200)) assertSane(r, [200], "concurrent p9");
    await cached("1.0.0", "p9.js");
    await assertCacheConsistent();
    await w.setRollout(HALF);
  });
});

describe("raw HTTP on a loopback socket", () => {
  // workerd's own listener: bytes that fetch() refuses to send. Status lines of every response
  // on the connection are checked; the worker must answer whatever the parser lets through.
  let rw;
  let port;
  let good;
  before(async () => {
    rw = await startWorker({ vars: VARS, rollout: HALF, listen: true });
    port = Number(new URL(rw.url).port);
    const first = await fetch(new URL("/demo/sdk.js", rw.url), { headers: { "x-user-key": "raw-client" } });
    await first.text();
    good = first.headers.get("set-cookie").split(";")[0];
  });
  after(() => rw?.dispose());

  function raw(request) {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, "127.0.0.1");
      const chunks = [];
      s.setTimeout(5000, () => s.destroy(new Error("timeout")));
      s.on("data", (d) => chunks.push(d));
      s.on("error", reject);
      s.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
      s.end(Buffer.from(request, "latin1"));
    });
  }
  const get = (target, headers = "") => `GET ${target} HTTP/1.1\r\nHost: edge.test\r\n${headers}Connection: close\r\n\r\n`;

  /** Every response on the connection: status, header block and body. */
  function responses(text) {
    return [...text.matchAll(/HTTP\/1\.[01] (\d{3})[^\r]*\r\n((?:[^\r]+\r\n)*)\r\n/g)].map((m) => ({
      status: Number(m[1]),
      head: m[2],
      body: text.slice(m.index + m[0].length, m.index + m[0].length + 200),
    }));
  }

  function assertRaw(text, statuses, label) {
    const rs = responses(text);
    assert.ok(rs.length >= 1, `${label}: no HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
    for (const r of rs) {
      assert.ok(statuses.includes(r.status), `${label}: ${r.status} not in ${statuses}: ${r.body}`);
      assert.ok(!/^(x-injected|injected)/im.test(r.head), `${label}: injected header in ${r.head}`);
      const cookieLines = r.head.split("\r\n").filter((l) => /^set-cookie:/i.test(l));
      for (const l of cookieLines) assert.match(l, /^set-cookie: cohort=\d+\.[0-9a-f]{16}\.[1-9a-f][0-9a-f]{0,9}\.[0-9a-f]{16}; /i, label);
      if (r.status >= 400) assert.ok(r.body.trim().length > 0, `${label}: empty error body`);
    }
    return rs;
  }

  test("control characters and invalid UTF-8 in Cookie and X-User-Key reach the worker and are handled", async () => {
    const cohort = (rs) => /X-Cohort: (\d+)/i.exec(rs[0].head)?.[1];
    const ref = assertRaw(await raw(get("/demo/sdk.js", `Cookie: ${good}\r\n`)), [200], "reference");
    const kept = [
      `Cookie: cohort=\x01\x02\x7f; ${good}\r\n`,
      `Cookie: junk=\xff\xfe\xc3\x28; ${good}\r\n`,
      `Cookie: ${good}; tail=\x1b[31m\r\n`,
    ];
    for (const h of kept) {
      const rs = assertRaw(await raw(get("/demo/sdk.js", h)), [200], JSON.stringify(h));
      assert.equal(cohort(rs), cohort(ref), `${JSON.stringify(h)}: the valid cookie still counts`);
      assert.ok(!/set-cookie/i.test(rs[0].head), JSON.stringify(h));
    }
    for (const h of [`Cookie: cohort=\x01\x02\x7f\r\n`, `Cookie: cohort=\xff\xfe\xc3\x28\r\n`, `X-User-Key: \xc3\x28\xff\x01\r\n`, `X-User-Key: a\x7fb\r\n`]) {
      const rs = assertRaw(await raw(get("/demo/sdk.js", h)), [200], JSON.stringify(h));
      assert.match(rs[0].head, /set-cookie: cohort=/i, `${JSON.stringify(h)}: replaced`);
    }
  });

  test("raw non-UTF-8 bytes, CR and LF tricks in the request line or headers are refused, never a 5xx", async () => {
    for (const [label, req, statuses] of [
      ["raw 0xff in the path", get("/demo/\xff\xfe.js"), [400]],
      ["CR in the path", get("/demo/sdk.js\rX-Injected: 1"), [400]],
      ["request line with two versions", get("/demo/sdk.js HTTP/1.1"), [400]],
      ["bare LF header injection", "GET /demo/sdk.js HTTP/1.1\nHost: edge.test\nX-A: b\rX-Injected: 1\nConnection: close\n\n", [400]],
      ["obs-fold continuation", get("/demo/sdk.js", `Cookie: a=1;\r\n ${good}\r\n`), [200, 400]],
      ["NUL in a header", get("/demo/sdk.js", "Cookie: a=\x00\r\n"), [400]],
      ["two Content-Lengths", "GET /demo/sdk.js HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\nGET /demo@1.1.0/sdk.js HTTP/1.1\r\nX: y\r\n\r\n", [400]],
      ["CL + TE", "GET /demo/sdk.js HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /demo/%2e%2e/secret.txt HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n", [200, 400]],
    ]) {
      const text = await raw(req);
      assertRaw(text, statuses, label);
      assert.ok(!SECRETS.test(text), `${label}: leaked`);
    }
  });

  test("absolute-form targets and foreign Host headers: each cache key still holds its own version", async () => {
    await rw.r2.put("demo/1.0.0/abs.js", "/* DemoPay SDK 1.0.0 abs */\n");
    await rw.r2.put("demo/1.1.0/abs.js", "/* DemoPay SDK 1.1.0 abs */\n");
    const requests = [
      `GET http://evil.example/demo/abs.js HTTP/1.1\r\nHost: edge.test\r\nCookie: ${good}\r\nConnection: close\r\n\r\n`,
      `GET http://edge.test@evil.example/demo/abs.js HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n`,
      `GET /demo/abs.js HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`,
      `GET /demo/abs.js HTTP/1.1\r\nHost: edge.test\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n`,
    ];
    for (const req of requests) {
      const rs = assertRaw(await raw(req), [200], req.split("\r\n")[0]);
      const version = /x-canary-version: (\S+)/i.exec(rs[0].head)[1];
      assert.equal(bodyVersion(rs[0].body), version);
    }
    await sleep(100);
    // The cache key's origin is the request URL's (the runtime's choice from the target and
    // Host); whichever origin a copy went under, it holds the version its path names.
    const c = (await rw.mf.getCaches()).default;
    let hits = 0;
    for (const origin of ["http://edge.test", "http://evil.example", `http://127.0.0.1:${port}`]) {
      for (const v of ["1.0.0", "1.1.0"]) {
        const hit = await c.match(`${origin}/demo@${v}/abs.js`);
        if (!hit) continue;
        hits++;
        assert.equal(bodyVersion(await hit.text()), v, `${origin} ${v}`);
      }
    }
    assert.ok(hits > 0, "the answers were cached somewhere");
  });
});
