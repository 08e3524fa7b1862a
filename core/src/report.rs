//! Error reports sent by the SDK in browsers to `POST /__canary/report`
//! (`navigator.sendBeacon`-friendly: any content type, a small JSON body).

use serde::Deserialize;

use crate::config::{BundleName, Version};

/// Largest report body accepted.
pub const MAX_REPORT_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub bundle: BundleName,
    pub version: Version,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportError {
    TooLarge,
    Malformed(String),
}

#[derive(Deserialize)]
struct Raw {
    bundle: String,
    version: String,
    kind: String,
    // Free text for humans; accepted but not stored (it is not trusted).
    #[serde(default)]
    #[allow(dead_code)]
    message: Option<serde_json::Value>,
}

/// Parses and checks a report body.
pub fn parse(body: &[u8]) -> Result<Report, ReportError> {
    if body.len() > MAX_REPORT_BYTES {
        return Err(ReportError::TooLarge);
    }
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| ReportError::Malformed(format!("bad JSON: {e}")))?;
    let bundle = BundleName::parse(&raw.bundle).map_err(ReportError::Malformed)?;
    let version = Version::parse(&raw.version).map_err(ReportError::Malformed)?;
    let kind_ok = !raw.kind.is_empty()
        && raw.kind.len() <= 32
        && raw
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !kind_ok {
        return Err(ReportError::Malformed(
            "kind must be 1-32 characters of a-z, 0-9 or '_'".into(),
        ));
    }
    Ok(Report {
        bundle,
        version,
        kind: raw.kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        let ok = parse(br#"{"bundle":"demo","version":"1.1.0","kind":"chunk_load","message":"x"}"#)
            .unwrap();
        assert_eq!(ok.kind, "chunk_load");
        for bad in [
            &br#"{"bundle":"demo","version":"1.1.0"}"#[..],
            br#"{"bundle":"Demo","version":"1.1.0","kind":"x"}"#,
            br#"{"bundle":"demo","version":"../x","kind":"x"}"#,
            br#"{"bundle":"demo","version":"1.1.0","kind":"Bad Kind"}"#,
            br#"not json"#,
            br#"[]"#,
        ] {
            assert!(
                matches!(parse(bad), Err(ReportError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = format!(
            r#"{{"bundle":"demo","version":"1.1.0","kind":"x","message":"{}"}}"#,
            "a".repeat(5000)
        );
        assert_eq!(parse(big.as_bytes()), Err(ReportError::TooLarge));
    }
}
