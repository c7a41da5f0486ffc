#!/usr/bin/env bash
# Builds and runs the OCI pull benchmark against a local docker-registry; prints the table.
# Usage: bench/oci/oci.sh [iterations]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${BUILD_DIR:-$root/build}"
cmake --build "$build" --target oci_bench wasmlet guests >/dev/null
"$build/bench/oci/oci_bench" "${1:-5}"
