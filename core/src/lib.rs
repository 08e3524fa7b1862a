//! canary-core: every decision canary-edge makes, with no runtime dependency, so that
//! `cargo test` runs it natively and the fuzzers and benchmarks call exactly what the
//! worker runs. The worker crate (`canary-edge`, the repository root) is the only code that
//! touches the `worker` crate; it gathers facts, does I/O and applies these decisions.
//!
//! Four folders, and the ground they stand on:
//!
//! - [`edge`]: the edge's decisions, what every SDK request runs: routes, cohorts, the
//!   cookie, the routing decision, the per-isolate configs, an asset request and an SDK
//!   report as a plan;
//! - [`health`]: the count path between the edge and the control plane: the batches the
//!   edge fills and sends, the aggregators' merge, the monitor's intake;
//! - [`control`]: the control plane of a bundle as one state machine (health, rollback,
//!   progressive rollout, KV projection) and the object's contract;
//! - [`ops`]: operators and auth: the admin API's requests, operators and their tokens,
//!   the console's sessions, what every operations request needs, publishing.
//!
//! The edge and the machine meet only through [`health`]'s types: nothing in [`edge`]
//! names [`control`], and nothing in [`control`] names [`edge`]. [`health`] names neither.
//!
//! The shared ground, which every folder uses and which uses none of them:
//!
//! - [`config`] parses and validates the KV rollout config (and its `health` and
//!   `progression` settings);
//! - [`settings`] reads the deployment vars; [`error`] maps failures to statuses;
//! - [`log`] is the structured log line both runtime adapters write;
//! - [`keyed`] is the keyed hash of client ids and networks;
//! - [`kv`] is what a KV read returned, as both the edge and the machine read it;
//! - [`manifest`] is a version's manifest (its files) and where R2 keeps it;
//! - [`time`] writes milliseconds as ISO 8601.

pub mod config;
pub mod control;
pub mod edge;
pub mod error;
pub mod health;
pub mod keyed;
pub mod kv;
pub mod log;
pub mod manifest;
pub mod ops;
pub mod settings;
pub mod time;
