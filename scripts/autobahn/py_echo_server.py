#!/usr/bin/env python3
"""Reference WebSocket echo server (Python `websockets`) for Autobahn and interop tests.

Echoes every text/binary message back unchanged. No permessage-deflate unless --deflate.

    python3 py_echo_server.py [--host 127.0.0.1] [--port 9001] [--max-size BYTES] [--deflate]

With --port 0 an ephemeral port is chosen. Once listening, one line
`listening on ws://HOST:PORT` is printed (flushed) to stdout, so a harness can
wait for it and read the port. Stops on SIGINT/SIGTERM.

Requires `websockets` >= 13 (asyncio API); scripts/autobahn/setup.sh --peers
installs a pinned version into .cache/peers-venv.
"""

import argparse
import asyncio
import signal
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main(args):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(
        echo,
        args.host,
        args.port,
        max_size=args.max_size,
        max_queue=None,
        compression="deflate" if args.deflate else None,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://{args.host}:{port}", flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--max-size", type=int, default=32 * 1024 * 1024,
                   help="max message size in bytes (default 32 MiB, enough for Autobahn 9.*)")
    p.add_argument("--deflate", action="store_true", help="accept permessage-deflate (default: off)")
    try:
        asyncio.run(main(p.parse_args()))
    except KeyboardInterrupt:
        pass
    sys.exit(0)
