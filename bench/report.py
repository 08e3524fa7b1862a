#!/usr/bin/env python3
"""Turns the raw results of bench/run into BENCHMARKS.md and its PNG plots."""

import argparse
import csv
import datetime
import glob
import gzip
import json
import os
import platform
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--results", required=True)
p.add_argument("--out", required=True)
p.add_argument("--command", required=True)
p.add_argument("--build", required=True, help="the built worker (build/)")
p.add_argument("--quick", action="store_true")
p.add_argument("--keep-verdicts", metavar="BENCHMARKS_MD",
               help="no verdict run: copy this report's Verdicts section (and its plot) as they are")
a = p.parse_args()
# The Verdicts section of an earlier report (read before it is overwritten).
kept_verdicts = None
if a.keep_verdicts and os.path.exists(a.keep_verdicts):
    old_md = open(a.keep_verdicts).read()
    start = old_md.find("\n## Verdicts")
    if start >= 0:
        end = old_md.find("\n## ", start + 1)
        kept_verdicts = old_md[start + 1: end if end >= 0 else len(old_md)].rstrip("\n")
R = a.results


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def criterion(dirname):
    """{ "group/bench": mean ns } from a CRITERION_HOME."""
    out = {}
    for f in sorted(glob.glob(os.path.join(R, dirname, "*", "*", "new", "estimates.json"))):
        parts = f.split(os.sep)
        name = f"{parts[-4]}/{parts[-3]}"
        out[name] = json.load(open(f))["mean"]["point_estimate"]
    return out


def git_rev():
    try:
        rev = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.call(["git", "diff", "--quiet", "HEAD", "--", "src", "core", "router", "js", "Cargo.toml"]) != 0
        return rev + (" + uncommitted src changes" if dirty else "")
    except Exception:
        return "unknown"


md = []
w = md.append
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
w("# Benchmarks\n")
if a.quick:
    w("**Quick run (CI smoke test): tiny and noisy, not results.**\n")
w("| | |\n|---|---|")
w(f"| date | {now} |")
w(f"| machine | {os.cpu_count()} CPUs (nproc), {cpu_model()}, {platform.system()} {platform.release()} |")
w(f"| load average at report time | {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine skews req/s) |")
w(f"| command | `{a.command}` |")
w(f"| commit | {git_rev()} |")
w("")
w("How each number is made, and the client mix behind the simulations: [bench/README.md](bench/README.md).\n")

# ---------------------------------------------------------------- targets summary
tp = json.load(open(os.path.join(R, "throughput.json")))
bc_path = os.path.join(R, "batch-cost.json")
bc = json.load(open(bc_path)) if os.path.exists(bc_path) else None
wk = tp["workers"]
ce, js, fl = wk.get("canary-edge", {}), wk.get("JS same logic", {}), wk.get("JS floor", {})
shipped = criterion("criterion-shipped")
o3 = criterion("criterion-o3")


def sizes(*paths):
    """(raw, gzip -9) bytes of files in the build, summed."""
    raw = gz = 0
    for rel in paths:
        data = open(os.path.join(a.build, rel), "rb").read()
        raw += len(data)
        gz += len(gzip.compress(data, 9))
    return raw, gz


# The edge Worker's modules, all an SDK request's isolate loads (entry, log, routing wasm and
# its glue), and the control Worker's (never loaded by an SDK request).
def modules(folder):
    root = os.path.join(a.build, folder)
    return sorted(os.path.relpath(os.path.join(d, f), a.build) for d, _, fs in os.walk(root) for f in fs if f.endswith((".js", ".wasm")))


HOT_FILES = modules("edge")
OPS_FILES = modules("control")
hot_raw, hot_gz = sizes(*HOT_FILES)
wasm_raw, wasm_gz = sizes("edge/router/router_bg.wasm")
ops_raw, ops_gz = sizes(*OPS_FILES)

bal_rows = list(csv.reader(open(os.path.join(R, "balance.csv"))))[1:]
bal = {}
for cohorts, deriv, weight, share, dev in bal_rows:
    bal.setdefault((int(cohorts), deriv), []).append((int(weight), float(share), float(dev)))
cache_rows = list(csv.DictReader(open(os.path.join(R, "cache.csv"))))


def ratio(x, y):
    return x / y if x and y else float("nan")


