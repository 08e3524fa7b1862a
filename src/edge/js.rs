//! A few JS helpers that batch what would otherwise be one wasm↔JS call per header: the
//! hot path reads five request fields and writes about a dozen response headers, and each
//! crossing copies strings both ways. Values travel as `\n`-separated text: header names
//! and values cannot contain a newline (the Fetch spec rejects them).

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen(inline_js = r#"
export function request_facts(req, names) {
  const h = req.headers;
  const out = [req.method, req.url];
  for (const n of names.split("\n")) {
    const v = h.get(n);
    out.push(v === null ? "-" : "+" + v);
  }
  return out.join("\n");
}
export function headers_from(lines) {
  const h = new Headers();
  const parts = lines.split("\n");
  for (let i = 0; i + 1 < parts.length; i += 2) h.set(parts[i], parts[i + 1]);
  return h;
}
export function cached_meta(h) {
  return (h.get("etag") ?? "") + "\n" + (h.get("content-type") ?? "");
}
"#)]
extern "C" {
    fn request_facts(req: &worker::web_sys::Request, names: &str) -> String;
    fn headers_from(lines: &str) -> worker::web_sys::Headers;
    fn cached_meta(headers: &worker::web_sys::Headers) -> String;
}

/// What the asset path reads of a request, in one call.
pub struct RequestFacts {
    pub method: String,
    pub url: String,
    pub cookie: Option<String>,
    pub if_none_match: Option<String>,
    pub override_token: Option<String>,
}

impl RequestFacts {
    pub fn read(req: &worker::web_sys::Request, override_header: &str) -> Self {
        let names = format!("cookie\nif-none-match\n{override_header}");
        let text = request_facts(req, &names);
        let mut parts = text.split('\n');
        let mut next = || parts.next().unwrap_or_default().to_owned();
        let method = next();
        let url = next();
        let mut header = || {
            let v = next();
            v.strip_prefix('+').map(str::to_owned)
        };
        Self {
            method,
            url,
            cookie: header(),
            if_none_match: header(),
            override_token: header(),
        }
    }
}

/// Response headers gathered in wasm and handed to JS at once.
#[derive(Default)]
pub struct HeaderLines(String);

impl HeaderLines {
    pub fn set(&mut self, name: &str, value: &str) {
        // A value with a newline would shift every later pair; none of ours has one, and
        // any that did would not be a valid header value anyway.
        if value.contains('\n') || name.contains('\n') {
            return;
        }
        self.0.push_str(name);
        self.0.push('\n');
        self.0.push_str(value);
        self.0.push('\n');
    }

    pub fn build(&self) -> worker::Headers {
        worker::Headers(headers_from(&self.0))
    }
}

/// `(etag, content-type)` of a cached response's headers, in one call.
pub fn cached_etag_and_type(
    headers: &worker::web_sys::Headers,
) -> (Option<String>, Option<String>) {
    let text = cached_meta(headers);
    let (etag, ct) = text.split_once('\n').unwrap_or((&text, ""));
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    (some(etag), some(ct))
}
