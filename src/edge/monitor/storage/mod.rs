//! The control plane's state in the Durable Object's SQLite storage: typed tables, one row
//! per thing, written as a diff of the state before and after an event (an ingest touches
//! the current window, the current minute and the totals, not the whole state). All writes
//! of one event are synchronous and uninterrupted, so the runtime commits them as one
//! transaction. The layout, its version and its migrations: `schema.rs`.
//!
//! Rows are read by column name into typed structs (integers as integers, sets as bytes),
//! and written by column name: every value is written next to the name of its column.

mod schema;
mod signatures;
mod tracker;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue as V};

use canary_core::config::{BundleName, HealthPolicy, Progression, Rollout, Version, Weight};
use canary_core::control::health::{Basis, Cut};
use canary_core::control::history::{Entry, History};
use canary_core::control::minutes::{Minute, Minutes};
use canary_core::control::notify::OUTBOX_CAP;
use canary_core::control::progress::{Progress, ProgressState};
use canary_core::control::projection::{OwnWrite, Projection};
use canary_core::control::tracker::{BootTimes, StoredChanges};
use canary_core::control::verdict::{Evidence, Exposure, TestPolicy};
use canary_core::control::windows::{HealthWindows, Window};
use canary_core::control::Control;
use canary_core::health::clients::ClientSet;
use canary_core::health::counts::{ChannelClients, ChannelCounts, Clients, Counts};
use canary_core::settings::Format;

pub(super) struct Store {
    sql: SqlStorage,
}

/// A column's name and the value written to it.
type Column = (&'static str, V);

fn text(s: impl ToString) -> V {
    V::String(s.to_string())
}

/// JavaScript carries the number: integers above 2^53 - 1 would not arrive exact.
fn int(n: u64) -> V {
    const MAX_SAFE: u64 = (1 << 53) - 1;
    V::Integer(n.min(MAX_SAFE) as i64)
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> V) -> V {
    v.map(f).unwrap_or(V::Null)
}

/// A `BLOB` column, as the runtime returns it (an `ArrayBuffer`).
struct Blob(Vec<u8>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a BLOB")
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_byte_buf(Bytes).map(Blob)
    }
}

#[derive(Deserialize)]
struct MetaRow {
    bundle: String,
    config: Option<String>,
    revision: u64,
    last_write_ms: Option<f64>,
    retry_at_ms: Option<f64>,
    failures: u32,
    next_seq: u64,
}

#[derive(Deserialize)]
struct StepPolicyRow {
    health: String,
}

#[derive(Deserialize)]
struct OwnWriteRow {
    revision: u64,
    digest: String,
    written_ms: f64,
}

#[derive(Deserialize)]
struct MinuteRow {
    minute: u64,
    stable: String,
    canary: Option<String>,
    stable_clients: u64,
    stable_errors: u64,
    canary_clients: u64,
    canary_errors: u64,
}

impl MinuteRow {
    fn minute(self) -> Option<Minute> {
        Some(Minute {
            minute: self.minute,
            stable: Version::parse(&self.stable).ok()?,
            canary: match self.canary {
                Some(v) => Some(Version::parse(&v).ok()?),
                None => None,
            },
            counts: ChannelCounts {
                stable: Counts {
                    clients: self.stable_clients,
                    errors: self.stable_errors,
                },
                canary: Counts {
                    clients: self.canary_clients,
                    errors: self.canary_errors,
                },
            },
        })
    }
}

#[derive(Deserialize)]
struct ProgressRow {
    canary: String,
    steps: String,
    bake_secs: u32,
    step: u64,
    step_started_ms: f64,
    state: String,
    reason: Option<String>,
}

/// Four client sets, as stored: `ClientSet::to_bytes` (at most 2 KiB each).
#[derive(Deserialize)]
struct SetColumns {
    stable_loaded: Blob,
    stable_errored: Blob,
    canary_loaded: Blob,
    canary_errored: Blob,
}

const SET_COLUMNS: &str = "stable_loaded, stable_errored, canary_loaded, canary_errored";

