// What both Workers' JS shares: their log lines and plain-text answers.

/** One structured log line (`event` names it), as the Rust side's LogLine writes them. */
export function log(event, fields) {
  console.log(JSON.stringify({ event, service: "canary-edge", ...fields }));
}

/** The first line of an error, bounded: runtime errors carry whole stacks. */
export function brief(e) {
  return String(e?.message ?? e).split("\n")[0].slice(0, 240);
}

/** A plain-text answer: `<status> <message>`, never cached. */
export function text(status, message) {
  return new Response(`${status} ${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", "x-content-type-options": "nosniff" },
  });
}
