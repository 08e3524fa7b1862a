//! The wasm module of the bundles' `HealthAggregator` objects: the merge of many isolates'
//! health batches (`canary_core::health::coalesce`) behind four functions, and what the
//! aggregator knows of the bundle's config (`coalesce::ConfigRelay`) behind three, for the
//! class in `js/health-aggregator.js` (the control Worker's), which does the waits and the
//! calls. One coalescer per aggregator object, kept in this module's memory between its
//! requests and dropped once nothing is pending or in flight; one relay per aggregator
//! object, kept while the object lives (at most [`MAX_RELAYS`] per isolate).

use std::cell::RefCell;
use std::collections::HashMap;

use canary_core::config::BundleName;
use canary_core::health::coalesce::{Coalescer, ConfigRelay};
use wasm_bindgen::prelude::wasm_bindgen;

/// Relays kept per isolate (one per aggregator object it runs): past it, the oldest
/// object's is dropped (it asks the monitor again on its next check).
pub const MAX_RELAYS: usize = 1_024;

thread_local! {
    static COALESCERS: RefCell<HashMap<String, Coalescer>> = RefCell::new(HashMap::new());
    /// The relays by object id, with the order they were made in (to drop the oldest).
    static RELAYS: RefCell<(HashMap<String, ConfigRelay>, Vec<String>)> =
        RefCell::new((HashMap::new(), Vec::new()));
}

/// The HealthMonitor's contract as the aggregator's JS needs it (`control::wire`), one per
/// line: the forward's URL, the header naming the bundle, the config ask's URL.
#[wasm_bindgen]
pub fn contract() -> String {
    use canary_core::control::wire;
    format!(
        "{origin}{ingest}\n{header}\n{origin}{config}",
        origin = wire::ORIGIN,
        ingest = wire::INGEST,
        header = wire::BUNDLE_HEADER,
        config = wire::CONFIG,
    )
}

/// Merges an isolate's batch (`body`, JSON) for `bundle` into the pending forward of the
/// aggregator object `object` (its id). Returns how many ms to wait before [`forward`];
/// throws why it refused the batch.
#[wasm_bindgen]
pub fn aggregate(object: &str, bundle: &str, body: &str, now_ms: f64) -> Result<f64, String> {
    COALESCERS.with(|cell| {
        let mut map = cell.borrow_mut();
        let coalescer = match map.get_mut(object) {
            Some(c) => c,
            None => {
                let name = BundleName::parse(bundle).map_err(|e| e.to_string())?;
                map.entry(object.to_owned()).or_insert(Coalescer::new(name))
            }
        };
        coalescer
            .add(bundle, body, now_ms)
            .map(f64::ceil)
            .map_err(|refusal| refusal.to_string())
    })
}

/// Takes what `object` merged, as the next forward to the bundle's object: its number (for
/// [`settle`]), a newline, and its JSON body (which holds no raw newline); empty when
/// nothing is pending.
#[wasm_bindgen]
pub fn forward(object: &str, now_ms: f64) -> String {
    let out = COALESCERS.with(|cell| {
        let mut map = cell.borrow_mut();
        let out = map.get_mut(object).and_then(|c| c.take(now_ms));
        if map.get(object).is_some_and(Coalescer::is_idle) {
            map.remove(object);
        }
        out
    });
    match out {
        Some(out) => format!("{}\n{}", out.seq, out.body),
        None => String::new(),
    }
}

/// The outcome of forward `seq` of `object`; a failed one rides on the next forward.
/// Returns how many batches were given up after their last attempt.
#[wasm_bindgen]
pub fn settle(object: &str, seq: &str, delivered: bool) -> u32 {
    let Ok(seq) = seq.parse::<u64>() else {
        return 0;
    };
    COALESCERS.with(|cell| {
        let mut map = cell.borrow_mut();
        let Some(coalescer) = map.get_mut(object) else {
            return 0;
        };
        let given_up = coalescer.settle(seq, delivered);
        if coalescer.is_idle() {
            map.remove(object);
        }
        given_up
    })
}

/// How long until `object` may forward the batches waiting (after a failed forward); -1
/// when none wait.
#[wasm_bindgen]
pub fn retry_in(object: &str, now_ms: f64) -> f64 {
    COALESCERS.with(|cell| match cell.borrow().get(object) {
        Some(c) if !c.is_empty() => c.wait_ms(now_ms).ceil(),
        _ => -1.0,
    })
}

/// Runs `f` on the relay of aggregator object `object` for `bundle` (made on first use);
/// refuses another bundle than the object's.
fn with_relay<T>(
    object: &str,
    bundle: &str,
    f: impl FnOnce(&mut ConfigRelay) -> T,
) -> Result<T, String> {
    RELAYS.with(|cell| {
        let (map, order) = &mut *cell.borrow_mut();
        if !map.contains_key(object) {
            let name = BundleName::parse(bundle).map_err(|e| e.to_string())?;
            if map.len() >= MAX_RELAYS && !order.is_empty() {
                map.remove(&order.remove(0));
            }
            map.insert(object.to_owned(), ConfigRelay::new(name));
            order.push(object.to_owned());
        }
        let relay = map.get_mut(object).ok_or("no relay")?;
        relay.check_bundle(bundle).map_err(|r| r.to_string())?;
        Ok(f(relay))
    })
}

/// An isolate's revision check of `bundle` at aggregator `object`: whether to ask the
/// monitor first (what the object knows is older than `CONFIG_FRESH_MS` and it has not
/// asked within `CONFIG_ASK_EVERY_MS`; a `true` counts as the ask). Throws when the object
/// serves another bundle.
#[wasm_bindgen]
pub fn config_ask(object: &str, bundle: &str, now_ms: f64) -> Result<bool, String> {
    with_relay(object, bundle, |relay| relay.ask(now_ms))
}

/// Learns the config in a monitor's answer (`answer`: the JSON of a forward's answer or of
/// a config check's) for `object`. Returns whether it was taken.
#[wasm_bindgen]
pub fn config_learn(object: &str, bundle: &str, answer: &str, now_ms: f64) -> bool {
    with_relay(object, bundle, |relay| relay.learn(answer, now_ms)).unwrap_or(false)
}

/// The config `object` knows, as isolates are answered (`ConfigPush::message`: the
/// revision, a newline, the KV text); empty when it knows none.
#[wasm_bindgen]
pub fn config_known(object: &str) -> String {
    RELAYS.with(|cell| {
        cell.borrow()
            .0
            .get(object)
            .map(ConfigRelay::message)
            .unwrap_or_default()
    })
}
