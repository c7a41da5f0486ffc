#!/usr/bin/env bash
# Builds the libFuzzer targets with clang + ASan/UBSan into build-fuzz/ and runs each for
# SECONDS (default 30) through ctest (label "fuzz"). Crashes are written to build-fuzz/fuzz/;
# keep the ones you fix under fuzz/corpus/<target>/ so every build replays them.
# Usage: tools/fuzz.sh [SECONDS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
seconds="${1:-30}"
# The compiler cache of tools/build.sh.
export CCACHE_DIR="${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet/ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}" CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
CC=clang CXX=clang++ cmake -S "$root" -B "$root/build-fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DWASMLET_FUZZ=ON -DWASMLET_FUZZ_SECONDS="$seconds" >/dev/null
targets=$(cd "$root/build-fuzz" && ctest -N -L fuzz | sed -n 's/.*Test *#[0-9]*: fuzz_//p')
ninja -C "$root/build-fuzz" $targets
cd "$root/build-fuzz/fuzz" && ctest -L fuzz --output-on-failure -V | grep -E '^[0-9]+: (Done|stat::number_of_executed_units|==[0-9]+==ERROR)|Test +#|tests passed|tests failed'