impl SetColumns {
    /// The stored sets; one that does not parse is read as empty (never fatal).
    fn clients(&self) -> Clients {
        let set = |b: &Blob| ClientSet::from_bytes(&b.0).unwrap_or_default();
        Clients {
            stable: ChannelClients {
                loaded: set(&self.stable_loaded),
                errored: set(&self.stable_errored),
            },
            canary: ChannelClients {
                loaded: set(&self.canary_loaded),
                errored: set(&self.canary_errored),
            },
        }
    }
}

fn set_columns(c: &Clients) -> [Column; 4] {
    let blob = |set: &ClientSet| V::Blob(set.to_bytes());
    [
        ("stable_loaded", blob(&c.stable.loaded)),
        ("stable_errored", blob(&c.stable.errored)),
        ("canary_loaded", blob(&c.canary.loaded)),
        ("canary_errored", blob(&c.canary.errored)),
    ]
}

#[derive(Deserialize)]
struct HealthRow {
    stable: Option<String>,
    canary: Option<String>,
    #[serde(flatten)]
    sets: SetColumns,
}

#[derive(Deserialize)]
struct WindowRow {
    start_ms: f64,
    #[serde(flatten)]
    sets: SetColumns,
}

/// The step's evidence, as `step_counts` and `cut` store it.
#[derive(Deserialize)]
struct EvidenceColumns {
    canary_clients: u64,
    canary_errors: u64,
    stable_clients: u64,
    stable_errors: u64,
    canary_resolved: u64,
    canary_silent: u64,
    stable_resolved: u64,
    stable_silent: u64,
}

const EVIDENCE_COLUMNS: &str = "canary_clients, canary_errors, stable_clients, stable_errors, \
     canary_resolved, canary_silent, stable_resolved, stable_silent";

impl EvidenceColumns {
    fn evidence(&self) -> Evidence {
        let counts = |clients, errors| Counts { clients, errors };
        Evidence {
            seen: ChannelCounts {
                canary: counts(self.canary_clients, self.canary_errors),
                stable: counts(self.stable_clients, self.stable_errors),
            },
            silence: ChannelCounts {
                canary: counts(self.canary_resolved, self.canary_silent),
                stable: counts(self.stable_resolved, self.stable_silent),
            },
            // Recomputed from the restored tracker at the next batch or sweep (a kept cut's
            // boot times are stored with it: `CutRow::cut`).
            early: Default::default(),
            boot: Default::default(),
        }
    }
}

fn evidence_columns(e: &Evidence) -> [Column; 8] {
    let (seen, quiet) = (&e.seen, &e.silence);
    [
        ("canary_clients", int(seen.canary.clients)),
        ("canary_errors", int(seen.canary.errors)),
        ("stable_clients", int(seen.stable.clients)),
        ("stable_errors", int(seen.stable.errors)),
        ("canary_resolved", int(quiet.canary.clients)),
        ("canary_silent", int(quiet.canary.errors)),
        ("stable_resolved", int(quiet.stable.clients)),
        ("stable_silent", int(quiet.stable.errors)),
    ]
}

#[derive(Deserialize)]
struct CutRow {
    at_ms: f64,
    canary: String,
    weight: u64,
    by: String,
    reason: String,
    #[serde(flatten)]
    evidence: EvidenceColumns,
    canary_share: f64,
    judge_silence: u8,
    confidence: f64,
    max_increase: f64,
    min_error_rate: f64,
    min_clients: u64,
    hostile_clients: u64,
    max_boot_slowdown: f64,
    boot_stable: Blob,
    boot_canary: Blob,
}

