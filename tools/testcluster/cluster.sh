#!/usr/bin/env bash
# The wasmlet test control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, one process each, built by build.sh.
#
#   cluster.sh start DIR            generate certificates, start everything, wait until ready
#   cluster.sh stop DIR             stop everything started from DIR (SIGTERM, then SIGKILL)
#   cluster.sh stop-apiserver DIR   stop only kube-apiserver (outage tests)
#   cluster.sh start-apiserver DIR  start it again on the same port and wait for /readyz
#
# DIR receives: pki/, admin.kubeconfig, node-<name>.kubeconfig (+ node-<name>.crt/.key for
# the node's client identity), kubelet-serving.{crt,key} for the node's HTTPS API, logs/*.log,
# cluster.env (ports and paths, sourceable), pids/*.pid.
# Env: NODE_NAMES (default "wasm-node-1"), TESTCLUSTER_BIN (default: the cached build; the
# script never builds: run build.sh first), START_TIMEOUT (seconds, default 120), WATCH_PID
# (stop the cluster when this process exits: test harnesses pass their own pid).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,15p' "$0" >&2; exit 2; }
mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
NODE_NAMES=${NODE_NAMES:-wasm-node-1}
START_TIMEOUT=${START_TIMEOUT:-120}

bin=${TESTCLUSTER_BIN:-"$("$here/cachedir.sh")/bin"}
need_bins() {
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    if [ ! -x "$bin/$c" ]; then
      echo "testcluster: $bin/$c is missing: run tools/testcluster/build.sh first" >&2
      exit 3
    fi
  done
}

log() { echo "testcluster: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- certificates -------------------------------------------------------------------------
pki="$dir/pki"
# sign NAME SUBJECT [SAN] [EXT]: NAME.key + NAME.crt signed by the CA.
sign() {
  local name=$1 subj=$2 san=${3:-} usage=${4:-clientAuth}
  openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } > "$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

gen_certs() {
  [ -f "$pki/ca.crt" ] && return 0
  mkdir -p "$pki"
  openssl genrsa -out "$pki/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=wasmlet-test-ca" -days 30 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$pki/ca.crt" 2>/dev/null
  sign apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
    serverAuth
  sign admin "/O=system:masters/CN=kubernetes-admin"
  sign controller-manager "/CN=system:kube-controller-manager"
  sign scheduler "/CN=system:kube-scheduler"
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  sign kubelet-serving "/CN=wasmlet-kubelet" "IP:127.0.0.1,DNS:localhost" serverAuth
  for n in $NODE_NAMES; do sign "node-$n" "/O=system:nodes/CN=system:node:$n"; done
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  cp "$pki/kubelet-serving.crt" "$pki/kubelet-serving.key" "$dir/"
}

# kubeconfig FILE USER CERTNAME [embed]: certificates as paths, or embedded as base64 data.
kubeconfig() {
  local file=$1 user=$2 cert=$3 embed=${4:-}
  if [ -n "$embed" ]; then
    cat > "$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: wasmlet-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki/$cert.crt")
    client-key-data: $(base64 -w0 "$pki/$cert.key")
contexts:
- name: wasmlet-test
  context:
    cluster: wasmlet-test
    user: $user
current-context: wasmlet-test
KC
  else
    cat > "$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: wasmlet-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $pki/$cert.crt
    client-key: $pki/$cert.key
contexts:
- name: wasmlet-test
  context:
    cluster: wasmlet-test
    user: $user
current-context: wasmlet-test
KC
  fi
}

# --- processes ------------------------------------------------------------------------------
# launch NAME ARGS...: background process in its own process group, pid in pids/NAME.pid.
launch() {
  local name=$1; shift
  mkdir -p "$dir/pids" "$dir/logs"
  setsid "$@" >>"$dir/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$dir/pids/$name.pid"
}

stop_one() {
  local name=$1 pidf="$dir/pids/$1.pid" pid
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop in 10 s, killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidf"
}

