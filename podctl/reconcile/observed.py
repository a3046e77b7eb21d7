"""One snapshot of reality, taken so the planner decides without further engine calls.

The snapshot is indexed once (by stack, then pod; networks and volumes by name)
on first use, so a planner pass costs one look per container rather than one scan
of every container per pod.
"""

from __future__ import annotations

from functools import cached_property

import msgspec

from podctl import labels
from podctl.runtime.protocol import ContainerInfo, HostInfo, NetworkInfo, VolumeInfo


class StackContainers(msgspec.Struct, frozen=True, kw_only=True):
    """A stack's containers, in the snapshot's order, and the same grouped by pod label."""

    containers: tuple[ContainerInfo, ...]
    by_pod: dict[str, tuple[ContainerInfo, ...]]


_NO_CONTAINERS = StackContainers(containers=(), by_pod={})


class ObservedState(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    # dict=True: room for the cached indices below (not fields: never encoded or compared).
    containers: tuple[ContainerInfo, ...] = ()
    networks: tuple[NetworkInfo, ...] = ()
    volumes: tuple[VolumeInfo, ...] = ()
    images: frozenset[str] = frozenset()  # refs (of the desired ones) present locally
    host: HostInfo | None = None

    @cached_property
    def _stacks(self) -> dict[str, StackContainers]:
        grouped: dict[str, dict[str, list[ContainerInfo]]] = {}
        ordered: dict[str, list[ContainerInfo]] = {}
        for c in self.containers:
            stack = c.labels.get(labels.STACK)
            if stack is None:
                continue
            ordered.setdefault(stack, []).append(c)
            grouped.setdefault(stack, {}).setdefault(c.labels.get(labels.POD, ""), []).append(c)
        return {
            stack: StackContainers(
                containers=tuple(cs),
                by_pod={pod: tuple(pcs) for pod, pcs in grouped[stack].items()},
            )
            for stack, cs in ordered.items()
        }

    @cached_property
    def _networks(self) -> dict[str, NetworkInfo]:
        out: dict[str, NetworkInfo] = {}
        for n in self.networks:
            out.setdefault(n.name, n)  # the first of a name, as a scan would find
        return out

    @cached_property
    def _volumes(self) -> dict[str, VolumeInfo]:
        out: dict[str, VolumeInfo] = {}
        for v in self.volumes:
            out.setdefault(v.name, v)
        return out

    @cached_property
    def container_names(self) -> frozenset[str]:
        """Names of every container in the snapshot (Docker names are host-wide)."""
        return frozenset(c.name for c in self.containers)

    def stack(self, stack: str) -> StackContainers:
        """A stack's containers, indexed by pod (empty when it has none)."""
        return self._stacks.get(stack, _NO_CONTAINERS)

    def stack_containers(self, stack: str) -> list[ContainerInfo]:
        return list(self.stack(stack).containers)

    def pod_containers(self, stack: str, pod: str) -> tuple[ContainerInfo, ...]:
        return self.stack(stack).by_pod.get(pod, ())

    def network(self, name: str) -> NetworkInfo | None:
        return self._networks.get(name)

    def volume(self, name: str) -> VolumeInfo | None:
        return self._volumes.get(name)
