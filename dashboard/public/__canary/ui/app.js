// canary-edge operator console: plain JS over the admin API, polled every 2 s (one poll at a
// time: the next is due 2 s after the last one ended).
// The session is an HttpOnly cookie; the CSRF token for writes lives in this variable only.
"use strict";

const POLL_MS = 2000;
const MINUTES_EVERY_MS = 10000;
const TROUBLE = new Set(["rolled_back", "paused", "waiting_for_evidence"]);

let csrf = null;
let timer = null; // the next poll (a timeout, set when a refresh ends)
let running = null; // the refresh in progress, if any
let again = false; // a refresh was asked for while one ran: run one more after it
let chart = null;
let lastMinutesAt = 0;
let current = null; // the bundle's latest admin status
let minutesOf = null; // { bundle, minutes }: the chart's latest data
let fullDay = false; // the chart shows all 24 hours, not just the minutes with traffic

/** A timeline stage's state, in words; and the word for how it ended. */
const STAGE_WORDS = {
  passed: "passed", cut: "cut", paused: "paused", ended: "ended", promoted: "promoted",
  running: "baking", waiting_for_evidence: "waiting for evidence", serving: "serving", dark: "dark",
  awaiting_approval: "awaiting approval", frozen: "frozen",
  pending: "pending", not_reached: "not reached",
};
const ENDED_WORDS = { passed: "passed", cut: "cut", paused: "paused until", ended: "ended", promoted: "promoted" };

const $ = (id) => document.getElementById(id);
const show = (id, on) => ($(id).hidden = !on);
const pct = (x, digits = 1) => (Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : "–");
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

/** A call to the admin API or the session routes; throws an Error with the server's words. */
async function call(path, { method = "GET", body } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-canary-csrf"] = csrf;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin", cache: "no-store" });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* a text answer */
  }
  if (res.status === 401 && !path.endsWith("/login")) {
    loggedOut();
    throw new Error("the session ended: log in again");
  }
  if (!res.ok) throw new Error(json?.error ?? text.trim() ?? `HTTP ${res.status}`);
  return json;
}

// ------------------------------------------------------------------ session

async function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout(false));
  $("logout-all").addEventListener("click", () => {
    if (confirm("End every console session, on every device, including this one?")) logout(true);
  });
  $("home").addEventListener("click", (e) => {
    e.preventDefault();
    location.hash = "";
  });
  window.addEventListener("hashchange", () => {
    lastMinutesAt = 0;
    $("action-result").textContent = "";
    refresh();
  });
  bindActions();
  $("chart-range").addEventListener("click", () => {
    fullDay = !fullDay;
    drawChart();
  });
  try {
    const s = await call("/__canary/ui/session");
    loggedIn(s);
  } catch {
    loggedOut();
  }
}

async function login(e) {
  e.preventDefault();
  $("login-error").textContent = "";
  const input = $("token");
  try {
    const s = await call("/__canary/ui/login", { method: "POST", body: { token: input.value } });
    input.value = "";
    loggedIn(s);
  } catch (err) {
    $("login-error").textContent = err.message === "wrong token" ? "Wrong token." : err.message;
  }
}

/** Ends this session on the server (or, `everywhere`, every session issued so far). */
async function logout(everywhere) {
  try {
    await call("/__canary/ui/logout", { method: "POST", body: { everywhere } });
  } finally {
    loggedOut();
  }
}

function loggedIn(session) {
  csrf = session.csrf;
  $("who").textContent = session.scope === "read" ? `${session.by} (read only)` : session.by;
  show("login", false);
  show("logout", true);
  // Ending every session is a write: a read-only session may end only its own.
  show("logout-all", session.scope !== "read");
  refresh();
}

function loggedOut() {
  csrf = null;
  clearTimeout(timer);
  timer = null;
  current = null;
  $("who").textContent = "";
  show("login", true);
  show("logout", false);
  show("logout-all", false);
  show("overview", false);
  show("bundle", false);
  $("live").textContent = "";
}

