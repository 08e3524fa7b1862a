// The console's overview (`GET /__canary/api`), end to end against the built worker: every
// bundle's row comes from its control plane's committed summary (`/summary` on the
// HealthMonitor: no KV read, no wait for the object's lock), asked of all objects at once.
// 20 bundles answer correctly, a row equals the bundle's own admin view, and KV failing or
// hanging does not break or slow the overview (only a bundle whose object has adopted no
// config yet is shown as the edge reads it from KV). Then the console's script (app.js) in a
// fake DOM with a fake clock: its polls never overlap, however slow the API is.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import vm from "node:vm";
import { ROOT, startWorker } from "./support/harness.mjs";

const TOKEN = "overview-admin-token-0123456789abcdef";
const AUTH = { authorization: `Bearer ${TOKEN}` };

/** 20 bundles: every other one with a canary, at weights from 0 to 95 (some not a multiple
 * of 10%, so rounded with 10 cohorts). */
const BUNDLES = Array.from({ length: 20 }, (_, i) => ({
  bundle: `shop-${String(i).padStart(2, "0")}`,
  config: i % 2 === 0
    ? { stable: "1.0.0", canary: `1.1.${i}`, weight: i * 5 + (i % 4 === 2 ? 5 : 0) }
    : { stable: `2.${i}.0`, weight: 0 },
}));

async function api(w, path) {
  const r = await w.get(path, { headers: AUTH });
  assert.equal(r.status, 200, `${path}: ${r.text}`);
  return JSON.parse(r.text);
}

describe("the overview", () => {
  let w;
  before(async () => {
    w = await startWorker({ vars: { ADMIN_TOKEN: TOKEN } });
    for (const { bundle, config } of BUNDLES) await w.setRollout(config, bundle);
    // A config the edge cannot read: listed, shown without one.
    await w.setRollout("{\"stable\": ", "zz-invalid");
  });
  after(() => w?.dispose());

  const row = (overview, bundle) => overview.bundles.find((b) => b.bundle === bundle);

  function assertSplit(b, config) {
    const live = Boolean(config.canary) && config.weight > 0;
    assert.equal(b.config.stable, config.stable, b.bundle);
    assert.equal(b.config.canary ?? null, config.canary ?? null, b.bundle);
    assert.equal(b.config.weight, config.weight, b.bundle);
    assert.equal(b.weight, config.weight, b.bundle);
    assert.equal(b.cohorts, 10);
    const onCanary = live ? Math.floor((config.weight * 10) / 100) : 0;
    assert.equal(b.effective_weight, onCanary * 10, b.bundle);
    assert.equal(b.canary_cohorts.length, onCanary, b.bundle);
    assert.equal(Boolean(b.note), (live && onCanary === 0) || config.weight % 10 !== 0, `${b.bundle}: ${b.note}`);
  }

  test("20 bundles, each with its config and split, before any object has state", async () => {
    const o = await api(w, "/__canary/api");
    assert.equal(o.truncated, false);
    const names = o.bundles.map((b) => b.bundle);
    for (const { bundle } of BUNDLES) assert.ok(names.includes(bundle), `${bundle} listed`);
    assert.ok(names.includes("demo") && names.includes("merchant") && names.includes("zz-invalid"));
    for (const { bundle, config } of BUNDLES) {
      const b = row(o, bundle);
      assertSplit(b, config);
      // Nothing has run this bundle's control plane yet: no monitor view, the config as
      // the edge reads it.
      assert.equal(b.monitor, null, bundle);
    }
    assert.equal(row(o, "zz-invalid").config, null);
  });

  let before20;
  test("once each object has state, a row is the bundle's own admin view", async () => {
    const o = await api(w, "/__canary/api");
    const own = {};
    // Each admin GET adopts the bundle's KV config in its object (the status path).
    for (const { bundle } of o.bundles) own[bundle] = await api(w, `/__canary/api/${bundle}`);
    const after = await api(w, "/__canary/api");
    for (const { bundle, config } of BUNDLES) {
      const b = row(after, bundle);
      assertSplit(b, config);
      assert.equal(typeof b.monitor, "object");
      assert.ok(b.monitor?.verdict, `${bundle}: a monitor view`);
      assert.deepEqual(b, own[bundle], `${bundle}: the overview's row and GET /__canary/api/${bundle}`);
    }
    const invalid = row(after, "zz-invalid");
    assert.equal(invalid.config, null);
    assert.ok(invalid.monitor, "the object runs, without a config");
    before20 = after;
  });

  test("KV failing does not break the overview: its rows come from the objects' committed state", async () => {
    try {
      await w.setFaults({ kv: "throw" });
      const o = await api(w, "/__canary/api");
      assert.deepEqual(o, before20);
    } finally {
      await w.clearFaults();
    }
  });

  test("KV hanging does not slow it: the summaries do not wait for KV (nor for each other)", async () => {
    try {
      // A KV read would take 20 s (the control plane's own times out after 5 s, and the
      // old overview made one per bundle, one after the other).
      await w.setFaults({ kv: "timeout", kvDelayMs: 20_000 });
      const started = Date.now();
      const o = await api(w, "/__canary/api");
      const took = Date.now() - started;
      assert.deepEqual(o, before20);
      assert.ok(took < 4000, `the overview took ${took} ms`);
    } finally {
      await w.clearFaults();
    }
  });

  test("a bundle's admin GET still adopts an operator's KV write (the status path)", async () => {
    const { bundle } = BUNDLES[3];
    const config = { stable: "2.3.0", canary: "2.4.0", weight: 30 };
    await w.setRollout(config, bundle);
    assertSplit(await api(w, `/__canary/api/${bundle}`), config);
    // The overview now shows the adopted config.
    assertSplit(row(await api(w, "/__canary/api"), bundle), config);
  });
});

