//! The contract between the edge and a bundle's `HealthMonitor` Durable Object (and its
//! `HealthAggregator`s), defined once: the routes, the header that names the bundle, and
//! the serde types of every message and answer. The worker's client
//! (`src/edge/monitor/client.rs`), the object's router (`src/edge/monitor/mod.rs`) and the
//! admin API (`src/edge/ops.rs`) all use these; the entry module (`js/index.js`) posts
//! batches to [`AGGREGATE`] with [`BUNDLE_HEADER`], and its aggregator object forwards
//! them to [`INGEST`] (see [`coalesce`](crate::health::coalesce)).
//!
//! | route | method | message | answer |
//! |---|---|---|---|
//! | [`AGGREGATE`] (an aggregator) | POST | [`Batch`](crate::health::counts::Batch) | the forward's status (200 delivered, 202 kept for the next forward, 503 given up); body: the last config the aggregator learned, [`ConfigPush::message`] (empty: none) |
//! | [`CONFIG`] (an aggregator) | GET | — | 200 with the last config it learned ([`ConfigPush::message`]; asked of the monitor first when older than [`CONFIG_FRESH_MS`](crate::health::coalesce::CONFIG_FRESH_MS), at most once per [`CONFIG_ASK_EVERY_MS`](crate::health::coalesce::CONFIG_ASK_EVERY_MS)), 204 when none |
//! | [`INGEST`] | POST | [`IngestMessage`](crate::health::coalesce::IngestMessage) | [`IngestAnswer`] (with the committed config) |
//! | [`CONFIG`] | GET | — | [`ConfigAnswer`] (the committed config: no KV read, no lock) |
//! | [`COMMAND`] | POST | [`CommandMessage`] | [`StatusAnswer`], or [`ErrorAnswer`] with a 4xx ([`CommandAnswer`]) |
//! | [`STATUS`] | GET | — | [`StatusAnswer`] (adopts an operator's KV write first) |
//! | [`SUMMARY`] | GET | — | [`StatusAnswer`] (the committed state: no KV read, no lock) |
//! | [`MINUTES`]`?since=` | GET | — | [`MinutesAnswer`] |
//!
//! Every request carries [`BUNDLE_HEADER`]; without it (or with a bad name) the object
//! answers 400 in text.
//!
//! **The config rides on the answers.** The monitor's answers to [`INGEST`] and [`CONFIG`]
//! carry the bundle's committed config as a [`ConfigPush`]: the exact text KV holds (what
//! the object wrote, or the operator's write it adopted) and its revision. An aggregator
//! keeps the latest it learned and gives it to every isolate it answers, which hands it to
//! its router (`rollouts`: taken only above the highest revision the isolate has seen).
//! So a cut reaches the isolates that send batches or check the revision (while they serve
//! a canary) within seconds, whatever KV's propagation.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::minutes::Minute;
use super::{status, Control};
use crate::config::{BundleName, Rollout};
use crate::health::coalesce::ConfigPush;

use crate::health::intake::Intake;

/// The request header naming the bundle (the object's id is derived from the same name).
pub const BUNDLE_HEADER: &str = "x-canary-bundle";
/// A batch of health counts from an isolate, to one of the bundle's aggregator objects.
pub const AGGREGATE: &str = "/aggregate";
/// Merged batches from an aggregator, to the bundle's object.
pub const INGEST: &str = "/ingest";
/// An admin write, run by the control plane as the single writer.
pub const COMMAND: &str = "/command";
/// The authoritative config and the monitor's view, after adopting an operator's KV write.
pub const STATUS: &str = "/status";
/// The committed config and monitor's view, read-only: what the console's overview polls.
pub const SUMMARY: &str = "/summary";
/// The per-minute counts, from the Unix minute in the [`SINCE`] query parameter on.
pub const MINUTES: &str = "/minutes";
/// The bundle's config: of the monitor, the committed one (read-only, like [`SUMMARY`]); of
/// an aggregator, the last one it learned (the isolates' revision check).
pub const CONFIG: &str = "/config";
/// The query parameter of [`MINUTES`].
pub const SINCE: &str = "since";
/// The origin of the edge's requests to the object (only the path is looked at).
pub const ORIGIN: &str = "https://monitor.canary-edge";

