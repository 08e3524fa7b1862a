//! Cache efficiency: the edge hit rate over a simulated request log, for three ways of
//! keying the edge cache.
//!
//! `cargo bench --bench cache_sim -- [--quick] [--out results.csv]`
//!
//! The log: clients spread over data centres of very different sizes (each data centre has
//! its own Cache API copy), heavy-tailed page views per client spread over six hours, each
//! page view loading the floating SDK URL and one to three chunks of the version it got.
//! A canary goes 0% -> 5% -> 25% -> 50% -> 100% and is then promoted. An entry not read
//! for `IDLE_EVICT_S` is evicted (the edge drops cold objects).
//!
//! Keyings compared:
//! - **canary-edge**: the pinned URL `/<bundle>@<version>/<path>` (`AssetRoute::pinned_path`
//!   of the version `Router::decide` picked), shared by every cohort and by the floating and
//!   pinned URLs; nothing is purged when the weight changes;
//! - **by cohort** (the reference design): the versionless URL plus the cohort; every weight
//!   change must purge the bundle, or cohorts that moved keep getting the old copy;
//! - **no canary**: the same traffic with a plain release (everyone moves to the new version
//!   when the canary would reach 100%), keyed by pinned URL.

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

use std::collections::HashMap;

use canary_core::config::{BundleName, Rollout};
use canary_core::edge::decide::{ClientFacts, PreparedRollout, Router};
use canary_core::edge::route::{self, AssetRoute, Route};
use canary_core::settings::Settings;
use common::Rng;

const HOURS: f64 = 6.0;
const IDLE_EVICT_S: f64 = 30.0 * 60.0;
const DATA_CENTRES: usize = 60;
const FILES: &[&str] = &[
    "sdk.js",
    "chunks/card.js",
    "chunks/wallet.js",
    "chunks/3ds.js",
    "chunks/i18n.js",
    "chunks/fraud.js",
];
/// Which chunks a page view loads (Zipf-like: card forms everywhere, 3-D Secure rarely).
const CHUNK_WEIGHTS: &[f64] = &[0.0, 10.0, 5.0, 2.0, 3.0, 1.0];

