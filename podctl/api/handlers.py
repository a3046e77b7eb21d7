"""The control API's verbs: what `podctl get|describe|events|scale|down` ask a running podctl.

Each verb reads the rooms' state (the controller's last plan, the services
router, the health store, the event log) and answers with the rows of
`podctl.api.schema`. Every message that could carry a secret passes the
redactor on its way out.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from podctl.api.names import find_replica
from podctl.api.schema import EndpointRow, EventRow, Reply, ServiceRow, StackRow

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from podctl.api.schema import Request
    from podctl.health.store import HealthStore
    from podctl.net.services import ServiceRouter
    from podctl.reconcile.controller import Controller
    from podctl.reconcile.events import Event
    from podctl.reconcile.steps import ReplicaStatus
    from podctl.storage.redact import Redactor


class StackOwner(Protocol):
    """What changes the set of stacks a podctl runs (the app owns that)."""

    async def down(self, stack: str, *, remove_volumes: bool) -> int: ...

    def scale(self, stack: str, pod: str, replicas: int) -> None: ...


class ControlHandlers:
    def __init__(
        self,
        controller: Controller,
        router: ServiceRouter,
        health: HealthStore,
        owner: StackOwner,
        redactor: Redactor | None = None,
    ) -> None:
        self.controller = controller
        self.router = router
        self.health = health
        self.owner = owner
        self.redactor = redactor

    async def handle(self, request: Request) -> Reply:
        match request.verb:
            case "ping":
                return Reply(ok=True, data={"pid": os.getpid()}, engine=self._engine())
            case "get_pods":
                return self._reply(self._status(request.stack))
            case "get_services":
                await self.router.proxies.refresh_stats()
                return self._reply(self.service_rows(request.stack))
            case "get_stacks":
                return self._reply(self.stack_rows())
            case "describe_pod":
                return self.describe_pod(request.name or "")
            case "describe_service":
                await self.router.proxies.refresh_stats()
                rows = [
                    r
                    for r in self.service_rows(None)
                    if request.name in (r.name, f"{r.stack}/{r.name}")
                ]
                if not rows:
                    return Reply(ok=False, error=f"no service named {request.name!r}")
                return self._reply(rows[0])
            case "events":
                return self._reply(self._events(request.stack))
            case "scale":
                return self.scale(request.stack or "", request.name or "", request.replicas or 0)
            case "down":
                return await self.down(request.stack or "", request.volumes)

    async def stream(self, request: Request) -> AsyncIterator[bytes]:
        receive = self.controller.events.subscribe()
        for row in self._events(request.stack):
            yield msgspec.json.encode(row) + b"\n"
        async with receive:
            async for e in receive:
                if request.stack is None or e.stack in (request.stack, ""):
                    yield msgspec.json.encode(self._event_row(e)) + b"\n"

    # -- rows --------------------------------------------------------------------

    def _engine(self) -> str:
        c = self.controller
        return "ok" if c.engine_ok else f"unavailable: {c.engine_error}"

    def _redact(self, text: str) -> str:
        return self.redactor.redact(text) if self.redactor else text

    def _reply(self, data: Any) -> Reply:
        return Reply(ok=True, data=msgspec.to_builtins(data), engine=self._engine())

    def _status(self, stack: str | None) -> list[ReplicaStatus]:
        return [
            self._live(s) for s in self.controller.status() if stack is None or s.stack == stack
        ]

    def _live(self, s: ReplicaStatus) -> ReplicaStatus:
        """The replica with its probe message as of now. A failing probe's message
        changing (connection refused, then HTTP 404) does not wake the planner, so
        the reason of its last pass may be stale; the health store is not."""
        if s.ready or s.container_id is None or not (s.reason or "").startswith("Unhealthy"):
            return s
        h = self.health.get(s.container_id)
        if h is None or h.ready or not h.message:
            return s
        return msgspec.structs.replace(s, reason=f"Unhealthy: {h.message}")

    def _event_row(self, e: Event) -> EventRow:
        return EventRow(
            time=e.time,
            stack=e.stack,
            object=e.object,
            reason=e.reason,
            message=self._redact(e.message),
        )

    def _events(self, stack: str | None) -> list[EventRow]:
        return [self._event_row(e) for e in self.controller.events.history(stack)]

    def service_rows(self, stack: str | None) -> list[ServiceRow]:
        rows = []
        stats = self.router.stats()
        status = self.controller.status()
        for st in self.controller.stacks:
            if stack is not None and st.name != stack:
                continue
            for svc in st.services:
                key = f"{st.name}/{svc.name}"
                host, in_stack = self.router.addresses(st.name, svc.name)
                # Readiness as the proxy routes now (probes), not as of the last snapshot.
                routed = {e.key for e in self.router.endpoints(st.name, svc.name)}
                eps = [
                    EndpointRow(
                        pod=s.name,
                        address=f"{s.ip}:{svc.target_port}",
                        ready=s.container_id in routed,
                    )
                    for s in status
                    if s.stack == st.name and s.pod == svc.pod and s.ip and s.container_id
                ]
                counters = stats.get(key)
                rows.append(
                    ServiceRow(
                        stack=st.name,
                        name=svc.name,
                        listen=host,
                        endpoints=eps,
                        pod=svc.pod,
                        target=svc.target_port,
                        in_stack=in_stack,
                        error=self.router.error(st.name, svc.name),
                        active=counters.active if counters else 0,
                        total=counters.total if counters else 0,
                        bytes_in=counters.bytes_in if counters else 0,
                        bytes_out=counters.bytes_out if counters else 0,
                        backend_errors=counters.backend_errors if counters else 0,
                        rejected=counters.rejected if counters else 0,
                        peer_rejected=counters.peer_rejected if counters else 0,
                    )
                )
        return rows

    def stack_rows(self) -> list[StackRow]:
        status = self.controller.status()
        return [
            StackRow(
                name=st.name,
                source=st.source,
                pods=len(st.pods),
                replicas=sum(p.replicas for p in st.pods),
                ready=sum(1 for s in status if s.stack == st.name and s.ready),
                services=len(st.services),
                engine=self._engine(),
            )
            for st in self.controller.stacks
        ]

    def describe_pod(self, name: str) -> Reply:
        try:
            found = find_replica(self.controller.status(), name)
        except LookupError as exc:
            return Reply(ok=False, error=str(exc))
        if found is None:
            return Reply(ok=False, error=f"no pod replica named {name!r} (see `podctl get pods`)")
        s = self._live(found)
        stack = self.controller.stack(s.stack)
        pod = stack.pod(s.pod) if stack else None
        probes: dict[str, Any] = {}
        if pod is not None:
            for kind in ("startup", "liveness", "readiness"):
                spec = getattr(pod.template, kind)
                if spec is not None:
                    probes[kind] = msgspec.to_builtins(spec)
        results = self.health.results(s.container_id) if s.container_id else []
        health_events = self.health.events(s.container_id) if s.container_id else []
        events: list[dict[str, Any]] = [
            {"time": e.time, "reason": e.reason, "message": self._redact(e.message)}
            for e in self.controller.events.history(s.stack)
            if e.object.startswith(f"pod:{s.stack}/{s.pod}/{s.replica}")
            or e.object == f"container:{s.name}"
        ][-20:]
        events += [
            {"time": e.at, "reason": e.kind, "message": self._redact(e.message), "count": e.count}
            for e in health_events[-10:]
        ]
        data = {
            "pod": msgspec.to_builtins(s),
            "restart_policy": pod.restart if pod else None,
            "depends_on": list(pod.depends_on) if pod else [],
            "probes": probes,
            "probe_results": [msgspec.to_builtins(r) for r in results[-10:]],
            "events": events,
        }
        return Reply(ok=True, data=data, engine=self._engine())

    # -- changes -----------------------------------------------------------------

    def scale(self, stack: str, pod: str, replicas: int) -> Reply:
        st = self.controller.stack(stack)
        if st is None or st.pod(pod) is None:
            return Reply(ok=False, error=f"no pod {stack}/{pod}")
        try:
            self.owner.scale(stack, pod, replicas)
        except ValueError as exc:
            return Reply(ok=False, error=str(exc))
        return Reply(ok=True, data={"stack": stack, "pod": pod, "replicas": replicas})

    async def down(self, stack: str, volumes: bool) -> Reply:
        if self.controller.stack(stack) is None:
            return Reply(ok=False, error=f"stack {stack!r} is not run by this podctl")
        removed = await self.owner.down(stack, remove_volumes=volumes)
        return Reply(ok=True, data={"removed": removed})