/// A route of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Ingest,
    Command,
    Status,
    Summary,
    Minutes,
    Config,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::Ingest,
        Route::Command,
        Route::Status,
        Route::Summary,
        Route::Minutes,
        Route::Config,
    ];

    pub const fn path(self) -> &'static str {
        match self {
            Route::Ingest => INGEST,
            Route::Command => COMMAND,
            Route::Status => STATUS,
            Route::Summary => SUMMARY,
            Route::Minutes => MINUTES,
            Route::Config => CONFIG,
        }
    }

    /// `POST` for the routes that carry a message, `GET` for the others.
    pub const fn method(self) -> &'static str {
        match self {
            Route::Ingest | Route::Command => "POST",
            Route::Status | Route::Summary | Route::Minutes | Route::Config => "GET",
        }
    }

    /// The route a request's method and path (without its query) name, if any.
    pub fn of(method: &str, path: &str) -> Option<Route> {
        Route::ALL
            .into_iter()
            .find(|r| r.path() == path && r.method().eq_ignore_ascii_case(method))
    }
}

/// The path and query of a [`MINUTES`] request.
pub fn minutes_path(since: u64) -> String {
    format!("{MINUTES}?{SINCE}={since}")
}

/// The answer to [`INGEST`]: taken, and the bundle's committed config after the batches
/// (absent while the object has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAnswer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigPush>,
}

/// The answer to [`CONFIG`] from the monitor: the committed config (`null` while it has
/// none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigAnswer {
    pub config: Option<ConfigPush>,
}

impl ConfigPush {
    /// `state`'s committed config as KV holds it: `held` (the text the object last wrote or
    /// read) when it is that config at that revision (an adopted operator write keeps its
    /// exact bytes, revision-less), else the config stamped with its revision (exactly what
    /// the object writes). `None` while the object has no config.
    pub fn of(state: &Control, held: Option<&HeldText>) -> Option<Self> {
        let config = state.config.as_ref()?;
        let revision = state.kv.revision;
        let text = match held {
            Some(h)
                if h.content.as_ref() == Some(config)
                    && h.revision.is_none_or(|r| r == revision) =>
            {
                h.text.clone()
            }
            _ => {
                let mut stamped = config.clone();
                stamped.revision = Some(revision);
                stamped.to_json()
            }
        };
        Some(Self { revision, text })
    }
}

/// A KV text of the bundle's config the object last wrote or read, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldText {
    text: String,
    /// The config it holds, without its revision (`None`: not a valid config).
    content: Option<Rollout>,
    revision: Option<u64>,
}

impl HeldText {
    pub fn new(text: String) -> Self {
        let (content, revision) = match Rollout::parse(&text) {
            Ok(mut c) => {
                let revision = c.revision.take();
                (Some(c), revision)
            }
            Err(_) => (None, None),
        };
        Self {
            text,
            content,
            revision,
        }
    }
}

/// An admin write as the edge hands it over: the action and body as the operator sent
/// them (the object parses them again: it is the single writer), and who acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMessage {
    pub action: String,
    pub body: String,
    /// Who acts: the verified operator's name.
    pub by: String,
}

/// The control plane's view of a bundle, for [`STATUS`], [`SUMMARY`] and a command that
/// succeeded. Both are `None` when the object has no state yet; `config` alone is `None`
/// while it has adopted no config. `monitor` is the admin view (`status::admin_json`), a
/// document for operators rather than a contract, so it stays JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusAnswer {
    #[serde(with = "optional_rollout")]
    pub config: Option<Rollout>,
    pub monitor: Option<Value>,
    /// What this object has taken in since it started (not stored: it restarts at zero);
    /// absent from a view made without the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake: Option<Intake>,
}

impl StatusAnswer {
    /// The view of a state (`None`: the object has none).
    pub fn of(state: Option<&Control>, now_ms: f64) -> Self {
        Self {
            config: state.and_then(|c| c.config.clone()),
            monitor: state.map(|c| status::admin_json(c, now_ms)),
            intake: None,
        }
    }
}

/// A refusal, with the status it comes with (400 for a bad command, 409 for one about
/// another canary, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}

/// The answer to [`COMMAND`], told by its status: 200 with the view after the change, or
/// a refusal. A refusal that is not an [`ErrorAnswer`] (the runtime's own error page) keeps
/// its text as the error.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandAnswer {
    Done(Box<StatusAnswer>),
    Refused { status: u16, answer: ErrorAnswer },
}

impl CommandAnswer {
    pub fn decode(status: u16, text: &str) -> Result<Self, serde_json::Error> {
        if status == 200 {
            return serde_json::from_str(text).map(|a| Self::Done(Box::new(a)));
        }
        let answer = serde_json::from_str(text).unwrap_or_else(|_| ErrorAnswer {
            error: text.trim().to_owned(),
        });
        Ok(Self::Refused { status, answer })
    }
}

