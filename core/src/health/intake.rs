//! What a bundle's object has taken in from its aggregators, and its busiest second: what
//! the aggregators bound (`coalesce`), shown to the operator and checked by the load test.

use serde::{Deserialize, Serialize};

use super::coalesce::IngestMessage;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Intake {
    /// Forwards received (Durable Object calls).
    pub messages: u64,
    /// Merged batches in them.
    pub batches: u64,
    /// Isolate batches merged into those.
    pub isolate_batches: u64,
    /// The most forwards received within one clock second.
    pub peak_messages_per_second: u32,
    /// The clock second being counted, and its forwards so far.
    #[serde(skip)]
    second: u64,
    #[serde(skip)]
    in_second: u32,
}

impl Intake {
    pub fn record(&mut self, message: &IngestMessage, now_ms: f64) {
        self.messages += 1;
        self.batches += message.batches.len() as u64;
        self.isolate_batches += u64::from(message.merged);
        let second = (now_ms.max(0.0) / 1_000.0) as u64;
        if second != self.second {
            self.second = second;
            self.in_second = 0;
        }
        self.in_second += 1;
        self.peak_messages_per_second = self.peak_messages_per_second.max(self.in_second);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_forwards_and_the_busiest_second() {
        let message = |batches: usize, merged| IngestMessage {
            batches: vec![
                crate::health::counts::Batch {
                    stable: crate::config::Version::parse("1.0.0").unwrap(),
                    canary: None,
                    weight: None,
                    clients: Default::default(),
                    events: vec![],
                    reports: vec![],
                };
                batches
            ],
            merged,
        };
        let mut intake = Intake::default();
        // (time, batches, isolate batches) -> peak after it
        let table = [
            (1_000.0, 1, 30, 1),
            (1_500.0, 2, 10, 2),
            (1_999.0, 1, 1, 3),
            (2_000.0, 1, 1, 3),
            (5_000.0, 1, 1, 3),
        ];
        for (at, batches, merged, peak) in table {
            intake.record(&message(batches, merged), at);
            assert_eq!(intake.peak_messages_per_second, peak, "at {at}");
        }
        assert_eq!(
            (intake.messages, intake.batches, intake.isolate_batches),
            (5, 6, 43)
        );
    }
}