impl CutRow {
    fn cut(self) -> Option<Cut> {
        Some(Cut {
            at_ms: self.at_ms,
            canary: Version::parse(&self.canary).ok()?,
            weight: Weight::new(self.weight).ok()?,
            by: self.by,
            reason: self.reason,
            basis: Basis {
                evidence: Evidence {
                    boot: BootTimes::new(
                        BootTimes::from_bytes(&self.boot_stable.0),
                        BootTimes::from_bytes(&self.boot_canary.0),
                    ),
                    ..self.evidence.evidence()
                },
                exposure: Exposure {
                    canary_share: self.canary_share,
                    judge_silence: self.judge_silence != 0,
                },
                policy: TestPolicy {
                    confidence: self.confidence,
                    // Not stored: a kept cut is shown by its cut tests, which do not use it.
                    pass_confidence: canary_core::config::DEFAULT_PASS_CONFIDENCE,
                    max_increase: self.max_increase,
                    min_error_rate: self.min_error_rate,
                    min_clients: self.min_clients,
                    hostile_clients: self.hostile_clients,
                    max_boot_slowdown: self.max_boot_slowdown,
                },
            },
        })
    }
}

#[derive(Deserialize)]
struct BootingRow {
    version: String,
}

#[derive(Deserialize)]
struct HistoryRow {
    seq: u64,
    at_ms: f64,
    kind: String,
    canary: Option<String>,
    weight: Option<u64>,
    by: String,
    reason: String,
    stable_clients: Option<u64>,
    stable_errors: Option<u64>,
    canary_clients: Option<u64>,
    canary_errors: Option<u64>,
}

impl HistoryRow {
    /// The counts, when all four are there.
    fn counts(&self) -> Option<ChannelCounts> {
        Some(ChannelCounts {
            stable: Counts {
                clients: self.stable_clients?,
                errors: self.stable_errors?,
            },
            canary: Counts {
                clients: self.canary_clients?,
                errors: self.canary_errors?,
            },
        })
    }
}

fn count_columns(c: Option<ChannelCounts>) -> [Column; 4] {
    let n = |f: fn(&ChannelCounts) -> u64| opt(c.as_ref().map(f), int);
    [
        ("stable_clients", n(|c| c.stable.clients)),
        ("stable_errors", n(|c| c.stable.errors)),
        ("canary_clients", n(|c| c.canary.clients)),
        ("canary_errors", n(|c| c.canary.errors)),
    ]
}

impl Store {
    /// Opens the store, creating its tables or migrating an older layout first.
    pub fn open(sql: SqlStorage) -> worker::Result<Self> {
        schema::open(&sql)?;
        Ok(Self { sql })
    }

    fn rows<T: for<'de> Deserialize<'de>>(&self, query: &str) -> worker::Result<Vec<T>> {
        self.sql.exec(query, None)?.to_array()
    }

    fn run(&self, query: &str, bindings: Vec<V>) -> worker::Result<()> {
        self.sql.exec(query, bindings).map(|_| ())
    }

    /// `INSERT OR REPLACE INTO table (names…) VALUES (values…)`, each value by its column.
    fn upsert(&self, table: &str, columns: impl IntoIterator<Item = Column>) -> worker::Result<()> {
        let (names, values): (Vec<&str>, Vec<V>) = columns.into_iter().unzip();
        let names: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        let marks = vec!["?"; values.len()].join(", ");
        self.run(
            &format!(
                "INSERT OR REPLACE INTO {table} ({}) VALUES ({marks})",
                names.join(", ")
            ),
            values,
        )
    }

