#!/usr/bin/env bash
# Configures and builds wasmlet (and the Wasmtime C API on first use, cached) into build/.
# Usage: tools/build.sh [extra cmake -D options...]   Env: BUILD_DIR (default build), JOBS.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
jobs="${JOBS:-$(nproc)}"
export CCACHE_DIR="${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet/ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"  # relative paths: a clean clone elsewhere hits the same cache
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
elif (($#)); then
  cmake -S "$root" -B "$build" "$@"
fi
cmake --build "$build" -j "$jobs"
