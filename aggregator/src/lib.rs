//! The wasm module of the bundles' `HealthAggregator` objects: the merge of many isolates'
//! health batches (`canary_core::control::coalesce`) behind four functions, for the class
//! in `js/index.js`, which does the waits and the calls (through `js/aggregator.js`, which
//! loads this module on an aggregator's first request: the routing module stays small).
//! One coalescer per aggregator object, kept in this module's memory between its requests
//! and dropped once nothing is pending or in flight.

use std::cell::RefCell;
use std::collections::HashMap;

use canary_core::config::BundleName;
use canary_core::control::coalesce::Coalescer;
use wasm_bindgen::prelude::wasm_bindgen;

thread_local! {
    static COALESCERS: RefCell<HashMap<String, Coalescer>> = RefCell::new(HashMap::new());
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
