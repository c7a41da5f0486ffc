#!/usr/bin/env bash
# Per-request overhead breakdown (issue 6 item 2): where each microsecond of a WAGI request for
# the C hello example goes (HTTP parse, route, CGI env, Store, WASI, instantiate, run, teardown,
# response parse, total). Prints a table of medians; writes $RESULTS_DIR/breakdown.csv.
# Usage: bench/breakdown/breakdown.sh   (env: BUILD_DIR, ITERATIONS=5000, RESULTS_DIR)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${BUILD_DIR:-$root/build}"
results="${RESULTS_DIR:-$root/bench/results/latest}"
mkdir -p "$results"
cmake --build "$build" --target breakdown_bench >/dev/null
"$build/bench/breakdown/breakdown_bench" "${ITERATIONS:-5000}" "$results/breakdown.csv"
echo "wrote $results/breakdown.csv"