// ------------------------------------------------------------------ views

function selected() {
  const m = /^#\/b\/([a-z0-9][a-z0-9_-]{0,63})$/.exec(location.hash);
  return m ? m[1] : null;
}

/**
 * Refreshes the view; never two at once. A call while one runs (the poll, a hash change, an
 * action's result) runs one more refresh right after it, and resolves when that one is done.
 * The next poll is set when a refresh ends, so polls never overlap however slow the API is.
 */
function refresh() {
  if (running) {
    again = true;
    return running;
  }
  clearTimeout(timer);
  timer = null;
  running = (async () => {
    try {
      do {
        again = false;
        await update();
      } while (again);
    } finally {
      running = null;
      if (csrf) timer = setTimeout(refresh, POLL_MS);
    }
  })();
  return running;
}

async function update() {
  if (!csrf) return;
  const bundle = selected();
  try {
    if (bundle) await renderBundle(bundle);
    else await renderOverview();
    $("live").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $("live").textContent = `not updated: ${err.message}`;
  }
}

/** A bundle stands out when its rollout is held or rolled back, its canary is being cut, its
 * last event was a rollback, or its weight serves fewer cohorts than set. */
function trouble(b) {
  const m = b.monitor ?? {};
  return TROUBLE.has(m.progress?.state) || m.verdict?.state === "cut" || m.events?.[0]?.kind === "rollback" ||
    b.effective_weight !== b.weight;
}

async function renderOverview() {
  const { bundles } = await call("/__canary/api");
  const rows = bundles.map((b) => {
    const m = b.monitor ?? {};
    const tr = el("tr", { class: trouble(b) ? "trouble" : "" },
      el("td", {}, el("a", { href: `#/b/${b.bundle}`, text: b.bundle })),
      el("td", { text: b.config?.stable ?? "–" }),
      el("td", { text: b.config?.canary ?? "–" }),
      el("td", { text: `${b.weight ?? 0}%` }),
      el("td", { text: `${(b.effective_weight ?? 0).toFixed(0)}%` }),
      el("td", { text: m.progress ? `${m.progress.state} (step ${m.progress.step + 1}/${m.progress.steps.length})` : "–" }),
      el("td", { text: m.verdict?.state ?? "–" }),
      el("td", { text: m.events?.[0] ? `${m.events[0].kind} by ${m.events[0].by}, ${when(m.events[0].at)}` : "–" }));
    return tr;
  });
  $("bundles").replaceChildren(...rows);
  show("bundle", false);
  show("overview", true);
}

