#!/usr/bin/env python3
"""Fallback recording TCP proxy (stdlib only), same CLI as `qmig record`:

    record.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT --out DIR

Every accepted connection is forwarded to the upstream and recorded as
DIR/conn<N>.qmtrace in the QMIGTRC1 container (TRACE-FORMAT.md): N is the accept
order, direction 0 = client (migration source) -> upstream (destination),
direction 1 = back. Records: DATA (1) per read, EOF (2) on a half-close,
ERROR (3) with the error text. Runs until SIGTERM/SIGINT, then flushes and exits 0.
capture.py uses it only when the qmig binary has no `record` subcommand.
"""

import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

T0 = time.monotonic_ns()


class Trace:
    def __init__(self, path, header):
        self.f = open(path, "wb")
        self.lock = threading.Lock()
        h = json.dumps(header).encode()
        self.f.write(b"QMIGTRC1" + struct.pack("<I", len(h)) + h)
        self.f.flush()

    def rec(self, kind, d, payload=b""):
        with self.lock:
            self.f.write(struct.pack("<BBQI", kind, d, time.monotonic_ns(), len(payload)) + payload)
            self.f.flush()

    def close(self):
        with self.lock:
            self.f.close()


def pump(a, b, d, tr, done):
    try:
        while True:
            try:
                data = a.recv(65536)
            except OSError as e:
                tr.rec(3, d, str(e).encode())
                break
            if not data:
                tr.rec(2, d)
                break
            tr.rec(1, d, data)
            try:
                b.sendall(data)
            except OSError as e:
                tr.rec(3, d, ("write to peer: %s" % e).encode())
                break
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    finally:
        done.release()


def handle(idx, c, addr, up, out):
    try:
        u = socket.create_connection(up, timeout=10)
        u.settimeout(None)
    except OSError as e:
        tr = Trace(os.path.join(out, "conn%d.qmtrace" % idx), {"conn_index": idx, "error": str(e)})
        tr.rec(3, 0, ("connect upstream: %s" % e).encode())
        tr.close()
        c.close()
        return
    hdr = {"conn_index": idx, "client": "%s:%d" % addr, "upstream": "%s:%d" % up,
           "t_accept_ns": time.monotonic_ns(), "label": "recorded by vectors/tools/record.py"}
    tr = Trace(os.path.join(out, "conn%d.qmtrace" % idx), hdr)
    done = threading.Semaphore(0)
    for a, b, d in ((c, u, 0), (u, c, 1)):
        threading.Thread(target=pump, args=(a, b, d, tr, done), daemon=True).start()
    done.acquire()
    done.acquire()
    tr.close()
    c.close()
    u.close()


def hostport(s):
    h, p = s.rsplit(":", 1)
    return (h, int(p))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(hostport(a.listen))
    ls.listen(16)
    idx = 0
    while True:
        c, addr = ls.accept()
        threading.Thread(target=handle, args=(idx, c, addr, hostport(a.upstream), a.out),
                         daemon=True).start()
        idx += 1


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
