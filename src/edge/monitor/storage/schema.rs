//! The layout of the object's SQLite storage, its version, and the migrations to it.
//!
//! **Version 2** (this one). Every table is `STRICT`: a column holds its declared type or
//! the write fails. Counts, revisions and sequence numbers are `INTEGER` (read back as
//! integers), times in ms are `REAL` (as the control plane keeps them), client sets are
//! `BLOB`s of `ClientSet::to_bytes`, and a rollback's counts are four `INTEGER` columns.
//! The version is the one row of `schema_version`. (`PRAGMA user_version` is refused by
//! the Durable Object's SQLite: `SQLITE_AUTH`.)
//!
//! **Version 1** (no `schema_version` table): the same tables, not strict, client sets as
//! hex `TEXT`, a rollback's counts as JSON `TEXT`.
//!
//! **Tables added within version 2** ([`ADDED`]: `cut`, the verdict kept with a rollback;
//! `step_clients`, `step_networks`, `step_waiting`, `step_tracker`, the step's tracker;
//! `step_policy`, the health policy a step keeps when the config's changed during it;
//! `outbox`, webhook deliveries waiting; `step_signatures`, `step_signature_networks`,
//! `step_signature_totals`, `signatures_previous`, the error signatures)
//! are made, when missing, on every open, at no version change (and so are the columns
//! added to them later, [`LATER`]: `step_waiting.network`, `step_tracker.refused_waiting_full`, `step_clients.boot_age_ms`, `step_clients.boot_ms`, `step_waiting.boot_ms`, `cut.max_boot_slowdown`, `cut.boot_stable`, `cut.boot_canary`): a version-2 worker that
//! does not know one leaves it alone, so every version-2 worker still reads the store, and
//! a store without one (older, or migrated from version 1) reads as having none of its rows.
//!
//! [`open`] brings a store at an older version to this one in place, keeping every row.
//! It runs with no await, so the runtime commits it as one implicit transaction. That
//! transaction is not rolled back when a statement fails (the statements before it are
//! committed; only `transactionSync`, which needs the storage object this module is not
//! given, rolls back), so each table's step can be interrupted and run again: a version-1
//! table is renamed `v1_<name>` first, and the new table is made and filled from it, and
//! the copy dropped, as long as the copy exists. The version is written last.

use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue as V};

/// The layout this code reads and writes.
pub const VERSION: u64 = 2;

/// A column of the current layout: its name, its type and constraints, and what fills it
/// from a version-1 row (an SQL expression over the version-1 columns).
struct Column {
    name: &'static str,
    decl: &'static str,
    from_v1: &'static str,
}

struct Table {
    name: &'static str,
    columns: &'static [Column],
}

const fn col(name: &'static str, decl: &'static str, from_v1: &'static str) -> Column {
    Column {
        name,
        decl,
        from_v1,
    }
}

// Version 1 wrote integers and reals as JSON numbers into INTEGER and REAL columns, which
// SQLite's affinity already stored as such: the casts change no value, and make sure no
// row can fail the strict types. A set whose hex does not parse becomes an empty BLOB,
// which reads as an empty set, as version 1 read it.
const ONE: &str = "1";

// The four client sets of a row (totals, a window).
const STABLE_LOADED: Column = col(
    "stable_loaded",
    "BLOB NOT NULL",
    "coalesce(unhex(stable_loaded), x'')",
);
const STABLE_ERRORED: Column = col(
    "stable_errored",
    "BLOB NOT NULL",
    "coalesce(unhex(stable_errored), x'')",
);
const CANARY_LOADED: Column = col(
    "canary_loaded",
    "BLOB NOT NULL",
    "coalesce(unhex(canary_loaded), x'')",
);
const CANARY_ERRORED: Column = col(
    "canary_errored",
    "BLOB NOT NULL",
    "coalesce(unhex(canary_errored), x'')",
);

/// A count of version 1's JSON `counts` (a rollback's), or NULL.
macro_rules! json_count {
    ($path:literal) => {
        concat!(
            "CASE WHEN json_valid(counts) THEN CAST(json_extract(counts, '",
            $path,
            "') AS INTEGER) END"
        )
    };
}

