/* canary-edge boot signal: the few lines an SDK adds to tell the edge that served it that this
 * client booted `version` (README, "Boot signals"). Call it once the SDK has initialised, with
 * `start` = `(window.performance || Date).now()` taken first thing in the entry script. A client
 * that loaded the floating URL and sent no boot signal in time counts as a failure. Sends once
 * per page load per bundle and version (a flag on window), with the cookie, like the error
 * reports. Never throws. */
function canaryBoot(origin, bundle, version, start) {
  try {
    var flag = "__canaryBoot:" + bundle + "@" + version;
    if (window[flag]) return;
    window[flag] = true;
    var ms = Math.min(600000, Math.max(0, Math.round((window.performance || Date).now() - start)));
    var body = JSON.stringify({ bundle: bundle, version: version, kind: "boot", boot_ms: ms });
    if (navigator.sendBeacon) navigator.sendBeacon(origin + "/__canary/report", body);
    else if (window.fetch) fetch(origin + "/__canary/report", { method: "POST", body: body, credentials: "include", keepalive: true, mode: "no-cors" });
  } catch (e) { /* reporting must never break the page */ }
}
