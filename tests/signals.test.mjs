// Health signals nobody can forge, end to end with the real HealthMonitor, KV and R2: the
// attacks of the issue (a forced rollback by anonymous reports, a failure hidden by inflating
// stable's error rate, one client's flood), reports that do not count and why, and old
// cookies keeping their cohort while they get a client id.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  cookiePair, copyDemoFiles, newClients, sendReport, sleep, startWorker, until,
} from "./support/harness.mjs";

const TOKEN = "signals-admin-token-0123456789abcdef";
// The README's defaults, but judged after 40 clients, so the attacks stay small.
// A handful of clients drive the control plane's mechanics here: no discount for hostile
// networks (tests/attacks.test.mjs covers those), and boot_grace_secs 1 (default 30): the
// shoppers here never boot, and resolve a second after their load, within the test.
const HEALTH = { window_secs: 60, min_requests: 40, max_error_rate: 0.02, max_relative: 2, auto_rollback: true, hostile_networks: 0, boot_grace_secs: 1 };
const BASE = { stable: "1.0.0", canary: "1.1.0", weight: 50, health: HEALTH };
const ATTACKER = "203.0.113.66";

let w;
let bundle;
let n = 0;

before(async () => {
  w = await startWorker({
    rollout: BASE,
    // HEALTH_FLUSH_MS 0, HEALTH_FLUSH_REQUESTS 1: every load and report reaches the monitor as
    // served, so that what counted is asserted report by report (the flush timer:
    // browser-canary.test.mjs, verdicts.test.mjs).
    vars: { ADMIN_TOKEN: TOKEN, OVERRIDE_SECRET: "signals-override", HEALTH_FLUSH_MS: "0", HEALTH_FLUSH_REQUESTS: "1" },
  });
});
after(() => w.dispose());

beforeEach(async () => {
  bundle = `sig${++n}`;
  await copyDemoFiles(w, bundle);
  await w.setRollout(BASE, bundle);
});