const TABLES: &[Table] = &[
    Table {
        name: "meta",
        columns: &[
            col("id", "INTEGER PRIMARY KEY CHECK (id = 1)", ONE),
            col("bundle", "TEXT NOT NULL", "CAST(bundle AS TEXT)"),
            col("config", "TEXT", "CAST(config AS TEXT)"),
            col("revision", "INTEGER NOT NULL", "CAST(revision AS INTEGER)"),
            col("last_write_ms", "REAL", "CAST(last_write_ms AS REAL)"),
            col("retry_at_ms", "REAL", "CAST(retry_at_ms AS REAL)"),
            col("failures", "INTEGER NOT NULL", "CAST(failures AS INTEGER)"),
            col("next_seq", "INTEGER NOT NULL", "CAST(next_seq AS INTEGER)"),
        ],
    },
    Table {
        name: "own_writes",
        columns: &[
            col(
                "revision",
                "INTEGER PRIMARY KEY",
                "CAST(revision AS INTEGER)",
            ),
            col("digest", "TEXT NOT NULL", "CAST(digest AS TEXT)"),
            col("written_ms", "REAL NOT NULL", "CAST(written_ms AS REAL)"),
        ],
    },
    Table {
        name: "progress",
        columns: &[
            col("id", "INTEGER PRIMARY KEY CHECK (id = 1)", ONE),
            col("canary", "TEXT NOT NULL", "CAST(canary AS TEXT)"),
            // The plan's weights, a JSON array: `[10,50,100]`.
            col("steps", "TEXT NOT NULL", "CAST(steps AS TEXT)"),
            col(
                "bake_secs",
                "INTEGER NOT NULL",
                "CAST(bake_secs AS INTEGER)",
            ),
            col("step", "INTEGER NOT NULL", "CAST(step AS INTEGER)"),
            col(
                "step_started_ms",
                "REAL NOT NULL",
                "CAST(step_started_ms AS REAL)",
            ),
            col("state", "TEXT NOT NULL", "CAST(state AS TEXT)"),
            col("reason", "TEXT", "CAST(reason AS TEXT)"),
        ],
    },
    Table {
        name: "client_totals",
        columns: &[
            col("id", "INTEGER PRIMARY KEY CHECK (id = 1)", ONE),
            col("stable", "TEXT", "CAST(stable AS TEXT)"),
            col("canary", "TEXT", "CAST(canary AS TEXT)"),
            STABLE_LOADED,
            STABLE_ERRORED,
            CANARY_LOADED,
            CANARY_ERRORED,
        ],
    },
    Table {
        name: "client_windows",
        columns: &[
            col("start_ms", "REAL PRIMARY KEY", "CAST(start_ms AS REAL)"),
            STABLE_LOADED,
            STABLE_ERRORED,
            CANARY_LOADED,
            CANARY_ERRORED,
        ],
    },
    Table {
        name: "step_counts",
        columns: &[
            col("id", "INTEGER PRIMARY KEY CHECK (id = 1)", ONE),
            col(
                "canary_clients",
                "INTEGER NOT NULL",
                "CAST(canary_clients AS INTEGER)",
            ),
            col(
                "canary_errors",
                "INTEGER NOT NULL",
                "CAST(canary_errors AS INTEGER)",
            ),
            col(
                "stable_clients",
                "INTEGER NOT NULL",
                "CAST(stable_clients AS INTEGER)",
            ),
            col(
                "stable_errors",
                "INTEGER NOT NULL",
                "CAST(stable_errors AS INTEGER)",
            ),
            // The silence family: resolved clients, and the silent ones among them.
            col(
                "canary_resolved",
                "INTEGER NOT NULL",
                "CAST(canary_resolved AS INTEGER)",
            ),
            col(
                "canary_silent",
                "INTEGER NOT NULL",
                "CAST(canary_silent AS INTEGER)",
            ),
            col(
                "stable_resolved",
                "INTEGER NOT NULL",
                "CAST(stable_resolved AS INTEGER)",
            ),
            col(
                "stable_silent",
                "INTEGER NOT NULL",
                "CAST(stable_silent AS INTEGER)",
            ),
        ],
    },
    Table {
        name: "booting_versions",
        columns: &[
            col("seq", "INTEGER PRIMARY KEY", "CAST(seq AS INTEGER)"),
            col("version", "TEXT NOT NULL", "CAST(version AS TEXT)"),
        ],
    },
    Table {
        name: "minutes",
        columns: &[
            col("minute", "INTEGER PRIMARY KEY", "CAST(minute AS INTEGER)"),
            col("stable", "TEXT NOT NULL", "CAST(stable AS TEXT)"),
            col("canary", "TEXT", "CAST(canary AS TEXT)"),
            col(
                "stable_clients",
                "INTEGER NOT NULL",
                "CAST(stable_clients AS INTEGER)",
            ),
            col(
                "stable_errors",
                "INTEGER NOT NULL",
                "CAST(stable_errors AS INTEGER)",
            ),
            col(
                "canary_clients",
                "INTEGER NOT NULL",
                "CAST(canary_clients AS INTEGER)",
            ),
            col(
                "canary_errors",
                "INTEGER NOT NULL",
                "CAST(canary_errors AS INTEGER)",
            ),
        ],
    },
    Table {
        name: "history",
        columns: &[
            col("seq", "INTEGER PRIMARY KEY", "CAST(seq AS INTEGER)"),
            col("at_ms", "REAL NOT NULL", "CAST(at_ms AS REAL)"),
            col("kind", "TEXT NOT NULL", "CAST(kind AS TEXT)"),
            col("canary", "TEXT", "CAST(canary AS TEXT)"),
            col("weight", "INTEGER", "CAST(weight AS INTEGER)"),
            col("by", "TEXT NOT NULL", "CAST(\"by\" AS TEXT)"),
            col("reason", "TEXT NOT NULL", "CAST(reason AS TEXT)"),
            // The counts when the entry was made (rollbacks): all four, or all NULL.
            col("stable_clients", "INTEGER", json_count!("$.stable.clients")),
            col("stable_errors", "INTEGER", json_count!("$.stable.errors")),
            col("canary_clients", "INTEGER", json_count!("$.canary.clients")),
            col("canary_errors", "INTEGER", json_count!("$.canary.errors")),
        ],
    },
];