async function renderBundle(bundle) {
  const s = await call(`/__canary/api/${bundle}`);
  current = s;
  const m = s.monitor ?? {};
  const cfg = s.config ?? {};
  $("bundle-title").textContent = bundle;
  $("bundle-summary").textContent = `stable ${cfg.stable ?? "–"} · canary ${cfg.canary ?? "none"} · weight ${s.weight}% · effective ${s.effective_weight.toFixed(0)}%`;
  $("bundle-summary").className = trouble(s) ? "trouble" : "";

  const canary = new Set(s.canary_cohorts ?? []);
  const cells = [];
  for (let c = 0; c < s.cohorts; c++) {
    cells.push(el("span", { class: canary.has(c) ? "cell canary" : "cell", title: `cohort ${c}: ${canary.has(c) ? "canary" : "stable"}` }));
  }
  $("cohort-map").replaceChildren(...cells);
  $("cohort-map").setAttribute("aria-label", `${canary.size} of ${s.cohorts} cohorts on the canary`);
  $("cohort-map").classList.toggle("many", s.cohorts > 20);
  $("split").textContent = `${canary.size} of ${s.cohorts} cohorts on the canary (${s.effective_weight.toFixed(0)}% effective, ${s.weight}% set)`;

  const p = m.progress;
  $("steps").replaceChildren(...(p?.steps ?? []).map((w, i) => el("li", { class: i < p.step ? "done" : i === p.step ? "current" : "", text: `${w}%` })));
  $("rollout-state").textContent = p
    ? `${p.state}${p.state === "running" ? ` · step ${p.step + 1} of ${p.steps.length} · next step at ${when(p.next_step_at)}` : ""}${p.reason ? ` · ${p.reason}` : ""}`
    : "no progressive rollout";
  $("rollout-state").className = p && TROUBLE.has(p.state) ? "trouble" : "";
  // When the step will decide, at its traffic so far (a warning ahead of a pause).
  const outlook = p?.outlook;
  show("outlook", Boolean(outlook));
  $("outlook").textContent = outlook ? `Step ${p.step + 1}: ${outlook.message}` : "";
  $("outlook").className = outlook?.below_needed_traffic ? "trouble" : "";
  // A freeze (no automatic step until it ends), and a step that waits for a person.
  const freeze = m.freeze;
  show("freeze-badge", Boolean(freeze?.active));
  $("freeze-badge").textContent = freeze?.active ? `Frozen until ${when(freeze.until)} (${freeze.window}): no automatic step; cuts still happen` : "";
  const gate = m.gate;
  const awaiting = Boolean(gate?.awaiting_approval);
  show("gate", awaiting);
  $("gate-note").textContent = awaiting ? `Step ${gate.step} (${gate.weight}%) waits for approval.` : "";
  $("approve").textContent = awaiting ? `Approve step ${gate.step}` : "Approve";
  $("approve").dataset.step = awaiting ? String(gate.step) : "";

  // Auto canary refuses to act without COHORT_SECRET: the operator must see why.
  $("monitor-error").hidden = !m.error;
  $("monitor-error").textContent = m.error ?? "";
  renderVerdict(m);
  renderSignatures(m.error_signatures);
  renderTimeline(m.timeline);

  const events = m.events ?? [];
  $("history").replaceChildren(...events.map((e) => el("li", {},
    el("time", { datetime: e.at, text: when(e.at) }), " ",
    el("strong", { text: e.kind }), ` by ${e.by}`,
    e.weight !== null && e.weight !== undefined ? ` · weight ${e.weight}%` : "",
    e.canary ? ` · canary ${e.canary}` : "",
    e.reason ? ` · ${e.reason}` : "")));

  renderPolicy(m, cfg);
  $("weight").placeholder = `${s.weight}`;
  show("overview", false);
  show("bundle", true);
  if (Date.now() - lastMinutesAt > MINUTES_EVERY_MS) {
    lastMinutesAt = Date.now();
    await renderChart(bundle);
  }
}

/** The running step's policy, and the one waiting for the next step when a change waits. */
function renderPolicy(m, cfg) {
  const policy = m.policy ?? {};
  const next = m.next_policy;
  const rows = [];
  for (const [k, v] of Object.entries(policy)) {
    const waiting = next && JSON.stringify(next[k]) !== JSON.stringify(v);
    rows.push(el("dt", { text: `health.${k}` }), el("dd", { text: `${JSON.stringify(v)}${waiting ? ` → ${JSON.stringify(next[k])} from the next step` : ""}` }));
  }
  for (const [k, v] of Object.entries(cfg.progression ?? {})) {
    rows.push(el("dt", { text: `progression.${k}` }), el("dd", { text: JSON.stringify(v) }));
  }
  $("policy").replaceChildren(...rows);
  $("policy-note").textContent = next ? "A change waits for the next step: this step keeps the policy it started with." : "";
}

/** `--set`'s rules (scripts/canary policy): JSON when it reads as JSON, a list for a list field. */
const LIST_FIELDS = new Set(["health.origins", "progression.steps", "progression.approve"]);
function policyValue(field, text) {
  const scalar = (t) => { try { return JSON.parse(t); } catch { return t; } };
  const t = text.trim();
  if (LIST_FIELDS.has(field) && !t.startsWith("[") && t !== "null") return t.split(",").map((x) => x.trim()).filter(Boolean).map(scalar);
  return scalar(t);
}

