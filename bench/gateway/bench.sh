#!/usr/bin/env bash
# Gateway throughput over loopback with wrk (not run in CI):
#   1. wasmlet serve: the C hello WAGI example, a fresh instance per request;
#   2. nginx: a static "hello" file, keep-alive, same connections and duration;
#   3. native CGI: the same hello.c compiled natively, run per request by fcgiwrap behind nginx.
# For each connection count, prints req/s and p50/p99 latency (medians over RUNS runs) and the
# ratios, and writes $RESULTS_DIR/throughput.csv (benchmark,case,subject,metric,value,unit).
# Usage: bench/gateway/bench.sh   (env: BUILD_DIR, DURATION=5s, CONNECTIONS="1 16 64 256",
#                                  THREADS=2, RUNS=3, WASMLET_ARGS="--workers 2", RESULTS_DIR)
# Needs: wrk, nginx (nginx-light), fcgiwrap (apt-get install wrk nginx-light fcgiwrap).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${BUILD_DIR:-$root/build}"
duration="${DURATION:-5s}"
connections="${CONNECTIONS:-1 16 64 256}"
results="${RESULTS_DIR:-$root/bench/results/latest}"
mkdir -p "$results"
threads="${THREADS:-2}"
runs="${RUNS:-3}"

for tool in wrk nginx fcgiwrap python3; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (apt-get install wrk nginx-light fcgiwrap)" >&2; exit 2; }
done
cmake --build "$build" --target wasmlet examples native_cgi_hello >/dev/null

tmp="$(mktemp -d)"
pids=()
cleanup() {
  # fcgiwrap's children outlive their parent: end them by parent id.
  [ -n "${fcgiwrap_pid:-}" ] && pkill -P "$fcgiwrap_pid" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

source "$root/bench/lib.sh"

# 1. wasmlet (warn level: no access log line per request, like nginx's access_log off).
wasmlet_port="$(free_port)"
"$build/src/exe/wasmlet" --log-level warn serve -l "127.0.0.1:$wasmlet_port" \
  --module-cache "$tmp/cache" ${WASMLET_ARGS:-} >"$tmp/wasmlet.out" 2>"$tmp/wasmlet.err" &
pids+=($!)

# 2 + 3. nginx: static file on one port, fcgiwrap on another.
nginx_port="$(free_port)"
cgi_port="$(free_port)"
mkdir -p "$tmp/www"
printf 'Hello from wasmlet!\n' >"$tmp/www/hello"
fcgiwrap -c "$(nproc)" -s "unix:$tmp/fcgiwrap.sock" &
pids+=($!)
fcgiwrap_pid=$!
# As root, nginx workers would run as nobody and could not reach the private temp dir.
user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"
cat >"$tmp/nginx.conf" <<NGINX
$user_line
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/body;
  proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fastcgi;
  uwsgi_temp_path $tmp/uwsgi;
  scgi_temp_path $tmp/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port;
    location = /hello { root $tmp/www; default_type text/plain; }
  }
  server {
    listen 127.0.0.1:$cgi_port;
    location = /hello {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $build/bench/gateway/native_cgi_hello;
      fastcgi_pass unix:$tmp/fcgiwrap.sock;
    }
  }
}
NGINX
nginx -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon on;' 2>"$tmp/nginx.start.err" || { cat "$tmp/nginx.start.err" >&2; exit 1; }

wait_http "http://127.0.0.1:$wasmlet_port/hello"
wait_http "http://127.0.0.1:$nginx_port/hello"
wait_http "http://127.0.0.1:$cgi_port/hello"
for url in "http://127.0.0.1:$wasmlet_port/hello" "http://127.0.0.1:$nginx_port/hello" "http://127.0.0.1:$cgi_port/hello"; do
  body="$(curl -fsS "$url")"
  [ "$body" = "Hello from wasmlet!" ] || { echo "bench: unexpected body from $url: $body" >&2; exit 1; }
done

run_wrk() {  # name url connections -> appends "name connections rps p50 p99" lines
  local name="$1" url="$2" c="$3"
  local t=$(( c < threads ? c : threads ))
  wrk -t"$t" -c"$c" -d1s "$url" >/dev/null  # warm-up
  for i in $(seq 1 "$runs"); do
    wrk -t"$t" -c"$c" -d"$duration" --latency "$url" >"$tmp/wrk-$name-$c-$i.txt"
    python3 - "$name" "$tmp/wrk-$name-$c-$i.txt" "$c" >>"$tmp/results.txt" <<'PY'
import re, sys
name, path, conns = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)", v)
    if m is None: sys.exit(f"bench: cannot parse latency '{v}' in {path}:\n{text}")
    x, u = float(m.group(1)), m.group(2)
    return x / 1000 if u == "us" else x if u == "ms" else x * 1000 if u == "s" else x * 60000
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors: print(f"# {name}: {errors.group(1)} non-2xx responses", file=sys.stderr)
print(name, conns, rps, p50, p99)
PY
  done
}

# Interleaved per connection count, so machine noise hits the three servers alike.
for c in $connections; do
  echo "bench: $c connection(s)..." >&2
  run_wrk wasmlet "http://127.0.0.1:$wasmlet_port/hello" "$c"
  run_wrk nginx "http://127.0.0.1:$nginx_port/hello" "$c"
  run_wrk native_cgi "http://127.0.0.1:$cgi_port/hello" "$c"
done

python3 - "$tmp/results.txt" "$duration" "$threads" "$runs" "$results/throughput.csv" <<'PY'
import statistics, sys
path, duration, threads, runs, csv_path = sys.argv[1:]
rows = {}
for line in open(path):
    name, conns, rps, p50, p99 = line.split()
    rows.setdefault((int(conns), name), []).append((float(rps), float(p50), float(p99)))
med = {k: tuple(statistics.median(v[i] for v in vals) for i in range(3)) for k, vals in rows.items()}
labels = {"wasmlet": "wasmlet serve (C hello, WAGI)", "nginx": "nginx static file",
          "native_cgi": "native CGI (fcgiwrap+nginx)"}
peer = {"wasmlet": "wasmlet", "nginx": "nginx", "native_cgi": "cgi"}
print(f"wrk -d{duration} (threads = min({threads}, connections)), median of {runs} runs, loopback")
print(f"{'conns':>5}  {'server':<30}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
with open(csv_path, "w") as out:
    out.write("benchmark,case,subject,metric,value,unit\n")
    for c in sorted({k[0] for k in med}):
        for n in ("wasmlet", "nginx", "native_cgi"):
            rps, p50, p99 = med[(c, n)]
            print(f"{c:>5}  {labels[n]:<30}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}")
            for metric, v, unit in (("req_per_s", rps, "req/s"), ("p50", p50, "ms"), ("p99", p99, "ms")):
                out.write(f"throughput,c={c},{peer[n]},{metric},{v:.3f},{unit}\n")
        w, x, g = med[(c, "wasmlet")][0], med[(c, "nginx")][0], med[(c, "native_cgi")][0]
        print(f"{'':>5}  wasmlet/nginx = {w / x:.2f} (target >= 0.5)   wasmlet/native CGI = {w / g:.1f}x (target >= 20x)")
        out.write(f"throughput,c={c},wasmlet,ratio_to_nginx,{w / x:.3f},x\n")
        out.write(f"throughput,c={c},wasmlet,ratio_to_cgi,{w / g:.3f},x\n")
print(f"wrote {csv_path}")
PY
