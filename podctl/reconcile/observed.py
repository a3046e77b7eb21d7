"""One snapshot of reality, taken so the planner decides without further engine calls."""

from __future__ import annotations

import msgspec

from podctl import labels
from podctl.runtime.protocol import ContainerInfo, HostInfo, NetworkInfo, VolumeInfo


class ObservedState(msgspec.Struct, frozen=True, kw_only=True):
    containers: tuple[ContainerInfo, ...] = ()
    networks: tuple[NetworkInfo, ...] = ()
    volumes: tuple[VolumeInfo, ...] = ()
    images: frozenset[str] = frozenset()  # refs (of the desired ones) present locally
    host: HostInfo | None = None

    def stack_containers(self, stack: str) -> list[ContainerInfo]:
        return [c for c in self.containers if c.labels.get(labels.STACK) == stack]

    def network(self, name: str) -> NetworkInfo | None:
        for n in self.networks:
            if n.name == name:
                return n
        return None

    def volume(self, name: str) -> VolumeInfo | None:
        for v in self.volumes:
            if v.name == name:
                return v
        return None
