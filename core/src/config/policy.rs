//! The monitor's settings inside a rollout config: the rollback thresholds (`health`) and the
//! progressive rollout plan (`progression`). Owned here, with the rest of the config types,
//! so the control plane imports config and never the other way round.

use serde::{Deserialize, Serialize};

use super::freeze::{parse_windows, FreezeWindow};
use super::origins::PageOrigins;
use super::{ConfigError, Weight};

/// The canary's health rule, from the rollout config's `health` field: what operators mean,
/// with sane defaults. See `control::verdict` for the tests these drive.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthPolicy {
    /// `1 − α`: a healthy canary is wrongly cut, or a bad one wrongly passes a step, with
    /// probability at most `α`, however often the verdict is looked at.
    pub confidence: f64,
    /// `1 − β`: a canary worse than tolerated wrongly passes one step with probability at
    /// most `β`. Lower than `confidence` by default: a wrong pass only moves the canary to
    /// the next step, where the cut test (at `confidence`) keeps watching it with more
    /// traffic, while a pass that never comes stalls every healthy release at modest
    /// traffic (docs/verdict.md, "Passes at modest traffic").
    pub pass_confidence: f64,
    /// How much worse than stable's error rate the canary may be, relatively (1.0: up to
    /// twice stable's).
    pub max_increase: f64,
    /// An error rate below which the canary is never cut; a canary proven below it passes.
    pub min_error_rate: f64,
    /// Distinct canary clients a step must see before it may advance.
    pub min_clients: u64,
    /// Longest a rollout waits for evidence after a step's bake time before it pauses.
    pub max_hold_secs: u32,
    /// Length of one counting window (status shows the current and previous one; their
    /// exposure sets the relative test's boundary).
    pub window_secs: u32,
    /// Cut the canary automatically; with `false` the verdict is only reported.
    pub auto_rollback: bool,
    /// How long after its load a client has to send its boot signal before it counts as a
    /// client with a failure (`no_boot`), once the bundle's SDK is known to send them.
    pub boot_grace_secs: u32,
    /// Hostile networks the verdict is robust to: a cut must hold with that many of the
    /// canary's failing clients removed, a pass with that many of its clean clients and of
    /// stable's failing clients removed (each network counts at most
    /// `tracker::CLIENTS_PER_NETWORK` client per step).
    pub hostile_networks: u32,
    /// How much slower than stable's the canary's median boot time may be (0.25: 25%
    /// slower); a canary proven slower than that is cut, and a step passes only once it is
    /// proven within it (`control::verdict::boot_time`).
    pub max_boot_slowdown: f64,
    /// The merchant's page origins: when set, only loads whose `Referer` and reports whose
    /// `Origin` is one of them count as evidence (`origins.rs`); absent, any page's do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origins: Option<PageOrigins>,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            confidence: 0.99,
            pass_confidence: DEFAULT_PASS_CONFIDENCE,
            max_increase: 1.0,
            min_error_rate: 0.02,
            min_clients: 200,
            max_hold_secs: 3600,
            window_secs: 60,
            auto_rollback: true,
            boot_grace_secs: 30,
            hostile_networks: 10,
            max_boot_slowdown: 0.25,
            origins: None,
        }
    }
}

/// `health.pass_confidence` when the config does not set it.
pub const DEFAULT_PASS_CONFIDENCE: f64 = 0.95;

/// Fields of the previous rule, still read: `max_relative` r means `max_increase` r − 1,
/// `max_error_rate` means `min_error_rate`, `min_requests` means `min_clients`.
const RENAMED: [(&str, &str); 3] = [
    ("max_relative", "max_increase"),
    ("max_error_rate", "min_error_rate"),
    ("min_requests", "min_clients"),
];

