"""The controller loop: observe, plan, apply; woken by engine events, probe changes and timers.

Level-triggered, like controller-runtime: an event only says "look again". The
loop re-observes the engine, asks the planner, applies the plan, and sleeps
until the next wake-up, the plan's requeue time, or the periodic resync
(which covers missed events). The engine's event stream is re-subscribed after
any drop, and a fresh snapshot follows. When the engine does not answer,
podctl keeps running, reports `engine unavailable`, and converges once it is back.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio
import anyio.abc
import msgspec

from podctl import defaults, labels
from podctl.health.model import ProbeTarget
from podctl.reconcile import rollout
from podctl.reconcile.apply import ApplyContext, Drain, EventSink, NoFiles, StackFiles, apply
from podctl.reconcile.events import EventLog
from podctl.reconcile.ledger import Ledger, rollout_key
from podctl.reconcile.observed import ObservedState
from podctl.reconcile.plan import BusyKind, busy_image, plan, plan_teardown
from podctl.reconcile.resolve import resolve_containers
from podctl.reconcile.rollout import cannot_run, short, target_of, undo_target
from podctl.reconcile.steps import (
    AnyStep,
    BuildImage,
    KillContainer,
    Plan,
    PullImage,
    RemoveContainer,
    ReplicaStatus,
    RolloutStatus,
)
from podctl.runtime.errors import EngineError, EngineUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable

    from podctl.health.model import HealthView
    from podctl.reconcile.ledger import RolloutRecord
    from podctl.runtime.protocol import ContainerInfo, HostInfo, NetworkInfo, Runtime, VolumeInfo
    from podctl.spec.model import ContainerTemplate, DesiredPod, DesiredStack

log = logging.getLogger("podctl.controller")

R = TypeVar("R")


def _first_error(group: BaseExceptionGroup[EngineError]) -> EngineError:
    """One engine error of a concurrent snapshot stands for all (they say the same)."""
    first = group.exceptions[0]
    return first if isinstance(first, EngineError) else _first_error(first)


def _busy_key(step: AnyStep) -> tuple[str, BusyKind] | None:
    """The `busy` entry of a long step, or None for a quick one."""
    if isinstance(step, KillContainer):
        return step.container_id, "killing"
    if isinstance(step, RemoveContainer):
        return step.container_id, "removing"
    if isinstance(step, PullImage | BuildImage):
        return busy_image(step.ref), "pulling"
    return None


RECHECK_AFTER_DIE_S = 0.25
TEARDOWN_PASSES = 3
TEARDOWN_SETTLE_S = 0.2
# Container events that change what a snapshot shows. Others (exec_create/start/die
# from every exec probe, attach, top, resize) would wake a pass for nothing.
STATE_ACTIONS = frozenset(
    {
        "create",
        "start",
        "restart",
        "die",
        "kill",
        "oom",
        "stop",
        "pause",
        "unpause",
        "destroy",
        "rename",
        "update",
    }
)
ENGINE_WATCH_INTERVAL_S = 5.0
# Retrying an engine that does not answer: doubling from the first, capped, jittered
# (every podctl on a host must not hammer a restarting dockerd in step).
ENGINE_RETRY_FIRST_S = 0.5
ENGINE_RETRY_MAX_S = 15.0
# An outage starts a little before podctl notices it: dockerd stops its containers
# as it shuts down, and a stop can end before the API stops answering.
ENGINE_OUTAGE_MARGIN_S = 30.0

# How long a rollout verb waits for a pass to make its change, then for it to plan.
VERB_CHANGE_WAIT_S = 25.0
VERB_PLAN_WAIT_S = 10.0
DYING_PATIENCE_S = 10.0


class Prober(Protocol):
    """What the controller needs of the health room: keep probers in line, read results."""

    def sync(self, targets: Iterable[ProbeTarget]) -> None: ...

    def view(self) -> HealthView: ...


class NoProbes:
    def sync(self, targets: Iterable[ProbeTarget]) -> None:
        return None

    def view(self) -> HealthView:
        return {}


# Told about every plan (the services router follows the replicas it shows).
PlanObserver = Callable[[Sequence["DesiredStack"], ObservedState, Plan], None]


class Controller:
    """Observe, plan, apply, for the stacks of one podctl.

    `clock` is the wall clock (epoch seconds: back-offs compare it with the
    engine's timestamps); tests inject one and drive passes with
    `reconcile_once()`. The hooks connect the other rooms without the
    controller knowing them: `observers` see each plan (the services router
    follows the replicas it shows), `on_died` hears of a container's death
    before any snapshot does, `drain` lets a replica's connections finish
    before it is stopped, `on_ledger_change` persists restart counts, and
    `backend_failures` tells the planner of the proxy's connect failures and
    resets per replica (a new replica's `min_ready` starts over).
    """

    def __init__(
        self,
        runtime: Runtime,
        stacks: Sequence[DesiredStack],
        *,
        prober: Prober | None = None,
        files: StackFiles | None = None,
        ledger: Ledger | None = None,
        clock: Callable[[], float] = time.time,
        events: EventLog | None = None,
        observers: Sequence[PlanObserver] = (),
        on_died: Callable[[str], None] | None = None,
        drain: Drain | None = None,
        on_ledger_change: Callable[[Ledger], Awaitable[None]] | None = None,
        templates: Callable[[], Mapping[str, ContainerTemplate]] | None = None,
        backend_failures: Callable[[], Mapping[str, float]] | None = None,
        resync_s: float = defaults.RESYNC_INTERVAL_S,
        engine_watch_s: float = ENGINE_WATCH_INTERVAL_S,
    ) -> None:
        self.runtime = runtime
        self.stacks: list[DesiredStack] = list(stacks)
        self.prober: Prober = prober or NoProbes()
        self.files: StackFiles = files or NoFiles()
        self.ledger = ledger or Ledger()
        self.clock = clock
        self.events = events or EventLog(clock)
        self.observers = list(observers)
        self.on_died = on_died
        self.drain = drain
        self.on_ledger_change = on_ledger_change
        self.templates = templates or _no_templates
        # The services proxy's latest connect failure or reset per container id.
        self.backend_failures = backend_failures or _no_failures
        self.resync_s = resync_s
        self.engine_watch_s = engine_watch_s
        self.engine_ok = True
        self.engine_error = ""
        # The last time the engine went away and came back (epoch seconds on `clock`):
        # containers that exited then were stopped by the engine, not crashed.
        self.engine_outage: tuple[float, float] | None = None
        self._down_since: float | None = None
        self._stream_dropped_at: float | None = None
        self._engine_retry_s = 0.0
        self.last_plan = Plan()
        self.last_observed = ObservedState()
        self.passes = 0
        self._wake = anyio.Event()
        self._busy: dict[str, BusyKind] = {}
        self._background: anyio.abc.TaskGroup | None = None
        # Containers the engine said died, until a snapshot agrees: id -> (event
        # time, give-up time), both on `clock`.
        self._dying: dict[str, tuple[float, float]] = {}
        self._host: HostInfo | None = None
        self.converged = False
        self._pass_done = anyio.Event()
        self._engine_changed = anyio.Event()
        # Stacks this controller has run: rollout records of their pods that left them
        # are dropped (those of another podctl sharing the state directory are not).
        self._managed = {s.name for s in self.stacks}
        self._forget_pending = True
        # Ledger changes of the rollout verbs, run at the start of the next pass.
        self._changes: list[Callable[[], None]] = []
        self._ledger_dirty = False  # a change between passes to save with the next one
        # RunContainer steps that could not be resolved, target -> message: told once.
        self._resolve_failed: dict[str, str] = {}

    # -- wiring ------------------------------------------------------------

    def wake(self, _reason: object = None) -> None:
        self._wake.set()

    def set_stacks(self, stacks: Sequence[DesiredStack]) -> None:
        """Replace the desired state (hot reload, scale) and look again."""
        self.stacks = list(stacks)
        self._managed.update(s.name for s in self.stacks)
        self._forget_pending = True
        self.wake()

    def status(self) -> list[ReplicaStatus]:
        return list(self.last_plan.status)

    def stack(self, name: str) -> DesiredStack | None:
        return next((s for s in self.stacks if s.name == name), None)

    @property
    def pulling(self) -> bool:
        """An image is being pulled or built (for the service manager's start timeout)."""
        return "pulling" in self._busy.values()

    # -- rollout verbs: `podctl rollout status|undo|pause|resume` ------------------
    #
    # Each changes the pod's record in the Ledger (the planner's input) through the
    # rollout module, saves the Ledger (so the override or pause survives a restart)
    # and returns once a pass has planned with it. They decide nothing else.
    #
    # The change is made between passes, by the loop itself (`_between_passes`): a
    # pass's apply writes the rollout records its plan decided, and a change made
    # while it applies would be overwritten by a record decided before it.

    def rollout_status(self, stack: str, pod: str) -> RolloutStatus | None:
        """The pod's rollout as of the last pass (None before its first pass)."""
        return next((r for r in self.last_plan.rollouts if r.stack == stack and r.pod == pod), None)

    async def next_pass(self) -> None:
        """Until the next pass has planned (`rollout status` follows them)."""
        await self._pass_done.wait()

    def desired_pod(self, stack: str, pod: str) -> tuple[DesiredStack, DesiredPod]:
        st = self.stack(stack)
        p = st.pod(pod) if st is not None else None
        if st is None or p is None:
            raise LookupError(f"no pod {stack}/{pod} in the stacks this podctl runs")
        return st, p

    async def rollout_pause(self, stack: str, pod: str) -> RolloutRecord:
        """No replacement steps for the pod until `resume` or its entry in the file changes."""

        def change() -> RolloutRecord:
            _, p = self.desired_pod(stack, pod)
            before = self.ledger.rollouts.get(rollout_key(stack, pod))
            if before is not None and target_of(before, p).paused is not None:
                raise ValueError(f"{stack}/{pod} is already paused")
            rec = rollout.pause(self.ledger, stack, p, self.clock())
            self.events.emit(stack, f"rollout:{stack}/{pod}", "RolloutPaused", "rollout pause")
            return rec

        return await self._between_passes(change)

    async def rollout_resume(self, stack: str, pod: str) -> RolloutRecord:
        def change() -> RolloutRecord:
            _, p = self.desired_pod(stack, pod)
            rec = self.ledger.rollouts.get(rollout_key(stack, pod))
            if rec is None or rec.paused is None or target_of(rec, p).paused is None:
                raise ValueError(f"{stack}/{pod} is not paused")
            resumed = rollout.resume(self.ledger, stack, pod, self.clock())
            assert resumed is not None
            self.events.emit(stack, f"rollout:{stack}/{pod}", "RolloutResumed", "rollout resume")
            return resumed

        return await self._between_passes(change)

    async def rollout_undo(
        self, stack: str, pod: str, *, to_revision: str | None = None
    ) -> RolloutRecord:
        """Return the pod to `to_revision` (a revision or a unique prefix of one), or
        without it to the last fully available revision before the one it runs now
        (failed ones skipped). LookupError: no such revision; ValueError: it cannot
        run in the stack as it is now, or it is the one running."""
        return await self._between_passes(lambda: self._undo(stack, pod, to_revision))

    def _undo(self, stack: str, pod: str, to_revision: str | None) -> RolloutRecord:
        st, p = self.desired_pod(stack, pod)
        key = rollout_key(stack, pod)
        rec = self.ledger.rollouts.get(key)
        current = target_of(rec, p).revision
        template: ContainerTemplate | None
        if to_revision is None:
            back = undo_target(rec, current, st)
            if back is None or back.template is None:
                raise LookupError(
                    f"{stack}/{pod}: no revision before {short(current)} was fully available"
                    " (see `podctl rollout history`; failed revisions are skipped)"
                )
            revision, template = back.revision, back.template
        else:
            known: dict[str, ContainerTemplate] = dict(self.templates())
            if rec is not None:
                known.update((a.revision, a.template) for a in rec.available if a.template)
            known[p.revision] = p.template
            matches = sorted(r for r in known if r.startswith(to_revision))
            if not to_revision or not matches:
                raise LookupError(
                    f"{stack}/{pod}: unknown revision {to_revision!r}"
                    " (see `podctl rollout history`)"
                )
            if len(matches) > 1:
                raise LookupError(
                    f"{stack}/{pod}: revision {to_revision!r} is ambiguous: {', '.join(matches)}"
                )
            revision = matches[0]
            template = known[revision]
        if revision == current:
            raise ValueError(f"{stack}/{pod} already runs revision {short(revision)}")
        problem = cannot_run(template, st)
        if problem is not None:
            raise ValueError(f"{stack}/{pod}: revision {short(revision)} cannot run now: {problem}")
        return rollout.undo(
            self.ledger,
            stack,
            p,
            revision=revision,
            template=template,
            now=self.clock(),
            reason=f"rollout undo to revision {short(revision)} (from {short(current)})",
        )

    def release_overrides(self, stack: str, pod: str, why: str) -> None:
        """Drop the pod's undo or rollback override and its pause at the next pass.

        A change of the pod's revision in the file releases them in the planner; this
        is for an edit of the rest of its entry (replicas, rollout settings), which
        the stack set sees and the planner, given scaled pods, cannot."""
        key = rollout_key(stack, pod)

        def run() -> None:
            rec = self.ledger.rollouts.get(key)
            if rec is None or (rec.override is None and rec.paused is None):
                return
            held = " and ".join(
                what
                for what, ov in (("override", rec.override), ("pause", rec.paused))
                if ov is not None
            )
            self.ledger.rollouts[key] = msgspec.structs.replace(rec, override=None, paused=None)
            self._ledger_dirty = True
            self.events.emit(
                stack, f"pod:{key}", "OverrideReleased", f"rollout {held} released: {why}"
            )

        self._changes.append(run)
        self.wake()

    async def _between_passes(self, change: Callable[[], R]) -> R:
        """Run `change` (of the Ledger) at the start of the next pass, save the Ledger,
        and wait (bounded) until that pass has planned, so that a `rollout status`
        asked next sees it. Without a running loop (tests drive passes), at once."""
        if self._background is None:
            result = change()
        else:
            ran = anyio.Event()
            results: list[R] = []
            errors: list[Exception] = []
            planned: list[anyio.Event] = []

            def run() -> None:
                planned.append(self._pass_done)  # set once this very pass has planned
                try:
                    results.append(change())
                except Exception as exc:  # handed to the verb's caller
                    errors.append(exc)
                ran.set()

            self._changes.append(run)
            self.wake()
            # A pass in apply can take up to an engine call's timeout to come round.
            with anyio.move_on_after(VERB_CHANGE_WAIT_S):
                await ran.wait()
            if not ran.is_set():
                self._changes.remove(run)
                raise TimeoutError("the controller did not come round to it; try again")
            if errors:
                raise errors[0]
            result = results[0]
        if self.on_ledger_change is not None:
            await self.on_ledger_change(self.ledger)
        self.wake()
        if self._background is not None and self.engine_ok:
            with anyio.move_on_after(VERB_PLAN_WAIT_S):
                await planned[0].wait()
        return result

    def _run_changes(self) -> None:
        changes, self._changes = self._changes, []
        for run in changes:
            run()

    # -- the loop ----------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._background = tg
            try:
                tg.start_soon(self._watch_events)
                tg.start_soon(self._watch_engine)
                task_status.started()
                await self._loop()
            finally:
                self._background = None

    async def _loop(self) -> None:
        delay: float = 0.0
        while True:
            with anyio.move_on_after(delay):
                await self._wake.wait()
            self._wake = anyio.Event()
            delay = await self.reconcile_once()
            if self._dying:
                delay = min(delay, RECHECK_AFTER_DIE_S)

    def _settle_dying(self, observed: ObservedState) -> None:
        """The engine's container list can lag its own `die` event (under load, by
        a second or more): a snapshot taken then still says "running". Until the
        snapshot agrees that a container died, keep looking (bounded)."""
        now = self.clock()
        states = {c.id: c for c in observed.containers}
        for cid, (died_at, give_up) in list(self._dying.items()):
            c = states.get(cid)
            settled = c is None or c.state != "running" or (c.started_at or 0.0) > died_at
            if settled or now > give_up:
                del self._dying[cid]

    async def reconcile_once(self) -> float:
        """One observe-plan-apply pass; returns how long to sleep before the next."""
        self.passes += 1
        log.debug("reconcile pass %d", self.passes)
        self._run_changes()  # the rollout verbs' (see _between_passes)
        try:
            observed = await self.observe()
        except EngineError as exc:
            self._engine_down(exc)
            self._engine_retry_s = min(
                ENGINE_RETRY_MAX_S, max(ENGINE_RETRY_FIRST_S, self._engine_retry_s * 2)
            )
            return self._engine_retry_s * random.uniform(0.8, 1.2)  # jitter
        self._engine_retry_s = 0.0
        self._engine_up()
        self._settle_dying(observed)
        if self._ledger_dirty:
            self._ledger_dirty = False
            await self._ledger_changed(observed)
        if self._forget_pending:
            self._forget_pending = False
            if self._forget_rollouts():
                await self._ledger_changed(observed)
        templates = self.templates()
        self.prober.sync(self._probe_targets(observed))
        the_plan = plan(
            self.stacks,
            observed,
            self.prober.view(),
            self.ledger,
            self.clock(),
            self._busy,
            templates=templates,
            engine_outage=self.engine_outage,
            backend_failures=self.backend_failures(),
        )
        self._emit_backoffs(the_plan)
        self.last_plan = the_plan
        self.last_observed = observed
        for observer in self.observers:
            observer(self.stacks, observed, the_plan)
        if not the_plan.steps:
            self._finish_pass(converged=True)
            if the_plan.requeue_after is not None:
                return min(the_plan.requeue_after, self.resync_s)
            return self.resync_s
        self._finish_pass(converged=False)
        ctx = self._apply_context()
        unresolved: dict[str, str] = {}
        try:
            resolved = await resolve_containers(
                the_plan,
                {s.name: s for s in self.stacks},
                _networks(observed),
                self.files,
                on_failure=lambda step, why: unresolved.__setitem__(step.target, why),
            )
        except (OSError, LookupError, ValueError) as exc:
            # A config or secret source vanished since the stacks were loaded: say so,
            # apply nothing that would start containers without it, and look again.
            self.events.emit("", "stack-files", "Failed", f"resolving containers: {exc}")
            return 2.0
        self._report_unresolved(unresolved)
        foreground = self._start_long_steps(resolved, ctx)
        outcomes = await apply(foreground, ctx)
        await self._ledger_changed(observed)
        failed = [o for o in outcomes if not o.ok]
        if unresolved and not failed:
            return 2.0  # the planner asks again next pass: not at once
        if failed:
            unavailable = [o.error for o in failed if isinstance(o.error, EngineUnavailable)]
            if unavailable and isinstance(unavailable[0], EngineUnavailable):
                self._engine_down(unavailable[0])
            return 1.0  # back off a little before retrying what failed
        return 0.0  # look again at once: the steps changed the world

    def _forget_rollouts(self) -> bool:
        live = {rollout_key(s.name, p.name) for s in self.stacks for p in s.pods}
        return self.ledger.forget_rollouts(live, self._managed)

    def _report_unresolved(self, unresolved: Mapping[str, str]) -> None:
        """A `Failed` event per replica that could not be created (a rollout override
        whose template cannot run): once per message, not once per pass."""
        for target, why in unresolved.items():
            if self._resolve_failed.get(target) != why:
                stack = target.removeprefix("pod:").split("/", 1)[0]
                self.events.emit(stack, target, "Failed", why)
        self._resolve_failed = dict(unresolved)

    def _finish_pass(self, *, converged: bool) -> None:
        self.converged = converged
        self._pass_done.set()
        self._pass_done = anyio.Event()

    def _emit_backoffs(self, new: Plan) -> None:
        """A BackOff event when a replica enters crash-loop back-off or its delay grows."""
        before = {s.container_id: s.reason for s in self.last_plan.status if s.container_id}
        for s in new.status:
            if (
                s.phase == "CrashLoopBackOff"
                and s.container_id
                and before.get(s.container_id) != s.reason
            ):
                self.events.emit(
                    s.stack, f"pod:{s.stack}/{s.pod}/{s.replica}", "BackOff", s.reason or ""
                )

    def _start_long_steps(self, the_plan: Plan, ctx: ApplyContext) -> Plan:
        """Start the plan's long steps (stops with grace, pulls, builds) in the
        background and return the rest. A stop that waits out a 30 s grace must
        not hold up restarting a crashed replica elsewhere; the planner sees these
        steps as `busy` until they end, and their end wakes the loop. Steps that
        depend on a long one are left for a later pass (level-triggered)."""
        long_ids = {s.id for s in the_plan.steps if _busy_key(s) is not None}
        if self._background is None or not long_ids:
            return the_plan  # no loop to hand them to (a single pass in tests): run inline
        later = set(long_ids)
        for s in the_plan.steps:  # steps come in dependency order
            if set(s.deps) & later:
                later.add(s.id)
        for s in the_plan.steps:
            key = _busy_key(s)
            if key is not None:
                self._busy[key[0]] = key[1]
                self._background.start_soon(self._run_long_step, s, key[0], ctx)
        return msgspec.structs.replace(
            the_plan, steps=tuple(s for s in the_plan.steps if s.id not in later)
        )

    async def _run_long_step(self, step: AnyStep, key: str, ctx: ApplyContext) -> None:
        try:
            await apply(Plan(steps=(msgspec.structs.replace(step, deps=()),)), ctx)
        finally:
            self._busy.pop(key, None)
            await self._ledger_changed(self.last_observed)
            self.wake()

    async def _ledger_changed(self, observed: ObservedState) -> None:
        if self.on_ledger_change is not None:
            self.ledger.forget_missing({c.id for c in observed.containers})
            await self.on_ledger_change(self.ledger)

    async def wait_converged(self) -> None:
        """Until a pass finds nothing to do (for tests and `podctl run` start-up)."""
        while not self.converged:
            await self._pass_done.wait()

    def _apply_context(self) -> ApplyContext:
        return ApplyContext(
            runtime=self.runtime,
            stacks={s.name: s for s in self.stacks},
            ledger=self.ledger,
            clock=self.clock,
            files=self.files,
            drain=self.drain,
            on_event=self.events.emit,
        )

    async def observe(self) -> ObservedState:
        """One snapshot of this instance's stacks, plus which desired images exist.

        Listed per stack (other stacks on the host are never inspected) and all at
        once: the snapshot costs one round trip, not one per kind of object.
        """
        rt = self.runtime
        names = sorted({s.name for s in self.stacks})
        refs = sorted({p.template.image for s in self.stacks for p in s.pods})
        containers: list[ContainerInfo] = []
        networks: list[NetworkInfo] = []
        volumes: list[VolumeInfo] = []
        present: set[str] = set()

        async def host() -> None:
            if self._host is None:
                self._host = await rt.host_info()

        async def stack_objects(name: str) -> None:
            containers.extend(await rt.list_containers(name))
            networks.extend(await rt.list_networks(name))
            volumes.extend(await rt.list_volumes(name))

        async def image(ref: str) -> None:
            if await rt.image_exists(ref):
                present.add(ref)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(host)
                for name in names:
                    tg.start_soon(stack_objects, name)
                for ref in refs:
                    tg.start_soon(image, ref)
        except* EngineError as group:
            raise _first_error(group) from None
        return ObservedState(
            containers=tuple(sorted(containers, key=lambda c: c.name)),
            networks=tuple(networks),
            volumes=tuple(volumes),
            images=frozenset(present),
            host=self._host,
        )

    def _probe_targets(self, observed: ObservedState) -> list[ProbeTarget]:
        """Every running container of a desired pod, with the probes of its own revision.

        An old replica mid-rollout (or one an override runs) is probed, and so gated
        by the planner and the services router alike, with its own revision's probes:
        probing it with the file's new template would judge it by a path or port it
        may not serve, take it out of every table and break the ready floor. Containers
        without probes are listed too: the prober records them as ready, so that the
        health view alone (`health.model.is_ready`) decides for every container.
        """
        out = []
        by_name = {s.name: s for s in self.stacks}
        history = self.templates()
        for c in observed.containers:
            stack = by_name.get(c.labels.get(labels.STACK, ""))
            if stack is None or c.state != "running":
                continue
            pod = stack.pod(c.labels.get(labels.POD, ""))
            if pod is None:
                continue
            t = self._template_of(stack.name, pod, c.labels.get(labels.REVISION, ""), history)
            out.append(
                ProbeTarget(
                    container_id=c.id,
                    stack=stack.name,
                    pod=pod.name,
                    ip=c.ip,
                    started_at=c.started_at or 0.0,
                    startup=t.startup,
                    liveness=t.liveness,
                    readiness=t.readiness,
                )
            )
        return out

    def _template_of(
        self,
        stack: str,
        pod: DesiredPod,
        revision: str,
        history: Mapping[str, ContainerTemplate],
    ) -> ContainerTemplate:
        """The template a container of `revision` was made from: the file's, an
        override's, one the rollout record keeps, or the revision history's. The
        file's when none is known (a revision older than the history)."""
        if revision == pod.revision or not revision:
            return pod.template
        rec = self.ledger.rollouts.get(rollout_key(stack, pod.name))
        if rec is not None:
            if rec.override is not None and rec.override.revision == revision:
                return rec.override.template
            for a in rec.available:
                if a.revision == revision and a.template is not None:
                    return a.template
        return history.get(revision, pod.template)

    def _engine_down(self, exc: EngineError) -> None:
        if self._down_since is None:
            now = self.clock()
            dropped = self._stream_dropped_at
            # A stream that dropped just before is when the engine went (a stale drop
            # is not: the window would swallow real crashes).
            recent = dropped is not None and now - dropped < ENGINE_OUTAGE_MARGIN_S
            self._down_since = min(now, dropped) if recent and dropped is not None else now
        if self.engine_ok:
            self.events.emit("", "engine", "EngineUnavailable", str(exc))
            self._engine_flipped()
        self.engine_ok = False
        self.engine_error = str(exc)

    def _engine_up(self) -> None:
        if self._down_since is not None:
            self.engine_outage = (self._down_since - ENGINE_OUTAGE_MARGIN_S, self.clock())
            self._down_since = None
        if not self.engine_ok:
            self.events.emit("", "engine", "EngineAvailable", "the engine answers again")
            self._engine_flipped()
        self.engine_ok = True
        self.engine_error = ""

    def _engine_flipped(self) -> None:
        self._engine_changed.set()
        self._engine_changed = anyio.Event()

    async def wait_engine(self, *, ok: bool) -> None:
        """Until podctl believes the engine answers (`ok`) or not (for tests and status)."""
        while self.engine_ok != ok:
            await self._engine_changed.wait()

    async def _watch_engine(self) -> None:
        """Notice a hung engine within seconds, not only when a call times out, so
        the CLI can say so while the controller waits; the proxy is unaffected."""
        while True:
            await anyio.sleep(self.engine_watch_s)
            try:
                await self.runtime.ping()
            except EngineError as exc:
                self._engine_down(exc)
            else:
                if not self.engine_ok:
                    self.wake()  # it is back: converge now rather than at the next retry

    async def _watch_events(self) -> None:
        while True:
            try:
                async for ev in self.runtime.events():
                    log.debug("engine event %s %s %s", ev.kind, ev.action, ev.id[:12])
                    if ev.kind == "container" and ev.action not in STATE_ACTIONS:
                        continue  # exec probes, attach, top...: nothing observable changed
                    if ev.labels.get(labels.STACK) in {s.name for s in self.stacks}:
                        if ev.action == "die":
                            self._dying[ev.id] = (ev.time, self.clock() + DYING_PATIENCE_S)
                            if self.on_died is not None:
                                self.on_died(ev.id)
                        self.wake()
            except EngineError as exc:
                log.debug("event stream dropped: %s", exc)
                self._stream_dropped_at = self.clock()
            # The stream dropped (or ended): events may have been missed, so look again.
            self.wake()
            await anyio.sleep(defaults.EVENT_RESUBSCRIBE_DELAY_S)

    # -- teardown ------------------------------------------------------------

    async def teardown(
        self, stack: str, *, remove_volumes: bool = False, desired: DesiredStack | None = None
    ) -> Plan:
        """Remove a stack's containers (each with its pod's stop_grace), then its
        network (and volumes when asked). `desired` supplies the graces of a stack
        already dropped from `self.stacks`."""
        if desired is None:
            desired = next((s for s in self.stacks if s.name == stack), None)
        graces = {p.name: p.template.stop_grace_s for p in desired.pods} if desired else {}
        return await teardown(
            self.runtime,
            stack,
            remove_volumes=remove_volumes,
            ledger=self.ledger,
            clock=self.clock,
            drain=self.drain,
            on_event=self.events.emit,
            grace_by_pod=graces,
        )


async def teardown(
    runtime: Runtime,
    stack: str,
    *,
    remove_volumes: bool = False,
    ledger: Ledger | None = None,
    clock: Callable[[], float] = time.time,
    drain: Drain | None = None,
    on_event: EventSink | None = None,
    grace_s: float = defaults.STOP_GRACE_S,
    grace_by_pod: Mapping[str, float] | None = None,
) -> Plan:
    """`podctl down`: containers first, all at once (each waits out its own grace);
    the network only once they are gone.

    Looks again afterwards: an object whose creation was cut short (podctl
    stopped mid-call) can still appear in the engine a moment later.
    """
    ctx = ApplyContext(
        runtime=runtime, stacks={}, ledger=ledger or Ledger(), clock=clock, drain=drain
    )
    if on_event is not None:
        ctx.on_event = on_event
    first: Plan | None = None
    for _ in range(TEARDOWN_PASSES):
        observed = ObservedState(
            containers=tuple(await runtime.list_containers(stack)),
            networks=tuple(await runtime.list_networks(stack)),
            volumes=tuple(await runtime.list_volumes(stack)),
        )
        the_plan = plan_teardown(
            stack,
            observed,
            grace_s=grace_s,
            grace_by_pod=grace_by_pod,
            remove_volumes=remove_volumes,
        )
        first = first or the_plan
        if not the_plan.steps:
            break
        outcomes = await apply(the_plan, ctx)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            first_error = failed[0].error
            if isinstance(first_error, EngineError) and len(failed) == 1:
                raise first_error
            raise EngineError(f"taking stack {stack} down", "; ".join(o.message for o in failed))
        await anyio.sleep(TEARDOWN_SETTLE_S)
    assert first is not None
    return first


def _no_templates() -> Mapping[str, ContainerTemplate]:
    return {}


def _no_failures() -> Mapping[str, float]:
    return {}


def _networks(observed: ObservedState) -> dict[str, NetworkInfo]:
    return {n.name: n for n in observed.networks}
