//! The other request inputs of the pure core: admin API bodies (`parse_command`), SDK error
//! reports (`report::parse`), the admin `Authorization` header and `If-None-Match`.
//!
//! Properties:
//! - an accepted admin write is in range: weight 0..=100, progression steps 1..=20 strictly
//!   increasing above 0 with a bake of 1..=604800 s, a rollback reason of at most 200
//!   characters; an unknown action is refused naming `(action)`; errors name a field;
//! - an accepted report names a valid bundle and version and a 1-32 character `[a-z0-9_]`
//!   kind; it carries `boot_ms` (at most 600000) exactly when it is a boot signal (kind
//!   `boot`); bodies over 4096 bytes are refused as too large, whatever they hold;
//! - an accepted publish claim (`ClaimRequest`) names a valid version;
//! - the bearer check passes only for `Bearer <a configured token>` (surrounding spaces
//!   trimmed), and names the principal of that token;
//! - `If-None-Match: *` always matches, a header over 4096 bytes never does.
#![no_main]

use canary_core::ops::admin::{parse_request, Command, ACTIONS};
use canary_core::config::patch::SectionPatch;
use canary_core::ops::operators::{token_hash, Operators, Scope};
use canary_core::ops::publish::ClaimRequest;
use canary_core::config::Weight;
use canary_core::edge::http::{content_type_for, etag_matches};
use canary_core::edge::report::{self, ReportError, MAX_BOOT_MS, MAX_REPORT_BYTES};
use canary_edge_fuzz::{bundle_ok, version_ok, Fields};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "admin-token-0123456789abcdef012345";
const READ: &str = "read-token-0123456789abcdef0123456";
const ALICE: &str = "alice-token-0123456789abcdef012345";

/// Lines `action:`, `body:`, `authorization:`, `if-none-match:`, `report:`; see `Fields`.
struct Input<'a> {
    action: &'a str,
    body: &'a str,
    authorization: &'a str,
    if_none_match: &'a str,
    report: &'a [u8],
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Self {
        let f = Fields::parse(data);
        Input {
            action: f.text("action").unwrap_or(""),
            body: f.text("body").unwrap_or(""),
            authorization: f.text("authorization").unwrap_or(""),
            if_none_match: f.text("if-none-match").unwrap_or(""),
            report: f.bytes("report").unwrap_or(b""),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let action = input.action;
    // A publish's claim names exactly one valid version.
    if let Ok(claim) = ClaimRequest::parse(input.body) {
        assert!(version_ok(claim.version.as_str()));
    }
    let parsed = parse_request(action, input.body).map(|(command, expect_canary)| {
        // A named canary is always a valid version.
        if let Some(v) = expect_canary {
            assert!(version_ok(v.as_str()));
        }
        command
    });
    match parsed {
        Ok(Command::SetWeight(w)) => {
            assert_eq!(action, "weight");
            assert!(w <= Weight::FULL);
        }
        Ok(Command::StartRollout(plan)) => {
            assert_eq!(action, "rollout");
            if let Some(p) = plan {
                assert!((1..=20).contains(&p.steps.len()));
                assert!(p.steps[0] > Weight::ZERO);
                assert!(p.steps.windows(2).all(|w| w[0] < w[1]));
                assert!(p.steps.iter().all(|w| *w <= Weight::FULL));
                assert!((1..=604_800).contains(&p.bake_secs));
            }
        }
        Ok(Command::Rollback(reason)) => {
            assert_eq!(action, "rollback");
            assert!(reason.chars().count() <= 200);
        }
        Ok(Command::Pause) => assert_eq!(action, "pause"),
        Ok(Command::Resume) => assert_eq!(action, "resume"),
        Ok(Command::Promote) => assert_eq!(action, "promote"),
        Ok(Command::RevokeOverrides) => assert_eq!(action, "revoke-overrides"),
        Ok(Command::Approve) => assert_eq!(action, "approve"),
        Ok(Command::SetPolicy(patch)) => {
            assert_eq!(action, "policy");
            assert!(
                patch.health != SectionPatch::Keep || patch.progression != SectionPatch::Keep
            );
        }
        Ok(Command::Publish(v)) => {
            assert_eq!(action, "publish");
            assert!(version_ok(v.as_str()));
        }
        Err(e) => {
            assert!(!e.field.is_empty());
            assert!(e.to_string().contains(e.field));
            if !ACTIONS.contains(&action) {
                assert_eq!(e.field, "(action)");
            }
        }
    }

    match report::parse(input.report) {
        Ok(r) => {
            assert!(input.report.len() <= MAX_REPORT_BYTES);
            assert!(bundle_ok(r.bundle.as_str()));
            assert!(version_ok(r.version.as_str()));
            assert!(
                (1..=32).contains(&r.kind.len())
                    && r.kind
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{:?}",
                r.kind
            );
            assert_eq!(r.is_boot(), r.boot_ms.is_some(), "{r:?}");
            assert!(r.boot_ms.is_none_or(|ms| ms <= MAX_BOOT_MS), "{r:?}");
        }
        Err(ReportError::TooLarge) => assert!(input.report.len() > MAX_REPORT_BYTES),
        Err(ReportError::Malformed(m)) => {
            assert!(input.report.len() <= MAX_REPORT_BYTES);
            assert!(!m.is_empty());
        }
    }

    let named = format!("alice:{}", token_hash(ALICE));
    let operators = Operators::from_secrets(Some(TOKEN), Some(READ), Some(&named))
        .expect("valid secrets")
        .expect("admin API on");
    if let Some(p) = operators.by_bearer(Some(input.authorization)) {
        let given = input.authorization.strip_prefix("Bearer ").expect("scheme");
        let expected = match (p.name.as_str(), p.scope) {
            ("operator", Scope::Write) => TOKEN,
            ("read-only", Scope::Read) => READ,
            ("alice", Scope::Write) => ALICE,
            other => panic!("unknown principal {other:?}"),
        };
        assert_eq!(given.trim(), expected, "{:?}", input.authorization);
    }
    assert!(operators.by_bearer(None).is_none());

    let matched = etag_matches(input.if_none_match, "\"abc123\"");
    if input.if_none_match.len() > 4096 {
        assert!(!matched);
    } else if input.if_none_match.trim() == "*" {
        assert!(matched);
    }
    let _ = content_type_for(input.body);
});
