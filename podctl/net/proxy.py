"""The service proxy: a TCP load balancer over a service's ready endpoints.

This is podctl's data path, so it is written against asyncio's low-level
`BufferedProtocol` API (not streams) and is meant to run on uvloop:

- Each direction of a connection reads into its own buffer (`get_buffer`) and
  hands a memoryview slice of it straight to the peer transport
  (`buffer_updated`): no `bytes` object per chunk. uvloop tries the `send()`
  at once; when the socket takes only part of it, the transport keeps a
  reference to our buffer. So both transports get a write high-water mark of
  0: any unsent byte pauses reading on the other side (`pause_writing`) until
  the peer has flushed everything (`resume_writing`). That is the flow control
  the issue asks for, it bounds memory to one buffer per direction, and it is
  what makes reusing the buffer safe. The kernel's socket buffers still keep
  the pipe full.
- Buffers start small (request/response traffic never needs more) and grow
  when a read fills one, so idle or chatty connections cost little memory.
- Idle detection costs nothing per chunk: a sweeper that runs a few times per
  idle timeout compares the byte counters each direction already keeps.
- Routing is a tuple of `Endpoint`s swapped whole by `set_endpoints` (the
  controller calls it when readiness changes), with a round-robin cursor.
  Connections already open to an endpoint that leaves the table go on until
  they end or until `drain()` closes them.
- A connect failure tries the next endpoint before any byte has moved in either
  direction: the client's bytes wait (reading paused, or at most one read
  parked) until a backend has accepted.

The only tasks here are the per-connection connect coroutines (uvloop has no
callback-style connect). They are owned by the `ServiceProxy`: tracked per
connection and cancelled when the client goes away or the proxy closes. A task
group per accepted connection would cost more than the rest of the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from dataclasses import dataclass, field
from typing import cast

from podctl import defaults

log = logging.getLogger(__name__)

# Buffers start at 8 KiB (one read covers a request/response exchange) and
# grow to 256 KiB once a read fills the buffer (bulk transfer: fewer syscalls
# and Python calls per byte).
_BUF_MIN = 8 * 1024
_BUF_MAX = 256 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend. `key` names it (a container id or replica name) for drain and counters."""

    key: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """A snapshot of one listener's (or, summed, one service's) counters."""

    active: int = 0
    total: int = 0
    bytes_in: int = 0  # client -> backend
    bytes_out: int = 0  # backend -> client
    backend_errors: int = 0  # failed connects (each attempt) and no-endpoint refusals
    rejected: int = 0  # closed at once: over the connection cap
    endpoint_active: tuple[tuple[str, int], ...] = ()

    def __add__(self, other: ProxyStats) -> ProxyStats:
        per: dict[str, int] = dict(self.endpoint_active)
        for key, n in other.endpoint_active:
            per[key] = per.get(key, 0) + n
        return ProxyStats(
            active=self.active + other.active,
            total=self.total + other.total,
            bytes_in=self.bytes_in + other.bytes_in,
            bytes_out=self.bytes_out + other.bytes_out,
            backend_errors=self.backend_errors + other.backend_errors,
            rejected=self.rejected + other.rejected,
            endpoint_active=tuple(sorted(per.items())),
        )


class ProxyBindError(OSError):
    """A listener could not be opened; the message says why in user terms."""


class _Pump(asyncio.BufferedProtocol):
    """One side of a proxied connection: reads from its transport, writes to the peer's."""

    __slots__ = ("_buf", "_view", "eof", "nbytes", "peer", "transport")

    def __init__(self) -> None:
        self._buf = bytearray(_BUF_MIN)
        self._view = memoryview(self._buf)
        self.transport: asyncio.Transport | None = None
        self.peer: _Pump | None = None
        self.eof = False
        self.nbytes = 0  # bytes read from this side (and written to the peer)

    # -- hot path ---------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        peer = self.peer
        self.nbytes += nbytes
        if peer is None or peer.transport is None:
            self._park(nbytes)
            return
        peer.transport.write(self._view[:nbytes])
        if nbytes == len(self._buf) and nbytes < _BUF_MAX:
            # The read filled the buffer: this is bulk traffic. A fresh, larger
            # buffer; the old one may still be referenced by a pending write.
            self._buf = bytearray(min(nbytes * 4, _BUF_MAX))
            self._view = memoryview(self._buf)

    def pause_writing(self) -> None:
        # Our transport holds unsent bytes (possibly a view of the peer's buffer):
        # stop the peer reading until they are flushed.
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.eof:
            peer.transport.resume_reading()

    def eof_received(self) -> bool:
        # Half-close: pass the FIN on and keep the other direction open.
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None:
            return True  # the client's FIN waits for the backend (see `_ClientSide.attach`)
        if peer.eof:
            # Both directions are finished: close (pending writes are flushed first).
            peer.transport.close()
            return False
        if not peer.transport.is_closing():
            peer.transport.write_eof()
        return True

    # -- cold path ---------------------------------------------------------------

    def _park(self, nbytes: int) -> None:
        raise NotImplementedError


