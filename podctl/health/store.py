"""`HealthStore`: the health of every probed container, as the planner reads it.

The probers write, the planner reads a snapshot (`view()`). Only a change that
can alter a decision (started, ready, restart_reason), or a not-ready
container's first result of a probe, calls `on_change(stack)`:
the controller is level-triggered, so it needs to hear "look at stack X again",
not every probe result. Probe results and events are kept, bounded, for
`describe pod` and `podctl events`.

Single-threaded by design: every caller runs on the event loop, so no locks.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable

    from podctl.health.model import ContainerHealth, ProbeResult

RESULT_HISTORY = 10  # probe results kept per container (all probes together)
EVENT_HISTORY = 50  # events kept per container


class HealthEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened to a container: `Unhealthy`, `Killing`, `BackOff`.

    Repeats of the same kind and message are folded into one event with a
    count, as Kubernetes aggregates events ("x3 over 6s").
    """

    container_id: str
    stack: str
    kind: str
    message: str
    at: float  # last occurrence, epoch seconds
    first_at: float
    count: int = 1


class _Entry:
    __slots__ = ("events", "health", "results", "stack")

    def __init__(self, stack: str, health: ContainerHealth | None) -> None:
        self.stack = stack
        self.health = health
        self.results: deque[ProbeResult] = deque(maxlen=RESULT_HISTORY)
        self.events: deque[HealthEvent] = deque(maxlen=EVENT_HISTORY)


def _decision(h: ContainerHealth) -> tuple[bool, bool, str | None, frozenset[str]]:
    # A not-ready container's first result of a probe is news too, though it
    # changes no decision: until the planner has seen it, the `reason` it shows
    # says "waiting for ... probe" while the probe may be failing, with a message
    # worth showing. That is at most once per probe and container start; later
    # message changes alone do not wake the controller.
    first_results = frozenset(r.probe for r in h.last) if not h.ready else frozenset()
    return (h.started, h.ready, h.restart_reason, first_results)


class HealthStore:
    """Health, recent probe results and events per container id."""

    def __init__(
        self,
        on_change: Callable[[str], None] | None = None,
        *,
        on_event: Callable[[HealthEvent], None] | None = None,
    ) -> None:
        self._on_change = on_change
        self._on_event = on_event
        self._entries: dict[str, _Entry] = {}

    def _entry(self, container_id: str, stack: str) -> _Entry:
        entry = self._entries.get(container_id)
        if entry is None:
            entry = self._entries[container_id] = _Entry(stack, None)
        return entry

    def set(self, container_id: str, stack: str, health: ContainerHealth) -> bool:
        """Store `health`; returns whether started/ready/restart_reason changed, or a
        not-ready container has a probe's first result.

        A container's first entry is not a change: the prober's initial health
        is what the planner assumes for a container it has no entry for. A
        change calls `on_change(stack)`.
        """
        entry = self._entry(container_id, stack)
        before, entry.health = entry.health, health
        changed = before is not None and _decision(before) != _decision(health)
        if changed and self._on_change is not None:
            self._on_change(stack)
        return changed

    def get(self, container_id: str) -> ContainerHealth | None:
        entry = self._entries.get(container_id)
        return entry.health if entry is not None else None

    def view(self) -> dict[str, ContainerHealth]:
        """A snapshot for the planner: container id -> health (a new dict each call)."""
        return {cid: e.health for cid, e in self._entries.items() if e.health is not None}

    def forget(self, container_id: str) -> None:
        """Drop everything about a container (it is gone). Does not notify."""
        self._entries.pop(container_id, None)

    def __contains__(self, container_id: object) -> bool:
        return container_id in self._entries

    # --- describe: results and events ----------------------------------------

    def record_result(self, container_id: str, stack: str, result: ProbeResult) -> None:
        self._entry(container_id, stack).results.append(result)

    def results(self, container_id: str) -> list[ProbeResult]:
        """Recent probe results, oldest first."""
        entry = self._entries.get(container_id)
        return list(entry.results) if entry is not None else []

    def record_event(
        self, container_id: str, kind: str, message: str, at: float, *, stack: str | None = None
    ) -> HealthEvent:
        """Record an event (the prober: `Unhealthy`; the controller: `Killing`, `BackOff`)."""
        known = self._entries.get(container_id)
        entry = self._entry(container_id, stack if stack is not None else _stack_of(known))
        last = entry.events[-1] if entry.events else None
        if last is not None and last.kind == kind and last.message == message:
            event = msgspec.structs.replace(last, at=at, count=last.count + 1)
            entry.events[-1] = event
        else:
            event = HealthEvent(
                container_id=container_id,
                stack=entry.stack,
                kind=kind,
                message=message,
                at=at,
                first_at=at,
            )
            entry.events.append(event)
        if self._on_event is not None:
            self._on_event(event)
        return event

    def events(self, container_id: str) -> list[HealthEvent]:
        """Recent events of a container, oldest first."""
        entry = self._entries.get(container_id)
        return list(entry.events) if entry is not None else []


def _stack_of(entry: _Entry | None) -> str:
    return entry.stack if entry is not None else ""
