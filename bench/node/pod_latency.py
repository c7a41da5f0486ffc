#!/usr/bin/env python3
"""Pod latency and density of `wasmlet node` against the real test control plane.

Starts the cluster (tools/testcluster, binaries from build.sh's cache) and one `wasmlet node`
in a temp dir, then measures, with an API watch (client-side timestamps, ms resolution):
  1. pod create -> Running over N pods (a `forever` guest, cached image), sequential;
  2. pod create -> Succeeded (restartPolicy Never, prints and exits);
  3. Job create -> Complete condition (adds the job controller);
  4. agent RSS with 100 idle pods (each sleeps and ticks once a second).
Usage: bench/node/pod_latency.py --wasmlet BUILD/src/exe/wasmlet --guests BUILD/guests [-n 30]
"""
import argparse, http.client, json, os, signal, ssl, statistics, subprocess, sys, tempfile, threading, time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = "wasm-node-1"


def pct(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(values) - 1)
    return values[f] + (values[c] - values[f]) * (k - f)


class Api:
    def __init__(self, d, port):
        self.ctx = ssl.create_default_context(cafile=f"{d}/pki/ca.crt")
        self.ctx.load_cert_chain(f"{d}/pki/admin.crt", f"{d}/pki/admin.key")
        self.port = port

    def conn(self, timeout=30):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=timeout)

    def call(self, method, path, body=None):
        c = self.conn()
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, (json.loads(data) if data else None)


class Watcher(threading.Thread):
    """Records when each object of a collection first satisfies pred(object)."""

    def __init__(self, api, path, pred):
        super().__init__(daemon=True)
        self.api, self.path, self.pred = api, path, pred
        self.seen = {}
        self.cv = threading.Condition()

    def run(self):
        c = self.api.conn(timeout=None)
        c.request("GET", self.path + ("&" if "?" in self.path else "?") + "watch=1")
        r = c.getresponse()
        while True:
            chunk = r.readline()
            if not chunk:
                return
            ev = json.loads(chunk)
            obj = ev.get("object", {})
            name = obj.get("metadata", {}).get("name")
            if name and name not in self.seen and self.pred(obj):
                with self.cv:
                    self.seen[name] = time.monotonic()
                    self.cv.notify_all()

    def wait(self, name, timeout=60):
        with self.cv:
            ok = self.cv.wait_for(lambda: name in self.seen, timeout)
            return self.seen.get(name) if ok else None


def spec(args, policy):
    return {"restartPolicy": policy, "nodeSelector": {"kubernetes.io/arch": "wasm32-wasi"},
            "tolerations": [{"key": "kubernetes.io/arch", "operator": "Exists"}],
            "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "wasmlet.test/podtool:v1", "args": args}]}


def pod(name, args, policy):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec(args, policy)}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wasmlet", required=True)
    ap.add_argument("--guests", required=True)
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--idle", type=int, default=100)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="wasmlet-node-bench-")
    cluster = f"{SRC}/tools/testcluster/cluster.sh"
    node = None
    try:
        t0 = time.monotonic()
        subprocess.run([cluster, "start", d], check=True, env=dict(os.environ, NODE_NAMES=NODE))
        print(f"cluster start: {(time.monotonic() - t0) * 1000:.0f} ms")
        env = dict(l.strip().split("=", 1) for l in open(f"{d}/cluster.env") if "=" in l)
        api = Api(d, int(env["APISERVER_PORT"]))
        log = open(f"{d}/node.log", "w")
        node = subprocess.Popen([a.wasmlet, "node", "--kubeconfig", f"{d}/node-{NODE}.kubeconfig",
                                 "--node-name", NODE, "--node-ip", "127.0.0.1", "--kubelet-address", "127.0.0.1",
                                 "--kubelet-port", env["KUBELET_PORT"], "--data-dir", f"{d}/node-data",
                                 "--module-cache", f"{d}/module-cache", "--image-data-dir", f"{d}/images",
                                 "--local-images", a.guests, "--max-pods", str(a.idle + 10)],
                                stdout=log, stderr=log)
        for _ in range(200):
            s, n = api.call("GET", f"/api/v1/nodes/{NODE}")
            if s == 200 and any(c["type"] == "Ready" and c["status"] == "True"
                                for c in n.get("status", {}).get("conditions", [])):
                break
            time.sleep(0.1)
        api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
        # The default ServiceAccount of a new namespace appears asynchronously.
        for _ in range(100):
            if api.call("GET", "/api/v1/namespaces/bench/serviceaccounts/default")[0] == 200:
                break
            time.sleep(0.1)
        phase = lambda ph: (lambda o: o.get("status", {}).get("phase") == ph)
        running = Watcher(api, "/api/v1/namespaces/bench/pods", phase("Running")); running.start()
        succeeded = Watcher(api, "/api/v1/namespaces/bench/pods", phase("Succeeded")); succeeded.start()
        complete = Watcher(api, "/apis/batch/v1/namespaces/bench/jobs",
                           lambda o: any(c["type"] == "Complete" and c["status"] == "True"
                                         for c in o.get("status", {}).get("conditions", []) or []))
        complete.start()
        time.sleep(0.5)
        # Warm the image and compiled-module caches.
        api.call("POST", "/api/v1/namespaces/bench/pods", pod("warm", ["print:warm"], "Never"))
        succeeded.wait("warm")

        def measure(kind, make, watcher, n):
            lat = []
            for i in range(n):
                name = f"{kind}-{i}"
                t = time.monotonic()
                path, body = make(name)
                s, r = api.call("POST", path, body)
                assert s == 201, (s, r)
                done = watcher.wait(name)
                if done is None:
                    print(f"  {name}: timed out", file=sys.stderr)
                    continue
                lat.append((done - t) * 1000)
            print(f"{kind}: n={len(lat)} p50={pct(lat, 50):.0f} ms p90={pct(lat, 90):.0f} ms "
                  f"min={min(lat):.0f} max={max(lat):.0f}")
            return lat

        measure("run", lambda n: ("/api/v1/namespaces/bench/pods", pod(n, ["forever"], "Always")), running, a.n)
        measure("succeed", lambda n: ("/api/v1/namespaces/bench/pods", pod(n, ["print:done"], "Never")), succeeded, a.n)
        measure("job", lambda n: ("/apis/batch/v1/namespaces/bench/jobs",
                                  {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": n},
                                   "spec": {"backoffLimit": 0, "template": {"spec": spec(["print:done"], "Never")}}}),
                complete, a.n)
        # Density: delete everything, then `idle` sleeping pods.
        api.call("DELETE", "/api/v1/namespaces/bench/pods")
        api.call("DELETE", "/apis/batch/v1/namespaces/bench/jobs?propagationPolicy=Background")
        for _ in range(300):
            s, l = api.call("GET", "/api/v1/namespaces/bench/pods")
            if not l["items"]:
                break
            time.sleep(0.2)
        base = rss_kib(node.pid)
        for i in range(a.idle):
            api.call("POST", "/api/v1/namespaces/bench/pods", pod(f"idle-{i}", ["forever"], "Always"))
        ok = sum(1 for i in range(a.idle) if running.wait(f"idle-{i}", 120) is not None)
        time.sleep(2)
        rss = rss_kib(node.pid)
        print(f"agent RSS: {base / 1024:.1f} MiB with 0 pods, {rss / 1024:.1f} MiB with {ok} idle pods "
              f"({(rss - base) / max(ok, 1):.0f} KiB per pod)")
    finally:
        if node:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(10)
            except subprocess.TimeoutExpired:
                node.kill()
        subprocess.run([cluster, "stop", d])
        subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main()
