"""apply(): carry out a Plan's steps against a Runtime. No decisions here.

Steps run as soon as their dependencies succeed, all at once: the runtime
bounds its engine calls (the engine is a shared, fragile resource), and a step
waiting out a stop's grace must not hold a slot another step needs. A failed step fails its
dependents; unrelated steps go on. Outcomes the planner needs next time
(restart counts, pull failures) are written to the Ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import anyio
import msgspec

from podctl import labels
from podctl.reconcile.containers import container_spec
from podctl.reconcile.ledger import Ledger, PullFailure
from podctl.reconcile.steps import (
    AnyStep,
    BuildImage,
    CreateNetwork,
    CreateVolume,
    KillContainer,
    Plan,
    PrepareFiles,
    PullImage,
    RemoveContainer,
    RemoveNetwork,
    RemoveVolume,
    RunContainer,
    StartContainer,
)
from podctl.runtime.errors import EngineError

if TYPE_CHECKING:
    from podctl.runtime.protocol import MountBinding, NetworkInfo, Runtime
    from podctl.spec.model import DesiredStack

log = logging.getLogger("podctl.apply")


class StackFiles(Protocol):
    """Configs and secrets on disk (podctl.storage): what apply needs of them."""

    async def materialise(self, stack: DesiredStack) -> None: ...

    def mounts_for(self, stack: DesiredStack, pod: str) -> dict[str, MountBinding]: ...

    async def env_values(self, stack: DesiredStack, pod: str) -> dict[str, str]: ...


class NoFiles:
    """For stacks with no configs or secrets (and unit tests)."""

    async def materialise(self, stack: DesiredStack) -> None:
        return None

    def mounts_for(self, stack: DesiredStack, pod: str) -> dict[str, MountBinding]:
        return {}

    async def env_values(self, stack: DesiredStack, pod: str) -> dict[str, str]:
        return {}


class StepOutcome(msgspec.Struct, frozen=True):
    step_id: int
    ok: bool
    error: str = ""


EventSink = Callable[[str, str, str, str], None]  # stack, object, reason, message


@dataclass
class ApplyContext:
    runtime: Runtime
    stacks: Mapping[str, DesiredStack]
    networks: dict[str, NetworkInfo]
    ledger: Ledger
    clock: Callable[[], float]
    files: StackFiles = field(default_factory=NoFiles)
    # Host entries for in-stack service discovery: stack -> ["web:10.1.0.1", ...].
    service_hosts: Callable[[str, NetworkInfo | None], list[str]] = lambda s, n: []
    # Called before a container is stopped so the proxy can drain it.
    before_stop: Callable[[str, float], Awaitable[None]] | None = None
    on_event: EventSink = lambda stack, obj, reason, msg: None
    concurrency: int = 8  # unused: the runtime bounds its own engine calls


async def apply(plan: Plan, ctx: ApplyContext) -> list[StepOutcome]:
    """Run every step whose dependencies succeed; return one outcome per step."""
    steps = {s.id: s for s in plan.steps}
    done: dict[int, anyio.Event] = {s.id: anyio.Event() for s in plan.steps}
    outcomes: dict[int, StepOutcome] = {}

    async def run_one(step: AnyStep) -> None:
        try:
            for dep in step.deps:
                if dep in done:
                    await done[dep].wait()
                    if not outcomes[dep].ok:
                        outcomes[step.id] = StepOutcome(
                            step.id, False, f"skipped: step #{dep} failed"
                        )
                        return
            try:
                await _execute(step, ctx)
                outcomes[step.id] = StepOutcome(step.id, True)
            except (EngineError, OSError, TimeoutError) as exc:
                outcomes[step.id] = StepOutcome(step.id, False, str(exc))
                _record_failure(step, str(exc), ctx)
        finally:
            done[step.id].set()

    async with anyio.create_task_group() as tg:
        for step in steps.values():
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
            net = await rt.create_network(
                step.name, {labels.STACK: step.stack, labels.KIND: "network"}
            )
            ctx.networks[step.name] = net
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
            stack = ctx.stacks[step.stack]
            pod = stack.pod(step.pod)
            assert pod is not None
            spec = container_spec(
                pod,
                step.replica,
                step.name,
                stack.network,
                extra_hosts=ctx.service_hosts(stack.name, ctx.networks.get(stack.network)),
                file_mounts=ctx.files.mounts_for(stack, pod.name),
                env_from_values=await ctx.files.env_values(stack, pod.name),
            )
            cid = await rt.create_container(spec)
            await rt.start_container(cid)
            ctx.on_event(step.stack, step.target, "Started", f"{step.name}: {step.cause}")
        case StartContainer():
            await rt.start_container(step.container_id)
            rec = ctx.ledger.record(step.container_id)
            rec.restarts += 1
            rec.backoff_level = step.backoff_level
            rec.last_restart_at = ctx.clock()
            rec.killed_for = None
            ctx.on_event(_stack_of(step), step.target, "Restarted", step.cause)
        case KillContainer():
            ctx.on_event(_stack_of(step), step.target, "Killing", step.cause)
            ctx.ledger.record(step.container_id).killed_for = step.reason
            await rt.stop_container(step.container_id, step.grace_s)
        case RemoveContainer():
            if ctx.before_stop is not None and step.grace_s > 0:
                await ctx.before_stop(step.container_id, step.grace_s)
            if step.grace_s > 0:
                await rt.stop_container(step.container_id, step.grace_s)
            await rt.remove_container(step.container_id)
            ctx.ledger.restarts.pop(step.container_id, None)
        case _:
            raise AssertionError(f"unknown step {step!r}")
