"""Run podctl's proxy in its own process for the benchmark.

Usage: python -m bench.proxy.serve [--kernel] LISTEN_PORT:BACKEND_PORT [...]
Prints "ready" once every listener is open (and, with --kernel, once the
nftables DNAT rules are in place); stops on SIGTERM/SIGINT. --kernel runs a
`ProxySet(kernel_fast_path=True)`, as podctl does, and fails if the kernel does
not take the services (so a bench row is never the proxy by mistake).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop

from podctl.net import Endpoint, ListenAddress, ProxySet, ServiceBinding


async def main(pairs: list[tuple[int, int]], kernel: bool) -> None:
    proxies = ProxySet(drain_s=0, kernel_fast_path=kernel)
    bindings = [
        ServiceBinding(
            f"bench/{listen}", (ListenAddress("127.0.0.1", listen),), max_connections=100_000
        )
        for listen, _ in pairs
    ]
    for (_listen, backend), b in zip(pairs, bindings, strict=True):
        proxies.set_endpoints(b.name, [Endpoint("b", "127.0.0.1", backend)])
    errors = await proxies.apply(bindings)
    if errors:
        sys.exit(f"serve: {errors}")
    if kernel and not all(proxies.kernel_serves(b.name) for b in bindings):
        await proxies.close()
        sys.exit("serve: the kernel fast path is not available here")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await proxies.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    kernel = "--kernel" in args
    pairs = [(int(a), int(b)) for a, b in (x.split(":") for x in args if x != "--kernel")]
    uvloop.run(main(pairs, kernel))
