#!/usr/bin/env bash
# One command on a fresh machine: installs what is missing (Debian packages), builds wasmlet
# (Wasmtime's C API is built from crates.io the first time and cached), then runs the main job:
# `wasmlet serve` on the bundled example apps (http://127.0.0.1:3000). Ctrl-C stops it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
"$root/tools/install-deps.sh"
"$root/tools/build.sh"
wasmlet="${BUILD_DIR:-$root/build}/src/exe/wasmlet"
if "$wasmlet" serve --help >/dev/null 2>&1; then
  exec "$wasmlet" serve "$@"
fi
# Builds without the gateway: show the runtime on the bundled hello module.
exec "$wasmlet" run "${BUILD_DIR:-$root/build}/guests/hello.wasm"
