#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl) from the Go module proxy and caches the binaries under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet/testcluster-<k8s version>-<hash>/bin
# where <hash> covers go.mod, go.sum and the mains. A cached build is reused.
# Prints the bin directory on the last line of stdout.
# Env: GO (default /usr/local/go/bin/go), TESTCLUSTER_BUILD_JOBS (go build -p, default 2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
GO=${GO:-/usr/local/go/bin/go}
bin_dir="$("$here/cachedir.sh")/bin"
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

missing=()
for c in "${components[@]}"; do [ -x "$bin_dir/$c" ] || missing+=("$c"); done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "testcluster: reusing cached binaries in $bin_dir" >&2
  echo "$bin_dir"
  exit 0
fi
[ -x "$GO" ] || { echo "testcluster: Go not found at $GO (set GO=...)" >&2; exit 1; }
echo "testcluster: building ${missing[*]} from source (Go module proxy) into $bin_dir; this takes a while" >&2
mkdir -p "$bin_dir"
start=$(date +%s)
# Version stamping as upstream's hack/lib/version.sh does, so `kubectl version` and version
# skew checks see v1.35.x rather than v0.0.0-master.
k8s_version=$(cat "$here/K8S_VERSION")
minor=${k8s_version#v1.}; minor=${minor%%.*}
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  version_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
cd "$here"
for c in "${missing[@]}"; do
  t0=$(date +%s)
  # Build to a temporary name and rename, so an interrupted build never leaves a broken binary.
  nice -n 15 "$GO" build -p "${TESTCLUSTER_BUILD_JOBS:-2}" -trimpath -ldflags="-s -w $version_ldflags" \
    -o "$bin_dir/.$c.tmp" "./cmd/$c"
  mv -f "$bin_dir/.$c.tmp" "$bin_dir/$c"
  echo "testcluster: built $c in $(( $(date +%s) - t0 )) s" >&2
done
echo "testcluster: build finished in $(( $(date +%s) - start )) s" >&2
echo "$bin_dir"
