// Canary routing end to end: cohorts, weights, stickiness, spoofing and balance, against the
// built wasm in workerd with real local KV and R2.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  CHROME_JA4,
  FIREFOX_JA4,
  bodyVersion,
  cookiePair,
  cookiesForEveryCohort,
  startWorker,
} from "./support/harness.mjs";

// CONFIG_TTL_MS 0: routing tables, where every row writes a new weight or canary and reads
// the split at once (a 5 s wait per row would be minutes); the TTL is tested in
// cli.test.mjs and soak.test.mjs.
const VARS = { CONFIG_TTL_MS: "0" };

let w;
let cookies; // cohort -> "cohort=<n>.<id>.<issued>.<tag>"
before(async () => {
  w = await startWorker({ vars: VARS });
  cookies = await cookiesForEveryCohort(w);
});
after(() => w.dispose());

async function canaryCohorts() {
  const status = await w.get("/__canary/status/demo");
  return JSON.parse(status.text).canary_cohorts;
}

/** Which cohorts get canary, by asking once per cohort with its cookie. */
async function servedCanary() {
  const on = [];
  for (const [cohort, cookie] of [...cookies].sort((a, b) => a[0] - b[0])) {
    const r = await w.get("/demo/sdk.js", { cookie });
    assert.equal(r.status, 200);
    assert.equal(Number(r.headers.get("x-cohort")), cohort);
    assert.equal(r.headers.get("set-cookie"), null, "a valid cookie is not rewritten");
    const version = r.headers.get("x-canary-version");
    assert.equal(bodyVersion(r.text), version, "header and body agree");
    if (r.headers.get("x-canary-channel") === "canary") {
      assert.equal(version, "1.1.0");
      on.push(cohort);
    } else {
      assert.equal(version, "1.0.0");
    }
  }
  return on;
}

describe("weights", () => {
  test("weight 0, 30 and 100 put exactly 0, 3 and 10 cohorts on the canary", async () => {
    for (const [weight, count] of [[0, 0], [30, 3], [100, 10]]) {
      await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight });
      const on = await servedCanary();
      assert.equal(on.length, count, `weight ${weight}`);
      assert.deepEqual(on, [...(await canaryCohorts())].sort((a, b) => a - b), "status agrees with routing");
    }
  });

  test("raising the weight never moves a client from canary back to stable", async () => {
    const wasCanary = new Set();
    for (const weight of [0, 5, 10, 15, 20, 35, 50, 51, 70, 90, 99, 100]) {
      await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight });
      const on = new Set(await servedCanary());
      for (const c of wasCanary) assert.ok(on.has(c), `cohort ${c} left the canary at weight ${weight}`);
      assert.equal(on.size, Math.floor((weight * 10) / 100), `weight ${weight}`);
      on.forEach((c) => wasCanary.add(c));
    }
    assert.equal(wasCanary.size, 10);
  });

  test("which cohorts go first rotates with the canary version, or follows cohort_offset", async () => {
    const firsts = new Set();
    for (const canary of ["1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0"]) {
      await w.setRollout({ stable: "1.0.0", canary, weight: 10 });
      firsts.add((await canaryCohorts())[0]);
    }
    assert.ok(firsts.size >= 3, `first cohort barely rotates: ${[...firsts]}`);
    await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 30, cohort_offset: 8 });
    assert.deepEqual(await canaryCohorts(), [0, 8, 9], "30% from cohort 8: 8, 9, then wrap to 0");
  });

  test("the status endpoint tells the effective weight when it is rounded", async () => {
    await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 35 });
    const s = JSON.parse((await w.get("/__canary/status/demo")).text);
    assert.equal(s.weight, 35);
    assert.equal(s.effective_weight, 30);
    assert.match(s.note, /30% is served/);
  });

  test("no canary: everyone on stable whatever the weight", async () => {
    await w.setRollout({ stable: "1.0.0", canary: null, weight: 100 });
    assert.deepEqual(await servedCanary(), []);
  });
});

