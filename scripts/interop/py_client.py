#!/usr/bin/env python3
"""Python `websockets` client checks against a Tether server's echo endpoint.

    python3 py_client.py ws://127.0.0.1:PORT/echo

Prints one `PASS name` / `FAIL name: why` line per check; exit 1 on failure.
"""

import asyncio
import sys

from websockets.asyncio.client import connect

FAILED = 0


def report(name, ok, why=""):
    global FAILED
    if ok:
        print(f"PASS py-websockets client: {name}")
    else:
        FAILED += 1
        print(f"FAIL py-websockets client: {name}: {why}")


async def check(name, coro):
    try:
        await asyncio.wait_for(coro, 10)
    except Exception as e:  # noqa: BLE001 - every failure is a report line
        report(name, False, repr(e))


async def main(url):
    async with connect(url, max_size=16 << 20, compression=None) as ws:

        async def text():
            await ws.send("héllo tether")
            got = await ws.recv()
            report("text echo", got == "héllo tether", repr(got))

        async def binary():
            payload = bytes([0, 1, 2, 254, 255])
            await ws.send(payload)
            got = await ws.recv()
            report("binary echo", got == payload, repr(got))

        async def big():
            payload = b"x" * (1 << 20)
            await ws.send(payload)
            got = await ws.recv()
            report("1 MiB message", got == payload, f"{len(got)} bytes")

        async def ping():
            waiter = await ws.ping(b"probe")
            await waiter
            report("ping", True)

        async def close():
            await ws.close(1000, "done")
            report("close 1000", ws.close_code == 1000, f"close code {ws.close_code}")

        for name, c in [("text echo", text()), ("binary echo", binary()),
                        ("1 MiB message", big()), ("ping", ping()), ("close 1000", close())]:
            await check(name, c)

    async def custom_close():
        async with connect(url, compression=None) as ws2:
            await ws2.close(4000, "custom")
            report("close 4000", ws2.close_code == 4000, f"close code {ws2.close_code}")

    await check("close 4000", custom_close())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
    sys.exit(1 if FAILED else 0)
