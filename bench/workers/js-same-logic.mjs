// Reference for the throughput benchmark: what a team would write by hand instead of
// canary-edge, with the same routing and the same I/O per request.
//
// - paths: /<bundle>/<path> (floating, canary-routed) and /<bundle>@<version>/<path>,
//   decoded and checked segment by segment (no '..', no empty segments);
// - cohort: the signed `cohort` cookie (HMAC-SHA-256 via WebCrypto, same format as
//   canary-edge: `<n>.<16 hex>`), else the X-User-Key header, else the JA4/JA3 fingerprint
//   with the client's network (IPv4, or the IPv6 /64), each a salted SHA-256 via WebCrypto,
//   else random; a Set-Cookie when the cohort did not come from a valid cookie;
// - rollout: KV `rollout/<bundle>` JSON, kept in memory for CONFIG_TTL_MS (last good copy
//   on failure); canary cohorts = floor(weight * COHORTS / 100) from a rotation derived
//   from the canary version;
// - objects: Cache API keyed by the pinned URL, else R2 (then cached); canary falls back to
//   stable; ETag / If-None-Match; the same response headers as canary-edge.
// No health monitor, admin API or overrides: those are extra in canary-edge.

const enc = new TextEncoder();
const BUNDLE_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const VERSION_RE = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/;

let iso = null; // per-isolate state

async function isolate(env) {
  if (iso) return iso;
  const salt = env.COHORT_SALT ?? "canary-edge";
  const secret = env.COHORT_SECRET ?? salt;
  const cohorts = Number(env.COHORTS ?? 10);
  const saltBytes = enc.encode(salt);
  const prefix = new Uint8Array(8 + saltBytes.length);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(saltBytes.length));
  prefix.set(saltBytes, 8);
  iso = {
    cohorts,
    prefix,
    hmac: await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]),
    ttl: Number(env.CONFIG_TTL_MS ?? 5000),
    floatingCc: `private, max-age=${Number(env.FLOATING_MAX_AGE ?? 60)}`,
    pinnedCc: "public, max-age=31536000, immutable",
    cookieAttrs: "; Path=/; Max-Age=31536000; Secure; HttpOnly; SameSite=None; Partitioned",
    rollouts: new Map(), // bundle -> { at, prepared }
  };
  return iso;
}

/** Salted SHA-256 of a domain tag and length-prefixed parts, scaled onto 0..cohorts. */
async function bucket(st, domain, parts) {
  const encoded = parts.map((p) => enc.encode(p));
  const d = enc.encode(domain);
  let len = st.prefix.length + 1 + d.length;
  for (const p of encoded) len += 4 + p.length;
  const buf = new Uint8Array(len);
  const view = new DataView(buf.buffer);
  buf.set(st.prefix, 0);
  let o = st.prefix.length;
  buf[o++] = d.length;
  buf.set(d, o);
  o += d.length;
  for (const p of encoded) {
    view.setUint32(o, p.length);
    buf.set(p, o + 4);
    o += 4 + p.length;
  }
  const digest = new DataView(await crypto.subtle.digest("SHA-256", buf));
  return Math.floor((digest.getUint32(0) * st.cohorts) / 2 ** 32);
}

async function tag(st, cohort) {
  const msg = new Uint8Array(4);
  new DataView(msg.buffer).setUint16(0, st.cohorts);
  new DataView(msg.buffer).setUint16(2, cohort);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", st.hmac, msg));
  let hex = "";
  for (let i = 0; i < 8; i++) hex += mac[i].toString(16).padStart(2, "0");
  return hex;
}

async function cookieCohort(st, header) {
  if (!header || header.length > 8192) return null;
  for (const pair of header.split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0 || pair.slice(0, eq).trim() !== "cohort") continue;
    const m = /^(0|[1-9][0-9]{0,4})\.([0-9a-f]{16})$/.exec(pair.slice(eq + 1).trim());
    if (!m) continue;
    const cohort = Number(m[1]);
    if (cohort < st.cohorts && (await tag(st, cohort)) === m[2]) return cohort;
  }
  return null;
}

function identity(s) {
  if (s == null) return null;
  s = s.trim();
  return s && s.length <= 256 && !/[\x00-\x1f\x7f]/.test(s) ? s : null;
}

function network(ip) {
  if (!ip) return "";
  ip = ip.trim();
  if (!ip.includes(":")) return ip;
  let [head, tail] = ip.split("::");
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(":") + "::/64";
}

async function cohortOf(st, req) {
  const fromCookie = await cookieCohort(st, req.headers.get("cookie"));
  if (fromCookie !== null) return { cohort: fromCookie, fromCookie: true };
  const user = identity(req.headers.get("x-user-key"));
  if (user) return { cohort: await bucket(st, "user", [user]), fromCookie: false };
  const bm = req.cf?.botManagement;
  const fp = identity(bm?.ja4) ?? identity(bm?.ja3Hash);
  if (fp) {
    return { cohort: await bucket(st, "tls", [fp, network(req.headers.get("cf-connecting-ip"))]), fromCookie: false };
  }
  const r = crypto.getRandomValues(new Uint32Array(1))[0];
  return { cohort: Math.floor((r * st.cohorts) / 2 ** 32), fromCookie: false };
}

