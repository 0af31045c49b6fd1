#!/usr/bin/env python3
"""Memory per idle WebSocket connection of `tether serve`.

Starts the server (release build by default) on a free loopback port, opens
N WebSocket connections to a route (raw sockets, standard library only: the
opening handshake is written by hand), checks every one got `101`, then
reads the server's resident set size from /proc and prints the cost per
connection. Bounded and self-stopping: the server is killed by PID at the
end (or on any error), and the whole run has a deadline.

Usage: scripts/serve-tests/idle_rss.py [-n 10000] [--route /chat/idle]
                                        [--bin target/release/tether]
Needs `ulimit -n` above N + 100 (the client and the server each hold N sockets).
"""
import argparse
import base64
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

CONFIG = """
[limits]
max_connections = {n2}
max_connections_per_ip = {n2}
ping_interval = "10m"
idle_timeout = "10m"

[[route]]
path = "/echo"
kind = "echo"

[[route]]
path = "/chat/{{room}}"
kind = "room"

[[route]]
path = "/pubsub"
kind = "pubsub"
"""


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def handshake(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("server closed during the handshake")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {buf.splitlines()[0]!r}")
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--route", default="/chat/idle")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--bin", default=os.path.join(root, "target/release/tether"))
    ap.add_argument("--rounds", type=int, default=2, help="open and close N connections this many times (a leak shows as growth after round 1)")
    ap.add_argument("--deadline", type=float, default=300, help="seconds for the whole run")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.n + 200
    if soft < want:
        if hard < want:
            sys.exit(f"ulimit -n is {hard}; need {want} for {args.n} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("deadline passed")))
    signal.alarm(int(args.deadline))

    tmp = tempfile.mkdtemp(prefix="tether-rss-")
    cfg = os.path.join(tmp, "tether.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(n2=args.n * 2))
    server = subprocess.Popen(
        [args.bin, "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--log", "warn"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    socks = []
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("listening on http://"):
            raise RuntimeError(f"unexpected server output: {line!r}")
        port = int(line.rsplit(":", 1)[1])
        time.sleep(0.3)
        base = rss_kib(server.pid)
        for round_no in range(1, args.rounds + 1):
            t0 = time.time()
            for _ in range(args.n):
                socks.append(handshake(port, args.route))
            took = time.time() - t0
            time.sleep(1.0)  # let allocations settle
            full = rss_kib(server.pid)
            per = (full - base) * 1024 / args.n
            print(f"round {round_no}: route {args.route}: {args.n} idle connections opened in {took:.1f} s")
            print(f"  server RSS: {base / 1024:.1f} MiB before any, {full / 1024:.1f} MiB with {args.n} open")
            print(f"  memory per idle connection: {per / 1024:.2f} KiB ({per:.0f} bytes)")
            for s in socks:
                s.close()
            socks.clear()
            time.sleep(1.0)
            after = rss_kib(server.pid)
            print(f"  server RSS after closing them all: {after / 1024:.1f} MiB (freed memory stays with the allocator)")
    finally:
        signal.alarm(0)
        for s in socks:
            s.close()
        server.send_signal(signal.SIGKILL)
        server.wait()
        try:
            os.remove(cfg)
            os.rmdir(tmp)
        except OSError:
            pass


if __name__ == "__main__":
    main()
