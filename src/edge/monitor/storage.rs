//! The control plane's state in the Durable Object's SQLite storage: typed tables, one row
//! per thing, written as a diff of the state before and after an event (an ingest touches
//! the current window and the totals, not the whole state). All writes of one event are
//! synchronous and uninterrupted, so the runtime commits them as one transaction.

use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue as V};

use canary_core::config::{BundleName, Progression, Rollout, Version, Weight};
use canary_core::control::clients::ClientSet;
use canary_core::control::counts::{
    ChannelClients, ChannelCounts, Clients, Counts, HealthWindows, Window,
};
use canary_core::control::history::{Entry, History};
use canary_core::control::minutes::{Minute, Minutes};
use canary_core::control::progress::{Progress, ProgressState};
use canary_core::control::projection::{OwnWrite, Projection};
use canary_core::control::verdict::Evidence;
use canary_core::control::Control;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  bundle TEXT NOT NULL,
  config TEXT,
  revision INTEGER NOT NULL,
  last_write_ms REAL,
  retry_at_ms REAL,
  failures INTEGER NOT NULL,
  next_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS own_writes (
  revision INTEGER PRIMARY KEY,
  digest TEXT NOT NULL,
  written_ms REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS progress (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  canary TEXT NOT NULL,
  steps TEXT NOT NULL,
  bake_secs INTEGER NOT NULL,
  step INTEGER NOT NULL,
  step_started_ms REAL NOT NULL,
  state TEXT NOT NULL,
  reason TEXT
);
CREATE TABLE IF NOT EXISTS client_totals (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  stable TEXT,
  canary TEXT,
  stable_loaded TEXT NOT NULL,
  stable_errored TEXT NOT NULL,
  canary_loaded TEXT NOT NULL,
  canary_errored TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS client_windows (
  start_ms REAL PRIMARY KEY,
  stable_loaded TEXT NOT NULL,
  stable_errored TEXT NOT NULL,
  canary_loaded TEXT NOT NULL,
  canary_errored TEXT NOT NULL
);
DROP TABLE IF EXISTS step_evidence;
CREATE TABLE IF NOT EXISTS step_counts (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  canary_clients INTEGER NOT NULL,
  canary_errors INTEGER NOT NULL,
  stable_clients INTEGER NOT NULL,
  stable_errors INTEGER NOT NULL,
  canary_resolved INTEGER NOT NULL,
  canary_silent INTEGER NOT NULL,
  stable_resolved INTEGER NOT NULL,
  stable_silent INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS booting_versions (
  seq INTEGER PRIMARY KEY,
  version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS minutes (
  minute INTEGER PRIMARY KEY,
  stable TEXT NOT NULL,
  canary TEXT,
  stable_clients INTEGER NOT NULL,
  stable_errors INTEGER NOT NULL,
  canary_clients INTEGER NOT NULL,
  canary_errors INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
  seq INTEGER PRIMARY KEY,
  at_ms REAL NOT NULL,
  kind TEXT NOT NULL,
  canary TEXT,
  weight INTEGER,
  by TEXT NOT NULL,
  reason TEXT NOT NULL,
  counts TEXT
);
";

pub(super) struct Store {
    sql: SqlStorage,
}

fn text(s: impl ToString) -> V {
    V::String(s.to_string())
}

fn int(n: u64) -> V {
    V::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> V) -> V {
    v.map(f).unwrap_or(V::Null)
}

fn count(n: f64) -> u64 {
    if n.is_finite() && n > 0.0 {
        n as u64
    } else {
        0
    }
}

#[derive(Deserialize)]
struct MetaRow {
    bundle: String,
    config: Option<String>,
    revision: f64,
    last_write_ms: Option<f64>,
    retry_at_ms: Option<f64>,
    failures: f64,
    next_seq: f64,
}

#[derive(Deserialize)]
struct OwnWriteRow {
    revision: f64,
    digest: String,
    written_ms: f64,
}

#[derive(Deserialize)]
struct MinuteRow {
    minute: f64,
    stable: String,
    canary: Option<String>,
    stable_clients: f64,
    stable_errors: f64,
    canary_clients: f64,
    canary_errors: f64,
}

impl MinuteRow {
    fn minute(self) -> Option<Minute> {
        Some(Minute {
            minute: count(self.minute),
            stable: Version::parse(&self.stable).ok()?,
            canary: match self.canary {
                Some(v) => Some(Version::parse(&v).ok()?),
                None => None,
            },
            counts: ChannelCounts {
                stable: Counts {
                    clients: count(self.stable_clients),
                    errors: count(self.stable_errors),
                },
                canary: Counts {
                    clients: count(self.canary_clients),
                    errors: count(self.canary_errors),
                },
            },
        })
    }
}

#[derive(Deserialize)]
struct ProgressRow {
    canary: String,
    steps: String,
    bake_secs: f64,
    step: f64,
    step_started_ms: f64,
    state: String,
    reason: Option<String>,
}

/// Four client sets, as stored: the hex of `ClientSet::to_bytes` (at most 2 KiB each).
#[derive(Deserialize)]
struct SetColumns {
    stable_loaded: String,
    stable_errored: String,
    canary_loaded: String,
    canary_errored: String,
}

impl SetColumns {
    /// The stored sets; one that does not parse is read as empty (never fatal).
    fn clients(&self) -> Clients {
        let set = |t: &str| {
            hex::decode(t)
                .ok()
                .and_then(|b| ClientSet::from_bytes(&b))
                .unwrap_or_default()
        };
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

fn set_values(c: &Clients) -> [V; 4] {
    let hex_of = |set: &ClientSet| V::String(hex::encode(set.to_bytes()));
    [
        hex_of(&c.stable.loaded),
        hex_of(&c.stable.errored),
        hex_of(&c.canary.loaded),
        hex_of(&c.canary.errored),
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

#[derive(Deserialize)]
struct StepCountsRow {
    canary_clients: f64,
    canary_errors: f64,
    stable_clients: f64,
    stable_errors: f64,
    canary_resolved: f64,
    canary_silent: f64,
    stable_resolved: f64,
    stable_silent: f64,
}

#[derive(Deserialize)]
struct BootingRow {
    version: String,
}

#[derive(Deserialize)]
struct HistoryRow {
    seq: f64,
    at_ms: f64,
    kind: String,
    canary: Option<String>,
    weight: Option<f64>,
    by: String,
    reason: String,
    counts: Option<String>,
}

impl Store {
    pub fn open(sql: SqlStorage) -> worker::Result<Self> {
        for statement in SCHEMA.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sql.exec(statement, None)?;
        }
        Ok(Self { sql })
    }

    fn rows<T: for<'de> Deserialize<'de>>(&self, query: &str) -> worker::Result<Vec<T>> {
        self.sql.exec(query, None)?.to_array()
    }

    fn run(&self, query: &str, bindings: Vec<V>) -> worker::Result<()> {
        self.sql.exec(query, bindings).map(|_| ())
    }

    /// The stored state, or `None` for an object that never stored one. Rows that no
    /// longer parse (a version this code rejects) are skipped, not fatal.
    pub fn load(&self, cohorts: u16) -> worker::Result<Option<Control>> {
        let Some(meta) = self.rows::<MetaRow>("SELECT * FROM meta")?.pop() else {
            return Ok(None);
        };
        let Ok(bundle) = BundleName::parse(&meta.bundle) else {
            return Ok(None);
        };
        let mut c = Control::new(bundle, cohorts);
        c.config = meta.config.and_then(|t| Rollout::parse(&t).ok());
        c.kv = Projection {
            revision: count(meta.revision),
            own_writes: self
                .rows::<OwnWriteRow>("SELECT * FROM own_writes ORDER BY revision")?
                .into_iter()
                .map(|r| OwnWrite {
                    revision: count(r.revision),
                    digest: r.digest,
                    written_ms: r.written_ms,
                })
                .collect(),
            last_write_ms: meta.last_write_ms,
            retry_at_ms: meta.retry_at_ms,
            failures: count(meta.failures) as u32,
        };
        c.progress = self
            .rows::<ProgressRow>("SELECT * FROM progress")?
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
                        bake_secs: count(p.bake_secs) as u32,
                    },
                    step: count(p.step) as usize,
                    step_started_ms: p.step_started_ms,
                    state: ProgressState::parse(&p.state)?,
                    reason: p.reason,
                })
            });
        if let Some(h) = self.rows::<HealthRow>("SELECT * FROM client_totals")?.pop() {
            c.health = HealthWindows {
                stable: h.stable.and_then(|v| Version::parse(&v).ok()),
                canary: h.canary.and_then(|v| Version::parse(&v).ok()),
                windows: self
                    .rows::<WindowRow>("SELECT * FROM client_windows ORDER BY start_ms")?
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
            .rows::<StepCountsRow>("SELECT * FROM step_counts")?
            .pop()
        {
            c.evidence = Evidence {
                seen: ChannelCounts {
                    canary: Counts {
                        clients: count(e.canary_clients),
                        errors: count(e.canary_errors),
                    },
                    stable: Counts {
                        clients: count(e.stable_clients),
                        errors: count(e.stable_errors),
                    },
                },
                silence: ChannelCounts {
                    canary: Counts {
                        clients: count(e.canary_resolved),
                        errors: count(e.canary_silent),
                    },
                    stable: Counts {
                        clients: count(e.stable_resolved),
                        errors: count(e.stable_silent),
                    },
                },
            };
        }
        c.booting = self
            .rows::<BootingRow>("SELECT version FROM booting_versions ORDER BY seq")?
            .into_iter()
            .filter_map(|r| Version::parse(&r.version).ok())
            .collect();
        c.minutes = Minutes::from_rows(
            self.rows::<MinuteRow>("SELECT * FROM minutes ORDER BY minute")?
                .into_iter()
                .filter_map(MinuteRow::minute),
        );
        c.history = History {
            entries: self
                .rows::<HistoryRow>("SELECT * FROM history ORDER BY seq")?
                .into_iter()
                .map(|e| Entry {
                    seq: count(e.seq),
                    at_ms: e.at_ms,
                    kind: e.kind,
                    canary: e.canary.and_then(|v| Version::parse(&v).ok()),
                    weight: e.weight.and_then(|w| Weight::new(count(w)).ok()),
                    by: e.by,
                    reason: e.reason,
                    counts: e.counts.and_then(|t| serde_json::from_str(&t).ok()),
                })
                .collect(),
            next_seq: count(meta.next_seq),
        };
        Ok(Some(c))
    }

    /// Writes what changed between `before` (what is stored) and `after`.
    pub fn save(&self, before: Option<&Control>, after: &Control) -> worker::Result<()> {
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
            self.run(
                "INSERT OR REPLACE INTO meta VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    text(&after.bundle),
                    opt(after.config.as_ref(), |c| text(c.to_json())),
                    int(after.kv.revision),
                    opt(after.kv.last_write_ms, V::Float),
                    opt(after.kv.retry_at_ms, V::Float),
                    int(u64::from(after.kv.failures)),
                    int(after.history.next_seq),
                ],
            )?;
        }
        if changed(&|b| b.kv.own_writes != after.kv.own_writes) {
            self.run("DELETE FROM own_writes", vec![])?;
            for w in &after.kv.own_writes {
                self.run(
                    "INSERT INTO own_writes VALUES (?, ?, ?)",
                    vec![int(w.revision), text(&w.digest), V::Float(w.written_ms)],
                )?;
            }
        }
        if changed(&|b| b.progress != after.progress) {
            match &after.progress {
                None => self.run("DELETE FROM progress", vec![])?,
                Some(p) => self.run(
                    "INSERT OR REPLACE INTO progress VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        text(&p.canary),
                        text(serde_json::json!(p.plan.steps)),
                        int(u64::from(p.plan.bake_secs)),
                        int(p.step as u64),
                        V::Float(p.step_started_ms),
                        text(p.state.as_str()),
                        opt(p.reason.as_deref(), text),
                    ],
                )?,
            }
        }
        if changed(&|b| b.evidence != after.evidence) {
            let (e, q) = (&after.evidence.seen, &after.evidence.silence);
            self.run(
                "INSERT OR REPLACE INTO step_counts VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    int(e.canary.clients),
                    int(e.canary.errors),
                    int(e.stable.clients),
                    int(e.stable.errors),
                    int(q.canary.clients),
                    int(q.canary.errors),
                    int(q.stable.clients),
                    int(q.stable.errors),
                ],
            )?;
        }
        if changed(&|b| b.booting != after.booting) {
            self.run("DELETE FROM booting_versions", vec![])?;
            for (seq, version) in after.booting.iter().enumerate() {
                self.run(
                    "INSERT INTO booting_versions VALUES (?, ?)",
                    vec![int(seq as u64), text(version)],
                )?;
            }
        }
        self.save_health(before.map(|b| &b.health), &after.health)?;
        self.save_minutes(before.map(|b| &b.minutes), &after.minutes)?;
        self.save_history(before.map(|b| &b.history), &after.history)
    }

    /// Upserts the minutes that changed (the current one, as a rule) and drops those that
    /// aged out.
    fn save_minutes(&self, before: Option<&Minutes>, after: &Minutes) -> worker::Result<()> {
        for m in after.rows() {
            let stored = before.and_then(|b| b.rows().find(|x| x.minute == m.minute));
            if stored != Some(m) {
                let c = &m.counts;
                self.run(
                    "INSERT OR REPLACE INTO minutes VALUES (?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        int(m.minute),
                        text(&m.stable),
                        opt(m.canary.as_ref(), text),
                        int(c.stable.clients),
                        int(c.stable.errors),
                        int(c.canary.clients),
                        int(c.canary.errors),
                    ],
                )?;
            }
        }
        if let Some(oldest) = after.rows().next().map(|m| m.minute) {
            if before.and_then(|b| b.rows().next()).map(|m| m.minute) != Some(oldest) {
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
            let mut values = vec![
                opt(after.stable.as_ref(), text),
                opt(after.canary.as_ref(), text),
            ];
            values.extend(set_values(&after.totals));
            self.run(
                "INSERT OR REPLACE INTO client_totals VALUES (1, ?, ?, ?, ?, ?, ?)",
                values,
            )?;
        }
        if !same_versions {
            self.run("DELETE FROM client_windows", vec![])?;
        }
        for w in &after.windows {
            let stored = before
                .filter(|_| same_versions)
                .and_then(|b| b.windows.iter().find(|x| x.start_ms == w.start_ms));
            if stored != Some(w) {
                let mut values = vec![V::Float(w.start_ms)];
                values.extend(set_values(&w.clients));
                self.run(
                    "INSERT OR REPLACE INTO client_windows VALUES (?, ?, ?, ?, ?)",
                    values,
                )?;
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
            self.run(
                "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    int(e.seq),
                    V::Float(e.at_ms),
                    text(&e.kind),
                    opt(e.canary.as_ref(), text),
                    opt(e.weight, |w| int(u64::from(w.percent()))),
                    text(&e.by),
                    text(&e.reason),
                    opt(e.counts, |c| text(serde_json::json!(c))),
                ],
            )?;
        }
        if let Some(first) = after.entries.first() {
            if before.and_then(|b| b.entries.first()).map(|e| e.seq) != Some(first.seq) {
                self.run("DELETE FROM history WHERE seq < ?", vec![int(first.seq)])?;
            }
        }
        Ok(())
    }
}
