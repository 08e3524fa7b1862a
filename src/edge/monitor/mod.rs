//! The `HealthMonitor` Durable Object, one per bundle: the runner of the bundle's control
//! plane (`canary_core::control`). It owns the authoritative rollout config, the health
//! windows and the history in its SQLite storage, and projects the config to KV.
//!
//! Every handler that runs the machine (ingest, command, status, minutes, alarm) takes
//! `lock` before it loads the state and releases it after the new state is committed. The
//! runtime's input gates only hold events back while *storage* calls are pending; a KV
//! write or read, or the wait between two KV writes, would let another event run in between
//! and work on the same state (the lost updates this replaces). An async mutex in the object
//! serialises exactly these handlers, and, unlike `blockConcurrencyWhile` (which the
//! `worker` crate does not expose), cannot reset the object when a KV call is slow. The
//! summary (the console's overview) only reads the committed state, and needs no lock.
//!
//! Routes, messages and answers: `canary_core::control::wire`. The answers to `/ingest` and
//! `/config` carry the committed config as KV holds it (`wire::ConfigPush`): the text this
//! object last wrote or read, when it is that config (`held`, in memory only: after a
//! restart, the config stamped with its revision, which is what the object writes).
//!
//! Webhooks (`canary_core::control::notify`): the machine's `Effect::Notify`s of an event are
//! added to the `outbox` table with the state they came with, and delivered from the alarm,
//! never under the lock: a slow or failing receiver delays no decision and no KV write. The
//! object has one alarm: it is set for the earlier of the machine's own (kept here as it
//! asked for it) and the outbox's next due delivery; the alarm delivers what is due, and
//! runs the machine's alarm only when that is due (or unknown, after a restart).

mod client;
mod delivery;
mod storage;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use futures_util::lock::Mutex;
use serde_json::json;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub(super) use client::{command, minutes, status, summary};

use super::{brief, log_event, now_ms, read_kv, KV_BINDING};
use canary_core::config::{kv_key, BundleName};
use canary_core::control::driver::{self, Host};
use canary_core::control::machine::ConfigWrite;
use canary_core::control::notify::Notification;
use canary_core::control::signatures::SignatureKey;
use canary_core::control::wire::{
    self, CommandMessage, ConfigAnswer, ErrorAnswer, HeldText, IngestAnswer, MinutesAnswer, Route,
    StatusAnswer,
};
use canary_core::control::{CommandRequest, Control, Event, Reply, WriteOutcome};
use canary_core::health::coalesce::{ConfigPush, IngestMessage};
use canary_core::health::intake::Intake;
use canary_core::kv::KvRead;
use canary_core::log::LogLine;
use canary_core::ops::admin::parse_request;
use canary_core::settings::{Settings, Target};
use storage::Store;

/// Longest wait for a KV read made by the control plane.
const KV_READ_TIMEOUT_MS: u64 = 5_000;
/// An aggregator's `/config` makes this object read KV at most this often (it asks at most
/// once a second per aggregator): an operator's raw KV write is adopted, and pushed with a
/// revision above every earlier one, within about this long of KV showing it here.
const CONFIG_KV_EVERY_MS: f64 = 3_000.0;
/// An alarm this early for the machine's time counts as the machine's (timers are coarse).
const ALARM_SLACK_MS: f64 = 50.0;

#[durable_object]
pub struct HealthMonitor {
    state: State,
    env: Env,
    /// Committed state, as stored; loaded on first use.
    control: RefCell<Option<Control>>,
    store: RefCell<Option<std::rc::Rc<Store>>>,
    lock: Mutex<()>,
    /// Forwards taken in since this object started.
    intake: RefCell<Intake>,
    settings: std::cell::OnceCell<ObjectSettings>,
    /// The alarm the machine last asked for: `None` until this object knows (after a
    /// restart), `Some(None)` when it wants none.
    machine_alarm: Cell<Option<Option<f64>>>,
    /// The config text this object last wrote to KV or read from it (for `push`).
    held: RefCell<Option<HeldText>>,
    /// When an aggregator's `/config` last made this object read KV (ms; 0: never).
    config_read_ms: Cell<f64>,
}

/// The settings the object uses.
#[derive(Debug, Clone)]
struct ObjectSettings {
    cohorts: u16,
    /// `COHORT_SECRET` is set.
    signed: bool,
    /// Webhook receivers, the JSON format's key, and the console's host (for links).
    notify: Vec<Target>,
    notify_secret: Option<String>,
    console_host: Option<String>,
    /// The error signatures' key, derived from `COHORT_SECRET`.
    signature_key: SignatureKey,
}

