//! The wasm module every SDK request runs, and nothing else: `canary_core::serve` behind a
//! few functions of strings. The worker's entry module (`js/index.js`) does the I/O; this
//! module decides. Values cross the boundary as `\n`-separated text, one call each way per
//! step, because every crossing copies strings (see `bench/README.md`, "Where the time
//! goes").
//!
//! Wire format of [`plan`]'s answer, by its first line:
//! - `O`: an operations route (`/__canary/...`);
//! - `C bundle kv_key timeout_ms`: read the config, call [`record_config`], ask again;
//! - `I user_key_header`: ask again with the request's identities;
//! - `E status header_name header_value log_line message`: answer with an error;
//! - `A bundle head default_content_type version channel cache_key
//!   object_key fallback_version fallback_cache_key fallback_object_key tally_token
//!   must_be_published` (`1` or empty), then
//!   header name/value pairs: serve.

use std::cell::RefCell;
use std::collections::HashMap;

use canary_core::config::BundleName;
use canary_core::decide::ClientFacts;
use canary_core::error::EdgeError;
use canary_core::log::LogLine;
use canary_core::rollouts::KvRead;
use canary_core::serve::{AssetPlan, AssetRequest, Edge, Miss, Served, Step};
use canary_core::settings::{Settings, SettingsError};
use wasm_bindgen::prelude::wasm_bindgen;

thread_local! {
    static EDGE: RefCell<Option<Result<Edge, SettingsError>>> = const { RefCell::new(None) };
}

/// Builds the isolate's state from the worker's vars and secrets (a JSON object of
/// strings). Called once per isolate, before the first [`plan`].
#[wasm_bindgen]
pub fn configure(vars_json: &str) {
    let vars: HashMap<String, String> = serde_json::from_str(vars_json).unwrap_or_default();
    let edge = Settings::from_lookup(|name| vars.get(name).cloned()).map(Edge::new);
    EDGE.with(|cell| *cell.borrow_mut() = Some(edge));
}

/// What the entry module needs once per isolate (after [`configure`]): the request header
/// that carries a signed override token, the one that carries a user key's signature, the
/// user-key header, the `Cache-Control` of the edge cache's copy, then
/// the headers every asset response carries, as name/value lines.
#[wasm_bindgen]
pub fn constants() -> String {
    let (stored, user_key) = with_edge(
        |edge| {
            (
                edge.stored_cache_control().to_owned(),
                edge.settings.user_key_header.clone(),
            )
        },
        |_| (String::new(), String::new()),
    );
    format!(
        "{}\n{}\n{user_key}\n{stored}\n{}",
        canary_core::override_token::OVERRIDE_HEADER,
        canary_core::user_key::SIGNATURE_HEADER,
        Edge::static_headers().as_str()
    )
}

fn with_edge<T>(
    f: impl FnOnce(&mut Edge) -> T,
    misconfigured: impl FnOnce(&SettingsError) -> T,
) -> T {
    EDGE.with(|cell| match cell.borrow_mut().as_mut() {
        Some(Ok(edge)) => f(edge),
        Some(Err(e)) => misconfigured(e),
        None => misconfigured(&SettingsError {
            var: "(none)",
            message: "the entry module did not call configure()".into(),
        }),
    })
}

/// The next step for a request. `request` is `method`, `url`, `now_ms`, `1` when this
/// request has just read the config (else `0`), the `cookie` and override headers, the
/// client IP (`CF-Connecting-IP`), the user-key signature header and (only with a
/// signature) the user-key header, then `-`, or (after an `I` answer) `+` and the user-key
/// header, JA4, JA3 hash and client IP; each optional value is `+value` or `-`.
#[wasm_bindgen]
pub fn plan(request: &str) -> String {
    let mut lines = request.split('\n');
    let mut next = || lines.next().unwrap_or_default();
    let method = next();
    let url = next();
    let now_ms = next().parse().unwrap_or(0.0);
    let config_read = next() == "1";
    let cookie = optional(next());
    let override_token = optional(next());
    let client_ip = optional(next());
    let user_key_signature = optional(next());
    let signed_user_key = optional(next()).zip(user_key_signature);
    let identity = (next() == "+").then(|| ClientFacts {
        cookie_header: None,
        user_key: optional(next()),
        ja4: optional(next()),
        ja3_hash: optional(next()),
        client_ip: optional(next()),
    });
    let req = AssetRequest {
        method,
        url,
        now_ms,
        config_read,
        cookie,
        override_token,
        client_ip,
        signed_user_key,
    };
    with_edge(
        |edge| {
            let step = edge.plan(&req, identity.as_ref(), random_u64);
            encode(edge, step)
        },
        |e| failure(&EdgeError::Misconfigured(e.clone())),
    )
}

