"""Process resource limits.

Every proxied connection costs podctl two file descriptors (client and backend),
and the default soft RLIMIT_NOFILE is often 1024, kept low only for programs
still using select(). podctl uses epoll (asyncio/uvloop), so, like Go's runtime
(since 1.19) and systemd (which sets the soft limit to the hard limit for its
services' benefit when they ask), it raises its soft limit to the hard limit.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

log = logging.getLogger("podctl")

NR_OPEN = Path("/proc/sys/fs/nr_open")
# The kernel's default cap for RLIMIT_NOFILE when /proc cannot be read.
DEFAULT_NR_OPEN = 1 << 20


def _kernel_cap() -> int:
    try:
        return int(NR_OPEN.read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_NR_OPEN


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force.

    A hard limit of "unlimited" is capped at the kernel's fs.nr_open (setrlimit
    refuses anything above it). Never fails: on refusal the old limit stays and is
    returned.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _kernel_cap() if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.debug("could not raise the open files limit from %d to %d: %s", soft, target, exc)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _kernel_cap() if soft == resource.RLIM_INFINITY else int(soft)
