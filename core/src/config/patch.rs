//! A change of a rollout's policy (`health`, `progression`) as the policy command gives it:
//! partial, checked with the config's own rules, and described field by field for the
//! history (`health.min_clients: 200 -> 300`).
//!
//! A section given as an object is merged key by key into the current one (a key set to
//! `null` goes back to its default); a section given as `null` is removed (every default).

use serde_json::{Map, Value};

use super::{ConfigError, HealthPolicy, Rollout};

/// The sections a policy change may touch.
pub const SECTIONS: [&str; 2] = ["health", "progression"];

/// What a policy change does to one section.
#[derive(Debug, Clone, PartialEq)]
pub enum SectionPatch {
    Keep,
    /// Remove the section: its defaults apply.
    Clear,
    /// Merge these keys (a `null` value removes the key).
    Merge(Map<String, Value>),
}

/// A policy change: one patch per section.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyPatch {
    pub health: SectionPatch,
    pub progression: SectionPatch,
}

/// One field a change moved, with its value before and after (`null`: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

impl PolicyPatch {
    /// From the command's body (the `canary` expectation already taken out): an object with
    /// `health` and/or `progression`, each an object or `null`.
    pub fn from_value(body: Value) -> Result<Self, ConfigError> {
        let Value::Object(mut map) = body else {
            return Err(ConfigError::new("(body)", "must be a JSON object"));
        };
        let mut section = |name: &'static str| match map.remove(name) {
            None => Ok(SectionPatch::Keep),
            Some(Value::Null) => Ok(SectionPatch::Clear),
            Some(Value::Object(keys)) if keys.is_empty() => Err(ConfigError::new(
                name,
                "is empty; name the fields to change (null removes the section)",
            )),
            Some(Value::Object(keys)) => Ok(SectionPatch::Merge(keys)),
            Some(other) => Err(ConfigError::new(
                name,
                format!("must be an object of fields to change, or null; got {other}"),
            )),
        };
        let patch = Self {
            health: section("health")?,
            progression: section("progression")?,
        };
        if let Some(unknown) = map.keys().next() {
            return Err(ConfigError::new(
                "(body)",
                format!(
                    "unknown field `{unknown}`; a policy change sets `health` and/or `progression`"
                ),
            ));
        }
        if patch.health == SectionPatch::Keep && patch.progression == SectionPatch::Keep {
            return Err(ConfigError::new(
                "(body)",
                "nothing to change; give `health` and/or `progression`",
            ));
        }
        Ok(patch)
    }

    /// The config with this change, validated as a whole by [`Rollout::from_value`], and the
    /// fields it moved (none: the change is already in place).
    pub fn apply(&self, config: &Rollout) -> Result<(Rollout, Vec<FieldChange>), ConfigError> {
        let Value::Object(mut doc) = serde_json::to_value(config).unwrap_or_default() else {
            return Err(ConfigError::new("(document)", "must be a JSON object"));
        };
        for (name, patch) in [("health", &self.health), ("progression", &self.progression)] {
            match patch {
                SectionPatch::Keep => {}
                SectionPatch::Clear => {
                    doc.remove(name);
                }
                SectionPatch::Merge(keys) => {
                    let mut section = match doc.remove(name) {
                        Some(Value::Object(current)) => current,
                        _ => Map::new(),
                    };
                    for (key, value) in keys {
                        if value.is_null() {
                            section.remove(key);
                        } else {
                            section.insert(key.clone(), value.clone());
                        }
                    }
                    doc.insert(name.to_owned(), Value::Object(section));
                }
            }
        }
        let next = Rollout::from_value(Value::Object(doc))?;
        let changes = changes(config, &next);
        Ok((next, changes))
    }
}

/// The policy fields that differ between two configs, as each serializes (with defaults).
pub fn changes(before: &Rollout, after: &Rollout) -> Vec<FieldChange> {
    let mut out = Vec::new();
    for (name, b, a) in [
        (
            "health",
            health_value(before.health.as_ref()),
            health_value(after.health.as_ref()),
        ),
        (
            "progression",
            serde_json::to_value(&before.progression).unwrap_or_default(),
            serde_json::to_value(&after.progression).unwrap_or_default(),
        ),
    ] {
        let (b, a) = (as_map(b), as_map(a));
        let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (bv, av) = (
                b.get(key).cloned().unwrap_or(Value::Null),
                a.get(key).cloned().unwrap_or(Value::Null),
            );
            if bv != av {
                out.push(FieldChange {
                    field: format!("{name}.{key}"),
                    before: bv,
                    after: av,
                });
            }
        }
    }
    out
}

