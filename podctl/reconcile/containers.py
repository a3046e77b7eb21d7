"""Translate a desired pod replica into the engine's ContainerSpec. No decisions: a mapping.

Everything a container needs is resolved here, purely, before `apply()` runs:
its labels, its mounts (config and secret files at their content-named host
paths), the host entries for in-stack service discovery, and the env values
the stack asked to deliver. `apply()` only hands the spec to the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from podctl import labels
from podctl.runtime.protocol import ContainerSpec, MountBinding
from podctl.spec.model import DesiredPod, volume_docker_name

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from podctl.runtime.protocol import NetworkInfo
    from podctl.spec.model import DesiredStack


def container_labels(pod: DesiredPod, replica: int) -> dict[str, str]:
    out = dict(pod.template.labels)
    out.update(
        {
            labels.STACK: pod.stack,
            labels.POD: pod.name,
            labels.REPLICA: str(replica),
            labels.REVISION: pod.revision,
            labels.CONTAINER: pod.name,
        }
    )
    return out


def container_spec(
    pod: DesiredPod,
    replica: int,
    name: str,
    network: str,
    *,
    extra_hosts: Sequence[str] = (),
    file_mounts: Mapping[str, MountBinding] | None = None,
    env_from_values: Mapping[str, str] | None = None,
) -> ContainerSpec:
    """The container for replica `replica` of `pod`.

    `file_mounts` maps a config/secret mount target to its materialised host file;
    `env_from_values` holds values the stack asked to deliver as env (opt-in).
    """
    t = pod.template
    mounts: list[MountBinding] = []
    tmpfs: dict[str, str] = {}
    for m in t.mounts:
        if m.kind == "volume":
            mounts.append(
                MountBinding(
                    type="volume",
                    source=volume_docker_name(pod.stack, m.source),
                    target=m.target,
                    read_only=m.read_only,
                )
            )
        elif m.kind == "bind":
            mounts.append(
                MountBinding(type="bind", source=m.source, target=m.target, read_only=m.read_only)
            )
        elif m.kind == "tmpfs":
            tmpfs[m.target] = "rw,nosuid,nodev,size=64m"
        elif file_mounts is not None and m.target in file_mounts:
            mounts.append(file_mounts[m.target])
    env = [f"{k}={v}" for k, v in t.env]
    for ref in t.env_from:
        if env_from_values is not None and ref.name in env_from_values:
            env.append(f"{ref.name}={env_from_values[ref.name]}")
    return ContainerSpec(
        name=name,
        image=t.image,
        labels=container_labels(pod, replica),
        network=network,
        command=list(t.command) if t.command is not None else None,
        entrypoint=list(t.entrypoint) if t.entrypoint is not None else None,
        env=env,
        user=t.user,
        workdir=t.workdir,
        hostname=f"{pod.name}-{replica}",
        network_aliases=[f"{pod.name}-{replica}"],
        extra_hosts=list(extra_hosts),
        nano_cpus=t.nano_cpus,
        memory_bytes=t.memory_bytes,
        mounts=mounts,
        read_only_rootfs=t.read_only_rootfs,
        tmpfs=tmpfs,
        cap_add=list(t.cap_add),
        cap_drop=list(t.cap_drop),
        pids_limit=t.pids_limit,
        stop_grace_s=t.stop_grace_s,
    )


def service_host_entries(stack: DesiredStack, network: NetworkInfo | None) -> list[str]:
    """/etc/hosts entries: every service of the stack at the stack network's gateway,
    where podctl's proxy listens and forwards to ready replicas only (not Docker's
    DNS round-robin over all replicas, ready or not)."""
    if network is None or not network.gateway:
        return []
    return [f"{svc.name}:{network.gateway}" for svc in stack.services]
