//! The rollback rule: is the canary unhealthy, judged from recent counts?
//!
//! Conservative by design: once the canary has enough traffic, an error rate above the
//! absolute threshold *and* well above stable's cuts it, even if the cause might lie
//! elsewhere. Equal rates (a shared backend failing) do not trip it.

use super::counts::ChannelCounts;
use crate::config::HealthPolicy;

/// The verdict of the rollback rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough canary traffic to judge.
    TooFewSamples,
    Healthy,
    Unhealthy(String),
}

impl Verdict {
    pub fn state(&self) -> &'static str {
        match self {
            Verdict::TooFewSamples => "too_few_samples",
            Verdict::Healthy => "healthy",
            Verdict::Unhealthy(_) => "unhealthy",
        }
    }
}

/// The rule over the counts of the current and previous window.
pub fn evaluate(recent: &ChannelCounts, policy: &HealthPolicy) -> Verdict {
    let canary = recent.canary;
    if canary.clients < policy.min_requests {
        return Verdict::TooFewSamples;
    }
    let canary_rate = canary.rate();
    if canary_rate <= policy.max_error_rate {
        return Verdict::Healthy;
    }
    let stable = recent.stable;
    let stable_known = stable.clients >= policy.min_requests;
    if stable_known && canary_rate < stable.rate() * policy.max_relative {
        // Stable fails about as much: the cause is likely shared, not the release.
        return Verdict::Healthy;
    }
    let stable_part = if stable_known {
        format!(
            ", stable {:.2}% ({}/{}), limit {}x stable",
            stable.rate() * 100.0,
            stable.errors,
            stable.clients,
            policy.max_relative
        )
    } else {
        ", stable has too little traffic to compare".to_owned()
    };
    Verdict::Unhealthy(format!(
        "canary error rate {:.2}% ({}/{}) above {:.2}%{}",
        canary_rate * 100.0,
        canary.errors,
        canary.clients,
        policy.max_error_rate * 100.0,
        stable_part
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::counts::Counts;

    fn recent(stable: (u64, u64), canary: (u64, u64)) -> ChannelCounts {
        ChannelCounts {
            stable: Counts {
                clients: stable.0,
                errors: stable.1,
            },
            canary: Counts {
                clients: canary.0,
                errors: canary.1,
            },
        }
    }

    #[test]
    fn verdicts() {
        let policy = HealthPolicy {
            window_secs: 60,
            min_requests: 100,
            max_error_rate: 0.05,
            max_relative: 2.0,
            auto_rollback: true,
        };
        for (stable, canary, expected, why) in [
            (
                (1000, 5),
                (200, 40),
                "unhealthy",
                "a burst of canary errors",
            ),
            ((1000, 0), (20, 10), "too_few_samples", "20 canary loads"),
            ((1000, 300), (300, 90), "healthy", "equal 30% rates"),
            ((1000, 10), (300, 3), "healthy", "1% is under 5%"),
            (
                (0, 0),
                (500, 50),
                "unhealthy",
                "no stable traffic: the threshold decides",
            ),
        ] {
            let v = evaluate(&recent(stable, canary), &policy);
            assert_eq!(v.state(), expected, "{why}: {v:?}");
        }
        let Verdict::Unhealthy(reason) = evaluate(&recent((1000, 5), (200, 40)), &policy) else {
            unreachable!()
        };
        assert!(reason.contains("20.00%"), "{reason}");
        let Verdict::Unhealthy(reason) = evaluate(&recent((0, 0), (500, 50)), &policy) else {
            unreachable!()
        };
        assert!(reason.contains("too little traffic"), "{reason}");
    }
}