/**
 * The verdict panel. After a cut the canary is dark and nothing is judged: the panel shows
 * the verdict kept from the cut (`monitor.cut`), marked as such, with when, who and why.
 */
function renderVerdict(m) {
  const kept = m.cut ?? null;
  const v = kept ? kept.verdict : m.verdict;
  $("verdict-card").classList.toggle("kept", Boolean(kept));
  $("verdict-title").textContent = kept ? "Verdict at the cut" : "Verdict";
  $("verdict-cut").hidden = !kept;
  if (kept) {
    $("verdict-cut").replaceChildren("Evidence of the cut, kept: ",
      el("strong", { text: `${kept.canary} was cut at ${kept.weight}%` }), " on ",
      el("time", { datetime: kept.at, text: when(kept.at) }), ` by ${kept.by}`,
      // An operator's words; an automatic cut's are the verdict's, shown below.
      kept.reason === kept.verdict.reason ? ". " : `: ${kept.reason}. `,
      "Nothing is judged while the canary is dark; the live verdict returns when it serves again.");
  }
  const t = kept ? null : m.verdict?.tracked;
  $("boot-signals").textContent = m.boot_signals
    ? `${m.boot_signals.note}${t ? ` · this step: ${t.boots.canary} canary and ${t.boots.stable} stable boots, no_boot ${t.no_boot.canary} canary / ${t.no_boot.stable} stable, ${t.pending} waiting, ${t.refused.network_cap} loads over the per-network cap, ${t.refused.waiting_full ?? 0} early signals not kept (per-network cap)` : ""}`
    : "";
  // Whose evidence counts (`health.origins`); without it, any page's: a warning.
  const evidence = m.evidence;
  $("evidence-origins").hidden = !evidence;
  $("evidence-origins").className = evidence?.warning ? "trouble" : "muted";
  $("evidence-origins").textContent = !evidence ? ""
    : evidence.warning ? `Warning: ${evidence.warning}.`
    : `Evidence counts only from pages on ${evidence.origins.join(", ")} (health.origins).`;
  $("verdict-state").textContent = v ? `${v.state}: ${v.reason}` : "no verdict (no health monitor)";
  $("verdict-state").className = v?.state === "cut" ? "trouble" : "";
  $("verdict-rows").replaceChildren(...["canary", "stable"].filter((ch) => v?.[ch]).map((ch) =>
    el("tr", { "data-channel": ch }, el("td", { text: ch }), el("td", { text: `${v[ch].clients}` }), el("td", { text: `${v[ch].errors}` }),
      el("td", { text: `${pct(v[ch].rate, 2)} (${pct(v[ch].low, 2)}–${pct(v[ch].high, 2)})` }))));
  $("verdict-stats").textContent = v
    ? `cut when both log e-values reach ${v.cut.threshold.toFixed(2)}: relative ${v.cut.relative.toFixed(2)}, absolute ${v.cut.absolute.toFixed(2)}; pass when the combined ${v.pass.combined.toFixed(2)} reaches ${v.pass.threshold.toFixed(2)} (relative ${v.pass.relative.toFixed(2)}, absolute ${v.pass.absolute.toFixed(2)}); ${v.step_clients} of ${v.min_clients} canary clients ${kept ? "in the step it was cut in" : "this step"}, ${v.hostile_clients_discounted} counted as possibly hostile on each side`
    : "";
  renderBootTime(v);
}

/** Milliseconds for the boot-time rows (an unbounded interval end is "–"). */
const ms = (x) => (Number.isFinite(x) ? `${Math.round(x)} ms` : "–");
const signedPct = (x) => (Number.isFinite(x) ? `${x >= 0 ? "+" : ""}${(x * 100).toFixed(0)}%` : "–");

