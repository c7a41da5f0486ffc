#!/usr/bin/env python3
"""Soak test of `wasmlet serve` and `wasmlet pull` on loopback (driven by tools/soak.sh).

Runs for a bounded time:
  * `wasmlet serve` on a config that mixes the example apps (examples/) with hostile guests
    (tests/guests: an endless loop, a memory hog, a trap, unbounded recursion) and one module
    pulled from a registry at start (an oci: reference);
  * a local registry (Debian's docker-registry) behind tests/oci/proxy.py; a puller pulls a
    pushed module into a fresh store again and again while the proxy injects a fault some of
    the time (500s and 429s that retries absorb; tampered, wrong, truncated and stalled blobs
    that must fail without storing anything);
  * client threads sending normal and hostile requests over keep-alive connections;
  * a sampler reading the server's RSS every --sample seconds.
Every outcome is classified: ok (2xx from normal routes, successful pulls), expected error
(5xx from hostile routes, failed pulls under a fatal fault) or unexpected (anything else:
wrong status, connection error, a pull that failed without a fault or succeeded despite one,
a corrupt blob in the store). Exit status 1 when anything unexpected happened, the server
died or did not shut down cleanly, or RSS grew: the last sample must be <= the peak during
warm-up * 1.2 + 16 MiB (warm-up: min(30 s, 25% of the run), and every route answered 3 times;
enforced for runs of 60 s or more).
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

RSS_FACTOR = 1.2
RSS_SLACK = 16 << 20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def parse_duration(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (want e.g. 60s, 10m)")
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {}
        self.unexpected_samples = []

    def add(self, key, n=1):
        with self.lock:
            self.c[key] = self.c.get(key, 0) + n

    def unexpected(self, what):
        with self.lock:
            self.c["unexpected"] = self.c.get("unexpected", 0) + 1
            if len(self.unexpected_samples) < 20:
                self.unexpected_samples.append(what)

    def get(self, key):
        with self.lock:
            return self.c.get(key, 0)


# route -> (expected kind, weight). "ok": 200 with a body; "hostile": any 5xx.
NORMAL = {"/hello": 30, "/env/soak?x=1": 20, "/static/index.html": 20, "/go": 10, "/oci-hello": 10}
HOSTILE = {"/loop": 2, "/hog": 2, "/trap": 3, "/recursion": 3}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--duration", type=parse_duration, default=600)
    ap.add_argument("--sample", type=parse_duration, default=5, help="RSS sampling interval")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--pull-interval", type=parse_duration, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    build, source = os.path.abspath(args.build_dir), os.path.abspath(args.source_dir)
    wasmlet = os.path.join(build, "src/exe/wasmlet")
    guests, examples = os.path.join(build, "guests"), os.path.join(build, "examples")
    for path in [wasmlet] + [os.path.join(guests, g) for g in ("loop.wasm", "memory_hog.wasm", "trap.wasm", "recursion.wasm")] + \
            [os.path.join(examples, e) for e in ("hello.wasm", "env.wasm", "static.wasm", "go_hello.wasm")]:
        if not os.path.exists(path):
            sys.exit(f"soak: {path} is missing: build first (tools/build.sh)")
    if not shutil.which("docker-registry"):
        sys.exit("soak: docker-registry is not installed (tools/install-deps.sh)")

    work = tempfile.mkdtemp(prefix="wasmlet-soak-")
    children = []
    counters = Counters()
    stop = threading.Event()
    env = dict(os.environ, HOME=work + "/home", XDG_DATA_HOME=work + "/data", XDG_CACHE_HOME=work + "/cache",
               DOCKER_CONFIG=work + "/docker", WASMLET_REGISTRY_STALL_TIMEOUT="1s")
    for var in ("WASMLET_REGISTRY_USERNAME", "WASMLET_REGISTRY_PASSWORD"):
        env.pop(var, None)
    os.makedirs(work + "/home")

    def spawn(argv, log, **kw):
        p = subprocess.Popen(argv, stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True, **kw)
        children.append(p)
        return p

    server = None
    try:
        # --- registry + fault proxy ---
        reg_port = free_port()
        os.makedirs(work + "/registry")
        with open(work + "/registry/config.yml", "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                    f"  filesystem:\n    rootdirectory: {work}/registry/storage\nhttp:\n  addr: 127.0.0.1:{reg_port}\n")
        spawn(["docker-registry", "serve", work + "/registry/config.yml"], work + "/registry.log")
        if not wait_port(reg_port, 15):
            sys.exit("soak: docker-registry did not start; see " + work + "/registry.log")
        proxy = subprocess.Popen([sys.executable, os.path.join(source, "tests/oci/proxy.py"), str(reg_port), "pass"],
                                 stdout=subprocess.PIPE, stderr=open(work + "/proxy.log", "ab"), start_new_session=True)
        children.append(proxy)
        proxy_port = int(proxy.stdout.readline())
        wait_port(proxy_port, 10)

        def set_mode(mode):
            c = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
            c.request("PUT", "/_mode", body=mode.encode())
            body = c.getresponse().read().decode()
            c.close()
            if body != mode:
                raise RuntimeError(f"proxy refused mode {mode!r}: {body!r}")

        module = os.path.join(examples, "go_hello.wasm")
        module_digest = "sha256:" + hashlib.sha256(open(module, "rb").read()).hexdigest()
        ref = f"127.0.0.1:{reg_port}/soak/go:v1"
        for image, ref_ in ((module, ref), (os.path.join(examples, "hello.wasm"), f"127.0.0.1:{reg_port}/soak/hello:v1")):
            r = subprocess.run([wasmlet, "push", image, ref_], env=env, capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                sys.exit("soak: push failed: " + r.stderr)

        # --- the server ---
        with open(work + "/modules.toml", "w") as f:
            f.write(f"""# wasmlet soak: normal apps and hostile guests
