// The console's trust, in headless Chromium (Debian's), against the built worker: an operator
// is logged in to the console on its own host (CONSOLE_HOST=localhost) while pages served
// from bundles (a payments SDK's 3-D Secure page, and the demo merchant page) run a script
// that tries every console and admin route, on their own host and on the console's, with
// and without credentials, plus frames and form posts. Nothing may change: the weight of
// a rolled-back canary stays 0, the history gains nothing, no CSRF token is read, and the
// operator's session still works.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";
import { startWorker } from "./support/harness.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const TOKEN = "trust-admin-token-0123456789abcdef";
// The attacker's page: a file in a published bundle, as a payments SDK ships a 3-D Secure
// iframe page. No CSP: bundles are served as they were uploaded.
const ATTACK_PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>3-D Secure</title></head>
<body><p>Verifying your card...</p></body></html>`;

let w;
let browser;
let context;
let consolePage;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: scripts/test installs Debian's chromium`);
  w = await startWorker({
    listen: true,
    vars: { ADMIN_TOKEN: TOKEN, CONSOLE_HOST: "localhost", OVERRIDE_SECRET: "trust-override-secret" },
    // A canary that was rolled back: the attacker wants it back at 100.
    rollout: { stable: "1.0.0", canary: "1.1.0", weight: 0 },
  });
  await w.r2.put("merchant/1/3ds.html", ATTACK_PAGE, { httpMetadata: { contentType: "text/html; charset=utf-8" } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  context = await browser.newContext();
  consolePage = await context.newPage();
  consolePage.on("dialog", (d) => d.accept());
});
after(async () => {
  await browser?.close();
  await w?.dispose();
});

const port = () => w.url.port;
const consoleUrl = () => `http://localhost:${port()}/__canary/ui/`;
const bearer = { authorization: `Bearer ${TOKEN}` };

async function adminStatus() {
  const res = await w.get("/__canary/api/demo", { headers: bearer });
  assert.equal(res.status, 200);
  return JSON.parse(res.text);
}

/** Runs in the attacker's page: every console route, relative and on the console host. */
async function attack(consoleOrigin) {
  const results = [];
  let stolen = null;
  const bases = ["", consoleOrigin];
  const reads = ["/__canary/ui/session", "/__canary/api", "/__canary/api/demo", "/__canary/api/demo/minutes", "/__canary/api/demo/files/1.1.0"];
  const writes = [
    ["/__canary/api/demo/weight", { weight: 100 }],
    ["/__canary/api/demo/rollout", { steps: [100], bake_secs: 1 }],
    ["/__canary/api/demo/resume", {}],
    ["/__canary/api/demo/promote", {}],
    ["/__canary/api/demo/publish", { version: "1.1.0" }],
    ["/__canary/api/demo/pause", {}],
    ["/__canary/api/demo/override", { channel: "canary" }],
    ["/__canary/ui/logout", { everywhere: true }],
    ["/__canary/ui/login", { token: "guess" }],
  ];
  const attempt = async (label, url, init) => {
    try {
      const res = await fetch(url, init);
      let body = "";
      try {
        body = await res.text();
      } catch {
        /* opaque */
      }
      const m = /"csrf":"([0-9a-f]+)"/.exec(body);
      if (m) stolen = m[1];
      results.push({ label, url, status: res.status, type: res.type, csrf: Boolean(m) });
    } catch (e) {
      results.push({ label, url, status: "blocked", error: String(e.message).slice(0, 60) });
    }
  };
  for (const base of bases) {
    for (const credentials of ["same-origin", "include"]) {
      for (const path of reads) await attempt(`GET ${credentials}`, base + path, { credentials });
      for (const [path, body] of writes) {
        const headers = { "content-type": "application/json" };
        if (stolen) headers["x-canary-csrf"] = stolen;
        await attempt(`POST ${credentials}`, base + path, { method: "POST", credentials, headers, body: JSON.stringify(body) });
        // A "simple" request too (no preflight): text/plain, no custom header.
        await attempt(`POST simple ${credentials}`, base + path, { method: "POST", credentials, mode: "no-cors", body: JSON.stringify(body) });
      }
    }
  }
  // The console in a frame: refused (frame-ancestors 'none'), and unreadable cross-origin.
  const frame = document.createElement("iframe");
  frame.src = `${consoleOrigin}/__canary/ui/`;
  document.body.append(frame);
  await new Promise((r) => setTimeout(r, 500));
  let frameRead = "unreadable";
  try {
    frameRead = frame.contentDocument?.body?.innerText ?? "unreadable";
  } catch {
    /* cross-origin */
  }
  // A cross-site form post into a hidden frame (a navigation: no CORS, but no cookie).
  const sink = document.createElement("iframe");
  sink.name = "sink";
  document.body.append(sink);
  const form = document.createElement("form");
  form.method = "POST";
  form.action = `${consoleOrigin}/__canary/api/demo/weight`;
  form.target = "sink";
  form.enctype = "text/plain";
  const field = document.createElement("input");
  field.name = '{"weight":100,"x":"';
  field.value = '"}';
  form.append(field);
  document.body.append(form);
  form.submit();
  await new Promise((r) => setTimeout(r, 500));
  return { results, stolen, frameRead };
}

