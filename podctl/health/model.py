"""What the planner reads about health: one `ContainerHealth` per container id.

The prober tasks write it; the planner only reads a snapshot (`HealthView`).
A container with no entry yet is treated as "not started, not ready" when it
has startup/readiness probes and "started, ready" when it has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

from podctl.spec.model import ProbeSpec

RestartReason = Literal["LivenessFailed", "StartupFailed"]


class ProbeResult(msgspec.Struct, frozen=True, kw_only=True):
    """One probe attempt, as shown by `describe pod`."""

    probe: str  # startup | liveness | readiness
    ok: bool
    at: float  # epoch seconds
    message: str = ""  # "HTTP 503", "exit code 1", "timeout after 1s", "connection refused"


class ContainerHealth(msgspec.Struct, frozen=True, kw_only=True):
    started: bool  # the startup probe has succeeded (True when there is none)
    ready: bool  # the readiness probe passes (True once started when there is none)
    restart_reason: RestartReason | None = None  # liveness/startup tripped: restart it
    message: str = ""  # last failure, for `reason`
    last: tuple[ProbeResult, ...] = ()  # latest result of each probe
    # The container start these results belong to: results of an earlier run of a
    # restarted container must not be read as the new run's health.
    started_at: float | None = None
    # Since when `ready` has held without a break (None while not ready): a rollout
    # counts a new replica as available once it has been ready for `min_ready`.
    ready_since: float | None = None


HealthView = Mapping[str, ContainerHealth]


class ProbeTarget(msgspec.Struct, frozen=True, kw_only=True):
    """A running container to probe, as the controller observed it."""

    container_id: str
    stack: str
    pod: str
    ip: str | None  # address on its stack network; http/tcp probes fail without one
    started_at: float  # epoch seconds (the engine's StartedAt)
    startup: ProbeSpec | None = None
    liveness: ProbeSpec | None = None
    readiness: ProbeSpec | None = None

    @property
    def has_probes(self) -> bool:
        return any(p is not None for p in (self.startup, self.liveness, self.readiness))


def is_ready(health: ContainerHealth | None, *, started_at: float | None, gated: bool) -> bool:
    """Readiness of a running container, as the kubelet decides it.

    `gated`: its pod has a readiness or startup probe, so it must prove itself
    first; without one a running container is ready at once. Results of an
    earlier run of a restarted container (another `started_at`) do not count.
    """
    if health is not None and health.started_at is not None and health.started_at != started_at:
        health = None
    if health is None:
        return not gated
    return health.ready and health.started and health.restart_reason is None