describe("stickiness", () => {
  before(() => w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 50 }));

  test("the same cookie gets the same version on every request", async () => {
    for (const [cohort, cookie] of cookies) {
      const seen = new Set();
      for (let i = 0; i < 5; i++) {
        const r = await w.get("/demo/sdk.js", { cookie, ja4: i % 2 ? CHROME_JA4 : FIREFOX_JA4, userKey: `other-${i}` });
        assert.equal(Number(r.headers.get("x-cohort")), cohort, "cookie wins over user key and fingerprint");
        seen.add(r.headers.get("x-canary-version"));
      }
      assert.equal(seen.size, 1, `cohort ${cohort} saw ${[...seen]}`);
    }
  });

  test("a tampered, forged or out-of-range cookie is ignored and replaced", async () => {
    const [, good] = [...cookies][0];
    const [number, id, issued, tag] = good.split("=")[1].split(".");
    const bad = [
      "cohort=3",
      "cohort=12",
      `cohort=12.${id}.${issued}.${tag}`,
      `cohort=${(Number(number) + 1) % 10}.${id}.${issued}.${tag}`,
      `cohort=${number}.${id}.${(parseInt(issued, 16) + 1).toString(16)}.${tag}`,
      `cohort=${number}.${id}.${tag}`,
      "cohort=4.0000000000000000",
      "cohort=-1.abc",
      `cohort=${"9".repeat(50)}`,
    ];
    for (const cookie of bad) {
      const r = await w.get("/demo/sdk.js", { cookie, userKey: "tamper-test" });
      const replacement = cookiePair(r.headers);
      assert.ok(replacement, `${cookie} must be replaced`);
      assert.notEqual(replacement, cookie);
      const cohort = Number(r.headers.get("x-cohort"));
      assert.ok(cohort >= 0 && cohort < 10);
      const again = await w.get("/demo/sdk.js", { cookie: replacement });
      assert.equal(Number(again.headers.get("x-cohort")), cohort, "the replacement is valid");
      assert.equal(again.headers.get("set-cookie"), null);
    }
  });

  test("a spoofed X-Cohort request header changes nothing and is not echoed", async () => {
    for (const [cohort, cookie] of cookies) {
      const spoof = String((cohort + 5) % 10);
      const plain = await w.get("/demo/sdk.js", { cookie });
      const spoofed = await w.get("/demo/sdk.js", { cookie, headers: { "x-cohort": spoof, "x-canary-channel": "canary", "x-canary-version": "9.9.9" } });
      assert.equal(spoofed.headers.get("x-cohort"), String(cohort));
      assert.equal(spoofed.headers.get("x-canary-version"), plain.headers.get("x-canary-version"));
      assert.equal(spoofed.text, plain.text);
    }
    const anon = await w.get("/demo/sdk.js", { userKey: "spoof-anon", headers: { "x-cohort": "99" } });
    assert.notEqual(anon.headers.get("x-cohort"), "99");
  });

  test("without a cookie, the same fingerprint and network or user key gives the same cohort", async () => {
    const identities = [
      { ja4: CHROME_JA4, ip: "198.51.100.7" },
      { ja4: CHROME_JA4, ip: "2001:db8:42:7::1" },
      { ja3: "cd08e31494f9531f560d64c695473da9", ip: "203.0.113.9" },
      { userKey: "merchant-7:user-1234" },
    ];
    for (const id of identities) {
      const cohorts = new Set();
      for (let i = 0; i < 6; i++) {
        const r = await w.get("/demo/sdk.js", id);
        cohorts.add(r.headers.get("x-cohort"));
        assert.ok(r.headers.get("set-cookie"), "first visits get the cookie");
      }
      assert.equal(cohorts.size, 1, JSON.stringify(id));
    }
    // IPv6 privacy addresses rotate inside one /64: same cohort.
    const a = await w.get("/demo/sdk.js", { ja4: CHROME_JA4, ip: "2001:db8:42:7:aaaa::1" });
    const b = await w.get("/demo/sdk.js", { ja4: CHROME_JA4, ip: "2001:db8:42:7:bbbb::2" });
    assert.equal(a.headers.get("x-cohort"), b.headers.get("x-cohort"));
  });

  test("clients with nothing to identify them get a random cohort, pinned by the cookie", async () => {
    const cohorts = new Set();
    for (let i = 0; i < 40; i++) {
      const r = await w.get("/demo/sdk.js");
      cohorts.add(r.headers.get("x-cohort"));
      const again = await w.get("/demo/sdk.js", { cookie: cookiePair(r.headers) });
      assert.equal(again.headers.get("x-cohort"), r.headers.get("x-cohort"));
    }
    assert.ok(cohorts.size >= 6, `random cohorts spread: ${[...cohorts]}`);
  });
});

