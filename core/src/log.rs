//! Structured log lines: one JSON object per event worth knowing about, written by the
//! runtime adapters (`console.log`), decided here.

use crate::config::BundleName;
use crate::error::EdgeError;
use crate::kv::Staleness;

/// An event and its fields; written as `{"event", "service": "canary-edge", ...fields}`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub event: &'static str,
    pub fields: serde_json::Value,
}

impl LogLine {
    /// The `error` line of a failure worth an operator's attention (5xx); 4xx are the
    /// client's and not logged.
    pub fn for_error(e: &EdgeError) -> Option<Self> {
        (e.status() >= 500).then(|| Self {
            event: "error",
            fields: serde_json::json!({ "status": e.status(), "detail": e.log_detail() }),
        })
    }

    /// Why the config served for `bundle` is the last good one rather than what KV holds.
    pub fn for_staleness(bundle: &BundleName, staleness: Staleness) -> Self {
        let (event, detail) = match staleness {
            Staleness::InvalidInKv(d) => ("config_invalid_kept_last_good", d),
            Staleness::KvFailed(d) => ("kv_failed_kept_last_good", d),
        };
        Self {
            event,
            fields: serde_json::json!({ "bundle": bundle.as_str(), "detail": detail }),
        }
    }

    /// The line as written: one JSON object with `event`, `service` and the fields.
    pub fn to_json(&self) -> String {
        let mut line = serde_json::json!({ "event": self.event, "service": "canary-edge" });
        if let (Some(line), serde_json::Value::Object(fields)) =
            (line.as_object_mut(), &self.fields)
        {
            line.extend(fields.clone());
        }
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_their_event_and_service() {
        let bundle = BundleName::parse("demo").unwrap();
        let line = LogLine::for_staleness(&bundle, Staleness::KvFailed("timeout".into()));
        let written: serde_json::Value = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!(
            written,
            serde_json::json!({ "event": "kv_failed_kept_last_good", "service": "canary-edge",
                                "bundle": "demo", "detail": "timeout" })
        );
        assert_eq!(
            LogLine::for_error(&EdgeError::NotFound("x".into())),
            None,
            "4xx"
        );
        let e = EdgeError::Origin {
            key: "k".into(),
            detail: "r2 down".into(),
        };
        let line = LogLine::for_error(&e).unwrap();
        assert_eq!(
            (line.event, line.fields["status"].as_u64()),
            ("error", Some(502))
        );
    }
}
