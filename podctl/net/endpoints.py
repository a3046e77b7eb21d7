"""Routing tables: which replicas each service sends new connections to. Pure.

Two sources feed them, at different speeds. The controller's snapshot says
which containers exist, run and have an address (it changes when containers
appear or go, and needs the engine). The probers say which of those are ready
(they change within one probe period, and need no engine). The tables are
recomputed from both whenever either changes, so a replica failing its
readiness probe leaves every table at once even while the engine is frozen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

from podctl.health.model import is_ready
from podctl.net.proxy import Endpoint

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from podctl.health.model import HealthView
    from podctl.spec.model import DesiredStack

RoutingTables = dict[str, tuple[Endpoint, ...]]  # "stack/service" -> endpoints


class Backend(msgspec.Struct, frozen=True, kw_only=True):
    """A running replica with an address, as the controller last observed it."""

    stack: str
    pod: str
    name: str  # container name: endpoints are ordered by it
    container_id: str
    ip: str
    started_at: float | None = None


class ObservedReplica(Protocol):
    """A replica as the controller's last plan shows it (`ReplicaStatus` is one)."""

    @property
    def stack(self) -> str: ...
    @property
    def pod(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def container_id(self) -> str | None: ...
    @property
    def ip(self) -> str | None: ...
    @property
    def phase(self) -> str: ...
    @property
    def started_at(self) -> float | None: ...


def backends(replicas: Iterable[ObservedReplica]) -> list[Backend]:
    """The replicas that may take traffic at all: running, with an address (not
    pending, crash-looping or terminating). Readiness is decided later, per probe."""
    return [
        Backend(
            stack=r.stack,
            pod=r.pod,
            name=r.name,
            container_id=r.container_id,
            ip=r.ip,
            started_at=r.started_at,
        )
        for r in replicas
        if r.phase == "Running" and r.container_id and r.ip
    ]


def service_key(stack: str, service: str) -> str:
    return f"{stack}/{service}"


def routing_tables(
    stacks: Sequence[DesiredStack],
    backends: Iterable[Backend],
    health: HealthView,
    gone: Collection[str] = (),
) -> RoutingTables:
    """Every service's ready endpoints.

    `gone` holds containers known to have died since the snapshot (the engine's
    `die` event arrives before a new snapshot does): they get no new connection.
    """
    by_pod: dict[tuple[str, str], list[Backend]] = {}
    for b in backends:
        if b.container_id not in gone:
            by_pod.setdefault((b.stack, b.pod), []).append(b)
    tables: RoutingTables = {}
    for stack in stacks:
        gated = {
            p.name: p.template.readiness is not None or p.template.startup is not None
            for p in stack.pods
        }
        for svc in stack.services:
            ready = [
                b
                for b in by_pod.get((stack.name, svc.pod), [])
                if is_ready(
                    health.get(b.container_id),
                    started_at=b.started_at,
                    gated=gated.get(svc.pod, False),
                )
            ]
            tables[service_key(stack.name, svc.name)] = tuple(
                Endpoint(key=b.container_id, host=b.ip, port=svc.target_port)
                for b in sorted(ready, key=lambda b: b.name)
            )
    return tables
