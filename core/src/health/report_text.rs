//! An error report's text on its way to the control plane: the report's kind, `message`
//! and optional `stack`, as the edge admitted them (bounded there: the edge's `report`,
//! `MESSAGE_MAX_BYTES`, `STACK_MAX_BYTES`), sent in the batch beside its
//! failure event. Raw: the edge neither normalises nor hashes it (the routing wasm stays
//! small); the control plane makes it a signature (`signatures`).

use serde::{Deserialize, Serialize};

use super::counts::hex_u64;

/// Texts a batch carries at most (an isolate's, and an aggregator's merged forward): past
/// it, failures still count, without their text.
pub const TEXTS_PER_BATCH: usize = 500;

/// One client's error text, in [`Batch::reports`](super::counts::Batch::reports). Ids and
/// networks as in `ClientEvent`: hex text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportText {
    #[serde(with = "hex_u64")]
    pub client: u64,
    /// The network the report came from (keyed, as the event's).
    #[serde(with = "hex_u64", default)]
    pub network: u64,
    pub canary: bool,
    /// The report's kind (`[a-z0-9_]{1,32}`, checked at the edge).
    pub kind: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub stack: Option<String>,
}

/// What a newline of a report's text becomes on its way to the control plane (ASCII's
/// record separator: one byte, as the newline).
pub const LINE_SEPARATOR: char = '\u{1e}';

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
