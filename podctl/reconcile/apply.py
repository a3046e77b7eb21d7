"""apply(): carry out a Plan's steps against a Runtime. No decisions here.

Steps run as soon as their dependencies succeed. A failed step fails its
dependents; unrelated steps go on. Outcomes the planner needs next time
(restart counts, pull failures) are written to the Ledger.

apply() does not bound its own concurrency: the runtime bounds *engine calls*
(the engine is a shared, fragile resource), while waits that cost the engine
nothing (a stop's grace period, a drain) all run at once. Stopping 50 replicas
that ignore SIGTERM then takes one grace period, not 50 / 8 of them.

Every step carries what it needs (a RunContainer its resolved ContainerSpec),
so apply() calls back into nothing but the runtime, the stack files (to write
configs and secrets) and the drain hook (to let a replica's connections finish).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import anyio

from podctl import labels
from podctl.reconcile.ledger import Ledger, PullFailure, rollout_key
from podctl.reconcile.steps import (
    AnyStep,
    BuildImage,
    CreateNetwork,
    CreateVolume,
    KillContainer,
    Plan,
    PrepareFiles,
    PullImage,
    RecordRollout,
    RemoveContainer,
    RemoveNetwork,
    RemoveVolume,
    RunContainer,
    StartContainer,
)
from podctl.runtime.errors import EngineError

if TYPE_CHECKING:
    from podctl.runtime.protocol import MountBinding, Runtime
    from podctl.spec.model import DesiredStack, MountSpec

log = logging.getLogger("podctl.apply")


class StackFiles(Protocol):
    """Configs and secrets on disk (podctl.storage): what the reconciler needs of them."""

    async def materialise(self, stack: DesiredStack) -> None:
        """Write the stack's config and secret files (before containers mount them)."""

    def binding(self, stack: DesiredStack, mount: MountSpec) -> MountBinding:
        """Where a config or secret mount's file is on the host (pure)."""

    async def env_values(self, stack: DesiredStack, pod: str) -> dict[str, str]:
        """Values the pod asked to receive as env (`env: {X: {secret: ...}}`)."""


class NoFiles:
    """For stacks with no configs or secrets (and unit tests)."""

    async def materialise(self, stack: DesiredStack) -> None:
        return None

    def binding(self, stack: DesiredStack, mount: MountSpec) -> MountBinding:
        raise LookupError(f"no stack files: cannot mount {mount.kind} {mount.source}")

    async def env_values(self, stack: DesiredStack, pod: str) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class StepOutcome:
    """How one step went; `error` keeps its type (EngineUnavailable, Conflict, ...)."""

    step_id: int
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def message(self) -> str:
        return "" if self.error is None else str(self.error)


class SkippedStep(Exception):
    """A step not run because a step it depends on failed."""


EventSink = Callable[[str, str, str, str], None]  # stack, object, reason, message
Drain = Callable[[str, float], Awaitable[None]]  # container id, grace seconds


@dataclass
class ApplyContext:
    runtime: Runtime
    stacks: Mapping[str, DesiredStack]
    ledger: Ledger
    clock: Callable[[], float]
    files: StackFiles = field(default_factory=NoFiles)
    # Called before a container is stopped so the proxy can drain it.
    drain: Drain | None = None
    on_event: EventSink = lambda stack, obj, reason, msg: None


async def apply(plan: Plan, ctx: ApplyContext) -> list[StepOutcome]:
    """Run every step whose dependencies succeed; return one outcome per step."""
    done: dict[int, anyio.Event] = {s.id: anyio.Event() for s in plan.steps}
    outcomes: dict[int, StepOutcome] = {}

    async def run_one(step: AnyStep) -> None:
        try:
            for dep in step.deps:
                if dep in done:
                    await done[dep].wait()
                    if not outcomes[dep].ok:
                        outcomes[step.id] = StepOutcome(
                            step.id, SkippedStep(f"skipped: step #{dep} failed")
                        )
                        return
            try:
                await _execute(step, ctx)
                outcomes[step.id] = StepOutcome(step.id)
            except (EngineError, OSError, TimeoutError) as exc:
                outcomes[step.id] = StepOutcome(step.id, exc)
                _record_failure(step, str(exc), ctx)
        finally:
            done[step.id].set()

    async with anyio.create_task_group() as tg:
        for step in plan.steps:
            tg.start_soon(run_one, step)
    return [outcomes[i] for i in sorted(outcomes)]


