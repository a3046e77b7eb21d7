"""Small builders for planner tests: desired pods and observed containers as literals."""

from __future__ import annotations

from typing import Any

from podctl import labels
from podctl.reconcile.ledger import AvailableRevision, Ledger, RolloutRecord, rollout_key
from podctl.reconcile.observed import ObservedState
from podctl.runtime.protocol import ContainerInfo, HostInfo, NetworkInfo
from podctl.spec.model import (
    ContainerTemplate,
    DesiredPod,
    DesiredStack,
    ExecProbe,
    ProbeSpec,
    RolloutSpec,
    network_name,
)


def pod(
    name: str = "web",
    *,
    stack: str = "shop",
    replicas: int = 3,
    revision: str = "rev1aaaaaaaa",
    image: str = "busybox:1.36",
    restart: str = "always",
    depends_on: tuple[str, ...] = (),
    readiness: bool = False,
    cpus: float = 0.0,
    rollout: RolloutSpec | None = None,
) -> DesiredPod:
    probe = ProbeSpec(check=ExecProbe(command=("true",))) if readiness else None
    return DesiredPod(
        stack=stack,
        name=name,
        replicas=replicas,
        template=ContainerTemplate(image=image, readiness=probe, nano_cpus=int(cpus * 1e9)),
        revision=revision,
        restart=restart,  # type: ignore[arg-type]
        depends_on=depends_on,
        rollout=rollout or RolloutSpec(),
    )


def stack(*pods: DesiredPod, name: str = "shop") -> DesiredStack:
    return DesiredStack(
        name=name, source=f"/stacks/{name}.yaml", network=network_name(name), pods=pods
    )


def container(
    pod_name: str,
    replica: int,
    *,
    stack: str = "shop",
    revision: str = "rev1aaaaaaaa",
    state: str = "running",
    exit_code: int | None = None,
    started_at: float = 1000.0,
    finished_at: float | None = None,
    cid: str | None = None,
) -> ContainerInfo:
    return ContainerInfo(
        id=cid or f"{pod_name}{replica}{revision[:4]}",
        name=f"{stack}-{pod_name}-{replica}-{revision[:6]}",
        labels={
            labels.STACK: stack,
            labels.POD: pod_name,
            labels.REPLICA: str(replica),
            labels.REVISION: revision,
        },
        state=state,  # type: ignore[arg-type]
        image="busybox:1.36",
        exit_code=exit_code,
        started_at=started_at,
        finished_at=finished_at,
        ip=f"10.0.0.{replica + 2}",
    )


def observed(
    *containers: ContainerInfo,
    stack: str = "shop",
    network: bool = True,
    images: tuple[str, ...] = ("busybox:1.36",),
    ncpu: int = 2,
) -> ObservedState:
    nets = (
        (NetworkInfo(id="net1", name=network_name(stack), labels={labels.STACK: stack}),)
        if network
        else ()
    )
    return ObservedState(
        containers=containers,
        networks=nets,
        images=frozenset(images),
        host=HostInfo(ncpu=ncpu, mem_bytes=8 << 30),
    )


def template(image: str = "busybox:1.36", *, readiness: bool = False) -> ContainerTemplate:
    """The template `pod()` builds (the same image and probe)."""
    probe = ProbeSpec(check=ExecProbe(command=("true",))) if readiness else None
    return ContainerTemplate(image=image, readiness=probe)


def rolling(
    revision: str = "rev2bbbbbbbb",
    *,
    stack: str = "shop",
    pod: str = "web",
    from_revision: str = "rev1aaaaaaaa",
    started_at: float = 1900.0,
    **kw: Any,
) -> Ledger:
    """A Ledger whose record says `pod` is rolling out `revision` (from `from_revision`,
    which was fully available with `template()`)."""
    kw.setdefault(
        "available",
        (AvailableRevision(revision=from_revision, template=template(), at=1000.0),),
    )
    record = RolloutRecord(
        revision=revision,
        file_revision=revision,
        started_at=started_at,
        from_revision=from_revision,
        **kw,
    )
    return Ledger(rollouts={rollout_key(stack, pod): record})
