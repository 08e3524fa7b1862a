//! `POST /__canary/report` on the count path: an SDK's error report or boot signal, decided
//! here like an asset request (the entry module reads the body, the config and the rate
//! limits; this decides), and counted in the same outbox as the loads. An isolate that
//! serves the SDK and takes its reports loads nothing else.
//!
//! A report counts only when it comes from a client the edge served the reported version
//! (its signed cohort cookie maps to that version's channel in the live config) or that
//! holds a signed override for it, within the per-network and per-client rate limits, and
//! then as one client with an error (its id), however many it sends. Anything else is
//! answered 2xx `{"counted": false, "reason"}` (a beacon must not retry), 429 when limited.

use super::{limit_key, Edge, TallyFacts};
use crate::config::origins::report_counts;
use crate::config::{kv_key, BundleName};
use crate::edge::cookie::Verified;
use crate::edge::report::{self, admit, NotCounted, ReportError, Reporter, MAX_REPORT_BYTES};
use crate::error::EdgeError;
use crate::health::counts::Signal;
use crate::health::report_text::LINE_SEPARATOR;

/// What the plan needs of a report request.
#[derive(Debug, Clone, Copy)]
pub struct ReportRequest<'a> {
    /// The body, read up to [`MAX_REPORT_BYTES`] (the entry stops reading past it).
    pub body: &'a [u8],
    /// The body was longer than [`MAX_REPORT_BYTES`].
    pub oversize: bool,
    pub cookie: Option<&'a str>,
    pub override_token: Option<&'a str>,
    /// `CF-Connecting-IP`: the network the per-network limit keys.
    pub client_ip: Option<&'a str>,
    /// `Origin`: the page that sent the report, for `health.origins`.
    pub origin: Option<&'a str>,
    pub now_ms: f64,
    /// This request has just read the config: use what it read.
    pub config_read: bool,
}

/// The next thing the entry module does for a report.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportStep {
    /// Read the bundle's config, give it to [`Edge::record_config`], ask again.
    ReadConfig {
        bundle: BundleName,
        kv_key: String,
        timeout_ms: u64,
    },
    /// Answer with this error (a malformed or oversized body, a config fault).
    Fail(EdgeError),
    /// Not counted: within the network's limit (`ip_limit_key`) answer 202 `body`, past it
    /// 429 [`rate_limited_body`].
    NotCounted { ip_limit_key: String, body: String },
    /// Admitted: within the network's and then the client's limit (`client_limit_key`),
    /// count it ([`Edge::count_report`] with `token`) and answer 202 `body`; past either,
    /// 429 [`rate_limited_body`] and nothing counted.
    Admitted {
        ip_limit_key: String,
        client_limit_key: String,
        token: String,
        body: String,
    },
}

/// The answer to a report past a rate limit (status 429).
pub fn rate_limited_body() -> String {
    not_counted_body(NotCounted::RateLimited)
}