impl HealthPolicy {
    pub fn from_value(v: serde_json::Value) -> Result<Self, ConfigError> {
        let serde_json::Value::Object(map) = v else {
            return Err(ConfigError {
                field: "health",
                message: "must be an object".into(),
            });
        };
        let mut p = HealthPolicy::default();
        let bad = |field: &'static str, message: String| ConfigError { field, message };
        for (key, value) in &map {
            let key = key.as_str();
            if let Some((old, new)) = RENAMED.iter().find(|(old, _)| *old == key) {
                if map.contains_key(*new) {
                    return Err(bad(
                        field_name(old),
                        format!("is the old name of `{new}`; give one of them"),
                    ));
                }
            }
            let number = || {
                value
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| bad(field_name(key), format!("must be a number, got {value}")))
            };
            let whole = |lo: u64, hi: u64| {
                value
                    .as_u64()
                    .filter(|x| (lo..=hi).contains(x))
                    .ok_or_else(|| {
                        bad(
                            field_name(key),
                            format!("must be an integer from {lo} to {hi}, got {value}"),
                        )
                    })
            };
            match key {
                "confidence" => p.confidence = number()?,
                "pass_confidence" => p.pass_confidence = number()?,
                "max_increase" => p.max_increase = number()?,
                "max_relative" => p.max_increase = number()? - 1.0,
                "min_error_rate" | "max_error_rate" => p.min_error_rate = number()?,
                "min_clients" | "min_requests" => p.min_clients = whole(1, 100_000_000)?,
                "max_hold_secs" => p.max_hold_secs = whole(1, 30 * 86_400)? as u32,
                "window_secs" => p.window_secs = whole(10, 86_400)? as u32,
                "boot_grace_secs" => p.boot_grace_secs = whole(1, 3_600)? as u32,
                "hostile_networks" => p.hostile_networks = whole(0, 10_000)? as u32,
                "max_boot_slowdown" => p.max_boot_slowdown = number()?,
                "origins" => {
                    p.origins = match value {
                        serde_json::Value::Null => None,
                        v => Some(PageOrigins::from_value(v).map_err(|m| bad("health.origins", m))?),
                    }
                }
                "auto_rollback" => {
                    p.auto_rollback = value.as_bool().ok_or_else(|| {
                        bad("health.auto_rollback", format!("must be true or false, got {value}"))
                    })?
                }
                other => {
                    return Err(bad(
                        "health",
                        format!(
                            "unknown field `{other}`; use confidence, pass_confidence, max_increase, min_error_rate, min_clients, max_hold_secs, window_secs, auto_rollback, boot_grace_secs, hostile_networks, max_boot_slowdown or origins"
                        ),
                    ))
                }
            }
        }
        if !(0.5..1.0).contains(&p.confidence) {
            return Err(bad(
                "health.confidence",
                "must be at least 0.5 and below 1".into(),
            ));
        }
        if !(0.5..1.0).contains(&p.pass_confidence) {
            return Err(bad(
                "health.pass_confidence",
                "must be at least 0.5 and below 1".into(),
            ));
        }
        if !(p.max_increase >= 0.0 && p.max_increase <= 100.0) {
            let field = if map.contains_key("max_relative") {
                "health.max_relative"
            } else {
                "health.max_increase"
            };
            return Err(bad(
                field,
                "must be from 0 to 100 (max_relative: from 1 to 101)".into(),
            ));
        }
        if !(p.max_boot_slowdown > 0.0 && p.max_boot_slowdown <= 10.0) {
            return Err(bad(
                "health.max_boot_slowdown",
                "must be above 0 and at most 10 (0.25: 25% slower than stable)".into(),
            ));
        }
        if !(p.min_error_rate > 0.0 && p.min_error_rate < 1.0) {
            let field = if map.contains_key("max_error_rate") {
                "health.max_error_rate"
            } else {
                "health.min_error_rate"
            };
            return Err(bad(field, "must be a rate in (0, 1)".into()));
        }
        Ok(p)
    }
}

/// `health.<key>` as a static name, for errors.
fn field_name(key: &str) -> &'static str {
    match key {
        "confidence" => "health.confidence",
        "pass_confidence" => "health.pass_confidence",
        "max_increase" => "health.max_increase",
        "max_relative" => "health.max_relative",
        "min_error_rate" => "health.min_error_rate",
        "max_error_rate" => "health.max_error_rate",
        "min_clients" => "health.min_clients",
        "min_requests" => "health.min_requests",
        "max_hold_secs" => "health.max_hold_secs",
        "window_secs" => "health.window_secs",
        "max_boot_slowdown" => "health.max_boot_slowdown",
        _ => "health",
    }
}

