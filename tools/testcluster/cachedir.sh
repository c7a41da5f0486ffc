#!/usr/bin/env bash
# Prints the cache directory for the current go.mod/go.sum/build.sh/mains (see build.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=$(cat "$here/K8S_VERSION")
hash=$(cd "$here" && cat go.mod go.sum build.sh cmd/*/main.go | sha256sum | cut -c1-16)
echo "${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet/testcluster-${version}-${hash}"
