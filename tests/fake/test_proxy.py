"""The service proxy against local asyncio backends on 127.0.0.1 (no Docker).

Every test runs on plain asyncio and on uvloop: the two loops differ in when
reading starts and in what a transport keeps of a partly written buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest

from podctl.net import (
    Endpoint,
    ListenAddress,
    ProxySet,
    ServiceBinding,
    ServiceProxy,
)
from podctl.net.metrics import MetricsServer, render

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    return request.param  # type: ignore[no-any-return]


# -- backends ------------------------------------------------------------------------


class Backend:
    """A backend on 127.0.0.1. Modes:
    - "name": on the first bytes, answer with its name and close.
    - "echo": echo everything; on EOF answer b"<bye>" and close.
    """

    def __init__(self, name: str, mode: str = "name") -> None:
        self.name = name
        self.mode = mode
        self.accepted = 0
        self.transports: list[asyncio.Transport] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, "127.0.0.1", self.port)

    async def start(self) -> Backend:
        loop = asyncio.get_running_loop()
        # A backlog for every test's burst: with asyncio's default of 100, a burst of
        # 300 connects on a loaded machine overflows it, the kernel drops SYNs and
        # retransmits them a second later, which times out the proxy's connects.
        self.server = await loop.create_server(
            lambda: _BackendProto(self), "127.0.0.1", 0, backlog=1024
        )
        self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in self.transports:
            t.abort()
        await asyncio.sleep(0)


class _BackendProto(asyncio.Protocol):
    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.t: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport = cast(asyncio.Transport, transport)
        self.b.accepted += 1
        self.b.transports.append(transport)

    def data_received(self, data: bytes) -> None:
        assert self.t is not None
        if self.b.mode == "name":
            self.t.write(self.b.name.encode())
            self.t.close()
        else:
            self.t.write(data)

    def eof_received(self) -> bool:
        assert self.t is not None
        if self.b.mode == "echo":
            self.t.write(b"<bye>")
            self.t.close()
        return True


@contextlib.asynccontextmanager
async def backends(*names: str, mode: str = "name") -> AsyncIterator[list[Backend]]:
    bs = [await Backend(n, mode).start() for n in names]
    try:
        yield bs
    finally:
        for b in bs:
            await b.stop()


@contextlib.asynccontextmanager
async def proxy(eps: list[Endpoint], **kw: float) -> AsyncIterator[ServiceProxy]:
    p = ServiceProxy(
        "test/web",
        "127.0.0.1",
        0,
        connect_timeout_s=kw.get("connect_timeout_s", 1.0),
        idle_timeout_s=kw.get("idle_timeout_s", 30.0),
        max_connections=int(kw.get("max_connections", 1000)),
    )
    p.set_endpoints(eps)
    await p.start()
    try:
        yield p
    finally:
        await p.close(0)


async def ask(p: ServiceProxy) -> str:
    """One short connection: send a byte, read the backend's name until EOF."""
    r, w = await asyncio.open_connection(*p.address)
    try:
        w.write(b"?")
        async with asyncio.timeout(2):
            return (await r.read()).decode()
    finally:
        w.close()


async def wait_until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


def free_port_in_use() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


# -- routing -------------------------------------------------------------------------


async def test_round_robin_is_fair() -> None:
    async with backends("a", "b", "c") as bs, proxy([b.endpoint for b in bs]) as p:
        answers = await asyncio.gather(*(ask(p) for _ in range(300)))
    counts = {n: answers.count(n) for n in "abc"}
    assert sum(counts.values()) == 300, counts  # every client answered
    # Strict turns, except that a connect this loop saw too late (a loaded machine
    # lags it past the short first timeout) moves that one client to the next backend.
    moved = p.stats().backend_errors
    assert all(abs(c - 100) <= moved for c in counts.values()), (counts, moved)
    assert p.stats().total == 300
    assert p.stats().active == 0


async def test_table_swaps_follow_readiness_at_once() -> None:
    async with backends("a", "b", "c") as bs, proxy([b.endpoint for b in bs]) as p:
        a, b, c = bs
        assert sorted([await ask(p) for _ in range(6)]) == list("aabbcc")
        p.set_endpoints([a.endpoint, c.endpoint])  # b turned unready
        assert set([await ask(p) for _ in range(10)]) == {"a", "c"}
        p.set_endpoints([b.endpoint])  # b ready again, a and c gone
        assert set([await ask(p) for _ in range(5)]) == {"b"}


