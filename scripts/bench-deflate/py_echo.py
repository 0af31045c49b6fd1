"""Echo server on Python `websockets` with its default permessage-deflate
(on; server window 12 bits, memLevel 5), for scripts/bench-deflate-peers.sh.
Usage: python py_echo.py PORT"""
import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main(port):
    async with serve(echo, "127.0.0.1", port, max_size=16 << 20, compression="deflate"):
        print(f"listening on ws://127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main(int(sys.argv[1])))