    /// The stored state, or `None` for an object that never stored one. Rows that no
    /// longer parse (a version this code rejects) are skipped, not fatal.
    pub fn load(&self, cohorts: u16) -> worker::Result<Option<Control>> {
        let Some(meta) = self
            .rows::<MetaRow>(
                "SELECT bundle, config, revision, last_write_ms, retry_at_ms, failures, next_seq \
                 FROM meta WHERE id = 1",
            )?
            .pop()
        else {
            return Ok(None);
        };
        let Ok(bundle) = BundleName::parse(&meta.bundle) else {
            return Ok(None);
        };
        let mut c = Control::new(bundle, cohorts);
        c.config = meta.config.and_then(|t| Rollout::parse(&t).ok());
        c.kv = Projection {
            revision: meta.revision,
            own_writes: self
                .rows::<OwnWriteRow>(
                    "SELECT revision, digest, written_ms FROM own_writes ORDER BY revision",
                )?
                .into_iter()
                .map(|r| OwnWrite {
                    revision: r.revision,
                    digest: r.digest,
                    written_ms: r.written_ms,
                })
                .collect(),
            last_write_ms: meta.last_write_ms,
            retry_at_ms: meta.retry_at_ms,
            failures: meta.failures,
        };
        c.progress = self
            .rows::<ProgressRow>(
                "SELECT canary, steps, bake_secs, step, step_started_ms, state, reason \
                 FROM progress WHERE id = 1",
            )?
            .pop()
            .and_then(|p| {
                let steps: Vec<u64> = serde_json::from_str(&p.steps).ok()?;
                Some(Progress {
                    canary: Version::parse(&p.canary).ok()?,
                    plan: Progression {
                        steps: steps
                            .into_iter()
                            .map(Weight::new)
                            .collect::<Result<_, _>>()
                            .ok()?,
                        bake_secs: p.bake_secs,
                        // Gates and freezes are read from the config, not kept with the plan.
                        approve: Vec::new(),
                        freeze: Vec::new(),
                    },
                    step: usize::try_from(p.step).ok()?,
                    step_started_ms: p.step_started_ms,
                    state: ProgressState::parse(&p.state)?,
                    reason: p.reason,
                })
            });
        if let Some(h) = self
            .rows::<HealthRow>(&format!(
                "SELECT stable, canary, {SET_COLUMNS} FROM client_totals WHERE id = 1"
            ))?
            .pop()
        {
            c.health = HealthWindows {
                stable: h.stable.and_then(|v| Version::parse(&v).ok()),
                canary: h.canary.and_then(|v| Version::parse(&v).ok()),
                windows: self
                    .rows::<WindowRow>(&format!(
                        "SELECT start_ms, {SET_COLUMNS} FROM client_windows ORDER BY start_ms"
                    ))?
                    .into_iter()
                    .map(|w| Window {
                        start_ms: w.start_ms,
                        clients: w.sets.clients(),
                    })
                    .collect(),
                totals: h.sets.clients(),
            };
        }
        if let Some(e) = self
            .rows::<EvidenceColumns>(&format!(
                "SELECT {EVIDENCE_COLUMNS} FROM step_counts WHERE id = 1"
            ))?
            .pop()
        {
            c.evidence = e.evidence();
        }
        c.tracker = self.load_tracker()?;
        c.signatures = self.load_signatures()?;
        c.booting = self
            .rows::<BootingRow>("SELECT version FROM booting_versions ORDER BY seq")?
            .into_iter()
            .filter_map(|r| Version::parse(&r.version).ok())
            .collect();
        c.minutes = Minutes::from_rows(
            self.rows::<MinuteRow>(
                "SELECT minute, stable, canary, stable_clients, stable_errors, canary_clients, \
                 canary_errors FROM minutes ORDER BY minute",
            )?
            .into_iter()
            .filter_map(MinuteRow::minute),
        );
        c.history = History {
            entries: self
                .rows::<HistoryRow>(
                    "SELECT seq, at_ms, kind, canary, weight, \"by\", reason, stable_clients, \
                     stable_errors, canary_clients, canary_errors FROM history ORDER BY seq",
                )?
                .into_iter()
                .map(|e| Entry {
                    seq: e.seq,
                    at_ms: e.at_ms,
                    counts: e.counts(),
                    canary: e.canary.and_then(|v| Version::parse(&v).ok()),
                    weight: e.weight.and_then(|w| Weight::new(w).ok()),
                    kind: e.kind,
                    by: e.by,
                    reason: e.reason,
                })
                .collect(),
            next_seq: meta.next_seq,
        };
        // Kept only while its canary is the config's dark canary (a store written by a
        // worker that did not know the table may have moved on since).
        c.cut = self
            .rows::<CutRow>(&format!(
                "SELECT at_ms, canary, weight, \"by\", reason, {EVIDENCE_COLUMNS}, canary_share, \
                 judge_silence, confidence, max_increase, min_error_rate, min_clients, \
                 hostile_clients, max_boot_slowdown, boot_stable, boot_canary FROM cut WHERE id = 1"
            ))?
            .pop()
            .and_then(CutRow::cut)
            .filter(|cut| cut.is_current(c.config.as_ref()));
        c.step_health = self
            .rows::<StepPolicyRow>("SELECT health FROM step_policy WHERE id = 1")?
            .pop()
            .and_then(|row| serde_json::from_str::<HealthPolicy>(&row.health).ok());
        Ok(Some(c))
    }

