//! One driver for the machine: steps an event, carries out its effects through a [`Host`]
//! (read and write KV, set the alarm, log, the time) and feeds their outcomes back, until
//! nothing is left to do. The Durable Object is one host, the tests' simulated KV another:
//! both run this loop, so the tests drive the production loop, faults included.

use std::collections::VecDeque;
use std::future::Future;

use super::machine::{step, ConfigWrite, Control, Effect, Event, Reply, WriteOutcome};
use super::notify::Notification;
use crate::kv::KvRead;
use crate::log::LogLine;

/// The I/O the machine's effects need.
pub trait Host {
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> f64;
    /// What KV holds for the bundle.
    fn read_kv(&mut self) -> impl Future<Output = KvRead>;
    /// Writes the config, no earlier than `write.not_before_ms`.
    fn write_kv(&mut self, write: &ConfigWrite) -> impl Future<Output = WriteOutcome>;
    fn set_alarm(&mut self, at_ms: f64) -> impl Future<Output = ()>;
    fn log(&mut self, line: LogLine);
    /// Keeps a notification for delivery once the state is committed (never delivered
    /// before: a receiver never delays a decision or a write).
    fn notify(&mut self, notification: Notification);
}

/// Runs `event` and every effect it leads to; returns the state to commit and the
/// command's reply, if any. Leaves nothing in flight: every write is settled and every read
/// the machine asked for is done.
pub async fn run<H: Host>(host: &mut H, state: Control, event: Event) -> (Control, Option<Reply>) {
    let (mut state, effects) = step(state, event, host.now_ms());
    let mut queue: VecDeque<Effect> = effects.into();
    let mut reply = None;
    while let Some(effect) = queue.pop_front() {
        let outcome = match effect {
            Effect::ReadKv => Event::KvRead(host.read_kv().await),
            Effect::WriteConfig(write) => Event::Written(host.write_kv(&write).await),
            Effect::SetAlarm(at) => {
                host.set_alarm(at).await;
                continue;
            }
            Effect::Log(line) => {
                host.log(line);
                continue;
            }
            Effect::Notify(n) => {
                host.notify(*n);
                continue;
            }
            Effect::Reply(r) => {
                reply = Some(r);
                continue;
            }
        };
        let (next, more) = step(state, outcome, host.now_ms());
        state = next;
        queue.extend(more);
    }
    debug_assert!(state.inflight.is_none() && state.pending.is_none());
    (state, reply)
}