[[module]]
route = "/hello"
module = "{examples}/hello.wasm"
[[module]]
route = "/env/..."
module = "{examples}/env.wasm"
environment = {{ GREETING = "soak" }}
[[module]]
route = "/static/..."
module = "{examples}/static.wasm"
volumes = {{ "/public" = "{examples}/public" }}
[[module]]
route = "/go"
module = "{examples}/go_hello.wasm"
[[module]]
route = "/oci-hello"
module = "oci:127.0.0.1:{reg_port}/soak/hello:v1"
[[module]]
route = "/loop"
module = "{guests}/loop.wasm"
timeout = "1s"
[[module]]
route = "/hog"
module = "{guests}/memory_hog.wasm"
memory_limit = "16MiB"
[[module]]
route = "/trap"
module = "{guests}/trap.wasm"
[[module]]
route = "/recursion"
module = "{guests}/recursion.wasm"
""")
        server = subprocess.Popen([wasmlet, "--log-level", "warn", "serve", "-c", work + "/modules.toml",
                                   "-l", "127.0.0.1:0", "--no-watch"],
                                  stdout=open(work + "/serve.out", "wb"), stderr=open(work + "/serve.log", "wb"),
                                  env=env, start_new_session=True)
        children.append(server)
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline and server.poll() is None:
            m = re.search(r"Listening on http://127\.0\.0\.1:(\d+)", open(work + "/serve.out").read())
            if m:
                port = int(m.group(1))
            else:
                time.sleep(0.1)
        if port is None:
            sys.exit("soak: wasmlet serve did not start; see " + work + "/serve.log")
        static_files = os.listdir(os.path.join(examples, "public"))
        if "index.html" not in static_files:
            NORMAL.pop("/static/index.html")
            NORMAL["/static/" + static_files[0]] = 20

        routes = [(r, "ok") for r in NORMAL for _ in range(NORMAL[r])] + \
                 [(r, "hostile") for r in HOSTILE for _ in range(HOSTILE[r])]

        # --- clients ---
        def client(seed):
            rnd = random.Random(seed)
            conn = None
            while not stop.is_set():
                route, kind = rnd.choice(routes)
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request("GET", route)
                    resp = conn.getresponse()
                    body = resp.read()
                    status = resp.status
                    if resp.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as e:
                    if conn is not None:
                        conn.close()
                    conn = None
                    if stop.is_set():
                        break
                    counters.add("requests")
                    counters.unexpected(f"GET {route}: {type(e).__name__}: {e}")
                    continue
                counters.add("requests")
                counters.add("route " + route)
                if 200 <= status < 300:
                    counters.add("2xx")
                if kind == "ok" and status == 200 and body:
                    counters.add("ok")
                elif kind == "hostile" and status >= 500:
                    counters.add("expected_5xx")
                else:
                    counters.unexpected(f"GET {route}: HTTP {status}: {body[:120]!r}")
            if conn is not None:
                conn.close()

        # --- puller: (proxy mode, must succeed) ---
        scenarios = [("pass", True), ("pass", True), ("fail:2", True), ("throttle:1:1", True),
                     ("tamper", False), ("wrongblob", False), ("truncate", False), ("wrongmanifest", False),
                     ("stall", False)]

        pulls_running = []

        def puller():
            rnd = random.Random(7)
            n = 0
            while not stop.is_set():
                mode, must_succeed = scenarios[n % len(scenarios)] if n < len(scenarios) else rnd.choice(scenarios)
                n += 1
                set_mode(mode)
                store = f"{work}/pulls/{n}"
                p = subprocess.Popen([wasmlet, "pull", "--data-dir", store, f"127.0.0.1:{proxy_port}/soak/go:v1"],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
                pulls_running.append(p)
                try:
                    out, err = p.communicate(timeout=180)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.communicate()
                    if not stop.is_set():
                        counters.unexpected(f"pull under {mode}: hung for 180 s")
                    continue
                finally:
                    pulls_running.remove(p)
                if stop.is_set() and p.returncode < 0:
                    break  # killed at the end of the run: not counted
                r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
                counters.add("pulls")
                blob = f"{store}/blobs/sha256/{module_digest[7:]}"
                if must_succeed:
                    ok = r.returncode == 0 and os.path.exists(blob) and \
                        hashlib.sha256(open(blob, "rb").read()).hexdigest() == module_digest[7:]
                    if ok:
                        counters.add("pulls_ok")
                    else:
                        counters.unexpected(f"pull under {mode}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
                else:
                    tmp = f"{store}/tmp"
                    clean = not os.path.exists(blob) and not os.path.isdir(f"{store}/tags") or \
                        (os.path.isdir(f"{store}/tags") and not os.listdir(f"{store}/tags") and not os.path.exists(blob))
                    clean = clean and (not os.path.isdir(tmp) or not os.listdir(tmp))
                    if r.returncode == 1 and clean:
                        counters.add("pulls_failed_expected")
                    else:
                        counters.unexpected(f"pull under {mode}: exit {r.returncode}, store clean={clean}: "
                                            f"{r.stderr.strip()[-300:]}")
                shutil.rmtree(store, ignore_errors=True)
                stop.wait(args.pull_interval)
            set_mode("pass")

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
        threads.append(threading.Thread(target=puller, daemon=True))
        start = time.monotonic()
        for t in threads:
            t.start()

        # --- RSS samples ---
        # Warm-up: at least min(30 s, 25% of the run) and until every route answered 3 times
        # (every module instantiated, pools and caches filled), at most half the run. The
        # baseline is the peak RSS seen during warm-up (RSS swings with the instances alive).
        warmup_min, warmup_max = min(30.0, args.duration * 0.25), args.duration * 0.5
        warmup = None
        samples = []  # (t, rss)
        died = False
        while True:
            now = time.monotonic() - start
            rss = rss_bytes(server.pid)
            if rss is None or server.poll() is not None:
                died = True
                break
            samples.append((now, rss))
            if warmup is None and now >= warmup_min and (
                    now >= warmup_max or all(counters.get("route " + r) >= 3 for r, _ in routes)):
                warmup = now
            print(f"soak: t={now:6.0f}s rss={rss / 2**20:7.1f} MiB requests={counters.get('requests')} "
                  f"pulls={counters.get('pulls')} unexpected={counters.get('unexpected')}", flush=True)
            if now >= args.duration:
                break
            time.sleep(min(args.sample, max(0.1, args.duration - now)))
        stop.set()
        for p in list(pulls_running):  # a pull in flight at the end is not counted
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        for t in threads:
            t.join(timeout=60)
        server.send_signal(signal.SIGTERM)
        try:
            shutdown_code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            shutdown_code = "timeout"
        elapsed = time.monotonic() - start

        if warmup is None:
            warmup = samples[-1][0] if samples else 0
        rss_start = max((s[1] for s in samples if s[0] <= warmup), default=0)
        rss_end = samples[-1][1] if samples else 0
        limit = rss_start * RSS_FACTOR + RSS_SLACK
        c = counters
        print()
        print(f"soak summary ({elapsed:.0f} s, {args.clients} clients, work dir {work})")
        print(f"  requests sent:        {c.get('requests')}")
        print(f"  2xx:                  {c.get('2xx')}")
        print(f"  expected errors:      {c.get('expected_5xx')} (5xx from hostile routes)")
        print(f"  pulls:                {c.get('pulls')} ({c.get('pulls_ok')} ok, "
              f"{c.get('pulls_failed_expected')} failed as expected under a fatal fault)")
        print(f"  unexpected errors:    {c.get('unexpected')}")
        for s in c.unexpected_samples:
            print(f"    - {s}")
        print(f"  RSS at start (peak during the {warmup:.0f} s warm-up): {rss_start / 2**20:.1f} MiB; "
              f"at the end: {rss_end / 2**20:.1f} MiB; "
              f"peak {max((s[1] for s in samples), default=0) / 2**20:.1f} MiB")
        print(f"  RSS rule: end <= start * {RSS_FACTOR} + {RSS_SLACK >> 20} MiB = {limit / 2**20:.1f} MiB")
        failures = []
        if c.get("unexpected"):
            failures.append(f"{c.get('unexpected')} unexpected errors")
        if died:
            failures.append("the server died")
        judge_rss = args.duration >= 60
        if not judge_rss:
            print("  RSS rule not enforced: runs under 60 s are too short to tell growth from warm-up")
        if judge_rss and not died and rss_end > limit:
            failures.append(f"RSS grew: {rss_end / 2**20:.1f} MiB > {limit / 2**20:.1f} MiB")
        if shutdown_code != 0 and not died:
            failures.append(f"the server did not shut down cleanly (exit {shutdown_code})")
        if c.get("requests") == 0 or c.get("pulls") == 0:
            failures.append("no traffic")
        print("soak: " + ("FAIL: " + "; ".join(failures) if failures else "PASS"))
        return 1 if failures else 0
    finally:
        stop.set()
        for p in children:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
