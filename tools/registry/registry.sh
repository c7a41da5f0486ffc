#!/usr/bin/env bash
# Starts or stops a local docker-registry (distribution v2) for manual tests and benchmarks.
#   tools/registry/registry.sh start [DIR] [PORT] [USER:PASSWORD]   prints 127.0.0.1:PORT
#   tools/registry/registry.sh stop [DIR]
# DIR defaults to /tmp/wasmlet-registry (storage, config.yml, registry.log, pid); PORT to 5000.
# With USER:PASSWORD the registry requires htpasswd Basic auth.
# The tests (tests/oci) start their own registries; this script is not used by them.
set -euo pipefail
cmd="${1:-}"
dir="${2:-/tmp/wasmlet-registry}"
case "$cmd" in
  start)
    port="${3:-5000}"
    creds="${4:-}"
    command -v docker-registry >/dev/null || { echo "docker-registry is not installed (apt-get install docker-registry)" >&2; exit 1; }
    if [[ -f "$dir/pid" ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "already running (pid $(cat "$dir/pid"))" >&2
      exit 1
    fi
    mkdir -p "$dir/storage"
    auth=""
    if [[ -n "$creds" ]]; then
      htpasswd -Bbn "${creds%%:*}" "${creds#*:}" > "$dir/htpasswd"
      auth=$'auth:\n  htpasswd:\n    realm: wasmlet\n    path: '"$dir/htpasswd"
    fi
    cat > "$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
CONFIG
    nohup docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    echo $! > "$dir/pid"
    for _ in $(seq 50); do
      if curl -s -o /dev/null "http://127.0.0.1:$port/v2/"; then echo "127.0.0.1:$port"; exit 0; fi
      sleep 0.1
    done
    echo "registry did not start; see $dir/registry.log" >&2
    exit 1
    ;;
  stop)
    if [[ -f "$dir/pid" ]]; then
      kill "$(cat "$dir/pid")" 2>/dev/null || true
      rm -f "$dir/pid"
    fi
    ;;
  *)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
