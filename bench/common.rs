// Shared by the simulation benches (bench/balance.rs, bench/cache_sim.rs, bench/verdict_sim.rs):
// a seeded PRNG and
// the client mix. No dependency beyond std, so the numbers are reproducible from the seed.

/// splitmix64: small, fast, good enough for simulation (not for secrets).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// Index into `weights` drawn proportionally.
    pub fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
    /// Discrete Pareto (heavy tail): P(X >= k) ~ k^-alpha, k >= 1, capped.
    pub fn pareto(&mut self, alpha: f64, cap: u64) -> u64 {
        let u = 1.0 - self.f64(); // (0, 1]
        (u.powf(-1.0 / alpha).floor() as u64).clamp(1, cap)
    }
}

/// Browser JA4 strings from FoxIO's public JA4+ mapping (FoxIO-LLC/ja4, file
/// `ja4plus-mapping.csv`, commit 7143090148c0a8966e38cb4e2e08ea8ecebc5458): every row whose
/// Application is "Chromium Browser", "Mozilla Firefox" or "Safari". The second number is
/// the assumed share of that browser's traffic (ours, not FoxIO's: the mapping has no
/// traffic data). `t13i`/`q13i` are the no-SNI variants (rare for a script on a domain).
pub const CHROMIUM: &[(&str, f64)] = &[
    ("t13d1516h2_8daaf6152771_02713d6af862", 45.0),
    ("t13d1517h2_8daaf6152771_b0da82dd1658", 20.0),
    ("q13d0312h3_55b375c5d22e_06cda9e17597", 15.0),
    ("t13d1517h2_8daaf6152771_b1ff8ab2d16f", 10.0),
    ("t13i1515h2_8daaf6152771_02713d6af862", 2.5),
    ("q13i0311h3_55b375c5d22e_06cda9e17597", 2.5),
    ("t13i1516h2_8daaf6152771_b0da82dd1658", 2.5),
    ("t13i1516h2_8daaf6152771_b1ff8ab2d16f", 2.5),
];
pub const SAFARI: &[(&str, f64)] = &[
    ("t13d2014h2_a09f3c656075_14788d8d241b", 95.0),
    ("t13i2013h2_a09f3c656075_14788d8d241b", 5.0),
];
pub const FIREFOX: &[(&str, f64)] = &[
    ("t13d1715h2_5b57614c22b0_7121afd63204", 95.0),
    ("t13i1714h2_5b57614c22b0_7121afd63204", 5.0),
];

/// Share of clients per browser family: Chromium-based browsers dominate.
pub const FAMILIES: &[(&[(&str, f64)], f64)] = &[(CHROMIUM, 70.0), (SAFARI, 22.0), (FIREFOX, 8.0)];

pub fn pick_ja4(rng: &mut Rng) -> &'static str {
    let fam = rng.pick(&FAMILIES.iter().map(|f| f.1).collect::<Vec<_>>());
    let strings = FAMILIES[fam].0;
    strings[rng.pick(&strings.iter().map(|s| s.1).collect::<Vec<_>>())].0
}

/// How a client reaches the edge.
#[derive(Clone)]
pub enum Net {
    /// Own IPv4 address (home router).
    V4(u32),
    /// IPv4 shared with many others (carrier-grade NAT, office): index into a small pool.
    SharedV4(u32),
    /// IPv6 /64 prefix; `rotates` = privacy addresses change the low 64 bits per request.
    V6 { prefix: u64, rotates: bool },
}

impl Net {
    pub fn draw(rng: &mut Rng, shared_pool: &[u32], shared_weights: &[f64]) -> Net {
        let x = rng.f64();
        if x < 0.45 {
            Net::V6 {
                prefix: 0x2001_0db8_0000_0000 | (rng.next_u64() & 0xFFFF_FFFF),
                rotates: rng.chance(0.3),
            }
        } else if x < 0.45 + 0.40 {
            Net::V4(rng.next_u32())
        } else {
            Net::SharedV4(shared_pool[rng.pick(shared_weights)])
        }
    }

    /// The address text the edge would put in CF-Connecting-IP for one request.
    pub fn address(&self, rng: &mut Rng) -> String {
        match self {
            Net::V4(a) | Net::SharedV4(a) => std::net::Ipv4Addr::from(*a).to_string(),
            Net::V6 { prefix, rotates } => {
                let low = if *rotates {
                    rng.next_u64()
                } else {
                    prefix.rotate_left(17) ^ 0x5eed
                };
                std::net::Ipv6Addr::from((u128::from(*prefix) << 64) | u128::from(low)).to_string()
            }
        }
    }
}

/// A pool of shared (carrier-grade NAT, office) IPv4 addresses for `clients` clients, about
/// 300 clients per address on average, with Zipf(0.5) popularity: the busiest addresses
/// carry thousands of clients each.
pub fn shared_pool(rng: &mut Rng, clients: usize) -> (Vec<u32>, Vec<f64>) {
    let n = (clients * 15 / 100 / 300).max(20);
    let pool = (0..n).map(|_| rng.next_u32()).collect();
    let weights = (1..=n).map(|k| 1.0 / (k as f64).sqrt()).collect();
    (pool, weights)
}

/// Command-line flags of the simulation benches: `--quick`, `--out <file>`; everything else
/// (cargo passes `--bench`) is ignored.
pub struct Args {
    pub quick: bool,
    pub out: Option<String>,
}

pub fn args() -> Args {
    let mut quick = false;
    let mut out = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = it.next(),
            _ => {}
        }
    }
    Args { quick, out }
}