def max_dev(key):
    return max(abs(d) for _, _, d in bal.get(key, [(0, 0, float("nan"))]))


handler = {s_: json.load(open(os.path.join(R, f"handler-{s_}.json"))) for s_ in ["hot", "first"]
           if os.path.exists(os.path.join(R, f"handler-{s_}.json"))}
hot_req = shipped.get("request/hot_path_cookie")
w("## Targets\n")
w("| target | measured | met |\n|---|---|---|")
if hot_req:
    w(f"| routing decision < 1 µs natively (parse + cookie + decide + cache key) | "
      f"{hot_req:.0f} ns shipped profile" + (f", {o3['request/hot_path_cookie']:.0f} ns at opt-level 3" if o3 else "") +
      f" | {'yes' if hot_req < 1000 else 'no (shipped profile)'} |")
for scen, label in [("hot", "cached asset"), ("miss", "cache miss"), ("first", "first visit")]:
    c, j, f = ce.get(scen, {}), js.get(scen, {}), fl.get(scen, {})
    r_js = ratio(c.get("rps"), j.get("rps"))
    r_fl = ratio(c.get("rps"), f.get("rps"))
    cpu_js = ratio(c.get("cpu_us_per_req"), j.get("cpu_us_per_req"))
    w(f"| {label}: ≥ 1.05x JS same logic (req/s) | {r_js:.2f}x | {'yes' if r_js >= 1.05 else 'no'} |")
    w(f"| {label}: CPU per request ≤ JS same logic | {cpu_js:.3f}x ({c.get('cpu_us_per_req', float('nan')):.0f} vs {j.get('cpu_us_per_req', float('nan')):.0f} µs) | {'yes' if cpu_js <= 1.0 else 'no'} |")
    w(f"| {label}: ≥ 0.9x floor (req/s) | {r_fl:.2f}x | {'yes' if r_fl >= 0.9 else 'no'} |")
    h_ = handler.get(scen, {}).get("workers", {}).get("canary-edge")
    if h_:
        hr = h_["vs_js_median_ratio"]
        hj = handler[scen]["workers"]["JS same logic"]["median_us"]
        w(f"| {label}: the handler's own CPU ≤ JS same logic (in-process loop) | {hr:.3f}x ({h_['median_us']:.0f} vs {hj:.0f} µs, medians) | {'yes' if hr <= 1.0 else 'no'} |")
if bc:
    b = bc["batch"]
    r_ = b["ratio"]["of_medians"]
    st_ = b.get("straight_to_monitor")
    old_ = (f"; straight to the monitor, the path before the aggregators: {st_['ratio']['of_medians']:.2f}x "
            f"({st_['project']['median']:.0f} µs)") if st_ else ""
    w(f"| one health batch (send + ingest, through the aggregators) ≤ {b['target']}x a minimal JS Durable Object batch, CPU | "
      f"{r_:.2f}x ({b['project']['median']:.0f} vs {b['floor']['median']:.0f} µs; per round {b['ratio']['min']:.2f}–{b['ratio']['max']:.2f}x{old_}) | "
      f"{'yes' if r_ <= b['target'] else 'no'} |")
w(f"| the edge Worker's modules < 120 KB gzipped | {hot_gz / 1024:.0f} KB (entry + log + routing wasm + glue) | {'yes' if hot_gz < 120 * 1024 else 'no'} |")
st = tp.get("start", {})
EDGE_ALONE = "canary-edge (edge Worker alone)"
if "coldMs" in st.get(EDGE_ALONE, {}) and "coldMs" in st.get("JS same logic", {}):
    d = st[EDGE_ALONE]["coldMs"] - st["JS same logic"]["coldMs"]
    w(f"| cold start of the edge Worker ≤ JS same logic + 10 ms (goal + 5 ms) | {d:+.1f} ms ({st[EDGE_ALONE]['coldMs']:.0f} vs {st['JS same logic']['coldMs']:.0f} ms) | {'yes' if d <= 10 else 'no'} |")
fr_path = os.path.join(R, "first-report.json")
fr = json.load(open(fr_path)) if os.path.exists(fr_path) else None
if fr:
    w(f"| the first report in an isolate that served SDK requests ≤ 2x its second | {fr['ratio']:.2f}x ({fr['first_ms']:.1f} vs {fr['second_ms']:.1f} ms, medians of {len(fr['rounds'])} isolates) | {'yes' if fr['ratio'] <= 2 else 'no'} |")
