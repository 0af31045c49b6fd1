"""A minimal WebSocket client for scripts/proxy/run.sh: connects from a
chosen source address, sends extra headers, prints the status line and the
first text message (server frames are unmasked). Standard library only.

    python3 ws_client.py SOURCE_IP HOST:PORT PATH [Header: value ...]
"""
import base64
import os
import socket
import sys


def main():
    source, target, path, *headers = sys.argv[1:]
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {target}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    print(head.split(b"\r\n")[0].decode())
    if not head.startswith(b"HTTP/1.1 101"):
        return 1
    while len(rest) < 2:
        rest += s.recv(4096)
    length = rest[1] & 0x7F
    while len(rest) < 2 + length:
        rest += s.recv(4096)
    print(rest[2 : 2 + length].decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
