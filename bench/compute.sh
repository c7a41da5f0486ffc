#!/usr/bin/env bash
# Compute benchmark: SHA-256 over 64 MiB, the same C file natively (clang -O2) and as a WASI
# module run by `wasmlet run` (warm compile cache); medians of 5 runs each, and the ratio.
# Usage: bench/compute.sh [MiB] [runs]   (writes $RESULTS_DIR/compute.csv)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mib="${1:-64}"; runs="${2:-5}"
results="${RESULTS_DIR:-$root/bench/results/latest}"; mkdir -p "$results"
build="${BUILD_DIR:-$root/build}"
"$root/tools/build.sh" >/dev/null
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
clang -O2 -o "$out/sha256sum-native" "$root/bench/compute/sha256sum.c"
clang --target=wasm32-wasi -O2 -o "$out/sha256sum.wasm" "$root/bench/compute/sha256sum.c"
wasmlet="$build/src/exe/wasmlet"
cache="--module-cache=$out/cache"
native_digest="$("$out/sha256sum-native" "$mib")"
wasm_digest="$("$wasmlet" run "$cache" --memory-limit 1GiB "$out/sha256sum.wasm" "$mib")"
[[ "$native_digest" == "$wasm_digest" ]] || { echo "digests differ: $native_digest vs $wasm_digest"; exit 1; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_runs() { for _ in $(seq "$runs"); do s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); done | median; }
n=$(time_runs "$out/sha256sum-native" "$mib")
w=$(time_runs "$wasmlet" run "$cache" --memory-limit 1GiB "$out/sha256sum.wasm" "$mib")
echo "| workload | native ms (median) | wasmlet ms (median) | ratio | target |"
echo "|---|---|---|---|---|"
printf "| SHA-256 over %s MiB | %s | %s | %.2fx | <= 1.5x |\n" "$mib" "$n" "$w" "$(echo "$w / $n" | bc -l)"
{
  echo "benchmark,case,subject,metric,value,unit"
  echo "compute,sha256-${mib}mib,native,time,$n,ms"
  echo "compute,sha256-${mib}mib,wasmlet,time,$w,ms"
  echo "compute,sha256-${mib}mib,wasmlet,ratio_to_native,$(echo "scale=3; $w / $n" | bc -l),x"
} >"$results/compute.csv"
