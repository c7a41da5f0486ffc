#!/usr/bin/env bash
# Density: many apps registered in one `wasmlet serve` (issue 6). APPS (default 10,000) distinct
# WAGI hello modules (wasm binaries assembled by density.py, a distinct string each) behind one
# modules.toml, precompiled once into a module cache that is kept, keyed by APPS, under
# ${XDG_CACHE_HOME:-~/.cache}/wasmlet/bench-density/ (`wasmlet serve --check` fills it).
# Measured for lazy loading (the default) and, as the peer, eager loading (`--preload`):
#   startup (process start to /healthz answering), idle RSS, first-request latency of SAMPLE
#   random never-touched apps (p50, p99; one keep-alive connection), RSS after TOUCH apps.
# Targets (lazy, 10,000 apps): startup <= 5 s, idle RSS <= 1 GiB, first request <= 5 ms.
# Prints a table (medians of RUNS runs) and writes $RESULTS_DIR/density.csv.
# Usage: bench/density/density.sh   (env: BUILD_DIR, APPS=10000, SAMPLE=200, TOUCH=1000, RUNS=3,
#                                    RESULTS_DIR)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${BUILD_DIR:-$root/build}"
apps="${APPS:-10000}"
results="${RESULTS_DIR:-$root/bench/results/latest}"
mkdir -p "$results"
cmake --build "$build" --target wasmlet >/dev/null
wasmlet="$build/src/exe/wasmlet"

# Modules and their compiled artifacts are kept across runs: the paths must stay the same for
# the cache's path index (device, inode, size, mtime) to find the artifacts without hashing.
work="${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet/bench-density/apps-$apps"
mkdir -p "$work"
python3 "$root/bench/density/density.py" generate "$work" "$apps"
engine="$("$wasmlet" --version 2>/dev/null | tr -c 'A-Za-z0-9.\n' '_' | head -1)"
stamp="$work/precompiled-$engine"
if [ ! -f "$stamp" ]; then
  echo "density: precompiling $apps modules into $work/cache (once) ..." >&2
  start=$(date +%s)
  "$wasmlet" --log-level warn serve --check -c "$work/modules.toml" --module-cache "$work/cache" >/dev/null
  echo "density: precompiled in $(( $(date +%s) - start )) s" >&2
  touch "$stamp"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 "$root/bench/density/density.py" measure --wasmlet "$wasmlet" --config "$work/modules.toml" \
  --cache "$work/cache" --results "$results" --tmp "$tmp" --apps "$apps" \
  --sample "${SAMPLE:-200}" --touch "${TOUCH:-1000}" --runs "${RUNS:-3}"
