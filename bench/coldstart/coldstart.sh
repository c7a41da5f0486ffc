#!/usr/bin/env bash
# Cold start (issue 6): time to first byte of the first request to an app that was never
# invoked, on a freshly started `wasmlet serve` (already listening, app untouched):
#   (a) its compiled artifact is in the module cache (filled beforehand by `serve --check`);
#   (b) nothing is cached, the first request compiles it; then the server is restarted on that
#       cache and the first request is timed again (the compile is kept across restarts).
# Apps: report.c here (~120 KB as wasm: regex, stdio, math, locale), and the ~2.8 MB Go WAGI
# example (examples/go, the same Go toolchain and size class as tests/guests/go).
# Peer: native CGI, the same program compiled natively and run by fcgiwrap behind nginx (the
# setup of bench/gateway/bench.sh); every CGI request is a first request (a new process).
# Targets: (a) first byte <= 1 ms; (b) report the compile cost and show it is cached.
# Prints medians of RUNS and writes $RESULTS_DIR/coldstart.csv.
# Usage: bench/coldstart/coldstart.sh   (env: BUILD_DIR, RUNS=5, RESULTS_DIR)
# Needs: nginx (nginx-light), fcgiwrap, curl, go.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${BUILD_DIR:-$root/build}"
runs="${RUNS:-5}"
results="${RESULTS_DIR:-$root/bench/results/latest}"
mkdir -p "$results"
for tool in nginx fcgiwrap curl python3; do
  command -v "$tool" >/dev/null || { echo "coldstart: '$tool' not found (apt-get install nginx-light fcgiwrap curl)" >&2; exit 2; }
done
go="$(command -v go || echo /usr/local/go/bin/go)"
cmake --build "$build" --target wasmlet examples guest_coldstart_report native_coldstart_report >/dev/null
wasmlet="$build/src/exe/wasmlet"

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  # fcgiwrap's children outlive their parent: end them by parent id.
  [ -n "${fcgiwrap_pid:-}" ] && { pkill -P "$fcgiwrap_pid" 2>/dev/null || true; kill "$fcgiwrap_pid" 2>/dev/null || true; }
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