/// `health` as it reads with its defaults filled in (absent reads as the defaults, so a
/// change names only what moved). An absent `progression` has no defaults: no fields.
fn health_value(section: Option<&HealthPolicy>) -> Value {
    serde_json::to_value(section.cloned().unwrap_or_default()).unwrap_or_default()
}

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `health.min_clients: 200 -> 300; progression.bake_secs: 600 -> 300`.
pub fn describe(changes: &[FieldChange]) -> String {
    if changes.is_empty() {
        return "no change".into();
    }
    changes
        .iter()
        .map(|c| format!("{}: {} -> {}", c.field, c.before, c.after))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(extra: Value) -> Rollout {
        let mut doc = json!({"stable": "1.0.0", "canary": "1.1.0", "weight": 10});
        if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
            d.extend(e);
        }
        Rollout::from_value(doc).unwrap()
    }

    fn patch(body: Value) -> Result<PolicyPatch, ConfigError> {
        PolicyPatch::from_value(body)
    }

    #[test]
    fn bodies_are_checked() {
        for (body, field) in [
            (json!([]), "(body)"),
            (json!({}), "(body)"),
            (json!({"weight": 3}), "(body)"),
            (json!({"health": 3}), "health"),
            (json!({"health": {}}), "health"),
            (json!({"progression": "x"}), "progression"),
        ] {
            assert_eq!(patch(body.clone()).unwrap_err().field, field, "{body}");
        }
        assert_eq!(
            patch(json!({"health": null})).unwrap(),
            PolicyPatch {
                health: SectionPatch::Clear,
                progression: SectionPatch::Keep
            }
        );
    }

    #[test]
    fn a_change_merges_validates_and_names_what_moved() {
        let current = config(json!({"health": {"min_clients": 200, "confidence": 0.99}}));
        /// The fields that moved (name, before, after), or the field refused.
        type Expected<'a> = Result<&'a [(&'a str, Value, Value)], &'a str>;
        let table: [(Value, Expected); 8] = [
            (
                json!({"health": {"min_clients": 300}}),
                Ok(&[("health.min_clients", json!(200), json!(300))]),
            ),
            (
                json!({"health": {"max_boot_slowdown": 0.5}}),
                Ok(&[("health.max_boot_slowdown", json!(0.25), json!(0.5))]),
            ),
            (
                json!({"health": {"max_boot_slowdown": -1}}),
                Err("health.max_boot_slowdown"),
            ),
            (
                // null: back to the default (which here equals the value: no change).
                json!({"health": {"confidence": null}}),
                Ok(&[]),
            ),
            (
                json!({"health": {"min_clients": 0}}),
                Err("health.min_clients"),
            ),
            (json!({"health": {"nonsense": 1}}), Err("health")),
            (
                json!({"progression": {"steps": [10, 50, 100], "bake_secs": 600}}),
                Ok(&[
                    ("progression.bake_secs", Value::Null, json!(600)),
                    ("progression.steps", Value::Null, json!([10, 50, 100])),
                ]),
            ),
            (
                json!({"progression": {"steps": [50, 10]}}),
                Err("progression.steps"),
            ),
        ];
        for (body, expected) in table {
            let result = patch(body.clone()).and_then(|p| p.apply(&current));
            match (result, expected) {
                (Ok((next, changes)), Ok(want)) => {
                    let got: Vec<(&str, Value, Value)> = changes
                        .iter()
                        .map(|c| (c.field.as_str(), c.before.clone(), c.after.clone()))
                        .collect();
                    assert_eq!(got, want.to_vec(), "{body}");
                    assert_eq!(
                        (next.weight, &next.canary),
                        (current.weight, &current.canary)
                    );
                }
                (Err(e), Err(field)) => assert_eq!(e.field, field, "{body}"),
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_section_cleared_goes_back_to_its_defaults() {
        let current = config(json!({"health": {"min_clients": 500}}));
        let (next, changes) = patch(json!({"health": null}))
            .unwrap()
            .apply(&current)
            .unwrap();
        assert_eq!(next.health, None);
        assert_eq!(describe(&changes), "health.min_clients: 500 -> 200");
    }
}
