//! Error signatures: which errors the step's clients report, per channel, and which are new
//! in the canary. They explain the verdict; they never change it.
//!
//! An error report's text (`report_text::ReportText`: its kind, message, optional stack,
//! bounded at the edge) becomes a *signature* here, at the control plane:
//! - the message is normalised ([`normalise`]): URLs become `<url>`, UUIDs and long ids
//!   `<id>`, hex `<hex>`, numbers `<n>`, and `:line:column` positions go, so that one
//!   error thrown with different values, pages or positions is one signature;
//! - the report's kind and the normalised message are hashed with HMAC-SHA256 under a key
//!   derived from `COHORT_SECRET` ([`SignatureKey`]): an id nobody can compute (or aim at)
//!   without the secret. The stack is not hashed: a minified bundle's function names and
//!   files change with every build, so stable's and the canary's frames of one error would
//!   differ and every error would look new. Its top frame is kept with the sample, for
//!   the operator.
//!
//! Per step, per signature and channel: the clients that reported it, each network counted
//! once (a network counts one client a step in the verdict, `tracker::CLIENTS_PER_NETWORK`,
//! and no more here), and one network adds at most [`SIGNATURES_PER_NETWORK`] signatures a
//! step: an attacker's junk grows with the networks he controls, not the reports he sends.
//! At most [`KEPT`] signatures a step are kept (with one sample message each, as first
//! seen); past it, and past the top [`SHOWN`] in the view, clients count as `other`.
//!
//! *New in the canary*: seen on canary clients, and on no stable client in this step nor in
//! the previous step that saw errors (its stable signatures are kept when a step ends).
//!
//! Messages are attacker text: shown escaped (the console, Slack), never interpreted. They
//! are kept for the running step and the previous one only.

use std::collections::{HashMap, HashSet};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Version;
use crate::health::report_text::ReportText;

/// Distinct signatures one network adds in a step (its further ones are refused).
pub const SIGNATURES_PER_NETWORK: usize = 3;
/// Signatures a view lists (new in the canary first, then by clients); the rest count in
/// `other`.
pub const SHOWN: usize = 50;
/// Signatures kept per step; a signature first seen past it counts in `other`.
pub const KEPT: usize = 200;
/// Networks whose signatures a step remembers (for the per-network cap); a further
/// network's reports are refused.
pub const NETWORKS_KEPT: usize = 20_000;
/// The top frame of a stack kept with a sample, at most (cut on a character boundary).
pub const FRAME_MAX_BYTES: usize = 200;

/// The HMAC key of signatures, derived from `COHORT_SECRET` (SHA-256, domain-separated;
/// without the secret, from the empty string: then anyone can compute signatures, and
/// nothing automatic acts anyway).
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureKey([u8; 32]);

impl std::fmt::Debug for SignatureKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("SignatureKey(..)")
    }
}

impl Default for SignatureKey {
    fn default() -> Self {
        Self::derive(b"")
    }
}

impl SignatureKey {
    pub fn derive(secret: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"canary-edge error signature key\0")
            .chain_update(secret)
            .finalize();
        Self(digest.into())
    }

    /// The signature of an error of `kind` whose normalised message is `normalised`.
    pub fn sign(&self, kind: &str, normalised: &str) -> u64 {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(b"canary-edge error signature v1\0");
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(normalised.as_bytes());
        let out = mac.finalize().into_bytes();
        let mut word = [0; 8];
        word.copy_from_slice(&out[..8]);
        u64::from_be_bytes(word)
    }
}

/// A message with its values stripped (see the module's notes); whitespace runs become one
/// space.
pub fn normalise(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        normalise_word(word, &mut out);
    }
    out
}

fn normalise_word(word: &str, out: &mut String) {
    if let Some(at) = word.find("://") {
        let scheme = word[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))
            .map_or(0, |i| i + 1);
        if scheme < at {
            normalise_plain(&word[..scheme], out);
            out.push_str("<url>");
            // Closing punctuation after the URL stays: `(<url>)`.
            let end = word
                .trim_end_matches([')', ']', '}', '\'', '"', ',', ';'])
                .len();
            out.push_str(&word[end.max(at)..]);
            return;
        }
    }
    normalise_plain(word, out);
}

