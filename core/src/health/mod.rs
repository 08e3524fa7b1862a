//! The count path between the edge and the control plane: what an isolate counts, how it
//! travels (an isolate's batch, an aggregator's merged forward, the monitor's intake) and
//! the config that rides back on the answers. Both sides use these types; this folder
//! names neither of them (nor the operators' folder): it stands on the shared ground only.
//!
//! - `counts`: the batch on the wire: distinct clients per channel, each client's signal
//!   ([`Signal`](counts::Signal), [`ClientEvent`](counts::ClientEvent)), the counts made of
//!   them;
//! - `clients`: distinct clients, exact up to a cap then a HyperLogLog sketch;
//! - `report_text`: an error report's text on the wire;
//! - `batching`: the edge side, counts an isolate has not sent yet
//!   ([`Outbox`](batching::Outbox), [`Tally`](batching::Tally));
//! - `coalesce`: the aggregators' merge of isolates' batches into one forward, and the
//!   config they relay back ([`ConfigPush`](coalesce::ConfigPush));
//! - `intake`: the monitor's side of a forward.

pub mod batching;
pub mod clients;
pub mod coalesce;
pub mod counts;
pub mod intake;
pub mod report_text;
