"""The set of service listeners podctl runs, kept matching what the controller wants.

A service may listen on several addresses: its host port (127.0.0.1:8080 by
default) and, for discovery inside the stack, the stack network's gateway
address on the same port, so a container reaches `web:8080` (an /etc/hosts
entry pointing at the gateway) and gets only ready replicas. `apply()` is
level-triggered like the controller: it opens what is missing (retrying a
listener that failed last time), closes what is no longer wanted, and reports
per-address errors without stopping the other services.

With `kernel_fast_path=True` (root on Linux with nftables), the listen
addresses a listener holds are also programmed as nftables DNAT rules
(`podctl.net.nft`): new connections then bypass the proxy. The listeners stay
open: they keep the port, and they serve whatever the kernel does not (no nft,
nft refused the rules, no ready endpoint). The kernel's table follows the
same `set_endpoints` calls; `run()` applies the changes in the background.

One listener's trouble never ends podctl: whatever opening or closing one
raises becomes a `ListenError` (or a log line), and all listeners share one
descriptor budget (`podctl.net.limits`) so that idle clients cannot take the
descriptors probes and the control socket need.

Under systemd, listeners outlive podctl (`ListenerStore`): each one, once bound,
is handed to the service manager's file descriptor store under
`<stack>/<service>` (`<stack>/<service>+in-stack` for the gateway listener), and
a restarted podctl takes them back from `$LISTEN_FDS` instead of binding. While
no podctl runs, the kernel keeps queueing connections on them; the new podctl
starts accepting an adopted listener once its service has a ready endpoint (or
after `ADOPT_WAIT_S`), so the queued clients are served rather than closed for
want of a backend. A listener closed because it is no longer wanted is removed
from the store (FDSTOREREMOVE=1).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from podctl import defaults
from podctl.net.limits import ConnectionBudget
from podctl.net.nft import KernelFastPath
from podctl.net.proxy import (
    FIRST_CONNECT_TIMEOUT_S,
    Endpoint,
    ProxyBindError,
    ProxyStats,
    ServiceProxy,
    _ClientSide,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from podctl.host.notify import Notifier

log = logging.getLogger(__name__)

# How long an adopted listener waits (unaccepted, clients queued in the kernel) for
# its service to have a ready endpoint before it accepts anyway.
ADOPT_WAIT_S = 30.0
IN_STACK_SUFFIX = "+in-stack"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int
    # May the kernel fast path serve this address? The in-stack listener on a
    # network's gateway stays in userspace: DNAT back into the same bridge would
    # need hairpin NAT for the replies.
    kernel: bool = True
    # Serve only clients from this network (a CIDR, e.g. the stack network's subnet
    # "172.20.0.0/16"); others are closed at once and counted (`peer_rejected`).
    # The in-stack listener on a bridge gateway is otherwise reachable from every
    # container on the host.
    peers: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServiceBinding:
    """What one service's proxy should be: where it listens and its limits."""

    name: str  # unique across stacks, e.g. "shop/web"
    listen: tuple[ListenAddress, ...]
    connect_timeout_s: float = defaults.PROXY_CONNECT_TIMEOUT_S
    idle_timeout_s: float = defaults.PROXY_IDLE_TIMEOUT_S
    max_connections: int = defaults.PROXY_MAX_CONNECTIONS  # a ceiling; see `budget`
    first_connect_timeout_s: float = FIRST_CONNECT_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class ListenError:
    service: str
    address: ListenAddress
    message: str  # "port 8080 on 127.0.0.1 is in use by another process"


def fd_name(service: str, addr: ListenAddress) -> str:
    """The name of a listener in the descriptor store: `shop/web`, `shop/web+in-stack`."""
    return service + (IN_STACK_SUFFIX if addr.peers is not None else "")


def _same_address(sock: socket.socket, addr: ListenAddress) -> bool:
    """Is `sock` a TCP listener on `addr`? (A changed bind or port is not adopted.)"""
    try:
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            return False
        host, port = sock.getsockname()[:2]
    except OSError:
        return False
    if port != addr.port:
        return False
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(addr.host)
    except ValueError:
        return True  # a host name ("localhost"): the port decides


