#!/usr/bin/env bash
# Soak test (loopback only, bounded): `wasmlet serve` with normal and hostile apps under
# steady traffic, `wasmlet pull` through a fault-injecting proxy in front of a local registry,
# RSS sampled throughout. Prints requests sent, 2xx, expected and unexpected errors, pulls and
# RSS at start and end; exits 1 if anything unexpected happened or RSS grew
# (end <= peak during warm-up * 1.2 + 16 MiB; runs of 60 s or more). Not part of ctest
# except a 20 s smoke run (which checks everything but RSS).
#
# Usage: tools/soak.sh [--duration 10m] [--sample 5s] [--clients 4] [--keep]
# Env: BUILD_DIR (default build).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
exec python3 "$root/tools/soak/soak.py" --build-dir "$build" --source-dir "$root" "$@"
