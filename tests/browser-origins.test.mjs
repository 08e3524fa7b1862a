// `health.origins` with real browsers (issue 26): any web page can embed the SDK's floating
// URL, so a third-party page (an ad, a forum post) could recruit its visitors, each on a real
// network of its own, to load the canary and beacon failure reports for it. Headless Chromium
// (Debian's) opens two kinds of page, each shopper in a fresh browser context on a network of
// its own (its own CF-Connecting-IP):
//
// - the demo merchant page, served by the worker (/merchant/index.html on 127.0.0.1:<port>),
//   which loads /demo/sdk.js; the SDK boots and says so;
// - a foreign page, served by a small HTTP server of this test on `localhost:<other port>`
//   (another site), which embeds the worker's floating URL and, once the SDK is ready,
//   beacons two failure reports through the SDK's own reporting (`DemoPay.report`).
//
//   1. Without `health.origins` (the attack): the foreign page's visitors become clients of
//      the verdict, each with a failure; so do those of a page framing the merchant's that
//      beacons failures itself.
//   2. With `health.origins` set to the merchant page's origin: the foreign page is served
//      all the same (the SDK runs there and reports), but moves no count: the status's counts
//      are unchanged. A foreign page that frames the merchant page (whose own load and boot
//      count: it is the merchant's page) and beacons failures itself, with the cookie the
//      framed page got in its partition, adds no failure (its `Origin` is not listed). The
//      merchant page's loads and boots count.
//
// What the edge answered a beacon is not visible here (Chromium shows no response of a
// beacon to the test): the outcome is read from the status's counts.
// Only documented interfaces: fixtures, `rollout/<bundle>` with `health`, the admin status
// (GET /__canary/api/<bundle>). The worker runs with wrangler.toml's values (10 s flush).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import { chromium } from "playwright-core";
import { sleep, startWorker, until } from "./support/harness.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const TOKEN = "browser-origins-admin-token-0123456789";
/** Shoppers of each kind per test: enough for both channels (weight 50). */
const SHOPPERS = 6;
/** Longest a load waits in an isolate (HEALTH_FLUSH_MS, wrangler.toml) plus the forward. */
const FLUSH_WAIT_MS = 10_000 + 3_000;

let browser;
let foreign;
/** The worker the foreign page embeds, set by each test before its shoppers come. */
let edgeOrigin = "";

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: scripts/test installs Debian's chromium`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  // The foreign page: the SDK's floating URL in a page of someone else's, and failure
  // reports beaconed for every visitor once the SDK is ready.
  foreign = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    if (req.url.startsWith("/frame")) return res.end(framing());
    res.end(`<!doctype html><html><head><meta charset="utf-8"><title>A forum post</title>
<script src="${edgeOrigin}/demo/sdk.js"></script></head><body><p id="status">embedding</p>
<script>
  DemoPay.ready.then(function () {
    DemoPay.report("uncaught", "recruited by a foreign page");
    DemoPay.report("mount", "recruited by a foreign page");
    document.getElementById("status").dataset.version = DemoPay.version;
  }, function (e) { document.getElementById("status").dataset.error = String(e); });
</script></body></html>`);
  });
  await new Promise((resolve) => foreign.listen(0, "127.0.0.1", resolve));
});
after(async () => {
  await browser?.close();
  await new Promise((resolve) => (foreign ? foreign.close(resolve) : resolve()));
});

/**
 * A foreign page that frames the merchant's checkout, then beacons failures of both versions
 * itself: the beacons carry the cohort cookie the framed page got (one partition, the
 * foreign site's), but the foreign page's `Origin`.
 */
function framing() {
  return `<!doctype html><html><head><meta charset="utf-8"><title>A framing page</title></head>
<body><p id="status">framing</p>
<iframe id="shop" src="${edgeOrigin}/merchant/index.html"></iframe>
<script>
  document.getElementById("shop").onload = function () {
    setTimeout(function () {
      ["1.0.0", "1.1.0"].forEach(function (version) {
        navigator.sendBeacon("${edgeOrigin}/__canary/report",
          JSON.stringify({ bundle: "demo", version: version, kind: "uncaught", message: "reported by a framing page" }));
      });
      document.getElementById("status").dataset.version = "sent";
    }, 500);
  };
</script></body></html>`;
}

/** The foreign site: `localhost`, another site than the worker's 127.0.0.1. */
function foreignOrigin() {
  return `http://localhost:${foreign.address().port}`;
}