    /// Writes what changed between `before` (what is stored) and `after`; the tracker's
    /// changes are its journal's (`Tracker::take_changes`), not a diff of the two.
    pub fn save(
        &self,
        before: Option<&Control>,
        after: &Control,
        tracker: &StoredChanges,
    ) -> worker::Result<()> {
        let changed = |f: &dyn Fn(&Control) -> bool| before.is_none_or(f);
        if changed(&|b| {
            b.bundle != after.bundle
                || b.config != after.config
                || b.kv.revision != after.kv.revision
                || b.kv.last_write_ms != after.kv.last_write_ms
                || b.kv.retry_at_ms != after.kv.retry_at_ms
                || b.kv.failures != after.kv.failures
                || b.history.next_seq != after.history.next_seq
        }) {
            self.upsert(
                "meta",
                [
                    ("id", int(1)),
                    ("bundle", text(&after.bundle)),
                    ("config", opt(after.config.as_ref(), |c| text(c.to_json()))),
                    ("revision", int(after.kv.revision)),
                    ("last_write_ms", opt(after.kv.last_write_ms, V::Float)),
                    ("retry_at_ms", opt(after.kv.retry_at_ms, V::Float)),
                    ("failures", int(u64::from(after.kv.failures))),
                    ("next_seq", int(after.history.next_seq)),
                ],
            )?;
        }
        if changed(&|b| b.kv.own_writes != after.kv.own_writes) {
            self.run("DELETE FROM own_writes", vec![])?;
            for w in &after.kv.own_writes {
                self.upsert(
                    "own_writes",
                    [
                        ("revision", int(w.revision)),
                        ("digest", text(&w.digest)),
                        ("written_ms", V::Float(w.written_ms)),
                    ],
                )?;
            }
        }
        if changed(&|b| b.progress != after.progress) {
            match &after.progress {
                None => self.run("DELETE FROM progress", vec![])?,
                Some(p) => self.upsert(
                    "progress",
                    [
                        ("id", int(1)),
                        ("canary", text(&p.canary)),
                        ("steps", text(serde_json::json!(p.plan.steps))),
                        ("bake_secs", int(u64::from(p.plan.bake_secs))),
                        ("step", int(p.step as u64)),
                        ("step_started_ms", V::Float(p.step_started_ms)),
                        ("state", text(p.state.as_str())),
                        ("reason", opt(p.reason.as_deref(), text)),
                    ],
                )?,
            }
        }
        if changed(&|b| b.evidence != after.evidence) {
            let mut columns = vec![("id", int(1))];
            columns.extend(evidence_columns(&after.evidence));
            self.upsert("step_counts", columns)?;
        }
        if changed(&|b| b.cut != after.cut) {
            match &after.cut {
                None => self.run("DELETE FROM cut", vec![])?,
                Some(cut) => {
                    let b = &cut.basis;
                    let mut columns = vec![
                        ("id", int(1)),
                        ("at_ms", V::Float(cut.at_ms)),
                        ("canary", text(&cut.canary)),
                        ("weight", int(u64::from(cut.weight.percent()))),
                        ("by", text(&cut.by)),
                        ("reason", text(&cut.reason)),
                    ];
                    columns.extend(evidence_columns(&b.evidence));
                    columns.extend([
                        ("canary_share", V::Float(b.exposure.canary_share)),
                        ("judge_silence", int(u64::from(b.exposure.judge_silence))),
                        ("confidence", V::Float(b.policy.confidence)),
                        ("max_increase", V::Float(b.policy.max_increase)),
                        ("min_error_rate", V::Float(b.policy.min_error_rate)),
                        ("min_clients", int(b.policy.min_clients)),
                        ("hostile_clients", int(b.policy.hostile_clients)),
                        ("max_boot_slowdown", V::Float(b.policy.max_boot_slowdown)),
                        (
                            "boot_stable",
                            V::Blob(BootTimes::to_bytes(b.evidence.boot.stable())),
                        ),
                        (
                            "boot_canary",
                            V::Blob(BootTimes::to_bytes(b.evidence.boot.canary())),
                        ),
                    ]);
                    self.upsert("cut", columns)?;
                }
            }
        }
        if changed(&|b| b.step_health != after.step_health) {
            match &after.step_health {
                None => self.run("DELETE FROM step_policy", vec![])?,
                Some(policy) => self.upsert(
                    "step_policy",
                    [
                        ("id", int(1)),
                        (
                            "health",
                            text(serde_json::to_string(policy).unwrap_or_default()),
                        ),
                    ],
                )?,
            }
        }
        if changed(&|b| b.booting != after.booting) {
            self.run("DELETE FROM booting_versions", vec![])?;
            for (seq, version) in after.booting.iter().enumerate() {
                self.upsert(
                    "booting_versions",
                    [("seq", int(seq as u64)), ("version", text(version))],
                )?;
            }
        }
        self.save_tracker(
            tracker,
            before.map(|b| b.tracker.totals()),
            after.tracker.totals(),
        )?;
        self.save_health(before.map(|b| &b.health), &after.health)?;
        self.save_minutes(before.map(|b| &b.minutes), &after.minutes)?;
        self.save_history(before.map(|b| &b.history), &after.history)
    }

