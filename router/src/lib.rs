//! The wasm module every SDK request runs, and nothing else: `canary_core::edge::serve` behind a
//! few functions of strings. The worker's entry module (`js/index.js`) does the I/O; this
//! module decides. Values cross the boundary as `\n`-separated text, one call each way per
//! step, because every crossing copies strings (see `bench/README.md`, "Where the time
//! goes").
//!
//! # The text protocol
//!
//! Every message is declared once below with `message!`: its fields, one line each, in
//! wire order. That declaration makes both the struct the encoder (or decoder) fills, by
//! name, and the message's [`Format`]; [`protocol`] exports the formats as JSON. The entry
//! module keeps the same table (`PROTOCOL` in `js/index.js`) and reads fields by name from
//! it; `tests/router-protocol.test.mjs` checks that the two tables agree and that every
//! answer matches them.
//!
//! - [`plan`]'s request: [`PlanRequest`];
//! - [`plan`]'s answer, by its `kind` (its first line): `O` [`Ops`] (an operations route,
//!   `/__canary/...`), `C` [`ReadConfig`] (read the config, call [`record_config`], ask
//!   again), `I` [`NeedIdentity`] (ask again with the request's identities), `M`
//!   [`NeedManifest`] (read a version's manifest, call [`record_manifest`], ask again with
//!   its answer), `E` [`Failure`] (answer with an error; also [`miss`]'s answer), `A`
//!   [`Asset`] (serve);
//! - [`canary_miss`]'s answers: `M` [`NeedManifest`] (as [`plan`]'s: then ask again) and `V`
//!   [`MissJudged`] (whether a canary file's miss counts against the canary);
//!   [`record_manifest`]'s: [`ManifestRead`];
//! - [`record_config`]'s answer: [`ConfigLog`]; [`constants`]': [`Constants`]; [`served`]'s
//!   `outcome` argument: a position in [`SERVED_OUTCOMES`]; [`served`] answers a number (when
//!   the outbox's next batch falls due), the batches leave by [`report::flush`];
//!   [`record_config`]'s `kind`: one of [`CONFIG_READS`];
//! - [`pushed_config`]'s message: [`PushedConfig`] (a config the control plane pushed, as an
//!   aggregator answers it); it answers a bool, whether the config was taken;
//! - `R` [`ReportRoute`]: a report (`POST /__canary/report`): the entry reads its body and
//!   asks [`report::report`] (its request [`report::ReportIn`], its answers `C`, `E`, `N`
//!   [`report::NotCounted`] and `K` [`report::Admitted`]) and counts an admitted one with
//!   [`report::counted`] (a number, as [`served`]); the entry's timer sends what falls due
//!   with [`report::flush`] ([`Batches`]).
//!
//! Lines are separated by `\n`, except in a message that ends with name/value pairs
//! ([`Tail::Pairs`]), where every line ends with `\n` (the layout of
//! [`HeaderLines`](canary_core::edge::http::HeaderLines), so response headers are copied as
//! they are). A reader splits on `\n`, takes the fields at their positions, then pairs
//! while two lines remain. An optional request value is `+value`, or `-` for none; a flag
//! is `1` or `0`.

use std::cell::RefCell;
use std::collections::HashMap;

use canary_core::config::BundleName;
use canary_core::config::Version;
use canary_core::edge::decide::ClientFacts;
use canary_core::edge::miss::ManifestState;
use canary_core::edge::serve::{AssetPlan, AssetRequest, Edge, Miss, MissStep, Served, Step};
use canary_core::edge::text;
use canary_core::error::EdgeError;
use canary_core::kv::KvRead;
use canary_core::log::LogLine;
use canary_core::settings::{Settings, SettingsError};
use wasm_bindgen::prelude::wasm_bindgen;

/// The layout of one message, as [`protocol`] exports it.
pub struct Format {
    /// An answer of [`plan`]: its first line, field `kind`.
    pub kind: Option<&'static str>,
    /// The field names, one line each, in wire order (`kind` first in an answer).
    pub fields: &'static [&'static str],
    pub tail: Tail,
    /// All of the above (but `kind`) as JSON, made at compile time: `{"fields": [...]}`,
    /// plus `"rest": true` or `"pairs": [first, second]`.
    pub json: &'static str,
    /// `"kind":json` for an answer (an entry of [`protocol`]'s `answers`), else `json`.
    pub entry: &'static str,
}

/// What follows a message's fields.
#[derive(Clone, Copy)]
pub enum Tail {
    /// Nothing: the lines are separated by `\n`, with none after the last.
    End,
    /// As [`Tail::End`], but the last field runs to the end of the message: it may hold
    /// newlines.
    Rest,
    /// Pairs of lines (these two names) to the end; every line of the message ends with
    /// `\n`.
    Pairs(&'static str, &'static str),
}

/// An outgoing message: its [`Format`], and its text.
trait Encode {
    const FORMAT: Format;

    /// The message, with `pairs` (`name\nvalue\n` each) after the fields when its format
    /// ends with pairs (else `pairs` is ignored).
    fn encode_with(&self, pairs: &str) -> String;