/// Why a handler runs the machine.
enum Trigger {
    Event(Event),
    /// Status: read KV (adopting an operator's write) and report.
    Refresh,
}

impl HealthMonitor {
    /// What the object needs of the settings, read once: the vars and secrets do not change
    /// within an object's life (a redeploy starts a new one), and parsing them all on every
    /// batch cost more than running the machine (bench/batch-cost.mjs's profile).
    fn settings(&self) -> &ObjectSettings {
        self.settings.get_or_init(|| {
            let parsed = Settings::from_lookup(|name| {
                self.env
                    .var(name)
                    .map(|v| v.to_string())
                    .or_else(|_| self.env.secret(name).map(|v| v.to_string()))
                    .ok()
            })
            .ok();
            if let Some(problem) = parsed.as_ref().and_then(|s| s.notify_problem.as_ref()) {
                log_event("notify_misconfigured", json!({ "detail": problem }));
            }
            ObjectSettings {
                cohorts: parsed.as_ref().map(|s| s.cohorts).unwrap_or(10),
                signed: parsed.as_ref().is_some_and(|s| s.cookie_secret.is_some()),
                notify: parsed
                    .as_ref()
                    .map(|s| s.notify.clone())
                    .unwrap_or_default(),
                notify_secret: parsed.as_ref().and_then(|s| s.notify_secret.clone()),
                signature_key: SignatureKey::derive(
                    parsed
                        .as_ref()
                        .and_then(|s| s.cookie_secret.as_deref())
                        .unwrap_or_default()
                        .as_bytes(),
                ),
                console_host: parsed.and_then(|s| s.console_host),
            }
        })
    }

    fn cohorts(&self) -> u16 {
        self.settings().cohorts
    }

    /// Whether `COHORT_SECRET` is set: without it nothing automatic acts.
    fn signed(&self) -> bool {
        self.settings().signed
    }

    fn store(&self) -> worker::Result<std::rc::Rc<Store>> {
        if let Some(s) = self.store.borrow().as_ref() {
            return Ok(s.clone());
        }
        let store = std::rc::Rc::new(Store::open(self.state.storage().sql())?);
        *self.store.borrow_mut() = Some(store.clone());
        Ok(store)
    }

    /// Loads the committed state from storage into `control`, once.
    fn ensure_loaded(&self) -> worker::Result<()> {
        if self.control.borrow().is_none() {
            let loaded = self.store()?.load(self.cohorts())?;
            *self.control.borrow_mut() = loaded;
        }
        Ok(())
    }

    /// Runs one trigger through the machine under the lock, carries out its effects, and
    /// commits the resulting state into `control`. Returns the command's reply, if any.
    /// One copy of the state per event: the committed one stays in `control` (what
    /// `/summary` reads meanwhile, and the base of the storage diff) until the new one
    /// replaces it. The step's tracked clients are moved, not copied (up to 100,000 of them;
    /// the copy was most of a forward's cost at a full step): the committed state keeps the
    /// tracker's counters meanwhile, all its view shows; if the event fails after that, the
    /// committed state is dropped and loaded again from storage.
    async fn run(
        &self,
        bundle: Option<&BundleName>,
        trigger: Trigger,
    ) -> worker::Result<Option<Reply>> {
        let _guard = self.lock.lock().await;
        self.ensure_loaded()?;
        let committed = self.control.borrow_mut().as_mut().map(|c| {
            let clients = c.tracker.detach();
            let mut copy = c.clone();
            copy.tracker = clients;
            copy
        });
        let reply = self.run_on(committed, bundle, trigger).await;
        if reply.is_err() {
            *self.control.borrow_mut() = None;
        }
        reply
    }