ce_cache = [r for r in cache_rows if r["design"].startswith("canary-edge")]
pl_cache = {(r["clients"], r["cohorts"]): float(r["hit_rate_pct"]) for r in cache_rows if r["design"].startswith("no canary")}
for clients in sorted({r["clients"] for r in ce_cache}, key=int, reverse=True):
    gap = max(abs(float(r["hit_rate_pct"]) - pl_cache[(r["clients"], r["cohorts"])]) for r in ce_cache if r["clients"] == clients)
    w(f"| hit rate within 0.1 pp of no canary ({int(clients):,} clients) | {gap:.4f} pp worst | {'yes' if gap <= 0.1 else 'no'} |")
bd = max(max_dev((100, "canary-edge (fingerprint+network)")), max_dev((10, "canary-edge (fingerprint+network)")))
w(f"| canary share within ±1 pp of the weight | {bd:.2f} pp worst | {'yes' if bd <= 1 else 'no'} |")
w("")

# ---------------------------------------------------------------- throughput
w("## Throughput in workerd\n")
w(f"Miniflare 5 (workerd) on 127.0.0.1, one worker at a time, `wrk -t{tp['threads']} -c{tp['connections']} "
  f"-d{tp['duration_s']}s`" + (f" after {tp['warmup_s']} s of the same load, not counted (a fresh workerd's JIT and wasm tier-up)" if tp.get('warmup_s') else "") +
  f", {tp.get('rounds', 1)} interleaved rounds, each figure from the round with the "
  "median req/s (all rounds' req/s in the last column); wrk and workerd share the machine's CPUs. Local KV, R2 and Cache API are "
  "Miniflare's simulators, so absolute numbers are far below Cloudflare's; the ratios are the point.\n")
w("*CPU µs/req* is the workerd process's user+system time over the run divided by the requests "
  "served; it includes Miniflare's KV, R2 and cache simulators, which run in the same process, so "
  "differences between workers are diluted, not inflated.\n")
