"""What a replica is, read from its container alone: replica index and phase.

Shared by the planner (which then refines the phase with what it decides:
restarts, back-off, probes) and the offline CLI (which has only the engine's
word, because no `podctl run` is there to decide anything).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from podctl import labels

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podctl.reconcile.steps import Phase
    from podctl.runtime.protocol import ContainerInfo, ContainerState


def replica_index(container_labels: Mapping[str, str]) -> int | None:
    """The replica slot a container fills (`io.podctl.replica`), or None when unlabelled."""
    try:
        return int(container_labels.get(labels.REPLICA, ""))
    except ValueError:
        return None


def has_ended(state: ContainerState) -> bool:
    """The process has exited: an exit code means something."""
    return state in ("exited", "dead")


def engine_phase(state: ContainerState, exit_code: int | None) -> Phase:
    """The phase of a container as the engine reports it, before any restart decision.

    Like a pod with restartPolicy Never in Kubernetes: running (or paused, or being
    restarted by the engine) is Running; an ended process Succeeded on exit code 0
    and Failed otherwise; a container being removed is Terminating; one created
    but never started is Pending.
    """
    if state in ("running", "paused", "restarting"):
        return "Running"
    if has_ended(state):
        return "Succeeded" if exit_code == 0 else "Failed"
    if state == "removing":
        return "Terminating"
    return "Pending"


def container_phase(c: ContainerInfo) -> Phase:
    return engine_phase(c.state, c.exit_code)


def exit_reason(exit_code: int) -> str:
    """Why a container that will not be restarted ended (Kubernetes' terminated reasons)."""
    if exit_code == 0:
        return f"Completed (exit code {exit_code})"
    return f"Error (exit code {exit_code})"
