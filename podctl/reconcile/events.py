"""The event log: what podctl did and why, as `podctl events` and `describe` show it.

Events are for people, not for decisions: the controller never reads them back
(it is level-triggered). The log is bounded and has live subscribers for
`podctl events -f`; a subscriber too slow to keep up is dropped rather than
allowed to hold up the controller.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import anyio
import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

log = logging.getLogger("podctl.events")

HISTORY = 1000
SUBSCRIBER_BUFFER = 256


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened to an object, as `podctl events` shows it."""

    time: float
    stack: str  # "" for podctl-wide events (engine, reload)
    object: str  # "pod:shop/web/0", "network:podctl_shop", "engine"
    reason: str  # Created, Started, Restarted, Killing, BackOff, Unhealthy, Failed, ...
    message: str


class EventLog:
    """A bounded history of events plus live subscribers."""

    def __init__(self, clock: Callable[[], float], size: int = HISTORY) -> None:
        self._clock = clock
        self._items: deque[Event] = deque(maxlen=size)
        self._subscribers: list[MemoryObjectSendStream[Event]] = []

    def emit(self, stack: str, obj: str, reason: str, message: str) -> None:
        ev = Event(time=self._clock(), stack=stack, object=obj, reason=reason, message=message)
        self._items.append(ev)
        log.info("%s %s %s: %s", stack or "-", obj, reason, message)
        for send in list(self._subscribers):
            try:
                send.send_nowait(ev)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove(send)

    def history(self, stack: str | None = None) -> list[Event]:
        """Events of `stack` (and podctl-wide ones), oldest first; all when None."""
        return [e for e in self._items if stack is None or e.stack in (stack, "")]

    def subscribe(self) -> MemoryObjectReceiveStream[Event]:
        send, receive = anyio.create_memory_object_stream[Event](SUBSCRIBER_BUFFER)
        self._subscribers.append(send)
        return receive
