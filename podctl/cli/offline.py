"""Answers from Docker labels alone, for when no `podctl run` is active.

Without the running instance there are no probe results, so `ready` means
"running" here and restart counts are those podctl saved in its state dir.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podctl import labels
from podctl.api.schema import PodRow, ServiceRow, StackRow
from podctl.reconcile.phase import container_phase, has_ended, replica_index

if TYPE_CHECKING:
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
