"""Resolve a plan's RunContainer steps into complete container specs, just before apply.

The planner decides *which* replicas to create; this fills in *what* each one
is, from the desired stack, the observed stack network (its gateway carries
in-stack discovery) and the stack files (config/secret paths, env values the
stack opted into). The result is handed to `apply()` and then dropped: a spec
may hold secret values delivered as env, so it is never kept in `last_plan`,
logged or rendered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from podctl.reconcile.containers import container_spec, service_host_entries
from podctl.reconcile.rollout import cannot_run
from podctl.reconcile.steps import AnyStep, Plan, RemoveContainer, RunContainer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podctl.reconcile.apply import StackFiles
    from podctl.runtime.protocol import ContainerSpec, MountBinding, NetworkInfo
    from podctl.spec.model import DesiredPod, DesiredStack


# Told about a RunContainer step that cannot be resolved: the step and why.
ResolveFailure = Callable[[RunContainer, str], None]


async def resolve_containers(
    plan: Plan,
    stacks: Mapping[str, DesiredStack],
    networks: Mapping[str, NetworkInfo],
    files: StackFiles,
    on_failure: ResolveFailure | None = None,
) -> Plan:
    """`plan` with every RunContainer's `spec` filled in.

    A step that runs a rollout override (`revision`/`template` set: a rollback or
    an undo) is built from the override's template, so its labels carry the
    override's revision. When that template cannot run in the stack as it is now
    (a config or secret it needs is gone: `rollout.cannot_run`), only that step
    fails: it is dropped with the steps that depend on it and the removal of the
    replica it would replace (a replacement that cannot be created must not take
    its predecessor away), and `on_failure` hears why. The planner holds such an
    override itself; this is the guard for a stack that changed in between.
    Other errors (a source of the file's own template vanished) propagate.
    """
    env_cache: dict[tuple[str, str, str], dict[str, str]] = {}
    steps: list[AnyStep] = []
    failed: set[int] = set()
    for step in plan.steps:
        if isinstance(step, RunContainer):
            stack = stacks[step.stack]
            pod = stack.pod(step.pod)
            if pod is None:
                raise LookupError(f"{step.target}: pod {step.pod} is not in stack {step.stack}")
            if step.template is not None and step.revision is not None:
                pod = msgspec.structs.replace(
                    pod, template=step.template, revision=step.revision, build=None
                )
                try:
                    spec = await _spec(step, stack, pod, networks, files, env_cache, True)
                except (OSError, LookupError, ValueError) as exc:
                    failed.add(step.id)
                    if on_failure is not None:
                        on_failure(step, _override_failure(step, str(exc)))
                    continue
            else:
                spec = await _spec(step, stack, pod, networks, files, env_cache, False)
            step = msgspec.structs.replace(step, spec=spec)
        steps.append(step)
    if failed:
        steps = _without(steps, plan.steps, failed)
    return msgspec.structs.replace(plan, steps=tuple(steps))


class OverrideCannotRun(LookupError):
    pass


def _override_failure(step: RunContainer, why: str) -> str:
    return (
        f"cannot create {step.name} (rollout override, revision {(step.revision or '?')[:6]}):"
        f" {why}"
    )


async def _spec(
    step: RunContainer,
    stack: DesiredStack,
    pod: DesiredPod,
    networks: Mapping[str, NetworkInfo],
    files: StackFiles,
    env_cache: dict[tuple[str, str, str], dict[str, str]],
    override: bool,
) -> ContainerSpec:
    if override:
        problem = cannot_run(pod.template, stack)
        if problem is not None:
            raise OverrideCannotRun(problem)
    key = (stack.name, pod.name, pod.revision)
    if key not in env_cache:
        values: dict[str, str] = {}
        if pod.template.env_from:
            # The values of the template being run (an override's may differ from the
            # file's): the pod's entry is swapped for it in the stack handed over.
            source = msgspec.structs.replace(stack, pods=(pod,)) if override else stack
            values = await files.env_values(source, pod.name)
        env_cache[key] = values
    return container_spec(
        pod,
        step.replica,
        step.name,
        stack.network,
        extra_hosts=service_host_entries(stack, networks.get(stack.network)),
        file_mounts=_file_mounts(stack, pod, files),
        env_from_values=env_cache[key],
    )


def _without(steps: list[AnyStep], planned: tuple[AnyStep, ...], failed: set[int]) -> list[AnyStep]:
    """`steps` less the failed ones, the removals they were to follow, and every
    step that depends on a dropped one (steps come in dependency order)."""
    by_id = {s.id: s for s in planned}
    dropped = set(failed)
    for sid in failed:
        for dep in by_id[sid].deps:
            if isinstance(by_id.get(dep), RemoveContainer):
                dropped.add(dep)
    out = []
    for s in steps:
        if s.id in dropped or set(s.deps) & dropped:
            dropped.add(s.id)
            continue
        out.append(s)
    return out


def _file_mounts(
    stack: DesiredStack, pod: DesiredPod, files: StackFiles
) -> dict[str, MountBinding]:
    return {
        m.target: files.binding(stack, m)
        for m in pod.template.mounts
        if m.kind in ("config", "secret")
    }