/// A column of a table added within version 2 (never in a version-1 store, so nothing to
/// copy from).
const fn added(name: &'static str, decl: &'static str) -> Column {
    col(name, decl, "NULL")
}

/// Tables added within version 2, made when missing on every open (see the module's notes).
const ADDED: &[Table] = &[
    Table {
        // The verdict as it stood when the canary was cut (`control::health::Cut`): one row
        // while the cut canary stays dark. The verdict is recomputed from these numbers.
        name: "cut",
        columns: &[
            added("id", "INTEGER PRIMARY KEY CHECK (id = 1)"),
            added("at_ms", "REAL NOT NULL"),
            added("canary", "TEXT NOT NULL"),
            added("weight", "INTEGER NOT NULL"),
            added("by", "TEXT NOT NULL"),
            added("reason", "TEXT NOT NULL"),
            // The step's evidence (as in `step_counts`).
            added("canary_clients", "INTEGER NOT NULL"),
            added("canary_errors", "INTEGER NOT NULL"),
            added("stable_clients", "INTEGER NOT NULL"),
            added("stable_errors", "INTEGER NOT NULL"),
            added("canary_resolved", "INTEGER NOT NULL"),
            added("canary_silent", "INTEGER NOT NULL"),
            added("stable_resolved", "INTEGER NOT NULL"),
            added("stable_silent", "INTEGER NOT NULL"),
            // The exposure: the canary's share of the step's tracked clients, and whether
            // silence was judged (0 or 1).
            added("canary_share", "REAL NOT NULL"),
            added("judge_silence", "INTEGER NOT NULL"),
            // The tests' knobs at the cut.
            added("confidence", "REAL NOT NULL"),
            added("max_increase", "REAL NOT NULL"),
            added("min_error_rate", "REAL NOT NULL"),
            added("min_clients", "INTEGER NOT NULL"),
            added("hostile_clients", "INTEGER NOT NULL"),
            // Added later (`LATER`): the boot-time guard's tolerance at the cut (a cut
            // stored before it: the default's).
            added("max_boot_slowdown", "REAL NOT NULL DEFAULT 0.25"),
            // Added later (`LATER`): the step's boot times per channel at the cut
            // (`BootTimes::to_bytes`: 4 bytes a value), so the kept verdict is the same after
            // a restart; empty in a cut stored before them (no boot times: no boot family).
            added("boot_stable", "BLOB NOT NULL DEFAULT x''"),
            added("boot_canary", "BLOB NOT NULL DEFAULT x''"),
        ],
    },
    // The current step's tracker (`control::tracker`), so that a restart mid-step forgets no
    // network, pending client or waiting signal: a row per client, network and waiting
    // signal, written as they change; emptied with the step. Ids and networks are 64-bit
    // values as 8-byte BLOBs (a JavaScript number would not carry them exact).
    Table {
        name: "step_clients",
        columns: &[
            added("client", "BLOB PRIMARY KEY"),
            added("canary", "INTEGER NOT NULL"),
            added("loaded_ms", "REAL NOT NULL"),
            added("booted", "INTEGER NOT NULL"),
            added("failed", "INTEGER NOT NULL"),
            // `tracker::Resolution::code`: 0 pending, 1 counted, 2 counted with a failure,
            // 3 silent, 4 left out.
            added("state", "INTEGER NOT NULL"),
            // Added later (`LATER`): the age of the client's first boot (ms after its load),
            // negative for none (rows written before it: no boot age known).
            added("boot_age_ms", "REAL NOT NULL DEFAULT -1"),
            // Added later (`LATER`): the `boot_ms` its first boot signal carried (the
            // boot-time guard's value); NULL for none, and in rows written before it.
            added("boot_ms", "INTEGER"),
        ],
    },
    Table {
        name: "step_networks",
        columns: &[
            added("network", "BLOB PRIMARY KEY"),
            added("clients", "INTEGER NOT NULL"),
        ],
    },
    Table {
        name: "step_waiting",
        columns: &[
            added("client", "BLOB PRIMARY KEY"),
            added("canary", "INTEGER NOT NULL"),
            added("booted", "INTEGER NOT NULL"),
            added("failed", "INTEGER NOT NULL"),
            added("at_ms", "REAL NOT NULL"),
            // Added later (`LATER`): the network the signal came from, for the per-network
            // cap; empty in rows written before it (read as 0, unknown).
            added("network", "BLOB NOT NULL DEFAULT x''"),
            // Added later (`LATER`): the first boot signal's `boot_ms`, or NULL.
            added("boot_ms", "INTEGER"),
        ],
    },
    Table {
        // The tracker's counters (`tracker::Totals`): one row.
        name: "step_tracker",
        columns: &[
            added("id", "INTEGER PRIMARY KEY CHECK (id = 1)"),
            added("boots_stable", "INTEGER NOT NULL"),
            added("boots_canary", "INTEGER NOT NULL"),
            added("no_boot_stable", "INTEGER NOT NULL"),
            added("no_boot_canary", "INTEGER NOT NULL"),
            added("left_out", "INTEGER NOT NULL"),
            added("refused_network_cap", "INTEGER NOT NULL"),
            added("refused_over_capacity", "INTEGER NOT NULL"),
            added("refused_other_channel", "INTEGER NOT NULL"),
            added("refused_not_sampled", "INTEGER NOT NULL"),
            // Added later (`LATER`).
            added("refused_waiting_full", "INTEGER NOT NULL DEFAULT 0"),
        ],
    },
    Table {
        // The health policy the running step started with, while the config's has changed
        // since (`Control::step_health`, JSON): one row, or none.
        name: "step_policy",
        columns: &[
            added("id", "INTEGER PRIMARY KEY CHECK (id = 1)"),
            added("health", "TEXT NOT NULL"),
        ],
    },
    // The step's error signatures (`control::signatures`): a row per signature (clients per
    // channel, a sample message and top frame: attacker text, bounded), a row per network's
    // count of a signature on a channel (the per-network cap), the step's counters (JSON),
    // all emptied with the step; and the previous step that saw errors (JSON: its view and
    // its stable signatures), replaced when a step that saw errors ends.
    Table {
        name: "step_signatures",
        columns: &[
            added("signature", "BLOB PRIMARY KEY"),
            added("kind", "TEXT NOT NULL"),
            added("stable", "INTEGER NOT NULL"),
            added("canary", "INTEGER NOT NULL"),
            added("sample", "TEXT NOT NULL"),
            added("frame", "TEXT"),
        ],
    },
    Table {
        name: "step_signature_networks",
        columns: &[
            added("network", "BLOB NOT NULL"),
            added("signature", "BLOB NOT NULL"),
            added("canary", "INTEGER NOT NULL"),
        ],
    },
    Table {
        name: "step_signature_totals",
        columns: &[
            added("id", "INTEGER PRIMARY KEY CHECK (id = 1)"),
            added("value", "TEXT NOT NULL"),
        ],
    },
    Table {
        name: "signatures_previous",
        columns: &[
            added("id", "INTEGER PRIMARY KEY CHECK (id = 1)"),
            added("value", "TEXT NOT NULL"),
        ],
    },
    Table {
        // Webhook deliveries waiting to be made (`control::notify`): one row per notification
        // and receiver, deleted once delivered or given up; at most `notify::OUTBOX_CAP`.
        name: "outbox",
        columns: &[
            added("id", "INTEGER PRIMARY KEY"),
            // The idempotency key (`X-Canary-Delivery`, the body's `id`).
            added("key", "TEXT NOT NULL"),
            added("event", "TEXT NOT NULL"),
            // `slack` or `json`, the receiver's URL, and the exact body sent.
            added("format", "TEXT NOT NULL"),
            added("url", "TEXT NOT NULL"),
            added("body", "TEXT NOT NULL"),
            // Attempts made so far, and when the next is due.
            added("attempts", "INTEGER NOT NULL"),
            added("next_at_ms", "REAL NOT NULL"),
            added("created_ms", "REAL NOT NULL"),
        ],
    },
];

