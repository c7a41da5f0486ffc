#!/usr/bin/env bash
# Installs the Debian packages wasmlet needs to build, test and benchmark; skips what is present.
# Usage: tools/install-deps.sh   (as root, or with sudo available)
set -euo pipefail
packages=(
  # build
  cmake ninja-build g++ pkg-config ccache
  # libraries
  libboost-dev libcurl4-openssl-dev libssl-dev libtomlplusplus-dev nlohmann-json3-dev
  libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
  libmimalloc-dev
  # guest modules: C via clang + wasi-libc, WAT via wabt
  clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt
  # fuzzing (libFuzzer) and benchmark plots
  libclang-rt-14-dev gnuplot-nox
  # tests and benchmarks
  curl docker-registry apache2-utils wrk nginx-light hyperfine python3 bc fcgiwrap openssl libyaml-cpp-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} Debian packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The Debian registry and nginx packages start system services; wasmlet's tests and benchmarks
# start their own copies on loopback ports, so stop the packaged ones if they were started.
$SUDO systemctl disable --now docker-registry nginx >/dev/null 2>&1 || true
