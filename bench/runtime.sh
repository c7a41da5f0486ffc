#!/usr/bin/env bash
# Builds and runs the runtime benchmark; prints the table (issue 2 figures).
# Usage: bench/runtime.sh [iterations]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/tools/build.sh" >/dev/null
cmake --build "$build" --target runtime_bench native_hello >/dev/null
"$build/bench/runtime_bench" "${1:-2000}"
