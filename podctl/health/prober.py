"""Prober tasks: one cancellable task per container and probe, in one task group.

The controller calls `sync(targets)` after each observation with the running
containers, each with its own revision's probes (those without probes are
recorded as ready, so the health view decides readiness for every container);
the supervisor starts what is new and cancels what is gone. A container whose
`started_at` changed has restarted, and, as in the kubelet, a restart resets
its probe state (fresh thresholds, startup probe again, initial delay counted
from the new start).

Each probe loop sleeps until its next period with anyio (cancellable, no
polling). A probe that hangs is bounded by its own timeout and only delays its
own loop: other containers' probes run in their own tasks.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from podctl.health.checks import ExecRuntime, probe_once
from podctl.health.model import ContainerHealth, ProbeResult, ProbeTarget
from podctl.health.state import HealthState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from anyio.abc import TaskGroup, TaskStatus

    from podctl.health.model import HealthView
    from podctl.health.store import HealthStore
    from podctl.spec.model import ProbeKind, ProbeSpec

log = logging.getLogger(__name__)


class _Probed:
    """One container's probe tasks and state."""

    def __init__(self, target: ProbeTarget) -> None:
        self.target = target
        self.state = HealthState(
            started_at=target.started_at,
            startup=target.startup,
            liveness=target.liveness,
            readiness=target.readiness,
        )
        # Created here, entered by the task: cancelling before the task runs is fine.
        self.scope = anyio.CancelScope()
        self.started = anyio.Event()
        if self.state.started:
            self.started.set()


class ProberSupervisor:
    """Runs the probes of every target container and writes results to a `HealthStore`."""

    def __init__(
        self,
        runtime: ExecRuntime,
        store: HealthStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._runtime = runtime
        self._store = store
        self._clock = clock
        self._tg: TaskGroup | None = None
        self._probed: dict[str, _Probed] = {}
        # Listed containers without probes (ready while they run), by id.
        self._unprobed: dict[str, ProbeTarget] = {}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the probe tasks until cancelled; `sync()` works once this has started."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            self._probed.clear()
            self._unprobed.clear()

    def sync(self, targets: Iterable[ProbeTarget], *, stack: str | None = None) -> None:
        """Probe exactly `targets` (of `stack` only, when given; other stacks are untouched).

        New containers get tasks; containers no longer listed lose them and are
        forgotten by the store; a changed target (a restart: new `started_at`)
        starts over with fresh probe state.
        """
        if self._tg is None:
            raise RuntimeError("ProberSupervisor.sync() called before run() started")
        listed = {t.container_id: t for t in targets}
        wanted = {cid: t for cid, t in listed.items() if t.has_probes}
        for cid, probed in list(self._probed.items()):
            if stack is not None and probed.target.stack != stack:
                continue
            if wanted.get(cid) != probed.target:
                probed.scope.cancel()
                del self._probed[cid]
                if cid not in listed:
                    self._store.forget(cid)
        for cid, target in list(self._unprobed.items()):
            if stack is not None and target.stack != stack:
                continue
            if listed.get(cid) != target:
                del self._unprobed[cid]
                if cid not in listed:
                    self._store.forget(cid)
        for cid, target in listed.items():
            if target.has_probes:
                if cid not in self._probed:
                    self._start(self._tg, target)
            elif cid not in self._unprobed:
                # No probes: ready since its start, for as long as it runs. Recorded so
                # the health view alone decides readiness, whatever template (revision)
                # the planner or the router has at hand for its pod.
                self._unprobed[cid] = target
                self._store.set(
                    cid,
                    target.stack,
                    ContainerHealth(
                        started=True,
                        ready=True,
                        started_at=target.started_at,
                        ready_since=target.started_at,
                    ),
                )

    def view(self) -> HealthView:
        """What the planner reads: the store's snapshot."""
        return self._store.view()

    def probing(self) -> dict[str, tuple[ProbeKind, ...]]:
        """Container id -> the probes running for it (for tests and `describe`)."""
        return {cid: p.state.kinds for cid, p in self._probed.items()}

    def _start(self, tg: TaskGroup, target: ProbeTarget) -> None:
        probed = _Probed(target)
        self._probed[target.container_id] = probed
        # A restarted container replaces its old entry: that may clear a
        # restart_reason, which is a change the controller should see.
        self._store.set(target.container_id, target.stack, probed.state.health)
        tg.start_soon(self._run_container, probed, name=f"probes {target.container_id[:12]}")

    async def _run_container(self, probed: _Probed) -> None:
        with probed.scope:
            async with anyio.create_task_group() as tg:
                for kind in probed.state.kinds:
                    tg.start_soon(self._probe_loop, probed, kind)

    async def _sleep_until_wall(self, deadline: float) -> None:
        # The initial delay is measured on the wall clock (the engine's StartedAt).
        remaining = deadline - self._clock()
        if remaining > 0:
            await anyio.sleep(remaining)

    async def _probe_loop(self, probed: _Probed, kind: ProbeKind) -> None:
        state = probed.state
        spec = state.spec(kind)
        if spec is None:
            return
        if kind != "startup":
            # The startup probe holds off liveness and readiness until it succeeds.
            await probed.started.wait()
        await self._sleep_until_wall(state.active_after(kind))
        next_at = anyio.current_time()
        while state.wants(kind):
            result = await self._attempt(probed.target, kind, spec)
            self._record(probed, kind, result)
            # Ticks are on the monotonic clock so periods do not drift; a probe
            # that ran longer than its period is followed at once, not in a burst.
            next_at = max(next_at + spec.period_s, anyio.current_time())
            await anyio.sleep_until(next_at)

    async def _attempt(self, target: ProbeTarget, kind: ProbeKind, spec: ProbeSpec) -> ProbeResult:
        try:
            return await probe_once(
                kind,
                spec,
                container_id=target.container_id,
                ip=target.ip,
                runtime=self._runtime,
                clock=self._clock,
            )
        except Exception as e:
            # A bug in one check must not take every prober down with it.
            log.exception("%s probe of %s crashed", kind, target.container_id[:12])
            return ProbeResult(probe=kind, ok=False, at=self._clock(), message=f"probe error: {e}")

    def _record(self, probed: _Probed, kind: ProbeKind, result: ProbeResult) -> None:
        target, state = probed.target, probed.state
        if not state.accepts(kind, result.at):
            return
        self._store.record_result(target.container_id, target.stack, result)
        if not result.ok:
            # The kubelet records an Unhealthy event per failed probe; the store
            # folds repeats into one event with a count.
            self._store.record_event(
                target.container_id,
                "Unhealthy",
                f"{kind.capitalize()} probe failed: {result.message}",
                result.at,
                stack=target.stack,
            )
        health = state.observe(result)
        if state.started:
            probed.started.set()
        self._store.set(target.container_id, target.stack, health)
