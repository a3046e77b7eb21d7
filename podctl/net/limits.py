"""Descriptor budget for the proxy, and the accept back-off of every podctl listener.

Each proxied connection holds two descriptors (the client's and the backend's).
Without a cap sized from RLIMIT_NOFILE, enough idle clients use up every
descriptor: probes then fail with "too many open files" and accept() on the
control socket raises EMFILE. The proxy's listeners therefore share one
`ConnectionBudget` that leaves a reserve for probes, the engine client, the
control socket and the rest of podctl.
"""

from __future__ import annotations

import errno
import resource

from podctl import defaults

# Descriptors kept out of the proxy's reach: a fixed part for podctl's own
# (event loop, engine connections, listeners, files) plus a tenth of the limit
# for probes, `exec`/`logs` streams and control requests.
FD_RESERVE_FIXED = 64
FD_RESERVE_FRACTION = 0.10
FDS_PER_CONNECTION = 2

# accept() errors that mean "no descriptor (or memory) right now": wait, do not fail.
ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() errors about one connection only (it went away before we took it).
ACCEPT_TRANSIENT_ERRNOS = frozenset(
    {errno.ECONNABORTED, errno.EINTR, errno.EAGAIN, errno.EPROTO, errno.EPERM}
)

ACCEPT_BACKOFF_MIN_S = 0.005
ACCEPT_BACKOFF_MAX_S = 1.0


def nofile_limit() -> int | None:
    """The current soft RLIMIT_NOFILE, or None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    return int(soft)


def fd_reserve(limit: int) -> int:
    """Descriptors the proxy leaves to the rest of podctl under a limit of `limit`."""
    return FD_RESERVE_FIXED + int(limit * FD_RESERVE_FRACTION)


def connection_cap(limit: int | None = None, ceiling: int = defaults.PROXY_MAX_CONNECTIONS) -> int:
    """How many proxied connections fit in `limit` descriptors (default: the current
    soft limit), keeping `fd_reserve(limit)` free; never more than `ceiling`, at least 1."""
    if limit is None:
        limit = nofile_limit()
        if limit is None:
            return ceiling
    cap = (limit - fd_reserve(limit)) // FDS_PER_CONNECTION
    return max(1, min(ceiling, cap))


class ConnectionBudget:
    """Proxied connections open across all of podctl's listeners, against one cap."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int | None = None) -> None:
        self.limit = connection_cap() if limit is None else limit
        self.used = 0

    def refresh(self) -> int:
        """Re-read the descriptor limit (it may have been raised since); returns the cap."""
        self.limit = connection_cap()
        return self.limit

    @property
    def full(self) -> bool:
        return self.used >= self.limit


class AcceptBackoff:
    """Go net/http's accept back-off: 5 ms after a resource error, doubling to 1 s,
    back to nothing after a successful accept."""

    __slots__ = ("delay", "episodes")

    def __init__(self) -> None:
        self.delay = 0.0
        self.episodes = 0  # how many times accepting had to pause (for tests and logs)

    def failed(self) -> float:
        """The next pause, in seconds."""
        if self.delay == 0.0:
            self.episodes += 1
            self.delay = ACCEPT_BACKOFF_MIN_S
        else:
            self.delay = min(self.delay * 2, ACCEPT_BACKOFF_MAX_S)
        return self.delay

    @property
    def pausing(self) -> bool:
        return self.delay > 0.0

    def succeeded(self) -> bool:
        """Reset; True when this ends a pause (time to say so in the log)."""
        was = self.delay > 0.0
        self.delay = 0.0
        return was
