#!/usr/bin/env python3
"""Memory per idle keep-alive connection of a running proxy (issue 24's memory target).

Opens CONNS client connections to the proxy, sends one request on each and reads the whole
answer (so every connection has been through a request and sits in the proxy's keep-alive wait,
as an idle browser or client-pool connection does), waits for the proxy to settle, and reports the
growth of the serving process's resident memory (VmRSS, plus the nginx master's when a second pid
is given) divided by CONNS. It does this twice (CONNS, then 2 x CONNS) and reports the slope
between the two as well, so one-off growth (a first allocation arena, the upstream pool) does not
count against each connection.

Usage: idle_memory.py --pid PID[,PID] --addr HOST:PORT --path /p [--conns N] [--header 'K: V']...
Prints one JSON object: {"conns": N, "rss_before_kib":…, "per_conn_kib":…, "slope_kib":…}.
"""
import argparse
import json
import os
import resource
import socket
import sys
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def read_response(sock):
    """Reads one HTTP/1.1 response with Content-Length or chunked framing; returns the status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        need = int(headers[b"content-length"])
        while len(rest) < need:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside the body")
            rest += chunk
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside the chunked body")
            rest += chunk
    return status


def open_idle(n, host, port, request):
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port))
        s.sendall(request)
        status = read_response(s)
        if status // 100 != 2:
            raise SystemExit(f"non-2xx answer {status}: the proxy is not serving what we measure")
        socks.append(s)
    return socks


def settle(pids, secs=1.5):
    time.sleep(secs)
    return rss_kib(pids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", required=True, help="pid(s) whose VmRSS is summed, comma-separated")
    ap.add_argument("--addr", required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--header", action="append", default=[])
    a = ap.parse_args()
    pids = [int(p) for p in a.pid.split(",") if p]
    host, _, port = a.addr.rpartition(":")
    request = (f"GET {a.path} HTTP/1.1\r\nHost: {a.addr}\r\n"
               + "".join(f"{h}\r\n" for h in a.header) + "\r\n").encode()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * a.conns + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    # Warm-up: a few connections through a request, closed, so first-use growth is not counted.
    for s in open_idle(20, host, int(port), request):
        s.close()
    before = settle(pids)
    first = open_idle(a.conns, host, int(port), request)
    mid = settle(pids)
    second = open_idle(a.conns, host, int(port), request)
    after = settle(pids)
    # Still alive? Every connection must still be open (an idle timeout would empty the test).
    alive = 0
    for s in first + second:
        s.setblocking(False)
        try:
            alive += 0 if s.recv(1) == b"" else 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    for s in first + second:
        s.close()
    print(json.dumps({
        "conns": 2 * a.conns,
        "still_open": alive,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "per_conn_kib": round((after - before) / (2 * a.conns), 2),
        "slope_kib": round((after - mid) / a.conns, 2),
    }))


if __name__ == "__main__":
    sys.exit(main())
