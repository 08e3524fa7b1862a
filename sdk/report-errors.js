/* canary-edge error reporting: the few lines an SDK adds to report its own errors to the edge
 * that served it (README, "Error reports"). The beacon carries the cohort cookie the edge set
 * with the script (SameSite=None; Partitioned: the same partition as the script load), and
 * the edge counts the report only if that client was served `version`. Never throws. */
function canaryReport(origin, bundle, version, kind, message) {
  try {
    var body = JSON.stringify({ bundle: bundle, version: version, kind: kind, message: String(message).slice(0, 200) });
    if (navigator.sendBeacon) navigator.sendBeacon(origin + "/__canary/report", body);
    else if (window.fetch) fetch(origin + "/__canary/report", { method: "POST", body: body, credentials: "include", keepalive: true, mode: "no-cors" });
  } catch (e) { /* reporting must never break the page */ }
}
