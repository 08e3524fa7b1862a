//! Distinct clients, bounded at any traffic: a set of client ids kept exactly up to
//! `EXACT_CAP`, then a HyperLogLog sketch of 2^`HLL_P` one-byte registers.
//!
//! Why: the health rule must count clients, not requests (one browser in a retry loop is
//! one client), and the counts travel from thousands of isolates to one Durable Object.
//! Both sets and sketches merge by union, so batches and windows combine in any order.
//!
//! Error bound: exact below 64 clients; above, HyperLogLog with 1024 registers has a
//! relative standard error of 1.04/sqrt(1024) ≈ 3.3% (within ±6.5% in 95% of estimates),
//! with the usual small-range (linear counting) correction. Size: at most 1 KiB per set,
//! 1 + 8·n bytes while exact.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Ids kept exactly before switching to the sketch (512 bytes: half the sketch's size).
pub const EXACT_CAP: usize = 64;
/// Sketch precision: 2^10 registers.
pub const HLL_P: u32 = 10;
const REGISTERS: usize = 1 << HLL_P;

const TAG_EXACT: u8 = 1;
const TAG_SKETCH: u8 = 2;

#[derive(Clone, PartialEq, Eq)]
pub enum ClientSet {
    /// Sorted, without duplicates.
    Exact(Vec<u64>),
    Sketch(Box<[u8; REGISTERS]>),
}

impl Default for ClientSet {
    fn default() -> Self {
        ClientSet::Exact(Vec::new())
    }
}

impl std::fmt::Debug for ClientSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSet::Exact(ids) => write!(f, "Exact({} ids)", ids.len()),
            ClientSet::Sketch(_) => write!(f, "Sketch(~{})", self.estimate()),
        }
    }
}

/// splitmix64's finalizer: spreads any id over 64 bits before it picks a register.
pub(crate) fn mix(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn sketch_insert(registers: &mut [u8; REGISTERS], id: u64) {
    let h = mix(id);
    let index = (h >> (64 - HLL_P)) as usize;
    // Rank of the first set bit of the remaining 54 bits (1-based), capped at 55.
    let rest = h << HLL_P;
    let rank = (rest.leading_zeros() + 1).min(64 - HLL_P + 1) as u8;
    if registers[index] < rank {
        registers[index] = rank;
    }
}

impl ClientSet {
    pub fn is_empty(&self) -> bool {
        matches!(self, ClientSet::Exact(ids) if ids.is_empty())
    }

    pub fn insert(&mut self, id: u64) {
        match self {
            ClientSet::Exact(ids) => {
                if let Err(at) = ids.binary_search(&id) {
                    ids.insert(at, id);
                    if ids.len() > EXACT_CAP {
                        self.promote();
                    }
                }
            }
            ClientSet::Sketch(registers) => sketch_insert(registers, id),
        }
    }

    fn promote(&mut self) {
        if let ClientSet::Exact(ids) = self {
            let mut registers = Box::new([0u8; REGISTERS]);
            for &id in ids.iter() {
                sketch_insert(&mut registers, id);
            }
            *self = ClientSet::Sketch(registers);
        }
    }

    /// Union with `other`.
    pub fn merge(&mut self, other: &ClientSet) {
        match other {
            ClientSet::Exact(ids) => {
                for &id in ids {
                    self.insert(id);
                }
            }
            ClientSet::Sketch(theirs) => {
                self.promote();
                if let ClientSet::Sketch(mine) = self {
                    for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                        *m = (*m).max(*t);
                    }
                }
            }
        }
    }

    /// The number of distinct ids: exact, or the HyperLogLog estimate.
    pub fn estimate(&self) -> u64 {
        match self {
            ClientSet::Exact(ids) => ids.len() as u64,
            ClientSet::Sketch(registers) => {
                let m = REGISTERS as f64;
                let alpha = 0.7213 / (1.0 + 1.079 / m);
                let sum: f64 = registers.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
                let raw = alpha * m * m / sum;
                let zeros = registers.iter().filter(|&&r| r == 0).count();
                let estimate = if raw <= 2.5 * m && zeros > 0 {
                    m * (m / zeros as f64).ln()
                } else {
                    raw
                };
                estimate.round() as u64
            }
        }
    }

    /// Whether `id` is in the set (exact sets only; a sketch cannot say).
    pub fn contains_exact(&self, id: u64) -> bool {
        matches!(self, ClientSet::Exact(ids) if ids.binary_search(&id).is_ok())
    }

    /// Compact bytes: a tag, then 8 bytes per id or the registers.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            ClientSet::Exact(ids) => {
                let mut out = Vec::with_capacity(1 + 8 * ids.len());
                out.push(TAG_EXACT);
                for id in ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
                out
            }
            ClientSet::Sketch(registers) => {
                let mut out = Vec::with_capacity(1 + REGISTERS);
                out.push(TAG_SKETCH);
                out.extend_from_slice(&registers[..]);
                out
            }
        }
    }

    /// The inverse of `to_bytes`; `None` for anything it did not write.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&tag, rest) = bytes.split_first()?;
        match tag {
            TAG_EXACT if rest.len() % 8 == 0 && rest.len() / 8 <= EXACT_CAP => {
                let mut set = ClientSet::default();
                for chunk in rest.chunks_exact(8) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(chunk);
                    set.insert(u64::from_be_bytes(b));
                }
                Some(set)
            }
            TAG_SKETCH if rest.len() == REGISTERS => {
                let max_rank = (64 - HLL_P + 1) as u8;
                if rest.iter().any(|&r| r > max_rank) {
                    return None;
                }
                let mut registers = Box::new([0u8; REGISTERS]);
                registers.copy_from_slice(rest);
                Some(ClientSet::Sketch(registers))
            }
            _ => None,
        }
    }
}