/** The boot-time guard: each channel's median boot time with its interval, the slowdown. */
function renderBootTime(v) {
  const b = v?.boot_time ?? null;
  $("boot-table").hidden = !b;
  $("boot-rows").replaceChildren(...(b ? ["canary", "stable"] : []).map((ch) =>
    el("tr", { "data-channel": ch }, el("td", { text: ch }), el("td", { text: `${b[ch].clients}` }),
      el("td", { text: `${ms(b[ch].median_ms)} (${ms(b[ch].low_ms)}–${ms(b[ch].high_ms)})` }))));
  $("boot-stats").textContent = b
    ? `boot time: canary ${signedPct(b.slowdown)} vs stable on the median (interval ${signedPct(b.slowdown_low)} to ${signedPct(b.slowdown_high)}), tolerated +${(b.max_slowdown * 100).toFixed(0)}%; cut when the log e-value ${b.worse.toFixed(2)} reaches ${v.cut.threshold.toFixed(2)}, pass when ${b.better.toFixed(2)} reaches ${v.pass.threshold.toFixed(2)}`
    : "";
}

/**
 * The error signatures new in the canary (`monitor.error_signatures`): the running step's,
 * or, while it has none, the previous step's (after a cut, the step that was cut). Sample
 * messages are attacker text: set as text only (`el`'s `text`), never as HTML.
 */
function renderSignatures(sig) {
  const step = sig?.current?.signatures?.length ? sig.current : sig?.previous ?? sig?.current;
  const list = step?.signatures ?? [];
  const fresh = list.filter((s) => s.new);
  const which = step && step === sig?.previous ? "the previous step" : "this step";
  $("signatures-note").textContent = !step ? "no error signatures (no health monitor)"
    : !list.length ? "no error reports with a message in this step"
    : fresh.length ? `${step.new_in_canary} error signature${step.new_in_canary === 1 ? "" : "s"} seen on canary clients and on no stable client (in ${which} or the one before it); the verdict counts every failure, these explain it`
    : `no error new in the canary in ${which}: every signature reported on the canary was seen on stable too`;
  $("signatures-note").className = fresh.length ? "trouble" : "muted";
  $("signatures-rows").replaceChildren(...fresh.map((s) => el("tr", { "data-signature": s.id },
    el("td", {}, el("code", { class: "sample", text: s.sample || "(no message)" }),
      ...(s.frame ? [el("br"), el("small", { class: "muted", text: s.frame })] : [])),
    el("td", { text: s.kind }),
    el("td", { text: `${s.clients.canary}` }),
    el("td", { text: `${s.clients.stable}` }))));
  const others = list.length - fresh.length;
  $("signatures-other").textContent = step
    ? `${others} other signature${others === 1 ? "" : "s"} listed (seen on stable too); past the top 50: ${step.other.canary} canary and ${step.other.stable} stable clients; refused: ${step.refused.network_cap} over the per-network cap (3 signatures a network a step)`
    : "";
}

/** The release of the current (or last) canary: each stage, when it started and how it ended. */
function renderTimeline(t) {
  if (!t) {
    $("timeline").replaceChildren();
    $("timeline-note").textContent = "no canary: nothing released yet";
    return;
  }
  const steps = t.rollout?.steps ?? [];
  const time = (iso) => el("time", { datetime: iso, text: when(iso) });
  $("timeline").replaceChildren(...t.stages.map((s) => {
    const weight = s.weight === null || s.weight === undefined ? "?" : `${s.weight}%`;
    const what = s.kind === "step" ? `step ${s.step}${steps.length ? ` of ${steps.length}` : ""} · ${weight}`
      : s.kind === "published" ? "published, dark" : `${weight} set by hand`;
    const facts = [el("span", { class: "state", text: STAGE_WORDS[s.state] ?? s.state })];
    if (s.started_at) facts.push(" started ", time(s.started_at), s.started_by ? ` by ${s.started_by}` : "");
    if (s.ended_at) facts.push(s.started_at ? " · " : " ", `${ENDED_WORDS[s.state] ?? "ended"} `, time(s.ended_at), s.ended_by ? ` by ${s.ended_by}` : "");
    return el("li", { class: s.state, "data-state": s.state },
      el("span", { class: "what", text: what }),
      el("span", {}, ...facts),
      ...(s.reason ? [el("span", { class: "detail muted", text: s.reason })] : []));
  }));
  $("timeline-note").textContent = t.rollout
    ? `release of ${t.canary}: rollout ${t.rollout.steps.map((w) => `${w}%`).join(" → ")}, ${t.rollout.bake_secs} s bake each, ${t.rollout.state.replaceAll("_", " ")}`
    : `release of ${t.canary}: no progressive rollout (weights set by hand)`;
}

