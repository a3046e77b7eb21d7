"""The quiet window between file events and a sync.

A save is often several events (write, chmod, rename; an editor's temporary file
and the real one). A batch is taken once no event came for `window_s` (a sliding
window: each event pushes the deadline back), but never later than `max_wait_s`
after the batch's first event, so a process writing continuously still gets
synced. Compose waits a fixed 500 ms; `window_s` is 40 ms here, on top of the
notify thread's own 20 ms step: inside "at most 100 ms after the last event".

Pure bookkeeping with an injected clock: the session awaits `due()`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

WINDOW_S = 0.04
MAX_WAIT_S = 1.0


class Debouncer:
    def __init__(
        self,
        *,
        window_s: float = WINDOW_S,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_wait_s = max_wait_s
        self.clock = clock
        self._paths: set[str] = set()
        self._first = 0.0
        self._last = 0.0

    def add(self, paths: Iterable[str]) -> None:
        """Note events on `paths` (at the clock's now)."""
        now = self.clock()
        before = len(self._paths)
        self._paths.update(paths)
        if not before and self._paths:
            self._first = now
        if self._paths:
            self._last = now

    @property
    def last_event(self) -> float:
        """Clock time of the latest event of the pending batch (0 when none came yet)."""
        return self._last

    @property
    def pending(self) -> bool:
        return bool(self._paths)

    def due(self) -> float | None:
        """When the pending batch may be taken (clock time), or None when nothing waits."""
        if not self._paths:
            return None
        return min(self._last + self.window_s, self._first + self.max_wait_s)

    def take(self) -> set[str] | None:
        """The batch, if it is due now; else None (and it stays pending)."""
        due = self.due()
        if due is None or self.clock() < due:
            return None
        batch, self._paths = self._paths, set()
        return batch