/// In JSON (edge → Durable Object batches) a set is the hex of its bytes: exact and
/// independent of JavaScript's 53-bit numbers.
impl Serialize for ClientSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for ClientSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        ClientSet::from_bytes(&bytes).ok_or_else(|| serde::de::Error::custom("not a client set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded stream of ids (splitmix64), as the edge's random ids would be.
    fn ids(seed: u64, n: usize) -> impl Iterator<Item = u64> {
        (0..n as u64).map(move |i| mix(seed.wrapping_mul(0x1000_0001).wrapping_add(i)))
    }

    #[test]
    fn exact_below_the_cap_and_duplicates_count_once() {
        let mut set = ClientSet::default();
        for id in ids(1, EXACT_CAP).chain(ids(1, EXACT_CAP)) {
            set.insert(id);
        }
        assert_eq!(set.estimate(), EXACT_CAP as u64);
        assert!(matches!(set, ClientSet::Exact(_)));
        assert!(set.contains_exact(ids(1, 1).next().unwrap()));
        set.insert(u64::MAX);
        assert!(
            matches!(set, ClientSet::Sketch(_)),
            "past the cap: a sketch"
        );
        let e = set.estimate();
        assert!((60..=70).contains(&e), "{e}");
    }

    #[test]
    fn the_sketch_is_within_three_standard_errors() {
        let se = 1.04 / (REGISTERS as f64).sqrt();
        for (seed, n) in [(1, 1_000), (2, 10_000), (3, 100_000), (4, 1_000_000)] {
            let mut set = ClientSet::default();
            for id in ids(seed, n) {
                set.insert(id);
            }
            let e = set.estimate() as f64;
            let err = (e - n as f64).abs() / n as f64;
            assert!(err < 3.0 * se, "n={n}: estimate {e}, error {err:.4}");
        }
    }

    #[test]
    fn merge_is_union() {
        for (a_n, b_n, overlap) in [(10, 20, 5), (40, 40, 40), (500, 300, 100), (5_000, 20, 0)] {
            let mut a = ClientSet::default();
            let mut b = ClientSet::default();
            let mut union = ClientSet::default();
            for id in ids(7, a_n) {
                a.insert(id);
                union.insert(id);
            }
            // b shares `overlap` ids with a.
            for id in ids(7, overlap).chain(ids(8, b_n - overlap)) {
                b.insert(id);
                union.insert(id);
            }
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            assert_eq!(ab.estimate(), ba.estimate(), "order does not matter");
            let expected = (a_n + b_n - overlap) as f64;
            let err = (ab.estimate() as f64 - expected).abs() / expected;
            assert!(
                err < 0.1,
                "{a_n}+{b_n}-{overlap}: {} ({err:.3})",
                ab.estimate()
            );
            if a_n + b_n - overlap <= EXACT_CAP {
                assert_eq!(ab, union, "small unions stay exact");
            }
        }
    }

    #[test]
    fn bytes_and_json_round_trip_and_garbage_is_refused() {
        let mut small = ClientSet::default();
        let mut big = ClientSet::default();
        for id in ids(9, 10) {
            small.insert(id);
        }
        for id in ids(9, 10_000) {
            big.insert(id);
        }
        for set in [ClientSet::default(), small, big] {
            assert_eq!(ClientSet::from_bytes(&set.to_bytes()), Some(set.clone()));
            let json = serde_json::to_string(&set).unwrap();
            assert_eq!(serde_json::from_str::<ClientSet>(&json).unwrap(), set);
            assert!(set.to_bytes().len() <= 1 + REGISTERS);
        }
        let mut too_many = vec![TAG_EXACT];
        too_many.extend(std::iter::repeat_n(7u8, 8 * (EXACT_CAP + 1)));
        let mut bad_rank = vec![TAG_SKETCH];
        bad_rank.extend(std::iter::repeat_n(200u8, REGISTERS));
        for garbage in [
            vec![],
            vec![9],
            vec![TAG_EXACT, 1, 2, 3],
            vec![TAG_SKETCH; 10],
            too_many,
            bad_rank,
        ] {
            assert_eq!(ClientSet::from_bytes(&garbage), None, "{garbage:?}");
        }
        assert!(serde_json::from_str::<ClientSet>("\"zz\"").is_err());
    }
}
