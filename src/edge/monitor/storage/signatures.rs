//! The step's error signatures in SQLite (`control::signatures`): the rows an event changed
//! (`Signatures::take_changes`), one statement per table (the rows as one JSON array,
//! unpacked by `json_each`, as the tracker's), and the signatures rebuilt on start. A store
//! written before these tables has none: it reads as a step without signatures.

use serde::Deserialize;
use serde_json::json;
use worker::SqlStorageValue as V;

use canary_core::control::signatures::{
    Entry, NetworkRow, Previous, SignatureTotals, SignatureWrites, Signatures,
};

use super::{int, text, Store};

fn hex(id: u64) -> String {
    format!("{id:016x}")
}

fn id(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok()
}

#[derive(Deserialize)]
struct SignatureColumns {
    signature: String,
    kind: String,
    stable: u64,
    canary: u64,
    sample: String,
    frame: Option<String>,
}

#[derive(Deserialize)]
struct NetworkColumns {
    network: String,
    signature: String,
    canary: u8,
}

#[derive(Deserialize)]
struct JsonColumn {
    value: String,
}

impl Store {
    /// Writes what the event changed in the signatures.
    pub fn save_signatures(&self, w: &SignatureWrites) -> worker::Result<()> {
        if w.reset {
            for table in ["step_signatures", "step_signature_networks"] {
                self.run(&format!("DELETE FROM {table}"), vec![])?;
            }
        }
        if let Some(previous) = &w.previous {
            self.upsert(
                "signatures_previous",
                [
                    ("id", int(1)),
                    (
                        "value",
                        text(serde_json::to_string(previous).unwrap_or_default()),
                    ),
                ],
            )?;
        }
        if !w.signatures.is_empty() {
            let rows: Vec<_> = w
                .signatures
                .iter()
                .map(|(s, e)| {
                    json!([
                        hex(*s),
                        e.kind,
                        e.clients[0],
                        e.clients[1],
                        e.sample,
                        e.frame
                    ])
                })
                .collect();
            self.run(
                "INSERT OR REPLACE INTO step_signatures (signature, kind, stable, canary, sample, frame) \
                 SELECT unhex(json_extract(value, '$[0]')), json_extract(value, '$[1]'), \
                 json_extract(value, '$[2]'), json_extract(value, '$[3]'), \
                 json_extract(value, '$[4]'), json_extract(value, '$[5]') FROM json_each(?)",
                vec![V::String(serde_json::Value::from(rows).to_string())],
            )?;
        }
        if !w.networks.is_empty() {
            let rows: Vec<_> = w
                .networks
                .iter()
                .map(|n| json!([hex(n.network), hex(n.signature), n.canary as u8]))
                .collect();
            self.run(
                "INSERT INTO step_signature_networks (network, signature, canary) \
                 SELECT unhex(json_extract(value, '$[0]')), unhex(json_extract(value, '$[1]')), \
                 json_extract(value, '$[2]') FROM json_each(?)",
                vec![V::String(serde_json::Value::from(rows).to_string())],
            )?;
        }
        if let Some(totals) = &w.totals {
            self.upsert(
                "step_signature_totals",
                [
                    ("id", int(1)),
                    (
                        "value",
                        text(serde_json::to_string(totals).unwrap_or_default()),
                    ),
                ],
            )?;
        }
        Ok(())
    }

    /// The signatures as stored. A row that does not parse is skipped, not fatal.
    pub(super) fn load_signatures(&self) -> worker::Result<Signatures> {
        let rows: Vec<(u64, Entry)> = self
            .rows::<SignatureColumns>(
                "SELECT hex(signature) AS signature, kind, stable, canary, sample, frame \
                 FROM step_signatures",
            )?
            .into_iter()
            .filter_map(|r| {
                Some((
                    id(&r.signature)?,
                    Entry {
                        kind: r.kind,
                        clients: [r.stable, r.canary],
                        sample: r.sample,
                        frame: r.frame,
                    },
                ))
            })
            .collect();
        let networks: Vec<NetworkRow> = self
            .rows::<NetworkColumns>(
                "SELECT hex(network) AS network, hex(signature) AS signature, canary \
                 FROM step_signature_networks",
            )?
            .into_iter()
            .filter_map(|r| {
                Some(NetworkRow {
                    network: id(&r.network)?,
                    signature: id(&r.signature)?,
                    canary: r.canary != 0,
                })
            })
            .collect();
        let json = |table: &str| -> worker::Result<Option<String>> {
            Ok(self
                .rows::<JsonColumn>(&format!("SELECT value FROM {table} WHERE id = 1"))?
                .pop()
                .map(|r| r.value))
        };
        let totals: SignatureTotals = json("step_signature_totals")?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let previous: Option<Previous> =
            json("signatures_previous")?.and_then(|t| serde_json::from_str(&t).ok());
        Ok(Signatures::restore(rows, networks, totals, previous))
    }
}
