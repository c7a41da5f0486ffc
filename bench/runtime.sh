#!/usr/bin/env bash
# Builds and runs the runtime benchmark; prints the table (issue 2 figures).
# Usage: bench/runtime.sh [iterations]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/tools/build.sh" >/dev/null
cmake --build "$build" --target runtime_bench native_hello >/dev/null
results="${RESULTS_DIR:-$root/bench/results/latest}"; mkdir -p "$results"
out="$("$build/bench/runtime_bench" "${1:-2000}")"
echo "$out"
# The table rows become $results/process.csv (median and p99 of each measure, microseconds).
echo "$out" | python3 -c '
import sys
print("benchmark,case,subject,metric,value,unit")
names = {"process: wasmlet run hello.wasm (warm cache)": ("process", "hello", "wasmlet"),
         "process: native hello": ("process", "hello", "native"),
         "invoke C hello: Store+WASI+instantiate+run, stdout cb": ("process", "invoke", "wasmlet"),
         "load precompiled 2.7 MB Go module from disk cache, by path": ("process", "load-go-2.7mb", "wasmlet")}
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) >= 3 and cells[0] in names:
        b, case, subject = names[cells[0]]
        print(f"{b},{case},{subject},median,{cells[1]},us")
        print(f"{b},{case},{subject},p99,{cells[2]},us")
' >"$results/process.csv"
