"""The proxy's per-backend failure record, which a rollout's `min_ready` reads: connect
failures and resets count, the proxy's own closes do not, and only endpoints in the
table are kept."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from podctl.net import Endpoint
from tests.fake.test_proxy import anyio_backend, ask, backends, free_port_in_use, proxy, wait_until

pytestmark = pytest.mark.anyio
__all__ = ["anyio_backend"]  # the fixture: both loops


async def test_connect_failures_are_recorded_per_endpoint_in_the_table() -> None:
    s, port = free_port_in_use()
    s.close()
    dead = Endpoint("dead", "127.0.0.1", port)
    before = time.time()
    async with backends("a") as bs, proxy([dead, bs[0].endpoint]) as p:
        for _ in range(3):
            assert await ask(p) == "a"
        failures = p.backend_failures()
        assert set(failures) == {"dead"}  # answers cleanly closed by "a" are no failure
        assert before <= failures["dead"] <= time.time()
        p.set_endpoints([bs[0].endpoint])
        assert p.backend_failures() == {}  # left the table: forgotten


async def test_a_reset_from_the_backend_is_recorded() -> None:
    async with backends("a", mode="echo") as bs, proxy([bs[0].endpoint]) as p:
        r, w = await asyncio.open_connection(*p.address)
        w.write(b"hi")
        assert await r.readexactly(2) == b"hi"
        (t,) = bs[0].transports
        sock: socket.socket = t.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.abort()  # linger 0: an RST, as a replica killed mid-response sends
        await wait_until(lambda: "a" in p.backend_failures())
        w.close()


async def test_a_client_that_leaves_is_no_backend_failure() -> None:
    async with backends("a", mode="echo") as bs, proxy([bs[0].endpoint]) as p:
        r, w = await asyncio.open_connection(*p.address)
        w.write(b"hi")
        assert await r.readexactly(2) == b"hi"
        sock: socket.socket = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()  # the client resets: the proxy aborts the backend side
        await wait_until(lambda: p.stats().active == 0)
        assert p.backend_failures() == {}