    /// `run`'s event on `committed` (with its tracked clients), under the lock.
    async fn run_on(
        &self,
        committed: Option<Control>,
        bundle: Option<&BundleName>,
        trigger: Trigger,
    ) -> worker::Result<Option<Reply>> {
        let mut state = match (committed, bundle) {
            (Some(c), _) => c,
            (None, Some(b)) => Control::new(b.clone(), self.cohorts()),
            (None, None) => return Ok(None),
        };
        state.signed = self.signed();
        state.signature_key = self.settings().signature_key.clone();
        let event = match trigger {
            Trigger::Event(e) => e,
            // A status adopts an operator's KV write first.
            Trigger::Refresh => {
                let read = read_kv(&self.env, &state.bundle, KV_READ_TIMEOUT_MS).await;
                if let KvRead::Value(text) = &read {
                    *self.held.borrow_mut() = Some(HeldText::new(text.clone()));
                }
                Event::KvRead(read)
            }
        };
        let bundle = state.bundle.clone();
        let mut host = ObjectHost {
            object: self,
            bundle: &bundle,
            notifications: Vec::new(),
        };
        let (mut state, reply) = driver::run(&mut host, state, event).await;
        let notifications = std::mem::take(&mut host.notifications);
        let store = self.store()?;
        let tracked = state.tracker.take_changes();
        store.save(self.control.borrow().as_ref(), &state, &tracked)?;
        store.save_signatures(&state.signatures.take_changes())?;
        // With the state, in the same implicit transaction: no await in between.
        let queued = self.enqueue(&store, &notifications)?;
        *self.control.borrow_mut() = Some(state);
        if queued {
            self.schedule().await;
        }
        Ok(reply)
    }

    /// A command's reply, or else the view of the committed state.
    fn answer(&self, reply: Option<Reply>) -> worker::Result<Response> {
        match reply {
            Some(Reply::Refused { status, message }) => {
                Response::from_json(&ErrorAnswer { error: message }).map(|r| r.with_status(status))
            }
            _ => Response::from_json(&self.view()),
        }
    }

    /// The committed state's view, with what this object has taken in.
    fn view(&self) -> StatusAnswer {
        let mut view = StatusAnswer::of(self.control.borrow().as_ref(), now_ms());
        view.intake = Some(*self.intake.borrow());
        view
    }

    /// The committed config as the edge is pushed it (the answers to `/ingest` and
    /// `/config`): read-only, like `/summary`.
    fn push(&self) -> Option<ConfigPush> {
        ConfigPush::of(self.control.borrow().as_ref()?, self.held.borrow().as_ref())
    }

    /// `/summary`: the view of the committed state, read-only. It neither reads KV nor
    /// takes the lock: the handler has no await, so it runs between two awaits of a
    /// handler holding the lock, and sees the state last committed (`run` replaces it only
    /// after storage has it). An object with no state yet answers with neither.
    fn summary(&self) -> worker::Result<StatusAnswer> {
        // Loads what storage holds (once), as `run` does.
        self.ensure_loaded()?;
        Ok(self.view())
    }
}

/// The Durable Object as the driver's host: KV through the binding, the alarm through
/// storage, logs as JSON lines, the runtime's clock.
struct ObjectHost<'a> {
    object: &'a HealthMonitor,
    bundle: &'a BundleName,
    /// The event's notifications, added to the outbox with the state.
    notifications: Vec<Notification>,
}

impl Host for ObjectHost<'_> {
    fn now_ms(&self) -> f64 {
        now_ms()
    }

    async fn read_kv(&mut self) -> KvRead {
        let read = read_kv(&self.object.env, self.bundle, KV_READ_TIMEOUT_MS).await;
        if let KvRead::Value(text) = &read {
            *self.object.held.borrow_mut() = Some(HeldText::new(text.clone()));
        }
        read
    }

    /// One KV write of the config, no earlier than the machine allows (one per second).
    async fn write_kv(&mut self, write: &ConfigWrite) -> WriteOutcome {
        let wait = write.not_before_ms - now_ms();
        if wait > 0.0 {
            worker::Delay::from(Duration::from_millis(wait.ceil() as u64)).await;
        }
        let kv = match self.object.env.kv(KV_BINDING) {
            Ok(kv) => kv,
            Err(e) => return WriteOutcome::Failed(format!("KV binding: {e}")),
        };
        let put = match kv.put(&kv_key(self.bundle), write.text.clone()) {
            Ok(put) => put,
            Err(e) => return WriteOutcome::Failed(brief(e)),
        };
        match put.execute().await {
            Ok(()) => {
                *self.object.held.borrow_mut() = Some(HeldText::new(write.text.clone()));
                WriteOutcome::Ok
            }
            Err(e) => {
                let detail = brief(e);
                // Workers KV answers 429 to a second write of a key within a second.
                if detail.contains("429") {
                    WriteOutcome::RateLimited(detail)
                } else {
                    WriteOutcome::Failed(detail)
                }
            }
        }
    }

    /// The machine's alarm, kept, and set no later than the outbox's next delivery.
    async fn set_alarm(&mut self, at_ms: f64) {
        self.object.machine_alarm.set(Some(Some(at_ms)));
        self.object.schedule().await;
    }

    fn log(&mut self, line: LogLine) {
        log_event(line.event, line.fields);
    }

    fn notify(&mut self, notification: Notification) {
        self.notifications.push(notification);
    }
}