def _stack_of(step: AnyStep) -> str:
    return str(getattr(step, "stack", "") or step.target.split(":", 1)[-1].split("/", 1)[0])


def _record_failure(step: AnyStep, error: str, ctx: ApplyContext) -> None:
    log.warning("%s %s failed: %s", type(step).__name__, step.target, error)
    if isinstance(step, PullImage | BuildImage):
        prev = ctx.ledger.pull_failures.get(step.ref)
        attempts = prev.attempts + 1 if prev else 1
        ctx.ledger.pull_failures[step.ref] = PullFailure(
            attempts=attempts, last_at=ctx.clock(), message=error
        )
        ctx.on_event("", step.target, "Failed", error)
    else:
        ctx.on_event(_stack_of(step), step.target, "Failed", f"{type(step).__name__}: {error}")


async def _execute(step: AnyStep, ctx: ApplyContext) -> None:
    rt = ctx.runtime
    match step:
        case CreateNetwork():
            await rt.create_network(step.name, {labels.STACK: step.stack, labels.KIND: "network"})
            ctx.on_event(step.stack, step.target, "Created", "network created")
        case RemoveNetwork():
            await rt.remove_network(step.network_id)
        case CreateVolume():
            volume = next(v for v in ctx.stacks[step.stack].volumes if v.name == step.volume)
            await rt.create_volume(
                step.docker_name,
                {labels.STACK: step.stack, labels.KIND: "volume", labels.VOLUME: step.volume},
                volume.driver,
                dict(volume.options),
            )
            ctx.on_event(step.stack, step.target, "Created", "volume created")
        case RemoveVolume():
            await rt.remove_volume(step.docker_name)
        case PrepareFiles():
            await ctx.files.materialise(ctx.stacks[step.stack])
        case PullImage():
            await rt.pull_image(step.ref)
            ctx.ledger.pull_failures.pop(step.ref, None)
            ctx.on_event("", step.target, "Pulled", f"pulled {step.ref}")
        case BuildImage():
            await rt.build_image(step.context, step.ref, {labels.KIND: "build"})
            ctx.ledger.pull_failures.pop(step.ref, None)
            ctx.on_event("", step.target, "Built", f"built {step.ref}")
        case RunContainer():
            if step.spec is None:
                raise AssertionError(f"{step.target}: container spec not resolved before apply")
            cid = await rt.create_container(step.spec)
            await rt.start_container(cid)
            ctx.on_event(step.stack, step.target, "Started", f"{step.name}: {step.cause}")
        case StartContainer():
            await rt.start_container(step.container_id)
            rec = ctx.ledger.record(step.container_id)
            rec.restarts = max(0, rec.restarts + (1 if step.counts else -step.uncount))
            rec.backoff_level = step.backoff_level
            rec.last_restart_at = ctx.clock()
            rec.killed_for = None
            ctx.on_event(_stack_of(step), step.target, "Restarted", step.cause)
        case KillContainer():
            ctx.on_event(_stack_of(step), step.target, "Killing", step.cause)
            ctx.ledger.record(step.container_id).killed_for = step.reason
            await rt.stop_container(step.container_id, step.grace_s)
        case RemoveContainer():
            if ctx.drain is not None and step.grace_s > 0:
                await ctx.drain(step.container_id, step.grace_s)
            if step.grace_s > 0:
                await rt.stop_container(step.container_id, step.grace_s)
            await rt.remove_container(step.container_id)
            ctx.ledger.restarts.pop(step.container_id, None)
        case RecordRollout():
            ctx.ledger.rollouts[rollout_key(step.stack, step.pod)] = step.record
            if step.reason:
                ctx.on_event(step.stack, step.target, step.reason, step.message)
        case _:
            raise AssertionError(f"unknown step {step!r}")