    fn encode(&self) -> String {
        self.encode_with("")
    }
}

/// The text of a message's lines (`kind` first, then its fields) and, when its format
/// ends with pairs, of `pairs`. One function for every message: the wasm stays small.
fn write_lines(lines: &[&str], tail: Tail, pairs: &str) -> String {
    let pairs = match tail {
        Tail::Pairs(..) => pairs,
        Tail::End | Tail::Rest => "",
    };
    let size = lines.iter().map(|line| line.len() + 1).sum::<usize>() + pairs.len();
    let mut out = String::with_capacity(size);
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    if let Tail::Pairs(..) = tail {
        out.push_str(pairs);
    } else {
        out.pop();
    }
    out
}

/// Declares a message: a struct with one `&str` per field (so an encoder names every field
/// and cannot reorder them) and its [`Format`], from the one list of fields. `out` messages
/// implement [`Encode`]; the `in` message gets `decode`, which reads the lines in field
/// order (a missing line reads as empty; with `rest`, the last field takes the rest of
/// the text). `= "X"`: an answer of [`plan`] of kind `X`;
/// `pairs(a, b)`: name/value pairs follow the fields; `rest`: the last field runs to the
/// end.
macro_rules! message {
    (
        $(#[$doc:meta])*
        $dir:ident $name:ident $(= $kind:literal)? { $($field:ident),+ $(,)? } $($tail:tt)*
    ) => {
        $(#[$doc])*
        pub(crate) struct $name<'a> {
            $($field: &'a str,)+
        }
        message!(@$dir $name [$name<'_>] [$($kind)?] [$($field)+] [$($tail)*]);
    };
    (
        $(#[$doc:meta])*
        $dir:ident $name:ident $(= $kind:literal)? {} $($tail:tt)*
    ) => {
        $(#[$doc])*
        pub(crate) struct $name;
        message!(@$dir $name [$name] [$($kind)?] [] [$($tail)*]);
    };
    (@out $name:ident [$ty:ty] [$($kind:literal)?] [$($field:ident)*] [$($tail:tt)*]) => {
        impl Encode for $ty {
            const FORMAT: Format = message!(@format [$($kind)?] [$($field)*] [$($tail)*]);

            fn encode_with(&self, pairs: &str) -> String {
                // `kind` first, then the fields in the order declared: the table's.
                write_lines(&[$($kind,)? $(self.$field),*], Self::FORMAT.tail, pairs)
            }
        }
    };
    (@in $name:ident [$ty:ty] [] [$($field:ident)+] [$($tail:tt)*]) => {
        impl<'a> $name<'a> {
            pub(crate) const FORMAT: Format = message!(@format [] [$($field)+] [$($tail)*]);

            fn decode(text: &'a str) -> Self {
                // With a `rest` tail the last field runs to the end: as many pieces as fields.
                let pieces = match Self::FORMAT.tail {
                    Tail::Rest => Self::FORMAT.fields.len(),
                    Tail::End | Tail::Pairs(..) => usize::MAX,
                };
                let mut lines = text.splitn(pieces, '\n');
                // Struct fields are evaluated in the order written: the wire order.
                Self {
                    $($field: lines.next().unwrap_or_default(),)+
                }
            }
        }
    };
    (@format [$($kind:literal)?] [$($field:ident)*] [$($tail:tt)*]) => {
        Format {
            kind: message!(@kind $($kind)?),
            fields: &[$(message!(@kind_field $kind),)? $(stringify!($field)),*],
            tail: message!(@tail $($tail)*),
            json: message!(@json [$($kind)?] [$($field)*] [$($tail)*]),
            entry: concat!(
                $("\"", $kind, "\":",)?
                message!(@json [$($kind)?] [$($field)*] [$($tail)*])
            ),
        }
    };
    (@json [$($kind:literal)?] [$($field:ident)*] [$($tail:tt)*]) => {
        concat!(
            "{\"fields\":[",
            message!(@names [$($kind)?] [$($field)*]),
            "]",
            message!(@tail_json $($tail)*),
            "}"
        )
    };
    (@names [] []) => { "" };
    (@names [$kind:literal] [$($field:ident)*]) => {
        concat!("\"kind\"" $(, ",\"", stringify!($field), "\"")*)
    };
    (@names [] [$first:ident $($field:ident)*]) => {
        concat!("\"", stringify!($first), "\"" $(, ",\"", stringify!($field), "\"")*)
    };
    (@tail_json) => { "" };
    (@tail_json rest) => { ",\"rest\":true" };
    (@tail_json pairs($first:ident, $second:ident)) => {
        concat!(",\"pairs\":[\"", stringify!($first), "\",\"", stringify!($second), "\"]")
    };
    (@kind) => { None };
    (@kind $kind:literal) => { Some($kind) };
    (@kind_field $kind:literal) => { "kind" };
    (@tail) => { Tail::End };
    (@tail rest) => { Tail::Rest };
    (@tail pairs($first:ident, $second:ident)) => {
        Tail::Pairs(stringify!($first), stringify!($second))
    };
}

message! {
    /// [`plan`]'s request. Optional values are `+value` or `-`. `now_ms`: the time, in ms
    /// since the epoch. `config_read`: `1` when this request has just read the config
    /// (after a `C` answer). `client_ip`: `CF-Connecting-IP`. `signed_user_key`: the
    /// user-key header, sent only with a `user_key_signature`. `referer`: the `Referer`
    /// header (`health.origins`: which page loaded the script). `identity`: `1` after an `I`
    /// answer, when the identities that follow were read, else `0` (and they are `-`).
    /// `manifest`: after an `M` answer, what [`record_manifest`] answered (`+` and its line).
    in PlanRequest {
        method,
        url,
        now_ms,
        config_read,
        cookie,
        override_token,
        client_ip,
        user_key_signature,
        signed_user_key,
        referer,
        identity,
        user_key,
        ja4,
        ja3_hash,
        identity_client_ip,
        manifest,
    }
}

message! {
    /// `O`: an operations route (`/__canary/...`): the operations module answers.
    out Ops = "O" {}
}

message! {
    /// `R`: an SDK's report or boot signal: read the body and ask [`report::report`].
    out ReportRoute = "R" {}
}

message! {
    /// `C`: the bundle's config is not fresh in this isolate: read `kv_key` (waiting at most
    /// `timeout_ms`), give the outcome to [`record_config`], then ask again.
    out ReadConfig = "C" { bundle, kv_key, timeout_ms }
}

message! {
    /// `I`: the cookie did not decide: ask again with the request's identities
    /// (`user_key_header` names the user-key header).
    out NeedIdentity = "I" { user_key_header }
}

message! {
    /// `M`: a version's manifest is needed (a pinned version the config does not name is
    /// served only once published; a canary file's miss counts only if the canary published
    /// it): read `manifest_key` from R2, give the outcome to [`record_manifest`], then ask
    /// again with its answer.
    out NeedManifest = "M" { bundle, version, manifest_key }
}

message! {
    /// [`record_manifest`]'s answer: what the isolate knows of the manifest now, one line
    /// (`known`, `missing`, or `failed` and a detail), for the entry to give back.
    out ManifestRead { state }
}

message! {
    /// `V`: [`canary_miss`]'s verdict: `counted` (`1`: the miss is an error of the
    /// canary's), the `reason` and a `detail` (may be empty; the rest: it may hold
    /// newlines), for the `canary_fallback` log.
    out MissJudged = "V" { counted, reason, detail } rest
}

message! {
    /// `E`: answer with an error: `status`, an extra header (`header_name` empty: none),
    /// a log line to write (5xx only, else empty) and the public message (the rest: it may
    /// hold newlines).
    out Failure = "E" { status, header_name, header_value, log_line, message } rest
}

message! {
    /// `A`: serve. `head`: `1` for HEAD. `channel`: the routed version's channel (empty for
    /// a pinned old version). The `fallback_*` fields: stable's copy for a floating canary
    /// request (empty otherwise). `tally`: the handle of the request's tally, to give back
    /// to [`served`] whatever is served (empty: nothing to count). `serving_canary`: `1` while the bundle's config serves a canary: the entry
    /// checks the config's revision with the bundle's aggregator now and then (its
    /// `monitor_config_url`), handing the answer to [`pushed_config`]. Then the response's
    /// headers, as name/value pairs.
    out Asset = "A" {
        bundle,
        head,
        default_content_type,
        version,
        channel,
        cache_key,
        object_key,
        fallback_version,
        fallback_cache_key,
        fallback_object_key,
        tally,
        serving_canary,
    } pairs(name, value)
}

message! {
    /// [`record_config`]'s answer: a log line to write, or empty.
    out ConfigLog { log_line }
}

message! {
    /// [`pushed_config`]'s message: a config the control plane pushed, as the bundle's
    /// aggregator answers a batch or a revision check (`health::coalesce::ConfigPush::message`):
    /// its `revision`, then the `config` exactly as KV holds it (the rest: it may hold
    /// newlines).
    in PushedConfig { revision, config } rest
}

message! {
    /// [`served`]'s answer (and [`report::counted`]'s and [`report::flush`]'s): when the
    /// isolate's outbox next falls due (ms since the epoch; empty: nothing pending), for
    /// the entry module's timer, then the batches due for the control plane, one
    /// `bundle`/`body` pair each.
    out Batches { next_flush_ms } pairs(bundle, body)
}

message! {
    /// [`constants`]' answer: the request header that carries a signed override token, the
    /// one that carries a user key's signature, the user-key header, the `Cache-Control` of
    /// the edge cache's copy, the health monitor's ingest URL and bundle header (its
    /// contract, `control::wire`), the aggregators' URL and this isolate's shard suffix (a
    /// bundle's aggregator is named the bundle's name followed by it: `health::coalesce`),
    /// the largest report body read and the answer past a report rate limit, the URL of a
    /// revision check (`GET`, at the bundle's aggregator), then the headers every asset
    /// response carries.
    out Constants {
        override_header,
        user_key_signature_header,
        user_key_header,
        stored_cache_control,
        monitor_ingest_url,
        monitor_bundle_header,
        monitor_aggregate_url,
        monitor_shard_suffix,
        report_max_bytes,
        report_rate_limited_body,
        monitor_config_url,
    } pairs(name, value)
}

/// Names with values, and the names as JSON (made at compile time), from one list.
struct Named<T: 'static, const N: usize> {
    names: [&'static str; N],
    values: [T; N],
    json: &'static str,
}

impl<T: Copy, const N: usize> Named<T, N> {
    fn at(&self, index: usize) -> Option<T> {
        self.values.get(index).copied()
    }

    fn by_name(&self, name: &str) -> Option<T> {
        let index = self.names.iter().position(|n| *n == name)?;
        self.at(index)
    }
}

macro_rules! named {
    ($first:literal => $first_value:expr $(, $name:literal => $value:expr)* $(,)?) => {
        Named {
            names: [$first $(, $name)*],
            values: [$first_value $(, $value)*],
            json: concat!("[\"", $first, "\"" $(, ",\"", $name, "\"")*, "]"),
        }
    };
}

/// [`served`]'s `outcome`: a position in this list.
const SERVED_OUTCOMES: Named<Served, 4> = named!(
    "as_routed" => Served::AsRouted,
    "counted_fallback" => Served::CountedFallback,
    "plain_fallback" => Served::PlainFallback,
    "not_served" => Served::NotServed,
);

/// [`record_config`]'s `kind`: a value (`text`), none, or a failed read (its detail in
/// `text`).
const CONFIG_READS: Named<fn(&str) -> KvRead, 3> = named!(
    "value" => |text| KvRead::Value(text.to_owned()),
    "missing" => |_| KvRead::Missing,
    "failed" => |text| KvRead::Failed(text.to_owned()),
);

/// Flags in messages.
const YES: &str = "1";
const NO: &str = "0";

pub mod report;

/// The protocol's tables as JSON, for the entry module's tests (the entry keeps its own
/// copy and never calls this on a request): `plan` (the request), `answers` (by kind),
/// `record_config`, `served`, `miss`, `constants`, `report` (each a [`Format::json`]),
/// `report_answers` (by kind), `served_outcomes`, `config_reads` (also
/// [`record_manifest`]'s kinds), `pushed_config` (the message; its answer is a bool),
/// `record_manifest` and `canary_miss` (its own answers by kind; it may also answer `M`).
#[wasm_bindgen]
pub fn protocol() -> String {
    [
        "{\"plan\":",
        PlanRequest::FORMAT.json,
        ",\"answers\":{",
        Ops::FORMAT.entry,
        ",",
        ReadConfig::FORMAT.entry,
        ",",
        NeedIdentity::FORMAT.entry,
        ",",
        NeedManifest::FORMAT.entry,
        ",",
        Failure::FORMAT.entry,
        ",",
        Asset::FORMAT.entry,
        ",",
        ReportRoute::FORMAT.entry,
        "},\"record_config\":",
        ConfigLog::FORMAT.json,
        ",\"batches\":",
        Batches::FORMAT.json,
        ",\"miss\":",
        Failure::FORMAT.json,
        ",\"constants\":",
        Constants::FORMAT.json,
        ",\"report\":",
        report::ReportIn::FORMAT.json,
        ",\"report_answers\":{",
        report::NotCounted::FORMAT.entry,
        ",",
        report::Admitted::FORMAT.entry,
        "}",
        ",\"served_outcomes\":",
        SERVED_OUTCOMES.json,
        ",\"config_reads\":",
        CONFIG_READS.json,
        ",\"pushed_config\":",
        PushedConfig::FORMAT.json,
        ",\"record_manifest\":",
        ManifestRead::FORMAT.json,
        ",\"canary_miss\":{",
        MissJudged::FORMAT.entry,
        "}",
        "}",
    ]
    .concat()
}

thread_local! {
    static EDGE: RefCell<Option<Result<Edge, SettingsError>>> = const { RefCell::new(None) };
}

/// Builds the isolate's state from the worker's vars and secrets (a JSON object of
/// strings). Called once per isolate, before the first [`plan`].
#[wasm_bindgen]
pub fn configure(vars_json: &str) {
    let vars: HashMap<String, String> = serde_json::from_str(vars_json).unwrap_or_default();
    // Handles from a random start: after a trap the entry configures a fresh router, and a
    // request in flight from before gives back a handle of the old one (serve/held.rs).
    let edge = Settings::edge_from_lookup(|name| vars.get(name).cloned())
        .map(|settings| Edge::new(settings).with_handles_from(random_u64()));
    EDGE.with(|cell| *cell.borrow_mut() = Some(edge));
}

/// A protocol's `now_ms` (JS's `Date.now()`, whole milliseconds) as the core's `f64`: read
/// as an integer, so that the module does not link the float parser (its tables are 14 KB
/// of the routing wasm). Unreadable: 0 (the epoch: every cache entry reads as stale).
pub(crate) fn epoch_ms(text: &str) -> f64 {
    text.parse::<u64>().map_or(0.0, |ms| ms as f64)
}

/// What the entry module needs once per isolate (after [`configure`]): [`Constants`].
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
    use canary_core::control::wire;
    use canary_core::health::coalesce;
    let ingest = format!("{}{}", wire::ORIGIN, wire::INGEST);
    let aggregate = format!("{}{}", wire::ORIGIN, wire::AGGREGATE);
    let config = format!("{}{}", wire::ORIGIN, wire::CONFIG);
    // This isolate's aggregator of every bundle: drawn once, as the entry module asks once.
    let shard = coalesce::shard_suffix((random_u64() % u64::from(coalesce::AGGREGATORS)) as u32);
    Constants {
        override_header: canary_core::edge::override_token::OVERRIDE_HEADER,
        user_key_signature_header: canary_core::edge::user_key::SIGNATURE_HEADER,
        user_key_header: &user_key,
        stored_cache_control: &stored,
        monitor_ingest_url: &ingest,
        monitor_bundle_header: wire::BUNDLE_HEADER,
        monitor_aggregate_url: &aggregate,
        monitor_shard_suffix: &shard,
        report_max_bytes: &canary_core::edge::report::MAX_REPORT_BYTES.to_string(),
        report_rate_limited_body: &canary_core::edge::serve::rate_limited_body(),
        monitor_config_url: &config,
    }
    .encode_with(Edge::static_headers().as_str())
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

/// The next step for a request: a [`PlanRequest`] in, an answer out (`O`, `C`, `I`, `E`
/// or `A`).
#[wasm_bindgen]
pub fn plan(request: &str) -> String {
    let r = PlanRequest::decode(request);
    let manifest = optional(r.manifest).and_then(ManifestState::from_line);
    let identity = (r.identity == YES).then(|| ClientFacts {
        cookie_header: None,
        user_key: optional(r.user_key),
        ja4: optional(r.ja4),
        ja3_hash: optional(r.ja3_hash),
        client_ip: optional(r.identity_client_ip),
    });
    let req = AssetRequest {
        method: r.method,
        url: r.url,
        now_ms: epoch_ms(r.now_ms),
        config_read: r.config_read == YES,
        cookie: optional(r.cookie),
        override_token: optional(r.override_token),
        client_ip: optional(r.client_ip),
        signed_user_key: optional(r.signed_user_key).zip(optional(r.user_key_signature)),
        referer: optional(r.referer),
        manifest: manifest.as_ref(),
    };
    with_edge(
        |edge| {
            let step = edge.plan(&req, identity.as_ref(), random_u64);
            encode(edge, step, req.now_ms)
        },
        |e| failure(&EdgeError::Misconfigured(e.clone())),
    )
}

/// Records a config read issued at `issued_ms`: `kind` is one of [`CONFIG_READS`] (with
/// the value, or the failure's detail, in `text`). Returns [`ConfigLog`].
#[wasm_bindgen]
pub fn record_config(bundle: &str, kind: &str, text: &str, issued_ms: f64) -> String {
    let Ok(bundle) = BundleName::parse(bundle) else {
        return String::new();
    };
    let read = store_read(kind, text);
    let log = with_edge(
        |edge| {
            edge.record_config(&bundle, read, issued_ms)
                .map(|log| log.to_json())
                .unwrap_or_default()
        },
        |_| String::new(),
    );
    ConfigLog { log_line: &log }.encode()
}

/// A read of KV or R2 as the entry module reports it: `kind` one of [`CONFIG_READS`], with
/// the value, or the failure's detail, in `text`.
fn store_read(kind: &str, text: &str) -> KvRead {
    match CONFIG_READS.by_name(kind) {
        Some(read) => read(text),
        // Anything the entry module should never send: a failed read.
        None => KvRead::Failed(text.to_owned()),
    }
}

/// Records a read of `bundle`'s `version`'s manifest: `kind` is one of [`CONFIG_READS`]
/// (with the object's text, or the failure's detail, in `text`). Returns [`ManifestRead`],
/// for the entry to give back to [`plan`] or [`canary_miss`].
#[wasm_bindgen]
pub fn record_manifest(bundle: &str, version: &str, kind: &str, text: &str) -> String {
    let (Ok(bundle), Ok(version)) = (BundleName::parse(bundle), Version::parse(version)) else {
        // Anything the entry module should never send: nothing known.
        return ManifestRead {
            state: &ManifestState::Failed("not a bundle and version".into()).line(),
        }
        .encode();
    };
    let read = store_read(kind, text);
    let state = with_edge(
        |edge| edge.record_manifest(&bundle, &version, read),
        |_| ManifestState::Failed("the worker is misconfigured".into()),
    );
    ManifestRead {
        state: &state.line(),
    }
    .encode()
}

/// A floating canary request's file (`object_key`) could not be loaded (`r2_detail`: R2's
/// failure, empty when the file is absent) and stable's copy was: whether the miss counts
/// against the canary. `manifest`: `-`, or after an `M` answer `+` and what
/// [`record_manifest`] answered. Answers `M` [`NeedManifest`] or `V` [`MissJudged`].
#[wasm_bindgen]
pub fn canary_miss(
    bundle: &str,
    version: &str,
    object_key: &str,
    r2_detail: &str,
    manifest: &str,
) -> String {
    // What the entry module should never meet (a name it did not get from the router, a
    // misconfigured router, which plans no asset): not counted.
    let unjudged = |why: &str| {
        MissStep::Judged(canary_core::edge::miss::MissRule {
            counted: false,
            reason: "manifest_read_failed",
            detail: Some(why.into()),
        })
    };
    let step = match (BundleName::parse(bundle), Version::parse(version)) {
        (Ok(bundle), Ok(version)) => {
            let state = optional(manifest).and_then(ManifestState::from_line);
            with_edge(
                |edge| edge.canary_miss(&bundle, &version, object_key, r2_detail, state.as_ref()),
                |_| unjudged("the worker is misconfigured"),
            )
        }
        _ => unjudged("not a bundle and version"),
    };
    match step {
        MissStep::ReadManifest { key } => NeedManifest {
            bundle,
            version,
            manifest_key: &key,
        }
        .encode(),
        MissStep::Judged(rule) => MissJudged {
            counted: flag(rule.counted),
            reason: rule.reason,
            detail: rule.detail.as_deref().unwrap_or(""),
        }
        .encode(),
    }
}

/// Records a config the control plane pushed for `bundle` (a [`PushedConfig`]: the answer
/// of the bundle's aggregator to a batch or a revision check), at `now_ms`: served from now
/// on when its revision is above every one this isolate has seen for the bundle (the order:
/// `canary_core::edge::rollouts`). Returns whether it was taken (the entry has nothing to do
/// either way). Not on a request's path: the entry calls it when an answer arrives.
#[wasm_bindgen]
pub fn pushed_config(bundle: &str, message: &str, now_ms: f64) -> bool {
    let m = PushedConfig::decode(message);
    let (Ok(bundle), Ok(revision)) = (BundleName::parse(bundle), m.revision.parse::<u64>()) else {
        // Anything the entry module should never send: nothing taken.
        return false;
    };
    with_edge(
        |edge| edge.pushed_config(&bundle, revision, m.config, now_ms),
        |_| false,
    )
}

/// Counts a served floating request (the handle of its plan's tally, `A`'s `tally`, given
/// back whatever was served); `outcome` is what was served, an index into
/// [`SERVED_OUTCOMES`]: the routed version's file, stable's after a fallback that counts
/// against the canary (R2 failed, or a file the canary published is missing), stable's after
/// a plain fallback (a file the canary never had), or nothing (the last two count nothing).
/// Returns when the outbox's next batch falls due (ms since the epoch; 0: nothing
/// pending): the entry's timer takes it with [`report::flush`]. Numbers only, each way: this
/// runs on every counted request.
#[wasm_bindgen]
pub fn served(tally: f64, outcome: u8, now_ms: f64) -> f64 {
    let outcome = SERVED_OUTCOMES
        .at(usize::from(outcome))
        // Anything the entry module should never send: count nothing.
        .unwrap_or(Served::NotServed);
    // A handle is a whole number below 2^53 (exact in an f64); anything else is none of ours.
    let handle = if tally.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER).contains(&tally) {
        tally as u64
    } else {
        u64::MAX
    };
    with_edge(|edge| due_ms(edge.served(handle, outcome, now_ms)), |_| 0.0)
}

/// JavaScript's largest exact integer (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A due time for the entry: whole ms, 0 for none.
fn due_ms(due: Option<f64>) -> f64 {
    due.map_or(0.0, |ms| ms.max(1.0).ceil())
}

/// [`Batches`]: the outbox's next due time, then `batches`.
fn batches_answer(
    edge: &Edge,
    batches: Vec<(BundleName, canary_core::health::counts::Batch)>,
) -> String {
    let mut pairs = String::new();
    for (bundle, batch) in batches {
        if let Ok(body) = serde_json::to_string(&batch) {
            push_pair(&mut pairs, bundle.as_str(), &body);
        }
    }
    // Whole ms, formatted as an integer (float formatting would add its code here).
    let next = edge
        .next_flush_ms()
        .map(|ms| text::decimal(ms.max(0.0).ceil() as u64))
        .unwrap_or_default();
    Batches {
        next_flush_ms: &next,
    }
    .encode_with(&pairs)
}

/// The `E` answer ([`Failure`]) for a file that could not be loaded: absent when `detail`
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
    canary_core::edge::http::etag_matches(if_none_match, etag)
}

/// `+value` is a value, anything else (`-`) none.
fn optional(line: &str) -> Option<&str> {
    line.strip_prefix('+')
}

fn flag(on: bool) -> &'static str {
    if on {
        YES
    } else {
        NO
    }
}

/// One pair of a [`Tail::Pairs`] message, in its format's order.
fn push_pair(out: &mut String, first: &str, second: &str) {
    out.push_str(first);
    out.push('\n');
    out.push_str(second);
    out.push('\n');
}

/// Random bytes, drawn from `crypto.getRandomValues` 256 at a time: one wasm→JS crossing
/// per 32 values instead of one per value (a first visit draws two: its client id and,
/// without an identity, its cohort). Each value is handed out once.
struct RandomPool {
    at: usize,
    bytes: [u8; 256],
}

thread_local! {
    static RANDOM: RefCell<RandomPool> = const {
        RefCell::new(RandomPool { at: 256, bytes: [0; 256] })
    };
}

fn random_u64() -> u64 {
    RANDOM.with(|cell| {
        let mut pool = cell.borrow_mut();
        if pool.at + 8 > pool.bytes.len() {
            // getrandom on Workers is crypto.getRandomValues, which does not fail; if it
            // ever did, the values would still yield valid cohorts.
            let _ = getrandom::fill(&mut pool.bytes);
            pool.at = 0;
        }
        let at = pool.at;
        pool.at += 8;
        let mut value = [0u8; 8];
        value.copy_from_slice(&pool.bytes[at..at + 8]);
        u64::from_le_bytes(value)
    })
}

/// `now_ms`: when the plan was made (a tally is held from then).
fn encode(edge: &mut Edge, step: Step, now_ms: f64) -> String {
    match step {
        Step::Ops => Ops.encode(),
        Step::Report => ReportRoute.encode(),
        Step::ReadConfig {
            bundle,
            kv_key,
            timeout_ms,
        } => ReadConfig {
            bundle: bundle.as_str(),
            kv_key: &kv_key,
            timeout_ms: &timeout_ms.to_string(),
        }
        .encode(),
        Step::NeedIdentity => NeedIdentity {
            user_key_header: &edge.settings.user_key_header,
        }
        .encode(),
        Step::ReadManifest {
            bundle,
            version,
            key,
        } => NeedManifest {
            bundle: bundle.as_str(),
            version: version.as_str(),
            manifest_key: &key,
        }
        .encode(),
        Step::Fail(e) => failure(&e),
        Step::Serve(mut plan) => {
            let tally = plan.tally.take().map(|t| edge.hold(t, now_ms));
            encode_plan(&plan, tally)
        }
    }
}

/// `tally`: the handle its tally is held as.
fn encode_plan(p: &AssetPlan, tally: Option<u64>) -> String {
    let (fallback_version, fallback_cache_key, fallback_object_key) = match &p.fallback {
        Some((v, load)) => (
            v.as_str(),
            load.cache_key.as_str(),
            load.object_key.as_str(),
        ),
        None => ("", "", ""),
    };
    Asset {
        bundle: p.bundle.as_str(),
        head: flag(p.head),
        default_content_type: p.default_content_type,
        version: p.version.as_str(),
        channel: p.channel.map_or("", |c| c.as_str()),
        cache_key: &p.load.cache_key,
        object_key: &p.load.object_key,
        fallback_version,
        fallback_cache_key,
        fallback_object_key,
        tally: &tally.map(text::decimal).unwrap_or_default(),
        serving_canary: flag(p.serving_canary),
    }
    .encode_with(p.headers.as_str())
}

/// [`Failure`]: the log line only for 5xx.
fn failure(e: &EdgeError) -> String {
    let (header_name, header_value) = e.extra_header().unwrap_or(("", ""));
    let log_line = LogLine::for_error(e)
        .map(|l| l.to_json())
        .unwrap_or_default();
    Failure {
        status: &e.status().to_string(),
        header_name,
        header_value,
        log_line: &log_line,
        message: &e.public_message(),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `text` fit `format` (see the module's docs).
    fn fits(format: &Format, text: &str) -> bool {
        let lines: Vec<&str> = text.split('\n').collect();
        let n = format.fields.len();
        match format.tail {
            Tail::End => lines.len() == n,
            Tail::Rest => lines.len() >= n,
            Tail::Pairs(..) => {
                lines.len() > n && (lines.len() - n) % 2 == 1 && lines.last() == Some(&"")
            }
        }
    }

    #[test]
    fn answers_start_with_their_kind_and_fit_their_format() {
        let ops = Ops.encode();
        assert_eq!(ops, "O");
        assert!(fits(&Ops::FORMAT, &ops));
        let c = ReadConfig {
            bundle: "demo",
            kv_key: "rollout/demo",
            timeout_ms: "1000",
        }
        .encode();
        assert_eq!(c, "C\ndemo\nrollout/demo\n1000");
        assert!(fits(&ReadConfig::FORMAT, &c));
        let e = Failure {
            status: "404",
            header_name: "",
            header_value: "",
            log_line: "",
            message: "not found:\ntwo lines",
        }
        .encode();
        assert!(e.starts_with("E\n404\n\n\n\nnot found:"));
        assert!(fits(&Failure::FORMAT, &e));
        let a = Asset {
            bundle: "demo",
            head: NO,
            default_content_type: "text/javascript",
            version: "1.1.0",
            channel: "canary",
            cache_key: "https://edge/demo@1.1.0/sdk.js",
            object_key: "demo/1.1.0/sdk.js",
            fallback_version: "",
            fallback_cache_key: "",
            fallback_object_key: "",
            tally: "",
            serving_canary: YES,
        };
        for headers in ["", "cache-control\nno-store\n", "a\n1\nb\n2\n"] {
            let text = a.encode_with(headers);
            assert!(fits(&Asset::FORMAT, &text), "{text:?}");
            assert!(text.ends_with(&format!("\n\n{YES}\n{headers}")));
        }
        let answers = [
            Ops::FORMAT,
            ReportRoute::FORMAT,
            ReadConfig::FORMAT,
            NeedIdentity::FORMAT,
            NeedManifest::FORMAT,
            Failure::FORMAT,
            Asset::FORMAT,
            MissJudged::FORMAT,
        ];
        for format in answers {
            assert_eq!(format.fields[0], "kind");
            assert_eq!(format.kind.map(str::len), Some(1));
        }
    }

    #[test]
    fn the_request_is_read_by_name_in_table_order() {
        let fields = PlanRequest::FORMAT.fields;
        let text = fields.join("\n");
        let r = PlanRequest::decode(&text);
        let read = [
            r.method,
            r.url,
            r.now_ms,
            r.config_read,
            r.cookie,
            r.override_token,
            r.client_ip,
            r.user_key_signature,
            r.signed_user_key,
            r.referer,
            r.identity,
            r.user_key,
            r.ja4,
            r.ja3_hash,
            r.identity_client_ip,
            r.manifest,
        ];
        assert_eq!(read, fields);
        // A short request reads the missing lines as empty.
        assert_eq!(PlanRequest::decode("GET").identity_client_ip, "");
    }

    #[test]
    fn random_values_are_handed_out_once_across_refills() {
        // 100 values: three refills of the pool; 64 random bits each never repeat here.
        let values: std::collections::HashSet<u64> = (0..100).map(|_| random_u64()).collect();
        assert_eq!(values.len(), 100);
    }

    #[test]
    fn the_exported_table_is_json_with_every_message() {
        let table: serde_json::Value = serde_json::from_str(&protocol()).unwrap();
        for key in [
            "plan",
            "answers",
            "record_config",
            "batches",
            "miss",
            "constants",
            "served_outcomes",
            "config_reads",
            "report",
            "report_answers",
            "pushed_config",
            "record_manifest",
            "canary_miss",
        ] {
            assert!(table.get(key).is_some(), "{key}");
        }
        assert_eq!(table["answers"]["A"]["fields"][1], "bundle");
        assert_eq!(table["answers"]["A"]["pairs"][0], "name");
        assert_eq!(table["answers"]["E"]["rest"], true);
        assert_eq!(table["miss"], table["answers"]["E"]);
        assert_eq!(table["batches"]["fields"][0], "next_flush_ms");
        assert_eq!(table["report_answers"]["K"]["fields"][0], "kind");
        assert_eq!(table["served_outcomes"][1], "counted_fallback");
        assert_eq!(table["pushed_config"]["fields"][1], "config");
        assert_eq!(table["pushed_config"]["rest"], true);
        assert_eq!(
            table["answers"]["A"]["fields"]
                .as_array()
                .and_then(|f| f.last()),
            Some(&serde_json::json!("serving_canary"))
        );
        assert_eq!(
            table["plan"]["fields"].as_array().map(Vec::len),
            Some(PlanRequest::FORMAT.fields.len())
        );
    }

    #[test]
    fn served_and_record_config_fit_their_formats_unconfigured() {
        // Without configure(): nothing to count, nothing to log.
        assert_eq!(served(0.0, 0, 0.0), 0.0);
        assert!(fits(&Batches::FORMAT, &report::flush(0.0)));
        assert!(fits(
            &ConfigLog::FORMAT,
            &record_config("demo", "value", "{}", 0.0)
        ));
        let mut pairs = String::new();
        push_pair(&mut pairs, "demo", "{}");
        let batches = Batches {
            next_flush_ms: "1800000001000",
        };
        assert!(fits(&Batches::FORMAT, &batches.encode_with(&pairs)));
        assert!(fits(&Batches::FORMAT, &batches.encode()));
    }

    #[test]
    fn a_pushed_config_is_read_as_an_aggregator_answers_it() {
        // What `health::coalesce::ConfigPush::message` writes: the revision, then the text,
        // which may hold newlines.
        let push = canary_core::health::coalesce::ConfigPush {
            revision: 12,
            text: "{\"stable\": \"1.0.0\",\n \"weight\": 0}\n".into(),
        };
        let message = push.message();
        let m = PushedConfig::decode(&message);
        assert_eq!((m.revision, m.config), ("12", push.text.as_str()));
        // Unconfigured, or not a push: nothing taken.
        for message in [message.as_str(), "x\n{}", ""] {
            assert!(!pushed_config("demo", message, 0.0));
        }
    }
}