async def test_removed_endpoint_gets_no_new_connections_but_existing_ones_drain() -> None:
    async with backends("a", "b", mode="echo") as bs, proxy([bs[0].endpoint]) as p:
        a, b = bs
        r, w = await asyncio.open_connection(*p.address)
        w.write(b"one")
        assert await r.readexactly(3) == b"one"
        assert dict(p.stats().endpoint_active) == {"a": 1}

        p.set_endpoints([b.endpoint])
        r2, w2 = await asyncio.open_connection(*p.address)
        w2.write(b"new")
        assert await r2.readexactly(3) == b"new"
        assert (a.accepted, b.accepted) == (1, 1)

        w.write(b"still here")  # the old connection keeps working
        assert await r.readexactly(10) == b"still here"

        assert await p.drain("a", 0.05) == 1  # ... until drained
        async with asyncio.timeout(1):
            with contextlib.suppress(ConnectionError):
                assert await r.read() == b""
        assert await p.drain("b", 0) == 1
        w.close()
        w2.close()


async def test_drain_returns_as_soon_as_connections_end() -> None:
    async with backends("a", mode="echo") as bs, proxy([bs[0].endpoint]) as p:
        r, w = await asyncio.open_connection(*p.address)
        w.write(b"x")
        await r.readexactly(1)
        p.set_endpoints([])
        drained = asyncio.ensure_future(p.drain("a", 5.0))
        await asyncio.sleep(0.05)
        w.close()
        async with asyncio.timeout(1):
            assert await drained == 0


async def test_connect_failure_retries_next_backend_before_any_byte() -> None:
    dead_sock, dead_port = free_port_in_use()
    dead_sock.close()  # nothing listens there now: connection refused
    dead = Endpoint("dead", "127.0.0.1", dead_port)
    async with backends("a", mode="echo") as bs, proxy([dead, bs[0].endpoint]) as p:
        for _ in range(4):
            r, w = await asyncio.open_connection(*p.address)
            w.write(b"hello")  # sent before the proxy has a backend
            assert await r.readexactly(5) == b"hello"
            w.close()
        assert bs[0].accepted == 4
        assert p.stats().backend_errors >= 2  # every other connection tried `dead` first


async def test_client_closed_promptly_without_endpoints_or_when_all_refuse() -> None:
    s, port = free_port_in_use()
    s.close()
    for eps in ([], [Endpoint("dead", "127.0.0.1", port)]):
        async with proxy(eps) as p:
            r, w = await asyncio.open_connection(*p.address)
            w.write(b"x")
            async with asyncio.timeout(1):
                with contextlib.suppress(ConnectionError):
                    assert await r.read() == b""
            w.close()
            assert p.stats().backend_errors == 1


