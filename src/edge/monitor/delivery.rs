//! Webhook delivery from the object's outbox (`storage`'s `outbox` table): at least once,
//! from the alarm and never under the lock, each attempt with a timeout, retried with
//! backoff (`notify::retry_delay_ms`) and given up after the last (`notify_given_up`).

use std::time::Duration;

use futures_util::future::{select, Either};
use serde_json::json;
use worker::wasm_bindgen::JsValue;
use worker::{Delay, Fetch, Headers, Method, Request, RequestInit};

use super::storage::{Delivery, OutboxRow, Store};
use super::{brief, log_event, now_ms, HealthMonitor};
use canary_core::control::notify::{self, Notification, DELIVERY_TIMEOUT_MS};
use canary_core::settings::Format;

/// Deliveries attempted per alarm (the rest are due at once: the next alarm takes them).
const PER_ALARM: u64 = 20;

impl HealthMonitor {
    /// Adds an event's notifications to the outbox, one row per receiver, rendered now.
    /// Returns whether any was added. Synchronous: committed with the state.
    pub(super) fn enqueue(
        &self,
        store: &Store,
        notifications: &[Notification],
    ) -> worker::Result<bool> {
        let settings = self.settings();
        if notifications.is_empty() || settings.notify.is_empty() {
            return Ok(false);
        }
        let console = settings.console_host.as_deref();
        let deliveries: Vec<Delivery> = notifications
            .iter()
            .flat_map(|n| {
                settings.notify.iter().map(move |t| Delivery {
                    key: n.id.clone(),
                    event: n.event.to_owned(),
                    format: t.format,
                    url: t.url.clone(),
                    body: n.body(t.format, console),
                })
            })
            .collect();
        let dropped = store.enqueue(&deliveries, now_ms())?;
        if dropped > 0 {
            log_event(
                "notify_dropped",
                json!({ "bundle": notifications[0].bundle, "dropped": dropped, "reason": "the outbox is full (oldest dropped)", "cap": notify::OUTBOX_CAP }),
            );
        }
        Ok(true)
    }

    /// Sets the object's one alarm for the earlier of the machine's and the outbox's next
    /// delivery. When the machine's is not known (after a restart), the alarm set now is
    /// kept if earlier.
    pub(super) async fn schedule(&self) {
        let storage = self.state.storage();
        let outbox = self
            .store()
            .ok()
            .and_then(|s| s.next_due_ms().ok().flatten());
        let machine = match self.machine_alarm.get() {
            Some(at) => at,
            None => storage.get_alarm().await.ok().flatten().map(|t| t as f64),
        };
        let at = match (machine, outbox) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(at) => at,
                None => return,
            },
        };
        let wait = (at - now_ms()).max(0.0) as u64;
        if let Err(e) = storage.set_alarm(Duration::from_millis(wait)).await {
            log_event("alarm_failed", json!({ "detail": brief(e) }));
        }
    }

    /// Delivers the due rows of the outbox, one at a time, outside the lock.
    pub(super) async fn deliver(&self) {
        let Ok(store) = self.store() else { return };
        let rows = match store.due(now_ms(), PER_ALARM) {
            Ok(rows) => rows,
            Err(e) => {
                return log_event("notify_failed", json!({ "detail": brief(e) }));
            }
        };
        let secret = self.settings().notify_secret.clone();
        for row in rows {
            let outcome = send(&row, secret.as_deref()).await;
            let attempts = row.attempts + 1;
            let fields = json!({
                "key": row.key, "event": row.event, "format": row.format, "attempts": attempts,
            });
            let result = match outcome {
                Ok(status) => {
                    log_event("notify_delivered", with(fields, "status", json!(status)));
                    store.delivered(row.id)
                }
                Err(detail) => match notify::retry_delay_ms(attempts) {
                    Some(delay) => {
                        log_event(
                            "notify_failed",
                            with(
                                with(fields, "detail", json!(detail)),
                                "retry_in_ms",
                                json!(delay),
                            ),
                        );
                        store.retry(row.id, attempts, now_ms() + delay)
                    }
                    None => {
                        log_event("notify_given_up", with(fields, "detail", json!(detail)));
                        store.delivered(row.id)
                    }
                },
            };
            if let Err(e) = result {
                log_event("notify_failed", json!({ "detail": brief(e) }));
            }
        }
    }
}

fn with(mut fields: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    if let Some(map) = fields.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
    fields
}

/// One attempt: a 2xx answer within the timeout delivers. The error never names the URL
/// (it may hold a credential).
async fn send(row: &OutboxRow, secret: Option<&str>) -> Result<u16, String> {
    let format = Format::parse(&row.format).unwrap_or(Format::Json);
    let headers = Headers::new();
    let set = |name: &str, value: &str| headers.set(name, value).map_err(brief);
    set("Content-Type", "application/json")?;
    set("User-Agent", "canary-edge-webhooks")?;
    for (name, value) in notify::headers(format, &row.key, &row.body, secret) {
        set(name, &value)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&row.body)));
    let request = Request::new_with_init(&row.url, &init).map_err(|_| "bad URL".to_owned())?;
    let fetch = Fetch::Request(request);
    let fetch = std::pin::pin!(fetch.send());
    let timeout = Delay::from(Duration::from_millis(DELIVERY_TIMEOUT_MS));
    match select(fetch, timeout).await {
        Either::Left((Ok(resp), _)) => {
            let status = resp.status_code();
            if (200..300).contains(&status) {
                Ok(status)
            } else {
                Err(format!("answered {status}"))
            }
        }
        Either::Left((Err(e), _)) => Err(brief(e)),
        Either::Right(_) => Err(format!("no answer within {DELIVERY_TIMEOUT_MS} ms")),
    }
}