test("a logged-in operator; a bundle's page on the same machine cannot act with the session", async () => {
  // The operator logs in on the console host.
  await consolePage.goto(consoleUrl());
  await consolePage.fill("#token", TOKEN);
  await consolePage.click("#login-form button");
  await consolePage.locator("#overview").waitFor({ state: "visible" });
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "__Host-canary_session");
  assert.ok(session, "logged in");
  assert.equal(session.domain, "localhost");
  const before = await adminStatus();
  assert.equal(before.config.weight, 0);
  const eventsBefore = before.monitor.events.length;

  // The console host serves no bundle: the attacker's page cannot live there.
  const onConsoleHost = await w.mf.dispatchFetch(`http://localhost:${port()}/merchant/3ds.html`);
  assert.equal(onConsoleHost.status, 404);
  await onConsoleHost.text();

  for (const path of ["/merchant/3ds.html", "/merchant/index.html"]) {
    const page = await context.newPage();
    const res = await page.goto(`http://127.0.0.1:${port()}${path}`);
    assert.equal(res.status(), 200, path);
    assert.equal(res.headers()["x-content-type-options"], "nosniff");
    const { results, stolen, frameRead } = await page.evaluate(attack, `http://localhost:${port()}`);
    // 2 hosts x 2 credential modes x (5 reads + 9 writes x 2 kinds).
    assert.equal(results.length, 92, `${path}: every attempt was made`);
    if (process.env.TRUST_VERBOSE) console.log(path, JSON.stringify(results));
    assert.equal(stolen, null, `${path}: no CSRF token read`);
    assert.equal(frameRead, "unreadable", `${path}: the console cannot be read in a frame`);
    for (const r of results) {
      assert.ok(
        r.status === "blocked" || r.type === "opaque" || [401, 403, 404, 405].includes(r.status),
        `${path}: ${r.label} ${r.url} answered ${r.status} (${r.type})`,
      );
    }
    // Relative console routes on the bundle's own host carry no session at all.
    const local = results.filter((r) => r.url.startsWith("/__canary/ui/session"));
    assert.ok(local.every((r) => r.status === 404 || r.status === 302 || r.status === 200 || r.status === "blocked"));
    assert.ok(local.every((r) => !r.csrf));
    await page.close();
  }

  const afterAttack = await adminStatus();
  assert.equal(afterAttack.config.weight, 0, "the rolled-back canary stays at 0");
  assert.equal(afterAttack.config.canary, "1.1.0");
  assert.equal(afterAttack.config.stable, "1.0.0");
  assert.equal(afterAttack.monitor.events.length, eventsBefore, "nothing in the history");
  // The operator's session still works: nothing logged it out.
  const stillIn = await consolePage.evaluate(async () => (await fetch("/__canary/api/demo", { cache: "no-store" })).status);
  assert.equal(stillIn, 200);
});

test("the console itself still works with its session: a write from its page lands, by its operator", async () => {
  await consolePage.goto(`${consoleUrl()}#/b/demo`);
  await consolePage.locator("#bundle").waitFor({ state: "visible" });
  await consolePage.fill("#weight", "10");
  await consolePage.click("#weight-form button");
  await consolePage.locator("#action-result", { hasText: "done" }).waitFor();
  const s = await adminStatus();
  assert.equal(s.config.weight, 10);
  assert.equal(s.monitor.events[0].kind, "set_weight");
  assert.equal(s.monitor.events[0].by, "operator");
});

test("a console URL on the bundle host sends the browser to the console host", async () => {
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${port()}/__canary/ui/`);
  assert.equal(new URL(page.url()).host, `localhost:${port()}`);
  await page.locator("#overview").waitFor({ state: "visible" });
  await page.close();
});
