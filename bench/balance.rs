//! Balance: the share of requests served canary against the weight, on a realistic client
//! mix, through the public API (`Router::decide`, `Bucketer::is_canary`).
//!
//! `cargo bench --bench balance -- [--quick] [--out results.csv]`
//!
//! Every request of every client goes through `Router::decide` exactly as in the worker
//! (cookie first, then user key, then JA4 + network, then random), and the client keeps the
//! cookie it is given if it accepts cookies. A client's cohort does not depend on the
//! weight, so one pass gives the requests per cohort, and the canary share at each weight
//! is the sum over the canary cohorts of that weight (`Bucketer::is_canary` with the
//! rollout's rotation). The pass also routes at weight 30 and checks the channel counts
//! against that sum.
//!
//! Two derivations are compared: canary-edge's (fingerprint hashed with the client's
//! network) and the naive one (fingerprint alone: the same router, without the address).

#[path = "common.rs"]
mod common;

use canary_core::config::{BundleName, Rollout, Weight};
use canary_core::edge::decide::{Channel, ClientFacts, Router};
use canary_core::settings::Settings;
use common::{pick_ja4, shared_pool, Net, Rng};

/// The client mix; shares are of clients.
const USER_KEY_SHARE: f64 = 0.20; // merchant passes a logged-in customer id
const JA4_SHARE: f64 = 0.70; // requests carry a JA4 (zone with Bot Management)
const COOKIE_KEEP_SHARE: f64 = 0.85; // browser keeps the partitioned cookie
const RETURNING_SHARE: f64 = 0.25; // arrives with a cookie from an earlier visit
const PARETO_ALPHA: f64 = 1.3; // requests per client: heavy tail
const MAX_REQUESTS: u64 = 5_000;

struct Client {
    user_key: Option<String>,
    ja4: Option<&'static str>,
    net: Net,
    keeps_cookie: bool,
    cookie: Option<String>,
    requests: u64,
}

struct Pass {
    per_cohort: Vec<u64>,
    ideal_per_cohort: Vec<u64>,
    total: u64,
    canary_at_30: u64,
    sources: [u64; 4],
    /// Clients that saw more than one cohort (no cookie kept and no stable identity).
    unstuck_clients: u64,
}

