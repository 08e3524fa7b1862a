//! The admin API's pure parts: the request bodies of its writes, validated before anything
//! is written (who may send them: `operators`).

use serde::Deserialize;

use crate::config::patch::PolicyPatch;
use crate::config::{ConfigError, Progression, Version, Weight};

/// The writes the admin API accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    SetWeight(Weight),
    StartRollout(Option<Progression>),
    Pause,
    Resume,
    Rollback(String),
    Promote,
    /// Make a version the canary at weight 0 (or the stable, for a new bundle).
    Publish(Version),
    /// Void every override token of the bundle issued until now.
    RevokeOverrides,
    /// Let a rollout that awaits approval (`progression.approve`) take its gated step.
    Approve,
    /// Change the policy (`health`, `progression`); from the next step on.
    SetPolicy(PolicyPatch),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    version: String,
}

/// Parses an admin write whose body may also name the canary it is about
/// (`"canary": "1.5.0"`): the control plane refuses it if that is no longer the canary, so
/// a command aimed at one release never lands on the next.
pub fn parse_request(action: &str, body: &str) -> Result<(Command, Option<Version>), ConfigError> {
    let trimmed = body.trim();
    // An unknown action is named as such whatever its body (found by fuzz/api_bodies).
    if trimmed.is_empty() || !ACTIONS.contains(&action) {
        return parse_command(action, trimmed).map(|c| (c, None));
    }
    let mut value: serde_json::Value = serde_json::from_str(trimmed).map_err(body_error)?;
    let expect = match value.as_object_mut().and_then(|o| o.remove("canary")) {
        None => None,
        Some(serde_json::Value::String(v)) => {
            Some(Version::parse(&v).map_err(|m| ConfigError {
                field: "canary",
                message: m,
            })?)
        }
        Some(other) => {
            return Err(ConfigError {
                field: "canary",
                message: format!("must be the version string of the canary, got {other}"),
            })
        }
    };
    parse_command(action, &value.to_string()).map(|c| (c, expect))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    reason: Option<String>,
}

fn body_error(e: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        field: "(body)",
        message: e.to_string(),
    }
}

/// The write actions, `POST /__canary/api/<bundle>/<action>`.
pub const ACTIONS: [&str; 10] = [
    "weight",
    "rollout",
    "pause",
    "resume",
    "rollback",
    "promote",
    "publish",
    "revoke-overrides",
    "approve",
    "policy",
];