source "$root/bench/lib.sh"
# ttfb_ms URL: first byte of one GET in ms, timed from sending the request on an open
# connection (the TCP handshake and client start-up are not the server's cold start), for
# wasmlet and the CGI peer alike. Fails unless the answer is 200.
ttfb_ms() {
  python3 - "$1" <<'PY'
import socket, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
s = socket.create_connection((u.hostname, u.port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
req = f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode()
t = time.perf_counter()
s.sendall(req)
data = s.recv(65536)
ms = (time.perf_counter() - t) * 1000
while True:
    more = s.recv(65536)
    if not more:
        break
    data += more
status = data.split(b"\r\n", 1)[0]
if b" 200 " not in status + b" ":
    sys.exit(f"coldstart: {sys.argv[1]} answered {status.decode(errors='replace')}")
print(f"{ms:.3f}")
PY
}

cp "$build/guests/coldstart_report.wasm" "$tmp/report.wasm"
cp "$build/examples/go_hello.wasm" "$tmp/go.wasm"
cat >"$tmp/modules.toml" <<TOML
[[module]]
route = "/report"
module = "report.wasm"

[[module]]
route = "/go"
module = "go.wasm"
TOML
declare -A size
size[report]=$(stat -c %s "$tmp/report.wasm")
size[go]=$(stat -c %s "$tmp/go.wasm")

# Starts a lazy-loading server on CACHE, waits for /healthz, prints the first-request TTFB of
# ROUTE, appends the TTFB of a second request (warm: the guest's own run time) to WARMFILE,
# stops the server. The module's load time (cache lookup + map, or compile; from the
# server's debug line "route R: loaded FILE in X ms") is appended to LOADFILE.
first_request() {  # cache route loadfile [warmfile]
  local port; port="$(free_port)"
  "$wasmlet" --log-level debug serve -c "$tmp/modules.toml" --module-cache "$1" -l "127.0.0.1:$port" --no-watch \
    >/dev/null 2>"$tmp/serve.err" &
  server_pid=$!
  wait_http "http://127.0.0.1:$port/healthz"
  ttfb_ms "http://127.0.0.1:$port/$2"
  if [ -n "${4:-}" ]; then ttfb_ms "http://127.0.0.1:$port/$2" >>"$4"; fi
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=""
  sed -n "s|.*route /$2: loaded .* in \([0-9.]*\)ms.*|\1|p" "$tmp/serve.err" | head -1 >>"$3"
}

# (a) precompiled: `serve --check` fills the cache (what an operator does at deploy time).
"$wasmlet" --log-level warn serve --check -c "$tmp/modules.toml" --module-cache "$tmp/cache-warm" >/dev/null
declare -A med
for app in report go; do
  for r in $(seq "$runs"); do first_request "$tmp/cache-warm" "$app" "$tmp/$app.a.load" "$tmp/$app.warm"; done >"$tmp/$app.a"
  for r in $(seq "$runs"); do
    first_request "$tmp/cache-cold-$app-$r" "$app" "$tmp/$app.b.load" >>"$tmp/$app.b"
    # restarted on that cache: the compile is not repeated
    first_request "$tmp/cache-cold-$app-$r" "$app" "$tmp/$app.c.load" >>"$tmp/$app.c"
  done
  for k in a b c a.load b.load c.load warm; do med[$app.$k]="$(median <"$tmp/$app.$k")"; done
done

# Peer: native CGI (fcgiwrap + nginx, as in bench/gateway/bench.sh).
(cd "$root/examples" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$go" build -o "$tmp/native_go" ./go/hello)
cgi_port="$(free_port)"
fcgiwrap -c 2 -s "unix:$tmp/fcgiwrap.sock" &
fcgiwrap_pid=$!
user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"  # workers must reach the private temp dir
cat >"$tmp/nginx.conf" <<NGINX
$user_line
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $tmp/body;
  proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fastcgi;
  uwsgi_temp_path $tmp/uwsgi;
  scgi_temp_path $tmp/scgi;
  server {
    listen 127.0.0.1:$cgi_port;
    location = /report {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $build/bench/coldstart/native_coldstart_report;
      fastcgi_pass unix:$tmp/fcgiwrap.sock;
    }
    location = /go {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $tmp/native_go;
      fastcgi_pass unix:$tmp/fcgiwrap.sock;
    }
  }
}
NGINX
for _ in $(seq 100); do [ -S "$tmp/fcgiwrap.sock" ] && break; sleep 0.01; done
nginx -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon on;' 2>"$tmp/nginx.start.err" || { cat "$tmp/nginx.start.err" >&2; exit 1; }
for app in report go; do
  wait_http "http://127.0.0.1:$cgi_port/$app"
  for r in $(seq "$runs"); do ttfb_ms "http://127.0.0.1:$cgi_port/$app"; done >"$tmp/$app.cgi"
  med[$app.cgi]="$(median <"$tmp/$app.cgi")"
done

echo "coldstart: first request to an untouched app on a fresh server, time to first byte (ms), medians of $runs"
echo "(load: of that time, the module load in the server: cache lookup + map, or compile;"
echo " warm: a second request to the same app, i.e. the guest's own run time plus the gateway)"
printf '%-12s %16s %11s %9s %16s %11s %18s %12s %9s\n' "app" "(a) precompiled" "load" "warm" "(b) compile" "load" \
  "(b) after restart" "native CGI" "(a)/CGI"
declare -A case_name=([report]="c-$(( size[report] / 1024 ))kb" [go]="go-$(( size[go] / 1024 ))kb")
{
  echo "benchmark,case,subject,metric,value,unit"
  for app in report go; do
    c="${case_name[$app]}"
    ratio="$(awk -v a="${med[$app.a]}" -v b="${med[$app.cgi]}" 'BEGIN { printf "%.3f", a / b }')"
    printf '%-12s %16s %11s %9s %16s %11s %18s %12s %9s\n' "$c" "${med[$app.a]}" "${med[$app.a.load]}" "${med[$app.warm]}" \
      "${med[$app.b]}" "${med[$app.b.load]}" "${med[$app.c]}" "${med[$app.cgi]}" "$ratio" >&2
    echo "coldstart,$c,wasmlet,ttfb_precompiled,${med[$app.a]},ms"
    echo "coldstart,$c,wasmlet,load_precompiled,${med[$app.a.load]},ms"
    echo "coldstart,$c,wasmlet,ttfb_warm,${med[$app.warm]},ms"
    echo "coldstart,$c,wasmlet,load_compile,${med[$app.b.load]},ms"
    echo "coldstart,$c,wasmlet,load_after_restart,${med[$app.c.load]},ms"
    echo "coldstart,$c,wasmlet,ttfb_compile,${med[$app.b]},ms"
    echo "coldstart,$c,wasmlet,ttfb_after_restart,${med[$app.c]},ms"
    echo "coldstart,$c,cgi,ttfb,${med[$app.cgi]},ms"
    echo "coldstart,$c,wasmlet,ratio_to_cgi,$ratio,x"
  done
} 2>&1 >"$results/coldstart.csv" | cat
echo "target: (a) <= 1 ms; (b) is the one-time compile, kept in the module cache across restarts"
