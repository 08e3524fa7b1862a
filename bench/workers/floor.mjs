// Floor for the throughput benchmark: returns one cached asset with no logic at all (on a
// cache miss it reads the object from R2 and caches it, so scenario (b) has a floor too).
const KEY = "demo/1.0.0/sdk.js";

export default {
  async fetch(req, env, ctx) {
    const url = `${new URL(req.url).origin}/demo@1.0.0/sdk.js`;
    const hit = await caches.default.match(url);
    if (hit) return hit;
    const obj = await env.BUNDLES.get(KEY);
    const resp = new Response(obj.body, {
      headers: { "content-type": "text/javascript; charset=utf-8", etag: obj.httpEtag, "cache-control": "public, max-age=31536000, immutable" },
    });
    ctx.waitUntil(caches.default.put(url, resp.clone()));
    return resp;
  },
};