/** The foreign page that embeds the SDK. */
function foreignUrl() {
  return `${foreignOrigin()}/forum/post.html`;
}

async function adminStatus(w) {
  const r = await w.get("/__canary/api/demo", { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

/** Every count the status shows for the step and the windows. */
function counts(s) {
  const m = s.monitor;
  const v = m.verdict;
  return {
    totals: m.totals,
    recent: m.recent,
    verdict: { stable: [v.stable.clients, v.stable.errors], canary: [v.canary.clients, v.canary.errors] },
    tracked: { pending: v.tracked.pending, boots: v.tracked.boots, no_boot: v.tracked.no_boot, refused: v.tracked.refused },
  };
}

/** Clients the verdict counts (both channels), and those with errors. */
function judged(s) {
  const v = s.monitor.verdict;
  return { clients: v.stable.clients + v.canary.clients, errors: v.stable.errors + v.canary.errors };
}

/**
 * One shopper on network `ip` opens `url` and waits for the page to show it is done (the
 * SDK's version), then for its beacons to go out. Returns what the page showed, the Referer
 * its script load sent, and each beacon's body.
 */
async function visit(url, ip) {
  const context = await browser.newContext({ extraHTTPHeaders: { "cf-connecting-ip": ip } });
  try {
    const page = await context.newPage();
    const beacons = [];
    let referer;
    page.on("request", (r) => {
      const path = new URL(r.url()).pathname;
      if (path === "/demo/sdk.js") referer = r.allHeaders().then((h) => h.referer ?? null);
      if (r.method() === "POST" && path === "/__canary/report") beacons.push(r);
    });
    await page.goto(url, { waitUntil: "load", timeout: 15_000 });
    const shown = await page.waitForFunction(() => {
      const s = document.getElementById("status").dataset;
      return s.version || s.error ? { version: s.version, error: s.error } : null;
    }, null, { timeout: 15_000, polling: 50 }).then((h) => h.jsonValue());
    assert.ok(shown.version, `${url}: ${JSON.stringify(shown)}`);
    // The SDK's boot beacon follows `ready` by a tick: let every beacon go out and be
    // answered before the context (and what it has in flight) goes away.
    await sleep(300);
    await Promise.all(beacons.map((b) => Promise.race([b.response(), sleep(5_000)]).catch(() => {})));
    const sent = beacons.map((b) => ({ body: JSON.parse(b.postData()) }));
    return { ip, version: shown.version, referer: await referer, beacons: sent };
  } finally {
    await context.close();
  }
}

async function shoppers(url, net) {
  const out = [];
  for (let n = 1; n <= SHOPPERS; n++) out.push(await visit(url, `${net}.${n}`));
  return out;
}

test("without health.origins a foreign page's visitors load and fail the canary for it", async () => {
  const w = await startWorker({
    listen: true,
    rollout: { stable: "1.0.0", canary: "1.1.0", weight: 50 },
    vars: { ADMIN_TOKEN: TOKEN },
  });
  try {
    edgeOrigin = new URL(w.url).origin;
    const before = await adminStatus(w);
    assert.match(before.monitor.evidence.warning, /evidence is accepted from any page/);
    assert.equal(before.monitor.evidence.origins, null);
    const visits = await shoppers(foreignUrl(), "198.18.7");
    for (const v of visits) {
      assert.equal(v.referer, `${foreignOrigin()}/`, "a cross-site script tag sends the page's origin");
      const failures = v.beacons.filter((b) => b.body.kind !== "boot");
      assert.equal(failures.length, 2, JSON.stringify(v.beacons));
    }
    // Every recruited visitor becomes a client of the verdict with a failure.
    const s = await until(async () => {
      const s = await adminStatus(w);
      return judged(s).errors >= SHOPPERS ? s : null;
    }, "the foreign page's failures in the verdict", FLUSH_WAIT_MS + 10_000);
    assert.deepEqual(judged(s), { clients: SHOPPERS, errors: SHOPPERS });
    // A page framing the merchant's: its own beacons carry the cookie the framed page got,
    // and count (what `health.origins` stops below).
    await shoppers(`${foreignOrigin()}/frame.html`, "198.18.11");
    const framed = await until(async () => {
      const s = await adminStatus(w);
      return judged(s).errors >= 2 * SHOPPERS ? s : null;
    }, "the framing page's failures in the verdict", FLUSH_WAIT_MS + 10_000);
    assert.deepEqual(judged(framed), { clients: 2 * SHOPPERS, errors: 2 * SHOPPERS });
    console.log(`# without health.origins: ${SHOPPERS} visitors of a foreign page moved the verdict to ` +
      `${JSON.stringify(counts(s).verdict)} ([clients, errors] per channel); ${SHOPPERS} more of a page framing ` +
      `the merchant's, to ${JSON.stringify(counts(framed).verdict)}`);
  } finally {
    await w.dispose();
  }
});

test("with health.origins a foreign page moves no count, and the merchant page's evidence counts", async () => {
  // The worker listens on a port of its own: its origin is known once it runs.
  const w = await startWorker({ listen: true, rollout: null, vars: { ADMIN_TOKEN: TOKEN } });
  try {
    edgeOrigin = new URL(w.url).origin;
    const merchant = new URL("/merchant/index.html", w.url).href;
    await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50, health: { origins: [edgeOrigin] } }, "demo", { served: true });
    const before = await adminStatus(w);
    assert.deepEqual(before.monitor.evidence, { origins: [edgeOrigin], warning: null });

    // The foreign page: served as ever (the SDK runs and reports), counted nowhere.
    const visits = await shoppers(foreignUrl(), "198.18.8");
    for (const v of visits) {
      assert.ok(["1.0.0", "1.1.0"].includes(v.version), v.version);
      assert.equal(v.referer, `${foreignOrigin()}/`);
      assert.equal(v.beacons.filter((b) => b.body.kind !== "boot").length, 2, JSON.stringify(v.beacons));
    }
    // Past the longest a load waits in an isolate: nothing moved.
    await sleep(FLUSH_WAIT_MS);
    const afterForeign = await adminStatus(w);
    assert.deepEqual(counts(afterForeign), counts(before), "the foreign page's visitors moved a count");

    // A page framing the merchant's: the framed page's load and boot count (it is the
    // merchant's page), the framing page's own failure beacons do not.
    const framed = await shoppers(`${foreignOrigin()}/frame.html`, "198.18.10");
    for (const v of framed) {
      assert.equal(v.referer, merchant, "the framed merchant page loaded the SDK");
      assert.equal(v.beacons.filter((b) => b.body.kind === "uncaught").length, 2, JSON.stringify(v.beacons));
    }
    const afterFramed = await until(async () => {
      const s = await adminStatus(w);
      return judged(s).clients >= SHOPPERS ? s : null;
    }, "the framed merchant pages' clients in the verdict", FLUSH_WAIT_MS + 10_000);
    // The framing page's beacons go within a second of its frame's load: give them as long
    // as a load may take, then look again.
    await sleep(FLUSH_WAIT_MS);
    const framedCounts = await adminStatus(w);
    assert.deepEqual(judged(framedCounts), { clients: SHOPPERS, errors: 0 }, "the framing page's failures counted");

    // The merchant's page: its loads and boots count.
    const shoppersOfMerchant = await shoppers(merchant, "198.18.9");
    for (const v of shoppersOfMerchant) {
      assert.equal(v.referer, merchant, "a same-origin script tag sends the page's URL");
      assert.ok(v.beacons.some((b) => b.body.kind === "boot"), JSON.stringify(v.beacons));
    }
    const s = await until(async () => {
      const s = await adminStatus(w);
      return judged(s).clients >= 2 * SHOPPERS ? s : null;
    }, "the merchant page's shoppers in the verdict", FLUSH_WAIT_MS + 10_000);
    assert.deepEqual(judged(s), { clients: 2 * SHOPPERS, errors: 0 });
    const t = s.monitor.verdict.tracked;
    assert.equal(t.boots.stable + t.boots.canary, 2 * SHOPPERS);
    console.log(`# with health.origins [${edgeOrigin}]: ${SHOPPERS} visitors of a foreign page embedding the SDK ` +
      `(${SHOPPERS * 2} failure beacons) left every count as it was; ${SHOPPERS} visitors of a page framing the ` +
      `merchant's: ${JSON.stringify(counts(afterFramed).verdict)} ([clients, errors] per channel: the framed page's ` +
      `loads and boots, none of the framing page's ${SHOPPERS * 2} failure beacons); then ${SHOPPERS} merchant shoppers: ` +
      `${JSON.stringify(counts(s).verdict)}, ${t.boots.stable + t.boots.canary} boots`);
  } finally {
    await w.dispose();
  }
});