/// The answer to [`MINUTES`]: the bundle's minutes from `since` on, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinutesAnswer {
    #[serde(with = "bundle_name")]
    pub bundle: BundleName,
    pub minutes: Vec<Minute>,
}

/// A config as JSON, validated on the way in (`Rollout::from_value`).
mod optional_rollout {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Rollout>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rollout>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Rollout::from_value(v)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

mod bundle_name {
    use super::*;

    pub fn serialize<S: Serializer>(v: &BundleName, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BundleName, D::Error> {
        BundleName::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Version, Weight};
    use crate::health::counts::{Batch, ChannelCounts, Clients, Counts};
    use crate::health::counts::{ClientEvent, Signal};
    use serde::de::DeserializeOwned;
    use serde_json::json;

    /// Through JSON text and back, unchanged.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
        let text = serde_json::to_string(value).unwrap();
        let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(&back, value, "{text}");
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn bundle() -> BundleName {
        BundleName::parse("checkout").unwrap()
    }

    fn rollout() -> Rollout {
        Rollout::parse(
            r#"{"stable":"1.0.0","canary":"1.1.0","weight":20,"revision":7,
                "progression":{"steps":[10,50,100],"bake_secs":60},"future_field":[1]}"#,
        )
        .unwrap()
    }

    #[test]
    fn routes_are_found_by_method_and_path() {
        for r in Route::ALL {
            assert_eq!(Route::of(r.method(), r.path()), Some(r));
            assert_eq!(Route::of(&r.method().to_lowercase(), r.path()), Some(r));
        }
        assert_eq!(Route::of("GET", INGEST), None);
        assert_eq!(Route::of("GET", CONFIG), Some(Route::Config));
        assert_eq!(Route::of("POST", CONFIG), None);
        assert_eq!(Route::of("POST", SUMMARY), None);
        assert_eq!(Route::of("GET", "/summary/"), None);
        assert_eq!(Route::of("GET", "/"), None);
        assert_eq!(minutes_path(29_000_000), "/minutes?since=29000000");
        assert_eq!(BUNDLE_HEADER, "x-canary-bundle");
        // The entry module posts batches to this path: changing it is a change of contract.
        assert_eq!(INGEST, "/ingest");
    }