/// Parses `POST /__canary/api/<bundle>/<action>` with its JSON body.
pub fn parse_command(action: &str, body: &str) -> Result<Command, ConfigError> {
    let body = body.trim();
    let json = |b: &str| -> Result<serde_json::Value, ConfigError> {
        if b.is_empty() {
            Ok(serde_json::Value::Object(Default::default()))
        } else {
            serde_json::from_str(b).map_err(body_error)
        }
    };
    match action {
        "weight" => {
            let w: WeightBody = serde_json::from_value(json(body)?).map_err(body_error)?;
            Weight::new(w.weight)
                .map(Command::SetWeight)
                .map_err(|m| ConfigError {
                    field: "weight",
                    message: m,
                })
        }
        "rollout" => {
            let v = json(body)?;
            let empty = v.as_object().is_some_and(|o| o.is_empty());
            if empty {
                return Ok(Command::StartRollout(None));
            }
            let plan = Progression::from_value(v)?;
            // Gates and freezes are the bundle's policy, read from the live config.
            for (given, field) in [
                (!plan.approve.is_empty(), "approve"),
                (!plan.freeze.is_empty(), "freeze"),
            ] {
                if given {
                    return Err(ConfigError {
                        field,
                        message: format!(
                            "is read from the config's `progression.{field}` at every step; set it there (a rollout's body gives steps and bake_secs)"
                        ),
                    });
                }
            }
            Ok(Command::StartRollout(Some(plan)))
        }
        "approve" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct ApproveBody {}
            let _: ApproveBody = serde_json::from_value(json(body)?).map_err(body_error)?;
            Ok(Command::Approve)
        }
        "pause" => Ok(Command::Pause),
        "resume" => Ok(Command::Resume),
        "rollback" => {
            let r: RollbackBody = serde_json::from_value(json(body)?).map_err(body_error)?;
            let reason = r.reason.unwrap_or_else(|| "operator rollback".into());
            Ok(Command::Rollback(reason.chars().take(200).collect()))
        }
        "promote" => Ok(Command::Promote),
        "revoke-overrides" => Ok(Command::RevokeOverrides),
        "publish" => {
            let p: PublishBody = serde_json::from_value(json(body)?).map_err(body_error)?;
            Version::parse(&p.version)
                .map(Command::Publish)
                .map_err(|m| ConfigError {
                    field: "version",
                    message: m,
                })
        }
        "policy" => PolicyPatch::from_value(json(body)?).map(Command::SetPolicy),
        other => Err(ConfigError {
            field: "(action)",
            message: format!(
                "unknown action {other:?}; use weight, rollout, pause, resume, rollback, promote, publish, revoke-overrides, approve or policy"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_may_name_their_canary() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(
            parse_request("weight", r#"{"weight": 30, "canary": "1.1.0"}"#).unwrap(),
            (
                Command::SetWeight(Weight::new(30).unwrap()),
                Some(v("1.1.0"))
            )
        );
        assert_eq!(
            parse_request("promote", "").unwrap(),
            (Command::Promote, None)
        );
        assert_eq!(
            parse_request("rollback", r#"{"canary": "1.1.0"}"#).unwrap(),
            (
                Command::Rollback("operator rollback".into()),
                Some(v("1.1.0"))
            )
        );
        for (body, field) in [
            (r#"{"weight": 30, "canary": 7}"#, "canary"),
            (r#"{"weight": 30, "canary": "a/b"}"#, "canary"),
            (r#"{"weight": 300, "canary": "1.1.0"}"#, "weight"),
        ] {
            assert_eq!(
                parse_request("weight", body).unwrap_err().field,
                field,
                "{body}"
            );
        }
    }

    #[test]
    fn commands_are_validated() {
        assert_eq!(
            parse_command("weight", r#"{"weight": 25}"#).unwrap(),
            Command::SetWeight(Weight::new(25).unwrap())
        );
        assert_eq!(
            parse_command("weight", r#"{"weight": 101}"#)
                .unwrap_err()
                .field,
            "weight"
        );
        assert_eq!(
            parse_command("weight", r#"{"weight": "x"}"#)
                .unwrap_err()
                .field,
            "(body)"
        );
        assert_eq!(
            parse_command("weight", r#"{"weight": 5, "x": 1}"#)
                .unwrap_err()
                .field,
            "(body)"
        );
        assert_eq!(parse_command("weight", "{").unwrap_err().field, "(body)");
        assert_eq!(
            parse_command("rollout", "").unwrap(),
            Command::StartRollout(None)
        );
        assert!(matches!(
            parse_command("rollout", r#"{"steps":[1,5],"bake_secs":2}"#),
            Ok(Command::StartRollout(Some(_)))
        ));
        assert_eq!(
            parse_command("rollout", r#"{"steps":[5,1]}"#)
                .unwrap_err()
                .field,
            "progression.steps"
        );
        assert_eq!(
            parse_command("rollback", "").unwrap(),
            Command::Rollback("operator rollback".into())
        );
        assert_eq!(
            parse_command("rollback", r#"{"reason":"bad deploy"}"#).unwrap(),
            Command::Rollback("bad deploy".into())
        );
        assert_eq!(parse_command("promote", "").unwrap(), Command::Promote);
        assert_eq!(
            parse_command("publish", r#"{"version":"1.2.0"}"#).unwrap(),
            Command::Publish(Version::parse("1.2.0").unwrap())
        );
        assert_eq!(
            parse_command("publish", r#"{"version":"../x"}"#)
                .unwrap_err()
                .field,
            "version"
        );
        assert_eq!(parse_command("explode", "").unwrap_err().field, "(action)");
        assert!(matches!(
            parse_request(
                "policy",
                r#"{"health": {"min_clients": 300}, "canary": "1.1.0"}"#
            ),
            Ok((Command::SetPolicy(_), Some(_)))
        ));
        assert_eq!(parse_command("policy", "").unwrap_err().field, "(body)");
        assert_eq!(parse_command("approve", "").unwrap(), Command::Approve);
        assert_eq!(parse_command("approve", "{}").unwrap(), Command::Approve);
        assert_eq!(
            parse_request("approve", r#"{"canary": "1.1.0"}"#).unwrap(),
            (Command::Approve, Some(Version::parse("1.1.0").unwrap()))
        );
        assert_eq!(
            parse_command("approve", r#"{"step": 3}"#)
                .unwrap_err()
                .field,
            "(body)"
        );
        for (body, field) in [
            (r#"{"steps":[10,100],"approve":[100]}"#, "approve"),
            (
                r#"{"steps":[10,100],"freeze":[{"weekly":{"day":"fri","from":"16:00","to":"24:00"}}]}"#,
                "freeze",
            ),
            (
                r#"{"steps":[10,100],"approve":[30]}"#,
                "progression.approve",
            ),
        ] {
            assert_eq!(
                parse_command("rollout", body).unwrap_err().field,
                field,
                "{body}"
            );
        }
    }
}