/// (start second, rollout JSON): the weight schedule of the run.
fn schedule() -> Vec<(f64, &'static str)> {
    vec![
        (0.0, r#"{"stable":"1.4.2","canary":"1.5.0","weight":0}"#),
        (3600.0, r#"{"stable":"1.4.2","canary":"1.5.0","weight":5}"#),
        (7200.0, r#"{"stable":"1.4.2","canary":"1.5.0","weight":25}"#),
        (
            10800.0,
            r#"{"stable":"1.4.2","canary":"1.5.0","weight":50}"#,
        ),
        (
            14400.0,
            r#"{"stable":"1.4.2","canary":"1.5.0","weight":100}"#,
        ),
        (18000.0, r#"{"stable":"1.5.0","weight":0}"#),
    ]
}
/// When the no-canary run ships 1.5.0 to everyone (when the canary reaches 100%).
const PLAIN_RELEASE_AT: f64 = 14400.0;

/// One data centre's Cache API copy: key id -> last read (seconds).
#[derive(Default)]
struct Edge {
    entries: HashMap<u32, f64>,
}

impl Edge {
    /// True on a hit; a miss stores the object (the worker puts what it read from R2).
    fn get(&mut self, key: u32, now: f64) -> bool {
        match self.entries.get_mut(&key) {
            Some(last) if now - *last <= IDLE_EVICT_S => {
                *last = now;
                true
            }
            _ => {
                self.entries.insert(key, now);
                false
            }
        }
    }
}

/// Interns cache keys as small integers.
#[derive(Default)]
struct Keys(HashMap<String, u32>);

impl Keys {
    fn id(&mut self, key: String) -> u32 {
        let n = self.0.len() as u32;
        *self.0.entry(key).or_insert(n)
    }
}

struct Design {
    name: String,
    edges: Vec<Edge>,
    keys: Keys,
    hits: u64,
    requests: u64,
    purges: u64,
}

impl Design {
    fn new(name: &str) -> Self {
        Design {
            name: name.into(),
            edges: (0..DATA_CENTRES).map(|_| Edge::default()).collect(),
            keys: Keys::default(),
            hits: 0,
            requests: 0,
            purges: 0,
        }
    }
    fn request(&mut self, dc: usize, key: String, now: f64) {
        let id = self.keys.id(key);
        self.requests += 1;
        self.hits += u64::from(self.edges[dc].get(id, now));
    }
    fn purge(&mut self) {
        self.purges += 1;
        for e in &mut self.edges {
            e.entries.clear();
        }
    }
    fn hit_rate(&self) -> f64 {
        self.hits as f64 * 100.0 / self.requests as f64
    }
}

fn simulate(cohorts: u16, clients: usize, seed: u64) -> Vec<Design> {
    let router = Router::new(&Settings {
        cohorts,
        salt: "cache-sim".into(),
        ..Settings::default()
    });
    let bundle = BundleName::parse("payments").unwrap();
    let phases: Vec<(f64, PreparedRollout)> = schedule()
        .into_iter()
        .map(|(t, json)| {
            (
                t,
                router.prepare(bundle.clone(), Rollout::parse(json).unwrap()),
            )
        })
        .collect();
    let assets: Vec<AssetRoute> = FILES
        .iter()
        .map(|f| match route::parse(&format!("/payments/{f}")) {
            Ok(Route::Asset(a)) => a,
            other => panic!("{other:?}"),
        })
        .collect();

    let mut rng = Rng::new(seed);
    let dc_weights: Vec<f64> = (1..=DATA_CENTRES).map(|k| 1.0 / k as f64).collect();
    // Page views: (time, client, data centre); a client's user key keeps its cohort.
    let mut views: Vec<(f64, u32, u8)> = Vec::new();
    let user_keys: Vec<String> = (0..clients).map(|i| format!("client-{i}")).collect();
    for client in 0..clients {
        let dc = rng.pick(&dc_weights) as u8;
        for _ in 0..rng.pareto(1.3, 2_000) {
            views.push((rng.f64() * HOURS * 3600.0, client as u32, dc));
        }
    }
    views.sort_by(|a, b| a.0.total_cmp(&b.0));

    let mut edge = Design::new("canary-edge (pinned URL)");
    let mut by_cohort = Design::new(&format!("by cohort (COHORTS={cohorts})"));
    let mut plain = Design::new("no canary (plain release)");
    let mut phase = 0;
    for &(now, client, dc) in &views {
        let dc = dc as usize;
        while phase + 1 < phases.len() && now >= phases[phase + 1].0 {
            phase += 1;
            by_cohort.purge();
        }
        let prepared = &phases[phase].1;
        let facts = ClientFacts {
            user_key: Some(&user_keys[client as usize]),
            ..Default::default()
        };
        // Every client has a key, so randomness only mints its id (not simulated here).
        let d = router.decide(prepared, &facts, now as u64, || 0);
        let plain_version = if now >= PLAIN_RELEASE_AT {
            "1.5.0"
        } else {
            "1.4.2"
        };
        let plain_version = canary_core::config::Version::parse(plain_version).unwrap();
        // The SDK, then one to three chunks of the same version.
        let mut files = vec![0usize];
        for _ in 0..1 + rng.below(3) {
            files.push(rng.pick(CHUNK_WEIGHTS));
        }
        for f in files {
            let asset = &assets[f];
            edge.request(dc, asset.pinned_path(d.version), now);
            by_cohort.request(dc, format!("/payments/{}#{}", asset.path, d.cohort), now);
            plain.request(dc, asset.pinned_path(&plain_version), now);
        }
    }
    vec![edge, by_cohort, plain]
}

fn main() {
    let args = common::args();
    // A busy bundle and a quiet one: the quiet one shows what cold, small data centres cost.
    let sizes: &[usize] = if args.quick {
        &[5_000]
    } else {
        &[300_000, 10_000]
    };
    let mut csv = String::from("clients,cohorts,design,requests,hits,hit_rate_pct,purges\n");
    println!(
        "cache: {sizes:?} clients, {DATA_CENTRES} data centres (Zipf sizes), {HOURS} h, idle eviction {} min",
        IDLE_EVICT_S / 60.0
    );
    for (clients, cohorts) in sizes.iter().flat_map(|&n| [(n, 10u16), (n, 100)]) {
        let designs = simulate(cohorts, clients, 0xCAC4E);
        let plain = designs[2].hit_rate();
        for d in &designs {
            println!(
                "  clients {clients:>7} COHORTS={cohorts:3}  {:28} requests {:>9}  hit rate {:8.4}%  vs no canary {:+.4} pp  purges {}",
                d.name,
                d.requests,
                d.hit_rate(),
                d.hit_rate() - plain,
                d.purges
            );
            csv.push_str(&format!(
                "{clients},{cohorts},{},{},{},{:.5},{}\n",
                d.name,
                d.requests,
                d.hits,
                d.hit_rate(),
                d.purges
            ));
        }
    }
    if let Some(out) = args.out {
        std::fs::write(&out, csv).expect("write the results file");
    }
}
