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
  parked) until a backend has accepted. The first attempt gets a short timeout
  (a replica killed a moment ago costs 250 ms, not the full connect timeout);
  later attempts get the full one, and an endpoint that only missed the short
  timeout is tried again with the full one when no other is left.
- Descriptors: each connection holds two. A listener's cap, and the budget
  all listeners of a `ProxySet` share, come from RLIMIT_NOFILE minus a reserve
  (`podctl.net.limits`), so idle clients cannot starve probes or the control
  socket. Over the cap, a connection is closed at once.
- Accept errors never reach a task: uvloop (libuv) absorbs EMFILE by accepting
  and closing the pending connections; an accept error it cannot absorb makes
  it close the listening socket without a word, so the sweeper checks that the
  socket is still open and re-opens it (backing off 5 ms doubling to 1 s).
  Plain asyncio pauses accepting for a second by itself.
- Per endpoint, the time of its latest connect failure or reset is kept
  (`backend_failures`, wall clock): a rollout counts a new replica as available
  only once `min_ready` has passed without one. Only endpoints in the table are
  kept, so it stays as small as the table.
- `peers`: a listener may serve only clients from one network (the in-stack
  listener on a bridge gateway serves only that bridge's subnet); others are
  closed at once and counted.

The only tasks here are the per-connection connect coroutines (uvloop has no
callback-style connect). They are owned by the `ServiceProxy`: tracked per
connection and cancelled when the client goes away or the proxy closes. A task
group per accepted connection would cost more than the rest of the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import cast

from podctl import defaults
from podctl.net.limits import ACCEPT_BACKOFF_MIN_S, AcceptBackoff, ConnectionBudget, connection_cap

log = logging.getLogger(__name__)

# Buffers start at 8 KiB (one read covers a request/response exchange) and
# grow to 256 KiB once a read fills the buffer (bulk transfer: fewer syscalls
# and Python calls per byte).
_BUF_MIN = 8 * 1024
_BUF_MAX = 256 * 1024

# The first connect attempt of a connection: long enough for any live backend on
# this host, short enough that a replica killed a moment ago costs little.
FIRST_CONNECT_TIMEOUT_S = 0.25

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    peer_rejected: int = 0  # closed at once: the client is outside the listener's `peers`
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
            peer_rejected=self.peer_rejected + other.peer_rejected,
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
        # Only the attached backend speaks for the client. An attempt that timed out
        # (or was cancelled) may still complete its connect and then be closed by
        # asyncio: that must not close a client whose next attempt is under way.
        attached = client is not None and client.backend is self
        ct = client.transport if client is not None and attached else None
        if exc is not None and attached and client is not None and client.endpoint_key:
            # A reset (or another error) from the backend, not our own close or abort.
            client.proxy._backend_failed(client.endpoint_key)
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
        "attempt_timeout",
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
        self.attempt_timeout = 0.0  # of the connect attempt under way
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
    peer_rejected: int = 0
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
        first_connect_timeout_s: float = FIRST_CONNECT_TIMEOUT_S,
        peers: str | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        """`max_connections` is a ceiling: the cap is also bounded by the descriptors
        the process may open (`podctl.net.limits.connection_cap`), read now.

        `peers` (a CIDR such as "172.20.0.0/16"): serve only clients inside it; others
        are closed at once and counted in `ProxyStats.peer_rejected`. Raises
        ValueError for a malformed network.

        `budget`: shared by every listener of a `ProxySet`, so that all of them
        together stay within the descriptor limit; a listener of its own has its own.
        """
        self.name = name
        self.bind = bind
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.first_connect_timeout_s = first_connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._budget = budget if budget is not None else ConnectionBudget()
        self.max_connections = min(max_connections, connection_cap())
        self.peers: IPNetwork | None = (
            None if peers is None else ipaddress.ip_network(peers, strict=False)
        )
        self._backlog = backlog
        self._table: tuple[Endpoint, ...] = ()
        self._cursor = 0
        self._server: asyncio.AbstractServer | None = None
        self._bound: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: set[_ClientSide] = set()
        self._connecting: set[_ClientSide] = set()
        self._by_key: dict[str, set[_ClientSide]] = {}
        self._c = _Counters()
        # Endpoint key -> wall-clock time of its latest connect failure or reset.
        self._failures: dict[str, float] = {}
        self._drains: dict[str, _Drain] = {}
        self._all_closed: list[asyncio.Future[None]] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._connect_sweeper: asyncio.TimerHandle | None = None
        self._reopen_task: asyncio.Task[None] | None = None
        self.reopens = 0  # times the listening socket was found closed and opened again
        self._accepting = False

    # -- lifecycle ---------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when constructed with port 0)."""
        if self._bound is not None:
            return self._bound
        return bound_address(self._server, (self.bind, self.port))

    async def start(self) -> None:
        """Open the listener. Raises `ProxyBindError` with a user-facing message."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._accepting = True
        try:
            self._server = await self._listen(self.port)
        except OSError as e:
            self._accepting = False
            raise ProxyBindError(e.errno, _bind_error_message(self.bind, self.port, e)) from e
        self._bound = bound_address(self._server, (self.bind, self.port))
        self._schedule_sweep()

    async def _listen(self, port: int) -> asyncio.AbstractServer:
        assert self._loop is not None
        return await self._loop.create_server(
            lambda: _ClientSide(self),
            self.bind,
            port,
            backlog=self._backlog,
            reuse_address=True,
        )

    async def close(self, drain_s: float = 0.0) -> None:
        """Stop accepting; let open connections finish for up to `drain_s`, then reset them."""
        for timer in (self._sweeper, self._connect_sweeper):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._connect_sweeper = None
        if self._reopen_task is not None:
            self._reopen_task.cancel()
            self._reopen_task = None
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

    def accepting(self) -> bool:
        """Started and not closed (the listening socket may still be re-opening)."""
        return self._accepting

    def serving(self) -> bool:
        """Is the listening socket open? (uvloop closes it, silently, after an
        accept error libuv cannot absorb, e.g. ENFILE or ENOBUFS.)"""
        server = self._server
        if server is None:
            return False
        socks = getattr(server, "sockets", None)
        if not socks:
            return False
        # uvloop: a closed listener's socket is None or a pseudo-socket with fd -1.
        return all(s is not None and s.fileno() >= 0 for s in socks)

    async def _reopen(self) -> None:
        """Open the listening socket again on the same address, backing off 5 ms to 1 s."""
        backoff = AcceptBackoff()
        old, self._server = self._server, None
        if old is not None:
            old.close()
        port = self.address[1]
        log.warning(
            "%s: the listener on %s:%d stopped accepting (out of descriptors?); re-opening it",
            self.name,
            self.bind,
            port,
        )
        while self.accepting():
            try:
                server = await self._listen(port)
            except OSError as e:
                delay = backoff.failed()
                if backoff.delay == ACCEPT_BACKOFF_MIN_S:
                    log.warning("%s: cannot re-open %s:%d yet: %s", self.name, self.bind, port, e)
                await asyncio.sleep(delay)
                continue
            if not self.accepting():  # closed meanwhile
                server.close()
                return
            self._server = server
            self.reopens += 1
            log.info("%s: listening on %s:%d again", self.name, self.bind, port)
            return

    # -- routing -----------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._table

    def set_endpoints(self, endpoints: list[Endpoint] | tuple[Endpoint, ...]) -> None:
        """Replace the routing table. New connections use only these endpoints, at once."""
        self._table = tuple(endpoints)
        if self._failures:
            keys = {ep.key for ep in self._table}
            self._failures = {k: t for k, t in self._failures.items() if k in keys}

    def backend_failures(self) -> dict[str, float]:
        """Endpoint key -> wall-clock time of the latest connect failure or reset seen
        on it (endpoints in the table only)."""
        return dict(self._failures)

    def _backend_failed(self, key: str) -> None:
        if any(ep.key == key for ep in self._table):
            self._failures[key] = time.time()

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
            peer_rejected=self._c.peer_rejected,
            endpoint_active=tuple(sorted(per.items())),
        )

    # -- connection bookkeeping (called by the protocols) ---------------------------

    def _peer_allowed(self, transport: asyncio.Transport) -> bool:
        peers = self.peers
        assert peers is not None
        peer = transport.get_extra_info("peername")
        if not peer:
            return False
        try:
            ip = ipaddress.ip_address(peer[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.version == peers.version and ip in peers

    def _accepted(self, conn: _ClientSide) -> None:
        transport = conn.transport
        assert transport is not None
        if self.peers is not None and not self._peer_allowed(transport):
            # Not from the network this listener serves (e.g. a container on another
            # bridge reaching the gateway address): close at once.
            self._c.peer_rejected += 1
            transport.abort()
            return
        budget = self._budget
        if (
            len(self._conns) >= self.max_connections
            or budget.used >= budget.limit
            or not self._accepting
        ):
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
        budget.used += 1
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
            self._connecting.discard(conn)
            # Whatever happened (no endpoint accepted, or cancelled), a client that
            # did not get a backend is closed now rather than left hanging.
            if conn.backend is None and conn.transport is not None:
                conn.transport.close()

    async def _connect_any(self, conn: _ClientSide) -> None:
        tried: set[str] = set()
        # An endpoint that missed only the short first timeout: tried again with the
        # full one once nothing else is left (it may be slow rather than gone).
        again: Endpoint | None = None
        timeout = min(self.first_connect_timeout_s, self.connect_timeout_s)
        # Bounded: each endpoint is tried once, plus at most one second try.
        while True:
            ep = self._next_endpoint(tried)
            if ep is None:
                if again is None:
                    return  # every endpoint refused: `_connect` closes the client
                ep, again = again, None
            if conn not in self._conns:
                return  # the client left while an attempt was failing
            tried.add(ep.key)
            backend, timed_out = await self._connect_one(conn, ep, timeout)
            first = timeout < self.connect_timeout_s
            timeout = self.connect_timeout_s
            if backend is None:
                if timed_out and first:
                    again = ep
                continue
            if conn.transport is None or conn.transport.is_closing() or conn not in self._conns:
                if backend.transport is not None:
                    backend.transport.close()
                return
            self._by_key.setdefault(ep.key, set()).add(conn)
            conn.attach(backend, ep.key)
            return

    async def _connect_one(
        self, conn: _ClientSide, ep: Endpoint, attempt_s: float
    ) -> tuple[_BackendSide | None, bool]:
        """Returns (the connected backend or None, whether the attempt timed out)."""
        loop = self._loop
        assert loop is not None
        backend = _BackendSide(conn)
        conn.idle_since = loop.time()  # the connect sweeper times the attempt from here
        conn.attempt_timeout = attempt_s
        self._connecting.add(conn)
        if self._connect_sweeper is None:
            self._schedule_connect_sweep()
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
            self._backend_failed(ep.key)
            log.debug(
                "%s: connect to %s (%s:%d) timed out after %.2fs",
                self.name,
                ep.key,
                ep.host,
                ep.port,
                attempt_s,
            )
            return None, True
        except OSError as e:
            self._c.backend_errors += 1
            self._backend_failed(ep.key)
            log.debug(
                "%s: connect to %s (%s:%d) failed: %s", self.name, ep.key, ep.host, ep.port, e
            )
            return None, False
        except Exception:  # never let a connect bug kill the task silently
            self._c.backend_errors += 1
            self._backend_failed(ep.key)
            log.exception("%s: connect to %s (%s:%d) failed", self.name, ep.key, ep.host, ep.port)
            return None, False
        finally:
            self._connecting.discard(conn)
        return backend, False

    def _closed(self, conn: _ClientSide) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        self._connecting.discard(conn)
        self._budget.used -= 1
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

    # -- timeouts: sweepers instead of a timer per connection -------------------------

    def _schedule_sweep(self) -> None:
        if self._loop is None:
            return
        # Idle connections are closed up to a quarter late (at most 1 s late): a timer
        # per connection would cost more than the rest of a short connection.
        interval = max(0.01, min(self.idle_timeout_s / 4, self.connect_timeout_s / 4, 1.0))
        self._sweeper = self._loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        limit = self.idle_timeout_s
        for conn in list(self._conns):
            if conn.backend is None:
                continue  # connecting: the connect sweeper's
            moved = conn.nbytes + conn.backend.nbytes
            if moved != conn.last_total:
                conn.last_total = moved
                conn.idle_since = now
            elif limit > 0 and now - conn.idle_since >= limit:
                log.debug("%s: closing a connection idle for %.1fs", self.name, limit)
                conn.abort()
        if (
            self._accepting
            and not self.serving()
            and (self._reopen_task is None or self._reopen_task.done())
        ):
            self._reopen_task = self._loop.create_task(self._reopen())
        self._schedule_sweep()

    def _schedule_connect_sweep(self) -> None:
        assert self._loop is not None
        # Attempts time out up to a quarter late: ~60 ms for the short first attempt.
        shortest = min(self.first_connect_timeout_s, self.connect_timeout_s)
        self._connect_sweeper = self._loop.call_later(max(0.01, shortest / 4), self._sweep_connects)

    def _sweep_connects(self) -> None:
        assert self._loop is not None
        self._connect_sweeper = None
        now = self._loop.time()
        for conn in list(self._connecting):
            task = conn.connect_task
            if (
                task is not None
                and not task.done()
                and not conn.connect_timed_out
                and now - conn.idle_since >= conn.attempt_timeout
            ):
                conn.connect_timed_out = True
                task.cancel()
        if self._connecting and self._accepting:
            self._schedule_connect_sweep()


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
