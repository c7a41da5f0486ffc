#!/usr/bin/env bash
# Latency isolation under hostile modules (not run in CI): p99 of the hello route with wrk,
#   1. unloaded, then
#   2. while hostile modules are hit continuously (an infinite loop, a memory bomb, deep
#      recursion, a stdout flood, a stderr flood, a guest sleeping in poll_oneoff; each with a
#      1 s timeout, HOSTILE_CLIENTS sequential clients per route).
# Prints the median p99 over RUNS runs of each and the ratio loaded/unloaded (target <= 2),
# and writes $RESULTS_DIR/hostile_p99.csv (benchmark,case,subject,metric,value,unit).
# Usage: bench/hostile/p99.sh   (env: BUILD_DIR, DURATION=5s, CONNECTIONS=4, RUNS=3,
#                                HOSTILE_CLIENTS=1, WASMLET_ARGS="", RESULTS_DIR)
# WASMLET_ARGS="--workers 2" reproduces the old default worker count on a 2-core machine
# (hostile guests then hold every worker and the hello route queues behind their timeouts).
# Needs: wrk, curl.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${BUILD_DIR:-$root/build}"
duration="${DURATION:-5s}"
connections="${CONNECTIONS:-4}"
runs="${RUNS:-3}"
hostile_clients="${HOSTILE_CLIENTS:-1}"
results="${RESULTS_DIR:-$root/bench/results/latest}"
mkdir -p "$results"
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (apt-get install wrk curl)" >&2; exit 2; }
done
cmake --build "$build" --target wasmlet guests >/dev/null
guests="$build/guests"

tmp="$(mktemp -d)"
pids=()
loaders=()
cleanup() {
  for pid in "${loaders[@]}" "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

entry() { printf '[[module]]\nroute = "%s"\nmodule = "%s"\n%s\n\n' "$1" "$2" "${3:-}"; }
{
  entry /hello "$guests/hostile.wasm"
  entry /loop "$guests/loop.wasm" 'timeout = "1s"'
  entry /hog "$guests/memory_hog.wasm" 'timeout = "1s"
memory_limit = "64MiB"'
  entry /recurse "$guests/recursion.wasm" 'timeout = "1s"'
  entry /flood "$guests/hostile.wasm" 'timeout = "1s"'
  entry /sleep "$guests/hostile.wasm" 'timeout = "1s"'
} >"$tmp/modules.toml"
hostile_urls=(/loop /hog /recurse "/flood?stdout" "/flood?stderr=0" "/sleep?sleep")

source "$root/bench/lib.sh"
port="$(free_port)"
"$build/src/exe/wasmlet" --log-level warn serve -c "$tmp/modules.toml" -l "127.0.0.1:$port" \
  --log-dir "$tmp/logs" --module-cache "$tmp/cache" ${WASMLET_ARGS:-} >"$tmp/wasmlet.out" 2>"$tmp/wasmlet.err" &
pids+=($!)
base="http://127.0.0.1:$port"
wait_http "$base/hello" || { cat "$tmp/wasmlet.err" >&2; exit 1; }

# wrk's "99%" latency line -> milliseconds.
p99() {
  wrk -t1 -c"$connections" -d"$duration" --latency "$base/hello" | python3 -c '
import re, sys
for line in sys.stdin:
    m = re.match(r"\s+99%\s+([\d.]+)(us|ms|s)\s*$", line)
    if m:
        v = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        print(f"{v:.3f}")
        break
'
}

curl -s -o /dev/null "$base/hello"
unloaded=()
for _ in $(seq 1 "$runs"); do unloaded+=("$(p99)"); done

for url in "${hostile_urls[@]}"; do
  for _ in $(seq 1 "$hostile_clients"); do
    (while :; do curl -s -o /dev/null --max-time 5 "$base$url" || true; done) &
    loaders+=($!)
  done
done
sleep 1
loaded=()
for _ in $(seq 1 "$runs"); do loaded+=("$(p99)"); done
hostile_done="$(grep -c '' "$tmp/wasmlet.err" || true)"
for pid in "${loaders[@]}"; do kill "$pid" 2>/dev/null || true; done
loaders=()

u="$(printf '%s\n' "${unloaded[@]}" | median)"
l="$(printf '%s\n' "${loaded[@]}" | median)"
ratio="$(python3 -c "print(f'{$l / $u:.2f}')")"
printf '\nhello p99 (wrk -c%s, %s, median of %s runs; %s hostile client(s) per route)\n' \
  "$connections" "$duration" "$runs" "$hostile_clients"
printf '%-28s %10s\n' "case" "p99 (ms)"
printf '%-28s %10s   runs: %s\n' "unloaded" "$u" "${unloaded[*]}"
printf '%-28s %10s   runs: %s\n' "under hostile modules" "$l" "${loaded[*]}"
printf '%-28s %10s   (target <= 2)\n' "ratio loaded/unloaded" "$ratio"
echo "($hostile_done server log lines (warnings/errors) during the run)"
csv="$results/hostile_p99.csv"
{
  echo "benchmark,case,subject,metric,value,unit"
  echo "hostile_p99,unloaded,wasmlet,p99_latency,$u,ms"
  echo "hostile_p99,hostile-load,wasmlet,p99_latency,$l,ms"
  echo "hostile_p99,hostile-load,wasmlet,ratio_to_unloaded,$ratio,x"
} >"$csv"
echo "wrote $csv"
