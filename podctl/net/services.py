"""Services: where each one listens and which replicas it routes to.

`ServiceRouter` is the net room's face to the rest of podctl. The controller
tells it, after each snapshot, which stacks are desired, which replicas run
and what the stack networks are (`observe`); the health room tells it when
a container's readiness changed (`health_changed`); the engine's event stream
tells it when a container died (`died`). Each of these recomputes the routing
tables (`net.endpoints`, pure) and swaps them into the proxies at once. None of
them waits on the engine, so a frozen engine never keeps an unready replica in
a table.

Listeners are opened and closed by a task of their own (`run`): binding can
fail (a port in use) and is retried every few seconds without holding up
routing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from podctl.net.endpoints import Backend, ObservedReplica, backends, routing_tables, service_key
from podctl.net.proxyset import ListenAddress, ProxySet, ServiceBinding

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from podctl.health.model import HealthView
    from podctl.net.proxy import Endpoint, ProxyStats
    from podctl.runtime.protocol import NetworkInfo
    from podctl.spec.model import DesiredStack

log = logging.getLogger("podctl.services")

LISTEN_RETRY_S = 5.0
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
EventSink = Callable[[str, str, str, str], None]  # stack, object, reason, message


class ServiceAddresses:
    """Where one service listens: its host address and its in-stack address (or None)."""

    __slots__ = ("host", "in_stack")

    def __init__(self, host: str | None, in_stack: str | None) -> None:
        self.host = host
        self.in_stack = in_stack


class ServiceRouter:
    def __init__(
        self,
        proxies: ProxySet,
        health: Callable[[], HealthView],
        on_event: EventSink = lambda stack, obj, reason, msg: None,
    ) -> None:
        self.proxies = proxies
        self._health = health
        self._on_event = on_event
        self._stacks: Sequence[DesiredStack] = ()
        self._backends: tuple[Backend, ...] = ()
        # Containers the engine said died, with the run (started_at) that died.
        self._gone: dict[str, float | None] = {}
        self._tables: dict[str, tuple[Endpoint, ...]] = {}
        self._bindings: list[ServiceBinding] = []
        self._bindings_changed = anyio.Event()
        self._addresses: dict[str, ServiceAddresses] = {}
        self._errors: dict[str, str] = {}
        self._warned: set[str] = set()
        # An adopted listener (a restart under systemd) waits for its first ready
        # endpoint: then the listeners are applied again.
        proxies.wakeup = lambda: self._bindings_changed.set()

    # -- what feeds the tables ---------------------------------------------------

    def observe(
        self,
        stacks: Sequence[DesiredStack],
        replicas: Iterable[ObservedReplica],
        networks: Iterable[NetworkInfo],
    ) -> None:
        """A new snapshot: replicas that run, the stacks' networks. Reroutes at once."""
        self._stacks = tuple(stacks)
        self._backends = tuple(backends(replicas))
        runs = {b.container_id: b.started_at for b in self._backends}
        # A died container stays out until a snapshot shows it gone or restarted.
        self._gone = {cid: at for cid, at in self._gone.items() if cid in runs and runs[cid] == at}
        self._set_bindings(self._bindings_for({n.name: n for n in networks}))
        self.refresh()

    def health_changed(self, _stack: str | None = None) -> None:
        """A readiness decision changed (a probe result): reroute without the engine."""
        self.refresh()

    def died(self, container_id: str) -> None:
        """The engine said this container died: no new connections to it from now."""
        for b in self._backends:
            if b.container_id == container_id:
                self._gone[container_id] = b.started_at
                self.refresh()
                return

    def refresh(self) -> None:
        tables = routing_tables(self._stacks, self._backends, self._health(), self._gone)
        for key, endpoints in tables.items():
            if self._tables.get(key) != endpoints:
                self.proxies.set_endpoints(key, endpoints)
        for key in self._tables.keys() - tables.keys():
            self.proxies.set_endpoints(key, ())
        self._tables = tables

    def endpoints(self, stack: str, service: str) -> tuple[Endpoint, ...]:
        return self._tables.get(service_key(stack, service), ())

    # -- listeners ---------------------------------------------------------------

    def _bindings_for(self, networks: Mapping[str, NetworkInfo]) -> list[ServiceBinding]:
        bindings = []
        addresses = {}
        for stack in self._stacks:
            net = networks.get(stack.network)
            for svc in stack.services:
                key = service_key(stack.name, svc.name)
                listen = []
                host = in_stack = None
                if svc.port is not None:
                    if svc.bind not in LOOPBACK and key not in self._warned:
                        self._warned.add(key)
                        log.warning(
                            "service %s listens on %s:%d: reachable from other hosts",
                            key,
                            svc.bind,
                            svc.port,
                        )
                    listen.append(ListenAddress(svc.bind, svc.port))
                    host = f"{svc.bind}:{svc.port}"
                if net is not None and net.gateway:
                    # In-stack discovery: `web:8080` resolves to the gateway (host
                    # entries), where only the stack's own subnet is served.
                    port = svc.port if svc.port is not None else svc.target_port
                    listen.append(ListenAddress(net.gateway, port, kernel=False, peers=net.subnet))
                    in_stack = f"{net.gateway}:{port}"
                addresses[key] = ServiceAddresses(host, in_stack)
                bindings.append(ServiceBinding(name=key, listen=tuple(listen)))
        self._addresses = addresses
        return bindings

    def _set_bindings(self, bindings: list[ServiceBinding]) -> None:
        if bindings != self._bindings:
            self._bindings = bindings
            self._bindings_changed.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the listeners matching the bindings; retry those that failed."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.proxies.run)
            task_status.started()
            while True:
                await self._bindings_changed.wait()
                self._bindings_changed = anyio.Event()
                try:
                    errors = await self.proxies.apply(list(self._bindings))
                except Exception as exc:  # e.g. nft refused the fast path's rules
                    # A failure here must never end podctl: report it and try again.
                    log.exception("updating the service listeners failed")
                    self._on_event("", "services", "Failed", f"updating listeners: {exc}")
                    errors = []
                    self._bindings_changed.set()
                    await anyio.sleep(LISTEN_RETRY_S)
                    continue
                now: dict[str, str] = {}
                for e in errors:
                    msg = f"cannot listen on {e.address}: {e.message}"
                    if self._errors.get(e.service) != msg:
                        stack = e.service.split("/", 1)[0]
                        self._on_event(stack, f"service:{e.service}", "Failed", msg)
                    now[e.service] = msg
                self._errors = now
                if errors:
                    # The port may be freed by whoever holds it: try again in a while.
                    with anyio.move_on_after(LISTEN_RETRY_S):
                        await self._bindings_changed.wait()
                    self._bindings_changed.set()
                elif (until := self.proxies.pending_until()) is not None:
                    # Adopted listeners not accepting yet: at the latest at `until`.
                    with anyio.move_on_after(max(0.0, until - anyio.current_time())):
                        await self._bindings_changed.wait()
                    self._bindings_changed.set()

    # -- for the control API ------------------------------------------------------

    def addresses(self, stack: str, service: str) -> tuple[str | None, str | None]:
        """(host, in-stack) addresses that are really listening now."""
        key = service_key(stack, service)
        a = self._addresses.get(key)
        if a is None:
            return None, None
        listening = {str(addr) for addr in self.proxies.listening(key)}
        return (
            a.host if a.host in listening else None,
            a.in_stack if a.in_stack in listening else None,
        )

    def error(self, stack: str, service: str) -> str | None:
        return self._errors.get(service_key(stack, service))

    def stats(self) -> dict[str, ProxyStats]:
        return self.proxies.stats()

    def backend_failures(self) -> dict[str, float]:
        """Container id -> wall-clock time of the proxy's latest connect failure or
        reset to it: a rollout's `min_ready` for that replica starts over then."""
        return self.proxies.backend_failures()

    async def drain(self, container_id: str, grace_s: float) -> None:
        """Before a replica stops: it gets no new connections (it is out of every
        table already), and open ones get up to its grace period to finish."""
        async with anyio.create_task_group() as tg:
            for key in list(self._tables):
                tg.start_soon(self.proxies.drain, key, container_id, grace_s)

    async def close(self, drain_s: float = 0.0, *, forget: bool = True) -> None:
        """Close the listeners (see `ProxySet.close`: `forget=False` keeps them in the
        service manager's descriptor store for the next podctl)."""
        await self.proxies.close(drain_s=drain_s, forget=forget)