// Written by hand, not with `serde_json::json!`: the routing wasm carries no JSON values.
// Every value is a fixed word or a checked report kind ([a-z0-9_]), nothing to escape.
fn not_counted_body(reason: NotCounted) -> String {
    format!(r#"{{"counted":false,"reason":"{}"}}"#, reason.as_str())
}

impl Edge {
    /// Decides a report as far as the facts at hand allow.
    pub fn plan_report(&self, req: &ReportRequest<'_>) -> ReportStep {
        let too_large =
            || EdgeError::TooLarge(format!("reports are limited to {MAX_REPORT_BYTES} bytes"));
        if req.oversize {
            return ReportStep::Fail(too_large());
        }
        let report = match report::parse(req.body) {
            Ok(report) => report,
            Err(ReportError::TooLarge) => return ReportStep::Fail(too_large()),
            Err(ReportError::Malformed(m)) => {
                return ReportStep::Fail(EdgeError::BadRequest(format!("bad report: {m}")))
            }
        };
        let known = if req.config_read {
            self.rollouts.latest(&report.bundle)
        } else {
            self.config(&report.bundle, req.now_ms)
        };
        let prepared = match known {
            Some(Ok(prepared)) => prepared,
            Some(Err(e)) => return ReportStep::Fail(e),
            None => {
                return ReportStep::ReadConfig {
                    kv_key: kv_key(&report.bundle),
                    bundle: report.bundle,
                    timeout_ms: self.settings.kv_timeout_ms,
                }
            }
        };
        // One key per network (an IPv4 address, an IPv6 /48), keyed: no address leaves.
        let network = self.network_of_address(req.client_ip);
        let ip_limit_key = limit_key(network);
        // A page outside `health.origins` moves nothing, and costs no cookie check.
        if !report_counts(prepared.rollout.page_origins(), req.origin) {
            return ReportStep::NotCounted {
                ip_limit_key,
                body: not_counted_body(NotCounted::OriginNotListed),
            };
        }
        let reporter = Reporter {
            cookie: self.cookie_state(req.cookie, req.now_ms),
            override_holder: self.override_holder(
                &prepared,
                req.override_token,
                req.cookie,
                req.now_ms,
            ),
        };
        match admit(&report, &prepared, &self.router, &reporter) {
            Err(reason) => ReportStep::NotCounted {
                ip_limit_key,
                body: not_counted_body(reason),
            },
            Ok((channel, client)) => {
                let signal = if report.is_boot() {
                    Signal::Boot
                } else {
                    Signal::Failure
                };
                // The network too: the control plane caps the signals waiting for their
                // loads per network (`tracker::WAITING_PER_NETWORK`).
                let mut token = TallyFacts::new(&prepared, channel, client, network).token();
                token.push('\t');
                token.push_str(if signal == Signal::Boot { "b" } else { "f" });
                // A boot carries its time (`b412`): the boot-time guard's value.
                if let Some(ms) = report.boot_ms {
                    token.push_str(&ms.to_string());
                }
                // A failure's text rides on the token to the outbox, raw (bounded by
                // `parse`) but for the token's separators: a tab or carriage return
                // becomes a space, a newline LINE_SEPARATOR (the stack's frames stay
                // apart): no escaping code in this wasm.
                // `+` marks a text that is present.
                if signal == Signal::Failure {
                    token.push('\t');
                    token.push_str(&report.kind);
                    for text in [&report.message, &report.stack] {
                        token.push('\t');
                        if let Some(text) = text {
                            token.push('+');
                            token.extend(text.chars().map(|c| match c {
                                '\t' | '\r' => ' ',
                                '\n' => LINE_SEPARATOR,
                                c => c,
                            }));
                        }
                    }
                }
                ReportStep::Admitted {
                    ip_limit_key,
                    client_limit_key: format!("client:{client:016x}"),
                    token,
                    body: format!(
                        r#"{{"counted":true,"channel":"{}","kind":"{}"}}"#,
                        channel.as_str(),
                        report.kind
                    ),
                }
            }
        }
    }

    /// Counts an admitted report ([`ReportStep::Admitted`]'s token) in the same pending
    /// counts as the loads. Returns when the next batch falls due, as [`Edge::served`]
    /// does. A token that does not parse counts nothing.
    pub fn count_report(&mut self, token: &str, now_ms: f64) -> Option<f64> {
        self.count_report_token(token, now_ms);
        self.next_due(now_ms)
    }

    fn count_report_token(&mut self, token: &str, now_ms: f64) {
        // The tally's fields, then the signal, then (a failure) its kind, message, stack.
        let mut tabs = token.bytes().enumerate().filter(|(_, b)| *b == b'\t');
        let Some((at, _)) = tabs.nth(TALLY_FIELDS - 1) else {
            return;
        };
        let (tally, rest) = (&token[..at], &token[at + 1..]);
        let mut rest = rest.split('\t');
        let (signal, boot_ms) = match rest.next().and_then(|s| s.split_at_checked(1)) {
            Some(("b", "")) => (Signal::Boot, None),
            Some(("b", ms)) => match ms.parse::<u32>() {
                Ok(ms) => (Signal::Boot, Some(ms)),
                Err(_) => return,
            },
            Some(("f", "")) => (Signal::Failure, None),
            _ => return,
        };
        let Some(parsed) = TallyFacts::parse(tally) else {
            return;
        };
        let text = rest.next().map(|kind| {
            let mut field = || {
                rest.next()
                    .and_then(|t| t.strip_prefix('+'))
                    .map(str::to_owned)
            };
            (kind.to_owned(), field(), field())
        });
        self.count(&parsed, signal, boot_ms, text, now_ms);
    }

    /// The reporter's cohort cookie: absent, present but not verifying, or verified.
    fn cookie_state(&self, header: Option<&str>, now_ms: f64) -> Option<Option<Verified>> {
        let header = header?;
        let jar = self.router.cookie();
        let named = header
            .split([';', ','])
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, _)| name == jar.name());
        if !named {
            return None;
        }
        Some(jar.read_client(header, (now_ms / 1000.0) as u64))
    }
}

/// Fields of a tally token (`TallyToken::new`).
const TALLY_FIELDS: usize = 7;

#[cfg(test)]
mod tests;
