//! Table tests of the control plane's state machine, driven by the Durable Object's own
//! loop (`driver::run`) against a simulated host (`Sim`): a KV that can fail, be stale or
//! be written by someone else, an alarm, a clock.

use serde_json::json;

use super::driver::{self, Host};
use super::machine::{CommandRequest, ConfigWrite, Control, Event, Reply, WriteOutcome};
use super::notify::Notification;
use super::progress::ProgressState;
use super::projection::STALE_HORIZON_MS;
use crate::config::{BundleName, Rollout, Version, Weight};
use crate::health::counts::{Batch, ChannelCounts, Clients};
use crate::health::counts::{ClientEvent, Signal};
use crate::kv::KvRead;
use crate::log::LogLine;
use crate::ops::admin::{parse_request, Command};

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// The Durable Object's loop around the machine, with a KV that does what it is told.
struct Sim {
    state: Control,
    now: f64,
    /// What KV holds.
    kv: Option<String>,
    /// What a KV read returns instead of `kv`, when set (a stale location).
    stale_read: Option<String>,
    /// Fail the next N writes with this message.
    fail_writes: u32,
    fail_with: &'static str,
    /// (time, text) of every successful write.
    writes: Vec<(f64, String)>,
    logs: Vec<(&'static str, serde_json::Value)>,
    alarm: Option<f64>,
    /// Client ids handed out by `batch`.
    next_client: u64,
    /// KV reads the machine asked for.
    kv_reads: u32,
    /// Every notification, in order.
    notified: Vec<Notification>,
}

impl Sim {
    fn new(config: serde_json::Value, cohorts: u16) -> Self {
        let mut sim = Self {
            state: Control::new(BundleName::parse("demo").unwrap(), cohorts),
            now: 1_000_000.0,
            kv: Some(config.to_string()),
            stale_read: None,
            fail_writes: 0,
            fail_with: "KV PUT failed: 429 Too Many Requests",
            writes: vec![],
            logs: vec![],
            alarm: None,
            next_client: 0,
            kv_reads: 0,
            notified: vec![],
        };
        sim.read_kv();
        sim
    }

    fn read_kv(&mut self) {
        let read = self.kv_now();
        self.send(Event::KvRead(read));
    }

    fn kv_now(&self) -> KvRead {
        match self.stale_read.clone().or_else(|| self.kv.clone()) {
            Some(text) => KvRead::Value(text),
            None => KvRead::Missing,
        }
    }

    /// One event as the Durable Object handles it, through the production driver; returns
    /// the reply, if any.
    fn send(&mut self, event: Event) -> Option<Reply> {
        let state = self.state.clone();
        let (state, reply) = block_on(driver::run(self, state, event));
        assert!(state.inflight.is_none(), "a write was left in flight");
        assert!(state.pending.is_none(), "a read was left pending");
        self.state = state;
        reply
    }

    fn command(&mut self, action: &str, body: &str) -> Reply {
        let (command, expect_canary) = parse_request(action, body).unwrap();
        self.send(Event::Command(CommandRequest {
            command,
            expect_canary,
            by: "operator".into(),
        }))
        .expect("a command is answered")
    }

    /// Advances the clock to `at` and fires the alarm if it is due by then.
    fn wait_until(&mut self, at: f64) {
        self.now = at;
        if self.alarm.is_some_and(|a| a <= at) {
            self.alarm = None;
            self.send(Event::Alarm);
        }
    }

    fn kv_config(&self) -> Rollout {
        Rollout::parse(self.kv.as_deref().unwrap()).unwrap()
    }

    /// A batch of `n` new distinct clients per channel, each on a network of its own, `e`
    /// of them with an error and the others booted.
    fn batch(&mut self, canary: Option<&str>, stable: (u64, u64), canary_counts: (u64, u64)) {
        let mut clients = Clients::default();
        let mut events = vec![];
        for (is_canary, (n, e)) in [(false, stable), (true, canary_counts)] {
            for i in 0..n {
                self.next_client += 1;
                let client = self.next_client;
                clients.channel_mut(is_canary).insert(client, false);
                let signal = if i < e {
                    clients.channel_mut(is_canary).insert(client, true);
                    Signal::Failure
                } else {
                    Signal::Boot
                };
                for signal in [Signal::Load, signal] {
                    events.push(ClientEvent {
                        client,
                        network: client,
                        canary: is_canary,
                        signal,
                        boot_ms: None,
                    });
                }
            }
        }
        self.batch_events(canary, clients, events);
    }

    fn batch_events(&mut self, canary: Option<&str>, clients: Clients, events: Vec<ClientEvent>) {
        let weight = self.state.config.as_ref().map(|c| c.weight);
        self.send(Event::Batch(Batch {
            stable: v("1.0.0"),
            canary: canary.map(v),
            weight,
            clients,
            events,
            reports: Vec::new(),
        }));
    }

    fn logged(&self, event: &str) -> Vec<&serde_json::Value> {
        self.logs
            .iter()
            .filter(|(e, _)| *e == event)
            .map(|(_, f)| f)
            .collect()
    }

    fn progress_state(&self) -> Option<ProgressState> {
        self.state.progress.as_ref().map(|p| p.state)
    }
}

fn dark() -> serde_json::Value {
    json!({"stable": "1.0.0", "canary": "1.1.0", "weight": 0,
           "health": {"window_secs": 60, "min_requests": 20, "max_error_rate": 0.1, "max_relative": 2.0,
                      "hostile_networks": 0}})
}

/// The dark config with a progression (10, 50, 100; 10 s bake) and `extra` in it.
fn gated(extra: serde_json::Value) -> serde_json::Value {
    let mut config = dark();
    let mut progression = json!({"steps": [10, 50, 100], "bake_secs": 10});
    for (k, x) in extra.as_object().unwrap() {
        progression[k] = x.clone();
    }
    config["progression"] = progression;
    config
}

fn refused(reply: Reply) -> (u16, String) {
    match reply {
        Reply::Refused { status, message } => (status, message),
        Reply::Done => panic!("expected a refusal"),
    }
}

/// Polls a future that never waits (the simulated host answers at once).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("the simulated host never waits"),
    }
}

impl Host for Sim {
    fn now_ms(&self) -> f64 {
        self.now
    }

    async fn read_kv(&mut self) -> KvRead {
        self.kv_reads += 1;
        self.kv_now()
    }

    async fn write_kv(&mut self, w: &ConfigWrite) -> WriteOutcome {
        // The Durable Object waits for `not_before`; time passes.
        self.now = self.now.max(w.not_before_ms);
        if self.fail_writes > 0 {
            self.fail_writes -= 1;
            return WriteOutcome::RateLimited(self.fail_with.into());
        }
        if let Some((last, _)) = self.writes.last() {
            assert!(self.now - last >= 1_000.0, "two writes within a second");
        }
        self.kv = Some(w.text.clone());
        self.writes.push((self.now, w.text.clone()));
        WriteOutcome::Ok
    }

    async fn set_alarm(&mut self, at_ms: f64) {
        self.alarm = Some(at_ms);
    }

    fn log(&mut self, line: LogLine) {
        self.logs.push((line.event, line.fields));
    }

    fn notify(&mut self, notification: Notification) {
        self.notified.push(notification);
    }
}

/// The dark config with more health settings.
fn with_health(extra: serde_json::Value) -> serde_json::Value {
    let mut config = dark();
    let health = config["health"].as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        health.insert(k.clone(), v.clone());
    }
    config
}

mod commands;
mod evidence;
mod gates;
mod kv;
mod notify;
mod rollouts;
mod signatures;