class ListenerStore:
    """Listeners kept by the service manager's descriptor store across restarts.

    `adopted`: {name: socket} passed in $LISTEN_FDS (`podctl.host.listenfds`).
    Without a notifier (no systemd) nothing is stored and nothing was adopted.
    """

    def __init__(
        self, notifier: Notifier | None = None, adopted: dict[str, socket.socket] | None = None
    ) -> None:
        self.notifier = notifier if notifier is not None and notifier.enabled else None
        self.adopted = dict(adopted or {})
        self.stored: set[str] = set(self.adopted)  # names the store holds (as far as we know)
        self.started_at: float | None = None  # when the first apply ran (event loop clock)

    def take(self, name: str, addr: ListenAddress) -> socket.socket | None:
        """The adopted listener for `name` if it listens on `addr` (else dropped)."""
        sock = self.adopted.pop(name, None)
        if sock is None:
            return None
        if _same_address(sock, addr):
            return sock
        log.info("stored listener %s is not on %s any more: replacing it", name, addr)
        self.drop(name, sock)
        return None

    def put_back(self, name: str, sock: socket.socket) -> None:
        self.adopted[name] = sock

    def store(self, name: str, sock: socket.socket | None) -> None:
        """Hand a newly bound listener to the store (systemd keeps a duplicate)."""
        if self.notifier is None or sock is None:
            return
        if self.notifier.fdstore(sock.fileno(), name):
            self.stored.add(name)
            log.debug("listener %s handed to the descriptor store", name)

    def forget(self, name: str) -> None:
        """The listener is no longer wanted: out of the store, so it really closes."""
        if self.notifier is not None and name in self.stored:
            self.notifier.fdstore_remove(name)
        self.stored.discard(name)

    def drop(self, name: str, sock: socket.socket) -> None:
        sock.close()
        self.forget(name)

    def drop_unwanted(self, wanted: set[str]) -> None:
        for name in [n for n in self.adopted if n not in wanted]:
            log.info("stored listener %s belongs to no service now: closing it", name)
            self.drop(name, self.adopted.pop(name))

    def close(self, *, forget: bool) -> None:
        """podctl stops: close our copies; with `forget`, empty the store too."""
        for sock in self.adopted.values():
            sock.close()
        self.adopted.clear()
        if forget:
            for name in list(self.stored):
                self.forget(name)


