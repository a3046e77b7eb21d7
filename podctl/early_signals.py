"""Signals that arrive before `podctl run` can act on them.

A Ctrl-C during start-up must neither be lost nor kill the process halfway
through creating containers: until the run's own signal receiver is open, SIGINT
and SIGTERM are only recorded, and the run stops cleanly as soon as it can.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType

_received: list[int] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def install() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _remember)


def pending() -> int | None:
    """The first signal received so far, if any."""
    return _received[0] if _received else None
