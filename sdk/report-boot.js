/* canary-edge boot signal: the few lines an SDK adds to tell the edge that served it that this
 * client booted `version`, and how long that took (README, "Boot signals"). Take
 * `start = canaryBootStart()` first thing in the entry script, and call canaryBoot once the SDK
 * has initialised. A client that loaded the floating URL and sent no boot signal in time counts
 * as a failure. Sends once per page load per bundle and version (a flag on window), with the
 * cookie, like the error reports. Never throws. */
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

/* When the boot began: the entry script's download, where the browser gives it (its Resource
 * Timing entry's startTime, which browsers expose for cross-origin scripts too, without
 * Timing-Allow-Origin), else now (the script's start). So a heavier bundle shows in boot_ms. */
function canaryBootStart() {
  var perf = window.performance;
  if (!perf) return Date.now();
  var now = perf.now();
  try {
    var src = document.currentScript && document.currentScript.src;
    var entries = src && perf.getEntriesByName ? perf.getEntriesByName(src, "resource") : [];
    var last = entries[entries.length - 1];
    if (last && last.startTime > 0 && last.startTime <= now) return last.startTime;
  } catch (e) { /* no timing: the script's start */ }
  return now;
}