    #[test]
    fn ingest_round_trips() {
        let mut clients = Clients::default();
        clients
            .channel_mut(true)
            .insert(0xdead_beef_dead_beef, true);
        clients.channel_mut(false).insert(7, false);
        let batch = Batch {
            stable: v("1.0.0"),
            canary: Some(v("1.1.0")),
            weight: Some(Weight::new(20).unwrap()),
            clients,
            events: vec![ClientEvent {
                client: u64::MAX,
                network: 3,
                canary: true,
                signal: Signal::Failure,
                boot_ms: None,
            }],
            reports: vec![crate::health::report_text::ReportText {
                client: u64::MAX,
                network: 3,
                canary: true,
                kind: "uncaught".into(),
                message: Some("<img src=x onerror=alert(1)> \"é\"\n\t".into()),
                stack: None,
            }],
        };
        round_trip(&batch);
        // No texts: the field is absent, as an older edge's batch, which still parses.
        let mut older = batch.clone();
        older.reports.clear();
        let text = serde_json::to_string(&older).unwrap();
        assert!(!text.contains("reports"), "{text}");
        assert_eq!(serde_json::from_str::<Batch>(&text).unwrap(), older);
        let bare = IngestAnswer {
            ok: true,
            config: None,
        };
        round_trip(&bare);
        assert_eq!(serde_json::to_value(&bare).unwrap(), json!({ "ok": true }));
        let push = ConfigPush {
            revision: 9,
            text: "{\"stable\": \"1.0.0\"}\n".into(),
        };
        let with_config = IngestAnswer {
            ok: true,
            config: Some(push.clone()),
        };
        round_trip(&with_config);
        assert_eq!(
            serde_json::to_value(&with_config).unwrap(),
            json!({ "ok": true, "config": { "revision": 9, "text": "{\"stable\": \"1.0.0\"}\n" } })
        );
        // An older object's answer still reads.
        let old: IngestAnswer = serde_json::from_str(r#"{"ok": true}"#).unwrap();
        assert_eq!(old, bare);
        round_trip(&ConfigAnswer { config: None });
        round_trip(&ConfigAnswer { config: Some(push) });
        assert_eq!(
            serde_json::to_value(ConfigAnswer { config: None }).unwrap(),
            json!({ "config": null })
        );
    }

    #[test]
    fn command_round_trips() {
        round_trip(&CommandMessage {
            action: "weight".into(),
            body: r#"{"weight": 30, "canary": "1.1.0"}"#.into(),
            by: "alice".into(),
        });
        let refusal = ErrorAnswer {
            error: "the canary is 1.2.0, not 1.1.0".into(),
        };
        round_trip(&refusal);
        let text = serde_json::to_string(&refusal).unwrap();
        assert_eq!(
            CommandAnswer::decode(409, &text).unwrap(),
            CommandAnswer::Refused {
                status: 409,
                answer: refusal
            }
        );
        assert_eq!(
            CommandAnswer::decode(400, "bad command\n").unwrap(),
            CommandAnswer::Refused {
                status: 400,
                answer: ErrorAnswer {
                    error: "bad command".into()
                }
            }
        );
        let mut state = Control::new(bundle(), 10);
        state.config = Some(rollout());
        let done = StatusAnswer::of(Some(&state), 1.7e12);
        let text = serde_json::to_string(&done).unwrap();
        assert_eq!(
            CommandAnswer::decode(200, &text).unwrap(),
            CommandAnswer::Done(Box::new(done))
        );
        assert!(CommandAnswer::decode(200, "not json").is_err());
    }

    #[test]
    fn status_round_trips_with_and_without_state() {
        round_trip(&StatusAnswer::of(None, 0.0));
        assert_eq!(
            serde_json::to_value(StatusAnswer::of(None, 0.0)).unwrap(),
            json!({ "config": null, "monitor": null })
        );
        let mut state = Control::new(bundle(), 10);
        round_trip(&StatusAnswer::of(Some(&state), 1.7e12));
        state.config = Some(rollout());
        let answer = StatusAnswer::of(Some(&state), 1.7e12);
        assert_eq!(answer.config, Some(rollout()));
        assert!(answer.monitor.as_ref().is_some_and(Value::is_object));
        round_trip(&answer);
    }

    #[test]
    fn an_invalid_config_does_not_decode() {
        let text = r#"{"config": {"stable": "1.0.0", "weight": 101}, "monitor": null}"#;
        let err = serde_json::from_str::<StatusAnswer>(text).unwrap_err();
        assert!(err.to_string().contains("weight"), "{err}");
    }

    #[test]
    fn minutes_round_trip() {
        let counts = ChannelCounts {
            stable: Counts {
                clients: 12,
                errors: 1,
            },
            canary: Counts {
                clients: 3,
                errors: 0,
            },
        };
        round_trip(&MinutesAnswer {
            bundle: bundle(),
            minutes: vec![],
        });
        round_trip(&MinutesAnswer {
            bundle: bundle(),
            minutes: vec![
                Minute {
                    minute: 29_000_000,
                    stable: v("1.0.0"),
                    canary: Some(v("1.1.0")),
                    counts,
                },
                Minute {
                    minute: 29_000_001,
                    stable: v("1.0.0"),
                    canary: None,
                    counts: ChannelCounts::default(),
                },
            ],
        });
        let bad = r#"{"bundle": "Not/A/Bundle", "minutes": []}"#;
        assert!(serde_json::from_str::<MinutesAnswer>(bad).is_err());
    }

    #[test]
    fn the_pushed_config_is_what_kv_holds() {
        let mut state = Control::new(bundle(), 10);
        assert_eq!(ConfigPush::of(&state, None), None, "no config yet");
        let raw = "{\"stable\": \"1.0.0\", \"canary\": \"1.1.0\", \"weight\": 0}\n";
        let mut config = Rollout::parse(raw).unwrap();
        state.config = Some(config.clone());
        state.kv.revision = 7;
        // An adopted operator write: its exact bytes, at the control plane's revision.
        let held = HeldText::new(raw.into());
        let push = ConfigPush::of(&state, Some(&held)).unwrap();
        assert_eq!((push.revision, push.text.as_str()), (7, raw));
        assert_eq!(push.message(), format!("7\n{raw}"));
        // What the object wrote: the config stamped with its revision, byte for byte.
        config.revision = Some(7);
        let written = config.to_json();
        for held in [
            Some(HeldText::new(written.clone())),
            None,
            Some(HeldText::new("{not json".into())),
            // An older text (another config, or this config at an older revision).
            Some(HeldText::new(
                r#"{"stable":"1.0.0","canary":"1.1.0","weight":30,"revision":6}"#.into(),
            )),
            Some(HeldText::new(
                r#"{"stable":"1.0.0","canary":"1.1.0","weight":0,"revision":5}"#.into(),
            )),
        ] {
            let push = ConfigPush::of(&state, held.as_ref()).unwrap();
            assert_eq!((push.revision, &push.text), (7, &written), "{held:?}");
        }
    }
}
