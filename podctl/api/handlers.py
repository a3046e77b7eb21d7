"""The control API's verbs: what `podctl get|describe|events|scale|down|rollout` ask.

Each verb reads the rooms' state (the controller's last plan, the services
router, the health store, the event log) and answers with the rows of
`podctl.api.schema`. Every message that could carry a secret passes the
redactor on its way out.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import msgspec

from podctl.api.names import find_replica
from podctl.api.rollouts import history_rows
from podctl.api.schema import EndpointRow, EventRow, Reply, ServiceRow, StackRow

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from podctl.api.schema import Request
    from podctl.health.store import HealthStore
    from podctl.net.services import ServiceRouter
    from podctl.reconcile.controller import Controller
    from podctl.reconcile.events import Event
    from podctl.reconcile.ledger import RolloutRecord
    from podctl.reconcile.steps import ReplicaStatus, RolloutStatus
    from podctl.storage.history import RevisionRecord
    from podctl.storage.redact import Redactor

# `rollout status -f` re-sends the status at least this often (the client shows elapsed
# time; a pass that changes nothing is not sent).
STATUS_HEARTBEAT_S = 5.0


class StackOwner(Protocol):
    """What changes the set of stacks a podctl runs (the app owns that)."""

    async def down(self, stack: str, *, remove_volumes: bool) -> int: ...

    async def scale(self, stack: str, pod: str, replicas: int) -> None: ...

    def scaled(self, stack: str, pod: str) -> int | None:
        """The replica count `podctl scale` set for the pod while it holds, else None."""
        ...

    async def revisions(self, stack: str, pod: str) -> Sequence[RevisionRecord]: ...

    async def rollout_undo(
        self, stack: str, pod: str, to_revision: str | None
    ) -> RolloutRecord: ...


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
                return await self.scale(
                    request.stack or "", request.name or "", request.replicas or 0
                )
            case "down":
                return await self.down(request.stack or "", request.volumes)
            case "rollout_status":
                return self.rollout_status(request.stack or "", request.name or "")
            case "rollout_history":
                return await self.rollout_history(request.stack or "", request.name or "")
            case "rollout_undo" | "rollout_pause" | "rollout_resume":
                return await self.rollout_change(request)

    async def stream(self, request: Request) -> AsyncIterator[bytes]:
        if request.verb == "rollout_status":
            async for line in self.follow_rollout(request.stack or "", request.name or ""):
                yield line
            return
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
        notes: dict[tuple[str, str], str | None] = {}  # one look per pod, not per replica
        return [
            self._live(s, notes)
            for s in self.controller.status()
            if stack is None or s.stack == stack
        ]

    def _live(
        self, s: ReplicaStatus, notes: dict[tuple[str, str], str | None] | None = None
    ) -> ReplicaStatus:
        """The replica with its probe message as of now. A failing probe's message
        changing (connection refused, then HTTP 404) does not wake the planner, so
        the reason of its last pass may be stale; the health store is not. A replica
        with nothing else to say names the override its pod is under."""
        if s.reason is None:
            notes = {} if notes is None else notes
            key = (s.stack, s.pod)
            if key not in notes:
                notes[key] = self.override_note(s.stack, s.pod)
            held = notes[key]
            return s if held is None else msgspec.structs.replace(s, reason=held)
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
            "overrides": self.overrides(s.stack, s.pod),
            "rollout": msgspec.to_builtins(self._rollout(s.stack, s.pod)),
            "restart_policy": pod.restart if pod else None,
            "depends_on": list(pod.depends_on) if pod else [],
            "probes": probes,
            "probe_results": [msgspec.to_builtins(r) for r in results[-10:]],
            "events": events,
        }
        return Reply(ok=True, data=data, engine=self._engine())

    # -- rollouts ------------------------------------------------------------------

    def overrides(self, stack: str, pod: str) -> dict[str, Any]:
        """The overrides in force on a pod (`describe`, `rollout status`): rollback or
        undo (revision, why, since), pause (since), scale (replicas)."""
        out: dict[str, Any] = {}
        rec = self.controller.ledger.rollouts.get(f"{stack}/{pod}")
        held = rec is not None and (rec.override is not None or rec.paused is not None)
        st = self.controller.stack(stack) if held else None  # `get pods`: only when needed
        p = st.pod(pod) if st is not None else None
        if p is not None and rec is not None:
            ov = rec.override
            if ov is not None and ov.file_revision == p.revision:
                out[ov.kind] = {
                    "revision": ov.revision,
                    "file_revision": p.revision,
                    "since": ov.at,
                    "reason": self._redact(ov.reason),
                }
            if rec.paused is not None and rec.paused.file_revision == p.revision:
                out["pause"] = {"since": rec.paused.at}
        replicas = self.owner.scaled(stack, pod)
        if replicas is not None:
            out["scale"] = {"replicas": replicas}
        return out

    def override_note(self, stack: str, pod: str) -> str | None:
        """One line for `get pods`' reason: "Override: rollback to abc123, paused"."""
        parts = []
        for kind, what in self.overrides(stack, pod).items():
            if kind in ("rollback", "undo"):
                parts.append(f"{kind} to {what['revision'][:6]}")
            elif kind == "pause":
                parts.append("paused")
            else:
                parts.append(f"scaled to {what['replicas']}")
        return f"Override: {', '.join(parts)}" if parts else None

    def _rollout(self, stack: str, pod: str) -> RolloutStatus | None:
        s = self.controller.rollout_status(stack, pod)
        if s is not None and s.message:
            s = msgspec.structs.replace(s, message=self._redact(s.message))
        return s

    def rollout_status(self, stack: str, pod: str) -> Reply:
        try:
            self.controller.desired_pod(stack, pod)
        except LookupError as exc:
            return Reply(ok=False, error=str(exc))
        s = self._rollout(stack, pod)
        if s is None:
            return Reply(ok=False, error=f"{stack}/{pod} has not been planned yet; ask again")
        return self._reply(s)

    async def follow_rollout(self, stack: str, pod: str) -> AsyncIterator[bytes]:
        """The pod's rollout status each time a pass changes it (a pass follows every
        probe result, engine event and rollout timer), and every few seconds."""
        try:
            self.controller.desired_pod(stack, pod)
        except LookupError as exc:
            yield msgspec.json.encode(Reply(ok=False, error=str(exc))) + b"\n"
            return
        last: RolloutStatus | None = None
        while True:
            s = self._rollout(stack, pod)
            if s is not None and s != last:
                yield msgspec.json.encode(s) + b"\n"
                last = s
            with anyio.move_on_after(STATUS_HEARTBEAT_S) as waited:
                await self.controller.next_pass()
            if waited.cancelled_caught and last is not None:
                yield msgspec.json.encode(last) + b"\n"
            try:
                self.controller.desired_pod(stack, pod)
            except LookupError:
                return  # the stack went down, or the pod left it

    async def rollout_history(self, stack: str, pod: str) -> Reply:
        try:
            self.controller.desired_pod(stack, pod)
        except LookupError as exc:
            return Reply(ok=False, error=str(exc))
        records = await self.owner.revisions(stack, pod)
        s = self.controller.rollout_status(stack, pod)
        rec = self.controller.ledger.rollouts.get(f"{stack}/{pod}")
        rows = history_rows(records, rec, s.revision if s is not None else None)
        for r in rows:
            r.message = self._redact(r.message)
        return self._reply(rows)

    async def rollout_change(self, request: Request) -> Reply:
        stack, pod = request.stack or "", request.name or ""
        c = self.controller
        try:
            if request.verb == "rollout_pause":
                rec = await c.rollout_pause(stack, pod)
            elif request.verb == "rollout_resume":
                rec = await c.rollout_resume(stack, pod)
            else:
                rec = await self.owner.rollout_undo(stack, pod, request.revision)
        except (LookupError, ValueError, TimeoutError) as exc:
            return Reply(ok=False, error=str(exc))
        target = rec.override.revision if rec.override is not None else rec.revision
        if request.verb == "rollout_undo" and rec.override is None:
            target = c.desired_pod(stack, pod)[1].revision
        return self._reply({"stack": stack, "pod": pod, "revision": target})

    # -- changes -----------------------------------------------------------------

    async def scale(self, stack: str, pod: str, replicas: int) -> Reply:
        st = self.controller.stack(stack)
        if st is None or st.pod(pod) is None:
            return Reply(ok=False, error=f"no pod {stack}/{pod}")
        try:
            await self.owner.scale(stack, pod, replicas)
        except ValueError as exc:
            return Reply(ok=False, error=str(exc))
        return Reply(ok=True, data={"stack": stack, "pod": pod, "replicas": replicas})

    async def down(self, stack: str, volumes: bool) -> Reply:
        if self.controller.stack(stack) is None:
            return Reply(ok=False, error=f"stack {stack!r} is not run by this podctl")
        removed = await self.owner.down(stack, remove_volumes=volumes)
        return Reply(ok=True, data={"removed": removed})