class _BackendSide(_Pump):
    __slots__ = ("client",)

    def __init__(self, client: _ClientSide) -> None:
        super().__init__()
        self.client: _ClientSide | None = client
        self.peer = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop: no subclass
        transport.set_write_buffer_limits(high=0)

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.client
        ct = client.transport if client is not None else None
        if ct is not None and not ct.is_closing():
            if exc is not None:
                # The backend died mid-connection: reset the client so it knows at once
                # (a clean FIN would look like a complete response).
                ct.abort()
            else:
                ct.close()
        # Break the client <-> backend <-> transport cycles so that reference
        # counting frees a finished connection at once: otherwise every connection
        # is cyclic garbage and the GC's collections show up in the connection rate.
        self.transport = None
        self.peer = None
        self.client = None

    def _park(self, nbytes: int) -> None:  # pragma: no cover - the client is always set
        pass


class _ClientSide(_Pump):
    """The accepted connection; it also carries the per-connection bookkeeping."""

    __slots__ = (
        "_parked",
        "_paused",
        "backend",
        "connect_task",
        "connect_timed_out",
        "endpoint_key",
        "idle_since",
        "last_total",
        "proxy",
    )

    def __init__(self, proxy: ServiceProxy) -> None:
        super().__init__()
        self.proxy = proxy
        self.backend: _BackendSide | None = None
        self.endpoint_key: str | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.connect_timed_out = False
        self._parked: bytes | None = None
        self._paused = False  # reading paused by `_park` (too much waiting for a backend)
        self.last_total = 0
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop: no subclass
        transport.set_write_buffer_limits(high=0)
        self.proxy._accepted(self)

    def connection_lost(self, exc: Exception | None) -> None:
        task = self.connect_task
        if task is not None and not task.done():
            task.cancel()
        backend = self.backend
        if backend is not None and backend.transport is not None:
            bt = backend.transport
            if not bt.is_closing():
                if exc is not None:
                    bt.abort()
                else:
                    bt.close()
        self.proxy._closed(self)
        # No cycles left behind (see `_BackendSide.connection_lost`); `backend` stays
        # for its byte counter, it no longer points back here.
        self.transport = None
        self.peer = None
        self.connect_task = None

    def _park(self, nbytes: int) -> None:
        # uvloop starts reading right after connection_made, whatever it was told,
        # so the first request usually arrives before a backend is connected. Keep
        # it and forward it on attach; stop reading only if a lot piles up (saves
        # two epoll_ctl calls per connection in the common case).
        data = bytes(self._view[:nbytes])
        self._parked = data if self._parked is None else self._parked + data
        if len(self._parked) >= _BUF_MAX and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def attach(self, backend: _BackendSide, key: str) -> None:
        """The backend accepted: start moving bytes."""
        self.backend = backend
        self.peer = backend
        self.endpoint_key = key
        bt = backend.transport
        ct = self.transport
        assert bt is not None and ct is not None
        if self._parked is not None:
            bt.write(self._parked)
            self._parked = None
        if self.eof:
            bt.write_eof()
        elif self._paused and bt.get_write_buffer_size() == 0:
            self._paused = False
            ct.resume_reading()
        # else: the backend's resume_writing resumes the client.

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.abort()


@dataclass(slots=True)
class _Counters:
    total: int = 0
    backend_errors: int = 0
    rejected: int = 0
    closed_bytes_in: int = 0
    closed_bytes_out: int = 0


@dataclass(slots=True)
class _Drain:
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


def bound_address(server: object | None, fallback: tuple[str, int]) -> tuple[str, int]:
    """Where a listening server is bound (the real port when asked for port 0)."""
    # uvloop's Server is no asyncio.Server subclass; both have `sockets`.
    for sock in getattr(server, "sockets", None) or ():
        host, port = sock.getsockname()[:2]
        return str(host), int(port)
    return fallback