def blackhole() -> tuple[socket.socket, list[socket.socket], int]:
    """A port whose handshakes never complete: a listener with a full accept queue
    (Linux drops SYNs then), so a connect to it hangs until the caller gives up."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    return lst, fillers, port


async def test_connect_timeout_moves_on_to_the_next_backend() -> None:
    lst, fillers, port = blackhole()
    try:
        hole = Endpoint("hole", "127.0.0.1", port)
        async with (
            backends("a", mode="echo") as bs,
            proxy([hole, bs[0].endpoint], connect_timeout_s=0.2) as p,
        ):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            r, w = await asyncio.open_connection(*p.address)
            w.write(b"hi")
            async with asyncio.timeout(2):
                assert await r.readexactly(2) == b"hi"
            assert 0.2 <= loop.time() - t0 < 1.0
            assert p.stats().backend_errors == 1
            w.close()
    finally:
        lst.close()
        for c in fillers:
            c.close()


# -- limits --------------------------------------------------------------------------


async def test_connection_cap_closes_excess_connections_at_once() -> None:
    async with backends("a", mode="echo") as bs, proxy([bs[0].endpoint], max_connections=2) as p:
        held = []
        for _ in range(2):
            r, w = await asyncio.open_connection(*p.address)
            w.write(b"x")
            await r.readexactly(1)
            held.append(w)
        r3, w3 = await asyncio.open_connection(*p.address)
        async with asyncio.timeout(1):
            with contextlib.suppress(ConnectionError):
                assert await r3.read() == b""
        assert p.stats().rejected == 1
        assert p.stats().active == 2
        for w in [*held, w3]:
            w.close()


async def test_idle_connections_are_closed_busy_ones_are_not() -> None:
    async with backends("a", mode="echo") as bs, proxy([bs[0].endpoint], idle_timeout_s=0.2) as p:
        r1, w1 = await asyncio.open_connection(*p.address)
        r2, w2 = await asyncio.open_connection(*p.address)
        for r, w in ((r1, w1), (r2, w2)):
            w.write(b"x")
            await r.readexactly(1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while loop.time() - t0 < 0.6:  # keep connection 2 busy
            w2.write(b"y")
            await r2.readexactly(1)
            await asyncio.sleep(0.03)
        async with asyncio.timeout(1):
            with contextlib.suppress(ConnectionError):
                assert await r1.read() == b""
        w2.write(b"z")
        assert await r2.readexactly(1) == b"z"
        w1.close()
        w2.close()


# -- the byte stream -------------------------------------------------------------------


async def test_half_close_passes_eof_and_keeps_the_other_direction() -> None:
    async with backends("a", mode="echo") as bs, proxy([bs[0].endpoint]) as p:
        r, w = await asyncio.open_connection(*p.address)
        w.write(b"request")
        w.write_eof()  # client is done sending; it still wants the answer
        async with asyncio.timeout(2):
            assert await r.read() == b"request<bye>"
        w.close()
        await wait_until(lambda: p.stats().active == 0)
        st = p.stats()
        assert (st.bytes_in, st.bytes_out) == (7, 12)


async def test_backend_dying_mid_transfer_closes_that_client_promptly() -> None:
    async with backends("a", "b", mode="echo") as bs, proxy([b.endpoint for b in bs]) as p:
        a = bs[0]
        conns = []
        for _ in range(2):
            r, w = await asyncio.open_connection(*p.address)
            w.write(b"x" * 1000)
            await r.readexactly(1000)
            conns.append((r, w))
        a.transports[0].abort()  # the replica is killed (RST)
        (r_dead, w_dead), (r_ok, w_ok) = conns
        async with asyncio.timeout(0.5):
            with contextlib.suppress(ConnectionError):
                assert await r_dead.read() == b""
        w_ok.write(b"other clients continue")
        assert await r_ok.readexactly(22) == b"other clients continue"
        w_dead.close()
        w_ok.close()


class _Firehose(asyncio.Protocol):
    """A backend that writes `total` bytes as fast as its transport accepts them."""

    def __init__(self, total: int, chunk: bytes) -> None:
        self.total = total
        self.chunk = chunk
        self.sent = 0
        self.paused = False
        self.t: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport = cast(asyncio.Transport, transport)
        self._pump()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()

    def _pump(self) -> None:
        assert self.t is not None
        while not self.paused and self.sent < self.total:
            self.t.write(self.chunk)
            self.sent += len(self.chunk)
        if self.sent >= self.total:
            self.t.write_eof()


async def test_slow_reader_flow_control_bounds_proxy_memory() -> None:
    total = 32 * 1024 * 1024
    chunk = bytes(range(256)) * 256  # 64 KiB
    fire: list[_Firehose] = []

    def factory() -> _Firehose:
        fire.append(_Firehose(total, chunk))
        return fire[-1]

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        async with proxy([Endpoint("fire", "127.0.0.1", port)]) as p:
            r, w = await asyncio.open_connection(*p.address, limit=64 * 1024)
            # Read nothing for a while: the proxy must stop pulling from the backend.
            await asyncio.sleep(0.3)
            (conn,) = p._conns
            assert conn.transport is not None
            assert conn.transport.get_write_buffer_size() <= 256 * 1024
            assert fire[0].sent < total  # the backend is held back (kernel buffers are full)
            got = 0
            async with asyncio.timeout(20):
                while data := await r.read(1 << 20):
                    got += len(data)
                    assert conn.transport.get_write_buffer_size() <= 256 * 1024
            assert got == total
            w.close()
    finally:
        server.close()


async def test_bulk_data_arrives_intact_both_ways() -> None:
    payload = bytes(range(256)) * 4096 * 4  # 4 MiB, a recognisable pattern
    async with backends("a", mode="echo") as bs, proxy([bs[0].endpoint]) as p:
        r, w = await asyncio.open_connection(*p.address)

        async def send() -> None:
            for i in range(0, len(payload), 100_000):
                w.write(payload[i : i + 100_000])
                await w.drain()
            w.write_eof()

        sender = asyncio.ensure_future(send())
        async with asyncio.timeout(10):
            got = await r.read()
        await sender
        assert got == payload + b"<bye>"
        w.close()


# -- listeners ---------------------------------------------------------------------------


async def test_port_in_use_is_a_clear_error_and_other_services_start() -> None:
    taken, port = free_port_in_use()
    try:
        async with backends("a") as bs:
            ps = ProxySet(drain_s=0)
            ok_sock, ok_port = free_port_in_use()
            ok_sock.close()
            errors = await ps.apply(
                [
                    ServiceBinding("shop/web", (ListenAddress("127.0.0.1", port),)),
                    ServiceBinding("shop/api", (ListenAddress("127.0.0.1", ok_port),)),
                ]
            )
            assert [(e.service, e.message) for e in errors] == [
                ("shop/web", f"port {port} on 127.0.0.1 is in use by another process")
            ]
            ps.set_endpoints("shop/api", [bs[0].endpoint])
            r, w = await asyncio.open_connection("127.0.0.1", ok_port)
            w.write(b"?")
            assert await r.read() == b"a"
            w.close()

            taken.close()  # the port is free now: the next apply binds it (level-triggered)
            assert (
                await ps.apply([ServiceBinding("shop/web", (ListenAddress("127.0.0.1", port),))])
                == []
            )
            assert ps.listening("shop/web") == [ListenAddress("127.0.0.1", port)]
            assert ps.listening("shop/api") == []
            await ps.close()
    finally:
        taken.close()


async def test_proxyset_several_listen_addresses_share_one_table_and_counters() -> None:
    async with backends("a", "b") as bs:
        ps = ProxySet(drain_s=0)
        ports = []
        for _ in range(2):
            s, port = free_port_in_use()
            s.close()
            ports.append(port)
        assert (
            await ps.apply(
                [ServiceBinding("s/web", tuple(ListenAddress("127.0.0.1", p) for p in ports))]
            )
            == []
        )
        ps.set_endpoints("s/web", [b.endpoint for b in bs])
        for port in ports:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"?")
            assert await r.read() in (b"a", b"b")
            w.close()
        await wait_until(lambda: ps.stats()["s/web"].active == 0)
        st = ps.stats()["s/web"]
        assert st.total == 2
        assert dict(st.endpoint_active) == {"a": 0, "b": 0}
        text = render(ps.stats())
        assert 'podctl_service_connections_total{service="s/web"} 2' in text
        await ps.close()


async def test_metrics_server_serves_prometheus_text() -> None:
    ms = MetricsServer("127.0.0.1", 0, lambda: "podctl_up 1\n")
    await ms.start()
    try:
        r, w = await asyncio.open_connection(*ms.address)
        w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = await r.read()
        assert resp.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"text/plain; version=0.0.4" in resp
        assert resp.endswith(b"\r\n\r\npodctl_up 1\n")
        w.close()
        r, w = await asyncio.open_connection(*ms.address)
        w.write(b"GET / HTTP/1.1\r\n\r\n")
        assert (await r.read()).startswith(b"HTTP/1.1 404")
        w.close()
    finally:
        await ms.close()


async def test_close_drains_then_resets() -> None:
    async with backends("a", mode="echo") as bs:
        p = ServiceProxy("t", "127.0.0.1", 0)
        p.set_endpoints([bs[0].endpoint])
        await p.start()
        r, w = await asyncio.open_connection(*p.address)
        w.write(b"x")
        await r.readexactly(1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await p.close(drain_s=0.1)
        assert 0.09 <= loop.time() - t0 < 1.0
        async with asyncio.timeout(1):
            with contextlib.suppress(ConnectionError):
                assert await r.read() == b""
        assert p.stats().active == 0
        w.close()
