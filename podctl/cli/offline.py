"""Answers from Docker labels alone, for when no `podctl run` is active.

Without the running instance there are no probe results, so `ready` means
"running" here and restart counts are those podctl saved in its state dir.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from podctl import labels
from podctl.api.schema import PodRow, ServiceRow, StackRow
from podctl.reconcile.phase import container_phase, has_ended, replica_index

if TYPE_CHECKING:
    from collections.abc import Iterable

    from podctl.runtime.protocol import ContainerInfo, Runtime


def _row(c: ContainerInfo) -> PodRow:
    replica = replica_index(c.labels) or 0
    reason = None
    if has_ended(c.state):
        reason = f"exit code {c.exit_code}; podctl is not running to restart it"
    return PodRow(
        stack=c.labels.get(labels.STACK, ""),
        pod=c.labels.get(labels.POD, ""),
        name=c.name,
        container_id=c.id,
        phase=container_phase(c),
        ready=c.state == "running",
        restarts=0,
        revision=c.labels.get(labels.REVISION, ""),
        image=c.image,
        reason=reason,
        replica=replica,
        ip=c.ip,
        exit_code=c.exit_code if has_ended(c.state) else None,
        started_at=c.started_at,
    )


async def get_pods(rt: Runtime, stack: str | None) -> list[PodRow]:
    containers = await rt.list_containers(stack)
    return sorted((_row(c) for c in containers), key=lambda r: (r.stack, r.pod, r.replica, r.name))


async def get_services(rt: Runtime, stack: str | None) -> list[ServiceRow]:
    # Services are podctl's proxies: without a running podctl, nothing listens.
    return []


async def get_stacks(rt: Runtime, stack: str | None) -> list[StackRow]:
    rows: dict[str, StackRow] = {}
    for c in await rt.list_containers(stack):
        name = c.labels.get(labels.STACK, "")
        row = rows.setdefault(
            name,
            StackRow(
                name=name,
                source="",
                pods=0,
                replicas=0,
                ready=0,
                services=0,
                engine="ok (podctl not running)",
            ),
        )
        row.replicas += 1
        row.ready += c.state == "running"
    for name, row in rows.items():
        row.pods = len({c.labels.get(labels.POD) for c in await rt.list_containers(name)})
    return sorted(rows.values(), key=lambda r: r.name)


async def resolve(rt: Runtime, name: str) -> str:
    """Container id for what a user typed: container name, pod-N, stack/pod-N, id prefix."""
    from podctl.api.names import find_replica

    found = find_replica(await get_pods(rt, None), name)
    if found is None or found.container_id is None:
        raise LookupError(f"no pod replica named {name!r} (see `podctl get pods`)")
    return found.container_id


async def describe_pod(rt: Runtime, name: str) -> dict[str, Any] | None:
    try:
        cid = await resolve(rt, name)
    except LookupError:
        return None
    c = await rt.inspect_container(cid)
    import msgspec

    return {"pod": msgspec.to_builtins(_row(c)), "note": "podctl is not running: no probe data"}


def stop_graces(containers: Iterable[ContainerInfo]) -> dict[str, float]:
    """Each pod's stop_grace, read back from its containers (podctl sets the engine's
    StopTimeout to it): the stack file is not at hand when podctl is not running."""
    graces: dict[str, float] = {}
    for c in containers:
        pod = c.labels.get(labels.POD)
        if pod is not None and c.stop_grace_s is not None:
            graces[pod] = max(graces.get(pod, 0.0), c.stop_grace_s)
    return graces


async def down(rt: Runtime, stack: str, *, volumes: bool = False) -> int:
    """`podctl down STACK` without a running podctl: the same teardown as the running
    one (every container stopped at once with its pod's stop_grace, then the network,
    then volumes when asked), and the stack's materialised configs and secrets
    removed from the runtime directory. Returns how many engine objects went.

    Holds the stack's lock meanwhile, so a `podctl run` of the stack started on
    another control socket is not taken down under its feet (StackBusy names it).
    """
    from podctl.reconcile.controller import teardown
    from podctl.storage.files import StackFiles
    from podctl.storage.locks import acquire_stacks

    with await anyio.to_thread.run_sync(acquire_stacks, [stack]):
        graces = stop_graces(await rt.list_containers(stack))
        plan = await teardown(rt, stack, remove_volumes=volumes, grace_by_pod=graces)
        await StackFiles().remove_stack(stack)
    return len(plan.steps)