async function rollout(st, env, bundle) {
  const now = Date.now();
  const held = st.rollouts.get(bundle);
  if (held && now - held.at < st.ttl) return held.prepared;
  try {
    const cfg = await env.ROLLOUTS.get(`rollout/${bundle}`, "json");
    if (!cfg) return null;
    const weight = Number(cfg.weight ?? 0);
    const prepared = {
      stable: cfg.stable,
      canary: cfg.canary && weight > 0 ? cfg.canary : null,
      canaryCohorts: Math.floor((weight * st.cohorts) / 100),
      rotation: cfg.canary ? cfg.cohort_offset ?? (await bucket(st, "rotation", [bundle, cfg.canary])) : 0,
    };
    st.rollouts.set(bundle, { at: now, prepared });
    return prepared;
  } catch (e) {
    if (held) return held.prepared;
    throw e;
  }
}

function parsePath(raw) {
  if (raw.length > 1024) return { status: 400 };
  const slash = raw.indexOf("/", 1);
  if (slash < 0) return { status: 404 };
  const first = raw.slice(1, slash);
  const at = first.indexOf("@");
  const bundle = at < 0 ? first : first.slice(0, at);
  const pin = at < 0 ? null : first.slice(at + 1);
  if (!BUNDLE_RE.test(bundle)) return { status: 404 };
  if (pin !== null && !VERSION_RE.test(pin)) return { status: 400 };
  const segments = raw.slice(slash + 1).split("/");
  if (segments.length > 32) return { status: 400 };
  const decoded = [];
  for (const s of segments) {
    let d;
    try {
      d = decodeURIComponent(s);
    } catch {
      return { status: 400 };
    }
    if (!d || d === "." || d === ".." || d.length > 255 || /[\/\\\x00-\x1f\x7f]/.test(d)) return { status: 400 };
    decoded.push(d);
  }
  return { bundle, pin, path: decoded.join("/"), encoded: decoded.map(encodeURIComponent).join("/") };
}

async function load(env, ctx, origin, route, version) {
  const key = `${origin}/${route.bundle}@${version}/${route.encoded}`;
  const cache = caches.default;
  const hit = await cache.match(key);
  if (hit) return { body: hit.body, etag: hit.headers.get("etag"), type: hit.headers.get("content-type"), fromCache: true };
  const obj = await env.BUNDLES.get(`${route.bundle}/${version}/${route.path}`);
  if (!obj) return null;
  const type = obj.httpMetadata?.contentType || "text/javascript; charset=utf-8";
  const stored = new Response(obj.body, { headers: { "content-type": type, etag: obj.httpEtag, "cache-control": "public, max-age=31536000, immutable" } });
  ctx.waitUntil(cache.put(key, stored.clone()));
  return { body: stored.body, etag: obj.httpEtag, type, fromCache: false };
}

const text = (status, msg) => new Response(`${status} ${msg}\n`, { status, headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" } });

export default {
  async fetch(req, env, ctx) {
    const started = Date.now();
    const st = await isolate(env);
    const url = new URL(req.url);
    const route = parsePath(url.pathname);
    if (route.status) return text(route.status, "bad path");
    if (req.method !== "GET" && req.method !== "HEAD") return new Response("405\n", { status: 405, headers: { allow: "GET, HEAD" } });
    const prepared = await rollout(st, env, route.bundle);
    if (!prepared) return text(404, `no rollout config for bundle ${route.bundle}`);

    let version = route.pin;
    let channel = null;
    let decision = null;
    if (version === null) {
      decision = await cohortOf(st, req);
      const n = st.cohorts;
      const onCanary = prepared.canary && (decision.cohort + n - (prepared.rotation % n)) % n < prepared.canaryCohorts;
      channel = onCanary ? "canary" : "stable";
      version = onCanary ? prepared.canary : prepared.stable;
    } else {
      channel = version === prepared.stable ? "stable" : version === prepared.canary ? "canary" : null;
    }
    let found = await load(env, ctx, url.origin, route, version);
    let fallback = false;
    if (!found && route.pin === null && channel === "canary") {
      fallback = true;
      version = prepared.stable;
      channel = "stable";
      found = await load(env, ctx, url.origin, route, version);
    }
    if (!found) return text(404, "no such file");

    const h = new Headers();
    h.set("content-type", found.type);
    h.set("etag", found.etag);
    h.set("cache-control", route.pin === null ? st.floatingCc : st.pinnedCc);
    h.set("x-canary-version", version);
    if (channel) h.set("x-canary-channel", channel);
    if (fallback) h.set("x-canary-fallback", "stable");
    if (decision) {
      h.set("x-cohort", String(decision.cohort));
      if (!decision.fromCookie) h.set("set-cookie", `cohort=${decision.cohort}.${await tag(st, decision.cohort)}${st.cookieAttrs}`);
    }
    h.set("access-control-allow-origin", "*");
    h.set("access-control-expose-headers", "x-cohort, x-canary-channel, x-canary-version, x-canary-fallback");
    h.set("x-content-type-options", "nosniff");
    h.set("server-timing", `edge;dur=${Date.now() - started}, cache;desc=${found.fromCache ? "hit" : "miss"}`);
    const inm = req.headers.get("if-none-match");
    const bare = (t) => t.trim().replace(/^W\//, "");
    if (inm && inm.split(",").some((c) => c.trim() === "*" || bare(c) === bare(found.etag))) {
      return new Response(null, { status: 304, headers: h });
    }
    return new Response(req.method === "HEAD" ? null : found.body, { status: 200, headers: h });
  },
};