async function status() {
  const r = await w.get(`/__canary/api/${bundle}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return JSON.parse(r.text);
}
const kvWeight = async () => JSON.parse(await w.kv.get(`rollout/${bundle}`)).weight;

/** `count` reports from one anonymous client (one IP, no cookie); returns their answers. */
async function flood(version, count) {
  const answers = { counted: 0, statuses: new Map(), reasons: new Map() };
  const batch = 20;
  for (let i = 0; i < count; i += batch) {
    const rs = await Promise.all(Array.from({ length: Math.min(batch, count - i) }, () => sendReport(w, bundle, version, { ip: ATTACKER })));
    for (const r of rs) {
      answers.statuses.set(r.status, (answers.statuses.get(r.status) ?? 0) + 1);
      if (r.json?.counted) answers.counted++;
      else answers.reasons.set(r.json?.reason, (answers.reasons.get(r.json?.reason) ?? 0) + 1);
    }
  }
  return answers;
}

describe("attacks", () => {
  test("forced rollback: 400 anonymous canary error reports while 200 shoppers load a healthy canary", async () => {
    const shoppers = newClients(w, bundle, 200);
    const answers = await flood("1.1.0", 400);
    await shoppers;
    assert.equal(answers.counted, 0, "not one anonymous report counted");
    assert.ok([...answers.statuses.keys()].every((s) => s === 202 || s === 429), [...answers.statuses].join());
    assert.ok((answers.reasons.get("no_cookie") ?? 0) > 0 && (answers.reasons.get("rate_limited") ?? 0) > 0, [...answers.reasons].join());
    await sleep(500);
    assert.equal(await kvWeight(), 50, "the healthy canary stays live");
    const m = (await status()).monitor;
    assert.equal(m.totals.canary.errors, 0);
    assert.notEqual(m.verdict.state, "cut");
  });

  test("hidden failure: 400 anonymous stable error reports, then a canary failing for 30% of shoppers is still cut", async () => {
    const answers = await flood("1.0.0", 400);
    assert.equal(answers.counted, 0);
    const shoppers = await newClients(w, bundle, 300);
    // 30% of the canary's real clients hit an error, reported by the SDK's beacon.
    const failing = shoppers.canary.filter((_, i) => i % 10 < 3);
    for (const client of failing) {
      if ((await kvWeight()) === 0) break;
      await sendReport(w, bundle, "1.1.0", client);
    }
    await until(async () => (await kvWeight()) === 0, "the failing canary cut", 8000);
    const m = (await status()).monitor;
    assert.equal(m.totals.stable.errors, 0, "the flood did not inflate stable's error rate");
    assert.equal(m.history[0].by, "auto");
  });

  test("one client with a valid canary cookie sends 1,000 error reports: one client with an error", async () => {
    const shoppers = await newClients(w, bundle, 160);
    const [noisy] = shoppers.canary;
    let counted = 0;
    let limited = 0;
    for (let i = 0; i < 1000; i += 25) {
      const rs = await Promise.all(Array.from({ length: 25 }, () => sendReport(w, bundle, "1.1.0", noisy)));
      counted += rs.filter((r) => r.json?.counted).length;
      limited += rs.filter((r) => r.status === 429).length;
    }
    // 10 a minute per client; the limiter's fixed windows may let a second ten through.
    assert.ok(counted <= 20, `at most the per-client limit gets through: ${counted}`);
    assert.ok(limited >= 980, `the rest is refused at the door: ${limited}`);
    await until(async () => (await status()).monitor.totals.canary.errors === 1, "one client with an error");
    await sleep(300);
    assert.equal(await kvWeight(), 50, "one broken browser does not cut a healthy canary");
    assert.notEqual((await status()).monitor.verdict.state, "cut");

    // A canary failing for 30% of its real clients is still cut.
    const failing = shoppers.canary.slice(1).filter((_, i) => i % 10 < 3);
    for (const client of failing) {
      if ((await kvWeight()) === 0) break;
      await sendReport(w, bundle, "1.1.0", client);
    }
    await until(async () => (await kvWeight()) === 0, "the failing canary cut", 8000);
  });
});

describe("reports that do not count say why", () => {
  test("no cookie, forged or tampered cookie, another deployment's cookie, the wrong channel, an old cookie", async () => {
    const { canary, stable } = await newClients(w, bundle, 40);
    const good = canary[0].cookie;
    const [, value] = good.split("=");
    const [cohort, id, issued, tag] = value.split(".");
    assert.equal(signedCookie(Number(cohort), id, parseInt(issued, 16)), good, "the documented format");
    const now = Math.floor(Date.now() / 1000);
    const other = await startWorker({ vars: { COHORT_SECRET: "another deployment" } });
    let foreign;
    try {
      foreign = cookiePair((await other.get("/demo/sdk.js", { userKey: "elsewhere" })).headers);
    } finally {
      await other.dispose();
    }
    const flipped = (s) => s.slice(0, -1) + (s.at(-1) === "0" ? "1" : "0");
    const cases = [
      [{}, "no_cookie"],
      [{ cookie: "theme=dark" }, "no_cookie"],
      [{ cookie: `cohort=${cohort}.${flipped(id)}.${issued}.${tag}` }, "bad_cookie"],
      [{ cookie: `cohort=${cohort}.${id}.${flipped(issued)}.${tag}` }, "bad_cookie"],
      [{ cookie: `cohort=${cohort}.${id}.${issued}.${flipped(tag)}` }, "bad_cookie"],
      [{ cookie: `cohort=${(Number(cohort) + 1) % 10}.${id}.${issued}.${tag}` }, "bad_cookie"],
      // Genuinely signed, but issued more than Max-Age ago, or ahead of the edge's clock.
      [{ cookie: signedCookie(Number(cohort), id, now - 31_536_000 - 60) }, "bad_cookie"],
      [{ cookie: signedCookie(Number(cohort), id, now + 3600) }, "bad_cookie"],
      [{ cookie: signedCookie(Number(cohort), id) }, "old_cookie"],
      [{ cookie: foreign }, "bad_cookie"],
      [{ cookie: stable[0].cookie }, "not_served_this_version"],
    ];
    for (const [client, reason] of cases) {
      const r = await sendReport(w, bundle, "1.1.0", { ...client, ip: "192.0.2.10" });
      assert.equal(r.status, 202, JSON.stringify(client));
      assert.deepEqual(r.json, { counted: false, reason }, JSON.stringify(client));
    }
    const wrongWay = await sendReport(w, bundle, "1.0.0", canary[1]);
    assert.deepEqual(wrongWay.json, { counted: false, reason: "not_served_this_version" }, "a canary client naming stable");
    const dark = await sendReport(w, bundle, "2.0.0", canary[1]);
    assert.deepEqual(dark.json, { counted: false, reason: "version_not_live" });
    await sleep(300);
    assert.equal((await status()).monitor.totals.canary.errors, 0, "nothing counted");
    const ok = await sendReport(w, bundle, "1.1.0", canary[2]);
    assert.deepEqual(ok.json, { counted: true, channel: "canary", kind: "uncaught" });
  });

  test("a signed override holder's report counts for its channel", async () => {
    const issued = JSON.parse((await w.get(`/__canary/api/${bundle}/override`, {
      method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ channel: "canary", ttl_secs: 60 }),
    })).text);
    const r = await w.get("/__canary/report", {
      method: "POST", body: JSON.stringify({ bundle, version: "1.1.0", kind: "probe" }),
      headers: { "x-canary-override": issued.token }, ip: "192.0.2.11",
    });
    assert.deepEqual(JSON.parse(r.text), { counted: true, channel: "canary", kind: "probe" });
  });
});

test("old-format cookies keep their cohort and get the current format with a client id", async () => {
  const { all } = await newClients(w, bundle, 10);
  // What a client that visited before this release holds: `<cohort>.<id>.<tag>` (no issue
  // time) or `<cohort>.<tag>` (no id).
  const oldId = "00c0ffee00c0ffee";
  const legacy = [];
  for (let c = 0; c < 10; c++) legacy.push([c, signedCookie(c, oldId)], [c, signedCookie(c)]);
  for (const [cohort, cookie] of legacy) {
    const r = await w.get(`/${bundle}/sdk.js`, { cookie });
    assert.equal(r.headers.get("x-cohort"), String(cohort), `${cookie}: same cohort`);
    const upgraded = cookiePair(r.headers);
    assert.match(upgraded, new RegExp(`^cohort=${cohort}\\.[0-9a-f]{16}\\.[1-9a-f][0-9a-f]{0,9}\\.[0-9a-f]{16}$`));
    assert.ok(!upgraded.includes(oldId), `${cookie}: a fresh id`);
    const again = await w.get(`/${bundle}/sdk.js`, { cookie: upgraded });
    assert.equal(again.headers.get("x-cohort"), String(cohort));
    assert.equal(again.headers.get("set-cookie"), null, "upgraded once");
  }
  assert.ok(all.every((c) => /^cohort=\d\.[0-9a-f]{16}\.[1-9a-f][0-9a-f]{0,9}\.[0-9a-f]{16}$/.test(c.cookie)), "new clients get the current format");
});

/**
 * A cohort cookie signed by hand as the worker signs it (10 cohorts, the harness's
 * COHORT_SECRET): `<n>.<id>.<issued>.<tag>` with `id` (16 hex) and `issued` (seconds);
 * the previous formats `<n>.<id>.<tag>` without `issued`, `<n>.<tag>` without `id` either.
 */
function signedCookie(cohort, id = null, issued = null) {
  const u16 = (n) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
  const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; };
  const parts = [u16(10), u16(cohort)];
  if (id !== null) parts.push(u64(`0x${id}`));
  if (issued !== null) parts.push(u64(issued));
  const domain = id === null ? [] : [Buffer.from(issued === null ? "cohort-v2" : "cohort-v3")];
  const tag = createHmac("sha256", "test-cohort-secret").update(Buffer.concat([...domain, ...parts])).digest("hex").slice(0, 16);
  const fields = [cohort, id, issued === null ? null : issued.toString(16), tag].filter((f) => f !== null);
  return `cohort=${fields.join(".")}`;
}

test("the demo SDK reports errors and its boot with the documented snippets, verbatim", async () => {
  const { readFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { ROOT } = await import("./support/harness.mjs");
  for (const file of ["sdk/report-errors.js", "sdk/report-boot.js"]) {
    const snippet = readFileSync(join(ROOT, file), "utf8").trim();
    for (const version of ["1.0.0", "1.1.0"]) {
      const sdk = readFileSync(join(ROOT, `fixtures/demo/${version}/sdk.js`), "utf8");
      const unindented = sdk.split("\n").map((l) => l.replace(/^ {2}/, "")).join("\n");
      assert.ok(unindented.includes(snippet), `fixtures/demo/${version}/sdk.js embeds ${file}`);
    }
  }
});

test("the boot snippet sends one boot signal per bundle and version, and never throws", async () => {
  const { readFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const vm = await import("node:vm");
  const { ROOT } = await import("./support/harness.mjs");
  const snippet = readFileSync(join(ROOT, "sdk/report-boot.js"), "utf8");
  const sent = [];
  const page = {
    performance: { now: () => 1234.6 },
    navigator: { sendBeacon: (url, body) => { sent.push({ url, body: JSON.parse(body) }); return true; } },
  };
  page.window = page;
  vm.createContext(page);
  vm.runInContext(snippet, page);
  page.canaryBoot("https://sdk.example", "demo", "1.1.0", 1000);
  page.canaryBoot("https://sdk.example", "demo", "1.1.0", 0); // a second script tag
  page.canaryBoot("https://sdk.example", "demo", "1.0.0", 2000); // clock skew: clamped to 0
  assert.deepEqual(sent, [
    { url: "https://sdk.example/__canary/report", body: { bundle: "demo", version: "1.1.0", kind: "boot", boot_ms: 235 } },
    { url: "https://sdk.example/__canary/report", body: { bundle: "demo", version: "1.0.0", kind: "boot", boot_ms: 0 } },
  ]);
  const hostile = { navigator: { get sendBeacon() { throw new Error("blocked"); } } };
  hostile.window = hostile;
  vm.createContext(hostile);
  vm.runInContext(snippet, hostile);
  assert.doesNotThrow(() => hostile.canaryBoot("https://sdk.example", "demo", "1.1.0", 0));
});

test("the boot starts at the entry script's download where Resource Timing gives it, else at its start", async () => {
  const { readFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const vm = await import("node:vm");
  const { ROOT } = await import("./support/harness.mjs");
  const snippet = readFileSync(join(ROOT, "sdk/report-boot.js"), "utf8");
  const src = "https://sdk.example/demo/sdk.js";
  const start = (entries, { script = { src }, now = 900 } = {}) => {
    const page = {
      document: { currentScript: script },
      performance: {
        now: () => now,
        getEntriesByName: (name, type) => (name === src && type === "resource" ? entries : []),
      },
    };
    page.window = page;
    vm.createContext(page);
    vm.runInContext(snippet, page);
    return page.canaryBootStart();
  };
  // (entries, options, start): the script's own entry's startTime (the last, for a second
  // tag), else now: no entry (a full buffer), no currentScript, a time after now.
  for (const [entries, options, expected] of [
    [[{ startTime: 120.5 }], {}, 120.5],
    [[{ startTime: 120.5 }, { startTime: 700 }], {}, 700],
    [[], {}, 900],
    [[{ startTime: 120.5 }], { script: null }, 900],
    [[{ startTime: 950 }], {}, 900],
    [[{ startTime: 0 }], {}, 900],
  ]) {
    assert.equal(start(entries, options), expected, JSON.stringify({ entries, options }));
  }
  // Without performance: Date.now(), the clock canaryBoot then uses too.
  const bare = { document: {} };
  bare.window = bare;
  vm.createContext(bare);
  vm.runInContext(snippet, bare);
  assert.ok(Math.abs(bare.canaryBootStart() - Date.now()) < 1000);
  // A getEntriesByName that throws: the script's start, never an exception.
  const page = { document: { currentScript: { src } }, performance: { now: () => 5, getEntriesByName: () => { throw new Error("no"); } } };
  page.window = page;
  vm.createContext(page);
  vm.runInContext(snippet, page);
  assert.equal(page.canaryBootStart(), 5);
});