fn run(cohorts: u16, with_network: bool, clients: usize, seed: u64) -> (Pass, u16) {
    let router = Router::new(&Settings {
        cohorts,
        salt: "balance-bench".into(),
        ..Settings::default()
    });
    let rollout = Rollout::parse(r#"{"stable":"1.4.2","canary":"1.5.0","weight":30}"#).unwrap();
    let prepared = router.prepare(BundleName::parse("payments").unwrap(), rollout);
    let mut rng = Rng::new(seed);
    let (pool, pool_weights) = shared_pool(&mut rng, clients);
    // The best a sticky derivation can do: every client in a uniformly random cohort of its
    // own (a separate stream, so the mix is the same). What is left is the noise of the
    // heavy-tailed request counts.
    let mut ideal_rng = Rng::new(seed ^ 0x1DEA1);
    let mut pass = Pass {
        per_cohort: vec![0; cohorts as usize],
        ideal_per_cohort: vec![0; cohorts as usize],
        total: 0,
        canary_at_30: 0,
        sources: [0; 4],
        unstuck_clients: 0,
    };
    for i in 0..clients {
        // The same clients for both derivations: the mix depends only on the seed and i.
        let mut c = Client {
            user_key: rng
                .chance(USER_KEY_SHARE)
                .then(|| format!("cust-{seed:x}-{i}")),
            ja4: rng.chance(JA4_SHARE).then(|| pick_ja4(&mut rng)),
            net: Net::draw(&mut rng, &pool, &pool_weights),
            keeps_cookie: rng.chance(COOKIE_KEEP_SHARE),
            cookie: None,
            requests: rng.pareto(PARETO_ALPHA, MAX_REQUESTS),
        };
        if rng.chance(RETURNING_SHARE) {
            let earlier = rng.below(u64::from(cohorts)) as u16;
            c.cookie = Some(format!("cohort={}", router.cookie().value(earlier, 1, 0)));
        }
        pass.ideal_per_cohort[ideal_rng.below(u64::from(cohorts)) as usize] += c.requests;
        let mut first = None;
        let mut moved = false;
        for _ in 0..c.requests {
            let ip = c.net.address(&mut rng);
            let facts = ClientFacts {
                cookie_header: c.cookie.as_deref(),
                user_key: c.user_key.as_deref(),
                ja4: c.ja4,
                ja3_hash: None,
                client_ip: with_network.then_some(ip.as_str()),
            };
            let random = rng.next_u64();
            let d = router.decide(&prepared, &facts, 0, || random);
            pass.per_cohort[d.cohort as usize] += 1;
            pass.total += 1;
            pass.sources[d.source as usize] += 1;
            if d.channel == Channel::Canary {
                pass.canary_at_30 += 1;
            }
            moved |= first.is_some_and(|f| f != d.cohort);
            first.get_or_insert(d.cohort);
            if let (true, Some(set)) = (c.keeps_cookie, d.set_cookie) {
                c.cookie = Some(set.split(';').next().unwrap_or_default().to_owned());
            }
        }
        pass.unstuck_clients += u64::from(moved);
    }
    (pass, prepared.rotation)
}

fn main() {
    let args = common::args();
    let clients = if args.quick { 20_000 } else { 3_000_000 };
    let mut csv = String::from("cohorts,derivation,weight,share_pct,deviation_pp\n");
    println!("balance: {clients} clients, requests per client Pareto(alpha {PARETO_ALPHA}, cap {MAX_REQUESTS})");
    for (cohorts, weights) in [
        (100u16, (1..=99).collect::<Vec<u64>>()),
        (10, (1..=9).map(|w| w * 10).collect()),
    ] {
        let router = Router::new(&Settings {
            cohorts,
            ..Settings::default()
        });
        let b = router.bucketer();
        let started = std::time::Instant::now();
        let (net, rotation) = run(cohorts, true, clients, 0xC0FFEE);
        let (alone, _) = run(cohorts, false, clients, 0xC0FFEE);
        let ideal = net.ideal_per_cohort.clone();
        println!(
            "COHORTS={cohorts}: {} requests; cohort sources cookie/user key/fingerprint/random {:?}; clients that changed cohort: {} (no cookie kept and no stable identity); {:.1} s",
            net.total, net.sources, net.unstuck_clients, started.elapsed().as_secs_f64()
        );
        let canary_share = |per_cohort: &[u64], w: u64| {
            let weight = Weight::new(w).unwrap();
            let canary: u64 = (0..cohorts)
                .filter(|&c| b.is_canary(c, weight, rotation))
                .map(|c| per_cohort[c as usize])
                .sum();
            (canary, canary as f64 * 100.0 / net.total as f64)
        };
        // The per-cohort sums must agree with what `decide` routed at weight 30.
        assert_eq!(canary_share(&net.per_cohort, 30).0, net.canary_at_30);
        assert_eq!(canary_share(&alone.per_cohort, 30).0, alone.canary_at_30);
        for (name, per_cohort) in [
            ("canary-edge (fingerprint+network)", &net.per_cohort),
            ("fingerprint alone", &alone.per_cohort),
            ("ideal (uniform per client)", &ideal),
        ] {
            let mut max_dev: f64 = 0.0;
            let mut at = 0;
            for &w in &weights {
                let (_, share) = canary_share(per_cohort, w);
                let dev = share - Weight::new(w).unwrap().effective_percent(cohorts);
                if dev.abs() > max_dev.abs() {
                    (max_dev, at) = (dev, w);
                }
                csv.push_str(&format!("{cohorts},{name},{w},{share:.4},{dev:.4}\n"));
            }
            let per: Vec<f64> = per_cohort
                .iter()
                .map(|&n| n as f64 * 100.0 / net.total as f64)
                .collect();
            let (lo, hi) = per
                .iter()
                .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
            println!(
                "  {name:34} max |share - weight| {:5.2} pp (at {at:2}%); one cohort's share of requests: min {lo:.2}%, max {hi:.2}%",
                max_dev.abs()
            );
        }
    }
    if let Some(out) = args.out {
        std::fs::write(&out, csv).expect("write the results file");
    }
}