/// Columns added to a table of [`ADDED`] after it first shipped, by table and name: a store
/// whose table lacks one gets it by `ALTER TABLE … ADD COLUMN`, its rows the column's
/// default, at no version change. A version-2 worker that does not know the column reads
/// and writes the columns it names, and its inserts get the default.
const LATER: &[(&str, &str)] = &[
    ("step_waiting", "network"),
    ("step_tracker", "refused_waiting_full"),
    ("step_clients", "boot_age_ms"),
    ("step_clients", "boot_ms"),
    ("step_waiting", "boot_ms"),
    ("cut", "max_boot_slowdown"),
    ("cut", "boot_stable"),
    ("cut", "boot_canary"),
];

#[derive(Deserialize)]
struct ColumnRow {
    name: String,
}

/// Makes the tables added within version 2 that the store does not have yet, and the
/// columns added to them later.
fn add_missing(sql: &SqlStorage) -> worker::Result<()> {
    for table in ADDED {
        exec(sql, &table.create(true))?;
        let later: Vec<&Column> = table
            .columns
            .iter()
            .filter(|c| LATER.contains(&(table.name, c.name)))
            .collect();
        if later.is_empty() {
            continue;
        }
        let present: Vec<String> = sql
            .exec(&format!("PRAGMA table_info(\"{}\")", table.name), None)?
            .to_array::<ColumnRow>()?
            .into_iter()
            .map(|c| c.name)
            .collect();
        for c in later
            .into_iter()
            .filter(|c| !present.iter().any(|p| p == c.name))
        {
            exec(
                sql,
                &format!(
                    "ALTER TABLE \"{}\" ADD COLUMN \"{}\" {}",
                    table.name, c.name, c.decl
                ),
            )?;
        }
    }
    Ok(())
}

