//! The edge's decisions: what every SDK request runs (the routing wasm, `router/`), and
//! what the worker's operations module reuses of it. Counts leave through
//! [`health`](crate::health) only; nothing here names the control plane.
//!
//! - [`route`] parses request paths into assets and R2 keys;
//! - [`cohort`] buckets identities into cohorts and picks the canary cohorts;
//! - [`cookie`] signs and verifies the sticky cohort cookie;
//! - [`decide`] makes the routing decision;
//! - [`rollouts`] keeps the per-isolate copy of configs (TTL, last good config);
//! - [`override_token`] and [`user_key`] verify what a merchant signed (an override, a
//!   user key);
//! - [`report`] parses and admits what browsers report;
//! - [`http`] holds content types, cache policies and conditional requests;
//! - [`text`] writes numbers into strings without `core::fmt` (the request path);
//! - [`serve`] is an asset request (and a report, `serve/report.rs`) as a plan (the
//!   routing module runs it).

pub mod cohort;
pub mod cookie;
pub mod decide;
pub mod http;
pub mod miss;
pub mod override_token;
pub mod report;
pub mod rollouts;
pub mod route;
pub mod serve;
pub mod text;
pub mod user_key;
