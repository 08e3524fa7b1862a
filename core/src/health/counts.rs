//! Health counts per channel in time windows, for one (stable, canary) pair of versions.

use serde::{Deserialize, Serialize};

use super::clients::ClientSet;
use crate::config::{Version, Weight};

/// Numbers of distinct clients of one channel: those seen (a script load or an error
/// report) and those with at least one error. Derived from `ChannelClients`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub clients: u64,
    pub errors: u64,
}

impl Counts {
    /// Clients with an error over clients seen.
    pub fn rate(&self) -> f64 {
        if self.clients == 0 {
            0.0
        } else {
            (self.errors as f64 / self.clients as f64).min(1.0)
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCounts {
    pub stable: Counts,
    pub canary: Counts,
}

impl ChannelCounts {
    pub fn add(&mut self, other: ChannelCounts) {
        for (mine, theirs) in [
            (&mut self.stable, other.stable),
            (&mut self.canary, other.canary),
        ] {
            mine.clients = mine.clients.saturating_add(theirs.clients);
            mine.errors = mine.errors.saturating_add(theirs.errors);
        }
    }
}

/// The clients of one channel: who loaded the script, who reported (or met) an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelClients {
    pub loaded: ClientSet,
    pub errored: ClientSet,
}

impl ChannelClients {
    pub fn insert(&mut self, client: u64, error: bool) {
        if error {
            self.errored.insert(client);
        } else {
            self.loaded.insert(client);
        }
    }

    pub fn merge(&mut self, other: &ChannelClients) {
        self.loaded.merge(&other.loaded);
        self.errored.merge(&other.errored);
    }

    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty() && self.errored.is_empty()
    }

    /// Distinct clients (an erroring client was served the script too, even if its load
    /// was counted elsewhere or cached) and distinct clients with an error.
    pub fn counts(&self) -> Counts {
        let mut seen = self.loaded.clone();
        seen.merge(&self.errored);
        Counts {
            clients: seen.estimate(),
            errors: self.errored.estimate(),
        }
    }
}

/// The clients of both channels: a batch's payload, a window, the totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clients {
    pub stable: ChannelClients,
    pub canary: ChannelClients,
}

impl Clients {
    pub fn channel_mut(&mut self, canary: bool) -> &mut ChannelClients {
        if canary {
            &mut self.canary
        } else {
            &mut self.stable
        }
    }

    pub fn merge(&mut self, other: &Clients) {
        self.stable.merge(&other.stable);
        self.canary.merge(&other.canary);
    }

    pub fn is_empty(&self) -> bool {
        self.stable.is_empty() && self.canary.is_empty()
    }

    pub fn counts(&self) -> ChannelCounts {
        ChannelCounts {
            stable: self.stable.counts(),
            canary: self.canary.counts(),
        }
    }
}

/// Counts sent from an edge isolate to the bundle's control plane, naming the versions it
/// served: counts for versions that are no longer live are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub stable: Version,
    pub canary: Option<Version>,
    /// The weight the clients were served under: only counts of the live weight are
    /// evidence about the current step (a batch flushed late after a step or rollback
    /// still feeds the windows, not the step's verdict).
    #[serde(default)]
    pub weight: Option<Weight>,
    /// Distinct clients for the windows and the per-minute chart (what the traffic looked
    /// like; not evidence).
    pub clients: Clients,
    /// The clients' signals one by one: the verdict's evidence (`tracker`).
    #[serde(default)]
    pub events: Vec<ClientEvent>,
    /// Error reports' texts, the first of each client's failures in the batch (at most
    /// `report_text::TEXTS_PER_BATCH`): what the signatures are made of. Absent when empty,
    /// and a batch without it (an older edge's) parses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<super::report_text::ReportText>,
}

/// Clients tracked per step (a few MB at most); past it, new clients are not counted.
pub const MAX_TRACKED: usize = 100_000;

/// What one client did, as the edge saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// A counted load of the floating URL (a GET served as routed).
    Load,
    /// The SDK's boot signal.
    Boot,
    /// An error report, or a published canary file the origin could not serve.
    Failure,
}

/// One client's signal, sent from the edge in a batch. Ids and networks are hex text in
/// JSON: exact, whatever JavaScript does with large numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientEvent {
    #[serde(with = "hex_u64")]
    pub client: u64,
    /// Keyed hash of the client's network: its load's (an address, or a user key the
    /// merchant signed), or the address a report came from; 0 when unknown (an older edge).
    #[serde(with = "hex_u64", default)]
    pub network: u64,
    pub canary: bool,
    pub signal: Signal,
    /// A boot signal's `boot_ms` (the SDK's measured boot time), for the boot-time guard;
    /// absent on loads and failures, and in an older edge's batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_ms: Option<u32>,
}

pub(super) mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        // Owned: the batch may come through a `serde_json::Value`, which lends no `&str`.
        let text = String::deserialize(d)?;
        if text.is_empty() || text.len() > 16 {
            return Err(serde::de::Error::custom("not a 64-bit hex id"));
        }
        u64::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}