impl DurableObject for HealthMonitor {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            control: RefCell::new(None),
            store: RefCell::new(None),
            lock: Mutex::new(()),
            intake: RefCell::new(Intake::default()),
            settings: std::cell::OnceCell::new(),
            machine_alarm: Cell::new(None),
            held: RefCell::new(None),
            config_read_ms: Cell::new(0.0),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Some(bundle) = req
            .headers()
            .get(wire::BUNDLE_HEADER)?
            .and_then(|name| BundleName::parse(&name).ok())
        else {
            return Response::error("missing bundle", 400);
        };
        let Some(route) = Route::of(req.method().as_ref(), &req.path()) else {
            return Response::error("not found", 404);
        };
        match route {
            Route::Ingest => {
                // Read as text and parsed here, in one crossing: a forward carries up to
                // thousands of events, and `Request::json` walks JSON.parse's objects field by
                // field across the JS↔wasm boundary (serde_wasm_bindgen).
                let body = req.text().await.ok();
                let Some(message) =
                    body.and_then(|text| serde_json::from_str::<IngestMessage>(&text).ok())
                else {
                    return Response::error("bad batches", 400);
                };
                self.intake.borrow_mut().record(&message, now_ms());
                // One event per merged batch: a forward holds one per versions-and-weight
                // (one, or two across a change).
                for batch in message.batches {
                    self.run(Some(&bundle), Trigger::Event(Event::Batch(batch)))
                        .await?;
                }
                // The committed config rides on the answer: the aggregator hands it to the
                // isolates whose batches it forwarded (a cut decided by these batches too).
                Response::from_json(&IngestAnswer {
                    ok: true,
                    config: self.push(),
                })
            }
            Route::Command => {
                let Ok(msg) = req.json::<CommandMessage>().await else {
                    return Response::error("bad command", 400);
                };
                let (command, expect_canary) = match parse_request(&msg.action, &msg.body) {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        return Response::from_json(&ErrorAnswer {
                            error: e.to_string(),
                        })
                        .map(|r| r.with_status(400))
                    }
                };
                let request = CommandRequest {
                    command,
                    expect_canary,
                    by: msg.by,
                };
                let reply = self
                    .run(Some(&bundle), Trigger::Event(Event::Command(request)))
                    .await?;
                self.answer(reply)
            }
            Route::Minutes => {
                let url = req.inner().url();
                let since = canary_core::edge::route::query_param(&url, wire::SINCE)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                // The committed minutes, read-only like `/summary`: batches write them, so a
                // KV read under the lock (every 10 s per open console) would add nothing.
                self.ensure_loaded()?;
                let minutes = self
                    .control
                    .borrow()
                    .as_ref()
                    .map(|c| c.minutes.since(since).cloned().collect())
                    .unwrap_or_default();
                Response::from_json(&MinutesAnswer { bundle, minutes })
            }
            Route::Status => {
                self.run(Some(&bundle), Trigger::Refresh).await?;
                self.answer(None)
            }
            Route::Summary => Response::from_json(&self.summary()?),
            Route::Config => {
                // The isolates' revision check, through their aggregators (each at most once
                // a second): the committed config. At most once per `CONFIG_KV_EVERY_MS` it
                // reads KV first (under the lock, as a status does): an operator's raw write
                // is adopted and pushed within seconds, not at the next batch's change.
                let now = now_ms();
                if now - self.config_read_ms.get() >= CONFIG_KV_EVERY_MS {
                    self.config_read_ms.set(now);
                    self.run(Some(&bundle), Trigger::Refresh).await?;
                }
                self.ensure_loaded()?;
                Response::from_json(&ConfigAnswer {
                    config: self.push(),
                })
            }
        }
    }

    /// Runs the machine's alarm when it is due (or not known: after a restart), then
    /// delivers the outbox's due notifications outside the lock, and sets the next alarm.
    async fn alarm(&self) -> worker::Result<Response> {
        let machine_due = match self.machine_alarm.get() {
            None => true,
            Some(at) => at.is_some_and(|at| at <= now_ms() + ALARM_SLACK_MS),
        };
        if machine_due {
            // Fired: the machine asks again for what it still needs.
            self.machine_alarm.set(Some(None));
            self.run(None, Trigger::Event(Event::Alarm)).await?;
        }
        self.deliver().await;
        self.schedule().await;
        Response::ok("ok")
    }
}
