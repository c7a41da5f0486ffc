#!/usr/bin/env python3
"""TCP proxy with a kill switch, between `wasmlet node` and kube-apiserver (tests/node only).

usage: tcp_proxy.py UPSTREAM_PORT
Listens on 127.0.0.1 (a port chosen by the kernel) and forwards every connection to
127.0.0.1:UPSTREAM_PORT byte for byte (TLS passes through untouched). Prints
"<proxy port> <control port>" as the first line of stdout. The control port takes one
command per connection and answers "ok <open connections>\\n":
  cut    close every open connection (mid-watch, mid-request)
  down   cut, and close new connections at once (the API server is unreachable)
  up     forward new connections again
  count  just report
"""
import select
import socket
import sys
import threading

UPSTREAM = int(sys.argv[1])
lock = threading.Lock()
conns = set()  # sockets of open forwarded connections (both sides)
state = {"down": False}


def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def cut_all():
    with lock:
        victims = list(conns)
        conns.clear()
    for c in victims:
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        c.close()


def pump(a, b):
    try:
        while True:
            r, _, _ = select.select([a, b], [], [], 1.0)
            with lock:
                if a not in conns or b not in conns:
                    return
            for src in r:
                data = src.recv(65536)
                if not data:
                    return
                (b if src is a else a).sendall(data)
    except OSError:
        pass
    finally:
        with lock:
            conns.discard(a)
            conns.discard(b)
        for c in (a, b):
            try:
                c.close()
            except OSError:
                pass


def serve(srv):
    while True:
        client, _ = srv.accept()
        with lock:
            down = state["down"]
        if down:
            client.close()
            continue
        try:
            upstream = socket.create_connection(("127.0.0.1", UPSTREAM), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        with lock:
            conns.add(client)
            conns.add(upstream)
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()


def control(ctl):
    while True:
        c, _ = ctl.accept()
        with c:
            command = c.recv(100).decode().strip()
            if command == "down":
                with lock:
                    state["down"] = True
                cut_all()
            elif command == "up":
                with lock:
                    state["down"] = False
            elif command == "cut":
                cut_all()
            with lock:
                n = len(conns) // 2
            c.sendall(f"ok {n}\n".encode())


srv, ctl = listener(), listener()
threading.Thread(target=serve, args=(srv,), daemon=True).start()
print(srv.getsockname()[1], ctl.getsockname()[1], flush=True)
control(ctl)