/// Whether `s` starts with a UUID (8-4-4-4-12 hex digits).
fn uuid_at(s: &[u8]) -> bool {
    s.len() >= 36
        && s[..36].iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn normalise_plain(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() {
            if uuid_at(&b[i..]) && b.get(i + 36).is_none_or(|n| !n.is_ascii_alphanumeric()) {
                out.push_str("<id>");
                i += 36;
                continue;
            }
            let end = b[i..]
                .iter()
                .position(|x| !x.is_ascii_alphanumeric())
                .map_or(b.len(), |n| i + n);
            normalise_run(&s[i..end], out);
            i = end;
        } else if c == b':' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            // A `:line:column` position: dropped.
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        } else {
            // Not alphanumeric ASCII: copy the whole character.
            let len = s[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&s[i..i + len]);
            i += len;
        }
    }
}

/// One run of ASCII letters and digits.
fn normalise_run(run: &str, out: &mut String) {
    let digits = run.bytes().any(|b| b.is_ascii_digit());
    let letters = run.bytes().any(|b| b.is_ascii_alphabetic());
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let prefixed = run.len() > 2 && (run.starts_with("0x") || run.starts_with("0X"));
    if (prefixed && hex(&run[2..])) || (run.len() >= 8 && digits && hex(run)) {
        out.push_str("<hex>");
    } else if run.len() >= 16 && digits && letters {
        out.push_str("<id>");
    } else {
        let mut in_number = false;
        for ch in run.chars() {
            if ch.is_ascii_digit() {
                if !in_number {
                    out.push_str("<n>");
                }
                in_number = true;
            } else {
                in_number = false;
                out.push(ch);
            }
        }
    }
}

/// The first frame of a stack (V8's `at …`, or Firefox's and Safari's `fn@url`), bounded.
/// Lines end with a newline, or U+001E (what a newline became on the edge's token,
/// `serve::report::LINE_SEPARATOR`).
pub fn top_frame(stack: &str) -> Option<String> {
    let lines = stack.split(['\n', '\r', crate::health::report_text::LINE_SEPARATOR]);
    let frame = lines.map(str::trim).find(|l| {
        l.starts_with("at ") || (l.contains('@') && l.contains(':') && !l.contains(' '))
    })?;
    Some(crate::health::report_text::bounded(
        frame.to_owned(),
        FRAME_MAX_BYTES,
    ))
}

/// One signature of the step, as kept: its kind, clients per channel (stable, canary), the
/// first message seen and its stack's top frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: String,
    pub clients: [u64; 2],
    pub sample: String,
    pub frame: Option<String>,
}

/// Clients per channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerChannel {
    pub stable: u64,
    pub canary: u64,
}

/// Reports whose signature was not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRefused {
    /// Their network had already added [`SIGNATURES_PER_NETWORK`] signatures this step.
    pub network_cap: u64,
    /// Their network was past [`NETWORKS_KEPT`].
    pub networks_full: u64,
}

/// A step's counters beside its signatures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureTotals {
    /// The canary the step's reports were about (its first batch with texts).
    pub canary: Option<Version>,
    /// Clients of signatures past [`KEPT`].
    pub other: PerChannel,
    pub refused: SignatureRefused,
}

/// One signature in a view: the status, the console and the rollback webhook show these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The keyed hash, 16 hex digits.
    pub id: String,
    /// Seen on canary clients, on no stable client in this step or the previous one.
    pub new: bool,
    pub kind: String,
    pub clients: PerChannel,
    /// The first message seen with it (attacker text, bounded: escape it wherever shown).
    pub sample: String,
    /// The top frame of that report's stack, when it had one (attacker text too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
}

/// One step's signatures: new in the canary first (most canary clients first), then by
/// clients; at most [`SHOWN`], the rest's clients in `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSignatures {
    pub canary: Option<Version>,
    pub signatures: Vec<Signature>,
    /// Signatures new in the canary, listed or not.
    pub new_in_canary: u64,
    pub other: PerChannel,
    pub refused: SignatureRefused,
}

/// The status's `error_signatures`: the running step's, the previous step's (the last one
/// that saw errors: after a cut, the step that was cut), and the top new one of either
/// (the running step's first): what the rollback webhook and `release` name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignaturesStatus {
    pub top_new: Option<Signature>,
    pub current: StepSignatures,
    pub previous: Option<StepSignatures>,
}

/// The last step that saw errors: its view, and its stable signatures (for "new").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub view: StepSignatures,
    /// Its signatures with stable clients, as 16 hex digits.
    pub stable: Vec<String>,
}

/// What changed since the store last took it.
#[derive(Debug, Clone, Default)]
struct Changes {
    reset: bool,
    signatures: HashSet<u64>,
    networks: Vec<NetworkRow>,
    totals: bool,
    previous: bool,
}

/// One network's count of one signature on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkRow {
    pub network: u64,
    pub signature: u64,
    pub canary: bool,
}