impl<'de> Deserialize<'de> for HealthPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        HealthPolicy::from_value(v).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// The progressive rollout plan: weights in increasing order, each held for `bake_secs`;
/// the steps that wait for a person (`approve`), and when no step is taken automatically
/// (`freeze`). The control plane reads `approve` and `freeze` from the live config at every
/// step, so a freeze added during a rollout holds it at once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progression {
    pub steps: Vec<Weight>,
    pub bake_secs: u32,
    /// Step weights the rollout does not advance to by itself: it waits for an approval.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approve: Vec<Weight>,
    /// Windows (UTC) during which no automatic step is taken (cuts still happen).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<FreezeWindow>,
}

impl<'de> Deserialize<'de> for Progression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Progression::from_value(v).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

impl Progression {
    pub fn from_value(v: serde_json::Value) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            steps: Vec<u64>,
            #[serde(default = "default_bake")]
            bake_secs: u32,
            #[serde(default)]
            approve: Option<serde_json::Value>,
            #[serde(default)]
            freeze: Option<serde_json::Value>,
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
        let approve = match raw.approve {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => parse_approve(&v, &steps)?,
        };
        let freeze = match raw.freeze {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => parse_windows(&v)?,
        };
        Ok(Self {
            steps,
            bake_secs: raw.bake_secs,
            approve,
            freeze,
        })
    }

    /// The plan without its gates and freezes (a rollout keeps its steps and bake; the
    /// gates and freezes are read from the live config).
    pub fn steps_only(&self) -> Self {
        Self {
            steps: self.steps.clone(),
            bake_secs: self.bake_secs,
            approve: Vec::new(),
            freeze: Vec::new(),
        }
    }
}

