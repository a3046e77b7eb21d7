"""The live view of `podctl dev` on a terminal: redrawn in place with rich's `Live`.

Per pod: ready/desired, restarts, revision(s) and its last event; per service:
listen address and ready endpoints; then the last few events that matter while
developing (`Synced`, `BuildFailed`, `Unhealthy`, ...). It redraws when the
controller finishes a pass or an event is emitted, at most `MAX_FPS` times a
second, and never polls.

While it is on, podctl's log lines at warning and above are printed above the
view (through rich's redirected stderr); informational ones are left out, since
the view shows the events they would repeat. When stdout is not a terminal there
is no view: the log lines are the output, one per event, as under `podctl run`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import TYPE_CHECKING, Protocol, TextIO

import anyio

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from rich.console import RenderableType

    from podctl.api.schema import ServiceRow
    from podctl.reconcile.controller import Controller
    from podctl.reconcile.events import Event, EventLog
    from podctl.reconcile.steps import ReplicaStatus
    from podctl.spec.model import DesiredStack

MAX_FPS = 4
RECENT = 6
# Events shown in the recent list (others still reach `podctl events`).
NOTABLE = frozenset(
    {
        "Synced",
        "SyncFailed",
        "SyncIncomplete",
        "SyncSkipped",
        "SyncFallback",
        "Building",
        "Built",
        "BuildFailed",
        "ExecFailed",
        "Unhealthy",
        "Failed",
        "BackOff",
        "Restarted",
        "RolloutStarted",
        "RolloutComplete",
        "Invalid",
        "Reloaded",
    }
)


class ViewHost(Protocol):
    controller: Controller
    events: EventLog

    def services(self) -> list[ServiceRow]:
        """Services as `podctl get services` shows them (readiness as routed now)."""
        ...


def _age(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def render(
    stacks: Sequence[DesiredStack],
    status: Sequence[ReplicaStatus],
    services: Sequence[ServiceRow],
    events: Sequence[Event],
    now: float,
) -> RenderableType:
    """The whole view as one renderable (pure: tests render it to text)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    pods = Table(title="pods", title_justify="left", expand=False, box=None, pad_edge=False)
    for col in ("POD", "READY", "RESTARTS", "REVISION", "LAST EVENT"):
        pods.add_column(col)
    for stack in stacks:
        for pod in stack.pods:
            rows = [r for r in status if (r.stack, r.pod) == (stack.name, pod.name)]
            ready = sum(1 for r in rows if r.ready)
            restarts = sum(r.restarts for r in rows)
            revisions = sorted({r.revision for r in rows if r.revision})
            prefix = f"pod:{stack.name}/{pod.name}"
            last = next(
                (
                    e
                    for e in reversed(events)
                    if e.object == prefix or e.object.startswith(prefix + "/")
                ),
                None,
            )
            pods.add_row(
                Text(f"{stack.name}/{pod.name}"),
                Text(
                    f"{ready}/{pod.replicas}", style="green" if ready == pod.replicas else "yellow"
                ),
                str(restarts),
                Text(", ".join(revisions) or "-"),
                Text(f"{last.reason} {_age(now - last.time)} ago: {last.message}" if last else "-"),
            )
    svc = Table(title="services", title_justify="left", box=None, pad_edge=False)
    for col in ("SERVICE", "LISTEN", "ENDPOINTS"):
        svc.add_column(col)
    for s in services:
        ready = sum(1 for e in s.endpoints if e.ready)
        svc.add_row(
            Text(f"{s.stack}/{s.name}"),
            Text(s.listen or "in-stack only"),
            Text(f"{ready}/{len(s.endpoints)} ready"),
        )
    recent = Table(title="recent", title_justify="left", box=None, pad_edge=False)
    for col in ("AGE", "OBJECT", "REASON", "MESSAGE"):
        recent.add_column(col)
    notable = [e for e in events if e.reason in NOTABLE][-RECENT:]
    for e in notable:
        style = "red" if "Fail" in e.reason or e.reason in ("Unhealthy", "Invalid") else ""
        first_line, *more = e.message.splitlines() or [""]
        message = first_line + (f" (+{len(more)} lines)" if more else "")
        if e.reason == "BuildFailed" and more:
            message = first_line + "\n" + "\n".join(more[-5:])
        recent.add_row(
            _age(now - e.time), Text(e.object), Text(e.reason, style=style), Text(message)
        )
    return Group(pods, Text(""), svc, Text(""), recent)


@contextlib.contextmanager
def _logs_above(stream: TextIO) -> Iterator[None]:
    """Route the console log handlers to `stream` (rich's proxy: lines print above the
    view), at warning and above, for as long as the view is on."""
    saved: list[tuple[logging.StreamHandler[TextIO], TextIO, int]] = []
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            saved.append((h, h.stream, h.level))
            h.setStream(stream)
            h.setLevel(max(h.level, logging.WARNING))
    try:
        yield
    finally:
        for h, old, level in saved:
            h.setStream(old)
            h.setLevel(level)


async def run_view(host: ViewHost) -> None:
    """Redraw until cancelled (only call it when stdout is a terminal)."""
    from rich.console import Console
    from rich.live import Live

    changed = anyio.Event()

    def observe(*_: object) -> None:
        changed.set()

    host.controller.observers.append(observe)
    events = host.events.subscribe()
    console = Console()

    def draw() -> RenderableType:
        return render(
            host.controller.stacks,
            host.controller.status(),
            host.services(),
            host.events.history(),
            time.time(),
        )

    try:
        with (
            Live(draw(), console=console, auto_refresh=False, redirect_stderr=True) as live,
            _logs_above(sys.stderr),
        ):
            async with anyio.create_task_group() as tg:

                async def follow_events() -> None:
                    async for _ in events:
                        changed.set()

                tg.start_soon(follow_events)
                while True:
                    # Ages tick too: redraw at least once a second.
                    with anyio.move_on_after(1.0):
                        await changed.wait()
                    changed = anyio.Event()
                    live.update(draw(), refresh=True)
                    await anyio.sleep(1 / MAX_FPS)
    finally:
        if observe in host.controller.observers:
            host.controller.observers.remove(observe)
        events.close()
