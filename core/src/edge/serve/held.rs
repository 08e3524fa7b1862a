//! Floating requests' tallies between their plan and their response.
//!
//! Between [`Edge::plan`](super::Edge::plan) and [`Edge::served`](super::Edge::served) the
//! entry module awaits the edge cache and R2; what the load will count (bundle, versions,
//! weight, channel, client, network) waits here, and the entry holds only its number. One
//! number each way across the JS↔wasm boundary, instead of a text token written, carried
//! and parsed on every request (measured: the token's round trip was about as costly as
//! the routing call itself).
//!
//! Handles are issued in order. A tally leaves by [`Held::take`] (the entry gives every
//! handle back, whatever was served); one never given back (a request that threw) expires
//! after [`HELD_FOR_MS`]. At most [`MAX_HELD`] wait: past that the oldest is given up (its
//! load goes uncounted) rather than let an isolate's memory grow without bound.
//!
//! Each table starts its handles where it is told ([`Held::starting_at`]; the router draws
//! a random start): after a wasm trap the entry starts a fresh router, and a request still
//! in flight from before gives back a handle of the old one. From a fresh table counting
//! from 0 that handle would name another request's tally (one load counted with the other's
//! outcome, the other's never); from a random start in 2^52 it names nothing.

use std::collections::VecDeque;

/// How long a tally waits for its response: far longer than any cache or R2 read.
pub const HELD_FOR_MS: f64 = 60_000.0;

/// The most tallies that wait at once (an isolate serves far fewer requests at a time).
pub const MAX_HELD: usize = 8_192;

/// Handles start below this (2^52), so that they stay exact as JavaScript numbers (2^53)
/// for as many requests again as the start leaves.
pub const FIRST_HANDLE_BELOW: u64 = 1 << 52;

/// Values by handle, oldest first.
#[derive(Debug)]
pub struct Held<T> {
    /// The handle of `slots[0]`.
    first: u64,
    /// Each value with when it was held; `None` once taken.
    slots: VecDeque<Option<(T, f64)>>,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Self::starting_at(0)
    }
}

impl<T> Held<T> {
    /// A table whose first handle is `start` (reduced below [`FIRST_HANDLE_BELOW`]).
    pub fn starting_at(start: u64) -> Self {
        Self {
            first: start % FIRST_HANDLE_BELOW,
            slots: VecDeque::new(),
        }
    }

    /// Holds `value`; its handle.
    pub fn hold(&mut self, value: T, now_ms: f64) -> u64 {
        self.expire(now_ms);
        if self.slots.len() >= MAX_HELD {
            self.pop_front();
        }
        self.slots.push_back(Some((value, now_ms)));
        self.first + (self.slots.len() as u64 - 1)
    }

    /// The value held as `handle`, once: `None` for a handle given back already, expired,
    /// given up or never issued.
    pub fn take(&mut self, handle: u64) -> Option<T> {
        let at = usize::try_from(handle.checked_sub(self.first)?).ok()?;
        let value = self.slots.get_mut(at)?.take().map(|(value, _)| value);
        while matches!(self.slots.front(), Some(None)) {
            self.pop_front();
        }
        value
    }

    /// How many wait.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops what has waited longer than [`HELD_FOR_MS`] from the front (handles are
    /// issued in time order, so the expired ones are there).
    fn expire(&mut self, now_ms: f64) {
        while let Some(front) = self.slots.front() {
            match front {
                Some((_, at)) if now_ms - at <= HELD_FOR_MS => break,
                _ => self.pop_front(),
            }
        }
    }

    fn pop_front(&mut self) {
        if self.slots.pop_front().is_some() {
            self.first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_gives_its_value_back_once() {
        let mut held = Held::default();
        let a = held.hold("a", 0.0);
        let b = held.hold("b", 1.0);
        assert_ne!(a, b);
        // Taken in any order: a response that comes back first does not wait for another.
        assert_eq!(held.take(b), Some("b"));
        assert_eq!(held.take(b), None, "once");
        assert_eq!(held.take(a), Some("a"));
        assert!(held.is_empty());
        // Handles keep counting after the front is dropped: no old handle is reissued.
        let c = held.hold("c", 2.0);
        assert!(c > b);
        assert_eq!(held.take(a), None);
        assert_eq!(held.take(c), Some("c"));
    }

    #[test]
    fn handles_never_issued_take_nothing() {
        let mut held = Held::default();
        let a = held.hold(1, 0.0);
        for bad in [a + 1, a + 1_000, u64::MAX] {
            assert_eq!(held.take(bad), None, "{bad}");
        }
        assert_eq!(held.take(a), Some(1));
    }

    #[test]
    fn a_value_never_given_back_expires_without_holding_up_the_rest() {
        let mut held = Held::default();
        let lost = held.hold("threw", 0.0);
        let later = held.hold("slow", 30_000.0);
        // Still within its time: the one that threw holds the front, the rest still count.
        let next = held.hold("next", HELD_FOR_MS);
        assert_eq!(held.len(), 3);
        // Past it, the next hold drops it; the others wait on.
        let last = held.hold("last", HELD_FOR_MS + 1.0);
        assert_eq!(held.take(lost), None);
        assert_eq!(held.len(), 3);
        for (handle, value) in [(later, "slow"), (next, "next"), (last, "last")] {
            assert_eq!(held.take(handle), Some(value));
        }
    }

    #[test]
    fn a_handle_of_another_table_names_nothing_in_this_one() {
        // The router before a trap, and the fresh one after it.
        let mut before = Held::starting_at(1_000);
        let in_flight = before.hold("before", 0.0);
        let mut after = Held::starting_at(5_000_000);
        let fresh = after.hold("after", 1.0);
        assert_eq!(in_flight, 1_000);
        assert_eq!(after.take(in_flight), None, "not the fresh table's");
        assert_eq!(after.take(fresh), Some("after"));
        // Any start gives handles exact as JavaScript numbers.
        let mut high = Held::starting_at(u64::MAX);
        let h = high.hold((), 0.0);
        assert!(h < FIRST_HANDLE_BELOW && (h as f64) as u64 == h);
        assert_eq!(high.take(h), Some(()));
    }

    #[test]
    fn at_most_max_held_wait() {
        let mut held = Held::default();
        let first = held.hold(0usize, 0.0);
        let handles: Vec<u64> = (1..=MAX_HELD).map(|i| held.hold(i, 0.0)).collect();
        assert_eq!(held.len(), MAX_HELD);
        assert_eq!(held.take(first), None, "the oldest was given up");
        assert_eq!(held.take(handles[0]), Some(1));
        assert_eq!(held.take(*handles.last().unwrap()), Some(MAX_HELD));
    }
}