/// Records a config read issued at `issued_ms`: `kind` is `value`, `missing` or `failed`
/// (with the detail in `text`). Returns a log line to write, or an empty string.
#[wasm_bindgen]
pub fn record_config(bundle: &str, kind: &str, text: &str, issued_ms: f64) -> String {
    let Ok(bundle) = BundleName::parse(bundle) else {
        return String::new();
    };
    let read = match kind {
        "value" => KvRead::Value(text.to_owned()),
        "missing" => KvRead::Missing,
        _ => KvRead::Failed(text.to_owned()),
    };
    with_edge(
        |edge| {
            edge.record_config(&bundle, read, issued_ms)
                .map(|log| log.to_json())
                .unwrap_or_default()
        },
        |_| String::new(),
    )
}

/// Counts a served floating request (its plan's tally token); `outcome` is what was served:
/// `0` the routed version's file, `1` stable's after a fallback that counts against the
/// canary (R2 failed, or a file the canary published is missing), `2` stable's after a
/// plain fallback (a file the canary never had: nothing is counted). Returns the batches
/// due for the control plane as `bundle\nbody\n` pairs, or an empty string.
#[wasm_bindgen]
pub fn served(token: &str, outcome: u8, now_ms: f64) -> String {
    let outcome = match outcome {
        0 => Served::AsRouted,
        1 => Served::CountedFallback,
        // 2, and anything the entry module should never send: count nothing.
        _ => Served::PlainFallback,
    };
    with_edge(
        |edge| {
            let mut out = String::new();
            for (bundle, batch) in edge.served(token, outcome, now_ms) {
                if let Ok(body) = serde_json::to_string(&batch) {
                    out.push_str(bundle.as_str());
                    out.push('\n');
                    out.push_str(&body);
                    out.push('\n');
                }
            }
            out
        },
        |_| String::new(),
    )
}

/// The error answer (`E ...`) for a file that could not be loaded: absent when `detail`
/// is empty, else an origin failure.
#[wasm_bindgen]
pub fn miss(object_key: &str, detail: &str) -> String {
    let miss = if detail.is_empty() {
        Miss::Absent
    } else {
        Miss::Failed(detail.to_owned())
    };
    failure(&Edge::miss_error(object_key, miss))
}

/// Whether an `If-None-Match` header matches `etag`.
#[wasm_bindgen]
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    canary_core::http::etag_matches(if_none_match, etag)
}

/// `+value` is a value, anything else (`-`) none.
fn optional(line: &str) -> Option<&str> {
    line.strip_prefix('+')
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // getrandom on Workers is crypto.getRandomValues, which does not fail; if it ever did,
    // a zeroed value still yields a valid cohort.
    let _ = getrandom::getrandom(&mut bytes);
    u64::from_le_bytes(bytes)
}

fn encode(edge: &Edge, step: Step) -> String {
    match step {
        Step::Ops => "O".to_owned(),
        Step::ReadConfig {
            bundle,
            kv_key,
            timeout_ms,
        } => format!("C\n{bundle}\n{kv_key}\n{timeout_ms}"),
        Step::NeedIdentity => format!("I\n{}", edge.settings.user_key_header),
        Step::Fail(e) => failure(&e),
        Step::Serve(plan) => encode_plan(&plan),
    }
}

fn encode_plan(p: &AssetPlan) -> String {
    let (fb_version, fb_cache, fb_key) = match &p.fallback {
        Some((v, load)) => (
            v.as_str(),
            load.cache_key.as_str(),
            load.object_key.as_str(),
        ),
        None => ("", "", ""),
    };
    let fields = [
        "A",
        p.bundle.as_str(),
        if p.head { "1" } else { "0" },
        p.default_content_type,
        p.version.as_str(),
        p.channel.map_or("", |c| c.as_str()),
        &p.load.cache_key,
        &p.load.object_key,
        fb_version,
        fb_cache,
        fb_key,
        p.tally.as_ref().map_or("", |t| t.0.as_str()),
        if p.must_be_published { "1" } else { "" },
    ];
    let size = fields.iter().map(|f| f.len() + 1).sum::<usize>() + p.headers.as_str().len();
    let mut out = String::with_capacity(size);
    for field in fields {
        out.push_str(field);
        out.push('\n');
    }
    out.push_str(p.headers.as_str());
    out
}

/// `E status header_name header_value log_line message`: the log line only for 5xx.
fn failure(e: &EdgeError) -> String {
    let (name, value) = e.extra_header().unwrap_or(("", ""));
    let log = LogLine::for_error(e)
        .map(|l| l.to_json())
        .unwrap_or_default();
    format!(
        "E\n{}\n{name}\n{value}\n{log}\n{}",
        e.status(),
        e.public_message()
    )
}