/// Tables of layouts before version 1, dropped on open (as version 1 did).
const DROPPED: &[&str] = &["step_evidence"];

impl Table {
    fn create(&self, if_not_exists: bool) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("\"{}\" {}", c.name, c.decl))
            .collect();
        format!(
            "CREATE TABLE {}\"{}\" ({}) STRICT",
            if if_not_exists { "IF NOT EXISTS " } else { "" },
            self.name,
            columns.join(", ")
        )
    }

    /// Fills the table from `source`, a version-1 table of the same name.
    fn copy_from_v1(&self, source: &str) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        let values: Vec<&str> = self.columns.iter().map(|c| c.from_v1).collect();
        format!(
            "INSERT INTO \"{}\" ({}) SELECT {} FROM \"{source}\"",
            self.name,
            names.join(", "),
            values.join(", ")
        )
    }
}

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  version INTEGER NOT NULL
) STRICT";

#[derive(Deserialize)]
struct VersionRow {
    version: u64,
}

#[derive(Deserialize)]
struct TableRow {
    name: String,
    strict: u8,
}

fn exec(sql: &SqlStorage, query: &str) -> worker::Result<()> {
    sql.exec(query, None).map(|_| ())
}

/// The version of the store: 0 for an empty one, 1 for the layout before versions.
fn stored_version(sql: &SqlStorage) -> worker::Result<u64> {
    exec(sql, VERSION_TABLE)?;
    let stored = sql
        .exec("SELECT version FROM schema_version WHERE id = 1", None)?
        .to_array::<VersionRow>()?;
    if let Some(row) = stored.first() {
        return Ok(row.version);
    }
    let tables = tables(sql)?;
    Ok(if TABLES.iter().any(|t| tables.contains_key(t.name)) {
        1
    } else {
        0
    })
}