    /// Upserts the minutes that changed (the current one, as a rule) and drops those that
    /// aged out. One pass over both (`Minutes::changed_since`), not a scan per row.
    fn save_minutes(&self, before: Option<&Minutes>, after: &Minutes) -> worker::Result<()> {
        let none = Minutes::default();
        let stored = before.unwrap_or(&none);
        for m in after.changed_since(stored) {
            let c = &m.counts;
            self.upsert(
                "minutes",
                [
                    ("minute", int(m.minute)),
                    ("stable", text(&m.stable)),
                    ("canary", opt(m.canary.as_ref(), text)),
                    ("stable_clients", int(c.stable.clients)),
                    ("stable_errors", int(c.stable.errors)),
                    ("canary_clients", int(c.canary.clients)),
                    ("canary_errors", int(c.canary.errors)),
                ],
            )?;
        }
        if let Some(oldest) = after.oldest() {
            if before.and_then(Minutes::oldest) != Some(oldest) {
                self.run("DELETE FROM minutes WHERE minute < ?", vec![int(oldest)])?;
            }
        }
        Ok(())
    }

    fn save_health(
        &self,
        before: Option<&HealthWindows>,
        after: &HealthWindows,
    ) -> worker::Result<()> {
        let same_versions =
            before.is_some_and(|b| b.stable == after.stable && b.canary == after.canary);
        if before.is_none_or(|b| b.totals != after.totals) || !same_versions {
            let mut columns = vec![
                ("id", int(1)),
                ("stable", opt(after.stable.as_ref(), text)),
                ("canary", opt(after.canary.as_ref(), text)),
            ];
            columns.extend(set_columns(&after.totals));
            self.upsert("client_totals", columns)?;
        }
        if !same_versions {
            self.run("DELETE FROM client_windows", vec![])?;
        }
        for w in &after.windows {
            let stored = before
                .filter(|_| same_versions)
                .and_then(|b| b.windows.iter().find(|x| x.start_ms == w.start_ms));
            if stored != Some(w) {
                let mut columns = vec![("start_ms", V::Float(w.start_ms))];
                columns.extend(set_columns(&w.clients));
                self.upsert("client_windows", columns)?;
            }
        }
        if let Some(oldest) = after.windows.first() {
            self.run(
                "DELETE FROM client_windows WHERE start_ms < ?",
                vec![V::Float(oldest.start_ms)],
            )?;
        }
        Ok(())
    }