// ---------------------------------------------------------------- app.js, polls

/** A DOM element with what app.js uses. */
class FakeElement {
  constructor(id) {
    this.id = id;
    this.hidden = false;
    this.textContent = "";
    this.className = "";
    this.value = "";
    this.placeholder = "";
    this.children = [];
    this.attributes = {};
    this.listeners = {};
    this.classList = { toggle() {} };
    this.clientWidth = 800;
  }
  addEventListener(type, fn) {
    (this.listeners[type] ??= []).push(fn);
  }
  setAttribute(k, v) {
    this.attributes[k] = v;
  }
  append(...c) {
    this.children.push(...c);
  }
  replaceChildren(...c) {
    this.children = c;
  }
}

/**
 * Loads app.js (or `file`) in a fresh context with a fake DOM, a fake fetch that answers
 * the overview only when the test says so, and a fake clock.
 */
function loadConsole(file = join(ROOT, "dashboard/public/__canary/ui/app.js")) {
  const elements = new Map();
  const document = {
    getElementById(id) {
      if (!elements.has(id)) elements.set(id, new FakeElement(id));
      return elements.get(id);
    },
    createElement: (tag) => new FakeElement(tag),
  };
  const windowListeners = {};
  const window = { addEventListener: (type, fn) => (windowListeners[type] ??= []).push(fn) };

  // The clock: timers fire only in tick().
  let now = 0;
  let nextId = 1;
  const timers = new Map();
  const setTimeout = (fn, ms = 0) => {
    const id = nextId++;
    timers.set(id, { fn, at: now + ms });
    return id;
  };
  const setInterval = (fn, ms) => {
    const id = nextId++;
    timers.set(id, { fn, at: now + ms, every: ms });
    return id;
  };
  const clearTimeout = (id) => timers.delete(id);

  // The API: the session answers at once; each overview waits for answer().
  const overview = { calls: 0, inFlight: 0, maxInFlight: 0, pending: [] };
  const reply = (status, body) => ({
    status,
    ok: status >= 200 && status < 300,
    text: async () => JSON.stringify(body),
    headers: { get: () => null },
  });
  const fetch = (path) => {
    if (path === "/__canary/ui/session") return Promise.resolve(reply(200, { csrf: "c", by: "admin", scope: "admin" }));
    if (path === "/__canary/api") {
      overview.calls++;
      overview.inFlight++;
      overview.maxInFlight = Math.max(overview.maxInFlight, overview.inFlight);
      return new Promise((resolve) => {
        overview.pending.push((status = 200) => {
          overview.inFlight--;
          resolve(reply(status, status === 200 ? { bundles: [], truncated: false } : { error: "no session" }));
        });
      });
    }
    return Promise.reject(new Error(`unexpected fetch ${path}`));
  };

  const context = vm.createContext({
    document, window, location: { hash: "" }, fetch, setTimeout, clearTimeout, setInterval,
    clearInterval: clearTimeout, confirm: () => true, console,
  });
  vm.runInContext(readFileSync(file, "utf8"), context, { filename: file });

  const settle = async () => {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  };
  return {
    overview,
    settle,
    /** Answers the oldest overview call in flight. */
    async answer(status = 200) {
      overview.pending.shift()(status);
      await settle();
    },
    /** Lets `ms` of fake time pass, firing the timers due. */
    async tick(ms) {
      const end = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        const [id, t] = due;
        now = t.at;
        if (t.every) t.at += t.every;
        else timers.delete(id);
        t.fn();
        await settle();
      }
      now = end;
    },
    hashchange: async () => {
      for (const fn of windowListeners.hashchange ?? []) fn();
      await settle();
    },
    live: () => document.getElementById("live").textContent,
  };
}

test("app.js: polls never overlap, every 2 s after the last one ends", async () => {
  const c = loadConsole(process.env.OVERVIEW_APP_JS || undefined);
  await c.settle();
  assert.equal(c.overview.calls, 1, "logged in: the first poll");

  // The API takes 10 s to answer: no other poll starts meanwhile.
  await c.tick(10_000);
  assert.equal(c.overview.calls, 1, "no poll while one is in flight");
  // A refresh asked for meanwhile (a hash change, an action's result) waits, and runs once.
  await c.hashchange();
  await c.hashchange();
  assert.equal(c.overview.calls, 1);

  await c.answer();
  assert.equal(c.overview.calls, 2, "the refresh asked for runs right after");
  assert.match(c.live(), /^updated /);
  await c.tick(10_000);
  assert.equal(c.overview.calls, 2, "still one at a time");
  await c.answer();

  // Then every 2 s after the last poll ended.
  assert.equal(c.overview.calls, 2);
  await c.tick(1999);
  assert.equal(c.overview.calls, 2);
  await c.tick(1);
  assert.equal(c.overview.calls, 3);
  await c.answer();
  await c.tick(2000);
  assert.equal(c.overview.calls, 4);
  assert.equal(c.overview.maxInFlight, 1, "never two polls in flight");

  // The session ends (401): polling stops.
  await c.answer(401);
  await c.tick(60_000);
  assert.equal(c.overview.calls, 4);
  assert.equal(c.overview.inFlight, 0);
});
