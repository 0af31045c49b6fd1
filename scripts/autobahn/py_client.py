#!/usr/bin/env python3
"""Reference Autobahn fuzzingserver client (Python `websockets`) for Autobahn and interop tests.

    python3 py_client.py [--agent NAME] [--case-timeout SECS] [--deflate] WS_URL

WS_URL is the fuzzingserver base URL (e.g. ws://127.0.0.1:9001), given as the
last argument (that is how scripts/autobahn/run.sh client appends it). The
client asks /getCaseCount, runs /runCase?case=N&agent=NAME for every case
(echoing every message back unchanged), then asks /updateReports so the
fuzzingserver writes its reports. No permessage-deflate unless --deflate.

Exit status: 0 when all cases were run and reports were requested, 1 otherwise
(the verdict per case is in the fuzzingserver's report, not here).

Requires `websockets` >= 13 (asyncio API); scripts/autobahn/setup.sh --peers
installs a pinned version into .cache/peers-venv.
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.parse

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

MAX_SIZE = 32 * 1024 * 1024  # enough for the 16 MiB messages of Autobahn 9.*


def _connect(url, deflate=False):
    return connect(
        url,
        max_size=MAX_SIZE,
        max_queue=None,
        compression="deflate" if deflate else None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=10,
    )


async def get_case_count(base):
    async with _connect(f"{base}/getCaseCount") as ws:
        msg = await ws.recv()
        return int(json.loads(msg))


async def run_case(base, case, agent, deflate):
    url = f"{base}/runCase?case={case}&agent={urllib.parse.quote(agent)}"
    try:
        async with _connect(url, deflate) as ws:
            async for message in ws:
                await ws.send(message)
    except ConnectionClosed:
        # The fuzzer sends invalid data on purpose; websockets then fails the
        # connection, which is what the case checks.
        pass


async def update_reports(base, agent):
    url = f"{base}/updateReports?agent={urllib.parse.quote(agent)}"
    async with _connect(url) as ws:
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass


async def main(args):
    base = args.url.rstrip("/")
    count = await get_case_count(base)
    print(f"py_client: {count} cases, agent {args.agent!r}", flush=True)
    errors = 0
    t0 = time.monotonic()
    for case in range(1, count + 1):
        try:
            await asyncio.wait_for(run_case(base, case, args.agent, args.deflate), args.case_timeout)
        except asyncio.TimeoutError:
            errors += 1
            print(f"py_client: case {case} timed out after {args.case_timeout}s", file=sys.stderr, flush=True)
        except (OSError, InvalidHandshake, InvalidURI) as e:
            errors += 1
            print(f"py_client: case {case}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    await update_reports(base, args.agent)
    print(f"py_client: ran {count} cases in {time.monotonic() - t0:.1f}s, {errors} client-side errors", flush=True)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", default="py-websockets-client")
    p.add_argument("--case-timeout", type=float, default=600.0,
                   help="give up on one case after this many seconds (default 600; the suite times out its own cases first)")
    p.add_argument("--deflate", action="store_true", help="offer permessage-deflate (default: off)")
    p.add_argument("url", help="fuzzingserver base URL, e.g. ws://127.0.0.1:9001")
    sys.exit(asyncio.run(main(p.parse_args())))