w("| worker | scenario | req/s | p50 ms | p99 ms | vs JS same logic | vs floor | CPU µs/req | CPU vs JS | rounds req/s |")
w("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
labels = {"hot": "(a) cached asset, cookie", "miss": "(b) cache miss, R2", "first": "(c) first visit, Set-Cookie"}
for scen in ["hot", "miss", "first"]:
    for name, res in wk.items():
        r = res.get(scen)
        if not r:
            continue
        vs_js = ratio(r["rps"], js.get(scen, {}).get("rps"))
        vs_fl = ratio(r["rps"], fl.get(scen, {}).get("rps"))
        bad = f" ({r['non2xx']} non-2xx)" if r.get("non2xx") else ""
        cpu = r.get("cpu_us_per_req", float("nan"))
        cpu_js = ratio(cpu, js.get(scen, {}).get("cpu_us_per_req"))
        w(f"| {name} | {labels[scen]} | {r['rps']:.0f}{bad} | {r['p50']:.2f} | {r['p99']:.2f} | {vs_js:.2f}x | {vs_fl:.2f}x | {cpu:.0f} | {cpu_js:.3f}x | {' / '.join(f'{x:.0f}' for x in r.get('all_rps', []))} |")
w("")
w("![throughput](BENCHMARKS-throughput.png)\n")

# ---------------------------------------------------------------- handler CPU
if handler:
    w("## The handler's own CPU in workerd\n")
    any_ = next(iter(handler.values()))
    w(f"`node bench/handler-cpu.mjs --scenario hot|first --rounds {any_['rounds']} --n {any_['n']}`: one request runs the "
      "worker's fetch handler in a loop inside workerd against an in-memory Cache API, and the workerd process's CPU "
      "time over it is divided by the calls: the worker's JS, its wasm and the runtime objects it makes (Request, "
      "Response, Headers), without the HTTP server, wrk or Miniflare's cache simulator, which make up most of the "
      "~1,000 µs per request above and move 10–20% between runs. Rounds interleave the workers; *vs JS* is the "
      "median of the per-round ratios.\n")
    w("| worker | scenario | µs per call, min | median | vs JS same logic | rounds |")
    w("|---|---|---:|---:|---:|---|")
    for scen_, rep in handler.items():
        for name, r in rep["workers"].items():
            w(f"| {name} | {labels[scen_]} | {r['min_us']:.0f} | {r['median_us']:.0f} | {r['vs_js_median_ratio']:.3f}x | "
              f"{' / '.join(f'{x:.0f}' for x in r['rounds_us'])} |")
    w("")

# ---------------------------------------------------------------- cost per batch
if bc:
    b = bc["batch"]
    cf = bc["configs"]
    names = list(cf)
    ro = bc["rollout"]
    st_ = b.get("straight_to_monitor")
    w("## Cost per batch\n")
    w(f"`node bench/batch-cost.mjs`: CPU of one health batch (the edge sends it, the Durable Objects "
      f"take it in) against a minimal JS Durable Object batch, same run. First-visit load (no cookie: "
      f"every request is a new client's counted load of the floating URL; rollout {ro['stable']} / "
      f"{ro['canary']} at weight {ro['weight']}), `wrk -t{bc['threads']} -c{bc['connections']} "
      f"-d{bc['duration_s']}s` after {bc['warmup']} warm-up requests, a fresh Miniflare per run, "
      f"{bc['rounds']} rounds in alternating order. canary-edge *through aggregators* is the production "
      "path (HEALTH and HEALTH_AGGREGATORS bound, as wrangler.toml deploys it: each batch goes to this "
      "isolate's HealthAggregator, which merges the batches and forwards them to the HealthMonitor at "
      "most 4 times a second); *straight to the monitor* is the path before the aggregators (HEALTH "
      "only: each batch a call to the HealthMonitor, ingested there). *CPU µs/req*: the workerd "
      "process's user+system time (worker and Durable Objects run in it) from the start of wrk until "
      "the process is quiet again, over the requests served (wrk's, plus the one in flight on each "
      "connection when it stopped). A batch's cost is taken within a round: "
      "(a batch per request) − (batching as large as it goes: for canary-edge the urgent flush's batch a "
      "second at most, loads being urgent while a canary is live; none for the floor), for each canary-edge path "
      "and for the floor (bench/workers/floor-do.mjs: the floor worker, plus per request a JSON batch of "
      "the same shape through `ctx.waitUntil(stub.fetch(...))` to a JS Durable Object that parses it and "
      "inserts one row with `ctx.storage.sql.exec`).\n")
    w("| configuration | CPU µs/req, median | range | req/s, median | served (per round) | batches taken in (per round) | monitor calls (per round) |")
    w("|---|---:|---:|---:|---|---|---|")
    for name in names:
        c = cf[name]
        cpu = c["cpu_us_per_req"]
        calls = " / ".join(str(x) for x in c["monitor_calls"]) if "monitor_calls" in c else "–"
        w(f"| {name} | {cpu['median']:.0f} | {cpu['min']:.0f}–{cpu['max']:.0f} | {c['rps']['median']:.0f} | "
          f"{' / '.join(str(x) for x in c['served'])} | {' / '.join(str(x) for x in c['ingested'])} | {calls} |")
    w("")
    met = "met" if b["ratio"]["of_medians"] <= b["target"] else "missed"
    w("| one batch, CPU µs | median | range over rounds | ratio to the floor: of the medians | per round, median | per round, range |")
    w("|---|---:|---:|---:|---:|---:|")
    w(f"| **canary-edge through aggregators** (production; target ≤ {b['target']}x: {met}) | {b['project']['median']:.0f} | "
      f"{b['project']['min']:.0f}–{b['project']['max']:.0f} | **{b['ratio']['of_medians']:.2f}x** | {b['ratio']['median']:.2f}x | "
      f"{b['ratio']['min']:.2f}–{b['ratio']['max']:.2f}x |")
    if st_:
        sr = st_["ratio"]
        w(f"| canary-edge straight to the monitor (before the aggregators) | {st_['project']['median']:.0f} | "
          f"{st_['project']['min']:.0f}–{st_['project']['max']:.0f} | {sr['of_medians']:.2f}x | {sr['median']:.2f}x | "
          f"{sr['min']:.2f}–{sr['max']:.2f}x |")
    w(f"| floor, minimal JS Durable Object | {b['floor']['median']:.0f} | {b['floor']['min']:.0f}–{b['floor']['max']:.0f} | 1x | | |")
    w("")
    ck = bc.get("check", {})
    counted = ck.get("counted", ck if ck and "taken_in" not in ck else {})
    if counted:
        parts = [f"{name}: {v['requests']} first visits, {v['batches']} batches posted"
                 + (f" to `{v['sample_path']}`" if v.get("sample_path") else "")
                 + (f" (first batch: {v['sample_bytes']} bytes of JSON)" if v.get("sample_bytes") else "") for name, v in counted.items()]
        w("One batch per request, checked before the timed runs with every Durable Object binding pointed at "
          "a counter (bench/workers/ingest-counter.mjs): " + "; ".join(parts) + ".")
    taken = ck.get("taken_in", {})
    if taken:
        parts = [f"{name}: {v['requests']} first visits, {v['isolate_batches']} isolate batches in {v['messages']} calls"
                 for name, v in taken.items()]
        w("Then with the real aggregator and monitor, the monitor's `/summary` intake: " + "; ".join(parts) + ".")
    w("*Batches taken in*: for canary-edge, the isolate batches the HealthMonitor counted after the run "
      "(`/summary` `intake.isolate_batches`: every batch, merged or not; exact), for the floor its rows; "
      "*monitor calls*: the calls the HealthMonitor took (`intake.messages`); *served* counts the first "
      "request and the warm-up, wrk's requests and the one in flight on each connection when wrk stopped.\n")

# ---------------------------------------------------------------- size and start
w("## Size and start\n")
w("| | |\n|---|---|")
w(f"| the edge Worker (all an SDK request loads): {', '.join(f'`build/{f}`' for f in HOT_FILES)} | {hot_raw:,} bytes raw, {hot_gz:,} gzip -9 ({hot_gz / 1024:.0f} KB) |")
w(f"| of which the routing wasm | {wasm_raw:,} bytes raw, {wasm_gz:,} gzip -9 ({wasm_gz / 1024:.0f} KB) |")
w(f"| the control Worker (`/__canary/` but reports, the Durable Objects): {', '.join(f'`build/{f}`' for f in OPS_FILES)} | {ops_raw:,} bytes raw, {ops_gz:,} gzip -9 ({ops_gz / 1024:.0f} KB) |")
w("")
w("Cold start: a new Miniflare (workerd process, isolate, module compile and instantiation) per worker, "
  f"then its first request; median of {next(iter(tp['start'].values()), {}).get('runs', 3)} starts, interleaved. *ready* is `new Miniflare()` to `mf.ready`; "
  "*first request* includes the isolate's first KV read, R2 read and cache write; *cold* = ready + first "
  "request; *CPU* the workerd process's CPU time up to the first response (10 ms resolution).\n")
w("| worker | ready ms | first request ms | cold ms | second request ms | workerd CPU ms |\n|---|---:|---:|---:|---:|---:|")
for name, s_ in tp["start"].items():
    w(f"| {name} | {s_['readyMs']:.0f} | {s_['firstMs']:.1f} | {s_.get('coldMs', float('nan')):.0f} | {s_['secondMs']:.1f} | {s_.get('cpuMs', float('nan')):.0f} |")
w("")
bare = st.get("canary-edge (edge Worker alone)")
if bare and "canary-edge" in st and "JS same logic" in st:
    js = st["JS same logic"]
    w("*edge Worker alone* is the edge's build with the reference workers' bindings (KV, R2), as its "
      "isolates start in production: apart from the control Worker's. *canary-edge* runs both Workers in one "
      "workerd process, as the tests and `wrangler dev` do: its *ready* includes a second worker and its two "
      "Durable Object namespaces (with SQLite), a cost of the local "
      f"simulator's one process, not of an edge isolate: {st['canary-edge']['readyMs'] - bare['readyMs']:+.0f} ms ready "
      f"({st['canary-edge']['coldMs'] - js['coldMs']:+.1f} ms cold against the JS worker; the control Worker's modules "
      "load on first use, and an isolate's first canary request does not check the config, so its first response "
      "does not wait for the control Worker: bench/README.md, \"Two Workers in one workerd\"). "
      "*control Worker (alone)*: its first request reads a bundle's status (`/__canary/status/demo`: the "
      "operations module and the bundle's HealthMonitor). "
      "Against the JS worker with the same bindings: "
      f"{bare['readyMs'] - js['readyMs']:+.0f} ms ready, {bare['firstMs'] - js['firstMs']:+.1f} ms first request, "
      f"{bare['coldMs'] - js['coldMs']:+.1f} ms cold. *ready* moves by about ±15 ms between runs on this machine.\n")

# ---------------------------------------------------------------- criterion
w("## Routing core, natively (criterion)\n")
w("Mean time per call. *shipped* is the crate's `[profile.release]` (which `cargo bench` inherits, "
  "and which the wasm uses); *opt-level 3* the same code built for speed. Native x86-64 has SHA "
  "instructions that wasm lacks, so in the worker the hashing costs more.\n")
w("| benchmark | shipped ns | opt-level 3 ns |\n|---|---:|---:|")
for k, v in shipped.items():
    o = o3.get(k)
    w(f"| {k} | {v:.0f} | {o:.0f} |" if o else f"| {k} | {v:.0f} | – |")
w("")

# ---------------------------------------------------------------- balance
w("## Balance: canary share of requests against the weight\n")
for line in open(os.path.join(R, "balance.log")):
    if line.startswith("balance:"):
        w(line.strip().replace("balance: ", "Clients: ") + ". Mix: see bench/README.md.\n")
w("| COHORTS | derivation | weights | max \\|share − weight\\| pp | at weight |")
w("|---:|---|---|---:|---:|")
for (cohorts, deriv), rows in sorted(bal.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
    worst = max(rows, key=lambda r: abs(r[2]))
    w(f"| {cohorts} | {deriv} | {rows[0][0]}..{rows[-1][0]} | {abs(worst[2]):.2f} | {worst[0]} |")
w("")
w("*ideal* gives every client a uniformly random cohort of its own: what remains there is the noise "
  "of heavy-tailed request counts, the floor for any sticky derivation.\n")
w("![balance](BENCHMARKS-balance.png)\n")

# ---------------------------------------------------------------- cache
w("## Cache efficiency (simulated request log)\n")
for line in open(os.path.join(R, "cache.log")):
    if line.startswith("cache:"):
        w(line.strip().replace("cache: ", "Log: ") + "; weights 0 → 5 → 25 → 50 → 100 %, then promote.\n")
w("| clients | COHORTS | keying | requests | hit rate % | vs no canary pp | purges |")
w("|---:|---:|---|---:|---:|---:|---:|")
for r in cache_rows:
    hr = float(r["hit_rate_pct"])
    base = pl_cache[(r["clients"], r["cohorts"])]
    w(f"| {int(r['clients']):,} | {r['cohorts']} | {r['design']} | {int(r['requests']):,} | {hr:.4f} | {hr - base:+.4f} | {r['purges']} |")
w("")

# ---------------------------------------------------------------- verdicts
verdict_csv = os.path.join(R, "verdict.csv")
verdict_rows = list(csv.DictReader(open(verdict_csv))) if os.path.exists(verdict_csv) else []
VERDICT_SECTION = ("## Verdicts: whole rollouts, client by client, through the tracker and the "
                   "sequential tests\n")
if verdict_rows:
    w(VERDICT_SECTION)
    w("`cargo bench --bench verdict_sim` (bench/verdict_sim.rs) drives the control plane's own "
      "`Tracker`, `Evidence` and `TestPolicy` (from `HealthPolicy::default()`, as `Control::test_policy` "
      "builds it) with simulated clients, a batch every 2 s: steps 1, 5, 25, 50, 100 % with a 5 min bake; "
      "each client loads, then, unless its page closes early (*early close*, same on both channels), "
      "boots 0–4 s later and reports a failure with its channel's error probability (stable 1%, the "
      "canary 1% × the factor), or never boots when the canary's script does not parse. Exposure is "
      "the effective weight (COHORTS=100). Quantiles of clients and minutes until the cut are over the "
      "runs that were cut. Rule, defaults and guarantees: [docs/verdict.md](docs/verdict.md).\n")
    # The log's tables, headings and target lines: from its first heading to the timing line.
    copying = False
    for line in open(os.path.join(R, "verdict.log")):
        if line.startswith("verdicts: ") and not copying:
            w(line.strip().replace("verdicts: ", "Runs: ", 1) + ".\n")
            continue
        if line.startswith("### "):
            copying = True
        if line.startswith("verdicts: simulated"):
            break
        if copying:
            w(line.rstrip("\n"))
    w("![verdicts](BENCHMARKS-verdicts.png)\n")
elif kept_verdicts:
    w(kept_verdicts + "\n")

open(os.path.join(a.out, "BENCHMARKS.md"), "w").write("\n".join(md) + "\n")

if verdict_rows:
    base = [r for r in verdict_rows if r["block"] == "base"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    traffic = sorted({float(r["per_min"]) for r in base})
    closes = sorted({float(r["early_close"]) for r in base})
    styles = ["-o", "--x", ":s"]

    def series(canary, close, value):
        out = []
        for t in traffic:
            row = next((r for r in base if r["canary"] == canary and float(r["per_min"]) == t
                        and float(r["early_close"]) == close), None)
            out.append(value(row) if row else float("nan"))
        return out

    for close, style in zip(closes, styles):
        for canary, colour in [("10", "tab:red"), ("never_boots", "tab:purple")]:
            ys = series(canary, close, lambda r: float(r["clients_p95"]))
            label = "10x" if canary == "10" else "never boots"
            axes[0].plot(traffic, ys, style, color=colour, label=f"{label}, early close {close:.0%}")
        ys = series("1", close, lambda r: 100.0 * int(r["cut"]) / int(r["runs"]))
        axes[1].plot(traffic, ys, style, color="tab:green", label=f"healthy: false rollbacks, early close {close:.0%}")
        ys = series("3", close, lambda r: 100.0 * int(r["advanced"]) / int(r["runs"]))
        axes[1].plot(traffic, ys, style, color="tab:orange", label=f"3x: advanced past step 1, early close {close:.0%}")
    axes[0].axhline(30, color="grey", lw=0.8, ls="--", label="target: never boots cut within 30")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("canary clients per minute")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("canary clients exposed until the cut (p95 of cut runs)")
    axes[1].set_ylabel("per 100 rollouts")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.suptitle("Sequential verdict on tracked clients (simulated rollouts, no attacker)")
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "BENCHMARKS-verdicts.png"), dpi=110)
    plt.close(fig)

# ---------------------------------------------------------------- plots
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
names = list(wk.keys())
scens = ["hot", "miss", "first"]
width = 0.8 / len(names)
for i, name in enumerate(names):
    vals = [wk[name].get(s, {}).get("rps", 0) for s in scens]
    axes[0].bar([x + i * width for x in range(len(scens))], vals, width, label=name)
    p99 = [wk[name].get(s, {}).get("p99", 0) for s in scens]
    axes[1].bar([x + i * width for x in range(len(scens))], p99, width, label=name)
for ax, title in [(axes[0], "requests/s (higher is better)"), (axes[1], "p99 latency ms (lower is better)")]:
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(scens))])
    ax.set_xticklabels([labels[s] for s in scens], fontsize=8)
    ax.set_title(title)