    fn save_history(&self, before: Option<&History>, after: &History) -> worker::Result<()> {
        let stored_up_to = before.map_or(0, |b| b.next_seq);
        for e in after.entries.iter().filter(|e| e.seq >= stored_up_to) {
            let mut columns = vec![
                ("seq", int(e.seq)),
                ("at_ms", V::Float(e.at_ms)),
                ("kind", text(&e.kind)),
                ("canary", opt(e.canary.as_ref(), text)),
                ("weight", opt(e.weight, |w| int(u64::from(w.percent())))),
                ("by", text(&e.by)),
                ("reason", text(&e.reason)),
            ];
            columns.extend(count_columns(e.counts));
            self.upsert("history", columns)?;
        }
        if let Some(first) = after.entries.first() {
            if before.and_then(|b| b.entries.first()).map(|e| e.seq) != Some(first.seq) {
                self.run("DELETE FROM history WHERE seq < ?", vec![int(first.seq)])?;
            }
        }
        Ok(())
    }

    /// Adds deliveries to the outbox, due at `now_ms`, and drops the oldest beyond
    /// `OUTBOX_CAP`. Returns how many were dropped.
    pub fn enqueue(&self, deliveries: &[Delivery], now_ms: f64) -> worker::Result<u64> {
        for d in deliveries {
            self.run(
                "INSERT INTO outbox (key, event, format, url, body, attempts, next_at_ms, created_ms) \
                 VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                vec![
                    text(&d.key),
                    text(&d.event),
                    text(d.format.as_str()),
                    text(&d.url),
                    text(&d.body),
                    V::Float(now_ms),
                    V::Float(now_ms),
                ],
            )?;
        }
        #[derive(Deserialize)]
        struct Count {
            n: u64,
        }
        let n = self
            .rows::<Count>("SELECT COUNT(*) AS n FROM outbox")?
            .first()
            .map_or(0, |c| c.n);
        let over = n.saturating_sub(OUTBOX_CAP as u64);
        if over > 0 {
            self.run(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                vec![int(over)],
            )?;
        }
        Ok(over)
    }

    /// The deliveries due at `now_ms`, oldest first (at most `limit`).
    pub fn due(&self, now_ms: f64, limit: u64) -> worker::Result<Vec<OutboxRow>> {
        self.sql
            .exec(
                "SELECT id, key, event, format, url, body, attempts FROM outbox \
                 WHERE next_at_ms <= ? ORDER BY id LIMIT ?",
                vec![V::Float(now_ms), int(limit)],
            )?
            .to_array()
    }

    /// When the next delivery is due, if any waits.
    pub fn next_due_ms(&self) -> worker::Result<Option<f64>> {
        #[derive(Deserialize)]
        struct Next {
            at: Option<f64>,
        }
        Ok(self
            .rows::<Next>("SELECT MIN(next_at_ms) AS at FROM outbox")?
            .first()
            .and_then(|n| n.at))
    }

    /// A delivery made (or given up): gone from the outbox.
    pub fn delivered(&self, id: u64) -> worker::Result<()> {
        self.run("DELETE FROM outbox WHERE id = ?", vec![int(id)])
    }

    /// A failed attempt: the next one at `next_at_ms`.
    pub fn retry(&self, id: u64, attempts: u32, next_at_ms: f64) -> worker::Result<()> {
        self.run(
            "UPDATE outbox SET attempts = ?, next_at_ms = ? WHERE id = ?",
            vec![int(u64::from(attempts)), V::Float(next_at_ms), int(id)],
        )
    }
}

/// A delivery to add to the outbox.
pub struct Delivery {
    pub key: String,
    pub event: String,
    pub format: Format,
    pub url: String,
    pub body: String,
}

/// A delivery waiting in the outbox.
#[derive(Deserialize)]
pub struct OutboxRow {
    pub id: u64,
    pub key: String,
    pub event: String,
    pub format: String,
    pub url: String,
    pub body: String,
    pub attempts: u32,
}
