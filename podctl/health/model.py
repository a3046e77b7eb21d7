"""What the planner reads about health: one `ContainerHealth` per container id.

The prober tasks write it; the planner only reads a snapshot (`HealthView`).
A container with no entry yet is treated as "not started, not ready" when it
has startup/readiness probes and "started, ready" when it has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

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


HealthView = Mapping[str, ContainerHealth]