class ServiceProxy:
    """One listening address of one service, balancing over its endpoints."""

    def __init__(
        self,
        name: str,
        bind: str,
        port: int,
        *,
        connect_timeout_s: float = defaults.PROXY_CONNECT_TIMEOUT_S,
        idle_timeout_s: float = defaults.PROXY_IDLE_TIMEOUT_S,
        max_connections: int = defaults.PROXY_MAX_CONNECTIONS,
        backlog: int = 1024,
    ) -> None:
        self.name = name
        self.bind = bind
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self._backlog = backlog
        self._table: tuple[Endpoint, ...] = ()
        self._cursor = 0
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: set[_ClientSide] = set()
        self._by_key: dict[str, set[_ClientSide]] = {}
        self._c = _Counters()
        self._drains: dict[str, _Drain] = {}
        self._all_closed: list[asyncio.Future[None]] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._accepting = False

    # -- lifecycle ---------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when constructed with port 0)."""
        return bound_address(self._server, (self.bind, self.port))

    async def start(self) -> None:
        """Open the listener. Raises `ProxyBindError` with a user-facing message."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._accepting = True
        try:
            self._server = await loop.create_server(
                lambda: _ClientSide(self),
                self.bind,
                self.port,
                backlog=self._backlog,
                reuse_address=True,
            )
        except OSError as e:
            self._accepting = False
            raise ProxyBindError(e.errno, _bind_error_message(self.bind, self.port, e)) from e
        self._schedule_sweep()

    async def close(self, drain_s: float = 0.0) -> None:
        """Stop accepting; let open connections finish for up to `drain_s`, then reset them."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._accepting = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._conns and drain_s > 0:
            fut = asyncio.get_running_loop().create_future()
            self._all_closed.append(fut)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), drain_s)
        for conn in list(self._conns):
            conn.abort()
            if conn.connect_task is not None:
                conn.connect_task.cancel()
        if self._conns:
            fut = asyncio.get_running_loop().create_future()
            self._all_closed.append(fut)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), 1.0)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    # -- routing -----------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._table

    def set_endpoints(self, endpoints: list[Endpoint] | tuple[Endpoint, ...]) -> None:
        """Replace the routing table. New connections use only these endpoints, at once."""
        self._table = tuple(endpoints)

    async def drain(self, key: str, timeout_s: float) -> int:
        """Wait up to `timeout_s` for connections to `key` to end, then reset the rest.

        Returns how many were reset. Callers remove `key` from the table first.
        """
        conns = self._by_key.get(key)
        if conns and timeout_s > 0:
            fut = asyncio.get_running_loop().create_future()
            self._drains.setdefault(key, _Drain()).waiters.append(fut)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        conns = self._by_key.get(key)
        if not conns:
            return 0
        n = len(conns)
        for conn in list(conns):
            conn.abort()
        return n

    def stats(self) -> ProxyStats:
        bytes_in = self._c.closed_bytes_in
        bytes_out = self._c.closed_bytes_out
        for conn in self._conns:
            bytes_in += conn.nbytes
            if conn.backend is not None:
                bytes_out += conn.backend.nbytes
        per = {ep.key: 0 for ep in self._table}
        for key, conns in self._by_key.items():
            per[key] = len(conns)
        return ProxyStats(
            active=len(self._conns),
            total=self._c.total,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            backend_errors=self._c.backend_errors,
            rejected=self._c.rejected,
            endpoint_active=tuple(sorted(per.items())),
        )

    # -- connection bookkeeping (called by the protocols) ---------------------------

    def _accepted(self, conn: _ClientSide) -> None:
        transport = conn.transport
        assert transport is not None
        if len(self._conns) >= self.max_connections or not self._accepting:
            # Over the cap: close at once rather than queue (the client retries or fails fast).
            self._c.rejected += 1
            transport.abort()
            return
        if not self._table:
            # Nothing ready: tell the client now instead of holding it open.
            self._c.backend_errors += 1
            transport.close()
            return
        # Reading is not paused while the backend connects: what arrives is parked
        # (see `_ClientSide._park`), which saves two epoll updates per connection.
        self._conns.add(conn)
        self._c.total += 1
        loop = self._loop
        assert loop is not None
        conn.idle_since = loop.time()  # read by the sweeper until an attempt starts
        conn.connect_task = loop.create_task(self._connect(conn))

    def _next_endpoint(self, tried: set[str]) -> Endpoint | None:
        table = self._table
        n = len(table)
        for _ in range(n):
            ep = table[self._cursor % n]
            self._cursor = (self._cursor + 1) % n
            if ep.key not in tried:
                return ep
        return None

    async def _connect(self, conn: _ClientSide) -> None:
        try:
            await self._connect_any(conn)
        finally:
            # Whatever happened (no endpoint accepted, or cancelled), a client that
            # did not get a backend is closed now rather than left hanging.
            if conn.backend is None and conn.transport is not None:
                conn.transport.close()

    async def _connect_any(self, conn: _ClientSide) -> None:
        tried: set[str] = set()
        # Bounded by the number of endpoints: each is tried at most once.
        while (ep := self._next_endpoint(tried)) is not None:
            if conn not in self._conns:
                return  # the client left while an attempt was failing
            tried.add(ep.key)
            backend = await self._connect_one(conn, ep)
            if backend is None:
                continue
            if conn.transport is None or conn.transport.is_closing() or conn not in self._conns:
                if backend.transport is not None:
                    backend.transport.close()
                return
            self._by_key.setdefault(ep.key, set()).add(conn)
            conn.attach(backend, ep.key)
            return
        # Every endpoint refused (or none is left): `_connect` closes the client.

    async def _connect_one(self, conn: _ClientSide, ep: Endpoint) -> _BackendSide | None:
        loop = self._loop
        assert loop is not None
        backend = _BackendSide(conn)
        conn.idle_since = loop.time()  # the sweeper times the attempt from here
        try:
            await loop.create_connection(lambda: backend, ep.host, ep.port)
        except asyncio.CancelledError:
            if not conn.connect_timed_out:
                raise  # the client left or the proxy is closing
            # The sweeper cancelled a slow attempt: count it, try the next endpoint.
            conn.connect_timed_out = False
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            self._c.backend_errors += 1
            log.debug("%s: connect to %s (%s:%d) timed out", self.name, ep.key, ep.host, ep.port)
            return None
        except OSError as e:
            self._c.backend_errors += 1
            log.debug(
                "%s: connect to %s (%s:%d) failed: %s", self.name, ep.key, ep.host, ep.port, e
            )
            return None
        except Exception:  # never let a connect bug kill the task silently
            self._c.backend_errors += 1
            log.exception("%s: connect to %s (%s:%d) failed", self.name, ep.key, ep.host, ep.port)
            return None
        return backend

    def _closed(self, conn: _ClientSide) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        self._c.closed_bytes_in += conn.nbytes
        if conn.backend is not None:
            self._c.closed_bytes_out += conn.backend.nbytes
        key = conn.endpoint_key
        if key is not None:
            conns = self._by_key.get(key)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._by_key[key]
                    drain = self._drains.pop(key, None)
                    if drain is not None:
                        _wake(drain.waiters)
        if not self._conns and self._all_closed:
            waiters, self._all_closed = self._all_closed, []
            _wake(waiters)

    # -- idle timeout --------------------------------------------------------------

    # -- timeouts: one sweeper per listener instead of a timer per connection -------------

    def _schedule_sweep(self) -> None:
        if self._loop is None:
            return
        # Timeouts fire up to a quarter late (at most 1 s): a timer per connection
        # (or per connect attempt) would cost more than the rest of a short connection.
        interval = max(0.01, min(self.idle_timeout_s / 4, self.connect_timeout_s / 4, 1.0))
        self._sweeper = self._loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        limit = self.idle_timeout_s
        for conn in list(self._conns):
            if conn.backend is None:
                task = conn.connect_task
                if (
                    task is not None
                    and not task.done()
                    and not conn.connect_timed_out
                    and now - conn.idle_since >= self.connect_timeout_s
                ):
                    conn.connect_timed_out = True
                    task.cancel()
                continue
            moved = conn.nbytes + conn.backend.nbytes
            if moved != conn.last_total:
                conn.last_total = moved
                conn.idle_since = now
            elif limit > 0 and now - conn.idle_since >= limit:
                log.debug("%s: closing a connection idle for %.1fs", self.name, limit)
                conn.abort()
        self._schedule_sweep()


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(None)


def _bind_error_message(host: str, port: int, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use by another process"
    if e.errno == errno.EACCES:
        return (
            f"port {port} on {host}: permission denied"
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        )
    if e.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: the address is not on this host"
    return f"cannot listen on {host}:{port}: {e.strerror or e}"
