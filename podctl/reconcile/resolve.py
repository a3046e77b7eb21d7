"""Resolve a plan's RunContainer steps into complete container specs, just before apply.

The planner decides *which* replicas to create; this fills in *what* each one
is, from the desired stack, the observed stack network (its gateway carries
in-stack discovery) and the stack files (config/secret paths, env values the
stack opted into). The result is handed to `apply()` and then dropped: a spec
may hold secret values delivered as env, so it is never kept in `last_plan`,
logged or rendered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from podctl.reconcile.containers import container_spec, service_host_entries
from podctl.reconcile.steps import Plan, RunContainer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podctl.reconcile.apply import StackFiles
    from podctl.runtime.protocol import MountBinding, NetworkInfo
    from podctl.spec.model import DesiredPod, DesiredStack


async def resolve_containers(
    plan: Plan,
    stacks: Mapping[str, DesiredStack],
    networks: Mapping[str, NetworkInfo],
    files: StackFiles,
) -> Plan:
    """`plan` with every RunContainer's `spec` filled in."""
    env_cache: dict[tuple[str, str], dict[str, str]] = {}
    steps = []
    for step in plan.steps:
        if isinstance(step, RunContainer):
            stack = stacks[step.stack]
            pod = stack.pod(step.pod)
            if pod is None:
                raise LookupError(f"{step.target}: pod {step.pod} is not in stack {step.stack}")
            key = (stack.name, pod.name)
            if key not in env_cache:
                env_cache[key] = (
                    await files.env_values(stack, pod.name) if pod.template.env_from else {}
                )
            spec = container_spec(
                pod,
                step.replica,
                step.name,
                stack.network,
                extra_hosts=service_host_entries(stack, networks.get(stack.network)),
                file_mounts=_file_mounts(stack, pod, files),
                env_from_values=env_cache[key],
            )
            step = msgspec.structs.replace(step, spec=spec)
        steps.append(step)
    return msgspec.structs.replace(plan, steps=tuple(steps))


def _file_mounts(
    stack: DesiredStack, pod: DesiredPod, files: StackFiles
) -> dict[str, MountBinding]:
    return {
        m.target: files.binding(stack, m)
        for m in pod.template.mounts
        if m.kind in ("config", "secret")
    }
