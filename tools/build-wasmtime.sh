#!/usr/bin/env bash
# Builds (or reuses from the cache) Wasmtime's C API static library and headers.
# Usage: tools/build-wasmtime.sh  -> prints the cache directory holding lib/ and include/.
# Cache key: wasmtime version + features + Cargo.lock + rustc version, so a change to any of
# them builds a fresh copy beside the old one.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
crate="$here/third_party/wasmtime-capi"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet"
version="$(sed -n 's/^version = "=\(.*\)"/\1/p' "$crate/Cargo.toml" | head -1)"
key="$( (cat "$crate/Cargo.toml" "$crate/Cargo.lock" "$crate/build.rs" "$crate/src/lib.rs"; rustc --version) | sha256sum | cut -c1-16)"
dest="$cache_root/wasmtime-$version-$key"
if [[ -f "$dest/lib/libwasmlet_wasmtime.a" && -f "$dest/include/wasmtime.hh" ]]; then
  echo "$dest"
  exit 0
fi
echo "building Wasmtime $version, first time only, several minutes (cache: $dest)" >&2
mkdir -p "$cache_root"
tmp="$dest.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/lib" "$tmp/include"
export CARGO_TARGET_DIR="$cache_root/cargo-target"
export WASMLET_WASMTIME_INCLUDE_OUT="$tmp/include"
# The header copy happens in our build.rs; force it to run again for this destination.
touch "$crate/build.rs"
cargo build --release --locked --manifest-path "$crate/Cargo.toml" >&2
cp "$CARGO_TARGET_DIR/release/libwasmlet_wasmtime.a" "$tmp/lib/"
echo "$version" > "$tmp/VERSION"
rm -rf "$dest"
mv "$tmp" "$dest"
echo "$dest"