class _StoredProxy(ServiceProxy):
    """A ServiceProxy whose listening socket the service manager also holds.

    It keeps a duplicate of that socket (`listener`): the event loop is always given
    a fresh dup of it, so that when uvloop closes its copy after an accept error it
    cannot absorb, the re-open serves the same socket again. Binding anew would fail
    (the stored twin still holds the port) and leave the clients queued on it unserved.
    `sock`: a listener passed back by the service manager (else one is bound).
    """

    def __init__(self, *args: object, sock: socket.socket | None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.listener: socket.socket | None = sock

    async def _listen(self, port: int) -> asyncio.AbstractServer:
        if self.listener is None:
            server = await super()._listen(port)
            for bound in getattr(server, "sockets", None) or ():
                self.listener = socket.socket(fileno=os.dup(bound.fileno()))
                break
            return server
        assert self._loop is not None
        return await self._loop.create_server(
            lambda: _ClientSide(self), sock=self.listener.dup(), backlog=self._backlog
        )

    async def close(self, drain_s: float = 0.0) -> None:
        server = self._server
        if server is not None and drain_s > 0:
            # Stop listening first and let the connections the loop has already taken
            # from the backlog reach the proxy (a tick or two): they are then served
            # and drained, not reset as arrivals at a closed listener would be.
            server.close()
            for _ in range(3):
                await asyncio.sleep(0)
        try:
            await super().close(drain_s)
        finally:
            if self.listener is not None:
                self.listener.close()
                self.listener = None


class ProxySet:
    """All service listeners. One event loop; not thread-safe."""

    def __init__(
        self,
        *,
        drain_s: float = defaults.STOP_GRACE_S,
        kernel_fast_path: bool = False,
        kernel: KernelFastPath | None = None,
        store: ListenerStore | None = None,
    ) -> None:
        """`kernel_fast_path`: serve host ports with nftables DNAT where possible.

        `kernel` replaces the `KernelFastPath` (tests); it implies the fast path.
        """
        self._drain_s = drain_s  # how long a removed listener's connections may finish
        self._listeners: dict[tuple[str, ListenAddress], ServiceProxy] = {}
        self._endpoints: dict[str, tuple[Endpoint, ...]] = {}
        self._errors: dict[tuple[str, ListenAddress], ListenError] = {}
        # Proxied connections across all listeners, capped by RLIMIT_NOFILE (re-read
        # by every `apply`, which is when listeners are created).
        self.budget = ConnectionBudget()
        if kernel is None and kernel_fast_path:
            kernel = KernelFastPath()
        self.kernel = kernel
        self.store = store if store is not None else ListenerStore()
        # Adopted listeners waiting for a ready endpoint: (service, address) keys.
        self._pending: set[tuple[str, ListenAddress]] = set()
        # Called when a pending listener's service gets an endpoint (apply again).
        self.wakeup: Callable[[], None] = lambda: None

    async def apply(self, services: list[ServiceBinding]) -> list[ListenError]:
        """Open and close listeners to match `services`; return the addresses that failed."""
        wanted: dict[tuple[str, ListenAddress], ServiceBinding] = {}
        for svc in services:
            for addr in svc.listen:
                wanted[(svc.name, addr)] = svc
        gone_keys = [k for k in list(self._listeners) if k not in wanted]
        gone = [self._listeners.pop(k) for k in gone_keys]
        for key in gone_keys:
            self.store.forget(fd_name(*key))
        self._pending = set()
        now = anyio.current_time()
        if self.store.started_at is None:
            self.store.started_at = now
        adopt_waiting = now < self.store.started_at + ADOPT_WAIT_S
        names = {svc.name for svc in services}
        for name in [n for n in self._endpoints if n not in names]:
            del self._endpoints[name]
        if self.kernel is not None and gone:
            # Take the DNAT rules of closing addresses away before the listeners go.
            for name in {p.name for p in gone}:
                self._kernel_update(name)
            await self.kernel.sync()
        await _close_all(gone, self._drain_s)
        self._errors = {}
        cap = self.budget.refresh()
        for key, svc in wanted.items():
            proxy = self._listeners.get(key)
            if proxy is not None:
                # Limits can change in place; the listener stays.
                proxy.connect_timeout_s = svc.connect_timeout_s
                proxy.first_connect_timeout_s = svc.first_connect_timeout_s
                proxy.idle_timeout_s = svc.idle_timeout_s
                proxy.max_connections = min(svc.max_connections, cap)
                continue
            addr = key[1]
            name = fd_name(svc.name, addr)
            sock = self.store.take(name, addr)
            if sock is not None and adopt_waiting and not self._endpoints.get(svc.name):
                # Clients queue in the kernel until there is someone to serve them.
                self.store.put_back(name, sock)
                self._pending.add(key)
                continue
            try:
                stored = sock is not None or self.store.notifier is not None
                proxy = (_stored(sock) if stored else ServiceProxy)(
                    svc.name,
                    addr.host,
                    addr.port,
                    connect_timeout_s=svc.connect_timeout_s,
                    first_connect_timeout_s=svc.first_connect_timeout_s,
                    idle_timeout_s=svc.idle_timeout_s,
                    max_connections=svc.max_connections,
                    peers=addr.peers,
                    budget=self.budget,
                )
            except ValueError as e:
                if sock is not None:
                    self.store.put_back(name, sock)
                self._errors[key] = ListenError(svc.name, addr, f"bad peers {addr.peers!r}: {e}")
                continue
            proxy.set_endpoints(self._endpoints.get(svc.name, ()))
            try:
                await proxy.start()
            except ProxyBindError as e:
                self._errors[key] = ListenError(svc.name, addr, e.strerror or str(e))
                continue
            except Exception as e:  # contained: one listener never ends podctl
                log.exception("%s: opening %s failed", svc.name, addr)
                self._errors[key] = ListenError(svc.name, addr, f"cannot listen on {addr}: {e}")
                with anyio.CancelScope(shield=True):
                    await _close_all([proxy], 0.0)
                continue
            self._listeners[key] = proxy
            if sock is None and isinstance(proxy, _StoredProxy):
                self.store.store(name, proxy.listener)
            elif sock is not None:
                log.info(
                    "%s: serving %s on the listener passed by the service manager", svc.name, addr
                )
        self.store.drop_unwanted({fd_name(*k) for k in wanted})
        if self.kernel is not None:
            for name in self.kernel.services() - names:
                self.kernel.remove(name)
            for svc in services:
                self._kernel_update(svc.name)
            await self.kernel.sync()
        return list(self._errors.values())

    def _kernel_update(self, service: str) -> None:
        """Point the kernel at `service`'s ready endpoints on the addresses it holds."""
        if self.kernel is None:
            return
        # The bound address: the real port when a listener asked for port 0.
        listen = [
            proxy.address
            for (n, addr), proxy in self._listeners.items()
            if n == service and addr.kernel
        ]
        eps = self._endpoints.get(service, ())
        if listen and eps:
            self.kernel.set_endpoints(service, listen, eps)
        else:
            # No listener (the port belongs to someone else) or nothing ready: the proxy
            # (or nobody) answers, never a stale DNAT rule.
            self.kernel.remove(service)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the kernel fast path in step with `set_endpoints` (start it in a task group).

        Without the fast path it only waits. On cancellation podctl's nft table is deleted.
        """
        if self.kernel is None:
            task_status.started()
            await anyio.sleep_forever()
        else:
            await self.kernel.run(task_status=task_status)

    def set_endpoints(self, service: str, endpoints: list[Endpoint] | tuple[Endpoint, ...]) -> None:
        """Swap the routing table of every listener of `service` (ready endpoints only)."""
        table = tuple(endpoints)
        self._endpoints[service] = table
        if table and any(name == service for name, _ in self._pending):
            self.wakeup()
        for (name, _), proxy in self._listeners.items():
            if name == service:
                proxy.set_endpoints(table)
        self._kernel_update(service)

    async def drain(self, service: str, key: str, timeout_s: float) -> int:
        """Let connections of `service` to `key` finish for `timeout_s`, then reset them.

        With the fast path, first wait (up to `timeout_s`) until the kernel's
        table no longer sends new connections to `key`. Connections the kernel
        already DNAT'd cannot be reset from here: they end when the replica stops.
        """
        if self.kernel is not None:
            await self.kernel.wait_synced(max(timeout_s, 1.0))
        total = 0
        for (name, _), proxy in list(self._listeners.items()):
            if name == service:
                total += await proxy.drain(key, timeout_s)
        return total

    def backend_failures(self) -> dict[str, float]:
        """Endpoint key -> the latest connect failure or reset any listener saw on it
        (wall clock). Connections the kernel DNATs are not seen."""
        out: dict[str, float] = {}
        for proxy in self._listeners.values():
            for key, at in proxy.backend_failures().items():
                if at > out.get(key, float("-inf")):
                    out[key] = at
        return out

    def listening(self, service: str) -> list[ListenAddress]:
        return [addr for (name, addr) in self._listeners if name == service]

    def pending_until(self) -> float | None:
        """When adopted listeners still waiting for an endpoint accept anyway (or None)."""
        if not self._pending or self.store.started_at is None:
            return None
        return self.store.started_at + ADOPT_WAIT_S

    def errors(self) -> list[ListenError]:
        return list(self._errors.values())

    def kernel_serves(self, service: str) -> bool:
        """True when nftables DNAT (not the proxy) takes `service`'s new connections."""
        return self.kernel is not None and self.kernel.serves(service)

    def stats(self) -> dict[str, ProxyStats]:
        """Counters per service, summed over its listeners.

        Connections the kernel DNAT'd count in `total` (as of the last
        `refresh_stats`); their bytes and activity are not visible to podctl.
        """
        out: dict[str, ProxyStats] = {}
        for (name, _), proxy in self._listeners.items():
            out[name] = out.get(name, ProxyStats()) + proxy.stats()
        if self.kernel is not None:
            for name, ks in self.kernel.stats().items():
                if name in out:
                    out[name] = out[name] + ProxyStats(total=ks.connections)
        return out

    async def refresh_stats(self) -> None:
        """Read the kernel's counters (one `nft` call); a no-op without the fast path."""
        if self.kernel is not None:
            await self.kernel.refresh()

    async def close(self, drain_s: float = 0.0, *, forget: bool = True) -> None:
        """Close every listener; `drain_s` lets open connections finish first.

        `forget=False` (podctl stops but its pods stay, `run --keep`): the listeners stay
        in the descriptor store for the next podctl, and connections queue meanwhile.
        """
        self.store.close(forget=forget)
        if self.kernel is not None:
            # First, so that new connections reach the closing listeners (and are refused)
            # rather than being DNAT'd behind podctl's back.
            with anyio.CancelScope(shield=True):
                await self.kernel.close()
        listeners, self._listeners = self._listeners, {}
        await _close_all(list(listeners.values()), drain_s)


def _stored(sock: socket.socket | None) -> Callable[..., ServiceProxy]:
    def make(*args: object, **kwargs: object) -> ServiceProxy:
        return _StoredProxy(*args, sock=sock, **kwargs)

    return make


async def _close_all(proxies: list[ServiceProxy], drain_s: float) -> None:
    # Concurrently: each may wait up to drain_s for its connections.
    async with anyio.create_task_group() as tg:
        for proxy in proxies:
            tg.start_soon(_close_one, proxy, drain_s)


async def _close_one(proxy: ServiceProxy, drain_s: float) -> None:
    try:
        await proxy.close(drain_s)
    except Exception:  # contained: closing one listener must not stop the others
        log.exception("%s: closing %s:%d failed", proxy.name, proxy.bind, proxy.port)