describe("balance", () => {
  test("one Chromium JA4 across many networks: canary share within 2 points of the weight", async () => {
    await w.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 30 });
    // A realistic skew: most clients share one or two fingerprints.
    const ja4s = [CHROME_JA4, CHROME_JA4, CHROME_JA4, CHROME_JA4, CHROME_JA4, CHROME_JA4, FIREFOX_JA4, "t13d1517h2_8daaf6152771_b1ff8ab2d16f"];
    const n = 3000;
    let canary = 0;
    const counts = new Array(10).fill(0);
    for (let i = 0; i < n; i++) {
      const ip = `${11 + (i % 200)}.${(i * 7) % 256}.${(i * 13) % 256}.${(i * 31) % 254 + 1}`;
      const r = await w.get("/demo/sdk.js", { method: "HEAD", ja4: ja4s[i % ja4s.length], ip });
      counts[Number(r.headers.get("x-cohort"))]++;
      if (r.headers.get("x-canary-channel") === "canary") canary++;
    }
    const share = (canary / n) * 100;
    assert.ok(Math.abs(share - 30) <= 2, `canary share ${share.toFixed(2)}% at weight 30`);
    for (const c of counts) assert.ok(Math.abs(c - n / 10) <= n / 10 * 0.2, `cohort sizes ${counts}`);
  });
});

describe("COHORTS = 100", () => {
  test("1% steps: weight 1 puts exactly one cohort on the canary, weight 37 thirty-seven", async () => {
    const fine = await startWorker({ vars: { ...VARS, COHORTS: "100" } });
    try {
      for (const [weight, count] of [[1, 1], [5, 5], [37, 37], [100, 100]]) {
        await fine.setRollout({ stable: "1.0.0", canary: "1.1.0", weight });
        const status = JSON.parse((await fine.get("/__canary/status/demo")).text);
        assert.equal(status.cohorts, 100);
        assert.equal(status.canary_cohorts.length, count, `weight ${weight}`);
        assert.equal(status.effective_weight, weight);
      }
      await fine.setRollout({ stable: "1.0.0", canary: "1.1.0", weight: 25 });
      let canary = 0;
      const n = 2000;
      for (let i = 0; i < n; i++) {
        const r = await fine.get("/demo/sdk.js", { method: "HEAD", userKey: `hundred-${i}` });
        const cohort = Number(r.headers.get("x-cohort"));
        assert.ok(cohort >= 0 && cohort < 100);
        if (r.headers.get("x-canary-channel") === "canary") canary++;
      }
      assert.ok(Math.abs((canary / n) * 100 - 25) <= 3, `canary share ${(canary / n) * 100}% at 25`);
      // A cookie signed for 10 cohorts is not valid with 100: the client is re-bucketed.
      const ten = [...cookies.values()][0];
      const r = await fine.get("/demo/sdk.js", { cookie: ten, userKey: "rebucket" });
      assert.ok(r.headers.get("set-cookie"), "old-COHORTS cookie replaced");
    } finally {
      await fine.dispose();
    }
  });
});
