//! The step's tracker in SQLite: the rows an event changed (`Tracker::take_changes`), one
//! statement per table whatever their number (the rows go in as one JSON array, unpacked by
//! `json_each`: the Durable Object's SQLite allows at most 100 bound values a statement),
//! and the tracker rebuilt from its rows on start. Ids and networks are 8-byte BLOBs,
//! written and read as 16 hex digits.

use serde::Deserialize;
use serde_json::json;
use worker::SqlStorageValue as V;

use canary_core::control::tracker::{
    ClientRow, Refused, Resolution, StoredChanges, Totals, Tracked, Tracker, Waiting, WaitingRow,
};

use super::{int, Store};

fn hex(id: u64) -> String {
    format!("{id:016x}")
}

fn id(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok()
}

#[derive(Deserialize)]
struct ClientColumns {
    client: String,
    canary: u8,
    loaded_ms: f64,
    booted: u8,
    failed: u8,
    state: u8,
    /// Added later (`LATER`): negative in rows written before it (no boot age known).
    boot_age_ms: f64,
    /// Added later (`LATER`): the first boot's `boot_ms`; NULL for none (and in older rows).
    boot_ms: Option<u32>,
}

#[derive(Deserialize)]
struct NetworkColumns {
    network: String,
    clients: u32,
}

#[derive(Deserialize)]
struct WaitingColumns {
    client: String,
    /// Empty in a row written before the column (unknown: 0).
    network: String,
    canary: u8,
    booted: u8,
    failed: u8,
    at_ms: f64,
    /// Added later (`LATER`): NULL for none (and in older rows).
    boot_ms: Option<u32>,
}

#[derive(Deserialize)]
struct TotalsColumns {
    boots_stable: u64,
    boots_canary: u64,
    no_boot_stable: u64,
    no_boot_canary: u64,
    left_out: u64,
    refused_network_cap: u64,
    refused_over_capacity: u64,
    refused_other_channel: u64,
    refused_not_sampled: u64,
    refused_waiting_full: u64,
}