/// The rows an event changed, for the store: write them, in this order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignatureWrites {
    /// A new step: drop the running step's rows first.
    pub reset: bool,
    /// The new previous step (written with the reset).
    pub previous: Option<Previous>,
    pub signatures: Vec<(u64, Entry)>,
    pub networks: Vec<NetworkRow>,
    pub totals: Option<SignatureTotals>,
}

/// The (signature, channel) pairs one network counted: at most its
/// [`SIGNATURES_PER_NETWORK`] signatures on both channels. Inline (no allocation): the
/// Durable Object copies its state once per event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counted {
    pairs: [(u64, bool); 2 * SIGNATURES_PER_NETWORK],
    len: usize,
}

impl Counted {
    fn pairs(&self) -> &[(u64, bool)] {
        &self.pairs[..self.len]
    }

    fn push(&mut self, pair: (u64, bool)) {
        if let Some(slot) = self.pairs.get_mut(self.len) {
            *slot = pair;
            self.len += 1;
        }
    }

    /// Distinct signatures among the pairs.
    fn signatures(&self) -> usize {
        let pairs = self.pairs();
        pairs
            .iter()
            .enumerate()
            .filter(|(i, (s, _))| !pairs[..*i].iter().any(|(t, _)| t == s))
            .count()
    }
}

/// The step's signatures.
#[derive(Debug, Clone, Default)]
pub struct Signatures {
    table: HashMap<u64, Entry>,
    /// Per network, the (signature, channel) pairs it counted.
    networks: HashMap<u64, Counted>,
    totals: SignatureTotals,
    previous: Option<Previous>,
    /// Derived from `previous` (rebuilt on restore).
    previous_stable: HashSet<u64>,
    changes: Changes,
}

/// Equal when they hold the same (the journal is bookkeeping).
impl PartialEq for Signatures {
    fn eq(&self, other: &Self) -> bool {
        self.table == other.table
            && self.networks == other.networks
            && self.totals == other.totals
            && self.previous == other.previous
    }
}

fn hex(id: u64) -> String {
    format!("{id:016x}")
}

impl Signatures {
    /// Counts a batch's texts (reports about `canary`, the live one).
    pub fn apply(&mut self, reports: &[ReportText], key: &SignatureKey, canary: Option<&Version>) {
        if reports.is_empty() {
            return;
        }
        if self.totals.canary.is_none() && canary.is_some() {
            self.totals.canary = canary.cloned();
            self.changes.totals = true;
        }
        for r in reports {
            let message = r.message.as_deref().unwrap_or("");
            let id = key.sign(&r.kind, &normalise(message));
            if !self.networks.contains_key(&r.network) && self.networks.len() >= NETWORKS_KEPT {
                self.totals.refused.networks_full += 1;
                self.changes.totals = true;
                continue;
            }
            let counted = self.networks.entry(r.network).or_default();
            if counted.pairs().contains(&(id, r.canary)) {
                continue;
            }
            let known = counted.pairs().iter().any(|(s, _)| *s == id);
            if !known && counted.signatures() >= SIGNATURES_PER_NETWORK {
                self.totals.refused.network_cap += 1;
                self.changes.totals = true;
                continue;
            }
            counted.push((id, r.canary));
            self.changes.networks.push(NetworkRow {
                network: r.network,
                signature: id,
                canary: r.canary,
            });
            let channel = usize::from(r.canary);
            if let Some(e) = self.table.get_mut(&id) {
                e.clients[channel] += 1;
                self.changes.signatures.insert(id);
            } else if self.table.len() < KEPT {
                let mut clients = [0; 2];
                clients[channel] = 1;
                self.table.insert(
                    id,
                    Entry {
                        kind: r.kind.clone(),
                        clients,
                        // Newlines back (the edge's token carried them as LINE_SEPARATOR).
                        sample: message.replace(crate::health::report_text::LINE_SEPARATOR, "\n"),
                        frame: r.stack.as_deref().and_then(top_frame),
                    },
                );
                self.changes.signatures.insert(id);
            } else {
                let other = &mut self.totals.other;
                *if r.canary {
                    &mut other.canary
                } else {
                    &mut other.stable
                } += 1;
                self.changes.totals = true;
            }
        }
    }

    /// Whether `id` is new in the canary.
    fn is_new(&self, id: u64, e: &Entry) -> bool {
        e.clients[1] > 0 && e.clients[0] == 0 && !self.previous_stable.contains(&id)
    }

