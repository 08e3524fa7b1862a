//! canary-core: every decision canary-edge makes, with no runtime dependency, so that
//! `cargo test` runs it natively and the fuzzers and benchmarks call exactly what the
//! worker runs. The worker crate (`canary-edge`, the repository root) is the only code that
//! touches the `worker` crate; it gathers facts, does I/O and applies these decisions.
//!
//! - [`route`] parses request paths into assets and R2 keys;
//! - [`config`] parses and validates the KV rollout config (and its `health` and
//!   `progression` settings);
//! - [`cohort`] buckets identities into cohorts and picks the canary cohorts;
//! - [`cookie`] signs and verifies the sticky cohort cookie;
//! - [`decide`] makes the routing decision;
//! - [`rollouts`] keeps the per-isolate copy of configs (TTL, last good config);
//! - [`control`] is the control plane of a bundle as one state machine (health, rollback,
//!   progressive rollout, KV projection);
//! - [`admin`], [`override_token`], [`report`] parse what operators and browsers send;
//! - [`http`] holds content types, cache policies and conditional requests;
//! - [`log`] is the structured log line both runtime adapters write;
//! - [`serve`] is an asset request as a plan (the routing module runs it);
//! - [`session`] signs the operator console's session cookie; [`credential`] binds it to
//!   what it was started with; [`revocation`] ends it on the server;
//! - [`authz`] says what every operations request needs (scope, console-page check, CSRF
//!   token, an existing bundle); [`body`] reads request bodies with a cap;
//! - [`publish`] names what a publish writes besides its files (manifest, claim) and why
//!   one is refused;
//! - [`settings`] reads the deployment vars; [`error`] maps failures to statuses.

#[cfg(feature = "access")]
pub mod access;
pub mod admin;
pub mod authz;
pub mod body;
pub mod cohort;
pub mod config;
pub mod control;
pub mod cookie;
pub mod credential;
pub mod decide;
pub mod error;
pub mod http;
pub mod keyed;
pub mod log;
pub mod operators;
pub mod override_token;
pub mod publish;
pub mod report;
pub mod revocation;
pub mod rollouts;
pub mod route;
pub mod serve;
pub mod session;
pub mod settings;
pub mod user_key;