/// `json_extract(value, '$[i]')` for the row's columns `from..to`, in order (column 0, the
/// id, goes through `unhex`).
fn from_json(columns: std::ops::Range<usize>) -> String {
    columns
        .map(|i| format!("json_extract(value, '$[{i}]')"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Writes what the event changed in the tracker, and its counters when they moved.
    pub(super) fn save_tracker(
        &self,
        changes: &StoredChanges,
        totals_before: Option<Totals>,
        totals: Totals,
    ) -> worker::Result<()> {
        if changes.reset {
            for table in ["step_clients", "step_networks", "step_waiting"] {
                self.run(&format!("DELETE FROM {table}"), vec![])?;
            }
        }
        if !changes.clients.is_empty() {
            let rows: Vec<_> = changes
                .clients
                .iter()
                .map(|r| {
                    let t = &r.tracked;
                    json!([
                        hex(r.client),
                        t.canary as u8,
                        t.loaded_ms,
                        t.booted as u8,
                        t.failed as u8,
                        t.state.code(),
                        t.boot_age_ms,
                        t.boot_ms
                    ])
                })
                .collect();
            self.run(
                &format!(
                    "INSERT OR REPLACE INTO step_clients (client, canary, loaded_ms, booted, failed, state, boot_age_ms, boot_ms) \
                     SELECT unhex(json_extract(value, '$[0]')), {} FROM json_each(?)",
                    from_json(1..8)
                ),
                vec![V::String(serde_json::Value::from(rows).to_string())],
            )?;
        }
        if !changes.networks.is_empty() {
            let rows: Vec<_> = changes
                .networks
                .iter()
                .map(|(n, clients)| json!([hex(*n), clients]))
                .collect();
            self.run(
                "INSERT OR REPLACE INTO step_networks (network, clients) \
                 SELECT unhex(json_extract(value, '$[0]')), json_extract(value, '$[1]') FROM json_each(?)",
                vec![V::String(serde_json::Value::from(rows).to_string())],
            )?;
        }
        if !changes.waiting.is_empty() {
            let rows: Vec<_> = changes
                .waiting
                .iter()
                .map(|r| {
                    let w = &r.waiting;
                    json!([
                        hex(r.client),
                        w.canary as u8,
                        w.booted as u8,
                        w.failed as u8,
                        w.at_ms,
                        hex(w.network),
                        w.boot_ms
                    ])
                })
                .collect();
            self.run(
                &format!(
                    "INSERT OR REPLACE INTO step_waiting (client, canary, booted, failed, at_ms, network, boot_ms) \
                     SELECT unhex(json_extract(value, '$[0]')), {}, unhex(json_extract(value, '$[5]')), \
                     json_extract(value, '$[6]') FROM json_each(?)",
                    from_json(1..5)
                ),
                vec![V::String(serde_json::Value::from(rows).to_string())],
            )?;
        }
        if !changes.waiting_gone.is_empty() {
            let ids: Vec<_> = changes.waiting_gone.iter().map(|c| hex(*c)).collect();
            self.run(
                "DELETE FROM step_waiting WHERE client IN (SELECT unhex(value) FROM json_each(?))",
                vec![V::String(serde_json::Value::from(ids).to_string())],
            )?;
        }
        if totals_before != Some(totals) {
            let r = &totals.refused;
            self.upsert(
                "step_tracker",
                [
                    ("id", int(1)),
                    ("boots_stable", int(totals.boots[0])),
                    ("boots_canary", int(totals.boots[1])),
                    ("no_boot_stable", int(totals.no_boot[0])),
                    ("no_boot_canary", int(totals.no_boot[1])),
                    ("left_out", int(totals.left_out)),
                    ("refused_network_cap", int(r.network_cap)),
                    ("refused_over_capacity", int(r.over_capacity)),
                    ("refused_other_channel", int(r.other_channel)),
                    ("refused_not_sampled", int(r.not_sampled)),
                    ("refused_waiting_full", int(r.waiting_full)),
                ],
            )?;
        }
        Ok(())
    }

    /// The step's tracker as stored (empty for a store that has none). A row that does not
    /// parse is skipped, not fatal.
    pub(super) fn load_tracker(&self) -> worker::Result<Tracker> {
        let clients = self
            .rows::<ClientColumns>(
                "SELECT hex(client) AS client, canary, loaded_ms, booted, failed, state, boot_age_ms, boot_ms FROM step_clients",
            )?
            .into_iter()
            .filter_map(|r| {
                Some(ClientRow {
                    client: id(&r.client)?,
                    tracked: Tracked {
                        canary: r.canary != 0,
                        loaded_ms: r.loaded_ms,
                        booted: r.booted != 0,
                        failed: r.failed != 0,
                        state: Resolution::from_code(r.state)?,
                        boot_age_ms: r.boot_age_ms,
                        boot_ms: r.boot_ms,
                    },
                })
            });
        let networks = self
            .rows::<NetworkColumns>("SELECT hex(network) AS network, clients FROM step_networks")?
            .into_iter()
            .filter_map(|r| Some((id(&r.network)?, r.clients)));
        let waiting = self
            .rows::<WaitingColumns>(
                "SELECT hex(client) AS client, hex(network) AS network, canary, booted, failed, at_ms, boot_ms \
                 FROM step_waiting",
            )?
            .into_iter()
            .filter_map(|r| {
                Some(WaitingRow {
                    client: id(&r.client)?,
                    waiting: Waiting {
                        network: match r.network.as_str() {
                            "" => 0,
                            n => id(n)?,
                        },
                        canary: r.canary != 0,
                        booted: r.booted != 0,
                        failed: r.failed != 0,
                        at_ms: r.at_ms,
                        boot_ms: r.boot_ms,
                    },
                })
            });
        let totals = self
            .rows::<TotalsColumns>(
                "SELECT boots_stable, boots_canary, no_boot_stable, no_boot_canary, left_out, \
                 refused_network_cap, refused_over_capacity, refused_other_channel, \
                 refused_not_sampled, refused_waiting_full FROM step_tracker WHERE id = 1",
            )?
            .pop()
            .map(|t| Totals {
                boots: [t.boots_stable, t.boots_canary],
                no_boot: [t.no_boot_stable, t.no_boot_canary],
                left_out: t.left_out,
                refused: Refused {
                    network_cap: t.refused_network_cap,
                    over_capacity: t.refused_over_capacity,
                    other_channel: t.refused_other_channel,
                    not_sampled: t.refused_not_sampled,
                    waiting_full: t.refused_waiting_full,
                },
            })
            .unwrap_or_default();
        // Collected first: `restore` takes the rows while `self.rows` borrows nothing.
        let (clients, networks, waiting): (Vec<_>, Vec<_>, Vec<_>) =
            (clients.collect(), networks.collect(), waiting.collect());
        Ok(Tracker::restore(clients, networks, waiting, totals))
    }
}
