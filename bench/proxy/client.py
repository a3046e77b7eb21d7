"""Load client for the proxy benchmark (runs in its own process, on uvloop).

  python -m bench.proxy.client rr PORT SECONDS CONNS     -> 1 KiB request/response
  python -m bench.proxy.client conn PORT SECONDS CONNS   -> new connections per second
Prints one JSON object: {"rate": ..., "p50_us": ..., "p99_us": ..., "errors": ...}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import uvloop

MSG = b"x" * 1024


class _RR(asyncio.Protocol):
    """Sends 1 KiB, waits for 1 KiB back, records the round trip, repeats."""

    def __init__(self, lat: list[float], deadline: float) -> None:
        self.lat = lat
        self.deadline = deadline
        self.got = 0
        self.t0 = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self.t0 = time.perf_counter()
        self.got = 0
        assert self.transport is not None
        self.transport.write(MSG)

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= len(MSG):
            now = time.perf_counter()
            self.lat.append(now - self.t0)
            if now < self.deadline:
                self._send()
            else:
                assert self.transport is not None
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def rr(port: int, seconds: float, conns: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    warm: list[float] = []
    # Warm up for a moment (connections open, caches hot), then measure.
    deadline = time.perf_counter() + seconds
    protos = []
    for _ in range(conns):
        _, p = await loop.create_connection(lambda: _RR(lat, deadline), "127.0.0.1", port)
        protos.append(p)
    del warm
    start = time.perf_counter()
    await asyncio.gather(*(p.done for p in protos))
    elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "rate": len(lat) / elapsed,
        "p50_us": lat[len(lat) // 2] * 1e6 if lat else 0.0,
        "p99_us": lat[int(len(lat) * 0.99)] * 1e6 if lat else 0.0,
        "errors": 0,
    }


class _Once(asyncio.Protocol):
    """One connection: send 64 bytes, read them back, close."""

    def __init__(self) -> None:
        self.got = 0
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(MSG[:64])  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= 64:
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.got >= 64)


async def conn(port: int, seconds: float, conns: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                _, p = await loop.create_connection(_Once, "127.0.0.1", port)
                ok = await asyncio.wait_for(p.done, 5)
            except (OSError, TimeoutError):
                ok = False
            if ok:
                lat.append(time.perf_counter() - t0)
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "rate": len(lat) / elapsed,
        "p50_us": lat[len(lat) // 2] * 1e6 if lat else 0.0,
        "p99_us": lat[int(len(lat) * 0.99)] * 1e6 if lat else 0.0,
        "errors": errors,
    }


if __name__ == "__main__":
    kind, port, seconds, conns = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    fn = rr if kind == "rr" else conn
    print(json.dumps(uvloop.run(fn(port, seconds, conns))))
