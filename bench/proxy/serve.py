"""Run podctl's ServiceProxy in its own process for the benchmark.

Usage: python -m bench.proxy.serve LISTEN_PORT:BACKEND_PORT [...]
Prints "ready" once every listener is open; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop

from podctl.net.proxy import Endpoint, ServiceProxy


async def main(pairs: list[tuple[int, int]]) -> None:
    proxies = []
    for listen, backend in pairs:
        p = ServiceProxy(f"bench/{listen}", "127.0.0.1", listen, max_connections=100_000)
        p.set_endpoints([Endpoint("b", "127.0.0.1", backend)])
        await p.start()
        proxies.append(p)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for p in proxies:
        await p.close(0)


if __name__ == "__main__":
    pairs = [tuple(int(x) for x in a.split(":")) for a in sys.argv[1:]]
    uvloop.run(main(pairs))  # type: ignore[arg-type]