async function renderChart(bundle) {
  const { minutes } = await call(`/__canary/api/${bundle}/minutes`);
  minutesOf = { bundle, minutes };
  drawChart();
}

/** The x range (Unix seconds) with traffic, a little margin around it; none: the last hour. */
function trafficRange(x, now) {
  if (!x.length) return [now - 3600, now + 60];
  const first = x[0];
  const last = x[x.length - 1] + 60; // a minute's row covers the whole minute
  const margin = Math.max(120, (last - first) * 0.1);
  return [first - margin, Math.min(last + margin, Math.max(last, now) + 60)];
}

/**
 * Draws the per-minute chart: by default zoomed to the minutes with traffic (one minute of
 * traffic in 24 hours would otherwise be an empty plot); the button shows all 24 hours.
 */
function drawChart() {
  const minutes = minutesOf?.bundle === selected() ? minutesOf.minutes : undefined;
  if (minutes === undefined) return;
  if (!minutes) {
    $("chart-note").textContent = "no health monitor: nothing is counted";
    return;
  }
  const x = minutes.map((m) => m.minute * 60);
  const rate = (ch) => minutes.map((m) => (m.counts[ch].clients ? (100 * m.counts[ch].errors) / m.counts[ch].clients : null));
  const data = [x, rate("stable"), rate("canary")];
  const clients = minutes.reduce((n, m) => n + m.counts.canary.clients, 0);
  const now = Date.now() / 1000;
  const [from, to] = fullDay ? [now - 86400, now + 60] : trafficRange(x, now);
  const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const shown = fullDay ? "showing all 24 hours"
    : x.length ? `showing ${clock(from)}–${clock(to)}, the minutes with traffic` : "no traffic in the last 24 hours";
  $("chart-note").textContent = `${minutes.length} minute${minutes.length === 1 ? "" : "s"} with traffic; ${clients} canary clients in all (distinct per minute); ${shown}. Error rate = clients with an error / clients seen.`;
  $("chart-range").textContent = fullDay ? "Zoom to the traffic" : "Show all 24 hours";
  $("chart-range").setAttribute("aria-pressed", String(fullDay));
  $("chart").dataset.from = String(Math.round(from));
  $("chart").dataset.to = String(Math.round(to));
  $("chart").dataset.range = fullDay ? "day" : "traffic";
  if (typeof uPlot === "undefined") return;
  const width = Math.max(280, $("chart").clientWidth);
  // Rebuilt every refresh (every 10 s): the time range moves with now.
  if (chart) chart.destroy();
  chart = new uPlot({
    width, height: 220,
    scales: { x: { time: true, range: () => [from, to] }, y: { range: [0, 100] } },
    axes: [{}, { label: "clients with errors (%)", values: (u, ticks) => ticks.map((t) => `${t}%`) }],
    series: [{}, series("stable", "#2b6cb0"), series("canary", "#c05621")],
  }, data, $("chart"));

  // The legend shows the minute's numbers behind the rate: clients with errors / clients.
  function series(ch, stroke) {
    const value = (u, v, s, i) => {
      const c = i === null || i === undefined ? null : minutes[i]?.counts[ch];
      return c ? `${v === null ? "–" : v.toFixed(1)}% (${c.errors} of ${c.clients} clients)` : "–";
    };
    return { label: ch, stroke, width: 2, spanGaps: false, value };
  }
}

