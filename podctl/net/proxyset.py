"""The set of service listeners podctl runs, kept matching what the controller wants.

A service may listen on several addresses: its host port (127.0.0.1:8080 by
default) and, for discovery inside the stack, the stack network's gateway
address on the same port, so a container reaches `web:8080` (an /etc/hosts
entry pointing at the gateway) and gets only ready replicas. `apply()` is
level-triggered like the controller: it opens what is missing (retrying a
listener that failed last time), closes what is no longer wanted, and reports
per-address errors without stopping the other services.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from podctl import defaults
from podctl.net.proxy import Endpoint, ProxyBindError, ProxyStats, ServiceProxy


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServiceBinding:
    """What one service's proxy should be: where it listens and its limits."""

    name: str  # unique across stacks, e.g. "shop/web"
    listen: tuple[ListenAddress, ...]
    connect_timeout_s: float = defaults.PROXY_CONNECT_TIMEOUT_S
    idle_timeout_s: float = defaults.PROXY_IDLE_TIMEOUT_S
    max_connections: int = defaults.PROXY_MAX_CONNECTIONS


@dataclass(frozen=True, slots=True)
class ListenError:
    service: str
    address: ListenAddress
    message: str  # "port 8080 on 127.0.0.1 is in use by another process"


class ProxySet:
    """All service listeners. One event loop; not thread-safe."""

    def __init__(self, *, drain_s: float = defaults.STOP_GRACE_S) -> None:
        self._drain_s = drain_s  # how long a removed listener's connections may finish
        self._listeners: dict[tuple[str, ListenAddress], ServiceProxy] = {}
        self._endpoints: dict[str, tuple[Endpoint, ...]] = {}
        self._errors: dict[tuple[str, ListenAddress], ListenError] = {}

    async def apply(self, services: list[ServiceBinding]) -> list[ListenError]:
        """Open and close listeners to match `services`; return the addresses that failed."""
        wanted: dict[tuple[str, ListenAddress], ServiceBinding] = {}
        for svc in services:
            for addr in svc.listen:
                wanted[(svc.name, addr)] = svc
        gone = [self._listeners.pop(k) for k in list(self._listeners) if k not in wanted]
        await _close_all(gone, self._drain_s)
        names = {svc.name for svc in services}
        for name in [n for n in self._endpoints if n not in names]:
            del self._endpoints[name]
        self._errors = {}
        for key, svc in wanted.items():
            proxy = self._listeners.get(key)
            if proxy is not None:
                # Limits can change in place; the listener stays.
                proxy.connect_timeout_s = svc.connect_timeout_s
                proxy.idle_timeout_s = svc.idle_timeout_s
                proxy.max_connections = svc.max_connections
                continue
            addr = key[1]
            proxy = ServiceProxy(
                svc.name,
                addr.host,
                addr.port,
                connect_timeout_s=svc.connect_timeout_s,
                idle_timeout_s=svc.idle_timeout_s,
                max_connections=svc.max_connections,
            )
            proxy.set_endpoints(self._endpoints.get(svc.name, ()))
            try:
                await proxy.start()
            except ProxyBindError as e:
                self._errors[key] = ListenError(svc.name, addr, e.strerror or str(e))
                continue
            self._listeners[key] = proxy
        return list(self._errors.values())

    def set_endpoints(self, service: str, endpoints: list[Endpoint] | tuple[Endpoint, ...]) -> None:
        """Swap the routing table of every listener of `service` (ready endpoints only)."""
        table = tuple(endpoints)
        self._endpoints[service] = table
        for (name, _), proxy in self._listeners.items():
            if name == service:
                proxy.set_endpoints(table)

    async def drain(self, service: str, key: str, timeout_s: float) -> int:
        """Let connections of `service` to `key` finish for `timeout_s`, then reset them."""
        total = 0
        for (name, _), proxy in list(self._listeners.items()):
            if name == service:
                total += await proxy.drain(key, timeout_s)
        return total

    def listening(self, service: str) -> list[ListenAddress]:
        return [addr for (name, addr) in self._listeners if name == service]

    def errors(self) -> list[ListenError]:
        return list(self._errors.values())

    def stats(self) -> dict[str, ProxyStats]:
        """Counters per service, summed over its listeners."""
        out: dict[str, ProxyStats] = {}
        for (name, _), proxy in self._listeners.items():
            out[name] = out.get(name, ProxyStats()) + proxy.stats()
        return out

    async def close(self, drain_s: float = 0.0) -> None:
        listeners, self._listeners = self._listeners, {}
        await _close_all(list(listeners.values()), drain_s)


async def _close_all(proxies: list[ServiceProxy], drain_s: float) -> None:
    # Concurrently: each may wait up to drain_s for its connections.
    async with anyio.create_task_group() as tg:
        for proxy in proxies:
            tg.start_soon(proxy.close, drain_s)
