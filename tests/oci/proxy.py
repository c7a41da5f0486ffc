#!/usr/bin/env python3
"""Fault-injecting HTTP proxy in front of a test registry (tests/oci only).

usage: proxy.py UPSTREAM_PORT MODE
  MODE: pass            forward everything
        tamper          flip one byte in the middle of every blob body served
        fail:N          answer the first N /v2/<repo>/... requests with 500, then forward
        slow:BYTES_PER_S  stream blob bodies at this rate
        token:USER:PASS Bearer gatekeeper: /token issues a token for Basic USER:PASS,
                        /v2/... needs "Authorization: Bearer <token>"
Prints the port it listens on (127.0.0.1, chosen by the kernel) as the first line of stdout.
GET /_stats returns {"path": count} of forwarded requests as JSON.
"""
import http.client
import http.server
import json
import base64
import sys
import threading
import time

UPSTREAM = int(sys.argv[1])
MODE = sys.argv[2]
TOKEN = "t0k3n-for-tests"
lock = threading.Lock()
stats = {}
failures_left = int(MODE.split(":")[1]) if MODE.startswith("fail:") else 0


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
        global failures_left
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path
        if path == "/_stats":
            with lock:
                return self.reply(200, json.dumps(stats).encode())
        if MODE.startswith("token:"):
            _, user, password = MODE.split(":", 2)
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
        if MODE.startswith("fail:") and path.startswith("/v2/") and len(path) > 4:
            with lock:
                fail = failures_left > 0
                failures_left -= 1 if fail else 0
            if fail:
                return self.reply(500, b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}')
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
        if is_blob and MODE == "tamper" and data:
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
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
        if is_blob and MODE.startswith("slow:"):
            rate = int(MODE.split(":")[1])
            chunk = max(1, rate // 20)
            for i in range(0, len(data), chunk):
                self.wfile.write(data[i:i + chunk])
                self.wfile.flush()
                time.sleep(0.05)
        else:
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
