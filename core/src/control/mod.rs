//! The control plane of a bundle: health counts, the rollback rule, progressive rollouts,
//! and the rules for projecting the authoritative config to KV, run as one state machine
//! (`machine::step`). Pure: time, counts and I/O outcomes are arguments; the Durable Object
//! in the worker crate only runs the machine and carries out its effects.
//!
//! - `machine`: `step(state, event, now) -> (state, effects)`, the state and its events and
//!   effects; its concerns in `adoption` (KV reads), `health` (batches, the cut),
//!   `stepping` (the alarm, steps), `commands` (admin writes), `writes` (one shape for a
//!   change, and its write);
//! - `driver`: runs the machine against a host's I/O (the Durable Object, the tests);
//! - `windows`: distinct clients per channel in windows (of the batches the edge sends,
//!   [`health`](crate::health));
//! - `tracker`: the step's clients one by one (loads, boots, failures, per-network cap);
//! - `verdict`: the sequential tests behind cut, pass and hold;
//! - `health`: also the verdict kept with a cut (`Cut`), while the cut canary stays dark;
//! - `progress`: a progressive rollout, bound to its canary, and a release's timeline;
//! - `projection`: KV write pacing, revisions, stale reads, retries;
//! - `history`: what happened, bounded;
//! - `notify`: webhooks, what the machine tells a team (`Effect::Notify`) and its formats;
//! - `status`: the admin view of the state, as JSON;
//! - `signatures`: what the control plane makes of an error report's text (normalised,
//!   keyed, counted per step and channel, new in the canary);
//! - `minutes`: the last 24 hours minute by minute; `outlook`: when a waiting step will
//!   decide;
//! - `wire`: the object's contract, its routes and messages (the batches' types are
//!   [`health`](crate::health)'s).

mod adoption;
mod commands;
pub mod driver;
pub mod health;
pub mod history;
pub mod machine;
pub mod minutes;
pub mod notify;
pub mod outlook;
pub mod progress;
pub mod projection;
pub mod signatures;
pub mod status;
mod stepping;
pub mod timeline;
pub mod tracker;
pub mod verdict;
pub mod windows;
pub mod wire;
pub mod writes;

pub use machine::{step, CommandRequest, Control, Effect, Event, Reply, WriteOutcome};

#[cfg(test)]
mod tests;