/// The store's tables, each with whether it is strict.
fn tables(sql: &SqlStorage) -> worker::Result<std::collections::HashMap<String, bool>> {
    Ok(sql
        .exec("PRAGMA table_list", None)?
        .to_array::<TableRow>()?
        .into_iter()
        .map(|t| (t.name, t.strict != 0))
        .collect())
}

/// Makes the store's layout the current one: creates it in an empty store, migrates an
/// older one in place. Errors on a store newer than this code (a worker rolled back past
/// a migration), rather than misread it.
pub fn open(sql: &SqlStorage) -> worker::Result<()> {
    match stored_version(sql)? {
        VERSION => add_missing(sql),
        v if v > VERSION => Err(worker::Error::RustError(format!(
            "the monitor's storage is at schema version {v}; this worker reads version \
             {VERSION}: deploy a worker that knows version {v}"
        ))),
        _ => upgrade(sql),
    }
}

/// From version 0 (nothing) or 1 to [`VERSION`]; see the module's notes.
fn upgrade(sql: &SqlStorage) -> worker::Result<()> {
    for name in DROPPED {
        exec(sql, &format!("DROP TABLE IF EXISTS \"{name}\""))?;
    }
    let found = tables(sql)?;
    for table in TABLES {
        let old = format!("v1_{}", table.name);
        let is_v1 = found.get(table.name) == Some(&false);
        if is_v1 && !found.contains_key(&old) {
            exec(
                sql,
                &format!("ALTER TABLE \"{}\" RENAME TO \"{old}\"", table.name),
            )?;
        }
        if is_v1 || found.contains_key(&old) {
            // A table made by an interrupted run is made again from the copy.
            exec(sql, &format!("DROP TABLE IF EXISTS \"{}\"", table.name))?;
            exec(sql, &table.create(false))?;
            exec(sql, &table.copy_from_v1(&old))?;
            exec(sql, &format!("DROP TABLE \"{old}\""))?;
        } else {
            exec(sql, &table.create(true))?;
        }
    }
    add_missing(sql)?;
    sql.exec(
        "INSERT OR REPLACE INTO schema_version (id, version) VALUES (1, ?)",
        vec![V::Integer(VERSION as i64)],
    )?;
    Ok(())
}