alive_or_die() {
  local name=$1 pid
  pid=$(cat "$dir/pids/$name.pid" 2>/dev/null || echo 0)
  if ! kill -0 "$pid" 2>/dev/null; then
    log "$name exited during startup; last log lines:"
    tail -n 30 "$dir/logs/$name.log" >&2 || true
    return 1
  fi
}

start_etcd() {
  launch etcd "$bin/etcd" --data-dir "$dir/etcd" \
    --listen-client-url "http://127.0.0.1:$ETCD_PORT" --listen-peer-url "http://127.0.0.1:$ETCD_PEER_PORT"
}

start_apiserver() {
  launch kube-apiserver "$bin/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=Node,RBAC \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --cert-dir="$dir/apiserver-certs" \
    --enable-priority-and-fairness=false \
    --profiling=false --v=1
}

wait_apiserver() {
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  while :; do
    if curl -sf --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
        "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1; then
      return 0
    fi
    alive_or_die kube-apiserver || return 1
    [ "$(date +%s)" -lt "$deadline" ] || { log "kube-apiserver not ready after ${START_TIMEOUT}s"; tail -n 30 "$dir/logs/kube-apiserver.log" >&2; return 1; }
    sleep 0.2
  done
}

do_start() {
  need_bins
  local t0; t0=$(date +%s%N)
  if [ -f "$dir/cluster.env" ]; then
    # shellcheck disable=SC1091
    . "$dir/cluster.env"   # restart with the same ports and data
  else
    ETCD_PORT=$(free_port); ETCD_PEER_PORT=$(free_port); APISERVER_PORT=$(free_port)
    KUBELET_PORT=$(free_port)
  fi
  gen_certs
  cat > "$dir/cluster.env" <<ENV
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KUBELET_PORT=$KUBELET_PORT
KUBECONFIG=$dir/admin.kubeconfig
KUBECTL=$bin/kubectl
TESTCLUSTER_BIN=$bin
ENV
  kubeconfig "$dir/admin.kubeconfig" kubernetes-admin admin
  kubeconfig "$dir/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  kubeconfig "$dir/scheduler.kubeconfig" system:kube-scheduler scheduler
  for n in $NODE_NAMES; do kubeconfig "$dir/node-$n.kubeconfig" "system:node:$n" "node-$n" embed; done

  trap 'log "start failed, stopping"; do_stop; exit 1' ERR
  start_etcd
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  until curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1; do
    alive_or_die etcd || false
    [ "$(date +%s)" -lt "$deadline" ] || { log "etcd not ready"; false; }
    sleep 0.1
  done
  start_apiserver
  wait_apiserver
  launch kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --use-service-account-credentials=true --controllers='*' \
    --service-cluster-ip-range=10.0.0.0/24 --v=1
  launch kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --v=1
  # Ready for workloads: pods need the default ServiceAccount, which the controller-manager creates.
  until "$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" get serviceaccount default -n default >/dev/null 2>&1; do
    alive_or_die kube-controller-manager || false
    alive_or_die kube-scheduler || false
    [ "$(date +%s)" -lt "$deadline" ] || { log "default ServiceAccount not created in time"; false; }
    sleep 0.2
  done
  trap - ERR
  if [ -n "${WATCH_PID:-}" ]; then
    # Owner watchdog: when the process that started us dies (a killed test run), stop the cluster.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -d "$3/pids" ]; do sleep 1; done; [ -d "$3/pids" ] && exec "$2" stop "$3"' \
      watchdog "$WATCH_PID" "$here/cluster.sh" "$dir" >/dev/null 2>&1 < /dev/null &
  fi
  log "cluster ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms: https://127.0.0.1:$APISERVER_PORT (KUBECONFIG=$dir/admin.kubeconfig)"
}

do_stop() {
  # The Kubernetes components stop in parallel (the API server's graceful shutdown takes
  # seconds); etcd last, once nothing talks to it.
  local c
  for c in kube-scheduler kube-controller-manager kube-apiserver; do stop_one "$c" & done
  wait
  stop_one etcd
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  stop-apiserver) stop_one kube-apiserver ;;
  start-apiserver)
    need_bins
    # shellcheck disable=SC1091
    . "$dir/cluster.env"
    start_apiserver
    wait_apiserver ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