// ------------------------------------------------------------------ actions

function bindActions() {
  const act = async (label, action, body) => {
    const bundle = selected();
    if (!bundle) return;
    const canary = current?.config?.canary;
    $("action-result").className = "";
    $("action-result").textContent = `${label}…`;
    try {
      await call(`/__canary/api/${bundle}/${action}`, { method: "POST", body: { ...(canary ? { canary } : {}), ...body } });
      $("action-result").textContent = `${label}: done.`;
    } catch (err) {
      $("action-result").className = "error";
      $("action-result").textContent = `${label} failed: ${err.message}`;
    }
    await refresh();
  };
  $("weight-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const weight = Number($("weight").value);
    act(`Set weight ${weight}%`, "weight", { weight });
  });
  $("rollout-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const steps = $("rollout-steps").value.split(",").map((x) => Number(x.trim())).filter((x) => Number.isFinite(x));
    act("Start rollout", "rollout", { steps, bake_secs: Number($("rollout-bake").value) });
  });
  $("pause").addEventListener("click", () => act("Pause", "pause", {}));
  $("resume").addEventListener("click", () => act("Resume", "resume", {}));
  $("approve").addEventListener("click", () => {
    const step = $("approve").dataset.step;
    // Like pause and resume: one click, naming the canary (refused if another is live now).
    if (step) act(`Approve step ${step}`, "approve", {});
  });
  $("promote").addEventListener("click", () => {
    if (confirm(`Promote ${current?.config?.canary ?? "the canary"} to stable for everyone?`)) act("Promote", "promote", {});
  });
  $("rollback-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const reason = $("rollback-reason").value.trim();
    if (reason && confirm(`Roll back ${selected()} to stable (weight 0)? Reason: ${reason}`)) {
      act("Roll back", "rollback", { reason });
      $("rollback-reason").value = "";
    }
  });
  $("policy-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const field = $("policy-field").value;
    const [section, key] = field.split(".");
    const value = policyValue(field, $("policy-value").value);
    act(`Set ${field} to ${JSON.stringify(value)}`, "policy", { [section]: { [key]: value } });
  });
  $("probe").addEventListener("click", probe);
}

/** Loads the floating script as the canary through a signed override, and says what came back. */
async function probe() {
  const bundle = selected();
  const canary = current?.config?.canary;
  $("action-result").className = "";
  try {
    if (!canary) throw new Error("there is no canary to probe");
    // The canary's entry script: sdk.js if it has one, else its first script.
    const { files } = await call(`/__canary/api/${bundle}/files/${canary}`);
    const scripts = files.map((f) => f.path).filter((p) => p.endsWith(".js"));
    const entry = scripts.includes("sdk.js") ? "sdk.js" : scripts[0];
    if (!entry) throw new Error(`version ${canary} has no script`);
    const o = await call(`/__canary/api/${bundle}/override`, { method: "POST", body: { channel: "canary", ttl_secs: 300 } });
    const res = await fetch(`/${bundle}/${entry}`, { headers: { [o.header]: o.token }, cache: "no-store", credentials: "omit" });
    await res.arrayBuffer();
    const version = res.headers.get("x-canary-version");
    $("action-result").textContent = `Probe of ${entry}: HTTP ${res.status}, version ${version ?? "?"}, channel ${res.headers.get("x-canary-channel") ?? "?"}${res.headers.get("x-canary-fallback") ? " (fell back to stable)" : ""}.`;
  } catch (err) {
    $("action-result").className = "error";
    $("action-result").textContent = `Probe failed: ${err.message}`;
  }
}

start();
