#!/usr/bin/env bash
# Runs every test: installs missing Debian packages, builds (Wasmtime cached after the first
# time), then ctest over unit, CLI, gateway and registry tests. Ends with ctest's summary.
# Usage: tools/test.sh [ctest args...]    e.g. tools/test.sh -R runtime
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
"$root/tools/install-deps.sh"
"$root/tools/build.sh"
# The node tests run a real control plane built from the Go module proxy (cached after the
# first build under ~/.cache/wasmlet/testcluster-*).
"$root/tools/testcluster/build.sh" >/dev/null
build="${BUILD_DIR:-$root/build}"
cd "$build"
ctest --output-on-failure --timeout 600 -j "${TEST_JOBS:-2}" "$@"
