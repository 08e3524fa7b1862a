//! The monitor's settings inside a rollout config: the rollback thresholds (`health`) and the
//! progressive rollout plan (`progression`). Owned here, with the rest of the config types,
//! so the control plane imports config and never the other way round.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Weight};

/// Thresholds of the automatic rollback, from the rollout config's `health` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthPolicy {
    /// Length of one counting window; the rule looks at the current and previous window.
    pub window_secs: u32,
    /// Canary requests needed in the looked-at windows before the rule may trip.
    pub min_requests: u64,
    /// Canary error rate (errors / requests, 0..1) above which the canary is unhealthy...
    pub max_error_rate: f64,
    /// ...provided it is also at least this many times stable's rate (when stable has
    /// `min_requests` too).
    pub max_relative: f64,
    /// Cut the canary automatically; with `false` the verdict is only reported.
    pub auto_rollback: bool,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            window_secs: 60,
            min_requests: 200,
            max_error_rate: 0.02,
            max_relative: 2.0,
            auto_rollback: true,
        }
    }
}

impl HealthPolicy {
    pub fn from_value(v: serde_json::Value) -> Result<Self, ConfigError> {
        let p: HealthPolicy = serde_json::from_value(v).map_err(|e| ConfigError {
            field: "health",
            message: e.to_string(),
        })?;
        let bad = |field: &'static str, message: &str| {
            Err(ConfigError {
                field,
                message: message.to_owned(),
            })
        };
        if !(10..=86_400).contains(&p.window_secs) {
            return bad("health.window_secs", "must be from 10 to 86400");
        }
        if p.min_requests == 0 {
            return bad("health.min_requests", "must be at least 1");
        }
        if !(p.max_error_rate > 0.0 && p.max_error_rate <= 1.0) {
            return bad("health.max_error_rate", "must be a rate in (0, 1]");
        }
        if !(p.max_relative >= 1.0 && p.max_relative.is_finite()) {
            return bad("health.max_relative", "must be a finite number >= 1");
        }
        Ok(p)
    }
}

/// The progressive rollout plan: weights in increasing order, each held for `bake_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progression {
    pub steps: Vec<Weight>,
    pub bake_secs: u32,
}

impl Progression {
    pub fn from_value(v: serde_json::Value) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            steps: Vec<u64>,
            #[serde(default = "default_bake")]
            bake_secs: u32,
        }
        fn default_bake() -> u32 {
            300
        }
        let raw: Raw = serde_json::from_value(v).map_err(|e| ConfigError {
            field: "progression",
            message: e.to_string(),
        })?;
        let err = |field: &'static str, message: String| ConfigError { field, message };
        if raw.steps.is_empty() || raw.steps.len() > 20 {
            return Err(err("progression.steps", "must list 1 to 20 weights".into()));
        }
        let mut steps = Vec::with_capacity(raw.steps.len());
        for w in raw.steps {
            let weight = Weight::new(w).map_err(|m| err("progression.steps", m))?;
            if steps.last().is_some_and(|prev| *prev >= weight) || weight == Weight::ZERO {
                return Err(err(
                    "progression.steps",
                    "weights must be above 0 and strictly increasing".into(),
                ));
            }
            steps.push(weight);
        }
        if !(1..=7 * 86_400).contains(&raw.bake_secs) {
            return Err(err(
                "progression.bake_secs",
                "must be from 1 to 604800".into(),
            ));
        }
        Ok(Self {
            steps,
            bake_secs: raw.bake_secs,
        })
    }
}

impl Progression {
    /// Checks the plan against the deployment's cohort count: every step must put at least
    /// one more cohort on the canary than the one before, or it would serve nobody new (a
    /// weight below one cohort serves nobody at all).
    pub fn check_cohorts(&self, cohorts: u16) -> Result<(), ConfigError> {
        let mut previous = 0;
        for step in &self.steps {
            let on = step.canary_cohorts(cohorts);
            if on == 0 {
                return Err(ConfigError {
                    field: "progression.steps",
                    message: format!(
                        "step {}% puts no cohort on the canary with COHORTS={cohorts} (one cohort is {}%)",
                        step.percent(),
                        100.0 / f64::from(cohorts)
                    ),
                });
            }
            if on == previous {
                return Err(ConfigError {
                    field: "progression.steps",
                    message: format!(
                        "step {}% serves the same {on} of {cohorts} cohorts as the step before it",
                        step.percent()
                    ),
                });
            }
            previous = on;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_validation_names_the_field() {
        assert_eq!(
            HealthPolicy::from_value(json!({})).unwrap(),
            HealthPolicy::default()
        );
        for (value, field) in [
            (json!({"window_secs": 1}), "health.window_secs"),
            (json!({"min_requests": 0}), "health.min_requests"),
            (json!({"max_error_rate": 0}), "health.max_error_rate"),
            (json!({"max_error_rate": 1.5}), "health.max_error_rate"),
            (json!({"max_relative": 0.5}), "health.max_relative"),
            (json!({"surprise": 1}), "health"),
            (json!({"min_requests": "many"}), "health"),
        ] {
            assert_eq!(
                HealthPolicy::from_value(value.clone()).unwrap_err().field,
                field,
                "{value}"
            );
        }
    }

    #[test]
    fn progression_validation() {
        let p = Progression::from_value(json!({"steps": [1, 5, 25, 50, 100], "bake_secs": 60}))
            .unwrap();
        assert_eq!(p.steps.len(), 5);
        for bad in [
            json!({"steps": []}),
            json!({"steps": [5, 5]}),
            json!({"steps": [10, 5]}),
            json!({"steps": [0, 5]}),
            json!({"steps": [5, 101]}),
            json!({"steps": [5], "bake_secs": 0}),
            json!({"steps": "fast"}),
        ] {
            assert!(Progression::from_value(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn steps_are_checked_against_the_cohort_count() {
        let plan = |steps: serde_json::Value| {
            Progression::from_value(json!({"steps": steps, "bake_secs": 60})).unwrap()
        };
        for (steps, cohorts, bad_step) in [
            (json!([10, 50, 100]), 10, None),
            (json!([1, 5, 25, 50, 100]), 100, None),
            (json!([1, 5, 25, 50, 100]), 10, Some("step 1%")),
            (json!([10, 15, 100]), 10, Some("step 15%")),
            (json!([5, 10]), 10, Some("step 5%")),
            (json!([1, 2]), 1000, None),
        ] {
            let result = plan(steps.clone()).check_cohorts(cohorts);
            match bad_step {
                None => assert!(result.is_ok(), "{steps} with {cohorts}: {result:?}"),
                Some(name) => {
                    let err = result.expect_err(&format!("{steps} with {cohorts}"));
                    assert_eq!(err.field, "progression.steps");
                    assert!(err.message.starts_with(name), "{}", err.message);
                }
            }
        }
    }
}
