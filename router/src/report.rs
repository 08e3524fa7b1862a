//! Reports and boot signals on the count path: `POST /__canary/report` decided by
//! `canary_core::edge::serve::report` (after the entry module read its body), counted in the
//! isolate's one outbox, and the outbox's timer. Same text protocol as the asset path.

use canary_core::edge::serve::{ReportRequest, ReportStep};
use wasm_bindgen::prelude::wasm_bindgen;

use super::{
    batches_answer, due_ms, epoch_ms, failure, optional, with_edge, write_lines, Batches, Encode,
    Format, ReadConfig, Tail, YES,
};

message! {
    /// [`report`]'s request (the body is its second argument). `oversize`: `1` when the body
    /// was longer than `report_max_bytes` (the entry stopped reading). `config_read`: `1`
    /// after a `C` answer. `origin`: the `Origin` header (`health.origins`). Optional values
    /// are `+value` or `-`.
    in ReportIn {
        now_ms,
        config_read,
        oversize,
        cookie,
        override_token,
        client_ip,
        origin,
    }
}

message! {
    /// `N`: not counted. Within the rate limit keyed `ip_limit_key`, answer 202 with `body`
    /// (JSON: the rest); past it, 429 with the constants' `report_rate_limited_body`.
    out NotCounted = "N" { ip_limit_key, body } rest
}

message! {
    /// `K`: admitted. Within the limits keyed `ip_limit_key` then `client_limit_key`, count
    /// it ([`counted`] with `token`) and answer 202 with `body` (JSON: the rest); past
    /// either, 429 with `report_rate_limited_body`, nothing counted.
    out Admitted = "K" { ip_limit_key, client_limit_key, token, body } rest
}

/// The next step for a report: a [`ReportIn`] and the body in; `C` (read the config, then
/// ask again), `E` (answer with an error), `N` or `K` out.
#[wasm_bindgen]
pub fn report(request: &str, body: &str) -> String {
    let r = ReportIn::decode(request);
    let req = ReportRequest {
        body: body.as_bytes(),
        oversize: r.oversize == YES,
        cookie: optional(r.cookie),
        override_token: optional(r.override_token),
        client_ip: optional(r.client_ip),
        origin: optional(r.origin),
        now_ms: epoch_ms(r.now_ms),
        config_read: r.config_read == YES,
    };
    with_edge(
        |edge| match edge.plan_report(&req) {
            ReportStep::ReadConfig {
                bundle,
                kv_key,
                timeout_ms,
            } => ReadConfig {
                bundle: bundle.as_str(),
                kv_key: &kv_key,
                timeout_ms: &timeout_ms.to_string(),
            }
            .encode(),
            ReportStep::Fail(e) => failure(&e),
            ReportStep::NotCounted { ip_limit_key, body } => NotCounted {
                ip_limit_key: &ip_limit_key,
                body: &body,
            }
            .encode(),
            ReportStep::Admitted {
                ip_limit_key,
                client_limit_key,
                token,
                body,
            } => Admitted {
                ip_limit_key: &ip_limit_key,
                client_limit_key: &client_limit_key,
                token: &token,
                body: &body,
            }
            .encode(),
        },
        |e| failure(&canary_core::error::EdgeError::Misconfigured(e.clone())),
    )
}

/// Counts an admitted report (its `K` answer's token). Returns when the outbox's next
/// batch falls due, as [`served`](crate::served) does.
#[wasm_bindgen]
pub fn counted(token: &str, now_ms: f64) -> f64 {
    with_edge(|edge| due_ms(edge.count_report(token, now_ms)), |_| 0.0)
}

/// What the outbox holds that is due at `now_ms` (the entry module's timer). Returns
/// [`Batches`].
#[wasm_bindgen]
pub fn flush(now_ms: f64) -> String {
    with_edge(
        |edge| {
            let batches = edge.flush(now_ms);
            batches_answer(edge, batches)
        },
        |_| Batches { next_flush_ms: "" }.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_read_by_name_in_table_order() {
        let fields = ReportIn::FORMAT.fields;
        let text = fields.join("\n");
        let r = ReportIn::decode(&text);
        let read = [
            r.now_ms,
            r.config_read,
            r.oversize,
            r.cookie,
            r.override_token,
            r.client_ip,
            r.origin,
        ];
        assert_eq!(read, fields);
    }

    #[test]
    fn answers_start_with_their_kind_and_fit_their_format() {
        let n = NotCounted {
            ip_limit_key: "net:1",
            body: "{\"counted\":false}",
        }
        .encode();
        assert_eq!(n, "N\nnet:1\n{\"counted\":false}");
        let k = Admitted {
            ip_limit_key: "net:1",
            client_limit_key: "client:2",
            token: "t",
            body: "{}",
        }
        .encode();
        assert_eq!(k, "K\nnet:1\nclient:2\nt\n{}");
        assert!(matches!(NotCounted::FORMAT.tail, Tail::Rest));
        let _: &Format = &Admitted::FORMAT;
    }

    #[test]
    fn unconfigured_answers_fit() {
        assert_eq!(
            counted("x", 0.0),
            0.0,
            "unconfigured: nothing counted, nothing due"
        );
        assert!(report("0\n0\n0\n-\n-\n-\n-", "{}").starts_with("E\n503"));
    }
}