axes[0].legend(fontsize=8)
fig.suptitle(f"workerd (Miniflare 5), wrk -t{tp['threads']} -c{tp['connections']} -d{tp['duration_s']}s, {os.cpu_count()} CPUs")
fig.tight_layout()
fig.savefig(os.path.join(a.out, "BENCHMARKS-throughput.png"), dpi=110)
plt.close(fig)

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, cohorts in zip(axes, [100, 10]):
    ax.plot([0, 100], [0, 100], color="grey", lw=0.8, ls="--", label="share = weight")
    for deriv, style in [("canary-edge (fingerprint+network)", "-o"), ("fingerprint alone", "-x"), ("ideal (uniform per client)", ":")]:
        rows = bal.get((cohorts, deriv))
        if rows:
            ax.plot([r[0] for r in rows], [r[1] for r in rows], style, ms=3, lw=1, label=deriv)
    ax.set_title(f"COHORTS={cohorts}")
    ax.set_xlabel("weight %")
    ax.set_ylabel("canary share of requests %")
    ax.legend(fontsize=8)
fig.suptitle("Canary share of requests vs weight (JA4+ browser mix)")
fig.tight_layout()
fig.savefig(os.path.join(a.out, "BENCHMARKS-balance.png"), dpi=110)
plt.close(fig)
print(os.path.join(a.out, "BENCHMARKS.md"))
