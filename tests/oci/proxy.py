#!/usr/bin/env python3
"""Fault-injecting HTTP proxy in front of a test registry (tests/oci and tools/soak.sh).

usage: proxy.py UPSTREAM_PORT MODE
  MODE: pass              forward everything
        tamper            flip one byte in the middle of every blob body served
        fail:N            answer the first N /v2/<repo>/... requests with 500, then forward
        throttle:N:SECS   answer the first N /v2/<repo>/... requests with 429 and
                          "Retry-After: SECS", then forward
        slow:BYTES_PER_S  stream blob bodies at this rate
        stall             blob bodies: send the headers and the first 1000 bytes, then nothing
                          (until the mode changes or 120 s pass; then the connection is closed)
        truncate          blob bodies: send the full Content-Length but only half the bytes,
                          then close the connection
        wrongblob         blob bodies: serve other bytes of the same length (every byte + 1)
        wrongmanifest     manifests: append a space to the body (still valid JSON) and keep
                          the registry's Docker-Content-Digest, so the digest does not match
        token:USER:PASS   Bearer gatekeeper: /token issues a token for Basic USER:PASS,
                          /v2/... needs "Authorization: Bearer <token>"
Prints the port it listens on (127.0.0.1, chosen by the kernel) as the first line of stdout.
GET /_stats returns {"path": count} of forwarded requests as JSON.
PUT /_mode with a MODE as the body switches the mode at once (fail/throttle counters restart);
GET /_mode returns the current mode.
"""
import http.client
import http.server
import json
import base64
import sys
import threading
import time

UPSTREAM = int(sys.argv[1])
TOKEN = "t0k3n-for-tests"
lock = threading.Lock()
stats = {}
state = {"mode": "", "left": 0}
mode_changed = threading.Condition(lock)


def set_mode(mode):
    # Called with `lock` held.
    state["mode"] = mode
    parts = mode.split(":")
    state["left"] = int(parts[1]) if parts[0] in ("fail", "throttle") and len(parts) > 1 else 0
    mode_changed.notify_all()


with lock:
    set_mode(sys.argv[2])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path
        if path == "/_stats":
            with lock:
                return self.reply(200, json.dumps(stats).encode())
        if path == "/_mode":
            with lock:
                if self.command == "PUT":
                    set_mode(body.decode().strip())
                return self.reply(200, state["mode"].encode())
        with lock:
            mode = state["mode"]
        kind = mode.split(":")[0]
        if kind == "token":
            _, user, password = mode.split(":", 2)
            if path.startswith("/token"):
                want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                if self.headers.get("Authorization") != want:
                    return self.reply(401, b'{"details":"bad credentials"}')
                return self.reply(200, json.dumps({"token": TOKEN}).encode(),
                                  [("Content-Type", "application/json")])
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                repo = path[4:].split("/manifests/")[0].split("/blobs/")[0]
                port = self.server.server_address[1]
                challenge = (f'Bearer realm="http://127.0.0.1:{port}/token",'
                             f'service="wasmlet-test",scope="repository:{repo}:pull"')
                return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                                  [("WWW-Authenticate", challenge)])
        if kind in ("fail", "throttle") and path.startswith("/v2/") and len(path) > 4:
            with lock:
                fail = state["mode"] == mode and state["left"] > 0
                state["left"] -= 1 if fail else 0
            if fail and kind == "fail":
                return self.reply(500, b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}')
            if fail:
                return self.reply(429, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]}',
                                  [("Retry-After", mode.split(":")[2])])
        with lock:
            key = self.command + " " + path.split("?")[0]
            stats[key] = stats.get(key, 0) + 1
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("connection", "authorization")}
        conn.request(self.command, path, body=body if body or self.command in ("PUT", "POST", "PATCH") else None,
                     headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        is_blob = self.command == "GET" and "/blobs/sha256:" in path and resp.status == 200
        is_manifest = self.command == "GET" and "/manifests/" in path and resp.status == 200
        if is_blob and kind == "tamper" and data:
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
        if is_blob and kind == "wrongblob":
            data = bytes((b + 1) & 0xFF for b in data)
        if is_manifest and kind == "wrongmanifest":
            data = data + b" "
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if is_blob and kind == "slow":
            rate = int(mode.split(":")[1])
            chunk = max(1, rate // 20)
            for i in range(0, len(data), chunk):
                self.wfile.write(data[i:i + chunk])
                self.wfile.flush()
                time.sleep(0.05)
        elif is_blob and kind == "stall":
            self.wfile.write(data[:min(1000, len(data) // 2)])
            self.wfile.flush()
            deadline = time.monotonic() + 120
            with lock:
                while state["mode"] == mode and time.monotonic() < deadline:
                    mode_changed.wait(deadline - time.monotonic())
            self.close_connection = True
        elif is_blob and kind == "truncate":
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
