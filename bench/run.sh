#!/usr/bin/env bash
# The performance suite in one command: builds, runs every benchmark against its peer on this
# machine (medians of repeated runs, ratios within the same run), then prints the table of
# figures and targets and draws the plots (gnuplot) into the results folder.
#
# Usage: bench/run.sh [--quick] [--publish] [SUITE...]
#   SUITE: throughput breakdown coldstart density compute process hostile (default: all)
#   --quick    shorter runs (smoke: checks the suite works, figures are rough)
#   --publish  copy the results into docs/performance/ (linked from docs/performance.md)
# Env: BUILD_DIR, RESULTS_DIR (default bench/results/<UTC time>, `latest` links to it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export BUILD_DIR="${BUILD_DIR:-$root/build}"
quick=0
publish=0
suites=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --publish) publish=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    throughput|breakdown|coldstart|density|compute|process|hostile) suites+=("$arg") ;;
    *) echo "bench/run.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
((${#suites[@]})) || suites=(throughput breakdown coldstart density compute process hostile)

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
export RESULTS_DIR="${RESULTS_DIR:-$root/bench/results/$stamp}"
mkdir -p "$RESULTS_DIR"
ln -sfn "$RESULTS_DIR" "$root/bench/results/latest" 2>/dev/null || true

"$root/tools/build.sh" >/dev/null
wasmlet="$BUILD_DIR/src/exe/wasmlet"
{
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "Versions: $("$wasmlet" --version | tr '\n' ' '); $(nginx -v 2>&1 | tr -d '\n'); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); $(clang --version | head -1)"
  echo "Commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "Mode: $([[ $quick == 1 ]] && echo quick || echo full); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RESULTS_DIR/meta.txt"

if ((quick)); then
  export DURATION=2s RUNS=1 CONNECTIONS="${CONNECTIONS:-1 16 64 256}" DENSITY_APPS="${DENSITY_APPS:-1000}"
  export REPEATS="${REPEATS:-3}"
fi

status=0
run_suite() {  # name script args...
  local name="$1"; shift
  echo "== $name: $*" >&2
  local start=$SECONDS
  if "$@" >"$RESULTS_DIR/$name.log" 2>&1; then
    echo "   done in $((SECONDS - start)) s" >&2
  else
    echo "   FAILED after $((SECONDS - start)) s; last lines of $RESULTS_DIR/$name.log:" >&2
    tail -15 "$RESULTS_DIR/$name.log" | sed 's/^/   | /' >&2
    status=1
  fi
}

for s in "${suites[@]}"; do
  case "$s" in
    throughput) run_suite throughput "$root/bench/gateway/bench.sh" ;;
    breakdown) run_suite breakdown "$root/bench/breakdown/breakdown.sh" ;;
    coldstart) run_suite coldstart "$root/bench/coldstart/coldstart.sh" ;;
    density) run_suite density "$root/bench/density/density.sh" ;;
    compute) run_suite compute "$root/bench/compute.sh" $([[ $quick == 1 ]] && echo "16 3") ;;
    process) run_suite process "$root/bench/runtime.sh" $([[ $quick == 1 ]] && echo 500) ;;
    hostile) run_suite hostile "$root/bench/hostile/p99.sh" ;;
  esac
done

publish_args=()
((publish)) && publish_args=(--publish "$root/docs/performance")
python3 "$root/bench/report.py" "$RESULTS_DIR" "${publish_args[@]}" || status=1
echo "results: $RESULTS_DIR (logs per suite: <suite>.log)"
exit "$status"
