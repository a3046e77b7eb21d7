"""Stop signals that arrive before a command can act on them.

A Ctrl-C during start-up must neither be lost nor kill the process halfway
through its imports or through creating containers. The entry point
(`podctl.__main__.main`) calls `install()` on its first line, before the heavy
imports (typer, anyio, aiodocker): from then on SIGINT and SIGTERM are only
recorded. `podctl run` keeps them recorded until its own signal receiver is open
and stops cleanly as soon as it can; every other command gets Python's usual
behaviour back through `restore()` (Ctrl-C raises KeyboardInterrupt, SIGTERM
kills), which first honours a signal received while it was importing.

Stdlib only, and tiny: this module is imported before anything else.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The shell's convention for "ended by Ctrl-C": 128 + SIGINT.
EXIT_INTERRUPTED = 128 + signal.SIGINT

_received: list[int] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def install() -> None:
    """Record SIGINT and SIGTERM from now on instead of acting on them."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _remember)


def pending() -> int | None:
    """The first signal received so far, if any."""
    return _received[0] if _received else None


def restore() -> None:
    """Give SIGINT and SIGTERM their usual meaning back (KeyboardInterrupt, death).

    A signal received while they were only recorded is acted on now, quietly: a
    SIGINT ends the process with exit code 130, a SIGTERM is re-raised so the
    process dies of it, as it would have without podctl's handlers.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    first = pending()
    if first is None:
        return
    if first == signal.SIGTERM:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGTERM)
    sys.exit(EXIT_INTERRUPTED)