/// `progression.approve`: later steps of the plan, each once.
fn parse_approve(v: &serde_json::Value, steps: &[Weight]) -> Result<Vec<Weight>, ConfigError> {
    let bad = |message: String| ConfigError {
        field: "progression.approve",
        message,
    };
    let serde_json::Value::Array(items) = v else {
        return Err(bad(format!("must be a list of step weights, got {v}")));
    };
    let mut approve = Vec::with_capacity(items.len());
    for item in items {
        let weight = item
            .as_u64()
            .and_then(|w| Weight::new(w).ok())
            .filter(|w| steps.contains(w))
            .ok_or_else(|| {
                let listed: Vec<u8> = steps.iter().map(|w| w.percent()).collect();
                bad(format!("{item} is not one of the steps {listed:?}"))
            })?;
        if steps.first() == Some(&weight) {
            return Err(bad(format!(
                "{item} is the first step, which the rollout's start (a person) already approves; gate a later step"
            )));
        }
        if approve.contains(&weight) {
            return Err(bad(format!("lists {item} twice")));
        }
        approve.push(weight);
    }
    Ok(approve)
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
            (json!({"min_clients": 0}), "health.min_clients"),
            (json!({"min_requests": 0}), "health.min_requests"),
            (json!({"min_error_rate": 0}), "health.min_error_rate"),
            (json!({"max_error_rate": 1.5}), "health.max_error_rate"),
            (json!({"max_relative": 0.5}), "health.max_relative"),
            (json!({"max_increase": -1}), "health.max_increase"),
            (json!({"confidence": 1}), "health.confidence"),
            (json!({"confidence": "high"}), "health.confidence"),
            (json!({"pass_confidence": 0.4}), "health.pass_confidence"),
            (json!({"pass_confidence": 1.0}), "health.pass_confidence"),
            (
                json!({"max_relative": 2, "max_increase": 1}),
                "health.max_relative",
            ),
            (json!({"surprise": 1}), "health"),
            (json!({"max_boot_slowdown": 0}), "health.max_boot_slowdown"),
            (
                json!({"max_boot_slowdown": 10.5}),
                "health.max_boot_slowdown",
            ),
            (
                json!({"max_boot_slowdown": "fast"}),
                "health.max_boot_slowdown",
            ),
            (json!({"min_requests": "many"}), "health.min_requests"),
            (json!({"auto_rollback": "yes"}), "health.auto_rollback"),
            (
                json!({"origins": ["https://shop.example/"]}),
                "health.origins",
            ),
            (json!({"origins": []}), "health.origins"),
            (json!({"origins": "https://shop.example"}), "health.origins"),
            (json!([1]), "health"),
        ] {
            assert_eq!(
                HealthPolicy::from_value(value.clone()).unwrap_err().field,
                field,
                "{value}"
            );
        }
    }

    #[test]
    fn old_configs_are_mapped_to_the_new_names() {
        let old = json!({"window_secs": 60, "min_requests": 20, "max_error_rate": 0.1, "max_relative": 2.0, "auto_rollback": false});
        let p = HealthPolicy::from_value(old).unwrap();
        assert_eq!(
            (
                p.min_clients,
                p.min_error_rate,
                p.max_increase,
                p.auto_rollback
            ),
            (20, 0.1, 1.0, false)
        );
        let new = json!({"confidence": 0.95, "max_increase": 0.5, "min_error_rate": 0.01, "min_clients": 500, "max_hold_secs": 600, "origins": ["https://shop.example"]});
        let p = HealthPolicy::from_value(new.clone()).unwrap();
        assert_eq!(p.confidence, 0.95);
        assert_eq!(
            p.origins.as_ref().map(PageOrigins::as_slice),
            Some(&["https://shop.example".to_string()][..])
        );
        // Without origins none is written back; `null` reads as none.
        let any = HealthPolicy::from_value(json!({"origins": null})).unwrap();
        assert_eq!(any.origins, None);
        assert!(serde_json::to_value(&any).unwrap().get("origins").is_none());
        // Written back, it reads the same.
        assert_eq!(
            HealthPolicy::from_value(serde_json::to_value(&p).unwrap()).unwrap(),
            p
        );
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
    fn gates_and_freezes_are_validated_naming_the_field() {
        let p = Progression::from_value(json!({
            "steps": [10, 50, 100], "bake_secs": 600, "approve": [100],
            "freeze": [{"from": "2026-12-24T00:00:00Z", "to": "2026-12-27T00:00:00Z"},
                       {"weekly": {"day": "fri", "from": "16:00", "to": "24:00"}}],
        }))
        .unwrap();
        assert_eq!(p.approve, vec![Weight::FULL]);
        assert_eq!(p.freeze.len(), 2);
        // Written back, it reads the same.
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(back["approve"], json!([100]));
        assert_eq!(Progression::from_value(back).unwrap(), p);
        // Without gates or freezes the written plan is as before.
        let plain = Progression::from_value(json!({"steps": [10, 50], "bake_secs": 6})).unwrap();
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            json!({"steps": [10, 50], "bake_secs": 6})
        );
        for (extra, field, words) in [
            (
                json!({"approve": [30]}),
                "progression.approve",
                "not one of the steps [10, 50, 100]",
            ),
            (
                json!({"approve": [10]}),
                "progression.approve",
                "first step",
            ),
            (
                json!({"approve": [100, 100]}),
                "progression.approve",
                "twice",
            ),
            (
                json!({"approve": 100}),
                "progression.approve",
                "must be a list",
            ),
            (
                json!({"approve": ["100"]}),
                "progression.approve",
                "not one of the steps",
            ),
            (
                json!({"freeze": [{"weekly": {"day": "fri"}}]}),
                "progression.freeze",
                "window 1",
            ),
            (
                json!({"freeze": {"from": "x"}}),
                "progression.freeze",
                "must be a list",
            ),
        ] {
            let mut v = json!({"steps": [10, 50, 100], "bake_secs": 60});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            let e = Progression::from_value(v).unwrap_err();
            assert_eq!(e.field, field, "{extra}");
            assert!(e.message.contains(words), "{extra}: {}", e.message);
        }
        // The rollout config's parse names the field too.
        let e = super::super::Rollout::parse(
            r#"{"stable":"1.0.0","progression":{"steps":[10,50],"approve":[70]}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "progression.approve");
        assert!(e.to_string().contains("field `progression.approve`"));
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