    /// The running step's signatures.
    pub fn view(&self) -> StepSignatures {
        let mut rows: Vec<(u64, &Entry, bool)> = self
            .table
            .iter()
            .map(|(id, e)| (*id, e, self.is_new(*id, e)))
            .collect();
        rows.sort_by(|a, b| {
            let total = |e: &Entry| e.clients[0] + e.clients[1];
            b.2.cmp(&a.2)
                .then_with(|| match a.2 {
                    true => b.1.clients[1].cmp(&a.1.clients[1]),
                    false => total(b.1).cmp(&total(a.1)),
                })
                .then_with(|| b.1.clients[1].cmp(&a.1.clients[1]))
                .then_with(|| a.0.cmp(&b.0))
        });
        let mut other = self.totals.other;
        for (_, e, _) in rows.iter().skip(SHOWN) {
            other.stable += e.clients[0];
            other.canary += e.clients[1];
        }
        StepSignatures {
            canary: self.totals.canary.clone(),
            new_in_canary: rows.iter().filter(|r| r.2).count() as u64,
            signatures: rows
                .iter()
                .take(SHOWN)
                .map(|(id, e, new)| Signature {
                    id: hex(*id),
                    new: *new,
                    kind: e.kind.clone(),
                    clients: PerChannel {
                        stable: e.clients[0],
                        canary: e.clients[1],
                    },
                    sample: e.sample.clone(),
                    frame: e.frame.clone(),
                })
                .collect(),
            other,
            refused: self.totals.refused,
        }
    }

    /// The status's view: this step's, the previous one's, the top new one.
    pub fn status(&self) -> SignaturesStatus {
        let current = self.view();
        let previous = self.previous.as_ref().map(|p| p.view.clone());
        let first_new = |v: &StepSignatures| v.signatures.iter().find(|s| s.new).cloned();
        SignaturesStatus {
            top_new: first_new(&current).or_else(|| previous.as_ref().and_then(first_new)),
            current,
            previous,
        }
    }

    /// The top new signature (the running step's, else the previous step's).
    pub fn top_new(&self) -> Option<Signature> {
        self.status().top_new
    }

    /// A new step: a step that saw errors becomes the previous one (its view and its stable
    /// signatures); one that saw none leaves the previous as it was.
    pub fn reset(&mut self) {
        let saw_errors = !self.table.is_empty() || self.totals != SignatureTotals::default();
        if saw_errors {
            let mut stable: Vec<u64> = self
                .table
                .iter()
                .filter(|(_, e)| e.clients[0] > 0)
                .map(|(id, _)| *id)
                .collect();
            stable.sort_unstable();
            self.previous = Some(Previous {
                view: self.view(),
                stable: stable.iter().map(|id| hex(*id)).collect(),
            });
            self.previous_stable = stable.into_iter().collect();
            self.changes.previous = true;
        }
        self.table.clear();
        self.networks.clear();
        self.totals = SignatureTotals::default();
        self.changes.reset = true;
        self.changes.signatures.clear();
        self.changes.networks.clear();
        self.changes.totals = false;
    }

    /// What changed since the last call, for the store.
    pub fn take_changes(&mut self) -> SignatureWrites {
        let changes = std::mem::take(&mut self.changes);
        let mut signatures: Vec<(u64, Entry)> = changes
            .signatures
            .iter()
            .filter_map(|id| Some((*id, self.table.get(id)?.clone())))
            .collect();
        signatures.sort_by_key(|(id, _)| *id);
        SignatureWrites {
            reset: changes.reset,
            previous: changes.previous.then(|| self.previous.clone()).flatten(),
            signatures,
            networks: changes.networks,
            totals: (changes.totals || changes.reset).then(|| self.totals.clone()),
        }
    }

    /// The signatures as stored. Rows past the bounds are dropped.
    pub fn restore(
        rows: Vec<(u64, Entry)>,
        networks: Vec<NetworkRow>,
        totals: SignatureTotals,
        previous: Option<Previous>,
    ) -> Self {
        let mut s = Signatures {
            table: rows.into_iter().take(KEPT).collect(),
            totals,
            ..Signatures::default()
        };
        for n in networks {
            if s.networks.len() >= NETWORKS_KEPT && !s.networks.contains_key(&n.network) {
                continue;
            }
            s.networks
                .entry(n.network)
                .or_default()
                .push((n.signature, n.canary));
        }
        s.previous_stable = previous
            .iter()
            .flat_map(|p| &p.stable)
            .filter_map(|h| u64::from_str_radix(h, 16).ok())
            .collect();
        s.previous = previous;
        s
    }
}

#[cfg(test)]
mod tests;
