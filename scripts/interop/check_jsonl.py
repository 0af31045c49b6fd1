#!/usr/bin/env python3
"""Check a `tether connect --jsonl --commands` transcript from run.sh.

    check_jsonl.py LABEL TRANSCRIPT EXIT_STATUS EXPECTED_CLOSE_CODE [--full]

With --full, the transcript must show the text, binary, 1 MiB and ping
round trips that run.sh's full input asks for. Prints PASS/FAIL lines.
"""

import base64
import json
import sys

label, path, status, want_code = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
full = "--full" in sys.argv
events = []
with open(path, encoding="utf-8") as f:
    for line in f:
        try:
            events.append(json.loads(line))
        except ValueError:
            pass


def report(name, ok, why=""):
    print(f"{'PASS' if ok else 'FAIL'} tether client -> {label}: {name}" + ("" if ok else f": {why}"))


messages = [e for e in events if e.get("event") == "message"]
if full:
    texts = [m for m in messages if m["type"] == "text"]
    report("text echo", any(m.get("data") == "héllo tether" for m in texts), texts[:1])
    binary = [m for m in messages if m["type"] == "binary"]
    report("binary echo", any(base64.b64decode(m["base64"]) == b"bin" for m in binary), binary[:1])
    report("1 MiB message", any(m["len"] == 1 << 20 for m in messages),
           [m["len"] for m in messages])
    pongs = [e for e in events if e.get("event") == "pong"]
    report("ping", any(base64.b64decode(p["base64"]) == b"probe" for p in pongs), pongs)
close = [e for e in events if e.get("event") == "close"]
ok = bool(close) and close[-1]["code"] == want_code
report(f"close {want_code}", ok, close)
want_status = 0 if want_code in (1000, 1001) else 3
report(f"exit status {want_status}", status == want_status, f"exit status {status}")
