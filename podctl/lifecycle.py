"""What `podctl run` tells its service manager (systemd's notify protocol).

* `READY=1` once the engine has answered and every pod of every stack is ready
  (enough ready replicas, or finished for a pod that runs to completion), or once
  `--ready-timeout` has passed: then with a STATUS saying what is not ready, because a
  start that never ends helps nobody (systemd would kill podctl at TimeoutStartSec=,
  the failure podman#27290 describes for slow pulls).
* `STATUS=` a one-line summary, sent whenever it changes.
* `WATCHDOG=1` every half `$WATCHDOG_USEC`, from a task on the main event loop, so a
  stalled loop misses it and systemd restarts podctl.
* `EXTEND_TIMEOUT_USEC=` while images are pulled or built before READY.
* `RELOADING=1` + `MONOTONIC_USEC=` on SIGHUP, then `READY=1` once every file is read
  again; `STOPPING=1` on SIGTERM/SIGINT.

Without `$NOTIFY_SOCKET` the `Notifier` sends nothing, and this costs one summary per
controller pass.

The summary (`summarize`) is a pure function of the desired stacks, the planner's
replica status and the engine's state.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from podctl.host.notify import Notifier
    from podctl.reconcile.steps import ReplicaStatus
    from podctl.spec.model import DesiredStack

log = logging.getLogger("podctl.lifecycle")

DEFAULT_READY_TIMEOUT_S = 240.0  # under the unit's TimeoutStartSec=300s
# While pulling or building before READY: ask for this much more start time, this often.
EXTEND_EVERY_S = 10.0
EXTEND_BY_S = 30.0
STATUS_MAX = 400  # `systemctl status` shows one line; keep it readable


@dataclass(frozen=True, slots=True)
class Summary:
    ready: bool  # every pod ready and the engine answers
    text: str  # the STATUS= line
    not_ready: tuple[str, ...] = ()  # "stack/pod 1/3 (reason)"


def summarize(
    stacks: Sequence[DesiredStack],
    status: Sequence[ReplicaStatus],
    *,
    engine_seen: bool,
    engine_ok: bool,
    engine_error: str = "",
    pulling: bool = False,
) -> Summary:
    """The readiness of what runs, as one line for `systemctl status`."""
    ready_by: dict[tuple[str, str], int] = {}
    reason_by: dict[tuple[str, str], str] = {}
    for row in status:
        key = (row.stack, row.pod)
        if row.ready or row.phase == "Succeeded":
            ready_by[key] = ready_by.get(key, 0) + 1
        elif row.reason and key not in reason_by:
            reason_by[key] = row.reason
    desired = ready = 0
    not_ready: list[str] = []
    for stack in stacks:
        for pod in stack.pods:
            key = (stack.name, pod.name)
            have = min(ready_by.get(key, 0), pod.replicas)
            desired += pod.replicas
            ready += have
            if have < pod.replicas:
                why = reason_by.get(key)
                not_ready.append(
                    f"{stack.name}/{pod.name} {have}/{pod.replicas}" + (f" ({why})" if why else "")
                )
    n = len(stacks)
    parts = [f"{n} stack{'s' if n != 1 else ''}, {ready}/{desired} replicas ready"]
    if not engine_seen:
        parts.insert(0, "waiting for the engine")
    elif not engine_ok:
        parts.insert(
            0, f"engine unavailable: {engine_error}" if engine_error else "engine unavailable"
        )
    if pulling:
        parts.append("pulling/building images")
    if not_ready:
        more = f" and {len(not_ready) - 3} more" if len(not_ready) > 3 else ""
        parts.append("not ready: " + ", ".join(not_ready[:3]) + more)
    text = "; ".join(parts)
    if len(text) > STATUS_MAX:
        text = text[: STATUS_MAX - 1] + "…"
    return Summary(
        ready=engine_seen and engine_ok and not not_ready,
        text=text,
        not_ready=tuple(not_ready),
    )


class ServiceManager:
    """Drives a `Notifier` from podctl's state. Start `run` in the main task group."""

    def __init__(
        self,
        notifier: Notifier,
        summary: Callable[[], Summary],
        *,
        ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
        pulling: Callable[[], bool] = lambda: False,
    ) -> None:
        self.notifier = notifier
        self._summary = summary
        self.ready_timeout_s = ready_timeout_s
        self._pulling = pulling
        self.ready_sent = False
        self.last_status: str | None = None
        self._changed = anyio.Event()
        self._reload_lock = anyio.Lock()

    def changed(self) -> None:
        """Something the summary depends on changed (a pass, a probe, the engine)."""
        self._changed.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            interval = self.notifier.watchdog_interval
            if interval is not None and self.notifier.enabled:
                tg.start_soon(self._watchdog, interval)
            task_status.started()
            await self._follow()

    async def _watchdog(self, interval: float) -> None:
        # On the main loop on purpose: if the loop stalls, the pings stop.
        while True:
            self.notifier.watchdog()
            await anyio.sleep(interval)

    async def _follow(self) -> None:
        deadline = anyio.current_time() + self.ready_timeout_s
        next_extend = anyio.current_time()
        while True:
            self._changed = anyio.Event()
            summary = self._summary()
            self._send_status(summary)
            now = anyio.current_time()
            if not self.ready_sent:
                if summary.ready:
                    self._send_ready(summary.text)
                elif now >= deadline:
                    text = f"not ready after {self.ready_timeout_s:g} s: {summary.text}"
                    log.warning("%s; telling the service manager podctl is up anyway", text)
                    self._send_ready(text)
                elif self._pulling() and now >= next_extend:
                    # Slow pulls must not run into TimeoutStartSec= (podman#27290).
                    self.notifier.extend_timeout(int(EXTEND_BY_S * 1_000_000))
                    next_extend = now + EXTEND_EVERY_S
            wait = math.inf
            if not self.ready_sent:
                wait = max(0.0, min(deadline, next_extend if self._pulling() else math.inf) - now)
                wait = min(wait, EXTEND_EVERY_S)
            with anyio.move_on_after(wait):
                await self._changed.wait()

    def _send_status(self, summary: Summary) -> None:
        if summary.text != self.last_status:
            self.last_status = summary.text
            self.notifier.status(summary.text)

    def _send_ready(self, text: str) -> None:
        self.ready_sent = True
        self.last_status = text
        if self.notifier.ready(text):
            log.debug("told the service manager: READY (%s)", text)

    async def reload(self, reread: Callable[[], Awaitable[object]]) -> None:
        """SIGHUP: RELOADING=1 (+ MONOTONIC_USEC), `reread` every stack, READY=1."""
        async with self._reload_lock:
            self.ready_sent = True  # the READY below ends any start-up wait as well
            self.notifier.reloading("reloading the stack files")
            try:
                await reread()
            finally:
                summary = self._summary()
                self.last_status = summary.text
                self.notifier.ready(summary.text)
                self.changed()

    def stopping(self, why: str) -> None:
        self.notifier.stopping(why)


__all__ = ["DEFAULT_READY_TIMEOUT_S", "ServiceManager", "Summary", "summarize"]
